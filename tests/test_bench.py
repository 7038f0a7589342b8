"""The benchmark scripts still run: each one, at a size that takes seconds, exits 0.

``make bench`` is not part of ``make test``, so without this a change to a function a bench
script wraps (``reconcile.load_manifests`` gained an argument once) would only show the next
time someone measured. Figures are printed by the scripts and never asserted here; only the
exit status is (each script exits 1 when an invariant of its passes breaks).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"

RUNS = {
    "validate": ["-n", "40", "-r", "1", "--no-check-jsonschema"],
    "check": ["-n", "40", "-r", "1"],
    "reconcile": [
        "--releases", "20", "--step-releases", "5", "--apps", "2", "-r", "1",
        "--loop-passes", "6", "--loop-resync-every", "3",
    ],
    "scale": ["--sizes", "20", "--apps", "2", "--steps", "5"],
    "list_releases": ["--releases", "20", "--apps", "2", "--repeat", "1", "--changed", "3",
                      "--sample", "5"],
}  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(RUNS))
def test_the_bench_script_runs_at_a_small_size(script: str, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH / f"{script}.py"), *RUNS[script]],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 0, (
        f"{script}.py failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    )
