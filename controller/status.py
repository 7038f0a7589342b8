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
* ``read_statuses``: every status file of a checkout, behind ``relctl status`` (whose rows
  and table are ``controller.output.table``'s).

Callers: ``reconcile`` (builds the new status of each release, renders it, writes the files
whose bytes changed), ``gitops`` (reads the statuses at a commit), the CLI (``relctl status``).
Schema of the file: ``schemas/status.schema.json``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, TypeVar

import yaml

from controller.model import (
    API_VERSION,
    CompatibilitySummary,
    Condition,
    ConditionStatus,
    ConditionType,
    ErrorRecord,
    Event,
    Phase,
    ReviewSummary,
    Status,
    Validation,
)
from controller.platform.protocol import Stage

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
    same bytes. Conditions are kept in the order Ready, Reconciling, Stalled.
    """
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
    if history and (history[-1].reason, history[-1].message) == (event.reason, event.message):
        return history[-limit:]
    normalized = Event(time=utc_seconds(event.time), reason=event.reason, message=event.message)
    return (*history, normalized)[-limit:]


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
    return [_mapping(item, f"{where}.{key}[{index}]") for index, item in enumerate(value)]


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


def _event(data: Mapping[str, Any], where: str) -> Event:
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
        _event(item, f"{where}.history[{index}]")
        for index, item in enumerate(_items(body, "history", where))
    )

    stage = _optional_str(body, "stage", where)
    next_retry = body.get("nextRetry")
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


def read_statuses(root: Path) -> list[Status]:
    """Every readable ``status/<mini-program>/<target-app>.yaml`` under a repo root, by key.

    Files that cannot be read or parsed, and files whose metadata does not match their path,
    are skipped with a warning.
    """
    statuses: list[Status] = []
    for path in sorted((root / STATUS_DIR).glob("*/*.yaml")):
        relative = path.relative_to(root).as_posix()
        try:
            data = path.read_bytes()
        except OSError as error:
            log.warning("ignoring status file %s: %s", relative, error)
            continue
        status = parse_status(data, file=relative)
        if status is None:
            continue
        if (status.mini_program, status.target_app) != (path.parent.name, path.stem):
            log.warning(
                "ignoring status file %s: it describes %s, not %s/%s",
                relative,
                status.key,
                path.parent.name,
                path.stem,
            )
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
    "status_to_data",
    "utc_seconds",
]
