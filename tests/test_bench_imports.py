"""The benchmarks stay runnable: `python -m bench.step` builds Prefect flows whose parameters
hold engine objects at import, which a type Prefect cannot describe breaks (it did once);
`bench.run` drives the deployed flow."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("benchmark", ["bench.run", "bench.step"])
def test_the_benchmark_imports_and_describes_its_options(benchmark: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", benchmark, "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "--customers" in done.stdout and "--partitions" in done.stdout


def test_the_import_benchmark_runs_a_baseline_side_by_side(tmp_path: Path) -> None:
    """bench.imports at a tiny size, with this checkout's own siyu as the --baseline: every
    import of each version prints its line (rows/s, CPU, memory)."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.imports",
            "--customers",
            "40",
            "--orders",
            "120",
            "--workdir",
            str(tmp_path),
            "--baseline",
            str(ROOT),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [line.split() for line in done.stdout.splitlines() if "rows per CPU second" in line]
    assert [(words[0], words[1]) for words in lines] == [
        (version, kind)
        for _ in range(2)  # the first import, then the same export again
        for kind in ("customers", "orders")
        for version in ("this", "baseline")
    ]
