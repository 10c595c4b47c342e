"""The benchmark stays runnable: `python -m bench.run` builds Prefect flows whose parameters
hold engine objects at import, which a type Prefect cannot describe breaks (it did once)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_benchmark_imports_and_describes_its_options() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.run", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "--customers" in done.stdout and "--partitions" in done.stdout
