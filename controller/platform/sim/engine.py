"""The effect of one action on one release, by the platform's rules: a pure function.

``effect(release, action, app, at)`` takes a release snapshot, one action
(:mod:`controller.platform.sim.actions`: a mutation of the ``Platform`` protocol, or the
reviewer's decision), the target app's settings and the instant
the action happens, and returns the release as the platform shows it afterwards, or raises the
typed refusal the platform gives (``InvalidState``, ``NotEditable``, ``LimitExceeded``,
``NotFound``). No SQLite, no clock, no randomness: inputs in, snapshot out. The stage sets and
the transition table it enforces are those of :mod:`controller.platform.rules`.

``check_upload``, ``check_new_release`` and ``archived`` are the rules that look beyond one
release: whether a version may be uploaded (versions of a mini program only increase), whether
it may start a release on a target, and what a full release does to the previous one.

Callers: :class:`controller.platform.sim.Simulator` (every change to a release goes through
here; the simulator adds what only it knows: ids, due times, the other rows) and
``controller.preview`` (projects the controller's steps on the picture rebuilt from a status
file), so the simulator and the preview can never disagree.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any, assert_never

from controller.platform.errors import (
    Conflict,
    InvalidState,
    LimitExceeded,
    NotEditable,
    NotFound,
)
from controller.platform.protocol import (
    CompatibilityReport,
    CompatibilityStatus,
    ReleaseSnapshot,
    Review,
    ReviewDecision,
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
    TRANSITIONS,
    Stage,
    Version,
)
from controller.platform.sim.actions import (
    Action,
    Apply,
    Cancel,
    CompleteTesting,
    CreateQrCode,
    FullRelease,
    ReviewApplication,
    RunCompatibilityTest,
    SetGrayscale,
    SetTesters,
    UpdateBasicInfo,
    UpdateConfiguration,
    Withdraw,
)
from controller.platform.sim.model import AppSettings, qr_code

__all__ = [
    "archived",
    "check_new_release",
    "check_transition",
    "check_upload",
    "effect",
    "label",
]


# --------------------------------------------------------------------------------------------
# the effect of an action
# --------------------------------------------------------------------------------------------


def effect(
    release: ReleaseSnapshot, action: Action, app: AppSettings, at: datetime
) -> ReleaseSnapshot:
    """The release after ``action`` at ``at`` on target app ``app``, or the platform's refusal.

    ``release`` is never changed; stage entries are stamped with ``at``.
    """
    if not isinstance(action, ReviewApplication) and release.stage in FINAL_STAGES:
        raise NotEditable(f"{label(release)} is {release.stage}: {_FINAL_REASONS[release.stage]}")
    match action:
        case UpdateBasicInfo(basic_info):
            return _update_basic_info(release, basic_info, at)
        case UpdateConfiguration(configuration):
            return _update_configuration(release, configuration, at)
        case RunCompatibilityTest(report_id):
            return _run_compatibility_test(release, report_id, at)
        case Apply():
            return _apply(release, app, at)
        case Withdraw():
            return _withdraw(release, at)
        case SetTesters(testers):
            return _set_testers(release, testers, app, at)
        case CompleteTesting():
            return _complete_testing(release, at)
        case Cancel():
            return _cancel(release, at)
        case SetGrayscale(percent):
            return _set_grayscale(release, percent, app, at)
        case FullRelease():
            return _full_release(release, at)
        case CreateQrCode():
            return _create_qr_code(release, at)
        case ReviewApplication(approve, reason):
            return _review(release, approve, reason, app, at)
        case _:  # pragma: no cover - every action has a case
            assert_never(action)


def label(release: ReleaseSnapshot) -> str:
    """``release R-000001 (shop 1.4.0 on gcash)``: how refusals name a release."""
    return (
        f"release {release.release_id} ({release.mini_program} {release.version} on "
        f"{release.target_app})"
    )


def check_transition(before: Stage, after: Stage) -> None:
    """Raise AssertionError unless ``before -> after`` is in the platform's transition table.

    A failure is a bug in the simulator, never a refusal: the rules above refuse first.
    """
    if after not in TRANSITIONS[before]:
        raise AssertionError(f"{before} -> {after} is not a transition of the platform")


def check_upload(mini_program: str, version: str, uploaded: Iterable[str]) -> None:
    """Refuse an upload that is not newer than the newest uploaded version of the mini program.

    Versions of a mini program strictly increase ("Upload mini programs"; Alipay Open Platform
    refuses a version that is not greater, x.y.z compared numerically), so a number is never
    uploaded twice either. ``uploaded`` are the versions already uploaded, in any order.
    Raises Conflict naming the newest one; ValueError when ``version`` is not x.y.z.
    """
    wanted = Version.parse(version)
    previous = set(uploaded)
    known = [parsed for text in previous if (parsed := Version.parse_or_none(text)) is not None]
    if not known or wanted > max(known):
        return
    newest = max(known)
    fix = f"upload a version greater than {newest}, e.g. {newest.next_patch()}"
    if version in previous:
        raise Conflict(
            f"{mini_program} {version} is already uploaded; the newest uploaded version of "
            f"{mini_program} is {newest}: {fix}"
        )
    raise Conflict(
        f"{mini_program} {version} is lower than {newest}, the newest uploaded version of "
        f"{mini_program}: versions only increase; {fix}"
    )


def check_new_release(
    mini_program: str,
    version: str,
    target_app: str,
    environment: str,
    existing: Iterable[ReleaseSnapshot],
) -> None:
    """Refuse a release of ``version`` on ``target_app`` that the platform would not start.

    ``existing`` are the releases of the mini program on that target, in any order. A version
    goes to a target once (a canceled one is never redone); one release is in flight per
    target; versions strictly increase per target.
    """
    if not environment.strip():
        raise InvalidState("a release needs an environment (e.g. production)")
    others = list(existing)
    for other in others:
        if other.version != version:
            continue
        if other.stage is Stage.CANCELED:
            raise Conflict(
                f"{mini_program} {version} was canceled on {target_app} ({other.release_id}); "
                "a canceled release can never be redone: upload a new version"
            )
        raise Conflict(
            f"{mini_program} {version} is already released to {target_app} as "
            f"{other.release_id} ({other.stage}); a version goes to a target once"
        )
    for other in others:
        if other.stage in IN_FLIGHT_STAGES:
            raise Conflict(
                f"{mini_program} already has a release in flight on {target_app}: "
                f"{other.release_id} ({other.version}, {other.stage}); cancel release "
                f"{other.release_id} ({other.version}) first"
            )
    ordered = [
        (parsed, other)
        for other in others
        if (parsed := Version.parse_or_none(other.version)) is not None
    ]
    if not ordered:
        return
    newest_version, newest = max(ordered, key=lambda pair: pair[0])
    if Version.parse(version) <= newest_version:
        raise Conflict(
            f"{mini_program} {version} is not newer than {newest.version}, already released "
            f"to {target_app} ({newest.release_id}); versions must strictly increase"
        )


def archived(release: ReleaseSnapshot, by: ReleaseSnapshot, at: datetime) -> ReleaseSnapshot:
    """A full release after ``by`` (a newer version) was fully released on the same target."""
    return _enter(
        release, Stage.ARCHIVED, at, f"replaced by {by.version} ({by.release_id})", grayscale=0
    )


# --------------------------------------------------------------------------------------------
# one function per action
# --------------------------------------------------------------------------------------------

_FINAL_REASONS: Mapping[Stage, str] = {
    Stage.CANCELED: "canceling is final for this version on this target",
    Stage.BUILD_FAILED: "its build failed; upload and release a new version",
    Stage.ARCHIVED: "a newer version replaced it",
}


def _enter(
    release: ReleaseSnapshot, stage: Stage, at: datetime, message: str, **changes: Any
) -> ReleaseSnapshot:
    """The release entering ``stage`` at ``at`` (a transition of the table, or a bug)."""
    check_transition(release.stage, stage)
    return replace(
        release,
        stage=stage,
        stage_times={**release.stage_times, stage: at},
        updated_at=max(release.updated_at, at),
        message=message,
        **changes,
    )


def _update_basic_info(
    release: ReleaseSnapshot, basic_info: Mapping[str, str], at: datetime
) -> ReleaseSnapshot:
    if release.stage not in BASIC_INFO_EDITABLE_STAGES:
        raise NotEditable(
            f"{label(release)} is fully released: basic info is editable only until "
            "full release; release a new version to change it"
        )
    info = {str(k): str(v) for k, v in basic_info.items()}
    return replace(release, basic_info=info, updated_at=at)


def _update_configuration(
    release: ReleaseSnapshot, configuration: Mapping[str, Any], at: datetime
) -> ReleaseSnapshot:
    if release.stage is Stage.BUILDING:
        raise InvalidState(
            f"{label(release)} is still building; the configuration can be changed "
            "once the new version is created"
        )
    if release.stage not in CONFIGURATION_EDITABLE_STAGES:
        hint = (
            "withdraw the application first"
            if release.stage is Stage.UNDER_REVIEW
            else "release a new version to change it"
        )
        raise NotEditable(
            f"{label(release)} is {release.stage}: only basic info is editable after "
            f"applying; {hint}"
        )
    return replace(release, configuration=dict(configuration), updated_at=at)


def _run_compatibility_test(
    release: ReleaseSnapshot, report_id: str, at: datetime
) -> ReleaseSnapshot:
    if release.stage not in CONFIGURATION_EDITABLE_STAGES:
        raise InvalidState(
            f"{label(release)} is {release.stage}: compatibility tests run in "
            "NEW_VERSION_CREATED or REJECTED"
        )
    running = release.compatibility
    if running is not None and running.status is CompatibilityStatus.RUNNING:
        raise InvalidState(
            f"a compatibility test of {label(release)} is already running "
            f"(report {running.report_id}); wait for it to finish"
        )
    report = CompatibilityReport(
        report_id=report_id,
        status=CompatibilityStatus.RUNNING,
        pass_rate=0.0,
        cases=(),
        configuration_digest=configuration_digest(release.configuration),
        started_at=at,
    )
    return replace(release, compatibility=report, updated_at=at)


def _apply(release: ReleaseSnapshot, app: AppSettings, at: datetime) -> ReleaseSnapshot:
    if release.stage not in CONFIGURATION_EDITABLE_STAGES:
        raise InvalidState(
            f"{label(release)} is {release.stage}: apply to release from "
            "NEW_VERSION_CREATED or REJECTED"
        )
    report = release.compatibility
    if report is None or report.configuration_digest != configuration_digest(release.configuration):
        raise InvalidState(
            f"{label(release)} has no compatibility report for its current "
            "configuration: run a compatibility test first"
        )
    if report.status is CompatibilityStatus.RUNNING:
        raise InvalidState(
            f"the compatibility test of {label(release)} (report "
            f"{report.report_id}) is still running: wait for the report first"
        )
    return _enter(release, Stage.UNDER_REVIEW, at, f"applied to release; review: {app.review}")


def _withdraw(release: ReleaseSnapshot, at: datetime) -> ReleaseSnapshot:
    if release.stage is not Stage.UNDER_REVIEW:
        raise InvalidState(
            f"{label(release)} is {release.stage}: only an application under review "
            "can be withdrawn"
        )
    return _enter(release, Stage.NEW_VERSION_CREATED, at, "application withdrawn; editable again")


def _set_testers(
    release: ReleaseSnapshot, testers: Iterable[str], app: AppSettings, at: datetime
) -> ReleaseSnapshot:
    wanted = sorted({str(t).strip() for t in testers if str(t).strip()})
    if release.stage is not Stage.PILOT_TESTING:
        raise InvalidState(
            f"{label(release)} is {release.stage}: testers can be set only during pilot testing"
        )
    if len(wanted) > app.testers_max:
        raise LimitExceeded(
            f"{len(wanted)} testers for {label(release)}: {app.app_id} allows at most "
            f"{app.testers_max}"
        )
    bad = [t for t in wanted if not re.fullmatch(app.user_id_pattern, t)]
    if bad:
        raise NotFound(
            f"{len(bad)} tester id(s) are not {app.app_id} user ids (expected "
            f"{app.user_id_pattern}): {', '.join(bad[:5])}"
        )
    return replace(release, testers=tuple(wanted), updated_at=at)


def _complete_testing(release: ReleaseSnapshot, at: datetime) -> ReleaseSnapshot:
    if release.stage is not Stage.PILOT_TESTING:
        raise InvalidState(
            f"{label(release)} is {release.stage}: testing can be completed only "
            "during pilot testing"
        )
    return _enter(release, Stage.RELEASE_PREPARATION, at, "pilot testing completed")


def _cancel(release: ReleaseSnapshot, at: datetime) -> ReleaseSnapshot:
    if release.stage not in CANCELABLE_STAGES:
        raise InvalidState(
            f"{label(release)} is {release.stage} and cannot be canceled; to replace a "
            "full release, fully release a newer version"
        )
    message = f"canceled in {release.stage}; final: release a new version to try again"
    return _enter(release, Stage.CANCELED, at, message, grayscale=0)


def _set_grayscale(
    release: ReleaseSnapshot, percent: int, app: AppSettings, at: datetime
) -> ReleaseSnapshot:
    if release.stage not in RELEASABLE_STAGES:
        raise InvalidState(
            f"{label(release)} is {release.stage}: grayscale release is possible from "
            "RELEASE_PREPARATION or GRAYSCALE"
        )
    if not app.allows_grayscale(percent):
        raise LimitExceeded(
            f"{percent}% is not an allowed grayscale value on {app.app_id} "
            f"(allowed: {app.describe_grayscale_values()})"
        )
    if percent <= release.grayscale:
        raise InvalidState(
            f"{label(release)} is already at {release.grayscale}%: grayscale only "
            f"rises (asked {percent}%); to roll back, cancel the release"
        )
    if percent == 100:
        return _fully_released(release, at)
    return _enter(
        release,
        Stage.GRAYSCALE,
        at,
        f"released to {percent}% of app users",
        grayscale=percent,
        extra={**release.extra, "peak_grayscale": max(_peak(release), percent)},
    )


def _full_release(release: ReleaseSnapshot, at: datetime) -> ReleaseSnapshot:
    if release.stage not in RELEASABLE_STAGES:
        raise InvalidState(
            f"{label(release)} is {release.stage}: full release is possible from "
            "RELEASE_PREPARATION or GRAYSCALE"
        )
    return _fully_released(release, at)


def _fully_released(release: ReleaseSnapshot, at: datetime) -> ReleaseSnapshot:
    return _enter(
        release,
        Stage.FULL_RELEASE,
        at,
        "released to all app users",
        grayscale=100,
        extra={**release.extra, "peak_grayscale": 100},
    )


def _create_qr_code(release: ReleaseSnapshot, at: datetime) -> ReleaseSnapshot:
    if release.stage not in RELEASED_STAGES:
        raise InvalidState(
            f"{label(release)} is {release.stage}: QR codes exist for released "
            "versions (GRAYSCALE or FULL_RELEASE)"
        )
    qr = qr_code(release.mini_program, release.version, release.target_app)
    return replace(release, qr_code=qr, updated_at=at)


def _review(
    release: ReleaseSnapshot, approve: bool, reason: str, app: AppSettings, at: datetime
) -> ReleaseSnapshot:
    if release.stage is not Stage.UNDER_REVIEW:
        raise InvalidState(
            f"{label(release)} is {release.stage}: only an application under review can be reviewed"
        )
    review = Review(
        decision=ReviewDecision.APPROVED if approve else ReviewDecision.REJECTED,
        reason=reason,
        pilot_required=app.pilot_required,
        decided_at=at,
    )
    if not approve:
        return _enter(release, Stage.REJECTED, at, f"rejected: {reason}", review=review)
    if app.pilot_required:
        return _enter(
            release,
            Stage.PILOT_TESTING,
            at,
            "approved; pilot testing is required",
            review=review,
        )
    return _enter(
        release, Stage.RELEASE_PREPARATION, at, "approved; ready to release", review=review
    )


def _peak(release: ReleaseSnapshot) -> int:
    peak = release.extra.get("peak_grayscale", release.grayscale)
    return int(peak) if isinstance(peak, int | float) else release.grayscale
