"""The controller's own memory, kept in its workdir and never in the release repository.

Everything in the repository is untrusted, ``status/`` included: a person can write any status
file, with any ``specHash`` or ``appliedSpecHash``. So what the controller relies on between
passes lives here, in ``<workdir>/state.db`` (SQLite, one controller per workdir):

- the trust ledger (``controller.access.TrustState``): the anchor, the last main commit judged
  and the blobs it authorized;
- the status of every release as the controller knows it (:meth:`ControllerState.statuses`,
  recorded after every pass by :meth:`ControllerState.remember`, pushed or not): ``decide``
  reads these, never the files in git;
- the status files as the controller last pushed them (:meth:`ControllerState.pushed`). A
  status file in git that differs from that record was edited by a person: it is
  overwritten and the edit is reported.

Pushed files are recorded in two steps so that a crash between the push and the record loses
nothing and invents nothing: :meth:`ControllerState.stage` records the files of a status
commit before it is pushed, :meth:`ControllerState.confirm` after the push; on the next start
:meth:`ControllerState.settle` keeps a staged batch only if its commit reached main.

Errors: :class:`StateError` (one line, exit code 2 in the CLI) for a database that is corrupt,
read-only or written by a newer relctl.

Called by ``controller.reconcile`` (``run_pass``) and ``controller.cli`` (``relctl trust``).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Self

__all__ = ["STATE_FILE", "ControllerState", "StateError"]

STATE_FILE = "state.db"
_SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS status (key TEXT PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS pushed (key TEXT PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS pending (key TEXT PRIMARY KEY, data BLOB, commit_sha TEXT NOT NULL);
"""


class StateError(Exception):
    """The controller's state database cannot be used; ``str()`` says what to do."""


class ControllerState:
    """``<workdir>/state.db``: the controller's memory (use as a context manager)."""

    def __init__(self, workdir: Path) -> None:
        self.path = Path(workdir) / STATE_FILE
        self._db: sqlite3.Connection | None = None

    def __enter__(self) -> Self:
        return self.open()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def open(self) -> Self:
        if self._db is not None:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # The daemon runs passes on a scheduler thread, one at a time (Controller._lock).
            db = sqlite3.connect(
                self.path, isolation_level=None, timeout=10, check_same_thread=False
            )
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(_SCHEMA)
            row = db.execute("SELECT value FROM meta WHERE name = 'schema'").fetchone()
            if row is None:
                db.execute("INSERT INTO meta VALUES ('schema', ?)", (str(_SCHEMA_VERSION),))
            elif row[0] != str(_SCHEMA_VERSION):
                db.close()
                raise StateError(
                    f"{self.path} was written by another relctl version (schema {row[0]}, "
                    f"this relctl reads {_SCHEMA_VERSION}); use that version or another workdir"
                )
        except sqlite3.Error as exc:
            raise StateError(self._broken(exc)) from None
        self._db = db
        return self

    @property
    def closed(self) -> bool:
        return self._db is None

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def _broken(self, exc: Exception) -> str:
        return (
            f"the controller's state database {self.path} cannot be used ({exc}); "
            "check its permissions, or move it away to start over: the controller then "
            "re-learns from the platform and needs --trust-anchor again"
        )

    @property
    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise StateError(f"{self.path} is not open")
        return self._db

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            yield conn
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise StateError(self._broken(exc)) from None
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        try:
            return self._conn.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise StateError(self._broken(exc)) from None

    # -- small named values ----------------------------------------------------------------

    def get(self, name: str) -> Any:
        """A JSON value recorded under ``name``, or None."""
        rows = self._query("SELECT value FROM meta WHERE name = ?", (name,))
        return json.loads(rows[0][0]) if rows else None

    def set(self, name: str, value: Any) -> None:
        """Record ``value`` (JSON) under ``name``; None removes it."""
        with self._transaction() as conn:
            if value is None:
                conn.execute("DELETE FROM meta WHERE name = ?", (name,))
            else:
                conn.execute(
                    "INSERT OR REPLACE INTO meta VALUES (?, ?)",
                    (name, json.dumps(value, sort_keys=True, separators=(",", ":"))),
                )

    # -- statuses: what the controller knows, and what it pushed -----------------------------

    def statuses(self) -> dict[str, bytes]:
        """Every release's status as the controller last computed it, by release key."""
        return {key: bytes(data) for key, data in self._query("SELECT key, data FROM status")}

    def remember(self, changes: Mapping[str, bytes | None]) -> None:
        """Record what the controller now knows of these releases (None: forget one)."""
        if not changes:
            return
        with self._transaction() as conn:
            conn.executemany(
                "DELETE FROM status WHERE key = ?",
                ((key,) for key, data in changes.items() if data is None),
            )
            conn.executemany(
                "INSERT OR REPLACE INTO status VALUES (?, ?)",
                ((key, data) for key, data in changes.items() if data is not None),
            )

    def pushed(self) -> dict[str, bytes]:
        """The status files as the controller last pushed them, by release key."""
        return {key: bytes(data) for key, data in self._query("SELECT key, data FROM pushed")}

    def stage(self, commit: str, files: Mapping[str, bytes | None]) -> None:
        """Record the status files of ``commit`` before it is pushed (None: deleted)."""
        with self._transaction() as conn:
            conn.execute("DELETE FROM pending")
            conn.executemany(
                "INSERT INTO pending VALUES (?, ?, ?)",
                ((key, data, commit) for key, data in files.items()),
            )

    def confirm(self) -> None:
        """The staged commit was pushed: its files are now what the controller pushed."""
        with self._transaction() as conn:
            self._apply_pending(conn)

    def discard(self) -> None:
        """The staged commit was not pushed: forget it."""
        with self._transaction() as conn:
            conn.execute("DELETE FROM pending")

    def settle(self, reached_main: Callable[[str], bool]) -> None:
        """After a crash: keep a staged batch if its commit reached main, else forget it."""
        rows = self._query("SELECT DISTINCT commit_sha FROM pending")
        if not rows:
            return
        reached = reached_main(rows[0][0])
        with self._transaction() as conn:
            if reached:
                self._apply_pending(conn)
            else:
                conn.execute("DELETE FROM pending")

    @staticmethod
    def _apply_pending(conn: sqlite3.Connection) -> None:
        conn.execute("DELETE FROM pushed WHERE key IN (SELECT key FROM pending)")
        conn.execute("INSERT INTO pushed SELECT key, data FROM pending WHERE data IS NOT NULL")
        conn.execute("DELETE FROM pending")
