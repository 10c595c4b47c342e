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
