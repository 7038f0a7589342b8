"""Decide the next action for one release: ``decide(release, status, observed, now) -> Plan``.

The pure heart of the controller (DESIGN 4.3). It compares what main asks for (the Release
manifest) with what the platform shows (``Observed``) and what the controller wrote last time
(the previous ``Status``), and answers with one ``Plan``: at most one ``Step`` (a platform
mutation, executed by ``controller.act``), an ``Outcome`` (the retry policy) and a reason a
person reads in the status condition ("waiting for review since 10:02 (gcash)").

No I/O, no clock (``now`` is an argument), no globals: the same inputs give an equal Plan, and
the inputs are never mutated. ``relctl plan`` is this function without ``act``.

The decision reads as a straight line of small ``_reconcile_*`` checks that return early
(Argo Rollouts' canary loop): paused, cancel, then either the version has no release yet
(conflict, upload, supersede, create) or one function per platform stage, each itself a short
``or``-chain (basic info first, then the stage's own gates). A retry backoff recorded in the
status holds back any step until its time (a spec change clears it).

Conventions:

* An empty ``basicInfo`` or ``configuration`` in the manifest means "not managed": the
  controller keeps what the platform has and never pushes an empty mapping.
* The compatibility test runs once per (configuration digest, ``retest``). The ``retest`` a
  report answers is the one recorded in the status for that report id (``act``/``reconcile``
  record it when they start or first see the test); a report the status does not know yet
  (a person ran it, or a crash lost the status write) answers the manifest's current
  ``retest``. Bumping ``retest`` therefore asks for exactly one new run.
* Times in messages are UTC, ``HH:MM`` on the day of ``now``, ``YYYY-MM-DD HH:MM`` otherwise.
* Idempotency keys name the release, version, action and the intent acted on. The platform
  replays the first result *or permanent error* of a key, so for actions that can
  legitimately repeat on one release (pushing content, testing, applying, withdrawing) or that
  a changed platform state may unblock (creating the release) the intent also includes the
  platform state acted on (``updated_at``, the stage entry time, the previous report id, the
  other releases' stages). Reverting main to an earlier spec thus gets a fresh key instead of
  a replay of a stale first call, while after a crash or an ``Unknown`` result with no effect
  that state is unchanged, so a retry replays instead of acting twice.

Called by ``controller.reconcile`` (``reconcile_release``, ``plan_repository``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from controller.model import (
    Action,
    CompatibilitySummary,
    Observed,
    Outcome,
    Phase,
    Plan,
    Reason,
    Release,
    ReleaseSpec,
    RolloutProgress,
    Status,
    Step,
    digest,
)
from controller.platform.protocol import (
    CompatibilityReport,
    CompatibilityStatus,
    ReleaseSnapshot,
    Stage,
    configuration_digest,
)
from controller.platform.rules import (
    FINAL_STAGES,
    IN_FLIGHT_STAGES,
    SUPERSEDE_REQUIRED_STAGES,
    Version,
)
from controller.rollout import advance, freeze

__all__ = [
    "MAX_KEY_LENGTH",
    "compatibility_retest",
    "decide",
    "derive_phase",
    "idempotency_key",
]

#: Upper bound of an idempotency key (longer release keys are digested).
MAX_KEY_LENGTH = 200

_STAGE_PHASES: Mapping[Stage, Phase] = {
    Stage.BUILDING: Phase.BUILDING,
    Stage.BUILD_FAILED: Phase.BUILD_FAILED,
    Stage.NEW_VERSION_CREATED: Phase.TESTING,
    Stage.UNDER_REVIEW: Phase.IN_REVIEW,
    Stage.REJECTED: Phase.REJECTED,
    Stage.PILOT_TESTING: Phase.PILOT_TESTING,
    Stage.RELEASE_PREPARATION: Phase.READY_TO_RELEASE,
    Stage.GRAYSCALE: Phase.GRAYSCALE,
    Stage.FULL_RELEASE: Phase.RELEASED,
    Stage.CANCELED: Phase.CANCELED,
    Stage.ARCHIVED: Phase.ARCHIVED,
}


# --------------------------------------------------------------------------------------------
# Public helpers
# --------------------------------------------------------------------------------------------


def derive_phase(release: Release, snapshot: ReleaseSnapshot | None) -> Phase:
    """The one-word phase shown to people, from the desired spec and the observed release."""
    if release.spec.paused:
        return Phase.PAUSED
    if snapshot is None:
        return Phase.CANCELED if release.spec.cancel else Phase.PENDING
    return _STAGE_PHASES[snapshot.stage]


def idempotency_key(release_key: str, version: str, action: Action, *intent: object) -> str:
    """``<mini-program>/<target-app>/<version>/<action>/<digest of the intent>``, <= 200 chars.

    ``intent`` is what the step acts on (content digest, percent, report id, ...): the same
    intent gives the same key, a different one a different key.
    """
    intent_digest = digest(list(intent))
    key = f"{release_key}/{version}/{action.value}/{intent_digest}"
    if len(key) > MAX_KEY_LENGTH:
        key = f"{digest([release_key, version])}/{action.value}/{intent_digest}"
    return key


def compatibility_retest(
    report: CompatibilityReport, recorded: CompatibilitySummary | None, retest: int
) -> int:
    """The ``retest`` counter ``report`` answers.

    The counter recorded in the status for the same report id; a report the status does not
    know yet answers the manifest's current ``retest``.
    """
    if recorded is not None and recorded.report_id == report.report_id:
        return recorded.retest
    return retest


# --------------------------------------------------------------------------------------------
# decide
# --------------------------------------------------------------------------------------------


def decide(release: Release, status: Status | None, observed: Observed, now: datetime) -> Plan:
    """The next action for ``release``: at most one step, always a human reason."""
    ctx = _Pass(release, status, observed, now)
    plan = _reconcile_paused(ctx) or _reconcile_cancel(ctx)
    if plan is None:
        snapshot = observed.release
        if snapshot is None:
            plan = _reconcile_not_created(ctx)
        else:
            plan = _STAGES[snapshot.stage](ctx, snapshot)
    return _hold_for_backoff(ctx, plan)


@dataclass(frozen=True)
class _Pass:
    """The inputs of one decision, with the small derived facts every check needs."""

    release: Release
    status: Status | None
    observed: Observed
    now: datetime

    @property
    def spec(self) -> ReleaseSpec:
        return self.release.spec

    @property
    def version(self) -> str:
        return self.release.spec.version

    @property
    def app(self) -> str:
        return self.release.target_app

    @property
    def own_status(self) -> Status | None:
        """The previous status, only when it is about the same version."""
        if self.status is not None and self.status.version == self.version:
            return self.status
        return None

    def plan(self, outcome: Outcome, reason: Reason, message: str) -> Plan:
        return Plan(
            release=self.release.key,
            phase=derive_phase(self.release, self.observed.release),
            outcome=outcome,
            reason=reason,
            message=message,
        )

    def act(self, reason: Reason, message: str, step: Step) -> Plan:
        return Plan(
            release=self.release.key,
            phase=derive_phase(self.release, self.observed.release),
            outcome=Outcome.PROGRESSING,
            reason=reason,
            message=message,
            step=step,
        )

    def step(
        self,
        action: Action,
        snapshot: ReleaseSnapshot,
        *intent: object,
        **fields: Any,
    ) -> Step:
        return Step(
            action=action,
            release_id=snapshot.release_id,
            idempotency_key=idempotency_key(self.release.key, snapshot.version, action, *intent),
            **fields,
        )

    def at(self, moment: datetime) -> str:
        return _clock(moment, self.now)


# --- before any stage ---------------------------------------------------------------------


def _reconcile_paused(ctx: _Pass) -> Plan | None:
    if not ctx.spec.paused:
        return None
    snapshot = ctx.observed.release
    seen = (
        f"{ctx.version} not created yet"
        if snapshot is None
        else f"platform: {_stage_words(snapshot)}"
    )
    return ctx.plan(
        Outcome.WAITING,
        Reason.PAUSED,
        f"paused: observing {ctx.app} without acting ({seen}); set paused: false to resume",
    )


def _reconcile_cancel(ctx: _Pass) -> Plan | None:
    aborted = ctx.spec.rollout is not None and ctx.spec.rollout.abort
    if not ctx.spec.cancel and not aborted:
        return None
    snapshot = ctx.observed.release
    if snapshot is None:
        return ctx.plan(
            Outcome.DONE,
            Reason.CANCELED,
            f"canceled before it started: {ctx.version} was never released on {ctx.app}",
        )
    since = ctx.at(_since(snapshot))
    if snapshot.stage is Stage.CANCELED:
        return ctx.plan(
            Outcome.DONE, Reason.CANCELED, f"{ctx.version} canceled on {ctx.app} at {since}"
        )
    if snapshot.stage is Stage.BUILD_FAILED:
        return ctx.plan(
            Outcome.DONE,
            Reason.CANCELED,
            f"nothing to cancel: the build of {ctx.version} failed at {since}",
        )
    if snapshot.stage is Stage.ARCHIVED:
        return ctx.plan(
            Outcome.DONE,
            Reason.ARCHIVED,
            f"nothing to cancel: {ctx.version} was archived at {since} "
            "(a newer version was fully released)",
        )
    if snapshot.stage is Stage.FULL_RELEASE:
        return ctx.plan(
            Outcome.STALLED,
            Reason.PLATFORM_REFUSED,
            f"{ctx.version} is fully released on {ctx.app} since {since}; a full release "
            "cannot be canceled: release a newer version, or set cancel: false",
        )
    why = "cancel: true" if ctx.spec.cancel else "relctl abort"
    return ctx.act(
        Reason.CANCELING,
        f"canceling {ctx.version} on {ctx.app} ({_stage_words(snapshot)}; {why}); "
        "final for this version",
        ctx.step(Action.CANCEL, snapshot, snapshot.release_id),
    )


def _reconcile_not_created(ctx: _Pass) -> Plan:
    """No release of the desired version yet: conflict, upload, supersede, create."""
    return (
        _reconcile_newer_version(ctx)
        or _reconcile_upload(ctx)
        or _reconcile_supersede(ctx)
        or ctx.act(
            Reason.CREATING_RELEASE,
            f"creating the release of {ctx.version} on {ctx.app} (starts the build)",
            Step(
                action=Action.CREATE_RELEASE,
                release_id=None,
                idempotency_key=idempotency_key(
                    ctx.release.key,
                    ctx.version,
                    Action.CREATE_RELEASE,
                    ctx.release.environment,
                    sorted((o.release_id, o.stage.value) for o in ctx.observed.others),
                ),
            ),
        )
    )


def _reconcile_newer_version(ctx: _Pass) -> Plan | None:
    """Versions strictly increase per target: any newer release (even canceled) blocks."""
    wanted = Version.parse(ctx.version)
    newer = [other for version, other in _versioned(ctx.observed.others) if version > wanted]
    if not newer:
        return None
    latest = newer[-1]
    fix = (
        f"set version to one newer than {latest.version}"
        if latest.stage in FINAL_STAGES
        else f"set version to {latest.version} or later"
    )
    return ctx.plan(
        Outcome.STALLED,
        Reason.VERSION_CONFLICT,
        f"{latest.version} ({_stage_words(latest)}) is newer than {ctx.version} on {ctx.app}: "
        f"versions only move forward; {fix}",
    )


def _reconcile_upload(ctx: _Pass) -> Plan | None:
    if ctx.observed.version_uploaded:
        return None
    return ctx.plan(
        Outcome.WAITING,
        Reason.WAITING_FOR_UPLOAD,
        f"waiting for version {ctx.version} to be uploaded",
    )


def _reconcile_supersede(ctx: _Pass) -> Plan | None:
    wanted = Version.parse(ctx.version)
    older = [
        other
        for version, other in _versioned(ctx.observed.others)
        if version < wanted and other.stage in IN_FLIGHT_STAGES
    ]
    if not older:
        return None
    guarded = [other for other in older if other.stage in SUPERSEDE_REQUIRED_STAGES]
    if guarded and not ctx.spec.supersede:
        held = guarded[0]
        return ctx.plan(
            Outcome.STALLED,
            Reason.SUPERSEDE_REQUIRED,
            f"{held.version} is in {_stage_words(held)} on {ctx.app}; set supersede: true "
            f"to cancel it and release {ctx.version}",
        )
    target = older[0]
    why = "supersede: true" if target.stage in SUPERSEDE_REQUIRED_STAGES else "nobody has it yet"
    return ctx.act(
        Reason.SUPERSEDING,
        f"canceling {target.version} ({_stage_words(target)}; {why}) to release {ctx.version}",
        ctx.step(Action.CANCEL, target, target.release_id),
    )


# --- one function per platform stage ----------------------------------------------------------


def _building(ctx: _Pass, snapshot: ReleaseSnapshot) -> Plan:
    return ctx.plan(
        Outcome.WAITING,
        Reason.BUILDING,
        f"building {ctx.version} since {ctx.at(_since(snapshot))}",
    )


def _build_failed(ctx: _Pass, snapshot: ReleaseSnapshot) -> Plan:
    detail = f": {snapshot.message}" if snapshot.message else ""
    return ctx.plan(
        Outcome.STALLED,
        Reason.BUILD_FAILED,
        f"the build of {ctx.version} failed at {ctx.at(_since(snapshot))}{detail}; "
        "upload a fixed version and set version to it",
    )


def _new_version_created(ctx: _Pass, snapshot: ReleaseSnapshot) -> Plan:
    return (
        _reconcile_basic_info(ctx, snapshot)
        or _reconcile_running_test(ctx, snapshot)
        or _reconcile_configuration(ctx, snapshot)
        or _reconcile_compatibility(ctx, snapshot)
        or _apply(ctx, snapshot)
    )


def _under_review(ctx: _Pass, snapshot: ReleaseSnapshot) -> Plan:
    return (
        _reconcile_basic_info(ctx, snapshot)
        or _reconcile_withdraw(ctx, snapshot)
        or ctx.plan(
            Outcome.WAITING,
            Reason.UNDER_REVIEW,
            f"waiting for review since {ctx.at(_since(snapshot))} ({ctx.app})",
        )
    )


def _rejected(ctx: _Pass, snapshot: ReleaseSnapshot) -> Plan:
    return _reconcile_rejection(ctx, snapshot) or _new_version_created(ctx, snapshot)


def _pilot_testing(ctx: _Pass, snapshot: ReleaseSnapshot) -> Plan:
    return (
        _reconcile_basic_info(ctx, snapshot)
        or _reconcile_testers(ctx, snapshot)
        or _reconcile_complete_testing(ctx, snapshot)
        or ctx.plan(
            Outcome.WAITING,
            Reason.PILOT_TESTING,
            f"pilot testing with {_count(len(snapshot.testers), 'tester')} since "
            f"{ctx.at(_since(snapshot))}; set pilot.complete: true to end it",
        )
    )


def _release_preparation(ctx: _Pass, snapshot: ReleaseSnapshot) -> Plan:
    """Release preparation and grayscale p: move to ``grayscale`` (100 = full release), or
    along ``rollout``'s schedule."""
    return (
        _reconcile_basic_info(ctx, snapshot)
        or _reconcile_rollout(ctx, snapshot)
        or _reconcile_grayscale(ctx, snapshot)
    )


def _full_release(ctx: _Pass, snapshot: ReleaseSnapshot) -> Plan:
    since = ctx.at(_since(snapshot))
    if snapshot.qr_code is None:
        return ctx.act(
            Reason.CREATING_QR_CODE,
            f"released to all users of {ctx.app} since {since}; creating the QR code",
            ctx.step(Action.CREATE_QR_CODE, snapshot, snapshot.release_id, ctx.release.spec_hash),
        )
    if ctx.spec.rollout is not None:
        return _rollout_released(ctx, since)
    if ctx.spec.grayscale < 100:
        return ctx.plan(
            Outcome.STALLED,
            Reason.GRAYSCALE_DECREASE_REFUSED,
            f"grayscale only rises: {ctx.version} is fully released on {ctx.app}, main asks "
            f"{ctx.spec.grayscale}%; set grayscale: 100",
        )
    return ctx.plan(
        Outcome.DONE, Reason.RELEASED, f"released to all users of {ctx.app} since {since}"
    )


def _canceled(ctx: _Pass, snapshot: ReleaseSnapshot) -> Plan:
    """Canceled without ``cancel: true`` (by a person on the console): final for the version."""
    detail = f" ({snapshot.message})" if snapshot.message else ""
    return ctx.plan(
        Outcome.DONE,
        Reason.CANCELED,
        f"{ctx.version} was canceled on {ctx.app} at {ctx.at(_since(snapshot))}{detail}; "
        "a cancel is final: set version to a new version to release again",
    )


def _archived(ctx: _Pass, snapshot: ReleaseSnapshot) -> Plan:
    return ctx.plan(
        Outcome.DONE,
        Reason.ARCHIVED,
        f"archived at {ctx.at(_since(snapshot))}: a newer version was fully released on {ctx.app}",
    )


_STAGES: Mapping[Stage, Callable[[_Pass, ReleaseSnapshot], Plan]] = {
    Stage.BUILDING: _building,
    Stage.BUILD_FAILED: _build_failed,
    Stage.NEW_VERSION_CREATED: _new_version_created,
    Stage.UNDER_REVIEW: _under_review,
    Stage.REJECTED: _rejected,
    Stage.PILOT_TESTING: _pilot_testing,
    Stage.RELEASE_PREPARATION: _release_preparation,
    Stage.GRAYSCALE: _release_preparation,
    Stage.FULL_RELEASE: _full_release,
    Stage.CANCELED: _canceled,
    Stage.ARCHIVED: _archived,
}


# --- the checks the stages are made of ----------------------------------------------------


def _reconcile_basic_info(ctx: _Pass, snapshot: ReleaseSnapshot) -> Plan | None:
    """Basic info stays editable until full release: keep it equal to the manifest's."""
    desired = dict(ctx.spec.basic_info)
    current = dict(snapshot.basic_info)
    if not desired or desired == current:
        return None
    fields = sorted(k for k in desired.keys() | current.keys() if desired.get(k) != current.get(k))
    return ctx.act(
        Reason.UPDATING_BASIC_INFO,
        f"updating basic info ({', '.join(fields)})",
        ctx.step(
            Action.UPDATE_BASIC_INFO,
            snapshot,
            digest(desired),
            snapshot.updated_at,
            basic_info=desired,
        ),
    )


def _reconcile_running_test(ctx: _Pass, snapshot: ReleaseSnapshot) -> Plan | None:
    """A running compatibility test is waited for before anything else is pushed or run."""
    report = snapshot.compatibility
    if report is None or report.status is not CompatibilityStatus.RUNNING:
        return None
    stale = report.configuration_digest != _desired_digest(ctx, snapshot)
    note = " (for an earlier configuration; the test runs again after it)" if stale else ""
    return ctx.plan(
        Outcome.WAITING,
        Reason.TESTING_COMPATIBILITY,
        f"compatibility test running since {ctx.at(report.started_at)}{note}",
    )


def _reconcile_configuration(ctx: _Pass, snapshot: ReleaseSnapshot) -> Plan | None:
    desired = dict(ctx.spec.configuration)
    if not _configuration_differs(ctx, snapshot):
        return None
    wanted = configuration_digest(desired)
    return ctx.act(
        Reason.PUSHING_CONFIGURATION,
        f"pushing configuration {wanted[:8]} "
        f"(the platform has {configuration_digest(snapshot.configuration)[:8]})",
        ctx.step(
            Action.UPDATE_CONFIGURATION,
            snapshot,
            wanted,
            snapshot.updated_at,
            configuration=desired,
        ),
    )


def _reconcile_compatibility(ctx: _Pass, snapshot: ReleaseSnapshot) -> Plan | None:
    """Test once per (configuration, retest); stall below ``minPassRate``."""
    wanted = _desired_digest(ctx, snapshot)
    retest = ctx.spec.compatibility.retest
    report = snapshot.compatibility
    recorded = ctx.own_status.compatibility if ctx.own_status else None
    why = None
    if report is None:
        why = "no report yet"
    elif report.configuration_digest != wanted:
        why = "the configuration changed since the last report"
    elif compatibility_retest(report, recorded, retest) != retest:
        why = f"retest {retest} asked"
    if why is not None:
        return ctx.act(
            Reason.TESTING_COMPATIBILITY,
            f"running the compatibility test ({why})",
            ctx.step(
                Action.RUN_COMPATIBILITY_TEST,
                snapshot,
                wanted,
                retest,
                report.report_id if report else None,
            ),
        )
    assert report is not None
    gate = ctx.spec.compatibility.min_pass_rate
    if report.pass_rate >= gate:
        return None
    failed = [case for case in report.cases if not case.passed]
    shown = ", ".join(f"{c.os}/{c.network}/{c.device}" for c in failed[:3])
    more = ", ..." if len(failed) > 3 else ""
    return ctx.plan(
        Outcome.STALLED,
        Reason.COMPATIBILITY_FAILED,
        f"pass rate {_percent(report.pass_rate)} < {_percent(gate)}: {len(failed)} of "
        f"{len(report.cases)} cases failed ({shown}{more}); fix the build or lower "
        "minPassRate, or bump retest",
    )


def _apply(ctx: _Pass, snapshot: ReleaseSnapshot) -> Plan:
    """Every gate before applying is open: configuration pushed, report at the gate."""
    report = snapshot.compatibility
    rate = f"compatibility {_percent(report.pass_rate)}" if report else "compatibility"
    gate = _percent(ctx.spec.compatibility.min_pass_rate)
    again = " again after the rejection" if snapshot.stage is Stage.REJECTED else ""
    return ctx.act(
        Reason.APPLYING,
        f"{rate} >= {gate}: applying for release{again} ({ctx.app})",
        ctx.step(Action.APPLY, snapshot, ctx.release.spec_hash, _since(snapshot)),
    )


def _reconcile_withdraw(ctx: _Pass, snapshot: ReleaseSnapshot) -> Plan | None:
    """A configuration change during review withdraws; the next passes push and re-apply."""
    if not _configuration_differs(ctx, snapshot):
        return None
    return ctx.act(
        Reason.WITHDRAWING,
        "the configuration changed during review: withdrawing to push it and apply again",
        ctx.step(
            Action.WITHDRAW,
            snapshot,
            snapshot.release_id,
            ctx.release.spec_hash,
            _since(snapshot),
        ),
    )


def _reconcile_rejection(ctx: _Pass, snapshot: ReleaseSnapshot) -> Plan | None:
    """Stalled with the platform's reason until the spec changes since the rejected apply."""
    if _changed_since_apply(ctx, snapshot):
        return None
    reason = snapshot.review.reason if snapshot.review else snapshot.message
    words = f": {reason}" if reason else ""
    return ctx.plan(
        Outcome.STALLED,
        Reason.REJECTED,
        f"rejected at {ctx.at(_since(snapshot))}{words}; change basic info or configuration "
        "in the manifest to apply again, or release a new version",
    )


def _reconcile_testers(ctx: _Pass, snapshot: ReleaseSnapshot) -> Plan | None:
    desired = tuple(sorted(set(ctx.spec.pilot.testers)))
    current = set(snapshot.testers)
    if set(desired) == current:
        return None
    added = len(set(desired) - current)
    removed = len(current - set(desired))
    return ctx.act(
        Reason.SYNCING_TESTERS,
        f"syncing testers: adding {added}, removing {removed} ({len(desired)} in the manifest)",
        ctx.step(
            Action.SET_TESTERS,
            snapshot,
            digest(list(desired)),
            snapshot.updated_at,
            testers=desired,
        ),
    )


def _reconcile_complete_testing(ctx: _Pass, snapshot: ReleaseSnapshot) -> Plan | None:
    if not ctx.spec.pilot.complete:
        return None
    return ctx.act(
        Reason.COMPLETING_TESTING,
        f"pilot.complete: true: completing pilot testing "
        f"({_count(len(snapshot.testers), 'tester')} since {ctx.at(_since(snapshot))})",
        ctx.step(Action.COMPLETE_TESTING, snapshot, snapshot.release_id, ctx.release.spec_hash),
    )


def _reconcile_rollout(ctx: _Pass, snapshot: ReleaseSnapshot) -> Plan | None:
    """``spec.rollout``: the schedule says the exposure (``controller.rollout``)."""
    rollout = ctx.spec.rollout
    if rollout is None:
        return None
    current = snapshot.grayscale if snapshot.stage is Stage.GRAYSCALE else 0
    progress = ctx.own_status.rollout if ctx.own_status else None
    decision = advance(
        rollout,
        progress,
        current,
        ctx.observed.measurements,
        ctx.now,
        stop_the_line=ctx.observed.stop_the_line,
        frozen=None
        if rollout.override_freeze
        else freeze(ctx.observed.freeze_windows, ctx.app, ctx.now),
        wave=ctx.observed.wave,
    )
    if decision.cancel:
        plan = ctx.act(
            decision.reason,
            decision.message,
            ctx.step(Action.CANCEL, snapshot, snapshot.release_id, "rollout"),
        )
    elif decision.target is not None:
        plan = _reconcile_grayscale(ctx, snapshot, decision.target)
        plan = replace(plan, message=decision.message)
    else:
        phase = derive_phase(ctx.release, snapshot)
        if decision.reason is Reason.ROLLOUT_PAUSED:
            phase = Phase.PAUSED
        elif decision.progress.halt is not None:
            phase = Phase.HALTED
        plan = Plan(
            release=ctx.release.key,
            phase=phase,
            outcome=decision.outcome,
            reason=decision.reason,
            message=decision.message,
        )
    return replace(plan, rollout=decision.progress)


def _rollout_released(ctx: _Pass, since: str) -> Plan:
    """Fully released under a rollout: the schedule is over, whatever step it was at."""
    rollout = ctx.spec.rollout
    assert rollout is not None
    progress = ctx.own_status.rollout if ctx.own_status else None
    if progress is None:
        progress = RolloutProgress(step=len(rollout.steps), step_started_at=ctx.now)
    done = replace(
        progress,
        step=len(rollout.steps),
        exposure=100,
        halt=None,
        message="",
        next_action="",
        next_time=None,
    )
    plan = ctx.plan(
        Outcome.DONE, Reason.RELEASED, f"released to all users of {ctx.app} since {since}"
    )
    return replace(plan, rollout=done)


def _reconcile_grayscale(ctx: _Pass, snapshot: ReleaseSnapshot, desired: int | None = None) -> Plan:
    desired = ctx.spec.grayscale if desired is None else desired
    current = snapshot.grayscale if snapshot.stage is Stage.GRAYSCALE else 0
    if desired < current:
        return ctx.plan(
            Outcome.STALLED,
            Reason.GRAYSCALE_DECREASE_REFUSED,
            f"grayscale only rises: the platform has {current}%, main asks {desired}%; "
            "to roll back, set cancel: true",
        )
    if desired == 0:
        return ctx.plan(
            Outcome.WAITING,
            Reason.READY_TO_RELEASE,
            f"approved at {ctx.at(_since(snapshot))}; set grayscale > 0 to release",
        )
    if desired >= 100:
        return ctx.act(
            Reason.RELEASING_FULLY,
            f"releasing {ctx.version} to all users of {ctx.app} (grayscale: 100)",
            ctx.step(Action.FULL_RELEASE, snapshot, snapshot.release_id, ctx.release.spec_hash),
        )
    if desired > current:
        return ctx.act(
            Reason.RAISING_GRAYSCALE,
            f"raising grayscale {current}% -> {desired}% of {ctx.app} users",
            ctx.step(Action.SET_GRAYSCALE, snapshot, snapshot.release_id, desired, percent=desired),
        )
    return ctx.plan(
        Outcome.DONE,
        Reason.GRAYSCALE_REACHED,
        f"grayscale {current}% of {ctx.app} users since {ctx.at(_since(snapshot))}; "
        "raise grayscale to continue (100 = full release)",
    )


# --- backoff --------------------------------------------------------------------------------


def _hold_for_backoff(ctx: _Pass, plan: Plan) -> Plan:
    """Hold a step back while the status's retry time has not come (same spec only)."""
    status = ctx.status
    step = plan.step
    if (
        step is None
        or status is None
        or status.next_retry is None
        or ctx.now >= status.next_retry
        or status.spec_hash != ctx.release.spec_hash
    ):
        return plan
    error = status.last_error
    after = ctx.at(status.next_retry)
    if error is not None and error.permanent:
        words = f" ({error.code}): {error.message}"
        return ctx.plan(
            Outcome.STALLED,
            Reason.PLATFORM_REFUSED,
            f"the platform refused {step.describe()}{words}; change the manifest to try "
            f"again (rechecking after {after})",
        )
    if error is None:
        detail = ""
    else:
        detail = f" ({_count(error.attempts, 'attempt')}: {error.message or error.code})"
    return ctx.plan(
        Outcome.WAITING, Reason.RETRY_BACKOFF, f"retrying {step.describe()} after {after}{detail}"
    )


# --- small pure helpers -------------------------------------------------------------------


def _desired_digest(ctx: _Pass, snapshot: ReleaseSnapshot) -> str:
    """Digest of the configuration main asks for (the platform's when the manifest has none)."""
    return configuration_digest(ctx.spec.configuration or snapshot.configuration)


def _configuration_differs(ctx: _Pass, snapshot: ReleaseSnapshot) -> bool:
    desired = ctx.spec.configuration
    if not desired:
        return False
    return configuration_digest(desired) != configuration_digest(snapshot.configuration)


def _changed_since_apply(ctx: _Pass, snapshot: ReleaseSnapshot) -> bool:
    """Whether main asks for something else than what was applied (and rejected).

    The status records the spec hash at the last apply; when it does not (the record was
    lost), a difference between the manifest's content and the platform's counts.
    """
    applied = ctx.own_status.applied_spec_hash if ctx.own_status else None
    if applied is not None:
        return applied != ctx.release.spec_hash
    basic_info = dict(ctx.spec.basic_info)
    return _configuration_differs(ctx, snapshot) or (
        bool(basic_info) and basic_info != dict(snapshot.basic_info)
    )


def _versioned(others: Iterable[ReleaseSnapshot]) -> list[tuple[Version, ReleaseSnapshot]]:
    """Other releases with their versions, oldest version first (ties by release id).

    A release whose version is not x.y.z (a platform answer this controller cannot order) is
    left out: whether it is older or newer is for the platform to refuse, not to guess.
    """
    versioned = [
        (version, other)
        for other in others
        if (version := Version.parse_or_none(other.version)) is not None
    ]
    return sorted(versioned, key=lambda pair: (pair[0], pair[1].release_id))


def _since(snapshot: ReleaseSnapshot) -> datetime:
    """When the release entered its current stage."""
    return snapshot.stage_times.get(snapshot.stage, snapshot.updated_at)


def _stage_words(snapshot: ReleaseSnapshot) -> str:
    words = _STAGE_PHASES[snapshot.stage].value
    if snapshot.stage is Stage.GRAYSCALE:
        return f"{words} {snapshot.grayscale}%"
    return words


def _clock(moment: datetime, now: datetime) -> str:
    """``HH:MM`` (UTC) on the day of ``now``, ``YYYY-MM-DD HH:MM`` on any other day."""
    moment, now = _utc(moment), _utc(now)
    if moment.date() == now.date():
        return moment.strftime("%H:%M")
    return moment.strftime("%Y-%m-%d %H:%M")


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment
    return moment.astimezone(UTC)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _percent(value: float) -> str:
    return f"{value:g}%"
