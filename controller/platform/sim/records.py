"""The stored state of one release in the simulator, and its time-driven progress.

A ``ReleaseRecord`` is what the simulator keeps per release (one JSON document in the
``releases`` table): everything a ``ReleaseSnapshot`` shows, plus what only the platform knows
(when the build, the compatibility test and an automatic review are due, whether the build
fails, which compatibility cases fail, the feedback metrics). ``snapshot()`` shows it;
``absorb()`` takes back what :func:`controller.platform.sim.engine.effect` changed.

``advance`` applies every time-driven change due at or before ``now`` (a build finishes, a test
finishes, an automatic review decides), stamped with the deadline itself. It is pure: the
target app's settings come from a lookup the caller passes.

Called by the simulator's own modules: ``simulator``, ``console`` and ``tables``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from controller.platform.protocol import (
    CompatibilityReport,
    CompatibilityStatus,
    Feedback,
    ReleaseSnapshot,
    Review,
    ReviewDecision,
)
from controller.platform.rules import RELEASED_STAGES, Stage
from controller.platform.sim import actions, codec, engine
from controller.platform.sim.clock import to_datetime, to_epoch
from controller.platform.sim.model import (
    AppSettings,
    ReviewMode,
    compatibility_cases,
    pass_rate,
    rules_rejection,
)


@dataclass
class ReleaseRecord:
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
        """Enter ``stage`` at ``at`` by the platform's own progress (a build finishing)."""
        engine.check_transition(self.current, stage)
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

    def start_report(
        self, report: CompatibilityReport, failures: list[str], started: float, due: float
    ) -> None:
        """Keep a compatibility test the engine started at ``started``; it finishes at ``due``.

        ``started`` is the simulator's own instant (the report shows it to the microsecond).
        """
        self.compat = {
            "report_id": report.report_id,
            "digest": report.configuration_digest,
            "failures": failures,
            "started_at": started,
            "due": due,
            "finished_at": None,
        }

    def absorb(self, after: ReleaseSnapshot) -> None:
        """Take what an engine effect changed into the record.

        Everything a snapshot shows, except the compatibility report, whose private half (the
        failing cases, when it is due) only :meth:`start_report` can set.
        """
        self.stage = str(after.stage)
        self.stage_times = {str(stage): to_epoch(at) for stage, at in after.stage_times.items()}
        self.updated_at = to_epoch(after.updated_at)
        self.basic_info = dict(after.basic_info)
        self.configuration = dict(after.configuration)
        self.testers = list(after.testers)
        self.grayscale = after.grayscale
        peak = after.extra.get("peak_grayscale", self.peak_grayscale)
        self.peak_grayscale = int(peak) if isinstance(peak, int | float) else self.grayscale
        self.qr = None if after.qr_code is None else codec.qr_to_dict(after.qr_code)
        self.message = after.message
        review = after.review
        self.review = (
            None
            if review is None
            else {
                "decision": str(review.decision),
                "reason": review.reason,
                "pilot_required": review.pilot_required,
                "decided_at": to_epoch(review.decided_at),
            }
        )

    def snapshot(self) -> ReleaseSnapshot:
        """The release as the platform shows it."""
        report: CompatibilityReport | None = None
        if self.compat is not None:
            compat = self.compat
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
        if self.review is not None:
            review = Review(
                decision=ReviewDecision(self.review["decision"]),
                reason=self.review["reason"],
                pilot_required=bool(self.review["pilot_required"]),
                decided_at=to_datetime(self.review["decided_at"]),
            )
        extra: dict[str, Any] = {"peak_grayscale": self.peak_grayscale}
        due = self.next_due()
        if due is not None:
            extra["next_change_at"] = to_datetime(due).isoformat()
        return ReleaseSnapshot(
            release_id=self.release_id,
            mini_program=self.mini_program,
            version=self.version,
            target_app=self.target_app,
            environment=self.environment,
            stage=self.current,
            basic_info=dict(self.basic_info),
            configuration=dict(self.configuration),
            compatibility=report,
            review=review,
            testers=tuple(self.testers),
            grayscale=self.grayscale,
            stage_times={Stage(k): to_datetime(v) for k, v in self.stage_times.items()},
            qr_code=None if self.qr is None else codec.qr_from_dict(self.qr),
            created_at=to_datetime(self.created_at),
            updated_at=to_datetime(self.updated_at),
            message=self.message,
            extra=extra,
        )

    def feedback(self, app: AppSettings) -> Feedback:
        """The feedback metrics the platform reports: testers in pilot, else the user share."""
        if self.current is Stage.PILOT_TESTING:
            users = len(self.testers)
        elif self.current in RELEASED_STAGES:
            users = app.users * self.grayscale // 100
        else:
            users = 0
        return Feedback(
            crash_rate=self.crash_rate, error_rate=self.error_rate, users_on_version=users
        )


def advance(record: ReleaseRecord, now: float, app_of: Callable[[str], AppSettings]) -> bool:
    """Apply every time-driven change due at or before ``now``; True when something changed.

    ``app_of`` returns a target app's settings (only asked when an automatic review is due).
    """
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
    review_due = record.review_due
    if record.current is Stage.UNDER_REVIEW and review_due is not None:
        app = app_of(record.target_app)
        if app.review is not ReviewMode.MANUAL and review_due <= now:
            rejection = None
            if app.review is ReviewMode.RULES:
                rejection = rules_rejection(record.basic_info, app.banned_words)
            decision = actions.ReviewApplication(rejection is None, rejection or "approved")
            record.absorb(engine.effect(record.snapshot(), decision, app, to_datetime(review_due)))
            record.review_due = None
            changed = True
    return changed
