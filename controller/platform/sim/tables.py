"""Typed rows of the simulator's database: settings, target apps, versions, releases.

Every function takes a connection inside a transaction of
:class:`controller.platform.sim.store.Store` and reads or writes one kind of row; none opens,
commits or decides anything (the rules are the engine's). ``progress_all`` and ``progressed``
bring stored releases up to ``now`` with :func:`controller.platform.sim.records.advance`.

The change sequence (what ``list_releases`` reads): ``save_release`` stores the digest of the
snapshot a release shows, and gives the release the next platform-wide ``change_seq`` only when
that digest changed, so a save that changes nothing visible (metrics, a pending review that
only a person decides) lists nothing; ``changes_after`` reads one page of it.

Called by :class:`controller.platform.sim.Simulator` and ``controller.platform.sim.faults``.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import asdict
from typing import Any

from controller.platform.errors import NotFound
from controller.platform.protocol import canonical_json
from controller.platform.sim import codec
from controller.platform.sim.clock import ClockSetting
from controller.platform.sim.model import AppSettings, FaultSettings, UploadedVersion
from controller.platform.sim.records import ReleaseRecord, advance


# --- meta: counters and settings --------------------------------------------------------------
def get_meta(conn: sqlite3.Connection, key: str, default: Any = None) -> Any:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return default if row is None else json.loads(row["value"])


def set_meta(conn: sqlite3.Connection, key: str, value: Any) -> None:
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?, ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (key, json.dumps(value, sort_keys=True)),
    )


def next_counter(conn: sqlite3.Connection, name: str) -> int:
    """Increment and return a named counter (release ids, report ids, fault calls)."""
    value = int(get_meta(conn, f"counter:{name}", 0)) + 1
    set_meta(conn, f"counter:{name}", value)
    return value


def clock(conn: sqlite3.Connection) -> ClockSetting:
    return ClockSetting.from_dict(get_meta(conn, "clock", {}))


def faults(conn: sqlite3.Connection) -> FaultSettings:
    return FaultSettings.from_dict(get_meta(conn, "faults", {}))


# --- target apps ------------------------------------------------------------------------------
def find_app(conn: sqlite3.Connection, app_id: str) -> AppSettings | None:
    row = conn.execute("SELECT settings FROM apps WHERE app_id = ?", (app_id,)).fetchone()
    return None if row is None else AppSettings.from_dict(json.loads(row["settings"]))


def app(conn: sqlite3.Connection, app_id: str) -> AppSettings:
    """A configured target app; NotFound (naming the command that configures it) otherwise."""
    found = find_app(conn, app_id)
    if found is None:
        raise NotFound(
            f"target app {app_id!r} is not configured on the platform: run "
            f"`relctl platform set-app {app_id}`"
        )
    return found


def all_apps(conn: sqlite3.Connection) -> list[AppSettings]:
    rows = conn.execute("SELECT settings FROM apps ORDER BY app_id").fetchall()
    return [AppSettings.from_dict(json.loads(r["settings"])) for r in rows]


def save_app(conn: sqlite3.Connection, settings: AppSettings) -> None:
    conn.execute(
        "INSERT INTO apps (app_id, settings) VALUES (?, ?) "
        "ON CONFLICT (app_id) DO UPDATE SET settings = excluded.settings",
        (settings.app_id, json.dumps(settings.to_dict(), sort_keys=True)),
    )


# --- uploaded versions ------------------------------------------------------------------------
def _version_from_row(row: sqlite3.Row) -> UploadedVersion:
    data = json.loads(row["data"])
    return UploadedVersion(
        mini_program=row["mini_program"],
        version=row["version"],
        uploaded_at=float(row["uploaded_at"]),
        compat_failures=tuple(data.get("compat_failures", ())),
        build_fails=bool(data.get("build_fails", False)),
    )


def load_version(
    conn: sqlite3.Connection, mini_program: str, version: str
) -> UploadedVersion | None:
    row = conn.execute(
        "SELECT * FROM versions WHERE mini_program = ? AND version = ?", (mini_program, version)
    ).fetchone()
    return None if row is None else _version_from_row(row)


def versions(conn: sqlite3.Connection, mini_program: str | None = None) -> list[UploadedVersion]:
    """Uploaded versions (of one mini program, or all), in upload order per mini program."""
    rows = conn.execute(
        "SELECT * FROM versions WHERE ? IS NULL OR mini_program = ? "
        "ORDER BY mini_program, uploaded_at",
        (mini_program, mini_program),
    ).fetchall()
    return [_version_from_row(row) for row in rows]


def save_version(conn: sqlite3.Connection, uploaded: UploadedVersion) -> None:
    data = {"compat_failures": list(uploaded.compat_failures), "build_fails": uploaded.build_fails}
    conn.execute(
        "INSERT INTO versions (mini_program, version, uploaded_at, data) VALUES (?, ?, ?, ?)",
        (
            uploaded.mini_program,
            uploaded.version,
            uploaded.uploaded_at,
            json.dumps(data, sort_keys=True),
        ),
    )


# --- releases ---------------------------------------------------------------------------------
def _decode(row: sqlite3.Row) -> ReleaseRecord:
    return ReleaseRecord(**json.loads(row["data"]))


def select_releases(
    conn: sqlite3.Connection, where: str, params: tuple[Any, ...]
) -> list[ReleaseRecord]:
    """Releases matching an SQL condition over the indexed columns, oldest first."""
    rows = conn.execute(f"SELECT data FROM releases WHERE {where} ORDER BY seq", params)
    return [_decode(row) for row in rows.fetchall()]


def releases_on(
    conn: sqlite3.Connection, mini_program: str, target_app: str
) -> list[ReleaseRecord]:
    """Every release of a mini program on one target app, oldest first."""
    return select_releases(conn, "mini_program = ? AND target_app = ?", (mini_program, target_app))


def load_release(conn: sqlite3.Connection, release_id: str) -> ReleaseRecord:
    row = conn.execute("SELECT data FROM releases WHERE release_id = ?", (release_id,)).fetchone()
    if row is None:
        raise NotFound(f"release {release_id!r} does not exist on the platform")
    return _decode(row)


def has_releases(conn: sqlite3.Connection) -> bool:
    return conn.execute("SELECT 1 FROM releases LIMIT 1").fetchone() is not None


def snapshot_digest(record: ReleaseRecord) -> str:
    """Digest of everything the release's snapshot shows (what ``list_releases`` compares)."""
    text = canonical_json(codec.snapshot_to_dict(record.snapshot()))
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def data_digest(data: str) -> str:
    """``snapshot_digest`` of a stored release document (``releases.data``)."""
    return snapshot_digest(ReleaseRecord(**json.loads(data)))


def save_release(conn: sqlite3.Connection, record: ReleaseRecord) -> None:
    """Insert or update a release; a new visible state takes the next change sequence."""
    conn.execute(
        "INSERT INTO releases "
        "(release_id, seq, mini_program, target_app, version, stage, due, data, digest, "
        "change_seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, "
        "(SELECT COALESCE(MAX(change_seq), 0) + 1 FROM releases)) "
        "ON CONFLICT (release_id) DO UPDATE SET "
        "stage = excluded.stage, due = excluded.due, data = excluded.data, "
        "change_seq = CASE WHEN releases.digest = excluded.digest THEN releases.change_seq "
        "ELSE excluded.change_seq END, digest = excluded.digest",
        (
            record.release_id,
            record.seq,
            record.mini_program,
            record.target_app,
            record.version,
            record.stage,
            record.next_due(),
            json.dumps(asdict(record), sort_keys=True),
            snapshot_digest(record),
        ),
    )


def progressed(conn: sqlite3.Connection, record: ReleaseRecord, now: float) -> ReleaseRecord:
    """The record as it is at ``now`` (time-driven changes applied in memory only)."""
    advance(record, now, lambda app_id: app(conn, app_id))
    return record


def progress_all(conn: sqlite3.Connection, now: float) -> None:
    """Persist every time-driven change due at or before ``now`` (inside a write)."""
    for record in select_releases(conn, "due IS NOT NULL AND due <= ?", (now,)):
        if advance(record, now, lambda app_id: app(conn, app_id)):
            save_release(conn, record)


def progress_pending(conn: sqlite3.Connection, now: float) -> bool:
    """Whether a time-driven change may be due at or before ``now`` (``progress_all`` has work).

    True also for a review that only a person decides (its due time has passed but the clock
    cannot decide it): ``progress_all`` then finds nothing to change, which is correct, only
    slower.
    """
    row = conn.execute("SELECT 1 FROM releases WHERE due IS NOT NULL AND due <= ? LIMIT 1", (now,))
    return row.fetchone() is not None


# --- the change sequence (list_releases) --------------------------------------------------------
def platform_id(conn: sqlite3.Connection) -> str:
    """The identity of this platform database (made with it; cursors carry it)."""
    return str(get_meta(conn, "platform_id", ""))


def last_change(conn: sqlite3.Connection) -> int:
    """The highest change sequence handed out so far (0: no release yet)."""
    row = conn.execute("SELECT COALESCE(MAX(change_seq), 0) AS top FROM releases").fetchone()
    return int(row["top"])


def changes_after(
    conn: sqlite3.Connection, after: int, limit: int
) -> list[tuple[int, ReleaseRecord]]:
    """Up to ``limit`` releases whose last visible change is after ``after``, in change order.

    One query over the ``releases_by_change`` index.
    """
    rows = conn.execute(
        "SELECT change_seq, data FROM releases WHERE change_seq > ? ORDER BY change_seq LIMIT ?",
        (after, limit),
    )
    return [(int(row["change_seq"]), _decode(row)) for row in rows.fetchall()]
