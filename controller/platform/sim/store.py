"""SQLite persistence of the platform simulator: schema, connections, transactions.

One database file holds the whole simulated platform (target apps, uploaded versions,
releases, idempotency records, clock and fault settings). It is opened in WAL mode with a
busy timeout, and every mutation runs in one ``BEGIN IMMEDIATE`` transaction, so the
controller and a person running ``relctl platform ...`` can use it at the same time: writers
queue, readers never block, nothing is lost. When the database stays locked longer than the
timeout the caller gets :class:`~controller.platform.errors.Transient` (nothing happened),
never a raw ``sqlite3.OperationalError``.

Called by :class:`controller.platform.sim.Simulator`; the rows themselves are read and written
by ``controller.platform.sim.tables``.
"""

from __future__ import annotations

import json
import random
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from controller.platform.errors import Transient

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS apps (
    app_id   TEXT PRIMARY KEY,
    settings TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS versions (
    mini_program TEXT NOT NULL,
    version      TEXT NOT NULL,
    uploaded_at  REAL NOT NULL,
    data         TEXT NOT NULL,
    PRIMARY KEY (mini_program, version)
);
CREATE TABLE IF NOT EXISTS releases (
    release_id   TEXT PRIMARY KEY,
    seq          INTEGER NOT NULL UNIQUE,
    mini_program TEXT NOT NULL,
    target_app   TEXT NOT NULL,
    version      TEXT NOT NULL,
    stage        TEXT NOT NULL,
    -- the earliest pending time-driven change (build, test, review), NULL when none
    due          REAL,
    data         TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS releases_by_target ON releases (mini_program, target_app, seq);
CREATE INDEX IF NOT EXISTS releases_by_due ON releases (due) WHERE due IS NOT NULL;
CREATE TABLE IF NOT EXISTS idempotency (
    key        TEXT PRIMARY KEY,
    operation  TEXT NOT NULL,
    request    TEXT NOT NULL,
    ok         INTEGER NOT NULL,
    result     TEXT NOT NULL,
    created_at REAL NOT NULL
);
"""

#: How long a transaction waits for another process's lock before giving up (seconds).
LOCK_TIMEOUT = 30.0


def _is_lock_error(error: sqlite3.OperationalError) -> bool:
    text = str(error).lower()
    return "locked" in text or "busy" in text


class Store:
    """One SQLite database file, opened for the simulator (thread-safe, process-safe)."""

    def __init__(self, path: Path | str, *, lock_timeout: float = LOCK_TIMEOUT) -> None:
        self.path = Path(path)
        self.lock_timeout = lock_timeout
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(
            self.path,
            timeout=lock_timeout,
            isolation_level=None,  # we issue BEGIN/COMMIT ourselves
            check_same_thread=False,
        )
        self._conn.row_factory = sqlite3.Row
        self._retry_locked(self._setup)

    # --- lifecycle -----------------------------------------------------------------------
    def _setup(self) -> None:
        self._conn.execute(f"PRAGMA busy_timeout = {int(self.lock_timeout * 1000)}")
        mode = self._conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":  # pragma: no cover - e.g. a read-only medium
            raise Transient(f"cannot open {self.path} in WAL mode (got {mode})")
        self._conn.execute("PRAGMA synchronous = NORMAL")
        with self.write() as conn:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)",
                (json.dumps(SCHEMA_VERSION),),
            )

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # --- transactions ----------------------------------------------------------------------
    def _retry_locked(self, action: Any) -> Any:
        """Run ``action`` again while another process holds the lock, up to the timeout."""
        deadline = time.monotonic() + self.lock_timeout
        jitter = random.Random()
        delay = 0.01
        while True:
            try:
                return action()
            except sqlite3.OperationalError as error:
                if not _is_lock_error(error) or time.monotonic() >= deadline:
                    if _is_lock_error(error):
                        raise Transient(
                            f"the platform database {self.path} is busy; try again"
                        ) from error
                    raise
                time.sleep(delay * (1 + jitter.random()))
                delay = min(delay * 2, 0.5)

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` transaction: committed on success, rolled back on error.

        An exception raised inside the block rolls everything back, except when it is raised
        after :meth:`commit_now` (used for errors that must leave a trace, e.g. the fault
        counter).
        """
        with self._lock:
            self._retry_locked(lambda: self._conn.execute("BEGIN IMMEDIATE"))
            try:
                yield self._conn
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise
            else:
                if self._conn.in_transaction:
                    self._retry_locked(lambda: self._conn.execute("COMMIT"))

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """One read transaction: a consistent snapshot, never blocked by writers (WAL)."""
        with self._lock:
            self._retry_locked(lambda: self._conn.execute("BEGIN"))
            try:
                yield self._conn
            finally:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")

    def commit_now(self) -> None:
        """Commit the current write transaction early (the block's end then does nothing)."""
        if self._conn.in_transaction:
            self._retry_locked(lambda: self._conn.execute("COMMIT"))
