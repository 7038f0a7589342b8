"""Table tests of ``controller.plan.decide``: every observed stage x the desired states that matter.

Each row of ``ROWS`` is one decision with a readable id ("pilot-testing/testers-differ ->
set_testers"); the expectations are the outcome, reason, action and phase, plus the message a
person reads for the rows where the words matter. The functions below the table cover what a
table cannot: purity, idempotency keys, the retry backoff, phase derivation and time formats.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from controller.model import (
    Action,
    Compatibility,
    CompatibilitySummary,
    Condition,
    ConditionStatus,
    ConditionType,
    ErrorRecord,
    Observed,
    Outcome,
    Phase,
    Pilot,
    Plan,
    Reason,
    Release,
    ReleaseSpec,
    Status,
    digest,
)
from controller.plan import (
    MAX_KEY_LENGTH,
    compatibility_retest,
    decide,
    derive_phase,
    idempotency_key,
)
from controller.platform.protocol import (
    CompatibilityCase,
    CompatibilityReport,
    CompatibilityStatus,
    QrCode,
    ReleaseSnapshot,
    Review,
    ReviewDecision,
    Stage,
    configuration_digest,
)

# --------------------------------------------------------------------------------------------
# builders
# --------------------------------------------------------------------------------------------

NOW = datetime(2024, 5, 1, 10, 30, tzinfo=UTC)
SINCE = datetime(2024, 5, 1, 10, 2, tzinfo=UTC)
VERSION = "1.4.0"
BASIC = {"name": "Shop", "description": "Buy things", "slogan": "Shop more"}
CONFIG: dict[str, Any] = {"pages": ["index", "cart"], "window": {"title": "Shop"}}
CONFIG_B: dict[str, Any] = {"pages": ["index", "cart", "pay"], "window": {"title": "Shop"}}
DIGEST = configuration_digest(CONFIG)
DIGEST_B = configuration_digest(CONFIG_B)
TESTERS = ("2088000000000001", "2088000000000002")


def make_spec(**changes: Any) -> ReleaseSpec:
    """A spec that matches ``make_snapshot()``'s defaults; ``changes`` override fields."""
    values: dict[str, Any] = {
        "version": VERSION,
        "basic_info": dict(BASIC),
        "configuration": copy.deepcopy(CONFIG),
        "compatibility": Compatibility(min_pass_rate=95.0, retest=0),
        "pilot": Pilot(testers=TESTERS, complete=False),
        "grayscale": 0,
    }
    values.update(changes)
    return ReleaseSpec(**values)


def make_release(**spec_changes: Any) -> Release:
    return Release(
        mini_program="shop",
        target_app="gcash",
        environment="production",
        path="releases/shop/gcash.yaml",
        spec=make_spec(**spec_changes),
    )


def make_report(
    *,
    passed: int = 16,
    failed: int = 0,
    status: CompatibilityStatus = CompatibilityStatus.FINISHED,
    config_digest: str = DIGEST,
    report_id: str = "report-1",
) -> CompatibilityReport:
    devices = [("ios", "3g", "iphone-8"), ("android", "wifi", "pixel-3"), ("ios", "4g", "ipad")]
    cases = tuple(
        CompatibilityCase(*devices[i % len(devices)], passed=False) for i in range(failed)
    ) + tuple(CompatibilityCase("android", "4g", f"device-{i}", passed=True) for i in range(passed))
    total = passed + failed
    rate = (
        round(100.0 * passed / total, 1) if total and status is CompatibilityStatus.FINISHED else 0
    )
    return CompatibilityReport(
        report_id=report_id,
        status=status,
        pass_rate=float(rate),
        cases=cases if status is CompatibilityStatus.FINISHED else (),
        configuration_digest=config_digest,
        started_at=SINCE - timedelta(minutes=5),
        finished_at=SINCE if status is CompatibilityStatus.FINISHED else None,
    )


def make_snapshot(stage: Stage, **changes: Any) -> ReleaseSnapshot:
    """The release of ``VERSION`` in ``stage``, in line with ``make_spec()`` unless changed."""
    values: dict[str, Any] = {
        "release_id": f"rel-{changes.get('version', VERSION)}",
        "mini_program": "shop",
        "version": VERSION,
        "target_app": "gcash",
        "environment": "production",
        "stage": stage,
        "basic_info": dict(BASIC),
        "configuration": copy.deepcopy(CONFIG),
        "compatibility": make_report(),
        "review": None,
        "testers": TESTERS if stage is Stage.PILOT_TESTING else (),
        "grayscale": 0,
        "stage_times": {stage: SINCE},
        "qr_code": None,
        "created_at": SINCE - timedelta(hours=1),
        "updated_at": SINCE,
    }
    values.update(changes)
    if "release_id" not in changes:
        values["release_id"] = f"rel-{values['version']}"
    return ReleaseSnapshot(**values)


def other(version: str, stage: Stage, **changes: Any) -> ReleaseSnapshot:
    """A release of another version of the same mini program on the same target."""
    return make_snapshot(stage, version=version, **changes)


def make_status(release: Release | None = None, **changes: Any) -> Status:
    release = release or make_release()
    values: dict[str, Any] = {
        "mini_program": "shop",
        "target_app": "gcash",
        "version": release.spec.version,
        "observed_commit": "c0ffee",
        "spec_hash": release.spec_hash,
        "phase": Phase.TESTING,
    }
    values.update(changes)
    return Status(**values)


def recorded(
    report_id: str = "report-1", retest: int = 0, config_digest: str = DIGEST
) -> CompatibilitySummary:
    return CompatibilitySummary(
        report_id=report_id,
        pass_rate=100.0,
        passed=16,
        failed=0,
        configuration_digest=config_digest,
        retest=retest,
    )


REJECTION = Review(
    decision=ReviewDecision.REJECTED,
    reason="screenshots do not match the mini program",
    pilot_required=False,
    decided_at=SINCE,
)
QR = QrCode(url="https://qr.example/shop", svg="<svg/>")


# --------------------------------------------------------------------------------------------
# the decision table
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    id: str
    snapshot: ReleaseSnapshot | None
    outcome: Outcome
    reason: Reason
    action: Action | None
    phase: Phase
    spec: Mapping[str, Any] = field(default_factory=dict)
    #: A function of the release building the previous status, or None for a first pass.
    status: Any = None
    uploaded: bool = True
    others: tuple[ReleaseSnapshot, ...] = ()
    #: The exact message, or a substring of it prefixed with "~".
    message: str | None = None
    #: Attributes the step must have (release_id, percent, testers, ...).
    step: Mapping[str, Any] = field(default_factory=dict)


def applied_before(release: Release) -> Status:
    """A status whose last apply was for an earlier spec (the person changed it since)."""
    return make_status(release, applied_spec_hash="0123456789abcdef")


def applied_now(release: Release) -> Status:
    """A status whose last apply was for exactly this spec."""
    return make_status(release, applied_spec_hash=release.spec_hash)


W, P, D, S = Outcome.WAITING, Outcome.PROGRESSING, Outcome.DONE, Outcome.STALLED
NVC, UR, RJ = Stage.NEW_VERSION_CREATED, Stage.UNDER_REVIEW, Stage.REJECTED
PT, RP, GS, FR = Stage.PILOT_TESTING, Stage.RELEASE_PREPARATION, Stage.GRAYSCALE, Stage.FULL_RELEASE
OTHER_BASIC = {**BASIC, "slogan": "Shop even more"}

ROWS = [
    # --- paused ------------------------------------------------------------------------------
    Row(
        "paused/no-release -> wait",
        None,
        W,
        Reason.PAUSED,
        None,
        Phase.PAUSED,
        spec={"paused": True},
        message="paused: observing gcash without acting (1.4.0 not created yet); "
        "set paused: false to resume",
    ),
    Row(
        "paused/pilot-complete -> wait",
        make_snapshot(PT),
        W,
        Reason.PAUSED,
        None,
        Phase.PAUSED,
        spec={"paused": True, "pilot": Pilot(testers=TESTERS, complete=True)},
        message="~(platform: PilotTesting)",
    ),
    Row(
        "paused/cancel-in-grayscale -> wait",
        make_snapshot(GS, grayscale=20),
        W,
        Reason.PAUSED,
        None,
        Phase.PAUSED,
        spec={"paused": True, "cancel": True, "grayscale": 20},
        message="~(platform: Grayscale 20%)",
    ),
    Row(
        "paused/grayscale-raise -> wait",
        make_snapshot(GS, grayscale=20),
        W,
        Reason.PAUSED,
        None,
        Phase.PAUSED,
        spec={"paused": True, "grayscale": 50},
    ),
    # --- cancel --------------------------------------------------------------------------------
    Row(
        "cancel/no-release -> done",
        None,
        D,
        Reason.CANCELED,
        None,
        Phase.CANCELED,
        spec={"cancel": True},
        message="canceled before it started: 1.4.0 was never released on gcash",
    ),
    Row(
        "cancel/no-release-older-in-pilot -> done, older untouched",
        None,
        D,
        Reason.CANCELED,
        None,
        Phase.CANCELED,
        spec={"cancel": True},
        others=(other("1.3.0", PT),),
    ),
    *(
        Row(
            f"cancel/{stage.value.lower()} -> cancel",
            make_snapshot(stage),
            P,
            Reason.CANCELING,
            Action.CANCEL,
            phase,
            spec={"cancel": True},
            step={"release_id": "rel-1.4.0"},
        )
        for stage, phase in [
            (Stage.BUILDING, Phase.BUILDING),
            (NVC, Phase.TESTING),
            (UR, Phase.IN_REVIEW),
            (RJ, Phase.REJECTED),
            (RP, Phase.READY_TO_RELEASE),
        ]
    ),
    Row(
        "cancel/pilot-testers-differ -> cancel first",
        make_snapshot(PT, testers=()),
        P,
        Reason.CANCELING,
        Action.CANCEL,
        Phase.PILOT_TESTING,
        spec={"cancel": True},
        message="canceling 1.4.0 on gcash (PilotTesting; cancel: true); final for this version",
    ),
    Row(
        "cancel/grayscale-basic-info-differs -> cancel first",
        make_snapshot(GS, grayscale=30, basic_info=OTHER_BASIC),
        P,
        Reason.CANCELING,
        Action.CANCEL,
        Phase.GRAYSCALE,
        spec={"cancel": True, "grayscale": 30},
    ),
    Row(
        "cancel/canceled -> done",
        make_snapshot(Stage.CANCELED),
        D,
        Reason.CANCELED,
        None,
        Phase.CANCELED,
        spec={"cancel": True},
        message="1.4.0 canceled on gcash at 10:02",
    ),
    Row(
        "cancel/full-release -> stalled, cannot cancel",
        make_snapshot(FR, grayscale=100, qr_code=QR),
        S,
        Reason.PLATFORM_REFUSED,
        None,
        Phase.RELEASED,
        spec={"cancel": True, "grayscale": 100},
        message="~a full release cannot be canceled",
    ),
    Row(
        "cancel/build-failed -> done, nothing to cancel",
        make_snapshot(Stage.BUILD_FAILED),
        D,
        Reason.CANCELED,
        None,
        Phase.BUILD_FAILED,
        spec={"cancel": True},
    ),
    Row(
        "cancel/archived -> done",
        make_snapshot(Stage.ARCHIVED),
        D,
        Reason.ARCHIVED,
        None,
        Phase.ARCHIVED,
        spec={"cancel": True},
    ),
    # --- no release of the version yet --------------------------------------------------------
    Row(
        "no-release/not-uploaded -> wait for upload",
        None,
        W,
        Reason.WAITING_FOR_UPLOAD,
        None,
        Phase.PENDING,
        uploaded=False,
        message="waiting for version 1.4.0 to be uploaded",
    ),
    Row(
        "no-release/uploaded -> create",
        None,
        P,
        Reason.CREATING_RELEASE,
        Action.CREATE_RELEASE,
        Phase.PENDING,
        message="creating the release of 1.4.0 on gcash (starts the build)",
        step={"release_id": None},
    ),
    *(
        Row(
            f"no-release/older-{stage.value.lower()} -> create",
            None,
            P,
            Reason.CREATING_RELEASE,
            Action.CREATE_RELEASE,
            Phase.PENDING,
            others=(other("1.3.0", stage),),
        )
        for stage in (FR, Stage.ARCHIVED, Stage.CANCELED, Stage.BUILD_FAILED)
    ),
    *(
        Row(
            f"no-release/older-{stage.value.lower()} -> cancel it without supersede",
            None,
            P,
            Reason.SUPERSEDING,
            Action.CANCEL,
            Phase.PENDING,
            others=(other("1.3.0", stage),),
            step={"release_id": "rel-1.3.0"},
        )
        for stage in (Stage.BUILDING, NVC, RJ)
    ),
    *(
        Row(
            f"no-release/older-{stage.value.lower()}-no-supersede -> stalled",
            None,
            S,
            Reason.SUPERSEDE_REQUIRED,
            None,
            Phase.PENDING,
            others=(other("1.3.0", stage, grayscale=30 if stage is GS else 0),),
            message=f"1.3.0 is in {words} on gcash; set supersede: true to cancel it "
            "and release 1.4.0",
        )
        for stage, words in [
            (PT, "PilotTesting"),
            (GS, "Grayscale 30%"),
            (UR, "InReview"),
            (RP, "ReadyToRelease"),
        ]
    ),
    *(
        Row(
            f"no-release/older-{stage.value.lower()}-supersede -> cancel older",
            None,
            P,
            Reason.SUPERSEDING,
            Action.CANCEL,
            Phase.PENDING,
            spec={"supersede": True},
            others=(other("1.3.0", stage),),
            step={"release_id": "rel-1.3.0"},
            message="~to release 1.4.0",
        )
        for stage in (PT, GS, UR, RP)
    ),
    Row(
        "no-release/older-pilot-not-uploaded -> wait for upload first",
        None,
        W,
        Reason.WAITING_FOR_UPLOAD,
        None,
        Phase.PENDING,
        uploaded=False,
        spec={"supersede": True},
        others=(other("1.3.0", PT),),
    ),
    Row(
        "no-release/older-building-and-older-pilot -> stalled before any cancel",
        None,
        S,
        Reason.SUPERSEDE_REQUIRED,
        None,
        Phase.PENDING,
        others=(other("1.2.0", Stage.BUILDING), other("1.3.0", PT)),
        message="~1.3.0 is in PilotTesting",
    ),
    Row(
        "no-release/two-older-nobody-has -> cancel the oldest first",
        None,
        P,
        Reason.SUPERSEDING,
        Action.CANCEL,
        Phase.PENDING,
        others=(other("1.3.0", NVC), other("1.2.0", Stage.BUILDING)),
        step={"release_id": "rel-1.2.0"},
        message="canceling 1.2.0 (Building; nobody has it yet) to release 1.4.0",
    ),
    Row(
        "no-release/1.9.0-in-pilot-wanting-1.10.0 -> numeric order, supersede required",
        None,
        S,
        Reason.SUPERSEDE_REQUIRED,
        None,
        Phase.PENDING,
        spec={"version": "1.10.0"},
        others=(other("1.9.0", PT),),
    ),
    Row(
        "no-release/newer-in-grayscale -> version conflict",
        None,
        S,
        Reason.VERSION_CONFLICT,
        None,
        Phase.PENDING,
        others=(other("1.5.0", GS, grayscale=10),),
        message="1.5.0 (Grayscale 10%) is newer than 1.4.0 on gcash: versions only move "
        "forward; set version to 1.5.0 or later",
    ),
    Row(
        "no-release/newer-fully-released -> version conflict",
        None,
        S,
        Reason.VERSION_CONFLICT,
        None,
        Phase.PENDING,
        others=(other("2.0.0", FR),),
    ),
    Row(
        "no-release/newer-canceled -> version conflict (versions strictly increase)",
        None,
        S,
        Reason.VERSION_CONFLICT,
        None,
        Phase.PENDING,
        others=(other("1.5.0", Stage.CANCELED),),
        message="~set version to one newer than 1.5.0",
    ),
    Row(
        "no-release/same-version-listed-among-others -> create",
        None,
        P,
        Reason.CREATING_RELEASE,
        Action.CREATE_RELEASE,
        Phase.PENDING,
        others=(other("1.4.0", Stage.BUILDING, release_id="rel-dup"),),
    ),
    Row(
        "no-release/other-version-not-x.y.z -> cannot be ordered, left to the platform: create",
        None,
        P,
        Reason.CREATING_RELEASE,
        Action.CREATE_RELEASE,
        Phase.PENDING,
        others=(other("9.0.0-beta", Stage.GRAYSCALE, grayscale=10),),
    ),
    # --- building ------------------------------------------------------------------------------
    Row(
        "building -> wait",
        make_snapshot(Stage.BUILDING, compatibility=None),
        W,
        Reason.BUILDING,
        None,
        Phase.BUILDING,
        message="building 1.4.0 since 10:02",
    ),
    Row(
        "building/basic-info-differs -> wait for the build",
        make_snapshot(Stage.BUILDING, compatibility=None, basic_info=OTHER_BASIC),
        W,
        Reason.BUILDING,
        None,
        Phase.BUILDING,
    ),
    Row(
        "build-failed -> stalled",
        make_snapshot(Stage.BUILD_FAILED, compatibility=None, message="missing app.json"),
        S,
        Reason.BUILD_FAILED,
        None,
        Phase.BUILD_FAILED,
        message="the build of 1.4.0 failed at 10:02: missing app.json; upload a fixed "
        "version and set version to it",
    ),
    # --- new version created -------------------------------------------------------------------
    Row(
        "nvc/basic-info-differs -> update basic info",
        make_snapshot(NVC, basic_info=OTHER_BASIC),
        P,
        Reason.UPDATING_BASIC_INFO,
        Action.UPDATE_BASIC_INFO,
        Phase.TESTING,
        message="updating basic info (slogan)",
        step={"basic_info": BASIC},
    ),
    Row(
        "nvc/configuration-differs -> update configuration",
        make_snapshot(NVC, configuration=CONFIG_B, compatibility=None),
        P,
        Reason.PUSHING_CONFIGURATION,
        Action.UPDATE_CONFIGURATION,
        Phase.TESTING,
        step={"configuration": CONFIG},
    ),
    Row(
        "nvc/both-differ -> basic info first",
        make_snapshot(NVC, configuration=CONFIG_B, basic_info={}),
        P,
        Reason.UPDATING_BASIC_INFO,
        Action.UPDATE_BASIC_INFO,
        Phase.TESTING,
    ),
    Row(
        "nvc/no-report -> run compatibility test",
        make_snapshot(NVC, compatibility=None),
        P,
        Reason.TESTING_COMPATIBILITY,
        Action.RUN_COMPATIBILITY_TEST,
        Phase.TESTING,
        message="running the compatibility test (no report yet)",
    ),
    Row(
        "nvc/report-for-old-configuration -> run compatibility test",
        make_snapshot(NVC, compatibility=make_report(config_digest=DIGEST_B)),
        P,
        Reason.TESTING_COMPATIBILITY,
        Action.RUN_COMPATIBILITY_TEST,
        Phase.TESTING,
        message="~configuration changed since the last report",
    ),
    Row(
        "nvc/test-running -> wait",
        make_snapshot(NVC, compatibility=make_report(status=CompatibilityStatus.RUNNING)),
        W,
        Reason.TESTING_COMPATIBILITY,
        None,
        Phase.TESTING,
        message="compatibility test running since 09:57",
    ),
    Row(
        "nvc/old-test-running-configuration-differs -> wait before pushing",
        make_snapshot(
            NVC,
            configuration=CONFIG_B,
            compatibility=make_report(status=CompatibilityStatus.RUNNING, config_digest=DIGEST_B),
        ),
        W,
        Reason.TESTING_COMPATIBILITY,
        None,
        Phase.TESTING,
        message="~for an earlier configuration",
    ),
    Row(
        "nvc/report-passes -> apply",
        make_snapshot(NVC),
        P,
        Reason.APPLYING,
        Action.APPLY,
        Phase.TESTING,
        message="compatibility 100% >= 95%: applying for release (gcash)",
    ),
    Row(
        "nvc/report-at-the-gate -> apply",
        make_snapshot(NVC, compatibility=make_report(passed=19, failed=1)),
        P,
        Reason.APPLYING,
        Action.APPLY,
        Phase.TESTING,
    ),
    Row(
        "nvc/report-below-gate -> stalled",
        make_snapshot(NVC, compatibility=make_report(passed=14, failed=2)),
        S,
        Reason.COMPATIBILITY_FAILED,
        None,
        Phase.TESTING,
        message="pass rate 87.5% < 95%: 2 of 16 cases failed (ios/3g/iphone-8, "
        "android/wifi/pixel-3); fix the build or lower minPassRate, or bump retest",
    ),
    Row(
        "nvc/report-below-gate-many-failures -> stalled, list shortened",
        make_snapshot(NVC, compatibility=make_report(passed=6, failed=4)),
        S,
        Reason.COMPATIBILITY_FAILED,
        None,
        Phase.TESTING,
        message="~(ios/3g/iphone-8, android/wifi/pixel-3, ios/4g/ipad, ...)",
    ),
    Row(
        "nvc/report-below-lowered-gate -> apply",
        make_snapshot(NVC, compatibility=make_report(passed=14, failed=2)),
        P,
        Reason.APPLYING,
        Action.APPLY,
        Phase.TESTING,
        spec={"compatibility": Compatibility(min_pass_rate=80.0)},
    ),
    Row(
        "nvc/retest-bumped-after-recorded-report -> run compatibility test",
        make_snapshot(NVC),
        P,
        Reason.TESTING_COMPATIBILITY,
        Action.RUN_COMPATIBILITY_TEST,
        Phase.TESTING,
        spec={"compatibility": Compatibility(retest=1)},
        status=lambda r: make_status(r, compatibility=recorded(retest=0)),
        message="running the compatibility test (retest 1 asked)",
    ),
    Row(
        "nvc/retest-bumped-failing-report -> run compatibility test",
        make_snapshot(NVC, compatibility=make_report(passed=14, failed=2)),
        P,
        Reason.TESTING_COMPATIBILITY,
        Action.RUN_COMPATIBILITY_TEST,
        Phase.TESTING,
        spec={"compatibility": Compatibility(retest=1)},
        status=lambda r: make_status(r, compatibility=recorded(retest=0)),
    ),
    Row(
        "nvc/retest-ran-and-recorded -> apply",
        make_snapshot(NVC, compatibility=make_report(report_id="report-2")),
        P,
        Reason.APPLYING,
        Action.APPLY,
        Phase.TESTING,
        spec={"compatibility": Compatibility(retest=1)},
        status=lambda r: make_status(r, compatibility=recorded("report-2", retest=1)),
    ),
    Row(
        "nvc/retest-report-not-recorded-yet -> apply (answers the current retest)",
        make_snapshot(NVC, compatibility=make_report(report_id="report-2")),
        P,
        Reason.APPLYING,
        Action.APPLY,
        Phase.TESTING,
        spec={"compatibility": Compatibility(retest=1)},
        status=lambda r: make_status(r, compatibility=recorded("report-1", retest=0)),
    ),
    Row(
        "nvc/retest-record-of-another-version -> apply",
        make_snapshot(NVC),
        P,
        Reason.APPLYING,
        Action.APPLY,
        Phase.TESTING,
        spec={"compatibility": Compatibility(retest=1)},
        status=lambda r: make_status(r, version="1.3.0", compatibility=recorded(retest=0)),
    ),
    Row(
        "nvc/configuration-unmanaged -> test the platform's and apply",
        make_snapshot(
            NVC, configuration=CONFIG_B, compatibility=make_report(config_digest=DIGEST_B)
        ),
        P,
        Reason.APPLYING,
        Action.APPLY,
        Phase.TESTING,
        spec={"configuration": {}},
    ),
    Row(
        "nvc/basic-info-unmanaged -> apply",
        make_snapshot(NVC, basic_info=OTHER_BASIC),
        P,
        Reason.APPLYING,
        Action.APPLY,
        Phase.TESTING,
        spec={"basic_info": {}},
    ),
    Row(
        "nvc/applied-spec-withdrawn-on-console -> apply again",
        make_snapshot(NVC),
        P,
        Reason.APPLYING,
        Action.APPLY,
        Phase.TESTING,
        status=applied_now,
    ),
    # --- under review --------------------------------------------------------------------------
    Row(
        "under-review -> wait",
        make_snapshot(UR),
        W,
        Reason.UNDER_REVIEW,
        None,
        Phase.IN_REVIEW,
        status=applied_now,
        message="waiting for review since 10:02 (gcash)",
    ),
    Row(
        "under-review/basic-info-differs -> update basic info",
        make_snapshot(UR, basic_info=OTHER_BASIC),
        P,
        Reason.UPDATING_BASIC_INFO,
        Action.UPDATE_BASIC_INFO,
        Phase.IN_REVIEW,
    ),
    Row(
        "under-review/configuration-differs -> withdraw",
        make_snapshot(UR, configuration=CONFIG_B),
        P,
        Reason.WITHDRAWING,
        Action.WITHDRAW,
        Phase.IN_REVIEW,
        message="the configuration changed during review: withdrawing to push it and apply again",
        step={"release_id": "rel-1.4.0"},
    ),
    Row(
        "under-review/both-differ -> basic info first",
        make_snapshot(UR, configuration=CONFIG_B, basic_info=OTHER_BASIC),
        P,
        Reason.UPDATING_BASIC_INFO,
        Action.UPDATE_BASIC_INFO,
        Phase.IN_REVIEW,
    ),
    Row(
        "under-review/retest-bumped -> wait (the gate was passed)",
        make_snapshot(UR),
        W,
        Reason.UNDER_REVIEW,
        None,
        Phase.IN_REVIEW,
        spec={"compatibility": Compatibility(retest=3)},
    ),
    Row(
        "under-review/grayscale-and-pilot-set-early -> wait",
        make_snapshot(UR),
        W,
        Reason.UNDER_REVIEW,
        None,
        Phase.IN_REVIEW,
        spec={"grayscale": 50, "pilot": Pilot(testers=TESTERS, complete=True)},
    ),
    # --- rejected ------------------------------------------------------------------------------
    Row(
        "rejected/spec-unchanged -> stalled",
        make_snapshot(RJ, review=REJECTION),
        S,
        Reason.REJECTED,
        None,
        Phase.REJECTED,
        status=applied_now,
        message="rejected at 10:02: screenshots do not match the mini program; change basic "
        "info or configuration in the manifest to apply again, or release a new version",
    ),
    Row(
        "rejected/no-record-content-unchanged -> stalled",
        make_snapshot(RJ, review=REJECTION),
        S,
        Reason.REJECTED,
        None,
        Phase.REJECTED,
    ),
    Row(
        "rejected/spec-unchanged-console-drift -> stalled, nothing pushed",
        make_snapshot(RJ, review=REJECTION, basic_info=OTHER_BASIC),
        S,
        Reason.REJECTED,
        None,
        Phase.REJECTED,
        status=applied_now,
    ),
    Row(
        "rejected/basic-info-changed -> update basic info",
        make_snapshot(RJ, review=REJECTION, basic_info=OTHER_BASIC),
        P,
        Reason.UPDATING_BASIC_INFO,
        Action.UPDATE_BASIC_INFO,
        Phase.REJECTED,
        status=applied_before,
    ),
    Row(
        "rejected/no-record-basic-info-differs -> update basic info",
        make_snapshot(RJ, review=REJECTION, basic_info=OTHER_BASIC),
        P,
        Reason.UPDATING_BASIC_INFO,
        Action.UPDATE_BASIC_INFO,
        Phase.REJECTED,
    ),
    Row(
        "rejected/configuration-changed -> update configuration",
        make_snapshot(RJ, review=REJECTION, configuration=CONFIG_B),
        P,
        Reason.PUSHING_CONFIGURATION,
        Action.UPDATE_CONFIGURATION,
        Phase.REJECTED,
        status=applied_before,
    ),
    Row(
        "rejected/configuration-pushed -> retest",
        make_snapshot(RJ, review=REJECTION, compatibility=make_report(config_digest=DIGEST_B)),
        P,
        Reason.TESTING_COMPATIBILITY,
        Action.RUN_COMPATIBILITY_TEST,
        Phase.REJECTED,
        status=applied_before,
    ),
    Row(
        "rejected/updated-and-tested -> apply again",
        make_snapshot(RJ, review=REJECTION),
        P,
        Reason.APPLYING,
        Action.APPLY,
        Phase.REJECTED,
        status=applied_before,
        message="compatibility 100% >= 95%: applying for release again after the rejection (gcash)",
    ),
    Row(
        "rejected/changed-but-report-below-gate -> stalled",
        make_snapshot(RJ, review=REJECTION, compatibility=make_report(passed=10, failed=6)),
        S,
        Reason.COMPATIBILITY_FAILED,
        None,
        Phase.REJECTED,
        status=applied_before,
    ),
    # --- pilot testing -------------------------------------------------------------------------
    Row(
        "pilot-testing -> wait for pilot.complete",
        make_snapshot(PT),
        W,
        Reason.PILOT_TESTING,
        None,
        Phase.PILOT_TESTING,
        message="pilot testing with 2 testers since 10:02; set pilot.complete: true to end it",
    ),
    Row(
        "pilot-testing/testers-differ -> set_testers",
        make_snapshot(PT, testers=("2088000000000001", "2088000000000009")),
        P,
        Reason.SYNCING_TESTERS,
        Action.SET_TESTERS,
        Phase.PILOT_TESTING,
        message="syncing testers: adding 1, removing 1 (2 in the manifest)",
        step={"testers": TESTERS},
    ),
    Row(
        "pilot-testing/no-testers-yet -> set_testers",
        make_snapshot(PT, testers=()),
        P,
        Reason.SYNCING_TESTERS,
        Action.SET_TESTERS,
        Phase.PILOT_TESTING,
        step={"testers": TESTERS},
    ),
    Row(
        "pilot-testing/testers-differ-and-complete -> set_testers first",
        make_snapshot(PT, testers=TESTERS[:1]),
        P,
        Reason.SYNCING_TESTERS,
        Action.SET_TESTERS,
        Phase.PILOT_TESTING,
        spec={"pilot": Pilot(testers=TESTERS, complete=True)},
    ),
    Row(
        "pilot-testing/manifest-empties-testers -> set_testers to none",
        make_snapshot(PT),
        P,
        Reason.SYNCING_TESTERS,
        Action.SET_TESTERS,
        Phase.PILOT_TESTING,
        spec={"pilot": Pilot(testers=())},
        step={"testers": ()},
    ),
    Row(
        "pilot-testing/same-testers-other-order -> wait",
        make_snapshot(PT, testers=tuple(reversed(TESTERS))),
        W,
        Reason.PILOT_TESTING,
        None,
        Phase.PILOT_TESTING,
    ),
    Row(
        "pilot-testing/one-tester -> wait, singular",
        make_snapshot(PT, testers=TESTERS[:1]),
        W,
        Reason.PILOT_TESTING,
        None,
        Phase.PILOT_TESTING,
        spec={"pilot": Pilot(testers=TESTERS[:1])},
        message="pilot testing with 1 tester since 10:02; set pilot.complete: true to end it",
    ),
    Row(
        "pilot-testing/complete -> complete_testing",
        make_snapshot(PT),
        P,
        Reason.COMPLETING_TESTING,
        Action.COMPLETE_TESTING,
        Phase.PILOT_TESTING,
        spec={"pilot": Pilot(testers=TESTERS, complete=True)},
    ),
    Row(
        "pilot-testing/basic-info-differs -> update basic info first",
        make_snapshot(PT, basic_info=OTHER_BASIC, testers=()),
        P,
        Reason.UPDATING_BASIC_INFO,
        Action.UPDATE_BASIC_INFO,
        Phase.PILOT_TESTING,
        spec={"pilot": Pilot(testers=TESTERS, complete=True)},
    ),
    Row(
        "pilot-testing/grayscale-asked-not-complete -> wait",
        make_snapshot(PT),
        W,
        Reason.PILOT_TESTING,
        None,
        Phase.PILOT_TESTING,
        spec={"grayscale": 100},
    ),
    # --- release preparation -------------------------------------------------------------------
    Row(
        "release-preparation/grayscale-0 -> wait for grayscale",
        make_snapshot(RP),
        W,
        Reason.READY_TO_RELEASE,
        None,
        Phase.READY_TO_RELEASE,
        message="approved at 10:02; set grayscale > 0 to release",
    ),
    Row(
        "release-preparation/grayscale-20 -> set_grayscale 20",
        make_snapshot(RP),
        P,
        Reason.RAISING_GRAYSCALE,
        Action.SET_GRAYSCALE,
        Phase.READY_TO_RELEASE,
        spec={"grayscale": 20},
        step={"percent": 20},
        message="raising grayscale 0% -> 20% of gcash users",
    ),
    Row(
        "release-preparation/grayscale-100 -> full release",
        make_snapshot(RP),
        P,
        Reason.RELEASING_FULLY,
        Action.FULL_RELEASE,
        Phase.READY_TO_RELEASE,
        spec={"grayscale": 100},
        message="releasing 1.4.0 to all users of gcash (grayscale: 100)",
    ),
    Row(
        "release-preparation/basic-info-differs -> update basic info",
        make_snapshot(RP, basic_info=OTHER_BASIC),
        P,
        Reason.UPDATING_BASIC_INFO,
        Action.UPDATE_BASIC_INFO,
        Phase.READY_TO_RELEASE,
        spec={"grayscale": 20},
    ),
    Row(
        "release-preparation/configuration-differs -> frozen, wait",
        make_snapshot(RP, configuration=CONFIG_B),
        W,
        Reason.READY_TO_RELEASE,
        None,
        Phase.READY_TO_RELEASE,
    ),
    # --- grayscale -----------------------------------------------------------------------------
    Row(
        "grayscale-20/asks-20 -> done",
        make_snapshot(GS, grayscale=20),
        D,
        Reason.GRAYSCALE_REACHED,
        None,
        Phase.GRAYSCALE,
        spec={"grayscale": 20},
        message="grayscale 20% of gcash users since 10:02; raise grayscale to continue "
        "(100 = full release)",
    ),
    Row(
        "grayscale-20/asks-50 -> set_grayscale 50",
        make_snapshot(GS, grayscale=20),
        P,
        Reason.RAISING_GRAYSCALE,
        Action.SET_GRAYSCALE,
        Phase.GRAYSCALE,
        spec={"grayscale": 50},
        step={"percent": 50, "release_id": "rel-1.4.0"},
    ),
    Row(
        "grayscale-30/asks-20 -> refused",
        make_snapshot(GS, grayscale=30),
        S,
        Reason.GRAYSCALE_DECREASE_REFUSED,
        None,
        Phase.GRAYSCALE,
        spec={"grayscale": 20},
        message="grayscale only rises: the platform has 30%, main asks 20%; to roll back, "
        "set cancel: true",
    ),
    Row(
        "grayscale-30/asks-29 -> refused",
        make_snapshot(GS, grayscale=30),
        S,
        Reason.GRAYSCALE_DECREASE_REFUSED,
        None,
        Phase.GRAYSCALE,
        spec={"grayscale": 29},
    ),
    Row(
        "grayscale-30/asks-31 -> set_grayscale 31",
        make_snapshot(GS, grayscale=30),
        P,
        Reason.RAISING_GRAYSCALE,
        Action.SET_GRAYSCALE,
        Phase.GRAYSCALE,
        spec={"grayscale": 31},
        step={"percent": 31},
    ),
    Row(
        "grayscale-99/asks-100 -> full release",
        make_snapshot(GS, grayscale=99),
        P,
        Reason.RELEASING_FULLY,
        Action.FULL_RELEASE,
        Phase.GRAYSCALE,
        spec={"grayscale": 100},
    ),
    Row(
        "grayscale-30/asks-0 -> refused",
        make_snapshot(GS, grayscale=30),
        S,
        Reason.GRAYSCALE_DECREASE_REFUSED,
        None,
        Phase.GRAYSCALE,
    ),
    Row(
        "grayscale-50/asks-100 -> full release",
        make_snapshot(GS, grayscale=50),
        P,
        Reason.RELEASING_FULLY,
        Action.FULL_RELEASE,
        Phase.GRAYSCALE,
        spec={"grayscale": 100},
    ),
    Row(
        "grayscale-20/basic-info-differs -> update basic info",
        make_snapshot(GS, grayscale=20, basic_info=OTHER_BASIC),
        P,
        Reason.UPDATING_BASIC_INFO,
        Action.UPDATE_BASIC_INFO,
        Phase.GRAYSCALE,
        spec={"grayscale": 50},
    ),
    Row(
        "grayscale-20/basic-info-differs-and-decrease -> update basic info first",
        make_snapshot(GS, grayscale=20, basic_info=OTHER_BASIC),
        P,
        Reason.UPDATING_BASIC_INFO,
        Action.UPDATE_BASIC_INFO,
        Phase.GRAYSCALE,
        spec={"grayscale": 10},
    ),
    # --- full release, archived, canceled ------------------------------------------------------
    Row(
        "full-release/no-qr-code -> create qr code",
        make_snapshot(FR, grayscale=100),
        P,
        Reason.CREATING_QR_CODE,
        Action.CREATE_QR_CODE,
        Phase.RELEASED,
        spec={"grayscale": 100},
        message="released to all users of gcash since 10:02; creating the QR code",
    ),
    Row(
        "full-release/qr-code -> done",
        make_snapshot(FR, grayscale=100, qr_code=QR),
        D,
        Reason.RELEASED,
        None,
        Phase.RELEASED,
        spec={"grayscale": 100},
        message="released to all users of gcash since 10:02",
    ),
    Row(
        "full-release/basic-info-differs -> done (not editable any more)",
        make_snapshot(FR, grayscale=100, qr_code=QR, basic_info=OTHER_BASIC),
        D,
        Reason.RELEASED,
        None,
        Phase.RELEASED,
        spec={"grayscale": 100},
    ),
    Row(
        "full-release-on-console/asks-20 -> qr code first",
        make_snapshot(FR, grayscale=100),
        P,
        Reason.CREATING_QR_CODE,
        Action.CREATE_QR_CODE,
        Phase.RELEASED,
        spec={"grayscale": 20},
    ),
    Row(
        "full-release-on-console/asks-20-qr-code -> refused",
        make_snapshot(FR, grayscale=100, qr_code=QR),
        S,
        Reason.GRAYSCALE_DECREASE_REFUSED,
        None,
        Phase.RELEASED,
        spec={"grayscale": 20},
        message="grayscale only rises: 1.4.0 is fully released on gcash, main asks 20%; "
        "set grayscale: 100",
    ),
    Row(
        "archived -> done",
        make_snapshot(Stage.ARCHIVED, grayscale=100, qr_code=QR),
        D,
        Reason.ARCHIVED,
        None,
        Phase.ARCHIVED,
        spec={"grayscale": 100},
        message="archived at 10:02: a newer version was fully released on gcash",
    ),
    Row(
        "canceled-on-console -> done, final",
        make_snapshot(Stage.CANCELED, message="canceled by alice"),
        D,
        Reason.CANCELED,
        None,
        Phase.CANCELED,
        spec={"grayscale": 20},
        message="1.4.0 was canceled on gcash at 10:02 (canceled by alice); a cancel is final: "
        "set version to a new version to release again",
    ),
]


def inputs(row: Row) -> tuple[Release, Status | None, Observed]:
    release = make_release(**row.spec)
    status = row.status(release) if row.status is not None else None
    observed = Observed(version_uploaded=row.uploaded, release=row.snapshot, others=row.others)
    return release, status, observed


@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
def test_decision_table(row: Row) -> None:
    release, status, observed = inputs(row)

    plan = decide(release, status, observed, NOW)

    got = (plan.outcome, plan.reason, plan.step.action if plan.step else None, plan.phase)
    assert got == (row.outcome, row.reason, row.action, row.phase)
    assert plan.release == "shop/gcash"
    assert plan.message, "every plan carries a human reason"
    assert (plan.step is not None) == (plan.outcome is Outcome.PROGRESSING)
    if row.message is not None:
        if row.message.startswith("~"):
            assert row.message[1:] in plan.message
        else:
            assert plan.message == row.message
    for name, value in row.step.items():
        assert plan.step is not None
        assert getattr(plan.step, name) == value, name


def test_the_table_is_large_and_its_ids_unique() -> None:
    assert len(ROWS) >= 60
    assert len({row.id for row in ROWS}) == len(ROWS)


def test_the_table_covers_every_stage() -> None:
    seen = {row.snapshot.stage for row in ROWS if row.snapshot is not None}
    assert seen == set(Stage)


@pytest.mark.parametrize("stage", list(Stage))
def test_every_stage_gets_a_plan_with_its_derived_phase(stage: Stage) -> None:
    release = make_release(grayscale=20)
    snapshot = make_snapshot(stage, grayscale=20 if stage is GS else 0)

    plan = decide(release, None, Observed(True, snapshot), NOW)

    assert plan.phase is derive_phase(release, snapshot)
    assert plan.message


# --------------------------------------------------------------------------------------------
# purity
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
def test_decide_is_pure(row: Row) -> None:
    release, status, observed = inputs(row)
    before = copy.deepcopy((release, status, observed))

    first = decide(release, status, observed, NOW)
    second = decide(*inputs(row), NOW)

    assert first == second
    assert (release, status, observed) == before


def test_plans_do_not_share_mutable_payload_with_the_spec() -> None:
    release = make_release()
    plan = decide(release, None, Observed(True, make_snapshot(NVC, configuration=CONFIG_B)), NOW)

    assert plan.step is not None and plan.step.configuration is not None
    assert plan.step.configuration == release.spec.configuration
    assert plan.step.configuration is not release.spec.configuration


# --------------------------------------------------------------------------------------------
# idempotency keys
# --------------------------------------------------------------------------------------------


def key_of(release: Release, snapshot: ReleaseSnapshot | None, status: Status | None = None) -> str:
    plan = decide(release, status, Observed(True, snapshot), NOW)
    assert plan.step is not None, plan
    return plan.step.idempotency_key


def test_every_step_in_the_table_has_a_readable_bounded_key() -> None:
    for row in ROWS:
        plan = decide(*inputs(row), NOW)
        if plan.step is None:
            continue
        key = plan.step.idempotency_key
        assert len(key) <= MAX_KEY_LENGTH
        assert key.startswith("shop/gcash/"), key
        assert f"/{plan.step.action.value}/" in key, key


def test_keys_are_stable_for_the_same_intent() -> None:
    snapshot = make_snapshot(GS, grayscale=20)
    assert key_of(make_release(grayscale=50), snapshot) == key_of(
        make_release(grayscale=50), make_snapshot(GS, grayscale=20)
    )


def test_keys_differ_between_grayscale_steps() -> None:
    snapshot = make_snapshot(GS, grayscale=20)
    assert key_of(make_release(grayscale=50), snapshot) != key_of(
        make_release(grayscale=60), snapshot
    )


def test_grayscale_key_ignores_unrelated_spec_changes() -> None:
    snapshot = make_snapshot(GS, grayscale=20)
    assert key_of(make_release(grayscale=50), snapshot) == key_of(
        make_release(grayscale=50, basic_info={}), snapshot
    )


def test_keys_differ_between_tester_sets() -> None:
    snapshot = make_snapshot(PT, testers=())
    one = key_of(make_release(pilot=Pilot(testers=TESTERS[:1])), snapshot)
    two = key_of(make_release(pilot=Pilot(testers=TESTERS)), snapshot)
    assert one != two


def test_keys_differ_between_configurations() -> None:
    snapshot = make_snapshot(NVC, configuration={"pages": ["index"]})
    assert key_of(make_release(), snapshot) != key_of(
        make_release(configuration=CONFIG_B), snapshot
    )


def test_keys_differ_between_retests() -> None:
    snapshot = make_snapshot(NVC)
    status = make_status(compatibility=recorded(retest=0))
    one = key_of(make_release(compatibility=Compatibility(retest=1)), snapshot, status)
    two = key_of(make_release(compatibility=Compatibility(retest=2)), snapshot, status)
    assert one != two


def test_keys_differ_between_actions_on_the_same_release() -> None:
    keys = {
        key_of(make_release(), make_snapshot(NVC, compatibility=None)),
        key_of(make_release(), make_snapshot(NVC)),
        key_of(make_release(cancel=True), make_snapshot(NVC)),
        key_of(make_release(), make_snapshot(NVC, basic_info={})),
        key_of(make_release(), None),
    }
    assert len(keys) == 5


def test_a_reverted_configuration_gets_a_fresh_key_not_a_replay() -> None:
    """Main goes A -> B -> A: the second push of A must not replay the first one."""
    first = make_snapshot(NVC, configuration=CONFIG_B, updated_at=SINCE)
    again = make_snapshot(NVC, configuration=CONFIG_B, updated_at=SINCE + timedelta(hours=1))
    assert key_of(make_release(), first) != key_of(make_release(), again)


def test_a_reverted_configuration_is_retested_with_a_fresh_key() -> None:
    first = make_snapshot(NVC, compatibility=None)
    again = make_snapshot(NVC, compatibility=make_report(config_digest=DIGEST_B, report_id="r2"))
    assert key_of(make_release(), first) != key_of(make_release(), again)


def test_apply_after_a_withdraw_gets_a_fresh_key() -> None:
    release = make_release()
    first = make_snapshot(NVC, stage_times={NVC: SINCE})
    after_withdraw = make_snapshot(
        NVC, stage_times={NVC: SINCE + timedelta(hours=1), UR: SINCE + timedelta(minutes=30)}
    )
    assert key_of(release, first) != key_of(release, after_withdraw)


def test_a_withdraw_in_a_later_review_gets_a_fresh_key() -> None:
    """Main goes B -> A -> B during reviews: the second withdraw under B is a new call."""
    release = make_release()
    first = make_snapshot(UR, configuration=CONFIG_B, stage_times={UR: SINCE})
    later = make_snapshot(UR, configuration=CONFIG_B, stage_times={UR: SINCE + timedelta(hours=2)})
    assert key_of(release, first) != key_of(release, later)


def test_the_same_apply_after_a_crash_replays_the_same_key() -> None:
    release = make_release()
    assert key_of(release, make_snapshot(NVC)) == key_of(release, make_snapshot(NVC))


def test_create_key_is_fresh_once_an_older_release_moved() -> None:
    """A create refused under one platform state is not replayed once other releases moved."""
    release = make_release()
    before = Observed(True, None, (other("1.3.0", FR),))
    after = Observed(True, None, (other("1.3.0", Stage.ARCHIVED),))
    first = decide(release, None, before, NOW).step
    again = decide(release, None, after, NOW).step
    same = decide(release, None, before, NOW).step
    assert first is not None and again is not None and same is not None
    assert first.idempotency_key != again.idempotency_key
    assert first.idempotency_key == same.idempotency_key


def test_supersede_cancel_key_names_the_older_version() -> None:
    plan = decide(
        make_release(supersede=True), None, Observed(True, None, (other("1.3.0", PT),)), NOW
    )
    assert plan.step is not None
    assert plan.step.idempotency_key.startswith("shop/gcash/1.3.0/cancel/")


def test_idempotency_key_shape_and_bound() -> None:
    key = idempotency_key("shop/gcash", "1.4.0", Action.SET_GRAYSCALE, "rel-1", 20)
    assert key == idempotency_key("shop/gcash", "1.4.0", Action.SET_GRAYSCALE, "rel-1", 20)
    assert key.startswith("shop/gcash/1.4.0/set_grayscale/")
    assert key != idempotency_key("shop/gcash", "1.4.0", Action.SET_GRAYSCALE, "rel-1", 30)

    long = idempotency_key("m" * 150 + "/" + "a" * 100, "1.4.0", Action.APPLY, "x")
    assert len(long) <= MAX_KEY_LENGTH
    assert long.endswith("/apply/" + digest(["x"]))
    # names that differ only past the bound still get different keys
    assert long != idempotency_key("m" * 150 + "/" + "a" * 99 + "b", "1.4.0", Action.APPLY, "x")


# --------------------------------------------------------------------------------------------
# retry backoff
# --------------------------------------------------------------------------------------------

ERROR = ErrorRecord(
    code="RateLimited",
    message="too many requests",
    action="shop/gcash/1.4.0/set_grayscale/abc",
    attempts=3,
    time=NOW - timedelta(minutes=1),
)


def backoff_status(release: Release, **changes: Any) -> Status:
    values: dict[str, Any] = {
        "last_error": ERROR,
        "next_retry": NOW + timedelta(minutes=2),
    }
    values.update(changes)
    return make_status(release, **values)


def test_a_step_waits_for_its_retry_time() -> None:
    release = make_release(grayscale=50)
    plan = decide(
        release, backoff_status(release), Observed(True, make_snapshot(GS, grayscale=20)), NOW
    )

    assert (plan.outcome, plan.reason, plan.step) == (Outcome.WAITING, Reason.RETRY_BACKOFF, None)
    assert plan.phase is Phase.GRAYSCALE
    assert plan.message == "retrying set grayscale 50% after 10:32 (3 attempts: too many requests)"


def test_a_step_is_retried_once_its_time_has_come() -> None:
    release = make_release(grayscale=50)
    status = backoff_status(release, next_retry=NOW)
    plan = decide(release, status, Observed(True, make_snapshot(GS, grayscale=20)), NOW)

    assert plan.step is not None and plan.step.action is Action.SET_GRAYSCALE


def test_a_spec_change_clears_the_backoff() -> None:
    old = make_release(grayscale=50)
    new = make_release(grayscale=60)
    plan = decide(new, backoff_status(old), Observed(True, make_snapshot(GS, grayscale=20)), NOW)

    assert plan.step is not None and plan.step.percent == 60


def test_backoff_does_not_hide_a_plan_without_a_step() -> None:
    release = make_release(grayscale=20)
    plan = decide(
        release, backoff_status(release), Observed(True, make_snapshot(GS, grayscale=20)), NOW
    )

    assert plan.reason is Reason.GRAYSCALE_REACHED


def test_backoff_without_an_error_record_still_says_when() -> None:
    release = make_release(grayscale=50)
    status = backoff_status(release, last_error=None)
    plan = decide(release, status, Observed(True, make_snapshot(GS, grayscale=20)), NOW)

    assert plan.message == "retrying set grayscale 50% after 10:32"


def test_a_platform_refusal_stays_stalled_until_the_recheck() -> None:
    release = make_release(grayscale=50)
    refused = Condition(
        ConditionType.STALLED,
        ConditionStatus.TRUE,
        str(Reason.PLATFORM_REFUSED),
        "set grayscale 50% failed",
        NOW - timedelta(minutes=1),
    )
    error = replace(ERROR, code="LimitExceeded", message="50% is not allowed", attempts=1)
    status = backoff_status(release, last_error=error, conditions=(refused,))
    plan = decide(release, status, Observed(True, make_snapshot(GS, grayscale=20)), NOW)

    assert (plan.outcome, plan.reason, plan.step) == (
        Outcome.STALLED,
        Reason.PLATFORM_REFUSED,
        None,
    )
    assert plan.message == (
        "the platform refused set grayscale 50% (LimitExceeded): 50% is not allowed; "
        "change the manifest to try again (rechecking after 10:32)"
    )


def test_paused_wins_over_backoff() -> None:
    release = make_release(grayscale=50, paused=True)
    plan = decide(
        release, backoff_status(release), Observed(True, make_snapshot(GS, grayscale=20)), NOW
    )
    assert plan.reason is Reason.PAUSED


# --------------------------------------------------------------------------------------------
# phases, compatibility bookkeeping, time formats
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stage", "phase"),
    [
        (Stage.BUILDING, Phase.BUILDING),
        (Stage.BUILD_FAILED, Phase.BUILD_FAILED),
        (NVC, Phase.TESTING),
        (UR, Phase.IN_REVIEW),
        (RJ, Phase.REJECTED),
        (PT, Phase.PILOT_TESTING),
        (RP, Phase.READY_TO_RELEASE),
        (GS, Phase.GRAYSCALE),
        (FR, Phase.RELEASED),
        (Stage.CANCELED, Phase.CANCELED),
        (Stage.ARCHIVED, Phase.ARCHIVED),
    ],
)
def test_derive_phase_from_stage(stage: Stage, phase: Phase) -> None:
    assert derive_phase(make_release(), make_snapshot(stage)) is phase


def test_derive_phase_without_a_release() -> None:
    assert derive_phase(make_release(), None) is Phase.PENDING
    assert derive_phase(make_release(cancel=True), None) is Phase.CANCELED
    assert derive_phase(make_release(paused=True), None) is Phase.PAUSED
    assert derive_phase(make_release(paused=True), make_snapshot(GS)) is Phase.PAUSED


def test_compatibility_retest_reads_the_record_of_the_same_report() -> None:
    report = make_report(report_id="report-1")
    assert compatibility_retest(report, recorded("report-1", retest=2), 5) == 2
    assert compatibility_retest(report, recorded("report-0", retest=2), 5) == 5
    assert compatibility_retest(report, None, 5) == 5


def test_times_of_another_day_carry_the_date() -> None:
    snapshot = make_snapshot(UR, stage_times={UR: SINCE - timedelta(days=1)})
    plan = decide(make_release(), None, Observed(True, snapshot), NOW)
    assert plan.message == "waiting for review since 2024-04-30 10:02 (gcash)"


def test_times_are_shown_in_utc() -> None:
    manila = timezone(timedelta(hours=8))
    snapshot = make_snapshot(UR, stage_times={UR: SINCE.astimezone(manila)})
    plan = decide(make_release(), None, Observed(True, snapshot), NOW.astimezone(manila))
    assert plan.message == "waiting for review since 10:02 (gcash)"


def test_missing_stage_time_falls_back_to_the_last_update() -> None:
    snapshot = make_snapshot(
        Stage.BUILDING, stage_times={}, updated_at=SINCE + timedelta(minutes=3)
    )
    plan = decide(make_release(), None, Observed(True, snapshot), NOW)
    assert plan.message == "building 1.4.0 since 10:05"


def test_plan_is_a_value() -> None:
    plan = decide(make_release(), None, Observed(False), NOW)
    assert plan == Plan(
        release="shop/gcash",
        phase=Phase.PENDING,
        outcome=Outcome.WAITING,
        reason=Reason.WAITING_FOR_UPLOAD,
        message="waiting for version 1.4.0 to be uploaded",
    )
