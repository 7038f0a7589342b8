"""The embedded platform simulator: a stateful, persistent stand-in for the mini-program platform.

``Simulator`` implements :class:`~controller.platform.protocol.Platform` over one SQLite file
and enforces the platform's rules with the same typed refusals a real platform gives (see
``docs/platform.md`` for every rule and its error). It also exposes the *platform side* of the
workflow, which a real platform does by itself or through its console: configuring target
apps, uploading versions, reviewing applications, feeding metrics, moving the clock and
injecting faults. ``relctl platform ...`` is a thin CLI over those.

Time-driven progress (a build finishes, a compatibility test finishes, an automatic review
decides) is applied lazily: whenever a call reads or writes the state, every deadline at or
before the simulator's ``now`` is applied, stamped with the deadline itself (not the moment it
was noticed). With a manual clock the simulator is therefore fully deterministic.

Every mutation runs in one ``BEGIN IMMEDIATE`` transaction; the first result (or permanent
error) of each idempotency key is stored in the same transaction and replayed on a repeat.

Callers: the controller through :func:`controller.platform.open_platform` (``sim:PATH``),
``controller.platform.cli``, tests and the demo.
"""

from __future__ import annotations

import json
import random
import re
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from controller.platform.errors import (
    ERROR_TYPES,
    Conflict,
    InvalidState,
    LimitExceeded,
    NotEditable,
    NotFound,
    PlatformError,
    RateLimited,
    Transient,
    Unknown,
)
from controller.platform.protocol import (
    CompatibilityReport,
    CompatibilityStatus,
    Feedback,
    QrCode,
    ReleaseSnapshot,
    Review,
    ReviewDecision,
    Stage,
    TesterChange,
    VersionInfo,
    configuration_digest,
)
from controller.platform.rules import (
    BASIC_INFO_EDITABLE_STAGES,
    CANCELABLE_STAGES,
    CONFIGURATION_EDITABLE_STAGES,
    FINAL_STAGES,
    IN_FLIGHT_STAGES,
    RELEASABLE_STAGES,
    RELEASED_STAGES,
    Version,
)
from controller.platform.sim import codec
from controller.platform.sim.clock import ClockSetting, to_datetime, to_epoch
from controller.platform.sim.model import (
    AppSettings,
    FaultSettings,
    ReviewMode,
    UploadedVersion,
    compatibility_cases,
    in_grayscale,
    parse_compat_failures,
    pass_rate,
    qr_code,
    rules_rejection,
)
from controller.platform.sim.store import Store, get_meta, next_counter, set_meta

T = TypeVar("T")


@dataclass
class _Record:
    """The stored state of one release (a JSON document in ``releases.data``)."""

    release_id: str
    seq: int
    mini_program: str
    version: str
    target_app: str
    environment: str
    stage: str
    created_at: float
    updated_at: float
    build_due: float | None = None
    build_fails: bool = False
    basic_info: dict[str, str] = field(default_factory=dict)
    configuration: dict[str, Any] = field(default_factory=dict)
    #: {report_id, digest, failures, started_at, due, finished_at}
    compat: dict[str, Any] | None = None
    #: {decision, reason, pilot_required, decided_at}
    review: dict[str, Any] | None = None
    review_due: float | None = None
    testers: list[str] = field(default_factory=list)
    grayscale: int = 0
    peak_grayscale: int = 0
    stage_times: dict[str, float] = field(default_factory=dict)
    qr: dict[str, str] | None = None
    message: str = ""
    crash_rate: float = 0.0
    error_rate: float = 0.0

    @property
    def current(self) -> Stage:
        return Stage(self.stage)

    def enter(self, stage: Stage, at: float, message: str) -> None:
        self.stage = str(stage)
        self.stage_times[str(stage)] = at
        self.updated_at = max(self.updated_at, at)
        self.message = message

    def next_due(self) -> float | None:
        """The earliest time-driven change still pending (None: nothing pending)."""
        dues: list[float] = []
        if self.current is Stage.BUILDING and self.build_due is not None:
            dues.append(self.build_due)
        if self.compat is not None and self.compat.get("finished_at") is None:
            dues.append(float(self.compat["due"]))
        if self.current is Stage.UNDER_REVIEW and self.review_due is not None:
            dues.append(self.review_due)
        return min(dues) if dues else None

    def label(self) -> str:
        return (
            f"release {self.release_id} ({self.mini_program} {self.version} on {self.target_app})"
        )


# --------------------------------------------------------------------------------------------
# the simulator
# --------------------------------------------------------------------------------------------


class Simulator:
    """A simulated mini-program platform persisted in one SQLite file.

    Implements the ``Platform`` protocol (what the controller calls) and the platform side
    (what the platform or its console does: ``set_app``, ``upload``, ``review``, ...).
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._store = Store(self.path)

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
            uploaded = _load_version(conn, mini_program, version)
        if uploaded is None:
            return None
        return VersionInfo(mini_program, version, to_datetime(uploaded.uploaded_at))

    def get_release(self, release_id: str) -> ReleaseSnapshot:
        self._before_call(mutation=False)
        with self._store.read() as conn:
            now = _clock(conn).now()
            record = _progressed(conn, _load(conn, release_id), now)
            return _snapshot(record)

    def find_releases(self, mini_program: str, target_app: str) -> list[ReleaseSnapshot]:
        self._before_call(mutation=False)
        with self._store.read() as conn:
            now = _clock(conn).now()
            records = _select(
                conn, "mini_program = ? AND target_app = ?", (mini_program, target_app)
            )
            return [_snapshot(_progressed(conn, r, now)) for r in records]

    def get_feedback(self, release_id: str) -> Feedback:
        self._before_call(mutation=False)
        with self._store.read() as conn:
            now = _clock(conn).now()
            record = _progressed(conn, _load(conn, release_id), now)
            app = _app(conn, record.target_app)
        return _feedback(record, app)

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
            return _snapshot(
                _create_release(
                    conn,
                    now,
                    mini_program=mini_program,
                    version=version,
                    target_app=target_app,
                    environment=environment,
                )
            )

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

        def change(record: _Record, now: float, conn: sqlite3.Connection) -> None:
            if record.current not in BASIC_INFO_EDITABLE_STAGES:
                raise NotEditable(
                    f"{record.label()} is fully released: basic info is editable only until "
                    "full release; release a new version to change it"
                )
            record.basic_info = info
            record.updated_at = now

        return self._release_op(
            "update_basic_info", release_id, idempotency_key, {"basic_info": info}, change
        )

    def update_configuration(
        self, release_id: str, configuration: Mapping[str, Any], *, idempotency_key: str
    ) -> ReleaseSnapshot:
        config = json.loads(json.dumps(dict(configuration), sort_keys=True, default=str))

        def change(record: _Record, now: float, conn: sqlite3.Connection) -> None:
            if record.current is Stage.BUILDING:
                raise InvalidState(
                    f"{record.label()} is still building; the configuration can be changed "
                    "once the new version is created"
                )
            if record.current not in CONFIGURATION_EDITABLE_STAGES:
                hint = (
                    "withdraw the application first"
                    if record.current is Stage.UNDER_REVIEW
                    else "release a new version to change it"
                )
                raise NotEditable(
                    f"{record.label()} is {record.stage}: only basic info is editable after "
                    f"applying; {hint}"
                )
            record.configuration = config
            record.updated_at = now

        return self._release_op(
            "update_configuration", release_id, idempotency_key, {"configuration": config}, change
        )

    def run_compatibility_test(self, release_id: str, *, idempotency_key: str) -> ReleaseSnapshot:
        def change(record: _Record, now: float, conn: sqlite3.Connection) -> None:
            if record.current not in CONFIGURATION_EDITABLE_STAGES:
                raise InvalidState(
                    f"{record.label()} is {record.stage}: compatibility tests run in "
                    "NEW_VERSION_CREATED or REJECTED"
                )
            if record.compat is not None and record.compat.get("finished_at") is None:
                raise InvalidState(
                    f"a compatibility test of {record.label()} is already running "
                    f"(report {record.compat['report_id']}); wait for it to finish"
                )
            app = _app(conn, record.target_app)
            uploaded = _load_version(conn, record.mini_program, record.version)
            failures = list(uploaded.compat_failures) if uploaded else []
            record.compat = {
                "report_id": f"C-{next_counter(conn, 'report'):06d}",
                "digest": configuration_digest(record.configuration),
                "failures": failures,
                "started_at": now,
                "due": now + app.test_seconds,
                "finished_at": None,
            }
            record.updated_at = now

        return self._release_op("run_compatibility_test", release_id, idempotency_key, {}, change)

    def apply(self, release_id: str, *, idempotency_key: str) -> ReleaseSnapshot:
        def change(record: _Record, now: float, conn: sqlite3.Connection) -> None:
            if record.current not in CONFIGURATION_EDITABLE_STAGES:
                raise InvalidState(
                    f"{record.label()} is {record.stage}: apply to release from "
                    "NEW_VERSION_CREATED or REJECTED"
                )
            digest = configuration_digest(record.configuration)
            compat = record.compat
            if compat is None or compat["digest"] != digest:
                raise InvalidState(
                    f"{record.label()} has no compatibility report for its current "
                    "configuration: run a compatibility test first"
                )
            if compat.get("finished_at") is None:
                raise InvalidState(
                    f"the compatibility test of {record.label()} (report "
                    f"{compat['report_id']}) is still running: wait for the report first"
                )
            app = _app(conn, record.target_app)
            record.review_due = now + app.review_after
            record.enter(Stage.UNDER_REVIEW, now, f"applied to release; review: {app.review}")

        return self._release_op("apply", release_id, idempotency_key, {}, change)

    def withdraw(self, release_id: str, *, idempotency_key: str) -> ReleaseSnapshot:
        def change(record: _Record, now: float, conn: sqlite3.Connection) -> None:
            if record.current is not Stage.UNDER_REVIEW:
                raise InvalidState(
                    f"{record.label()} is {record.stage}: only an application under review "
                    "can be withdrawn"
                )
            record.review_due = None
            record.enter(Stage.NEW_VERSION_CREATED, now, "application withdrawn; editable again")

        return self._release_op("withdraw", release_id, idempotency_key, {}, change)

    def set_testers(
        self, release_id: str, testers: Sequence[str], *, idempotency_key: str
    ) -> TesterChange:
        wanted = sorted({str(t).strip() for t in testers if str(t).strip()})

        def body(conn: sqlite3.Connection, now: float) -> TesterChange:
            record = _load_mutable(conn, release_id)
            if record.current is not Stage.PILOT_TESTING:
                raise InvalidState(
                    f"{record.label()} is {record.stage}: testers can be set only during "
                    "pilot testing"
                )
            app = _app(conn, record.target_app)
            if len(wanted) > app.testers_max:
                raise LimitExceeded(
                    f"{len(wanted)} testers for {record.label()}: {app.app_id} allows at most "
                    f"{app.testers_max}"
                )
            bad = [t for t in wanted if not re.fullmatch(app.user_id_pattern, t)]
            if bad:
                raise NotFound(
                    f"{len(bad)} tester id(s) are not {app.app_id} user ids (expected "
                    f"{app.user_id_pattern}): {', '.join(bad[:5])}"
                )
            before = set(record.testers)
            change = TesterChange(
                added=tuple(sorted(set(wanted) - before)),
                removed=tuple(sorted(before - set(wanted))),
            )
            record.testers = wanted
            record.updated_at = now
            _save(conn, record)
            return change

        return self._mutate(
            "set_testers", idempotency_key, {"release_id": release_id, "testers": wanted}, body,
            encode=codec.tester_change_to_dict, decode=codec.tester_change_from_dict,
        )  # fmt: skip

    def complete_testing(self, release_id: str, *, idempotency_key: str) -> ReleaseSnapshot:
        def change(record: _Record, now: float, conn: sqlite3.Connection) -> None:
            if record.current is not Stage.PILOT_TESTING:
                raise InvalidState(
                    f"{record.label()} is {record.stage}: testing can be completed only "
                    "during pilot testing"
                )
            record.enter(Stage.RELEASE_PREPARATION, now, "pilot testing completed")

        return self._release_op("complete_testing", release_id, idempotency_key, {}, change)

    def cancel(self, release_id: str, *, idempotency_key: str) -> ReleaseSnapshot:
        def change(record: _Record, now: float, conn: sqlite3.Connection) -> None:
            if record.current not in CANCELABLE_STAGES:
                raise InvalidState(
                    f"{record.label()} is {record.stage} and cannot be canceled; to replace a "
                    "full release, fully release a newer version"
                )
            was = record.stage
            record.grayscale = 0
            record.review_due = None
            record.enter(
                Stage.CANCELED,
                now,
                f"canceled in {was}; final: release a new version to try again",
            )

        return self._release_op("cancel", release_id, idempotency_key, {}, change)

    def set_grayscale(
        self, release_id: str, percent: int, *, idempotency_key: str
    ) -> ReleaseSnapshot:
        def change(record: _Record, now: float, conn: sqlite3.Connection) -> None:
            if record.current not in RELEASABLE_STAGES:
                raise InvalidState(
                    f"{record.label()} is {record.stage}: grayscale release is possible from "
                    "RELEASE_PREPARATION or GRAYSCALE"
                )
            app = _app(conn, record.target_app)
            if not app.allows_grayscale(percent):
                raise LimitExceeded(
                    f"{percent}% is not an allowed grayscale value on {app.app_id} "
                    f"(allowed: {app.describe_grayscale_values()})"
                )
            if percent <= record.grayscale:
                raise InvalidState(
                    f"{record.label()} is already at {record.grayscale}%: grayscale only "
                    f"rises (asked {percent}%); to roll back, cancel the release"
                )
            if percent == 100:
                _full_release(conn, record, now)
                return
            record.grayscale = percent
            record.peak_grayscale = max(record.peak_grayscale, percent)
            record.enter(Stage.GRAYSCALE, now, f"released to {percent}% of app users")

        return self._release_op(
            "set_grayscale", release_id, idempotency_key, {"percent": int(percent)}, change
        )

    def full_release(self, release_id: str, *, idempotency_key: str) -> ReleaseSnapshot:
        def change(record: _Record, now: float, conn: sqlite3.Connection) -> None:
            if record.current not in RELEASABLE_STAGES:
                raise InvalidState(
                    f"{record.label()} is {record.stage}: full release is possible from "
                    "RELEASE_PREPARATION or GRAYSCALE"
                )
            _full_release(conn, record, now)

        return self._release_op("full_release", release_id, idempotency_key, {}, change)

    def create_qr_code(self, release_id: str, *, idempotency_key: str) -> QrCode:
        def body(conn: sqlite3.Connection, now: float) -> QrCode:
            record = _load_mutable(conn, release_id)
            if record.current not in RELEASED_STAGES:
                raise InvalidState(
                    f"{record.label()} is {record.stage}: QR codes exist for released "
                    "versions (GRAYSCALE or FULL_RELEASE)"
                )
            qr = qr_code(record.mini_program, record.version, record.target_app)
            record.qr = codec.qr_to_dict(qr)
            record.updated_at = now
            _save(conn, record)
            return qr

        return self._mutate(
            "create_qr_code", idempotency_key, {"release_id": release_id}, body,
            encode=codec.qr_to_dict, decode=codec.qr_from_dict,
        )  # fmt: skip

    # ==========================================================================================
    # platform side (console, reviewers, clock, faults): no fault injection here
    # ==========================================================================================
    def init(self, apps: Iterable[str] = ()) -> list[AppSettings]:
        """Create the database (done on open) and target apps with default settings.

        Apps that already exist keep their settings. Returns every configured app.
        """
        with self._store.write() as conn:
            for app_id in apps:
                if _find_app(conn, app_id) is None:
                    settings = AppSettings(app_id=app_id)
                    settings.validate()
                    _save_app(conn, settings)
        return self.apps()

    def set_app(self, app_id: str, **settings: Any) -> AppSettings:
        """Create or update a target app; unnamed settings keep their value (or default).

        Settings are the fields of :class:`AppSettings`, e.g. ``pilot_required=True``,
        ``review=ReviewMode.MANUAL``, ``review_after=60``, ``testers_max=50``,
        ``grayscale_values=(10, 30, 50)``. Raises ValueError on invalid settings.
        """
        unknown = set(settings) - set(AppSettings.__dataclass_fields__) - {"app_id"}
        if unknown:
            raise ValueError(f"unknown app setting(s): {', '.join(sorted(unknown))}")
        if "review" in settings and settings["review"] is not None:
            settings["review"] = ReviewMode(settings["review"])
        if "grayscale_values" in settings and settings["grayscale_values"] is not None:
            settings["grayscale_values"] = tuple(int(v) for v in settings["grayscale_values"])
        if "banned_words" in settings and settings["banned_words"] is not None:
            settings["banned_words"] = tuple(str(v) for v in settings["banned_words"])
        with self._store.write() as conn:
            _progress_all(conn, _clock(conn).now())
            current = _find_app(conn, app_id) or AppSettings(app_id=app_id)
            updated = current.updated(**settings)
            _save_app(conn, updated)
        return updated

    def apps(self) -> list[AppSettings]:
        with self._store.read() as conn:
            rows = conn.execute("SELECT settings FROM apps ORDER BY app_id").fetchall()
        return [AppSettings.from_dict(json.loads(r["settings"])) for r in rows]

    def upload(
        self,
        mini_program: str,
        version: str,
        *,
        compat_failures: str | Iterable[str] = (),
        build_fails: bool = False,
    ) -> VersionInfo:
        """Upload a version ("Upload mini programs"); it can then be released to targets.

        ``compat_failures`` (e.g. ``"ios:3g"``) makes chosen compatibility cases fail;
        ``build_fails`` makes every build of the version fail. Raises ValueError on a bad
        version or failure pattern, Conflict when the version was already uploaded.
        """
        Version.parse(version)
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", mini_program):
            raise ValueError(f"invalid mini program id {mini_program!r}")
        failures = parse_compat_failures(compat_failures)
        with self._store.write() as conn:
            now = _clock(conn).now()
            if _load_version(conn, mini_program, version) is not None:
                raise Conflict(
                    f"{mini_program} {version} is already uploaded; upload a new version number"
                )
            data = {"compat_failures": list(failures), "build_fails": build_fails}
            conn.execute(
                "INSERT INTO versions (mini_program, version, uploaded_at, data) "
                "VALUES (?, ?, ?, ?)",
                (mini_program, version, now, json.dumps(data, sort_keys=True)),
            )
        return VersionInfo(mini_program, version, to_datetime(now))

    def versions(self, mini_program: str | None = None) -> list[UploadedVersion]:
        with self._store.read() as conn:
            rows = conn.execute(
                "SELECT * FROM versions WHERE ? IS NULL OR mini_program = ? "
                "ORDER BY mini_program, uploaded_at",
                (mini_program, mini_program),
            ).fetchall()
        return [_version_from_row(row) for row in rows]

    def releases(
        self, mini_program: str | None = None, target_app: str | None = None
    ) -> list[ReleaseSnapshot]:
        """Every release (optionally of one mini program and/or target app), oldest first."""
        with self._store.read() as conn:
            now = _clock(conn).now()
            records = _select(
                conn,
                "(? IS NULL OR mini_program = ?) AND (? IS NULL OR target_app = ?)",
                (mini_program, mini_program, target_app, target_app),
            )
            return [_snapshot(_progressed(conn, r, now)) for r in records]

    def review(self, release_id: str, approve: bool, reason: str = "") -> ReleaseSnapshot:
        """Decide an application under review, as the platform's reviewer."""
        if not approve and not reason.strip():
            raise ValueError("a rejection needs a reason the developer can act on")
        with self._store.write() as conn:
            now = _clock(conn).now()
            _progress_all(conn, now)
            record = _load(conn, release_id)
            if record.current is not Stage.UNDER_REVIEW:
                raise InvalidState(
                    f"{record.label()} is {record.stage}: only an application under review "
                    "can be reviewed"
                )
            _decide_review(conn, record, now, approve, reason or "approved by the reviewer")
            _save(conn, record)
            return _snapshot(record)

    def set_metrics(
        self, release_id: str, *, crash_rate: float | None = None, error_rate: float | None = None
    ) -> Feedback:
        """Set the feedback metrics the platform reports for a release (0..100 percent)."""
        for name, value in (("crash_rate", crash_rate), ("error_rate", error_rate)):
            if value is not None and not 0.0 <= value <= 100.0:
                raise ValueError(f"{name} must be within 0..100 (a percentage)")
        with self._store.write() as conn:
            now = _clock(conn).now()
            _progress_all(conn, now)
            record = _load(conn, release_id)
            if crash_rate is not None:
                record.crash_rate = float(crash_rate)
            if error_rate is not None:
                record.error_rate = float(error_rate)
            _save(conn, record)
            return _feedback(record, _app(conn, record.target_app))

    def who_gets(self, mini_program: str, target_app: str, user_id: str) -> str | None:
        """The version ``user_id`` runs in ``target_app`` right now (None: not available).

        Pilot testers get the version under pilot testing; in grayscale a user gets the new
        version when their bucket (see ``model.bucket``) is at most the percentage; every
        other user gets the current full release.
        """
        releases = self.releases(mini_program, target_app)
        for snap in reversed(releases):
            if snap.stage is Stage.PILOT_TESTING and user_id in snap.testers:
                return snap.version
            if snap.stage is Stage.GRAYSCALE and in_grayscale(
                mini_program, user_id, snap.grayscale
            ):
                return snap.version
        full = [s for s in releases if s.stage is Stage.FULL_RELEASE]
        return full[-1].version if full else None

    # --- clock ------------------------------------------------------------------------------
    def clock(self) -> ClockSetting:
        with self._store.read() as conn:
            return _clock(conn)

    def now(self) -> datetime:
        """The simulator's current time."""
        return to_datetime(self.clock().now())

    def set_clock(self, *, manual: bool, at: datetime | None = None) -> ClockSetting:
        """Switch to a manual clock (stopped at ``at``, default now) or back to real time."""
        with self._store.write() as conn:
            current = _clock(conn)
            _progress_all(conn, current.now())
            if manual:
                if at is not None and to_epoch(at) < current.now() and _has_releases(conn):
                    raise ValueError("the clock only moves forward once releases exist")
                setting = current.to_manual(None if at is None else to_epoch(at))
            else:
                setting = current.to_real()
            set_meta(conn, "clock", setting.to_dict())
            return setting

    def advance(self, seconds: float) -> datetime:
        """Move the clock forward (manual: the stored instant; real: the offset)."""
        with self._store.write() as conn:
            setting = _clock(conn).advanced(seconds)
            set_meta(conn, "clock", setting.to_dict())
            _progress_all(conn, setting.now())
            return to_datetime(setting.now())

    # --- faults -----------------------------------------------------------------------------
    def fault_settings(self) -> FaultSettings:
        with self._store.read() as conn:
            return _faults(conn)

    def faults(
        self,
        *,
        error_rate: float | None = None,
        unknown_rate: float | None = None,
        rate_limited_rate: float | None = None,
        retry_after: float | None = None,
        latency: float | None = None,
        seed: int | None = None,
        off: bool = False,
    ) -> FaultSettings:
        """Change fault injection (unnamed settings keep their value; ``off`` resets all).

        A new ``seed`` restarts the sequence of fault decisions, so a test can reproduce it.
        """
        with self._store.write() as conn:
            current = FaultSettings() if off else _faults(conn)
            changes = {
                "error_rate": error_rate,
                "unknown_rate": unknown_rate,
                "rate_limited_rate": rate_limited_rate,
                "retry_after": retry_after,
                "latency": latency,
                "seed": seed,
            }
            data = current.to_dict()
            data.update({k: v for k, v in changes.items() if v is not None})
            settings = FaultSettings.from_dict(data)
            settings.validate()
            set_meta(conn, "faults", settings.to_dict())
            if off or seed is not None:
                set_meta(conn, "counter:fault", 0)
            return settings

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
            return _draw_fault(conn, mutation=mutation)

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
            fault = _draw_fault(conn, mutation=True) if _faults(conn).active else None
            if fault in ("transient", "rate_limited"):
                retry_after = _faults(conn).retry_after
                self._store.commit_now()  # keep the fault counter moving
                if fault == "rate_limited":
                    raise RateLimited(
                        f"{operation}: too many requests; retry after {retry_after:g}s",
                        retry_after=retry_after,
                    )
                raise Transient(f"{operation}: the platform is temporarily unavailable")
            now = _clock(conn).now()
            _progress_all(conn, now)
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
        change: Callable[[_Record, float, sqlite3.Connection], None],
    ) -> ReleaseSnapshot:
        """An idempotent mutation of one release that answers with its new snapshot."""

        def body(conn: sqlite3.Connection, now: float) -> ReleaseSnapshot:
            record = _load_mutable(conn, release_id)
            change(record, now, conn)
            _advance(conn, record, now)  # zero durations take effect at once
            _save(conn, record)
            return _snapshot(record)

        return self._mutate(
            operation, key, {"release_id": release_id, **request}, body,
            encode=codec.snapshot_to_dict, decode=codec.snapshot_from_dict,
        )  # fmt: skip


# --------------------------------------------------------------------------------------------
# state helpers (all run inside a transaction)
# --------------------------------------------------------------------------------------------


def _clock(conn: sqlite3.Connection) -> ClockSetting:
    return ClockSetting.from_dict(get_meta(conn, "clock", {}))


def _faults(conn: sqlite3.Connection) -> FaultSettings:
    return FaultSettings.from_dict(get_meta(conn, "faults", {}))


def _draw_fault(conn: sqlite3.Connection, *, mutation: bool) -> str | None:
    """The fault for the next call: reproducible from the seed and the call counter."""
    settings = _faults(conn)
    if not settings.active:
        return None
    call = next_counter(conn, "fault")
    rng = random.Random(f"{settings.seed}:{call}")
    roll = rng.random()
    if roll < settings.rate_limited_rate:
        fault: str | None = "rate_limited"
    elif roll < settings.rate_limited_rate + settings.error_rate:
        fault = "transient"
    else:
        fault = "unknown" if mutation and rng.random() < settings.unknown_rate else None
    if not mutation and fault is not None:
        retry_after = settings.retry_after
        conn.execute("COMMIT")
        if fault == "rate_limited":
            raise RateLimited(
                f"too many requests; retry after {retry_after:g}s", retry_after=retry_after
            )
        raise Transient("the platform is temporarily unavailable")
    return fault


def _has_releases(conn: sqlite3.Connection) -> bool:
    return conn.execute("SELECT 1 FROM releases LIMIT 1").fetchone() is not None


def _find_app(conn: sqlite3.Connection, app_id: str) -> AppSettings | None:
    row = conn.execute("SELECT settings FROM apps WHERE app_id = ?", (app_id,)).fetchone()
    return None if row is None else AppSettings.from_dict(json.loads(row["settings"]))


def _app(conn: sqlite3.Connection, app_id: str) -> AppSettings:
    app = _find_app(conn, app_id)
    if app is None:
        raise NotFound(
            f"target app {app_id!r} is not configured on the platform: run "
            f"`relctl platform set-app {app_id}`"
        )
    return app


def _save_app(conn: sqlite3.Connection, app: AppSettings) -> None:
    conn.execute(
        "INSERT INTO apps (app_id, settings) VALUES (?, ?) "
        "ON CONFLICT (app_id) DO UPDATE SET settings = excluded.settings",
        (app.app_id, json.dumps(app.to_dict(), sort_keys=True)),
    )


def _version_from_row(row: sqlite3.Row) -> UploadedVersion:
    data = json.loads(row["data"])
    return UploadedVersion(
        mini_program=row["mini_program"],
        version=row["version"],
        uploaded_at=float(row["uploaded_at"]),
        compat_failures=tuple(data.get("compat_failures", ())),
        build_fails=bool(data.get("build_fails", False)),
    )


def _load_version(
    conn: sqlite3.Connection, mini_program: str, version: str
) -> UploadedVersion | None:
    row = conn.execute(
        "SELECT * FROM versions WHERE mini_program = ? AND version = ?", (mini_program, version)
    ).fetchone()
    return None if row is None else _version_from_row(row)


def _decode(row: sqlite3.Row) -> _Record:
    return _Record(**json.loads(row["data"]))


def _select(conn: sqlite3.Connection, where: str, params: tuple[Any, ...]) -> list[_Record]:
    rows = conn.execute(f"SELECT data FROM releases WHERE {where} ORDER BY seq", params)
    return [_decode(row) for row in rows.fetchall()]


def _load(conn: sqlite3.Connection, release_id: str) -> _Record:
    row = conn.execute("SELECT data FROM releases WHERE release_id = ?", (release_id,)).fetchone()
    if row is None:
        raise NotFound(f"release {release_id!r} does not exist on the platform")
    return _decode(row)


def _load_mutable(conn: sqlite3.Connection, release_id: str) -> _Record:
    """Load a release for a change; a release in a final stage refuses every change."""
    record = _load(conn, release_id)
    if record.current in FINAL_STAGES:
        reason = {
            Stage.CANCELED: "canceling is final for this version on this target",
            Stage.BUILD_FAILED: "its build failed; upload and release a new version",
            Stage.ARCHIVED: "a newer version replaced it",
        }[record.current]
        raise NotEditable(f"{record.label()} is {record.stage}: {reason}")
    return record


def _save(conn: sqlite3.Connection, record: _Record) -> None:
    conn.execute(
        "INSERT INTO releases "
        "(release_id, seq, mini_program, target_app, version, stage, due, data) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (release_id) DO UPDATE SET "
        "stage = excluded.stage, due = excluded.due, data = excluded.data",
        (
            record.release_id,
            record.seq,
            record.mini_program,
            record.target_app,
            record.version,
            record.stage,
            record.next_due(),
            json.dumps(asdict(record), sort_keys=True),
        ),
    )


def _create_release(
    conn: sqlite3.Connection,
    now: float,
    *,
    mini_program: str,
    version: str,
    target_app: str,
    environment: str,
) -> _Record:
    app = _app(conn, target_app)
    uploaded = _load_version(conn, mini_program, version)
    if uploaded is None:
        raise NotFound(
            f"{mini_program} {version} has not been uploaded: upload it before releasing it"
        )
    if not environment.strip():
        raise InvalidState("a release needs an environment (e.g. production)")
    existing = _select(conn, "mini_program = ? AND target_app = ?", (mini_program, target_app))
    for other in existing:
        if other.version == version:
            if other.current is Stage.CANCELED:
                raise Conflict(
                    f"{mini_program} {version} was canceled on {target_app} ({other.release_id}); "
                    "a canceled release can never be redone: upload a new version"
                )
            raise Conflict(
                f"{mini_program} {version} is already released to {target_app} as "
                f"{other.release_id} ({other.stage}); a version goes to a target once"
            )
    for other in existing:
        if other.current in IN_FLIGHT_STAGES:
            raise Conflict(
                f"{mini_program} already has a release in flight on {target_app}: "
                f"{other.release_id} ({other.version}, {other.stage}); cancel release "
                f"{other.release_id} ({other.version}) first"
            )
    newest = max(existing, key=lambda r: Version.parse(r.version), default=None)
    if newest is not None and Version.parse(version) <= Version.parse(newest.version):
        raise Conflict(
            f"{mini_program} {version} is not newer than {newest.version}, already released "
            f"to {target_app} ({newest.release_id}); versions must strictly increase"
        )
    seq = next_counter(conn, "release")
    record = _Record(
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
    )
    record.enter(Stage.BUILDING, now, "building the version package")
    _advance(conn, record, now)
    _save(conn, record)
    return record


def _full_release(conn: sqlite3.Connection, record: _Record, now: float) -> None:
    """Release to every user and archive the previous full release of the same target."""
    for other in _select(
        conn,
        "mini_program = ? AND target_app = ? AND stage = ?",
        (record.mini_program, record.target_app, str(Stage.FULL_RELEASE)),
    ):
        if other.release_id != record.release_id:
            other.grayscale = 0
            other.enter(Stage.ARCHIVED, now, f"replaced by {record.version} ({record.release_id})")
            _save(conn, other)
    record.grayscale = 100
    record.peak_grayscale = 100
    record.enter(Stage.FULL_RELEASE, now, "released to all app users")


def _decide_review(
    conn: sqlite3.Connection, record: _Record, at: float, approve: bool, reason: str
) -> None:
    app = _app(conn, record.target_app)
    record.review_due = None
    record.review = {
        "decision": str(ReviewDecision.APPROVED if approve else ReviewDecision.REJECTED),
        "reason": reason,
        "pilot_required": app.pilot_required,
        "decided_at": at,
    }
    if not approve:
        record.enter(Stage.REJECTED, at, f"rejected: {reason}")
    elif app.pilot_required:
        record.enter(Stage.PILOT_TESTING, at, "approved; pilot testing is required")
    else:
        record.enter(Stage.RELEASE_PREPARATION, at, "approved; ready to release")


def _advance(conn: sqlite3.Connection, record: _Record, now: float) -> bool:
    """Apply every time-driven change due at or before ``now``; True when something changed."""
    changed = False
    build_due = record.build_due
    if record.current is Stage.BUILDING and build_due is not None and build_due <= now:
        if record.build_fails:
            record.enter(Stage.BUILD_FAILED, build_due, "build failed: the package did not compile")
        else:
            record.enter(Stage.NEW_VERSION_CREATED, build_due, "new version created")
        changed = True
    compat = record.compat
    if compat is not None and compat.get("finished_at") is None and compat["due"] <= now:
        compat["finished_at"] = compat["due"]
        record.updated_at = max(record.updated_at, compat["due"])
        changed = True
    if record.current is Stage.UNDER_REVIEW and record.review_due is not None:
        app = _app(conn, record.target_app)
        if app.review is not ReviewMode.MANUAL and record.review_due <= now:
            rejection = None
            if app.review is ReviewMode.RULES:
                rejection = rules_rejection(record.basic_info, app.banned_words)
            _decide_review(
                conn, record, record.review_due, rejection is None, rejection or "approved"
            )
            changed = True
    return changed


def _progressed(conn: sqlite3.Connection, record: _Record, now: float) -> _Record:
    """The record as it is at ``now`` (time-driven changes applied in memory only)."""
    _advance(conn, record, now)
    return record


def _progress_all(conn: sqlite3.Connection, now: float) -> None:
    """Persist every time-driven change due at or before ``now`` (inside a write)."""
    for record in _select(conn, "due IS NOT NULL AND due <= ?", (now,)):
        _advance(conn, record, now)
        _save(conn, record)


def _snapshot(record: _Record) -> ReleaseSnapshot:
    report: CompatibilityReport | None = None
    if record.compat is not None:
        compat = record.compat
        finished = compat.get("finished_at") is not None
        cases = compatibility_cases(compat.get("failures", ())) if finished else ()
        report = CompatibilityReport(
            report_id=compat["report_id"],
            status=CompatibilityStatus.FINISHED if finished else CompatibilityStatus.RUNNING,
            pass_rate=pass_rate(cases) if finished else 0.0,
            cases=cases,
            configuration_digest=compat["digest"],
            started_at=to_datetime(compat["started_at"]),
            finished_at=to_datetime(compat["finished_at"]) if finished else None,
        )
    review: Review | None = None
    if record.review is not None:
        review = Review(
            decision=ReviewDecision(record.review["decision"]),
            reason=record.review["reason"],
            pilot_required=bool(record.review["pilot_required"]),
            decided_at=to_datetime(record.review["decided_at"]),
        )
    extra: dict[str, Any] = {"peak_grayscale": record.peak_grayscale}
    due = record.next_due()
    if due is not None:
        extra["next_change_at"] = to_datetime(due).isoformat()
    return ReleaseSnapshot(
        release_id=record.release_id,
        mini_program=record.mini_program,
        version=record.version,
        target_app=record.target_app,
        environment=record.environment,
        stage=record.current,
        basic_info=dict(record.basic_info),
        configuration=dict(record.configuration),
        compatibility=report,
        review=review,
        testers=tuple(record.testers),
        grayscale=record.grayscale,
        stage_times={Stage(k): to_datetime(v) for k, v in record.stage_times.items()},
        qr_code=None if record.qr is None else codec.qr_from_dict(record.qr),
        created_at=to_datetime(record.created_at),
        updated_at=to_datetime(record.updated_at),
        message=record.message,
        extra=extra,
    )


def _feedback(record: _Record, app: AppSettings) -> Feedback:
    if record.current is Stage.PILOT_TESTING:
        users = len(record.testers)
    elif record.current in RELEASED_STAGES:
        users = app.users * record.grayscale // 100
    else:
        users = 0
    return Feedback(
        crash_rate=record.crash_rate, error_rate=record.error_rate, users_on_version=users
    )
