"""What the benchmarks share: relctl's bytecode compiled as an install would, git isolated
from the machine, counting the platform's mutations, and resetting the process's RSS
high-water mark.

Imported by the scripts of ``bench/`` (a script's directory is on ``sys.path``, so they
import it by name).
"""

from __future__ import annotations

import compileall
import os
import sqlite3
import sys
from pathlib import Path

import controller


def compile_bytecode() -> str:
    """Compile relctl's modules to bytecode, as ``pip install`` does for an installed wheel.

    An editable install writes ``__pycache__`` on first import, unless the environment sets
    ``PYTHONDONTWRITEBYTECODE`` (some sandboxes and CI images do): then every ``relctl`` run
    compiles its modules again, ~60 ms that no installed relctl pays. Figures are taken with
    bytecode, like the tools they are compared with. Returns a line saying what was done.
    """
    package = Path(controller.__file__).parent
    compileall.compile_dir(package, quiet=1)
    flag = " (PYTHONDONTWRITEBYTECODE is set here)" if sys.flags.dont_write_bytecode else ""
    return f"bytecode: {package.name}/ compiled first, as an install does{flag}"


def isolate_git(home: Path) -> None:
    """Make every git call (ours and the controller's) ignore global and system config."""
    for name in list(os.environ):
        if name.startswith("GIT_") and not name.startswith("GIT_PYTHON"):
            del os.environ[name]
    home.mkdir(parents=True, exist_ok=True)
    config = home / ".gitconfig"
    config.write_text("[gc]\n\tauto = 0\n[maintenance]\n\tauto = false\n")
    os.environ["GIT_CONFIG_GLOBAL"] = str(config)
    os.environ["GIT_CONFIG_NOSYSTEM"] = "1"
    os.environ["GIT_TERMINAL_PROMPT"] = "0"


def count_mutations(db: Path) -> int:
    """Platform mutations that took effect so far (one idempotency record each)."""
    with sqlite3.connect(db) as conn:
        row = conn.execute("SELECT COUNT(*) FROM idempotency").fetchone()
    return int(row[0])


def reset_peak_rss() -> bool:
    """Reset this process's RSS high-water mark (Linux >= 4.0); False when not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True
