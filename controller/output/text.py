"""Text for people: one line per problem, release or pass, and the simulator's pages.

Located problems (``file:line:column: severity: field: message [code]``) and the summary
lines of ``relctl validate`` and ``relctl check``; the lines ``relctl reconcile`` and
``relctl run`` print per pass and their progress on stderr; one line per release of
``relctl plan`` (with and without ``--base``); short ages (``3m``) and times; and the pages
of ``relctl platform`` (a release, the clock, the faults). Aligned tables are in
:mod:`controller.output.table`. Called by :mod:`controller.output`, ``controller.cli``
(problems on stderr, progress) and ``controller.cli_platform``.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Final

from controller.model import (
    ConditionType,
    Release,
    RolloutStep,
    Status,
    StepKind,
    TargetApp,
)
from controller.output.jsondata import plan_json
from controller.platform.protocol import ReleaseSnapshot

if TYPE_CHECKING:
    from controller.check import CheckResult
    from controller.manifests import LoadResult, Problem
    from controller.platform.sim.clock import ClockSetting  # the simulator's pages only
    from controller.platform.sim.model import FaultSettings
    from controller.preview import Preview
    from controller.reconcile import PassResult, ReleaseResult

__all__ = [
    "PROGRESS_EVERY",
    "check_summary",
    "clock_text",
    "faults_text",
    "human_duration",
    "iso_time",
    "pass_lines",
    "plan_text",
    "preview_text",
    "problem_line",
    "progress_line",
    "release_text",
    "rollout_text",
    "schedule_text",
    "validate_summary",
]

# --------------------------------------------------------------------------------------------
# Located problems: `relctl validate`, `relctl check`, `relctl codeowners`
# --------------------------------------------------------------------------------------------


def problem_line(problem: Problem) -> str:
    """``file:line:column: severity: field: message [code]``."""
    field = f"{problem.path}: " if problem.path else ""
    return (
        f"{problem.file}:{problem.line}:{problem.column}: {problem.severity}: "
        f"{field}{problem.message} [{problem.code}]"
    )


def validate_summary(result: LoadResult) -> str:
    """``8 files valid``, or ``2 errors, 1 warning in 8 files``."""
    errors, warnings = len(result.errors), len(result.warnings)
    files = f"{len(result.files)} file{'s' if len(result.files) != 1 else ''}"
    if not errors and not warnings:
        return f"{files} valid"
    counts = [f"{errors} error{'s' if errors != 1 else ''}"]
    if warnings:
        counts.append(f"{warnings} warning{'s' if warnings != 1 else ''}")
    return f"{', '.join(counts)} in {files}"


def check_summary(result: CheckResult) -> str:
    """``5 files and the change 1a2b3c4..5d6e7f8: allowed``, or the counts of problems."""
    errors, warnings = len(result.errors), len(result.warnings)
    change = f"{result.files} file{'s' if result.files != 1 else ''} and the change "
    change += f"{result.base[:7]}..{result.head[:7]}"
    counts = [f"{errors} error{'s' if errors != 1 else ''}"]
    if warnings:
        counts.append(f"{warnings} warning{'s' if warnings != 1 else ''}")
    return f"{', '.join(counts)} in {change}" if result.problems else f"{change}: allowed"


# --------------------------------------------------------------------------------------------
# Passes: `relctl reconcile`, `relctl run`
# --------------------------------------------------------------------------------------------

#: A long pass reports progress on stderr every this many releases.
PROGRESS_EVERY: Final = 500


def progress_line(done: int, total: int) -> str | None:
    """The progress line after ``done`` of the ``total`` releases of a pass; None between
    them (and for the last one: the pass's own lines follow)."""
    if done % PROGRESS_EVERY == 0 and done < total:
        return f"  ... {done}/{total} releases reconciled"
    return None


def pass_lines(result: PassResult, number: int | None = None) -> list[str]:
    """What a person wants to see of one pass: transitions, actions, problems, the commit."""
    lines: list[str] = []
    head = f"pass {number} " if number is not None else ""
    for item in result.releases:
        acted = item.result is not None
        if not (item.changed or acted):
            continue
        what = item.transition or str(item.status.phase)
        step = ""
        if item.result is not None:
            step = f": {item.result.step.describe()}"
            if item.result.error is not None:
                step += f" failed ({item.result.error.code}: {item.result.error})"
        reason = ""
        if not step:
            # Invalid and Forbidden have no plan: their condition says why.
            ready = item.status.condition(ConditionType.READY)
            reason = item.plan.message if item.plan else ready.message if ready else ""
        tail = f" ({reason})" if reason else ""
        lines.append(f"{head}{item.key} {item.status.version} {what}{step}{tail}")
    for key in result.removed:
        lines.append(f"{head}{key}: manifest removed, status deleted")
    if result.pushed is not None:
        lines.append(
            f"{head}pushed {result.pushed.commit[:7]} ({len(result.pushed.files)} status "
            f"file(s), {result.pushed.attempts} attempt(s)) on top of {result.commit[:7]}"
        )
    return lines


# --------------------------------------------------------------------------------------------
# `relctl plan`, with and without --base
# --------------------------------------------------------------------------------------------


def plan_text(r: ReleaseResult) -> str:
    """``shop/gcash 1.4.0 [Testing] -> apply: Applying: ...``: one release's next step."""
    data = plan_json(r)
    action = f" -> {data['action']}" if data["action"] else ""
    return (
        f"{r.key} {data['version']} [{data['phase']}]{action}: {data['reason']}: {data['message']}"
    )


def schedule_text(release: Release, app: TargetApp | None = None) -> list[str]:
    """``relctl plan``: a rollout's schedule as snapped for its app, with the earliest time
    of each step from the first exposure (analyses at their interval x count; a pause
    without duration waits for a person, so later times are counted from the promotion)."""
    rollout = release.spec.rollout
    if rollout is None:
        return []
    offered = (
        ""
        if app is None or app.grayscale_values is None
        else (f" ({app.name} offers {', '.join(str(v) for v in (*app.grayscale_values, 100))})")
    )
    lines = [f"  schedule of {release.key} {release.spec.version}{offered}:"]
    elapsed = 0.0
    after_person = False
    for index, step in enumerate(rollout.steps, start=1):
        mark = "after promote " if after_person else ""
        lines.append(f"    {index}. +{mark}{human_duration(elapsed)}  {step.describe()}")
        elapsed += _earliest_seconds(step)
        if step.kind is StepKind.PAUSE and step.duration is None:
            after_person, elapsed = True, 0.0
    return lines


def _earliest_seconds(step: RolloutStep) -> float:
    if step.kind is StepKind.PAUSE and step.duration is not None:
        return step.duration.total_seconds()
    if step.kind is StepKind.ANALYSIS and step.template is not None:
        return max(
            (m.interval.total_seconds() * (m.count - 1) for m in step.template.metrics),
            default=0.0,
        )
    return 0.0


def rollout_text(release: Release, status: Status | None) -> str:
    """``relctl status MP APP``: the steps with the current one marked, the halt, the next
    action and every analysis run of the current (or last) analysis step."""
    rollout = release.spec.rollout
    if rollout is None:
        spec = release.spec
        return f"{release.key} {spec.version}: no rollout (grayscale {spec.grayscale}%)\n"
    progress = (
        status.rollout if status is not None and status.version == release.spec.version else None
    )
    head = f"{release.key} {release.spec.version}"
    if status is not None:
        head += f" [{status.phase}] exposure {status.grayscale}%"
    lines = [head, f"rollout (onFailure: {rollout.on_failure}):"]
    current = progress.step if progress is not None else 0
    for index, step in enumerate(rollout.steps):
        if index < current:
            mark, note = "   ", "done"
        elif index == current and progress is not None:
            mark, note = ">  ", progress.halt or "current"
        else:
            mark, note = "   ", ""
        lines.append(f"  {mark}{index + 1}. {step.describe():<32} {note}".rstrip())
    if progress is not None:
        if progress.step >= len(rollout.steps):
            lines.append("  schedule complete")
        if progress.message:
            lines.append(f"  halted: {progress.message}")
        if progress.next_action:
            when = f" at {iso_time(progress.next_time)}" if progress.next_time else ""
            lines.append(f"  next: {progress.next_action}{when}")
        for run in progress.runs:
            value = "no data" if run.value is None else f"{run.value:g}"
            users = "" if run.sample is None else f", {run.sample:,} users"
            lines.append(
                f"  {iso_time(run.time)} {run.metric} = {value}{users}: {run.result} "
                f"({run.condition})"
            )
    return "\n".join(lines) + "\n"


def preview_text(preview: Preview) -> str:
    """One line per release the change touches, ``REFUSED`` first where it will be."""
    lines = []
    for c in preview.changes:
        steps = ", then ".join(c.steps) or "no action"
        mark = "REFUSED " if c.refused else ""
        lines.append(
            f"{mark}{c.key} {c.version_after or c.version_before}: "
            f"{c.phase_before} -> {c.phase_after}: {steps}; {c.then}"
        )
    return "\n".join(lines) or "no release manifest changed"


# --------------------------------------------------------------------------------------------
# Times
# --------------------------------------------------------------------------------------------


def human_duration(seconds: float) -> str:
    """A short age like ``kubectl get`` prints: ``45s``, ``3m``, ``2h``, ``4d``, ``2y``.

    Negative ages (clock skew between machines) print as ``0s``.
    """
    whole = max(0, int(seconds))
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m"
    if whole < 86400:
        return f"{whole // 3600}h"
    if whole < 365 * 86400:
        return f"{whole // 86400}d"
    return f"{whole // (365 * 86400)}y"


def iso_time(value: datetime | None) -> str:
    """``2026-11-25T10:02:00Z`` as the platform keeps it, or ``-`` for no time."""
    return "-" if value is None else value.isoformat().replace("+00:00", "Z")


# --------------------------------------------------------------------------------------------
# The platform simulator: `relctl platform show|clock|faults`
# --------------------------------------------------------------------------------------------


def release_text(r: ReleaseSnapshot) -> str:
    """Everything observable about one release (the platform's release progress page)."""
    lines = [
        f"{r.release_id}: {r.mini_program} {r.version} on {r.target_app} ({r.environment})",
        f"  stage:       {r.stage}" + (f"  ({r.message})" if r.message else ""),
        f"  grayscale:   {r.grayscale}%",
        f"  created:     {iso_time(r.created_at)}",
        f"  updated:     {iso_time(r.updated_at)}",
    ]
    if "next_change_at" in r.extra:
        lines.append(f"  next change: {str(r.extra['next_change_at']).replace('+00:00', 'Z')}")
    lines.append("  stages:")
    for stage, at in sorted(r.stage_times.items(), key=lambda item: item[1]):
        lines.append(f"    {iso_time(at)}  {stage}")
    if r.basic_info:
        lines.append("  basic info:")
        lines += [f"    {k}: {v}" for k, v in sorted(r.basic_info.items())]
    lines.append(
        "  configuration: " + json.dumps(dict(r.configuration), sort_keys=True, default=str)
    )
    report = r.compatibility
    if report is not None:
        summary = f"{report.status}" + (
            f", pass rate {report.pass_rate:g}%" if report.finished_at else ""
        )
        lines.append(
            f"  compatibility: {report.report_id} {summary} "
            f"(configuration {report.configuration_digest})"
        )
        failed = [c for c in report.cases if not c.passed]
        lines += [f"    failed: {c.os} / {c.network} / {c.device}" for c in failed]
    if r.review is not None:
        pilot = "pilot required" if r.review.pilot_required else "no pilot"
        lines.append(
            f"  review: {r.review.decision} at {iso_time(r.review.decided_at)} ({pilot}): "
            f"{r.review.reason}"
        )
    if r.testers:
        lines.append(f"  testers ({len(r.testers)}): {', '.join(r.testers)}")
    if r.qr_code is not None:
        lines.append(f"  QR code: {r.qr_code.url}")
    return "\n".join(lines)


def clock_text(setting: ClockSetting) -> str:
    """``clock: manual, now 2026-11-25T10:02:00Z``, or real time with its offset."""
    from controller.platform.sim.clock import ClockMode, to_datetime

    now = iso_time(to_datetime(setting.now()))
    if setting.mode is ClockMode.MANUAL:
        return f"clock: manual, now {now}"
    offset = f" (real time + {setting.offset:g}s)" if setting.offset else ""
    return f"clock: real, now {now}{offset}"


def faults_text(faults: FaultSettings) -> str:
    """``faults: off``, or every rate of the fault injection."""
    if not faults.active and not faults.latency:
        return "faults: off"
    return (
        f"faults: error rate {faults.error_rate:g}, unknown rate {faults.unknown_rate:g}, "
        f"rate-limited rate {faults.rate_limited_rate:g} (retry after {faults.retry_after:g}s), "
        f"latency {faults.latency:g}s, seed {faults.seed}"
    )
