"""Plain-data (JSON) encoding of the protocol's values, and back.

The simulator stores the first result of every idempotent call and replays it later, so a
result must survive a round trip through JSON unchanged; the CLI prints the same encoding for
``--format json``. Datetimes are ISO 8601 strings in UTC.

Called by ``controller.platform.sim.simulator``, ``controller.cli_platform`` and both sides of
the HTTP contract (``controller.platform.http``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from controller.platform.protocol import (
    CompatibilityCase,
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
)


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _parse_time(value: Any) -> datetime:
    return datetime.fromisoformat(str(value))


def report_to_dict(report: CompatibilityReport) -> dict[str, Any]:
    return {
        "report_id": report.report_id,
        "status": str(report.status),
        "pass_rate": report.pass_rate,
        "cases": [
            {"os": c.os, "network": c.network, "device": c.device, "passed": c.passed}
            for c in report.cases
        ],
        "configuration_digest": report.configuration_digest,
        "started_at": _time(report.started_at),
        "finished_at": _time(report.finished_at),
    }


def report_from_dict(data: Mapping[str, Any]) -> CompatibilityReport:
    return CompatibilityReport(
        report_id=data["report_id"],
        status=CompatibilityStatus(data["status"]),
        pass_rate=float(data["pass_rate"]),
        cases=tuple(
            CompatibilityCase(c["os"], c["network"], c["device"], bool(c["passed"]))
            for c in data["cases"]
        ),
        configuration_digest=data["configuration_digest"],
        started_at=_parse_time(data["started_at"]),
        finished_at=None if data["finished_at"] is None else _parse_time(data["finished_at"]),
    )


def review_to_dict(review: Review) -> dict[str, Any]:
    return {
        "decision": str(review.decision),
        "reason": review.reason,
        "pilot_required": review.pilot_required,
        "decided_at": _time(review.decided_at),
    }


def review_from_dict(data: Mapping[str, Any]) -> Review:
    return Review(
        decision=ReviewDecision(data["decision"]),
        reason=data["reason"],
        pilot_required=bool(data["pilot_required"]),
        decided_at=_parse_time(data["decided_at"]),
    )


def qr_to_dict(qr: QrCode) -> dict[str, Any]:
    return {"url": qr.url, "svg": qr.svg}


def qr_from_dict(data: Mapping[str, Any]) -> QrCode:
    return QrCode(url=data["url"], svg=data["svg"])


def tester_change_to_dict(change: TesterChange) -> dict[str, Any]:
    return {"added": list(change.added), "removed": list(change.removed)}


def tester_change_from_dict(data: Mapping[str, Any]) -> TesterChange:
    return TesterChange(added=tuple(data["added"]), removed=tuple(data["removed"]))


def feedback_to_dict(feedback: Feedback) -> dict[str, Any]:
    return {
        "crash_rate": feedback.crash_rate,
        "error_rate": feedback.error_rate,
        "users_on_version": feedback.users_on_version,
    }


def version_to_dict(info: VersionInfo) -> dict[str, Any]:
    return {
        "mini_program": info.mini_program,
        "version": info.version,
        "uploaded_at": _time(info.uploaded_at),
    }


def snapshot_to_dict(snapshot: ReleaseSnapshot) -> dict[str, Any]:
    return {
        "release_id": snapshot.release_id,
        "mini_program": snapshot.mini_program,
        "version": snapshot.version,
        "target_app": snapshot.target_app,
        "environment": snapshot.environment,
        "stage": str(snapshot.stage),
        "basic_info": dict(snapshot.basic_info),
        "configuration": dict(snapshot.configuration),
        "compatibility": (
            None if snapshot.compatibility is None else report_to_dict(snapshot.compatibility)
        ),
        "review": None if snapshot.review is None else review_to_dict(snapshot.review),
        "testers": list(snapshot.testers),
        "grayscale": snapshot.grayscale,
        "stage_times": {str(k): _time(v) for k, v in snapshot.stage_times.items()},
        "qr_code": None if snapshot.qr_code is None else qr_to_dict(snapshot.qr_code),
        "created_at": _time(snapshot.created_at),
        "updated_at": _time(snapshot.updated_at),
        "message": snapshot.message,
        "extra": dict(snapshot.extra),
    }


def snapshot_from_dict(data: Mapping[str, Any]) -> ReleaseSnapshot:
    return ReleaseSnapshot(
        release_id=data["release_id"],
        mini_program=data["mini_program"],
        version=data["version"],
        target_app=data["target_app"],
        environment=data["environment"],
        stage=Stage(data["stage"]),
        basic_info=dict(data["basic_info"]),
        configuration=dict(data["configuration"]),
        compatibility=(
            None if data["compatibility"] is None else report_from_dict(data["compatibility"])
        ),
        review=None if data["review"] is None else review_from_dict(data["review"]),
        testers=tuple(data["testers"]),
        grayscale=int(data["grayscale"]),
        stage_times={Stage(k): _parse_time(v) for k, v in data["stage_times"].items()},
        qr_code=None if data["qr_code"] is None else qr_from_dict(data["qr_code"]),
        created_at=_parse_time(data["created_at"]),
        updated_at=_parse_time(data["updated_at"]),
        message=data.get("message", ""),
        extra=dict(data.get("extra", {})),
    )


def plain(value: Any) -> Any:
    """``value`` as plain JSON data (tuples to lists, any mapping to a dict)."""
    return json.loads(json.dumps(value, sort_keys=True, default=_plain_default))


def _plain_default(item: Any) -> Any:
    if isinstance(item, Mapping):
        return dict(item)
    if isinstance(item, tuple):
        return list(item)
    return str(item)


def feedback_from_dict(data: Mapping[str, Any]) -> Feedback:
    return Feedback(
        crash_rate=float(data["crash_rate"]),
        error_rate=float(data["error_rate"]),
        users_on_version=int(data["users_on_version"]),
    )


def version_from_dict(data: Mapping[str, Any]) -> VersionInfo:
    return VersionInfo(data["mini_program"], data["version"], _parse_time(data["uploaded_at"]))
