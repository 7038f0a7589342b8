"""The json documents of ``--format json``: plain data with stable keys, for tools.

Each function turns one library result into the dicts and lists ``json.dumps`` writes; the
keys are documented in ``docs/output.md`` (``relctl validate``'s list in
``docs/validate.md``). The rows of ``relctl status`` are
:class:`controller.output.table.StatusRow`, the json and the table of the same data.
Called by :mod:`controller.output`, and by the text and markdown renderers that show the
same fields.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from controller.model import ConditionStatus, ConditionType, Status

if TYPE_CHECKING:
    from controller.model import Release
    from controller.preview import Preview
    from controller.reconcile import PassResult, ReleaseResult

__all__ = [
    "pass_json",
    "plan_json",
    "preview_json",
    "rollout_json",
    "run_pass_json",
    "to_json",
]


def to_json(data: Any) -> str:
    """The json the controller's commands print: indented, keys in the order built."""
    return json.dumps(data, indent=2)


def pass_json(result: PassResult) -> dict[str, Any]:
    """``relctl reconcile --format json``: the pass and every release in it."""
    return {
        "commit": result.commit,
        "pushed": result.pushed.commit if result.pushed else None,
        "releases": [
            {
                "release": item.key,
                "version": item.status.version,
                "phase": str(item.status.phase),
                "grayscale": item.status.grayscale,
                "transition": item.transition,
                "reason": _condition(item.status)[0],
                "message": _condition(item.status)[1],
                "healthy": item.healthy,
                "action": item.result.step.describe() if item.result else None,
                "error": item.result.error.code if item.result and item.result.error else None,
                "changed": item.changed,
            }
            for item in result.releases
        ],
        "problems": [p.to_dict() for p in result.problems],
        "healthy": result.healthy,
        "edited": list(result.edited),
        "cutShort": result.cut_short,
    }


def _condition(status: Status) -> tuple[str, str | None]:
    """The condition a person reads first: Stalled, else Ready (its reason and message)."""
    stalled = status.condition(ConditionType.STALLED)
    if stalled is not None and stalled.status is ConditionStatus.TRUE:
        return stalled.reason, stalled.message
    ready = status.condition(ConditionType.READY)
    if ready is not None:
        return ready.reason, ready.message
    return str(status.phase), None


def run_pass_json(result: PassResult, number: int) -> dict[str, Any]:
    """One pass of ``relctl run --format json``: reconcile's document, numbered, with only
    the releases that changed or were acted on (those the text output names), and the keys
    of the releases whose manifest was removed."""
    data = pass_json(result)
    moved = [
        entry
        for entry, item in zip(data["releases"], result.releases, strict=True)
        if item.changed or item.result is not None
    ]
    return {"pass": number, **data, "releases": moved, "removed": list(result.removed)}


def plan_json(r: ReleaseResult) -> dict[str, Any]:
    """One release of ``relctl plan --format json``."""
    step = r.plan.step if r.plan else None
    return {
        "release": r.key,
        "version": r.status.version,
        "phase": str(r.status.phase),
        "outcome": str(r.plan.outcome) if r.plan else "Stalled",
        "reason": str(r.plan.reason) if r.plan else "Invalid",
        "message": r.plan.message if r.plan else _invalid_message(r),
        "action": step.describe() if step else None,
    }


def _invalid_message(r: ReleaseResult) -> str:
    return "; ".join(f"{e.file}:{e.line}:{e.column}: {e.message}" for e in r.status.errors)


def preview_json(preview: Preview) -> dict[str, object]:
    """``relctl plan --base --format json``: every release the change touches."""
    return {
        "base": preview.base,
        "head": preview.head,
        "releases": [
            {
                "release": c.key,
                "kind": c.kind,
                "versionBefore": c.version_before,
                "versionAfter": c.version_after,
                "phaseBefore": c.phase_before,
                "phaseAfter": c.phase_after,
                "steps": list(c.steps),
                "then": c.then,
                "refused": c.refused,
                "testersAdded": list(c.testers_added),
                "testersRemoved": list(c.testers_removed),
                "problems": [p.to_dict() for p in c.problems],
            }
            for c in preview.changes
        ],
    }


def rollout_json(release: Release, status: Status | None) -> dict[str, Any]:
    """``relctl status MP APP --format json``: the same facts as the text view, as data.

    ``rollout`` is null for a release without a rollout; ``steps[].state`` is ``done``,
    ``current`` or ``pending``, and ``progress`` is null until the controller has started the
    rollout of this version.
    """
    rollout = release.spec.rollout
    mine = status is not None and status.version == release.spec.version
    progress = status.rollout if status is not None and mine else None
    document: dict[str, Any] = {
        "release": release.key,
        "version": release.spec.version,
        "grayscale": release.spec.grayscale,
        "phase": str(status.phase) if status is not None else None,
        "exposure": status.grayscale if status is not None else None,
        "rollout": None,
    }
    if rollout is None:
        return document
    current = progress.step if progress is not None else 0
    steps = []
    for index, step in enumerate(rollout.steps):
        if index < current:
            state = "done"
        elif index == current and progress is not None:
            state = "current"
        else:
            state = "pending"
        steps.append({"index": index + 1, "step": step.describe(), "state": state})
    document["rollout"] = {
        "onFailure": str(rollout.on_failure),
        "steps": steps,
        "progress": None
        if progress is None
        else {
            "step": progress.step + 1,
            "complete": progress.step >= len(rollout.steps),
            "stepStartedAt": progress.step_started_at.isoformat(),
            "halt": progress.halt,
            "message": progress.message or None,
            "nextAction": progress.next_action or None,
            "nextTime": progress.next_time.isoformat() if progress.next_time else None,
            "runs": [
                {
                    "time": run.time.isoformat(),
                    "metric": run.metric,
                    "value": run.value,
                    "sample": run.sample,
                    "condition": run.condition,
                    "result": str(run.result),
                    "message": run.message,
                }
                for run in progress.runs
            ],
        },
    }
    return document
