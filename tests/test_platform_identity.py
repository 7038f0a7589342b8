"""``--platform sim:PATH`` and ``relctl platform --db PATH`` open only a simulator's database.

A typo in the path used to create a new, empty platform silently. Now a missing file, a file
that is not SQLite, an SQLite database of something else, an empty, a corrupt or a read-only
file is one line on stderr naming the path, with exit code 2, through the real command line;
only ``relctl platform init`` creates a database.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner

from controller.cli import cli
from controller.platform.sim import Simulator


def controller_plan(db: Path) -> list[str]:
    """The controller's side: any command that opens ``--platform sim:PATH``."""
    return ["plan", "--repo", str(db.parent), "--platform", f"sim:{db}"]


def platform_releases(db: Path) -> list[str]:
    """The platform's side: any ``relctl platform`` command but ``init``."""
    return ["platform", "--db", str(db), "releases"]


ENTRY_POINTS = [controller_plan, platform_releases]
Command = Callable[[Path], list[str]]


def relctl(args: list[str]) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, args, env={"RELCTL_PLATFORM_DB": None})
    return result.exit_code, result.stdout, result.stderr


def assert_one_line_error(code: int, out: str, err: str, *words: str) -> None:
    assert code == 2, (out, err)
    assert out == ""
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert "Traceback" not in err
    for word in words:
        assert word in err, err


def simulator_db(path: Path) -> Path:
    with Simulator(path) as sim:
        sim.init(["gcash"])
        sim.upload("shop", "1.0.0")
        for n in range(3):
            sim.set_app(f"app{n}", build_seconds=0)
            sim.create_release("shop", "1.0.0", f"app{n}", "production", idempotency_key=f"{n}")
    return path


@pytest.mark.parametrize("command", ENTRY_POINTS)
def test_a_missing_database_is_refused_and_not_created(tmp_path: Path, command: Command) -> None:
    db = tmp_path / "typo.db"

    code, out, err = relctl(command(db))

    assert_one_line_error(
        code, out, err, f"no platform simulator database at {db}", f"--db {db} init"
    )
    assert not db.exists()


def test_only_init_creates_the_database(tmp_path: Path) -> None:
    db = tmp_path / "new" / "platform.db"

    code, out, err = relctl(["platform", "--db", str(db), "init", "--apps", "gcash"])

    assert code == 0, err
    assert db.exists()
    code, out, err = relctl(["platform", "--db", str(db), "apps"])
    assert code == 0 and "gcash" in out, err
    assert relctl(["platform", "--db", str(db), "init"])[0] == 0  # again: keeps what is there
    assert "gcash" in relctl(["platform", "--db", str(db), "apps"])[1]


@pytest.mark.parametrize("command", ENTRY_POINTS)
def test_a_file_that_is_not_sqlite_is_refused_untouched(tmp_path: Path, command: Command) -> None:
    db = tmp_path / "notes.db"
    db.write_text("these are my notes, not a database\n" * 50)
    before = db.read_bytes()

    code, out, err = relctl(command(db))

    assert_one_line_error(code, out, err, f"{db} is not a platform simulator database")
    assert db.read_bytes() == before


@pytest.mark.parametrize(
    "command", [*ENTRY_POINTS, lambda db: ["platform", "--db", str(db), "init"]]
)
def test_an_sqlite_database_of_something_else_is_refused_untouched(
    tmp_path: Path, command: Command
) -> None:
    db = tmp_path / "inventory.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE items (sku TEXT PRIMARY KEY, stock INTEGER)")
    conn.close()
    before = db.read_bytes()

    code, out, err = relctl(command(db))

    assert_one_line_error(
        code, out, err, f"{db} is an SQLite database but not a platform simulator database"
    )
    assert db.read_bytes() == before  # no simulator tables added, journal mode unchanged


@pytest.mark.parametrize("command", ENTRY_POINTS)
def test_an_empty_file_is_refused_but_init_makes_it_a_database(
    tmp_path: Path, command: Command
) -> None:
    db = tmp_path / "empty.db"
    db.touch()

    code, out, err = relctl(command(db))

    assert_one_line_error(code, out, err, f"{db} is empty", "init")
    assert relctl(["platform", "--db", str(db), "init"])[0] == 0
    assert relctl(command(db))[0] == 0


@pytest.mark.parametrize("command", ENTRY_POINTS)
def test_a_corrupt_database_is_refused(tmp_path: Path, command: Command) -> None:
    db = simulator_db(tmp_path / "platform.db")
    with db.open("r+b") as file:  # smash the first page: the schema itself
        file.seek(100)
        file.write(b"\xff" * 3000)

    code, out, err = relctl(command(db))

    assert_one_line_error(code, out, err, f"the platform simulator database {db} is corrupt")


def test_corruption_found_while_reading_is_the_same_one_line_error(tmp_path: Path) -> None:
    db = simulator_db(tmp_path / "platform.db")
    with sqlite3.connect(db) as conn:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'releases'").fetchone()
    conn.close()
    with db.open("r+b") as file:  # the releases table only: opening still works
        file.seek((root[0] - 1) * page_size)
        file.write(b"\xff" * page_size)
    assert relctl(["platform", "--db", str(db), "apps"])[0] == 0

    code, out, err = relctl(platform_releases(db))

    assert_one_line_error(code, out, err, f"the platform simulator database {db} is corrupt")


# --------------------------------------------------------------------------------------------
# read-only
# --------------------------------------------------------------------------------------------


@contextmanager
def read_only(db: Path) -> Iterator[None]:
    """Make ``db`` read-only for this process: file modes, or for root (which ignores them)
    the immutable attribute, where the file system has it."""
    if os.geteuid() != 0:
        db.chmod(0o444)
        db.parent.chmod(0o555)
        try:
            yield
        finally:
            db.parent.chmod(0o755)
            db.chmod(0o644)
        return
    chattr = shutil.which("chattr")
    if chattr is None or subprocess.run([chattr, "+i", str(db)], check=False).returncode:
        pytest.skip("running as root, and chattr +i is not available to make a file read-only")
    try:
        yield
    finally:
        subprocess.run([chattr, "-i", str(db)], check=True)


@pytest.mark.parametrize("command", ENTRY_POINTS)
def test_a_read_only_database_is_refused(tmp_path: Path, command: Command) -> None:
    db = simulator_db(tmp_path / "platform.db")

    with read_only(db):
        code, out, err = relctl(command(db))

    assert_one_line_error(code, out, err, f"the platform simulator database {db} is read-only")
