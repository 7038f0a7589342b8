"""Typed values the controller works with: repo config, Release, Observed, Status and Plan.

Everything here is an immutable value with no I/O. ``manifests`` builds ``RepoConfig`` and
``Release`` from YAML; ``reconcile`` builds ``Observed`` from the platform; ``plan.decide``
turns (Release, Status, Observed, now) into a ``Plan``; ``act`` executes the plan's ``Step``;
``status`` renders a ``Status`` to YAML and back.

Names follow the platform's own words (seed document): testers, pilot testing, grayscale,
apply, complete testing, full release.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from controller.platform.errors import ERROR_TYPES
from controller.platform.protocol import ReleaseSnapshot, Stage, canonical_json

API_VERSION = "relctl/v1"

# --------------------------------------------------------------------------------------------
# Repository configuration (relctl.yaml)
# --------------------------------------------------------------------------------------------

#: Default user-id pattern of a super app (Alipay user ids: 16 digits starting with 2088).
DEFAULT_USER_ID_PATTERN = r"^[0-9]{16}$"
DEFAULT_TESTERS_MAX = 50


@dataclass(frozen=True)
class TargetApp:
    """A partner super app a mini program can be released to, with its platform rules."""

    id: str
    name: str
    environment: str = "production"
    testers_max: int = DEFAULT_TESTERS_MAX
    #: Allowed grayscale percentages; None means every integer 1..100.
    grayscale_values: tuple[int, ...] | None = None
    user_id_pattern: str = DEFAULT_USER_ID_PATTERN

    def allows_grayscale(self, percent: int) -> bool:
        """Whether ``percent`` is a valid desired grayscale (0 = not exposed, 100 = full)."""
        if percent in (0, 100):
            return True
        if self.grayscale_values is None:
            return 1 <= percent <= 100
        return percent in self.grayscale_values


@dataclass(frozen=True)
class RepoConfig:
    """``relctl.yaml``: declared target apps and repository policy."""

    target_apps: Mapping[str, TargetApp]
    #: Adapter spec, e.g. ``sim:.relctl/platform.db``; the CLI's ``--platform`` wins.
    platform: str | None = None
    require_signed_commits: bool = False
    #: ``notifications:`` targets as written (schema-checked); ``controller.notify`` reads them.
    notifications: tuple[Mapping[str, Any], ...] = ()


# --------------------------------------------------------------------------------------------
# The Release manifest (releases/<mini-program>/<target-app>.yaml)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Compatibility:
    """The gate before applying: the compatibility report must reach ``min_pass_rate``."""

    min_pass_rate: float = 95.0
    #: Bump to run the compatibility test again for an unchanged configuration.
    retest: int = 0


@dataclass(frozen=True)
class Pilot:
    """Pilot testing: who tests, and the gate out of it."""

    #: Resolved tester set (inline ``testers`` plus every ``testersFiles`` id), sorted, unique.
    testers: tuple[str, ...] = ()
    complete: bool = False


@dataclass(frozen=True)
class ReleaseSpec:
    """The desired state of one version of a mini program on one target app."""

    version: str
    basic_info: Mapping[str, str] = field(default_factory=dict)
    configuration: Mapping[str, Any] = field(default_factory=dict)
    compatibility: Compatibility = field(default_factory=Compatibility)
    pilot: Pilot = field(default_factory=Pilot)
    grayscale: int = 0
    cancel: bool = False
    supersede: bool = False
    paused: bool = False


def digest(value: Any) -> str:
    """Stable short digest of a JSON-able value (key order and container types ignored)."""
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()[:16]


def spec_to_dict(spec: ReleaseSpec) -> dict[str, Any]:
    """The spec as plain data (used for hashing and JSON output)."""
    return {
        "version": spec.version,
        "basicInfo": dict(spec.basic_info),
        "configuration": dict(spec.configuration),
        "compatibility": {
            "minPassRate": spec.compatibility.min_pass_rate,
            "retest": spec.compatibility.retest,
        },
        "pilot": {"testers": list(spec.pilot.testers), "complete": spec.pilot.complete},
        "grayscale": spec.grayscale,
        "cancel": spec.cancel,
        "supersede": spec.supersede,
        "paused": spec.paused,
    }


@dataclass(frozen=True)
class Release:
    """A validated Release manifest: one (mini program, target app) and its desired spec."""

    mini_program: str
    target_app: str
    environment: str
    #: Repository-relative POSIX path of the manifest.
    path: str
    spec: ReleaseSpec
    #: The files the spec was read from: the manifest, then its tester files (repo-relative).
    sources: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        """``<mini-program>/<target-app>``: the identity of a release in the repository."""
        return f"{self.mini_program}/{self.target_app}"

    @functools.cached_property
    def spec_hash(self) -> str:
        """Digest of the whole resolved spec; changes whenever a person changes intent.

        Computed once per loaded release (a pass compares it for every release)."""
        return digest(spec_to_dict(self.spec))

    @property
    def status_path(self) -> str:
        return f"status/{self.mini_program}/{self.target_app}.yaml"


# --------------------------------------------------------------------------------------------
# What the platform shows (built by reconcile from adapter calls)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Observed:
    """What the platform says about one (mini program, target app) right now."""

    #: Whether the desired version has been uploaded.
    version_uploaded: bool
    #: The release of the desired version on this target, if one exists.
    release: ReleaseSnapshot | None = None
    #: Other releases of the same mini program on this target (older or newer versions).
    others: tuple[ReleaseSnapshot, ...] = ()


# --------------------------------------------------------------------------------------------
# Status (status/<mini-program>/<target-app>.yaml, written by the controller only)
# --------------------------------------------------------------------------------------------


class Phase(StrEnum):
    """The one-word state shown to people; derived from platform stage and conditions."""

    PENDING = "Pending"  # waiting for the version upload / not created yet
    BUILDING = "Building"
    BUILD_FAILED = "BuildFailed"
    TESTING = "Testing"  # configuration pushed, compatibility test
    IN_REVIEW = "InReview"
    REJECTED = "Rejected"
    PILOT_TESTING = "PilotTesting"
    READY_TO_RELEASE = "ReadyToRelease"  # release preparation: waiting for grayscale > 0
    GRAYSCALE = "Grayscale"
    RELEASED = "Released"
    CANCELED = "Canceled"
    ARCHIVED = "Archived"
    PAUSED = "Paused"
    INVALID = "Invalid"
    FORBIDDEN = "Forbidden"


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class ConditionType(StrEnum):
    """Flux/Kubernetes-style condition types on a release's status."""

    #: The release is where main wants it (True), or not yet / cannot be (False).
    READY = "Ready"
    #: The controller is actively moving the release (an action is in flight).
    RECONCILING = "Reconciling"
    #: Needs a person: nothing will change until the manifest (or the platform) does.
    STALLED = "Stalled"


class Reason(StrEnum):
    """Why a plan is what it is. CamelCase; shown in conditions, logs and notifications."""

    # progressing
    WAITING_FOR_UPLOAD = "WaitingForUpload"
    CREATING_RELEASE = "CreatingRelease"
    BUILDING = "Building"
    PUSHING_CONFIGURATION = "PushingConfiguration"
    UPDATING_BASIC_INFO = "UpdatingBasicInfo"
    TESTING_COMPATIBILITY = "TestingCompatibility"
    APPLYING = "Applying"
    UNDER_REVIEW = "UnderReview"
    WITHDRAWING = "Withdrawing"
    SYNCING_TESTERS = "SyncingTesters"
    PILOT_TESTING = "PilotTesting"  # waiting for pilot.complete
    COMPLETING_TESTING = "CompletingTesting"
    READY_TO_RELEASE = "ReadyToRelease"  # waiting for grayscale > 0
    RAISING_GRAYSCALE = "RaisingGrayscale"
    GRAYSCALE_REACHED = "GrayscaleReached"
    RELEASING_FULLY = "ReleasingFully"
    CREATING_QR_CODE = "CreatingQrCode"
    RELEASED = "Released"
    CANCELING = "Canceling"
    CANCELED = "Canceled"
    SUPERSEDING = "Superseding"  # canceling an older version still in flight
    ARCHIVED = "Archived"
    PAUSED = "Paused"
    RETRY_BACKOFF = "RetryBackoff"
    # stalled: needs a person
    BUILD_FAILED = "BuildFailed"
    COMPATIBILITY_FAILED = "CompatibilityFailed"
    REJECTED = "Rejected"
    GRAYSCALE_DECREASE_REFUSED = "GrayscaleDecreaseRefused"
    SUPERSEDE_REQUIRED = "SupersedeRequired"
    VERSION_CONFLICT = "VersionConflict"
    PLATFORM_REFUSED = "PlatformRefused"  # a permanent platform error on the last action
    INVALID = "Invalid"
    FORBIDDEN = "Forbidden"
    #: Main's history no longer contains the commit the controller last acted on.
    HISTORY_DIVERGED = "HistoryDiverged"
    #: The status records a platform release id that the platform does not know.
    PLATFORM_MISMATCH = "PlatformMismatch"
    #: relctl itself failed on this release (a bug); retried on the next pass.
    INTERNAL_ERROR = "InternalError"
    # events only
    STATUS_EDITED = "StatusEdited"


@dataclass(frozen=True)
class Condition:
    type: ConditionType
    status: ConditionStatus
    reason: str
    message: str
    #: Changes only when ``status`` changes (Flux setter semantics).
    last_transition_time: datetime


@dataclass(frozen=True)
class Event:
    """One line of the release's progress log (the console's "Release Progress")."""

    time: datetime
    reason: str
    message: str


@dataclass(frozen=True)
class CompatibilitySummary:
    report_id: str
    pass_rate: float
    passed: int
    failed: int
    #: Digest of the configuration the report is for, and the ``retest`` counter it ran under.
    configuration_digest: str
    retest: int


@dataclass(frozen=True)
class ReviewSummary:
    decision: str
    reason: str


@dataclass(frozen=True)
class ErrorRecord:
    """The last platform error on this release, and the backoff state it caused."""

    code: str
    message: str
    action: str
    attempts: int
    time: datetime

    @property
    def permanent(self) -> bool:
        """Whether the platform refused (needs a change or a person), as opposed to a
        failure that a retry may get past (transient, rate limited, unknown outcome)."""
        kind = ERROR_TYPES.get(self.code)
        return kind is None or not kind.retryable


@dataclass(frozen=True)
class Validation:
    """One located problem in a manifest (shown in an ``Invalid`` status)."""

    file: str
    line: int
    column: int
    path: str
    message: str
    #: Stable problem code (docs/validate.md), e.g. ``schema``, ``unquoted-version``.
    code: str = ""
    #: How to fix it, where relctl knows.
    hint: str | None = None


@dataclass(frozen=True)
class Status:
    """What the controller last observed and did for one release."""

    mini_program: str
    target_app: str
    version: str
    observed_commit: str
    spec_hash: str
    phase: Phase
    release_id: str | None = None
    stage: Stage | None = None
    grayscale: int = 0
    conditions: tuple[Condition, ...] = ()
    compatibility: CompatibilitySummary | None = None
    review: ReviewSummary | None = None
    testers: int = 0
    qr_code: str | None = None
    #: Spec hash at the last successful ``apply``: a rejection is only re-applied when the
    #: spec changed since.
    applied_spec_hash: str | None = None
    last_error: ErrorRecord | None = None
    next_retry: datetime | None = None
    errors: tuple[Validation, ...] = ()
    history: tuple[Event, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.mini_program}/{self.target_app}"

    def condition(self, type_: ConditionType) -> Condition | None:
        return next((c for c in self.conditions if c.type == type_), None)


# --------------------------------------------------------------------------------------------
# Plan: decide()'s answer
# --------------------------------------------------------------------------------------------


class Action(StrEnum):
    """Platform mutations the controller may take; one per release per pass."""

    CREATE_RELEASE = "create_release"
    UPDATE_CONFIGURATION = "update_configuration"
    UPDATE_BASIC_INFO = "update_basic_info"
    RUN_COMPATIBILITY_TEST = "run_compatibility_test"
    APPLY = "apply"
    WITHDRAW = "withdraw"
    SET_TESTERS = "set_testers"
    COMPLETE_TESTING = "complete_testing"
    CANCEL = "cancel"
    SET_GRAYSCALE = "set_grayscale"
    FULL_RELEASE = "full_release"
    CREATE_QR_CODE = "create_qr_code"


@dataclass(frozen=True)
class Step:
    """One platform mutation with everything ``act`` needs to execute it."""

    action: Action
    #: The platform release acted on; None only for CREATE_RELEASE.
    release_id: str | None
    #: Idempotency key: derived from the release, the spec acted on and the action, so the
    #: same intent never takes effect twice (after a crash or an Unknown result).
    idempotency_key: str
    percent: int | None = None
    testers: tuple[str, ...] | None = None
    configuration: Mapping[str, Any] | None = None
    basic_info: Mapping[str, str] | None = None

    def describe(self) -> str:
        """Human words for the step, e.g. ``set grayscale 20%``."""
        words = self.action.value.replace("_", " ")
        if self.percent is not None:
            return f"{words} {self.percent}%"
        if self.testers is not None:
            return f"{words} ({len(self.testers)})"
        return words


class Outcome(StrEnum):
    """How the controller should treat a release after this plan (the retry policy)."""

    #: An action is planned; check again on the next pass.
    PROGRESSING = "Progressing"
    #: Nothing to do until the platform moves (build, review, test running); check again.
    WAITING = "Waiting"
    #: The release is where main wants it.
    DONE = "Done"
    #: Needs a person: no retry until the manifest changes.
    STALLED = "Stalled"


@dataclass(frozen=True)
class Plan:
    """The next action for one release, with the reason a person reads."""

    release: str  # Release.key
    phase: Phase
    outcome: Outcome
    reason: Reason
    message: str
    step: Step | None = None


#: Values from the repository or the platform quoted into messages are cut to this length.
QUOTE_LIMIT = 120


def cut(text: str, limit: int = QUOTE_LIMIT) -> str:
    """``text`` cut to about ``limit`` characters, saying how long it was."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text):,} characters)"
