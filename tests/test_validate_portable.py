"""``relctl validate`` starts on an OS without the POSIX-only standard modules (Windows).

Developers run ``relctl validate`` (and its pre-commit hook) on their own machines, so its
import path must not need ``fcntl`` and friends; the controller daemon, which takes a POSIX
file lock, may. The test removes those modules the way Windows lacks them: ``import fcntl``
raises ``ImportError``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BASE = Path(__file__).parent / "data" / "base"
#: Standard modules that exist on POSIX only; the standard library itself copes without them.
POSIX_ONLY = ("fcntl", "grp", "pwd", "resource", "termios")
HIDE_POSIX_ONLY_MODULES = f"""
import sys
for name in {POSIX_ONLY!r}:
    sys.modules[name] = None  # `import name` now raises ImportError, as on Windows
"""
RELCTL = """
from controller.cli import main
sys.argv[0] = "relctl"
main()
"""


def python_without_posix_only_modules(
    code: str, cwd: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", HIDE_POSIX_ONLY_MODULES + code, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    shutil.copytree(BASE, root)
    return root


def test_the_modules_are_really_hidden(repo: Path) -> None:
    for name in POSIX_ONLY:
        done = python_without_posix_only_modules(f"import {name}", repo)
        assert done.returncode == 1 and f"import of {name} halted" in done.stderr


def test_validate_runs_without_posix_only_modules(repo: Path) -> None:
    done = python_without_posix_only_modules(RELCTL, repo, "validate")
    assert (done.returncode, done.stdout, done.stderr) == (0, "4 files valid\n", "")


def test_validate_reports_a_located_error_without_posix_only_modules(repo: Path) -> None:
    manifest = repo / "releases/shop/gcash.yaml"
    manifest.write_text(manifest.read_text().replace("grayscale: 0", "grayscale: 120"))
    done = python_without_posix_only_modules(RELCTL, repo, "validate")
    assert done.returncode == 1, done.stderr
    assert done.stdout.startswith(
        "releases/shop/gcash.yaml:15:14: error: spec.grayscale: 120 is greater than the maximum"
    )
