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
from datetime import datetime, timedelta
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
    #: Analysis templates of progressive rollouts, by name (``analysisTemplates``).
    analysis_templates: Mapping[str, AnalysisTemplate] = field(default_factory=dict)
    #: ``stopTheLine``: when set, every rollout holds its current exposure; the text says why.
    stop_the_line: str | None = None
    #: ``freezeWindows``: when rollouts may (allow) or may not (deny) raise exposure.
    freeze_windows: tuple[FreezeWindow, ...] = ()


class WindowKind(StrEnum):
    DENY = "deny"
    ALLOW = "allow"


@dataclass(frozen=True)
class FreezeWindow:
    """A time window as cron schedule + duration + time zone (Spinnaker's execution windows).

    In a deny window no rollout raises exposure; when a target app has allow windows, it
    raises exposure only inside one of them."""

    name: str
    kind: WindowKind
    #: Five-field cron expression of each window's start, in ``time_zone``.
    schedule: str
    duration: timedelta
    time_zone: str = "UTC"
    #: The target apps it applies to; empty: every app.
    target_apps: tuple[str, ...] = ()


# --------------------------------------------------------------------------------------------
# Progressive rollouts (spec.rollout, analysisTemplates in relctl.yaml)
# --------------------------------------------------------------------------------------------


class Provider(StrEnum):
    """Where a metric of an analysis comes from."""

    PLATFORM = "platform"  # the adapter's get_feedback
    PROMETHEUS = "prometheus"  # an instant query over Prometheus' HTTP API
    WEB = "web"  # GET a URL, a JSONPath into the JSON body


@dataclass(frozen=True)
class Metric:
    """One measurement of an analysis template and the conditions that judge it."""

    name: str
    provider: Provider
    #: platform: crashRate | errorRate | usersOnVersion; prometheus: PromQL; web: URL.
    query: str
    #: A condition over ``result``, e.g. ``result < 1.5`` (see ``controller.rollout``).
    success_condition: str
    failure_condition: str | None = None
    #: web: where the value is in the JSON body, e.g. ``$.data.crashRate``.
    json_path: str | None = None
    #: prometheus: the server's base URL (the environment's RELCTL_PROMETHEUS_URL otherwise).
    address: str | None = None
    interval: timedelta = timedelta(0)
    count: int = 1
    failure_limit: int = 0
    inconclusive_limit: int = 0
    #: Fewer users on the version than this makes a measurement Inconclusive.
    min_sample_users: int = 0


@dataclass(frozen=True)
class AnalysisTemplate:
    name: str
    metrics: tuple[Metric, ...]


class StepKind(StrEnum):
    GRAYSCALE = "grayscale"
    PAUSE = "pause"
    ANALYSIS = "analysis"


@dataclass(frozen=True)
class RolloutStep:
    """One step of a rollout schedule."""

    kind: StepKind
    #: grayscale: the exposure, already snapped to what the target app offers.
    grayscale: int | None = None
    #: pause: the soak time; None waits for ``relctl promote``.
    duration: timedelta | None = None
    #: analysis: the resolved template from relctl.yaml.
    template: AnalysisTemplate | None = None

    def describe(self) -> str:
        if self.kind is StepKind.GRAYSCALE:
            return f"grayscale {self.grayscale}%"
        if self.kind is StepKind.PAUSE:
            if self.duration is None:
                return "pause until promoted"
            return f"pause {format_duration(self.duration)}"
        assert self.template is not None
        return f"analysis {self.template.name}"


@dataclass(frozen=True)
class WaveGate:
    """``after``: wait for another target app of the same version to reach ``grayscale`` and
    hold it for ``soak`` (GCash first, then DANA, then Touch 'n Go)."""

    target_app: str
    grayscale: int
    soak: timedelta = timedelta(0)


@dataclass(frozen=True)
class WaveState:
    """What the platform shows of the release the wave waits for (observed by reconcile)."""

    exposure: int
    #: When its exposure last changed (None: no release yet).
    since: datetime | None


class OnFailure(StrEnum):
    PAUSE = "pause"
    CANCEL = "cancel"


@dataclass(frozen=True)
class Rollout:
    """``spec.rollout``: the schedule and the commands people gave (tokens in git)."""

    steps: tuple[RolloutStep, ...]
    on_failure: OnFailure = OnFailure.PAUSE
    #: ``relctl promote``: a new token passes the current pause (or halt).
    promoted_at: str | None = None
    #: ``relctl promote --full``: skip the rest of the schedule to 100%.
    full: bool = False
    #: ``relctl retry``: a new token runs the failed analysis again.
    retry: str | None = None
    #: ``relctl pause`` / ``resume``: hold the current exposure.
    paused: bool = False
    #: ``relctl abort``: cancel the version on this target (irreversible).
    abort: bool = False
    #: Emergency override: freeze windows do not hold this rollout.
    override_freeze: bool = False
    #: A wave: exposure rises only once another target app got far enough.
    after: WaveGate | None = None


def format_duration(value: timedelta) -> str:
    """``2h``, ``90m``, ``1d``, ``45s``: the largest unit that divides the duration."""
    seconds = int(value.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> timedelta:
    """``30s``, ``15m``, ``2h``, ``1d`` or a sum such as ``1h30m``. Raises ValueError."""
    total = 0
    number = ""
    if not text:
        raise ValueError("empty duration")
    for char in text:
        if char.isascii() and char.isdigit():
            number += char
        elif char in _DURATION_UNITS and number:
            total += int(number) * _DURATION_UNITS[char]
            number = ""
        else:
            raise ValueError(f"not a duration: {text!r} (e.g. 30s, 15m, 2h, 1d, 1h30m)")
    if number:
        raise ValueError(f"not a duration: {text!r} (a unit is missing: s, m, h or d)")
    return timedelta(seconds=total)


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
    #: The progressive schedule; when set, the controller raises grayscale itself.
    rollout: Rollout | None = None


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
        **({} if spec.rollout is None else {"rollout": rollout_to_dict(spec.rollout)}),
    }


def rollout_to_dict(rollout: Rollout) -> dict[str, Any]:
    """The rollout as plain data, templates resolved (a template change changes the hash)."""
    steps: list[dict[str, Any]] = []
    for step in rollout.steps:
        if step.kind is StepKind.GRAYSCALE:
            steps.append({"grayscale": step.grayscale})
        elif step.kind is StepKind.PAUSE:
            duration = None if step.duration is None else step.duration.total_seconds()
            steps.append({"pause": {"duration": duration}})
        else:
            assert step.template is not None
            steps.append(
                {
                    "analysis": {
                        "template": step.template.name,
                        "metrics": [
                            {
                                "name": m.name,
                                "provider": m.provider.value,
                                "query": m.query,
                                "successCondition": m.success_condition,
                                "failureCondition": m.failure_condition,
                                "jsonPath": m.json_path,
                                "address": m.address,
                                "interval": m.interval.total_seconds(),
                                "count": m.count,
                                "failureLimit": m.failure_limit,
                                "inconclusiveLimit": m.inconclusive_limit,
                                "minSampleUsers": m.min_sample_users,
                            }
                            for m in step.template.metrics
                        ],
                    }
                }
            )
    return {
        "steps": steps,
        "onFailure": rollout.on_failure.value,
        "promotedAt": rollout.promoted_at,
        "full": rollout.full,
        "retry": rollout.retry,
        "paused": rollout.paused,
        "abort": rollout.abort,
        "overrideFreeze": rollout.override_freeze,
        "after": None
        if rollout.after is None
        else {
            "targetApp": rollout.after.target_app,
            "grayscale": rollout.after.grayscale,
            "soak": rollout.after.soak.total_seconds(),
        },
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
    #: Measurements taken in this pass for the rollout's current analysis step.
    measurements: tuple[Measurement, ...] = ()
    #: relctl.yaml's ``stopTheLine``: every rollout holds its exposure; the text says why.
    stop_the_line: str | None = None
    #: relctl.yaml's ``freezeWindows``.
    freeze_windows: tuple[FreezeWindow, ...] = ()
    #: The release a rollout's ``after`` waits for, as the platform shows it.
    wave: WaveState | None = None


@dataclass(frozen=True)
class Measurement:
    """One reading of a metric (I/O done by ``controller.analysis``; judged purely)."""

    metric: str
    time: datetime
    #: None when the provider had no data (or failed: ``error`` says why).
    value: float | None
    #: Users on the version when the provider knows it (platform), else None.
    sample: int | None = None
    error: str = ""


class Verdict(StrEnum):
    SUCCESSFUL = "Successful"
    FAILED = "Failed"
    INCONCLUSIVE = "Inconclusive"


@dataclass(frozen=True)
class AnalysisRun:
    """One judged measurement of the current analysis step (kept in the status)."""

    metric: str
    time: datetime
    value: float | None
    sample: int | None
    condition: str
    result: Verdict
    message: str


@dataclass(frozen=True)
class RolloutProgress:
    """The controller's memory of a rollout: survives restarts in the status file."""

    #: Index of the current step; ``len(steps)`` when the schedule is done.
    step: int
    step_started_at: datetime
    #: The exposure in effect (the platform's grayscale when last observed).
    exposure: int = 0
    #: Analysis runs of the current step.
    runs: tuple[AnalysisRun, ...] = ()
    #: The last ``promotedAt`` and ``retry`` tokens consumed.
    promoted: str | None = None
    retried: str | None = None
    #: Why the rollout is halted (a Reason), with the words a person reads; None: moving.
    halt: str | None = None
    message: str = ""
    #: What happens next and its earliest time (None: needs a person).
    next_action: str = ""
    next_time: datetime | None = None


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
    #: A rollout holds its exposure (analysis, stop the line, waiting for a person).
    HALTED = "Halted"
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
    # rollouts
    SOAKING = "Soaking"
    ANALYZING = "Analyzing"
    STEP_COMPLETED = "StepCompleted"
    WAITING_FOR_PROMOTION = "WaitingForPromotion"
    ANALYSIS_FAILED = "AnalysisFailed"
    ANALYSIS_INCONCLUSIVE = "AnalysisInconclusive"
    STOP_THE_LINE = "StopTheLine"
    FREEZE_WINDOW = "FreezeWindow"
    WAITING_FOR_WAVE = "WaitingForWave"
    ROLLOUT_PAUSED = "RolloutPaused"
    ABORTING = "Aborting"
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
    rollout: RolloutProgress | None = None

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
    #: The rollout's progress after this decision (None: no rollout, or not started).
    rollout: RolloutProgress | None = None


#: Values from the repository or the platform quoted into messages are cut to this length.
QUOTE_LIMIT = 120


def cut(text: str, limit: int = QUOTE_LIMIT) -> str:
    """``text`` cut to about ``limit`` characters, saying how long it was."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text):,} characters)"
