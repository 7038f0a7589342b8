"""The platform side of the simulator: what the platform or its console does by itself.

Configuring target apps, uploading versions, reviewing applications, feeding metrics, moving
the clock and injecting faults: a real platform does these on its own or through its web
console; here ``relctl platform ...`` and tests do them. No fault injection applies to them.

:class:`PlatformConsole` is the base class of :class:`controller.platform.sim.Simulator`,
which adds the adapter protocol; both work over the same :class:`~.store.Store`. Called by
``controller.cli_platform``, the demo and tests, always through a ``Simulator``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from controller.platform.protocol import Feedback, ReleaseSnapshot, VersionInfo
from controller.platform.rules import Stage, Version
from controller.platform.sim import actions, engine, tables
from controller.platform.sim.clock import ClockSetting, to_datetime, to_epoch
from controller.platform.sim.model import (
    AppSettings,
    FaultSettings,
    ReviewMode,
    UploadedVersion,
    in_grayscale,
    parse_compat_failures,
)
from controller.platform.sim.store import Store


class PlatformConsole:
    """The platform's own side of a simulated platform persisted in ``self._store``."""

    _store: Store

    # --- target apps ------------------------------------------------------------------------
    def init(self, apps: Iterable[str] = ()) -> list[AppSettings]:
        """Create target apps with default settings (the database exists once opened).

        Apps that already exist keep their settings. Returns every configured app.
        """
        with self._store.write() as conn:
            for app_id in apps:
                if tables.find_app(conn, app_id) is None:
                    settings = AppSettings(app_id=app_id)
                    settings.validate()
                    tables.save_app(conn, settings)
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
            tables.progress_all(conn, tables.clock(conn).now())
            current = tables.find_app(conn, app_id) or AppSettings(app_id=app_id)
            updated = current.updated(**settings)
            tables.save_app(conn, updated)
        return updated

    def apps(self) -> list[AppSettings]:
        with self._store.read() as conn:
            return tables.all_apps(conn)

    # --- versions ---------------------------------------------------------------------------
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
        version or failure pattern, Conflict (naming the newest version) unless the version is
        greater than every version of the mini program uploaded so far.
        """
        Version.parse(version)
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", mini_program):
            raise ValueError(f"invalid mini program id {mini_program!r}")
        failures = parse_compat_failures(compat_failures)
        with self._store.write() as conn:
            now = tables.clock(conn).now()
            uploaded = [v.version for v in tables.versions(conn, mini_program)]
            engine.check_upload(mini_program, version, uploaded)
            tables.save_version(
                conn,
                UploadedVersion(
                    mini_program, version, now, compat_failures=failures, build_fails=build_fails
                ),
            )
        return VersionInfo(mini_program, version, to_datetime(now))

    def versions(self, mini_program: str | None = None) -> list[UploadedVersion]:
        with self._store.read() as conn:
            return tables.versions(conn, mini_program)

    # --- releases ---------------------------------------------------------------------------
    def releases(
        self, mini_program: str | None = None, target_app: str | None = None
    ) -> list[ReleaseSnapshot]:
        """Every release (optionally of one mini program and/or target app), oldest first."""
        with self._store.read() as conn:
            now = tables.clock(conn).now()
            records = tables.select_releases(
                conn,
                "(? IS NULL OR mini_program = ?) AND (? IS NULL OR target_app = ?)",
                (mini_program, mini_program, target_app, target_app),
            )
            return [tables.progressed(conn, r, now).snapshot() for r in records]

    def review(self, release_id: str, approve: bool, reason: str = "") -> ReleaseSnapshot:
        """Decide an application under review, as the platform's reviewer."""
        if not approve and not reason.strip():
            raise ValueError("a rejection needs a reason the developer can act on")
        decision = actions.ReviewApplication(approve, reason or "approved by the reviewer")
        with self._store.write() as conn:
            now = tables.clock(conn).now()
            tables.progress_all(conn, now)
            record = tables.load_release(conn, release_id)
            app = tables.app(conn, record.target_app)
            record.absorb(engine.effect(record.snapshot(), decision, app, to_datetime(now)))
            record.review_due = None
            tables.save_release(conn, record)
            return record.snapshot()

    def set_metrics(
        self, release_id: str, *, crash_rate: float | None = None, error_rate: float | None = None
    ) -> Feedback:
        """Set the feedback metrics the platform reports for a release (0..100 percent)."""
        for name, value in (("crash_rate", crash_rate), ("error_rate", error_rate)):
            if value is not None and not 0.0 <= value <= 100.0:
                raise ValueError(f"{name} must be within 0..100 (a percentage)")
        with self._store.write() as conn:
            now = tables.clock(conn).now()
            tables.progress_all(conn, now)
            record = tables.load_release(conn, release_id)
            if crash_rate is not None:
                record.crash_rate = float(crash_rate)
            if error_rate is not None:
                record.error_rate = float(error_rate)
            tables.save_release(conn, record)
            return record.feedback(tables.app(conn, record.target_app))

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
            return tables.clock(conn)

    def now(self) -> datetime:
        """The simulator's current time."""
        return to_datetime(self.clock().now())

    def set_clock(self, *, manual: bool, at: datetime | None = None) -> ClockSetting:
        """Switch to a manual clock (stopped at ``at``, default now) or back to real time."""
        with self._store.write() as conn:
            current = tables.clock(conn)
            tables.progress_all(conn, current.now())
            if manual:
                if at is not None and to_epoch(at) < current.now() and tables.has_releases(conn):
                    raise ValueError("the clock only moves forward once releases exist")
                setting = current.to_manual(None if at is None else to_epoch(at))
            else:
                setting = current.to_real()
            tables.set_meta(conn, "clock", setting.to_dict())
            return setting

    def advance(self, seconds: float) -> datetime:
        """Move the clock forward (manual: the stored instant; real: the offset)."""
        with self._store.write() as conn:
            setting = tables.clock(conn).advanced(seconds)
            tables.set_meta(conn, "clock", setting.to_dict())
            tables.progress_all(conn, setting.now())
            return to_datetime(setting.now())

    # --- faults -----------------------------------------------------------------------------
    def fault_settings(self) -> FaultSettings:
        with self._store.read() as conn:
            return tables.faults(conn)

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
            current = FaultSettings() if off else tables.faults(conn)
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
            tables.set_meta(conn, "faults", settings.to_dict())
            if off or seed is not None:
                tables.set_meta(conn, "counter:fault", 0)
            return settings
