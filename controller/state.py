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
  overwritten and the edit is reported;
- what makes a restart cheap, never trusted beyond what it claims: the parsed form of each
  remembered status (:meth:`ControllerState.parsed`: JSON beside the YAML, keyed by a digest
  of the YAML bytes and tagged with the format that wrote it, so a stale, foreign or corrupt
  row is ignored and the YAML parsed instead), when each release was last observed on the
  platform (:meth:`ControllerState.observed`) with the platform's list cursor they were
  last checked against (:meth:`ControllerState.list_cursor`), and a trust generation that
  ``relctl trust reset`` bumps (:meth:`ControllerState.trust_generation`), which a running
  controller compares before it skips a pass over an unchanged main.

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
from datetime import datetime
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
CREATE TABLE IF NOT EXISTS parsed (key TEXT PRIMARY KEY, digest BLOB NOT NULL, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS observed (key TEXT PRIMARY KEY, at TEXT NOT NULL);
"""
# The last two tables only make a restart cheaper; they are additive (an older relctl ignores
# them), so the schema version stays 1. A row an older relctl left stale is caught by its
# digest (parsed) or errs early (observed: a release is then observed again sooner).
_PARSED_TAG = "parsed-format"
_TRUST_GENERATION = "trust-generation"
_LIST_CURSOR = "list-cursor"


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

    def remember(
        self,
        changes: Mapping[str, bytes | None],
        parsed: Mapping[str, tuple[bytes, bytes]] | None = None,
        *,
        tag: str = "",
    ) -> None:
        """Record what the controller now knows of these releases (None: forget one).

        ``parsed`` adds (digest of the YAML, parsed form) rows written in format ``tag``
        (see :meth:`parsed`); rows of another tag are dropped first. A forgotten release
        loses its parsed row and its observation time too.
        """
        if not changes and not parsed:
            return
        with self._transaction() as conn:
            gone = [(key,) for key, data in changes.items() if data is None]
            conn.executemany("DELETE FROM status WHERE key = ?", gone)
            conn.executemany("DELETE FROM parsed WHERE key = ?", gone)
            conn.executemany("DELETE FROM observed WHERE key = ?", gone)
            conn.executemany(
                "INSERT OR REPLACE INTO status VALUES (?, ?)",
                ((key, data) for key, data in changes.items() if data is not None),
            )
            if parsed:
                row = conn.execute("SELECT value FROM meta WHERE name = ?", (_PARSED_TAG,))
                found = row.fetchone()
                if found is None or found[0] != json.dumps(tag):
                    conn.execute("DELETE FROM parsed")
                    conn.execute(
                        "INSERT OR REPLACE INTO meta VALUES (?, ?)", (_PARSED_TAG, json.dumps(tag))
                    )
                conn.executemany(
                    "INSERT OR REPLACE INTO parsed VALUES (?, ?, ?)",
                    ((key, digest, data) for key, (digest, data) in parsed.items()),
                )

    def parsed(self, tag: str) -> dict[str, tuple[bytes, bytes]]:
        """The parsed form of remembered statuses, by key: (digest of the YAML it was parsed
        from, data). Empty when the rows were written in another format than ``tag``.

        A cache only: the caller checks each digest against :meth:`statuses` and must treat
        the data as untrusted bytes (it may be corrupt); the YAML stays the record.
        """
        if self.get(_PARSED_TAG) != tag:
            return {}
        return {
            key: (bytes(digest), bytes(data))
            for key, digest, data in self._query("SELECT key, digest, data FROM parsed")
        }

    # -- observation times and the trust generation --------------------------------------------

    def observed(self) -> dict[str, datetime]:
        """When each release was last observed on the platform; unreadable rows are left out
        (the release is then simply observed again)."""
        found: dict[str, datetime] = {}
        for key, at in self._query("SELECT key, at FROM observed"):
            try:
                moment = datetime.fromisoformat(at) if isinstance(at, str) else None
            except ValueError:
                moment = None
            if moment is not None and moment.tzinfo is not None:
                found[key] = moment
        return found

    def record_observed(
        self, times: Mapping[str, datetime | None], *, cursor: str | None = None
    ) -> None:
        """Record when releases were observed (None: forget a release's time), and with
        them, when given, the platform's list cursor those times were checked against."""
        if not times and cursor is None:
            return
        with self._transaction() as conn:
            if cursor is not None:
                conn.execute(
                    "INSERT OR REPLACE INTO meta VALUES (?, ?)", (_LIST_CURSOR, json.dumps(cursor))
                )
            conn.executemany(
                "DELETE FROM observed WHERE key = ?",
                ((key,) for key, at in times.items() if at is None),
            )
            conn.executemany(
                "INSERT OR REPLACE INTO observed VALUES (?, ?)",
                ((key, at.isoformat()) for key, at in times.items() if at is not None),
            )

    def list_cursor(self) -> str | None:
        """The platform's list cursor recorded with the observation times (None: none)."""
        value = self.get(_LIST_CURSOR)
        return value if isinstance(value, str) else None

    def forget_observed(self) -> None:
        """Forget every observation time (after a failed push: observe everything again)."""
        with self._transaction() as conn:
            conn.execute("DELETE FROM observed")

    def trust_generation(self) -> int:
        """A number that changes whenever the operator re-anchors trust."""
        value = self.get(_TRUST_GENERATION)
        return value if isinstance(value, int) and not isinstance(value, bool) else 0

    def bump_trust_generation(self) -> None:
        """Trust was re-anchored: a running controller must not skip its next pass."""
        self.set(_TRUST_GENERATION, self.trust_generation() + 1)

    def unconfirmed(self) -> bool:
        """Whether a status commit was staged and never confirmed or discarded."""
        return bool(self._query("SELECT 1 FROM pending LIMIT 1"))

    def statuses_and_pushed(self) -> tuple[dict[str, bytes], dict[str, bytes]]:
        """:meth:`statuses` and :meth:`pushed` from one snapshot of the database, a pushed
        file equal to the status known being the very same bytes object (one copy)."""
        conn = self._conn
        try:
            conn.execute("BEGIN")  # one read snapshot for both queries
            try:
                known = {
                    key: bytes(data) for key, data in conn.execute("SELECT key, data FROM status")
                }
                rows = conn.execute(
                    "SELECT p.key, CASE WHEN p.data = s.data THEN NULL ELSE p.data END "
                    "FROM pushed p LEFT JOIN status s ON s.key = p.key"
                ).fetchall()
            finally:
                conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StateError(self._broken(exc)) from None
        pushed = {key: known[key] if data is None else bytes(data) for key, data in rows}
        return known, pushed

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
