"""The embedded platform simulator: a stateful, persistent stand-in for the mini-program platform.

``Simulator`` implements :class:`~controller.platform.protocol.Platform` over one SQLite file
and enforces the platform's rules with the same typed refusals a real platform gives (see
``docs/platform.md`` for every rule and its error). Every change to a release is computed by the
pure :func:`controller.platform.sim.engine.effect`; this module adds what only a stateful
platform has: ids, due times, the other releases of a target, idempotency and faults. The
platform side of the workflow (target apps, uploads, reviews, metrics, clock, faults) comes
from :class:`~controller.platform.sim.console.PlatformConsole`.

Time-driven progress (a build finishes, a compatibility test finishes, an automatic review
decides) is applied lazily: whenever a call reads or writes the state, every deadline at or
before the simulator's ``now`` is applied, stamped with the deadline itself (not the moment it
was noticed). With a manual clock the simulator is therefore fully deterministic.

Every mutation runs in one ``BEGIN IMMEDIATE`` transaction; the first result (or permanent
error) of each idempotency key is stored in the same transaction and replayed on a repeat.

Callers: the controller through :func:`controller.platform.open_platform` (``sim:PATH``),
``controller.cli_platform``, tests and the demo.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from controller.platform.errors import (
    ERROR_TYPES,
    Conflict,
    NotFound,
    PlatformError,
    RateLimited,
    Transient,
    Unknown,
)
from controller.platform.protocol import (
    LIST_RELEASES_MAX,
    Feedback,
    QrCode,
    ReleaseChanges,
    ReleaseSnapshot,
    TesterChange,
    VersionInfo,
)
from controller.platform.rules import Stage
from controller.platform.sim import actions, codec, engine, tables
from controller.platform.sim.clock import to_datetime
from controller.platform.sim.console import PlatformConsole
from controller.platform.sim.cursor import make_cursor, read_cursor
from controller.platform.sim.faults import draw_fault
from controller.platform.sim.records import ReleaseRecord, advance
from controller.platform.sim.store import Store

T = TypeVar("T")


class Simulator(PlatformConsole):
    """A simulated mini-program platform persisted in one SQLite file.

    Implements the ``Platform`` protocol (what the controller calls) and, through
    ``PlatformConsole``, the platform side (``set_app``, ``upload``, ``review``, ...).
    """

    def __init__(self, path: Path | str, *, create: bool = True) -> None:
        """Open the simulator's database at ``path``, creating it when missing if ``create``.

        ``create=False`` (what ``sim:PATH`` and ``relctl platform`` use, except ``init``)
        refuses a missing file. Either way a file that is not a simulator's database, a
        corrupt or a read-only one raises PlatformUnusable.
        """
        self.path = Path(path)
        self._store = Store(self.path, create=create, release_digest=tables.data_digest)

    # --- lifecycle -------------------------------------------------------------------------
    def close(self) -> None:
        self._store.close()

    def __enter__(self) -> Simulator:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Simulator({str(self.path)!r})"

    # ==========================================================================================
    # Platform protocol: observation
    # ==========================================================================================
    def get_version(self, mini_program: str, version: str) -> VersionInfo | None:
        self._before_call(mutation=False)
        with self._store.read() as conn:
            uploaded = tables.load_version(conn, mini_program, version)
        if uploaded is None:
            return None
        return VersionInfo(mini_program, version, to_datetime(uploaded.uploaded_at))

    def get_release(self, release_id: str) -> ReleaseSnapshot:
        self._before_call(mutation=False)
        with self._store.read() as conn:
            now = tables.clock(conn).now()
            return tables.progressed(conn, tables.load_release(conn, release_id), now).snapshot()

    def find_releases(self, mini_program: str, target_app: str) -> list[ReleaseSnapshot]:
        self._before_call(mutation=False)
        with self._store.read() as conn:
            now = tables.clock(conn).now()
            records = tables.releases_on(conn, mini_program, target_app)
            return [tables.progressed(conn, r, now).snapshot() for r in records]

    def get_feedback(self, release_id: str) -> Feedback:
        self._before_call(mutation=False)
        with self._store.read() as conn:
            now = tables.clock(conn).now()
            record = tables.progressed(conn, tables.load_release(conn, release_id), now)
            return record.feedback(tables.app(conn, record.target_app))

    def list_releases(self, since: str | None = None, *, limit: int = 1000) -> ReleaseChanges:
        """Releases created or changed after the cursor ``since`` (``ListsReleases``).

        Time-driven changes due by now are made first (and take their change sequence), so a
        build, a test or a review the clock finished is listed like a mutation. When nothing is
        due the page is read without taking the write lock. One indexed query per page.
        """
        page = _page_size(limit)
        self._before_call(mutation=False)
        with self._store.read() as conn:
            if not tables.progress_pending(conn, tables.clock(conn).now()):
                return _changes(conn, since, page)
        with self._store.write() as conn:
            tables.progress_all(conn, tables.clock(conn).now())
            return _changes(conn, since, page)

    # ==========================================================================================
    # Platform protocol: mutations
    # ==========================================================================================
    def create_release(
        self,
        mini_program: str,
        version: str,
        target_app: str,
        environment: str,
        *,
        idempotency_key: str,
    ) -> ReleaseSnapshot:
        def body(conn: sqlite3.Connection, now: float) -> ReleaseSnapshot:
            return _create_release(conn, now, mini_program, version, target_app, environment)

        request = {
            "mini_program": mini_program,
            "version": version,
            "target_app": target_app,
            "environment": environment,
        }
        return self._mutate(
            "create_release", idempotency_key, request, body, encode=codec.snapshot_to_dict,
            decode=codec.snapshot_from_dict,
        )  # fmt: skip

    def update_basic_info(
        self, release_id: str, basic_info: Mapping[str, str], *, idempotency_key: str
    ) -> ReleaseSnapshot:
        info = {str(k): str(v) for k, v in basic_info.items()}
        return self._release_op(
            "update_basic_info", release_id, idempotency_key, {"basic_info": info},
            actions.UpdateBasicInfo(info),
        )  # fmt: skip

    def update_configuration(
        self, release_id: str, configuration: Mapping[str, Any], *, idempotency_key: str
    ) -> ReleaseSnapshot:
        config = json.loads(json.dumps(dict(configuration), sort_keys=True, default=str))
        return self._release_op(
            "update_configuration", release_id, idempotency_key, {"configuration": config},
            actions.UpdateConfiguration(config),
        )  # fmt: skip

    def run_compatibility_test(self, release_id: str, *, idempotency_key: str) -> ReleaseSnapshot:
        return self._release_op(
            "run_compatibility_test", release_id, idempotency_key, {}, _new_report
        )

    def apply(self, release_id: str, *, idempotency_key: str) -> ReleaseSnapshot:
        return self._release_op("apply", release_id, idempotency_key, {}, actions.Apply())

    def withdraw(self, release_id: str, *, idempotency_key: str) -> ReleaseSnapshot:
        return self._release_op("withdraw", release_id, idempotency_key, {}, actions.Withdraw())

    def set_testers(
        self, release_id: str, testers: Sequence[str], *, idempotency_key: str
    ) -> TesterChange:
        wanted = tuple(sorted({str(t).strip() for t in testers if str(t).strip()}))

        def body(conn: sqlite3.Connection, now: float) -> TesterChange:
            before, after = _change_release(conn, now, release_id, actions.SetTesters(wanted))
            return TesterChange(
                added=tuple(sorted(set(after.testers) - set(before.testers))),
                removed=tuple(sorted(set(before.testers) - set(after.testers))),
            )

        return self._mutate(
            "set_testers", idempotency_key, {"release_id": release_id, "testers": list(wanted)},
            body, encode=codec.tester_change_to_dict, decode=codec.tester_change_from_dict,
        )  # fmt: skip

    def complete_testing(self, release_id: str, *, idempotency_key: str) -> ReleaseSnapshot:
        return self._release_op(
            "complete_testing", release_id, idempotency_key, {}, actions.CompleteTesting()
        )

    def cancel(self, release_id: str, *, idempotency_key: str) -> ReleaseSnapshot:
        return self._release_op("cancel", release_id, idempotency_key, {}, actions.Cancel())

    def set_grayscale(
        self, release_id: str, percent: int, *, idempotency_key: str
    ) -> ReleaseSnapshot:
        return self._release_op(
            "set_grayscale", release_id, idempotency_key, {"percent": int(percent)},
            actions.SetGrayscale(int(percent)),
        )  # fmt: skip

    def full_release(self, release_id: str, *, idempotency_key: str) -> ReleaseSnapshot:
        return self._release_op(
            "full_release", release_id, idempotency_key, {}, actions.FullRelease()
        )

    def create_qr_code(self, release_id: str, *, idempotency_key: str) -> QrCode:
        def body(conn: sqlite3.Connection, now: float) -> QrCode:
            _before, after = _change_release(conn, now, release_id, actions.CreateQrCode())
            assert after.qr_code is not None
            return after.qr_code

        return self._mutate(
            "create_qr_code", idempotency_key, {"release_id": release_id}, body,
            encode=codec.qr_to_dict, decode=codec.qr_from_dict,
        )  # fmt: skip

    # ==========================================================================================
    # machinery
    # ==========================================================================================
    def _before_call(self, *, mutation: bool) -> str | None:
        """Latency and fault injection for an adapter call.

        Returns ``"unknown"`` when a mutation must happen but answer Unknown; raises
        Transient or RateLimited (after recording the decision) when it must not happen.
        Reads answer with a fault only of the kinds that mean "nothing happened".
        """
        settings = self.fault_settings()
        if settings.latency > 0:
            time.sleep(settings.latency)
        if not settings.active:
            return None
        with self._store.write() as conn:
            return draw_fault(conn, mutation=mutation)

    def _mutate(
        self,
        operation: str,
        key: str,
        request: Mapping[str, Any],
        body: Callable[[sqlite3.Connection, float], T],
        *,
        encode: Callable[[T], dict[str, Any]],
        decode: Callable[[dict[str, Any]], T],
    ) -> T:
        """Run one idempotent mutation: faults, progress, replay or effect, record, answer."""
        if not key:
            raise ValueError("an idempotency key is required")
        settings = self.fault_settings()
        if settings.latency > 0:
            time.sleep(settings.latency)
        request_text = json.dumps({"operation": operation, **request}, sort_keys=True)
        with self._store.write() as conn:
            fault = draw_fault(conn, mutation=True) if tables.faults(conn).active else None
            if fault in ("transient", "rate_limited"):
                retry_after = tables.faults(conn).retry_after
                self._store.commit_now()  # keep the fault counter moving
                if fault == "rate_limited":
                    raise RateLimited(
                        f"{operation}: too many requests; retry after {retry_after:g}s",
                        retry_after=retry_after,
                    )
                raise Transient(f"{operation}: the platform is temporarily unavailable")
            now = tables.clock(conn).now()
            tables.progress_all(conn, now)
            row = conn.execute(
                "SELECT operation, request, ok, result FROM idempotency WHERE key = ?", (key,)
            ).fetchone()
            result: T | None = None
            error: PlatformError | None = None
            if row is not None:
                if row["request"] != request_text:
                    raise Conflict(
                        f"idempotency key {key!r} was already used for a different call "
                        f"({row['operation']}); use a new key for a new call"
                    )
                if row["ok"]:
                    result = decode(json.loads(row["result"]))
                else:
                    stored = json.loads(row["result"])
                    error = ERROR_TYPES.get(stored["code"], PlatformError)(stored["message"])
            else:
                conn.execute("SAVEPOINT effect")
                try:
                    result = body(conn, now)
                except PlatformError as refused:
                    conn.execute("ROLLBACK TO SAVEPOINT effect")
                    error = refused
                conn.execute("RELEASE SAVEPOINT effect")
                stored_result = (
                    encode(result)  # type: ignore[arg-type]
                    if error is None
                    else {"code": error.code, "message": error.message}
                )
                conn.execute(
                    "INSERT INTO idempotency (key, operation, request, ok, result, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        key,
                        operation,
                        request_text,
                        int(error is None),
                        json.dumps(stored_result, sort_keys=True),
                        now,
                    ),
                )
            self._store.commit_now()
        if fault == "unknown":
            raise Unknown(
                f"{operation}: the platform did not confirm the outcome (result status U); "
                "query the release before retrying"
            )
        if error is not None:
            raise error
        return result  # type: ignore[return-value]

    def _release_op(
        self,
        operation: str,
        release_id: str,
        key: str,
        request: Mapping[str, Any],
        action: actions.Action | Callable[[sqlite3.Connection], actions.Action],
    ) -> ReleaseSnapshot:
        """An idempotent ``action`` on one release that answers with its new snapshot.

        ``action`` may be a function of the connection, for actions that need an id the
        platform hands out (a compatibility report's).
        """

        def body(conn: sqlite3.Connection, now: float) -> ReleaseSnapshot:
            todo = action(conn) if callable(action) else action
            return _change_release(conn, now, release_id, todo)[1]

        return self._mutate(
            operation, key, {"release_id": release_id, **request}, body,
            encode=codec.snapshot_to_dict, decode=codec.snapshot_from_dict,
        )  # fmt: skip


# --------------------------------------------------------------------------------------------
# listing changes (inside a transaction, after progress)
# --------------------------------------------------------------------------------------------


def _page_size(limit: int) -> int:
    """``limit`` as a page size: at least 1 (else ValueError), at most ``LIST_RELEASES_MAX``."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"limit must be an integer of at least 1 (got {limit!r})")
    return min(limit, LIST_RELEASES_MAX)


def _changes(conn: sqlite3.Connection, since: str | None, page: int) -> ReleaseChanges:
    """One page of the change sequence after the cursor ``since`` (None: from the start)."""
    platform = tables.platform_id(conn)
    after = 0 if since is None else read_cursor(since, platform, tables.last_change(conn))
    found = tables.changes_after(conn, after, page + 1)
    listed = found[:page]
    last = listed[-1][0] if listed else after
    return ReleaseChanges(
        releases=tuple(record.snapshot() for _seq, record in listed),
        cursor=make_cursor(platform, last),
        more=len(found) > page,
    )


# --------------------------------------------------------------------------------------------
# changing releases (inside a write transaction)
# --------------------------------------------------------------------------------------------


def _change_release(
    conn: sqlite3.Connection, now: float, release_id: str, action: actions.Action
) -> tuple[ReleaseSnapshot, ReleaseSnapshot]:
    """Apply ``action`` to a stored release by the engine's rules, then do what only the
    simulator does: schedule reviews and tests, archive the previous full release, save.

    Returns the release before and after (as the platform shows it).
    """
    record = tables.load_release(conn, release_id)
    app = tables.app(conn, record.target_app)
    before = record.snapshot()
    after = engine.effect(before, action, app, to_datetime(now))
    record.absorb(after)
    if after.stage is Stage.UNDER_REVIEW and before.stage is not Stage.UNDER_REVIEW:
        record.review_due = now + app.review_after
    elif after.stage is not Stage.UNDER_REVIEW:
        record.review_due = None
    report = after.compatibility
    if report is not None and report != before.compatibility:
        uploaded = tables.load_version(conn, record.mini_program, record.version)
        failures = list(uploaded.compat_failures) if uploaded else []
        record.start_report(report, failures, started=now, due=now + app.test_seconds)
    if after.stage is Stage.FULL_RELEASE and before.stage is not Stage.FULL_RELEASE:
        _archive_previous(conn, after, now)
    advance(record, now, lambda app_id: tables.app(conn, app_id))  # zero durations: at once
    tables.save_release(conn, record)
    return before, record.snapshot()


def _new_report(conn: sqlite3.Connection) -> actions.RunCompatibilityTest:
    """Test Compatibility, with the id the platform hands out for the report."""
    return actions.RunCompatibilityTest(f"C-{tables.next_counter(conn, 'report'):06d}")


def _archive_previous(conn: sqlite3.Connection, released: ReleaseSnapshot, now: float) -> None:
    """A full release archives the previous full release of the same target."""
    for other in tables.select_releases(
        conn,
        "mini_program = ? AND target_app = ? AND stage = ?",
        (released.mini_program, released.target_app, str(Stage.FULL_RELEASE)),
    ):
        if other.release_id != released.release_id:
            other.absorb(engine.archived(other.snapshot(), released, to_datetime(now)))
            tables.save_release(conn, other)


def _create_release(
    conn: sqlite3.Connection,
    now: float,
    mini_program: str,
    version: str,
    target_app: str,
    environment: str,
) -> ReleaseSnapshot:
    """Select App, Confirm: a new release of an uploaded version, building from ``now``."""
    app = tables.app(conn, target_app)
    uploaded = tables.load_version(conn, mini_program, version)
    if uploaded is None:
        raise NotFound(
            f"{mini_program} {version} has not been uploaded: upload it before releasing it"
        )
    existing = tables.releases_on(conn, mini_program, target_app)
    engine.check_new_release(
        mini_program, version, target_app, environment, [r.snapshot() for r in existing]
    )
    seq = tables.next_counter(conn, "release")
    record = ReleaseRecord(
        release_id=f"R-{seq:06d}",
        seq=seq,
        mini_program=mini_program,
        version=version,
        target_app=target_app,
        environment=environment,
        stage=str(Stage.BUILDING),
        created_at=now,
        updated_at=now,
        build_due=now + app.build_seconds,
        build_fails=uploaded.build_fails,
        stage_times={str(Stage.BUILDING): now},
        message="building the version package",
    )
    advance(record, now, lambda app_id: tables.app(conn, app_id))
    tables.save_release(conn, record)
    return record.snapshot()
