"""Release status: conditions, event history, and the status file written back to git.

The controller owns ``status/<mini-program>/<target-app>.yaml`` in the release repository.
This module is everything about that file that does no git work:

* ``set_condition`` / ``remove_condition``: Flux/Kubernetes condition setter semantics
  (``lastTransitionTime`` moves only when a condition's ``status`` really changes).
* ``append_event``: the bounded "release progress" history; a level-triggered pass that
  repeats itself adds nothing.
* ``render_status`` / ``parse_status``: deterministic YAML (same state, same bytes) and a
  tolerant reader that returns None for a missing, corrupt or foreign file instead of crashing;
  ``parse_status(render_status(s)) == s`` for every status whose timestamps are whole seconds.
* ``status_to_json`` / ``status_from_json``: the same document as compact JSON, the fast
  form the controller keeps beside the YAML in its own state for cold starts (PyYAML's
  constructor costs about 1 ms per status; ``json`` a tenth of that). Same tolerance: None
  for anything that is not a status.
* ``read_statuses``: every status file of a checkout, behind ``relctl status`` (whose rows
  and table are ``controller.output.table``'s).

Callers: ``reconcile`` (builds the new status of each release, renders it, writes the files
whose bytes changed), ``gitops`` (reads the statuses at a commit), the CLI (``relctl status``).
Schema of the file: ``schemas/status.schema.json``.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, TypeVar

import yaml

from controller.act import OBSERVE, ActResult, record_error, record_observation_error
from controller.model import (
    API_VERSION,
    Action,
    AnalysisRun,
    CompatibilitySummary,
    Condition,
    ConditionStatus,
    ConditionType,
    ErrorRecord,
    Event,
    Observed,
    Outcome,
    Phase,
    Plan,
    Reason,
    Release,
    ReviewSummary,
    RolloutProgress,
    Status,
    Validation,
    Verdict,
    cut,
)
from controller.plan import derive_phase
from controller.platform.errors import PlatformError
from controller.platform.protocol import CompatibilityStatus, ReleaseSnapshot, Stage
from controller.repofiles import Entry, EntryKind, RepoFiles, Unreadable, WorkTree, check_path

try:  # PyYAML wheels ship libyaml; the pure-Python classes are the same dialect, only slower.
    from yaml import CSafeDumper as _SafeDumper
    from yaml import CSafeLoader as _SafeLoader
except ImportError:  # pragma: no cover - depends on how PyYAML was built
    from yaml import SafeDumper as _SafeDumper  # type: ignore[assignment]
    from yaml import SafeLoader as _SafeLoader  # type: ignore[assignment]

log = logging.getLogger(__name__)

KIND: Final = "ReleaseStatus"
HEADER: Final = "# Written by the relctl controller. Do not edit: changes are overwritten.\n"
#: Default bound of a release's event history (newest last).
HISTORY_LIMIT: Final = 20
#: Directory of the status files in a release repository.
STATUS_DIR: Final = "status"
#: Condition and event messages are cut to this length: they quote what people typed (an
#: author's name, a reviewer's reason), and a status must stay far below the read bound.
MESSAGE_LIMIT: Final = 1000
#: A status file larger than this is not read (a person's 30 MB "status" is ignored and
#: overwritten). The controller's own files stay far below: history is bounded, and values
#: quoted into messages are cut.
STATUS_SIZE_LIMIT: Final = 256 * 1024

_CONDITION_ORDER: Final = {type_: index for index, type_ in enumerate(ConditionType)}


# --------------------------------------------------------------------------------------------
# Time
# --------------------------------------------------------------------------------------------


def utc_seconds(moment: datetime) -> datetime:
    """``moment`` in UTC with whole seconds: the precision of every status timestamp.

    Raises ValueError for a naive datetime: its time zone would be a guess.
    """
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"naive datetime {moment.isoformat()}: pass an aware (UTC) datetime")
    return moment.astimezone(UTC).replace(microsecond=0)


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with seconds precision, e.g. ``2026-11-25T10:02:00Z``."""
    # isoformat, not strftime: it always pads the year to four digits.
    return utc_seconds(moment).isoformat().replace("+00:00", "Z")


# --------------------------------------------------------------------------------------------
# Conditions and history (pure)
# --------------------------------------------------------------------------------------------


def set_condition(
    conditions: tuple[Condition, ...],
    type_: ConditionType,
    status: ConditionStatus,
    reason: str,
    message: str,
    now: datetime,
) -> tuple[Condition, ...]:
    """Set one condition, Flux setter style, and return the new (ordered) conditions.

    ``lastTransitionTime`` becomes ``now`` (whole seconds, UTC) only when the condition is new
    or its ``status`` changes; a new reason or message alone updates in place. Setting a
    condition to what it already is returns an equal tuple, so an unchanged pass renders the
    same bytes. Conditions are kept in the order Ready, Reconciling, Stalled; messages are cut
    to ``MESSAGE_LIMIT`` characters.
    """
    message = cut(message, MESSAGE_LIMIT)
    existing = next((c for c in conditions if c.type == type_), None)
    if existing is not None and existing.status == status:
        transition = existing.last_transition_time
    else:
        transition = utc_seconds(now)
    updated = Condition(
        type=ConditionType(type_),
        status=ConditionStatus(status),
        reason=reason,
        message=message,
        last_transition_time=transition,
    )
    others = [c for c in conditions if c.type != type_]
    return tuple(sorted([*others, updated], key=lambda c: _CONDITION_ORDER[c.type]))


def remove_condition(
    conditions: tuple[Condition, ...], type_: ConditionType
) -> tuple[Condition, ...]:
    """The conditions without ``type_`` (e.g. Reconciling once nothing is in flight)."""
    return tuple(c for c in conditions if c.type != type_)


def append_event(
    history: tuple[Event, ...], event: Event, limit: int = HISTORY_LIMIT
) -> tuple[Event, ...]:
    """Append ``event`` to a bounded history (newest last) and return the new history.

    An event with the same reason and message as the newest one is not appended again: a
    level-triggered pass that finds the release where it was repeats itself, and the history
    keeps the time it first happened. The event's time is normalized to whole seconds, UTC.
    """
    if limit < 1:
        raise ValueError(f"history limit must be at least 1, not {limit}")
    message = cut(event.message, MESSAGE_LIMIT)
    if history and (history[-1].reason, history[-1].message) == (event.reason, message):
        return history[-limit:]
    normalized = Event(time=utc_seconds(event.time), reason=event.reason, message=message)
    return (*history, normalized)[-limit:]


# --------------------------------------------------------------------------------------------
# Building a release's status (pure): release, memory, plan, outcome, observation -> Status
# --------------------------------------------------------------------------------------------


def build_status(
    release: Release,
    previous: Status | None,
    plan: Plan,
    result: ActResult | None,
    observed: Observed,
    commit: str,
    now: datetime,
    *,
    after: Plan | None = None,
) -> Status:
    """The status of one release after a pass: a pure function of its inputs.

    ``previous`` is the controller's own memory of the release (the status it last wrote),
    ``plan`` what ``decide`` chose, ``result`` what ``act`` did with its step (None: no step
    taken), ``observed`` the platform after the step. ``after`` is ``decide``'s reading of
    that observation (what comes next), given when a step succeeded: the conditions say
    what is true after the step, not what was just done. Conditions are computed here and
    only here.
    """
    snapshot = observed.release
    base = carry_over(release, previous, commit)
    history = base.history
    conditions = base.conditions

    stage = snapshot.stage if snapshot else None
    # What the controller did.
    last_error, next_retry = base.last_error, base.next_retry
    applied_spec_hash = base.applied_spec_hash
    outcome, reason, message = plan.outcome, str(plan.reason), plan.message
    if result is not None and result.ok:
        last_error, next_retry = None, None
        history = append_event(history, Event(now, str(plan.reason), result.step.describe()))
        if result.step.action is Action.APPLY:
            applied_spec_hash = release.spec_hash
    elif result is not None and result.error is not None:
        last_error, next_retry = record_error(
            result, previous.last_error if previous else None, now
        )
        message = f"{result.step.describe()} failed ({result.error.code}): {result.error}"
        if result.permanent:
            outcome, reason = Outcome.STALLED, str(Reason.PLATFORM_REFUSED)
        else:
            outcome, reason = Outcome.WAITING, str(Reason.RETRY_BACKOFF)
        history = append_event(history, Event(now, result.error.code, message))
    elif plan.reason not in (Reason.RETRY_BACKOFF, Reason.PLATFORM_REFUSED):
        # Nothing attempted and no hold on an earlier failure: any old error is history.
        last_error, next_retry = None, None
    # What the platform shows now (after the step that may have caused it).
    if snapshot is not None and (previous is None or previous.stage != stage):
        history = append_event(
            history, Event(now, _stage_reason(snapshot), _stage_message(release, snapshot))
        )
    if plan.outcome is Outcome.STALLED:
        history = append_event(history, Event(now, str(plan.reason), plan.message))
    if applied_spec_hash is None and stage is not None and snapshot and snapshot.review:
        applied_spec_hash = release.spec_hash  # applied before a crash lost the record

    effective = plan
    if after is not None and result is not None and result.ok:
        outcome, reason, message = after.outcome, str(after.reason), after.message
        effective = after if after.rollout is not None else plan
    rollout = _rollout_memory(effective.rollout, base.rollout)
    history = _rollout_events(release, base.rollout, rollout, history, now)
    phase = derive_phase(release, snapshot)
    if effective.rollout is not None and effective.phase in (Phase.HALTED, Phase.PAUSED):
        phase = effective.phase
    conditions = conditions_for(conditions, outcome, reason, message, now)
    return Status(
        mini_program=release.mini_program,
        target_app=release.target_app,
        version=release.spec.version,
        observed_commit=base.observed_commit,
        spec_hash=release.spec_hash,
        phase=phase,
        release_id=snapshot.release_id if snapshot else None,
        stage=stage,
        grayscale=snapshot.grayscale if snapshot else 0,
        conditions=conditions,
        compatibility=_compatibility(release, previous, snapshot),
        review=ReviewSummary(snapshot.review.decision.value, snapshot.review.reason)
        if snapshot and snapshot.review
        else None,
        testers=len(snapshot.testers) if snapshot else 0,
        qr_code=snapshot.qr_code.url if snapshot and snapshot.qr_code else None,
        applied_spec_hash=applied_spec_hash,
        last_error=last_error,
        next_retry=next_retry,
        errors=(),
        history=history,
        rollout=rollout if release.spec.rollout is not None else None,
    )


def _rollout_memory(
    new: RolloutProgress | None, old: RolloutProgress | None
) -> RolloutProgress | None:
    """The rollout progress to keep, its times in whole UTC seconds (same state, same bytes)."""
    progress = new if new is not None else old
    if progress is None:
        return None
    return replace(
        progress,
        step_started_at=utc_seconds(progress.step_started_at),
        next_time=None if progress.next_time is None else utc_seconds(progress.next_time),
        runs=tuple(replace(run, time=utc_seconds(run.time)) for run in progress.runs),
    )


def _rollout_events(
    release: Release,
    old: RolloutProgress | None,
    new: RolloutProgress | None,
    history: tuple[Event, ...],
    now: datetime,
) -> tuple[Event, ...]:
    """Every transition of a rollout is a line of history: steps done, halts, retries."""
    rollout = release.spec.rollout
    if rollout is None or new is None:
        return history
    steps = rollout.steps
    first = 0 if old is None else old.step
    for index in range(first, min(new.step, len(steps))):
        history = append_event(
            history,
            Event(
                now,
                str(Reason.STEP_COMPLETED),
                f"step {index + 1}/{len(steps)} done: {steps[index].describe()}",
            ),
        )
    if new.halt is not None and (old is None or old.halt != new.halt):
        history = append_event(history, Event(now, new.halt, new.message))
    if old is not None and old.retried != new.retried and new.retried is not None:
        history = append_event(
            history, Event(now, "Retry", f"relctl retry ({new.retried}) at step {new.step + 1}")
        )
    if old is not None and old.promoted != new.promoted and new.promoted is not None:
        history = append_event(history, Event(now, "Promoted", f"relctl promote ({new.promoted})"))
    return history


def carry_over(release: Release, previous: Status | None, commit: str) -> Status:
    """The previous status of the same version, or a fresh one (a new version starts over)."""
    if previous is not None and previous.version == release.spec.version:
        observed_commit = (
            previous.observed_commit if previous.spec_hash == release.spec_hash else commit
        )
        return replace(previous, observed_commit=observed_commit)
    history = previous.history if previous is not None else ()
    return Status(
        mini_program=release.mini_program,
        target_app=release.target_app,
        version=release.spec.version,
        observed_commit=commit,
        spec_hash=release.spec_hash,
        phase=Phase.PENDING,
        history=history,
    )


def conditions_for(
    conditions: tuple[Condition, ...], outcome: Outcome, reason: str, message: str, now: datetime
) -> tuple[Condition, ...]:
    """Ready / Reconciling / Stalled for an outcome (Flux style: done = Ready, waiting =
    Reconciling, needs a person = Stalled); transition times move only on real changes."""
    if outcome is Outcome.DONE:
        conditions = set_condition(
            conditions, ConditionType.READY, ConditionStatus.TRUE, reason, message, now
        )
        conditions = remove_condition(conditions, ConditionType.RECONCILING)
        return remove_condition(conditions, ConditionType.STALLED)
    conditions = set_condition(
        conditions, ConditionType.READY, ConditionStatus.FALSE, reason, message, now
    )
    if outcome is Outcome.STALLED:
        conditions = remove_condition(conditions, ConditionType.RECONCILING)
        return set_condition(
            conditions, ConditionType.STALLED, ConditionStatus.TRUE, reason, message, now
        )
    conditions = remove_condition(conditions, ConditionType.STALLED)
    return set_condition(
        conditions, ConditionType.RECONCILING, ConditionStatus.TRUE, reason, message, now
    )


def _compatibility(
    release: Release, previous: Status | None, snapshot: ReleaseSnapshot | None
) -> CompatibilitySummary | None:
    report = snapshot.compatibility if snapshot else None
    before = previous.compatibility if previous else None
    if report is None:
        return before if previous and previous.version == release.spec.version else None
    retest = (
        before.retest
        if before is not None and before.report_id == report.report_id
        else release.spec.compatibility.retest
    )
    passed = sum(1 for case in report.cases if case.passed)
    finished = report.status is CompatibilityStatus.FINISHED
    return CompatibilitySummary(
        report_id=report.report_id,
        pass_rate=report.pass_rate if finished else 0.0,
        passed=passed if finished else 0,
        failed=len(report.cases) - passed if finished else 0,
        configuration_digest=report.configuration_digest,
        retest=retest,
    )


def _stage_reason(snapshot: ReleaseSnapshot) -> str:
    return "".join(part.capitalize() for part in snapshot.stage.value.split("_"))


def _stage_message(release: Release, snapshot: ReleaseSnapshot) -> str:
    stage = snapshot.stage.value.lower().replace("_", " ")
    words = f"{release.spec.version} on {release.target_app}: {stage}"
    if snapshot.stage is Stage.REJECTED and snapshot.review is not None:
        return f"{words}: {snapshot.review.reason}"
    if snapshot.stage is Stage.GRAYSCALE:
        return f"{words} {snapshot.grayscale}%"
    return words


def observation_failed(
    release: Release,
    previous: Status | None,
    commit: str,
    error: PlatformError,
    now: datetime,
) -> Status:
    """Observing failed: nothing was decided; keep what is known, say why and when the
    platform is asked again (the release is not observed before ``next_retry``)."""
    base = carry_over(release, previous, commit)
    last_error, next_retry = record_observation_error(error, base.last_error, release.key, now)
    message = (
        f"cannot observe the platform ({error.code}): {cut(str(error))}; "
        f"asking again after {format_time(next_retry)}"
    )
    return replace(
        base,
        spec_hash=release.spec_hash,
        last_error=last_error,
        next_retry=next_retry,
        conditions=conditions_for(
            base.conditions, Outcome.WAITING, str(Reason.RETRY_BACKOFF), message, now
        ),
    )


def platform_mismatch(release: Release, previous: Status | None, observed: Observed) -> str | None:
    """Why the platform contradicts the controller's own record, or None.

    The controller recorded a platform release of this version, but the platform knows no
    release of it: the adapter points at another platform (a typo in ``--platform``, a new
    database) or the platform lost it. Creating a new release would be a guess; a person
    must look.
    """
    if previous is None or previous.release_id is None or observed.release is not None:
        return None
    if previous.version != release.spec.version:
        return None
    return (
        f"the controller recorded platform release {previous.release_id} of "
        f"{release.spec.version} on {release.target_app}, but the platform does not know it; "
        "check --platform (is it the platform the controller used before?)"
    )


def observation_due(release: Release, previous: Status | None, now: datetime) -> bool:
    """False while a failed observation of the same spec waits for its retry time."""
    if previous is None or previous.next_retry is None or previous.last_error is None:
        return True
    if previous.last_error.action != OBSERVE or previous.spec_hash != release.spec_hash:
        return True
    return now >= previous.next_retry


def invalid_status(
    key: str,
    errors: tuple[Validation, ...],
    previous: Status | None,
    commit: str,
    now: datetime,
) -> Status:
    """``Invalid``: every located error; nothing else happens to the release."""
    mini_program, target_app = key.split("/", 1)
    message = f"{len(errors)} error(s) in the manifest; first: " + (
        f"{errors[0].file}:{errors[0].line}:{errors[0].column}: {errors[0].message}"
        if errors
        else "unknown"
    )
    base = previous or Status(
        mini_program=mini_program,
        target_app=target_app,
        version="",
        observed_commit=commit,
        spec_hash="",
        phase=Phase.INVALID,
    )
    conditions = conditions_for(base.conditions, Outcome.STALLED, str(Reason.INVALID), message, now)
    history = append_event(base.history, Event(now, str(Reason.INVALID), message))
    return replace(
        base,
        phase=Phase.INVALID,
        observed_commit=commit if base.errors != errors else base.observed_commit,
        conditions=conditions,
        errors=errors,
        history=history,
    )


def held_status(
    key: str,
    version: str,
    previous: Status | None,
    commit: str,
    now: datetime,
    *,
    reason: str,
    message: str,
    phase: Phase | None = None,
) -> Status:
    """A release the controller holds without touching the platform (Forbidden, main's
    history diverged, the platform does not know its release...).

    Everything the controller last observed is kept as it was, including the spec hash and
    observed commit of the last revision it acted on, so the status keeps telling what the
    platform has while a Stalled condition says why nothing is done. ``phase`` replaces the
    phase (``Forbidden``); None keeps it.
    """
    mini_program, target_app = key.split("/", 1)
    base = previous or Status(
        mini_program=mini_program,
        target_app=target_app,
        version=version,
        observed_commit=commit,
        spec_hash="",
        phase=phase or Phase.PENDING,
    )
    conditions = conditions_for(base.conditions, Outcome.STALLED, reason, message, now)
    history = append_event(base.history, Event(now, reason, message))
    return replace(base, phase=phase or base.phase, conditions=conditions, history=history)


def forbidden_status(
    release: Release, message: str, previous: Status | None, commit: str, now: datetime
) -> Status:
    """``Forbidden``: the manifest's current revision was changed by someone without the
    right to; the platform is not touched (see :func:`held_status`)."""
    return held_status(
        release.key,
        release.spec.version,
        previous,
        commit,
        now,
        reason=str(Reason.FORBIDDEN),
        message=message,
        phase=Phase.FORBIDDEN,
    )


# --------------------------------------------------------------------------------------------
# Rendering: Status -> bytes
# --------------------------------------------------------------------------------------------


class _Timestamp(str):
    """A rendered timestamp: emitted as a plain YAML timestamp, not as a quoted string."""

    __slots__ = ()


class _StatusDumper(_SafeDumper):
    """Safe dumper that also quotes what a YAML 1.2 reader would take for a number.

    PyYAML quotes every string a YAML 1.1 reader would misread (``'1.10'``, ``'yes'``,
    ``'010'``); these resolvers make it quote ``1e3`` and ``0o17`` too, so editors and tools that
    speak YAML 1.2 read the same strings.
    """


#: Characters both emitters (libyaml and pure Python) write as they are. Anything else (line
#: breaks, tabs, control characters, the BOM, characters beyond the BMP such as emoji) makes the
#: string double-quoted with escapes: one line per field in diffs, and the same bytes whether or
#: not PyYAML was built with libyaml (libyaml escapes non-BMP characters, pure Python does not).
_NEEDS_ESCAPES: Final = re.compile("[^\x20-\x7e\xa0-\ud7ff\ue000-\ufefe\uff00-\ufffd]")


def _represent_str(dumper: _StatusDumper, value: str) -> yaml.ScalarNode:
    style = '"' if _NEEDS_ESCAPES.search(value) else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


def _represent_timestamp(dumper: _StatusDumper, value: _Timestamp) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:timestamp", str(value))


_StatusDumper.add_representer(str, _represent_str)
_StatusDumper.add_representer(_Timestamp, _represent_timestamp)
_StatusDumper.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$"),
    list("-+.0123456789"),
)
_StatusDumper.add_implicit_resolver("tag:yaml.org,2002:int", re.compile(r"^0o[0-7]+$"), ["0"])


def _time(moment: datetime) -> _Timestamp:
    return _Timestamp(format_time(moment))


def status_to_data(status: Status) -> dict[str, Any]:
    """The status document as plain data in reading order (timestamps as RFC 3339 strings).

    This is what ``render_status`` writes and what ``schemas/status.schema.json`` describes.
    None and empty fields are left out; the fields every status has are always present.
    """
    body: dict[str, Any] = {
        "version": status.version,
        "phase": Phase(status.phase).value,
        "grayscale": status.grayscale,
        "observedCommit": status.observed_commit,
        "specHash": status.spec_hash,
    }
    if status.release_id is not None:
        body["releaseId"] = status.release_id
    if status.stage is not None:
        body["stage"] = Stage(status.stage).value
    if status.conditions:
        body["conditions"] = [
            {
                "type": ConditionType(c.type).value,
                "status": ConditionStatus(c.status).value,
                "reason": c.reason,
                "message": c.message,
                "lastTransitionTime": _time(c.last_transition_time),
            }
            for c in sorted(status.conditions, key=lambda c: _CONDITION_ORDER[c.type])
        ]
    if status.compatibility is not None:
        report = status.compatibility
        body["compatibility"] = {
            "reportId": report.report_id,
            # float(): 100 and 100.0 are the same state, so they render the same bytes.
            "passRate": float(report.pass_rate),
            "passed": report.passed,
            "failed": report.failed,
            "configurationDigest": report.configuration_digest,
            "retest": report.retest,
        }
    if status.review is not None:
        body["review"] = {"decision": status.review.decision, "reason": status.review.reason}
    body["testers"] = status.testers
    if status.qr_code is not None:
        body["qrCode"] = status.qr_code
    if status.applied_spec_hash is not None:
        body["appliedSpecHash"] = status.applied_spec_hash
    if status.last_error is not None:
        error = status.last_error
        body["lastError"] = {
            "code": error.code,
            "message": error.message,
            "action": error.action,
            "attempts": error.attempts,
            "time": _time(error.time),
        }
    if status.next_retry is not None:
        body["nextRetry"] = _time(status.next_retry)
    if status.errors:
        body["errors"] = [_validation_data(e) for e in status.errors]
    if status.rollout is not None:
        body["rollout"] = _rollout_data(status.rollout)
    if status.history:
        body["history"] = [
            {"time": _time(e.time), "reason": e.reason, "message": e.message}
            for e in status.history
        ]
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"miniProgram": status.mini_program, "targetApp": status.target_app},
        "status": body,
    }


def render_status(status: Status) -> bytes:
    """The status file: a header comment and deterministic YAML, UTF-8.

    Same state, same bytes: keys in a fixed reading order, timestamps in UTC with whole
    seconds, no line folding, strings quoted wherever a YAML reader could mistake them for
    another type. Raises ValueError for a naive datetime.
    """
    text = yaml.dump(
        status_to_data(status),
        Dumper=_StatusDumper,
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=False,
        width=2**31 - 1,
    )
    return (HEADER + text).encode("utf-8")


# --------------------------------------------------------------------------------------------
# Parsing: bytes -> Status (tolerant)
# --------------------------------------------------------------------------------------------


class _CorruptStatus(ValueError):
    """The document is YAML but not a status this controller wrote."""


class _StatusLoader(_SafeLoader):
    """CSafeLoader that rejects duplicate keys (a bad merge) instead of keeping the last."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        mapping = super().construct_mapping(node, deep=deep)
        if len(mapping) != len(node.value):
            raise _CorruptStatus(f"duplicate key at line {node.start_mark.line + 1}")
        return mapping


def _field(data: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in data:
        raise _CorruptStatus(f"{where}.{key} is missing")
    return data[key]


def _str(data: Mapping[str, Any], key: str, where: str) -> str:
    value = _field(data, key, where)
    if not isinstance(value, str):
        raise _CorruptStatus(f"{where}.{key} is not a string")
    return value


def _optional_str(data: Mapping[str, Any], key: str, where: str) -> str | None:
    return _str(data, key, where) if data.get(key) is not None else None


def _int(data: Mapping[str, Any], key: str, where: str) -> int:
    value = _field(data, key, where)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _CorruptStatus(f"{where}.{key} is not an integer")
    return value


def _float(data: Mapping[str, Any], key: str, where: str) -> float:
    value = _field(data, key, where)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _CorruptStatus(f"{where}.{key} is not a number")
    return float(value)


def _to_datetime(value: Any, where: str) -> datetime:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise _CorruptStatus(f"{where} is not an RFC 3339 timestamp") from None
    if not isinstance(value, datetime):  # a bare date is a date, not a datetime
        raise _CorruptStatus(f"{where} is not a timestamp")
    if value.tzinfo is None:  # YAML: a timestamp without a zone is UTC
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _datetime(data: Mapping[str, Any], key: str, where: str) -> datetime:
    return _to_datetime(_field(data, key, where), f"{where}.{key}")


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise _CorruptStatus(f"{where} is not a mapping")
    return value


def _optional_mapping(data: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any] | None:
    value = data.get(key)
    return None if value is None else _mapping(value, f"{where}.{key}")


def _items(data: Mapping[str, Any], key: str, where: str) -> list[Mapping[str, Any]]:
    value = data.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise _CorruptStatus(f"{where}.{key} is not a list")
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            _mapping(item, f"{where}.{key}[{index}]")  # raises, saying where
    return value


_E = TypeVar("_E", Phase, Stage, ConditionType, ConditionStatus)


def _enum_value(kind: type[_E], value: str, where: str) -> _E:
    try:
        return kind(value)
    except ValueError:
        raise _CorruptStatus(f"{where}: unknown value {value!r}") from None


def _condition(data: Mapping[str, Any], where: str) -> Condition:
    return Condition(
        type=_enum_value(ConditionType, _str(data, "type", where), f"{where}.type"),
        status=_enum_value(ConditionStatus, _str(data, "status", where), f"{where}.status"),
        reason=_str(data, "reason", where),
        message=_str(data, "message", where),
        last_transition_time=_datetime(data, "lastTransitionTime", where),
    )


def _validation(data: Mapping[str, Any], where: str) -> Validation:
    return Validation(
        file=_str(data, "file", where),
        line=_int(data, "line", where),
        column=_int(data, "column", where),
        path=_str(data, "path", where),
        message=_str(data, "message", where),
        code=_optional_str(data, "code", where) or "",
        hint=_optional_str(data, "hint", where),
    )


def _validation_data(error: Validation) -> dict[str, Any]:
    data: dict[str, Any] = {
        "file": error.file,
        "line": error.line,
        "column": error.column,
        "path": error.path,
        "message": error.message,
    }
    if error.code:
        data["code"] = error.code
    if error.hint:
        data["hint"] = error.hint
    return data


def _rollout_data(progress: RolloutProgress) -> dict[str, Any]:
    data: dict[str, Any] = {
        "step": progress.step,
        "stepStartedAt": _time(progress.step_started_at),
        "exposure": progress.exposure,
    }
    if progress.halt is not None:
        data["halt"] = {"reason": progress.halt, "message": progress.message}
    if progress.next_action:
        data["next"] = {"action": progress.next_action}
        if progress.next_time is not None:
            data["next"]["earliest"] = _time(progress.next_time)
    if progress.promoted is not None:
        data["promoted"] = progress.promoted
    if progress.retried is not None:
        data["retried"] = progress.retried
    if progress.runs:
        data["analysisRuns"] = [
            {
                "metric": run.metric,
                "time": _time(run.time),
                "value": None if run.value is None else float(run.value),
                "sampleUsers": run.sample,
                "condition": run.condition,
                "result": run.result.value,
                "message": run.message,
            }
            for run in progress.runs
        ]
    return data


def _rollout(data: Mapping[str, Any], where: str) -> RolloutProgress:
    halt = _optional_mapping(data, "halt", where)
    upcoming = _optional_mapping(data, "next", where)
    runs = []
    for index, item in enumerate(_items(data, "analysisRuns", where)):
        at = f"{where}.analysisRuns[{index}]"
        value = item.get("value")
        sample = item.get("sampleUsers")
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise _CorruptStatus(f"{at}.value: not a number")
        if sample is not None and (isinstance(sample, bool) or not isinstance(sample, int)):
            raise _CorruptStatus(f"{at}.sampleUsers: not an integer")
        try:
            verdict = Verdict(_str(item, "result", at))
        except ValueError:
            raise _CorruptStatus(f"{at}.result: unknown value") from None
        runs.append(
            AnalysisRun(
                metric=_str(item, "metric", at),
                time=_datetime(item, "time", at),
                value=None if value is None else float(value),
                sample=sample,
                condition=_str(item, "condition", at),
                result=verdict,
                message=_str(item, "message", at),
            )
        )
    earliest = None if upcoming is None else upcoming.get("earliest")
    return RolloutProgress(
        step=_int(data, "step", where),
        step_started_at=_datetime(data, "stepStartedAt", where),
        exposure=_int(data, "exposure", where),
        runs=tuple(runs),
        promoted=_optional_str(data, "promoted", where),
        retried=_optional_str(data, "retried", where),
        halt=None if halt is None else _str(halt, "reason", f"{where}.halt"),
        message="" if halt is None else _str(halt, "message", f"{where}.halt"),
        next_action="" if upcoming is None else _str(upcoming, "action", f"{where}.next"),
        next_time=None if earliest is None else _to_datetime(earliest, f"{where}.next.earliest"),
    )


def _event(data: Mapping[str, Any], status: str, index: int) -> Event:
    """History entry ``index``; its location is only spelled out for an error (a status has
    up to 20 events, and a cold start reads every remembered status)."""
    time, reason, message = data.get("time"), data.get("reason"), data.get("message")
    if isinstance(time, str | datetime) and type(reason) is str and type(message) is str:
        return Event(_to_datetime(time, f"{status}.history[{index}].time"), reason, message)
    where = f"{status}.history[{index}]"
    return Event(
        time=_datetime(data, "time", where),
        reason=_str(data, "reason", where),
        message=_str(data, "message", where),
    )


def _status_from_data(document: Any) -> Status:
    root = _mapping(document, "document")
    if root.get("apiVersion") != API_VERSION or root.get("kind") != KIND:
        raise _CorruptStatus(
            f"not a {API_VERSION} {KIND} (apiVersion={root.get('apiVersion')!r}, "
            f"kind={root.get('kind')!r})"
        )
    metadata = _mapping(_field(root, "metadata", "document"), "metadata")
    body = _mapping(_field(root, "status", "document"), "status")
    where = "status"

    conditions = tuple(
        _condition(item, f"{where}.conditions[{index}]")
        for index, item in enumerate(_items(body, "conditions", where))
    )
    if len({c.type for c in conditions}) != len(conditions):
        raise _CorruptStatus(f"{where}.conditions: a condition type appears twice")

    compatibility = None
    if (report := _optional_mapping(body, "compatibility", where)) is not None:
        at = f"{where}.compatibility"
        compatibility = CompatibilitySummary(
            report_id=_str(report, "reportId", at),
            pass_rate=_float(report, "passRate", at),
            passed=_int(report, "passed", at),
            failed=_int(report, "failed", at),
            configuration_digest=_str(report, "configurationDigest", at),
            retest=_int(report, "retest", at),
        )

    review = None
    if (decision := _optional_mapping(body, "review", where)) is not None:
        at = f"{where}.review"
        review = ReviewSummary(
            decision=_str(decision, "decision", at), reason=_str(decision, "reason", at)
        )

    last_error = None
    if (error := _optional_mapping(body, "lastError", where)) is not None:
        at = f"{where}.lastError"
        last_error = ErrorRecord(
            code=_str(error, "code", at),
            message=_str(error, "message", at),
            action=_str(error, "action", at),
            attempts=_int(error, "attempts", at),
            time=_datetime(error, "time", at),
        )

    errors = tuple(
        _validation(item, f"{where}.errors[{index}]")
        for index, item in enumerate(_items(body, "errors", where))
    )
    history = tuple(
        _event(item, where, index) for index, item in enumerate(_items(body, "history", where))
    )

    stage = _optional_str(body, "stage", where)
    next_retry = body.get("nextRetry")
    rollout = _optional_mapping(body, "rollout", where)
    return Status(
        mini_program=_str(metadata, "miniProgram", "metadata"),
        target_app=_str(metadata, "targetApp", "metadata"),
        version=_str(body, "version", where),
        observed_commit=_str(body, "observedCommit", where),
        spec_hash=_str(body, "specHash", where),
        phase=_enum_value(Phase, _str(body, "phase", where), f"{where}.phase"),
        release_id=_optional_str(body, "releaseId", where),
        stage=None if stage is None else _enum_value(Stage, stage, f"{where}.stage"),
        grayscale=_int(body, "grayscale", where) if "grayscale" in body else 0,
        conditions=conditions,
        compatibility=compatibility,
        review=review,
        testers=_int(body, "testers", where) if "testers" in body else 0,
        qr_code=_optional_str(body, "qrCode", where),
        applied_spec_hash=_optional_str(body, "appliedSpecHash", where),
        last_error=last_error,
        next_retry=None if next_retry is None else _to_datetime(next_retry, f"{where}.nextRetry"),
        errors=errors,
        history=history,
        rollout=None if rollout is None else _rollout(rollout, f"{where}.rollout"),
    )


def parse_status(data: bytes, *, file: str) -> Status | None:
    """Read a status file; None (with a warning naming ``file``) when it is not one.

    Tolerant by design: an empty, truncated, hand-edited or foreign file means "no usable
    status", and the controller rebuilds it from the platform, the truth of what happened.
    A file written by ``render_status`` reads back exactly. Unknown keys are ignored, so an
    older controller can read a newer controller's file.
    """
    try:
        document = yaml.load(data, Loader=_StatusLoader)  # a safe loader: plain data only
        return _status_from_data(document)
    # ValueError covers _CorruptStatus, bad UTF-8 and impossible dates like 2026-13-45.
    except (yaml.YAMLError, ValueError, TypeError, OverflowError, RecursionError) as error:
        log.warning("ignoring status file %s: %s", file, " ".join(str(error).split()))
        return None


def status_to_json(status: Status) -> bytes:
    """The status document (:func:`status_to_data`) as compact JSON, UTF-8."""
    return json.dumps(status_to_data(status), separators=(",", ":"), ensure_ascii=False).encode()


def status_from_json(data: bytes) -> Status | None:
    """A status from :func:`status_to_json`'s bytes; None when they are not one (corrupt,
    foreign or truncated: the caller falls back to the YAML). Goes through the same checks
    as :func:`parse_status`, so ``status_from_json(status_to_json(s)) == s``."""
    try:
        return _status_from_data(json.loads(data))
    except (ValueError, TypeError, OverflowError, RecursionError) as error:
        log.debug("ignoring a cached status: %s", error)
        return None


def status_entries(files: RepoFiles) -> Iterator[tuple[str, Entry]]:
    """(release key, entry) of every ``status/<mini-program>/<target-app>.yaml`` entry; a
    path at another depth, or oddly named, is not one."""
    for folder in files.children(STATUS_DIR):
        if folder.kind is not EntryKind.DIRECTORY or check_path(folder.path) is not None:
            continue
        for entry in files.children(folder.path):
            if not entry.name.endswith(".yaml") or check_path(entry.path) is not None:
                continue
            yield f"{folder.name}/{entry.name[: -len('.yaml')]}", entry


def read_status_file(files: RepoFiles, entry: Entry) -> bytes | None:
    """The bytes of one status file, or None (logged) when it is a link, a submodule, over
    the size bound or otherwise unreadable: the controller writes a regular file there."""
    try:
        return files.read(entry.path, STATUS_SIZE_LIMIT)
    except Unreadable as error:
        log.warning("ignoring status file %s: %s", entry.path, error.message)
        return None


def status_files(files: RepoFiles) -> Iterator[tuple[str, str, bytes]]:
    """(release key, path, bytes) of every readable ``status/<mini-program>/<target-app>.yaml``
    (see :func:`status_entries` and :func:`read_status_file` for what is skipped)."""
    for key, entry in status_entries(files):
        data = read_status_file(files, entry)
        if data is not None:
            yield key, entry.path, data


def read_statuses(root: Path | RepoFiles) -> list[Status]:
    """Every readable status file of a repository (``relctl status``), sorted by key.

    Files that cannot be read or parsed, and files whose metadata does not match their path,
    are skipped with a warning.
    """
    files = WorkTree(root) if isinstance(root, Path) else root
    statuses: list[Status] = []
    for key, path, data in status_files(files):
        status = parse_status(data, file=path)
        if status is None:
            continue
        if status.key != key:
            log.warning("ignoring status file %s: it describes %s, not %s", path, status.key, key)
            continue
        statuses.append(status)
    return sorted(statuses, key=lambda s: (s.mini_program, s.target_app))


__all__ = [
    "HEADER",
    "HISTORY_LIMIT",
    "KIND",
    "append_event",
    "format_time",
    "parse_status",
    "read_statuses",
    "remove_condition",
    "render_status",
    "set_condition",
    "status_from_json",
    "status_to_data",
    "status_to_json",
    "utc_seconds",
]
