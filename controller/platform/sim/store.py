"""SQLite persistence of the platform simulator: schema, connections, transactions.

One database file holds the whole simulated platform (target apps, uploaded versions,
releases, idempotency records, clock and fault settings). It is opened in WAL mode with a
busy timeout, and every mutation runs in one ``BEGIN IMMEDIATE`` transaction, so the
controller and a person running ``relctl platform ...`` can use it at the same time: writers
queue, readers never block, nothing is lost. When the database stays locked longer than the
timeout the caller gets :class:`~controller.platform.errors.Transient` (nothing happened),
never a raw ``sqlite3.OperationalError``.

A ``Store`` opens only a simulator's database: a missing file (unless asked to create it, as
``relctl platform init`` does), a file that is not SQLite, an SQLite database without the
simulator's tables, a corrupt or a read-only one is refused with
:class:`~controller.platform.errors.PlatformUnusable`, one line naming the path and the fix,
and so is any such failure met later. The schema is never added to a database that has other
tables.

Called by :class:`controller.platform.sim.Simulator`; the rows themselves are read and written
by ``controller.platform.sim.tables``.
"""

from __future__ import annotations

import json
import random
import shlex
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from controller.platform.errors import PlatformUnusable, Transient

#: The schema this code writes. Schema 1 (before ``list_releases``) is upgraded on open.
SCHEMA_VERSION = 2
#: Older schemas this code upgrades in place when it opens them.
UPGRADABLE_VERSIONS = frozenset({1})

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
    data         TEXT NOT NULL,
    -- the platform-wide change sequence of the release's last visible change (list_releases)
    change_seq   INTEGER NOT NULL DEFAULT 0,
    -- digest of the snapshot the release shows (a save that changes it: a new change_seq)
    digest       TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS releases_by_target ON releases (mini_program, target_app, seq);
CREATE INDEX IF NOT EXISTS releases_by_due ON releases (due) WHERE due IS NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS releases_by_change ON releases (change_seq);
CREATE TABLE IF NOT EXISTS idempotency (
    key        TEXT PRIMARY KEY,
    operation  TEXT NOT NULL,
    request    TEXT NOT NULL,
    ok         INTEGER NOT NULL,
    result     TEXT NOT NULL,
    created_at REAL NOT NULL
);
"""

#: The tables that make an SQLite file a simulator's database.
TABLES = frozenset({"meta", "apps", "versions", "releases", "idempotency"})

#: How long a transaction waits for another process's lock before giving up (seconds).
LOCK_TIMEOUT = 30.0


def _is_lock_error(error: sqlite3.Error) -> bool:
    text = str(error).lower()
    return isinstance(error, sqlite3.OperationalError) and ("locked" in text or "busy" in text)


def _init_hint(path: Path) -> str:
    return f"`relctl platform --db {shlex.quote(str(path))} init`"


def unusable(path: Path, error: sqlite3.Error) -> PlatformUnusable:
    """The one-line refusal for an SQLite error that means the file cannot be used."""
    name = str(getattr(error, "sqlite_errorname", "") or "")
    if name == "SQLITE_NOTADB":
        return PlatformUnusable(
            f"{path} is not a platform simulator database (not an SQLite file): point to the "
            "simulator's database, or create a new one at another path with "
            "`relctl platform --db PATH init`"
        )
    if name.startswith("SQLITE_CORRUPT"):
        return PlatformUnusable(
            f"the platform simulator database {path} is corrupt ({error}): restore it from a "
            "backup, or create a new one at another path with `relctl platform --db PATH init`"
        )
    if name.startswith("SQLITE_READONLY"):
        return PlatformUnusable(
            f"the platform simulator database {path} is read-only ({error}): the simulator "
            "needs to write to the file and to its directory"
        )
    if name.startswith("SQLITE_CANTOPEN"):
        return PlatformUnusable(f"cannot open the platform simulator database {path}: {error}")
    return PlatformUnusable(f"the platform simulator database {path} cannot be used: {error}")


class Store:
    """One SQLite database file, opened for the simulator (thread-safe, process-safe)."""

    def __init__(
        self,
        path: Path | str,
        *,
        create: bool = True,
        lock_timeout: float = LOCK_TIMEOUT,
        release_digest: Callable[[str], str] | None = None,
    ) -> None:
        """Open the simulator's database at ``path``; ``create`` allows a new (empty) one.

        ``release_digest`` maps a stored release document (``releases.data``) to the digest
        of the snapshot it shows; an upgrade from schema 1 fills ``releases.digest`` with it
        (without it the digests stay empty and each release takes a new change sequence at
        its next save).

        Raises PlatformUnusable for a missing file (without ``create``), a file that is not a
        simulator's database, a corrupt or a read-only one; Transient when another process
        holds the lock longer than ``lock_timeout``.
        """
        self.path = Path(path)
        self.lock_timeout = lock_timeout
        self._release_digest = release_digest
        if not create and not self.path.exists():
            raise PlatformUnusable(
                f"no platform simulator database at {self.path}: run "
                f"{_init_hint(self.path)} to create one, or fix the path"
            )
        self._lock = threading.RLock()
        try:
            if create:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(
                self.path,
                timeout=lock_timeout,
                isolation_level=None,  # we issue BEGIN/COMMIT ourselves
                check_same_thread=False,
            )
        except OSError as error:
            raise PlatformUnusable(
                f"cannot create the platform simulator database {self.path}: {error}"
            ) from None
        except sqlite3.Error as error:
            raise unusable(self.path, error) from None
        self._conn.row_factory = sqlite3.Row
        try:
            self._retry_locked(lambda: self._setup(create))
        except BaseException:
            self._conn.close()
            raise

    # --- lifecycle -----------------------------------------------------------------------
    def _setup(self, create: bool) -> None:
        self._conn.execute(f"PRAGMA busy_timeout = {int(self.lock_timeout * 1000)}")
        self._check_identity(create)  # before anything writes to the file
        mode = self._conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":  # pragma: no cover - e.g. a read-only medium
            raise PlatformUnusable(f"cannot open {self.path} in WAL mode (got {mode})")
        self._conn.execute("PRAGMA synchronous = NORMAL")
        with self.write() as conn:
            if self._schema_version(conn) == 1:
                self._upgrade_1_to_2(conn)
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)",
                (json.dumps(SCHEMA_VERSION),),
            )
            conn.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('platform_id', ?)",
                (json.dumps(uuid.uuid4().hex),),
            )

    @staticmethod
    def _schema_version(conn: sqlite3.Connection) -> int | None:
        """The stored schema version (None: a new, empty database)."""
        exists = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
        ).fetchone()
        if exists is None:
            return None
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        return None if row is None else int(json.loads(row[0]))

    def _upgrade_1_to_2(self, conn: sqlite3.Connection) -> None:
        """Schema 1 -> 2: a change sequence per release (in release order) and its digest."""
        conn.execute("ALTER TABLE releases ADD COLUMN change_seq INTEGER NOT NULL DEFAULT 0")
        conn.execute("ALTER TABLE releases ADD COLUMN digest TEXT NOT NULL DEFAULT ''")
        conn.execute("UPDATE releases SET change_seq = seq")
        if self._release_digest is not None:
            rows = conn.execute("SELECT release_id, data FROM releases").fetchall()
            for row in rows:
                conn.execute(
                    "UPDATE releases SET digest = ? WHERE release_id = ?",
                    (self._release_digest(str(row["data"])), row["release_id"]),
                )
        conn.execute(
            "UPDATE meta SET value = ? WHERE key = 'schema_version'",
            (json.dumps(SCHEMA_VERSION),),
        )

    def _check_identity(self, create: bool) -> None:
        """Refuse a file that is not (yet) a simulator's database, unless creating an empty one."""
        rows = self._conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        tables = {str(row[0]) for row in rows.fetchall()}
        if not tables:
            if create:
                return
            raise PlatformUnusable(
                f"{self.path} is empty, not a platform simulator database: run "
                f"{_init_hint(self.path)} to create one"
            )
        missing = TABLES - tables
        if missing:
            raise PlatformUnusable(
                f"{self.path} is an SQLite database but not a platform simulator database (no "
                f"{', '.join(sorted(missing))} table): point to the simulator's database, "
                "or create a new one at another path with `relctl platform --db PATH init`"
            )
        row = self._conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        version = str(row[0]) if row is not None else "none"
        readable = {json.dumps(v) for v in {SCHEMA_VERSION, *UPGRADABLE_VERSIONS}}
        if version not in readable:
            raise PlatformUnusable(
                f"{self.path} has simulator schema {version}, this relctl reads schema "
                f"{SCHEMA_VERSION}: use the relctl that created it, or create a new database "
                "with `relctl platform --db PATH init`"
            )

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # --- transactions ----------------------------------------------------------------------
    def _translate(self, error: sqlite3.Error) -> Exception:
        """The platform error an SQLite error means: busy, or an unusable file.

        Errors of the program itself (constraint violations, misuse) stay what they are.
        """
        if _is_lock_error(error):
            return Transient(f"the platform database {self.path} is busy; try again")
        if type(error) in (sqlite3.OperationalError, sqlite3.DatabaseError):
            return unusable(self.path, error)
        return error

    def _retry_locked(self, action: Any) -> Any:
        """Run ``action`` again while another process holds the lock, up to the timeout."""
        deadline = time.monotonic() + self.lock_timeout
        jitter = random.Random()
        delay = 0.01
        while True:
            try:
                return action()
            except sqlite3.Error as error:
                if not _is_lock_error(error) or time.monotonic() >= deadline:
                    translated = self._translate(error)
                    if translated is error:
                        raise
                    raise translated from error
                time.sleep(delay * (1 + jitter.random()))
                delay = min(delay * 2, 0.5)

    def _rollback(self) -> None:
        if self._conn.in_transaction:
            with suppress(sqlite3.Error):  # a broken file: the error raised says why
                self._conn.execute("ROLLBACK")

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
            except sqlite3.Error as error:
                self._rollback()
                translated = self._translate(error)
                if translated is error:
                    raise
                raise translated from error
            except BaseException:
                self._rollback()
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
            except sqlite3.Error as error:
                translated = self._translate(error)
                if translated is error:
                    raise
                raise translated from error
            finally:
                self._rollback()

    def commit_now(self) -> None:
        """Commit the current write transaction early (the block's end then does nothing)."""
        if self._conn.in_transaction:
            self._retry_locked(lambda: self._conn.execute("COMMIT"))
