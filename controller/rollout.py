"""The progressive rollout state machine (``spec.rollout``): pure, one step of it per call.

``advance(rollout, progress, exposure, measurements, stop_the_line, now)`` reads the schedule,
the controller's memory of it (``RolloutProgress`` from the status it last wrote), the exposure
the platform shows, the measurements taken in this pass and the clock, and answers with a
``RolloutDecision``: the new progress, the exposure to move to (at most the current grayscale
step's), or why the rollout holds. No I/O, no clock, no globals: ``plan.decide`` calls it, and
``reconcile`` asks :func:`measurements_due` which metrics to measure before deciding.

The step index only moves after a completion check (Argo Rollouts): a grayscale step is done
when the platform *shows* the exposure, so a crash between raising and recording repeats
nothing (the platform's idempotency key) and skips nothing (the next pass sees the exposure
and moves on). Soak time runs from the pass that saw the step's exposure.

Conditions (``successCondition``/``failureCondition``) are a small safe language parsed with
``ast`` and evaluated by a walker: numbers, the name ``result``, comparisons, ``and``/``or``/
``not``, unary minus. No ``eval``. Missing data, NaN or too few users is Inconclusive, never
a success.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from controller.model import (
    AnalysisRun,
    AnalysisTemplate,
    FreezeWindow,
    Measurement,
    Metric,
    OnFailure,
    Outcome,
    Reason,
    Rollout,
    RolloutProgress,
    RolloutStep,
    StepKind,
    TargetApp,
    Verdict,
    WaveGate,
    WaveState,
    WindowKind,
    format_duration,
)

__all__ = [
    "ConditionError",
    "RolloutDecision",
    "advance",
    "check_condition",
    "evaluate_condition",
    "freeze",
    "judge",
    "measurements_due",
    "snap",
]

# --------------------------------------------------------------------------------------------
# The condition language
# --------------------------------------------------------------------------------------------


class ConditionError(ValueError):
    """A condition that is not in the language (said where, for a located problem)."""


_COMPARE: dict[type[ast.cmpop], Callable[[float | bool, float | bool], bool]] = {
    ast.Lt: lambda a, b: a < b,
    ast.LtE: lambda a, b: a <= b,
    ast.Gt: lambda a, b: a > b,
    ast.GtE: lambda a, b: a >= b,
    ast.Eq: lambda a, b: a == b,
    ast.NotEq: lambda a, b: a != b,
}
_MAX_CONDITION = 500


def _parse(text: str) -> ast.expr:
    if len(text) > _MAX_CONDITION:
        raise ConditionError(f"a condition is at most {_MAX_CONDITION} characters")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as error:
        raise ConditionError(f"not a condition: {error.msg}") from None
    _check(tree.body)
    return tree.body


def _check(node: ast.expr) -> None:
    if isinstance(node, ast.BoolOp):
        for value in node.values:
            _check(value)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not | ast.USub):
        _check(node.operand)
    elif isinstance(node, ast.Compare):
        if not all(type(op) in _COMPARE for op in node.ops):
            raise ConditionError("only <, <=, >, >=, == and != compare")
        _check(node.left)
        for value in node.comparators:
            _check(value)
    elif isinstance(node, ast.Name):
        if node.id != "result":
            raise ConditionError(f"unknown name {node.id!r}: the only name is result")
    elif isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, int | float):
            raise ConditionError(f"only numbers are allowed, not {node.value!r}")
    else:
        raise ConditionError(
            f"{type(node).__name__} is not allowed: use result, numbers, comparisons, and, or, not"
        )


def check_condition(text: str) -> None:
    """Raise :class:`ConditionError` when ``text`` is not a condition of the language."""
    _parse(text)


def evaluate_condition(text: str, result: float) -> bool:
    """Whether ``text`` holds for ``result``. Raises ConditionError for a bad condition."""
    return bool(_evaluate(_parse(text), result))


def _evaluate(node: ast.expr, result: float) -> float | bool:
    if isinstance(node, ast.BoolOp):
        values = (bool(_evaluate(v, result)) for v in node.values)
        return all(values) if isinstance(node.op, ast.And) else any(values)
    if isinstance(node, ast.UnaryOp):
        operand = _evaluate(node.operand, result)
        return (not operand) if isinstance(node.op, ast.Not) else -float(operand)
    if isinstance(node, ast.Compare):
        left = _evaluate(node.left, result)
        for op, comparator in zip(node.ops, node.comparators, strict=True):
            right = _evaluate(comparator, result)
            if not _COMPARE[type(op)](left, right):
                return False
            left = right
        return True
    if isinstance(node, ast.Name):
        return result
    assert isinstance(node, ast.Constant) and isinstance(node.value, int | float)
    return float(node.value)


# --------------------------------------------------------------------------------------------
# Schedules and measurements
# --------------------------------------------------------------------------------------------


def snap(percent: int, app: TargetApp) -> int | None:
    """The smallest exposure ``app`` offers at or above ``percent`` (100 = full release)."""
    if app.allows_grayscale(percent):
        return percent
    offered = [v for v in (*(app.grayscale_values or ()), 100) if v >= percent]
    return min(offered) if offered else None


def judge(metric: Metric, measurement: Measurement) -> AnalysisRun:
    """One measurement judged: no data, NaN or too few users is Inconclusive."""
    value, sample = measurement.value, measurement.sample

    def run(verdict: Verdict, condition: str, message: str) -> AnalysisRun:
        return AnalysisRun(
            metric.name, measurement.time, value, sample, condition, verdict, message
        )

    if value is None or math.isnan(value) or math.isinf(value):
        why = measurement.error or "no data"
        return run(Verdict.INCONCLUSIVE, metric.success_condition, f"{metric.name}: {why}")
    if sample is not None and sample < metric.min_sample_users:
        return run(
            Verdict.INCONCLUSIVE,
            f"users >= {metric.min_sample_users}",
            f"{metric.name}: {sample:,} users on the version, fewer than "
            f"{metric.min_sample_users:,}",
        )
    shown = f"{metric.name} = {value:g}"
    if metric.failure_condition is not None and evaluate_condition(metric.failure_condition, value):
        return run(
            Verdict.FAILED, metric.failure_condition, f"{shown} ({metric.failure_condition})"
        )
    if evaluate_condition(metric.success_condition, value):
        return run(Verdict.SUCCESSFUL, metric.success_condition, f"{shown}")
    return run(
        Verdict.FAILED,
        metric.success_condition,
        f"{shown} (not {metric.success_condition})",
    )


def _current(rollout: Rollout, progress: RolloutProgress | None) -> RolloutStep | None:
    if progress is None or progress.step >= len(rollout.steps):
        return None
    return rollout.steps[progress.step]


def measurements_due(
    rollout: Rollout, progress: RolloutProgress | None, now: datetime
) -> tuple[Metric, ...]:
    """The metrics to measure in this pass: those of the current analysis step whose
    ``interval`` has passed since their last run, until each has ``count`` runs."""
    step = _current(rollout, progress)
    if step is None or step.kind is not StepKind.ANALYSIS or progress is None or progress.halt:
        return ()
    assert step.template is not None
    due: list[Metric] = []
    for metric in step.template.metrics:
        runs = [r for r in progress.runs if r.metric == metric.name]
        if len(runs) >= metric.count:
            continue
        if not runs or now >= runs[-1].time + metric.interval:
            due.append(metric)
    return tuple(due)


# --------------------------------------------------------------------------------------------
# Freeze windows
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Freeze:
    """Why exposure may not rise now, and until when."""

    message: str
    until: datetime


def _last_start(window: FreezeWindow, now: datetime) -> datetime:
    from croniter import croniter  # only repositories with freeze windows pay its import

    local = now.astimezone(ZoneInfo(window.time_zone)) + timedelta(seconds=1)
    start: datetime = croniter(window.schedule, local).get_prev(datetime)
    return start.astimezone(UTC)


def _next_start(window: FreezeWindow, now: datetime) -> datetime:
    from croniter import croniter

    local = now.astimezone(ZoneInfo(window.time_zone))
    start: datetime = croniter(window.schedule, local).get_next(datetime)
    return start.astimezone(UTC)


def freeze(windows: Iterable[FreezeWindow], app: str, now: datetime) -> Freeze | None:
    """Whether a step that raises exposure on ``app`` must wait at ``now`` (None: it may).

    Inside a deny window: until it ends. Outside every allow window of the app (when it has
    any): until the next one starts."""
    mine = [w for w in windows if not w.target_apps or app in w.target_apps]
    for window in (w for w in mine if w.kind is WindowKind.DENY):
        start = _last_start(window, now)
        if start <= now < start + window.duration:
            until = start + window.duration
            return Freeze(f"freeze window {window.name} until {_clock(until)} UTC", until)
    allows = [w for w in mine if w.kind is WindowKind.ALLOW]
    if not allows:
        return None
    for window in allows:
        start = _last_start(window, now)
        if start <= now < start + window.duration:
            return None
    until = min(_next_start(w, now) for w in allows)
    names = ", ".join(w.name for w in allows)
    return Freeze(f"outside the allowed windows ({names}) until {_clock(until)} UTC", until)


# --------------------------------------------------------------------------------------------
# The state machine
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RolloutDecision:
    """What the rollout wants in this pass."""

    progress: RolloutProgress
    outcome: Outcome
    reason: Reason
    message: str
    #: The exposure to move to now (always above the exposure in effect), or None.
    target: int | None = None
    #: Cancel the version (abort, or a failed analysis with onFailure: cancel).
    cancel: bool = False
    #: Steps completed in this pass, for history ("step 2/6 done: pause 2h").
    completed: tuple[str, ...] = ()


def advance(
    rollout: Rollout,
    progress: RolloutProgress | None,
    exposure: int,
    measurements: Iterable[Measurement],
    now: datetime,
    *,
    stop_the_line: str | None = None,
    frozen: Freeze | None = None,
    wave: WaveState | None = None,
) -> RolloutDecision:
    """One pass of the rollout: as many steps as are complete, at most one exposure step.

    ``frozen`` (from :func:`freeze`) holds every step that would raise exposure; soaks and
    analyses go on meanwhile. ``wave`` is the release ``rollout.after`` waits for: until it
    has ``after.grayscale`` for ``after.soak``, exposure does not rise either."""
    waiting = _wave_wait(rollout.after, wave, now)
    p = progress or RolloutProgress(step=0, step_started_at=now, exposure=exposure)
    p = replace(p, exposure=exposure)
    steps = rollout.steps
    total = len(steps)
    completed: list[str] = []

    def hold(
        outcome: Outcome,
        reason: Reason,
        message: str,
        next_action: str = "",
        next_time: datetime | None = None,
    ) -> RolloutDecision:
        halt = None if outcome is Outcome.DONE or reason in _MOVING else str(reason)
        state = replace(
            p,
            halt=halt,
            message=message if halt else "",
            next_action=next_action,
            next_time=next_time,
        )
        return RolloutDecision(state, outcome, reason, message, completed=tuple(completed))

    if rollout.abort:
        return RolloutDecision(
            replace(p, halt=str(Reason.ABORTING), message="relctl abort"),
            Outcome.PROGRESSING,
            Reason.ABORTING,
            f"abort: canceling the rollout at {exposure}% (final for this version)",
            cancel=True,
        )
    if stop_the_line:
        return hold(
            Outcome.WAITING,
            Reason.STOP_THE_LINE,
            f"stop the line: holding at {exposure}% ({stop_the_line}); clear stopTheLine in "
            "relctl.yaml to continue",
        )
    if rollout.paused:
        return hold(
            Outcome.WAITING,
            Reason.ROLLOUT_PAUSED,
            f"paused by a person at {exposure}% (step {min(p.step, total - 1) + 1}/{total}); "
            "relctl resume to continue",
            "relctl resume",
        )
    promote = rollout.promoted_at is not None and rollout.promoted_at != p.promoted
    retry = rollout.retry is not None and rollout.retry != p.retried
    if retry:
        again = p.halt in _ANALYSIS_HALTS
        p = replace(p, retried=rollout.retry)
        if again:
            p = replace(p, halt=None, message="", runs=(), step_started_at=now)
            completed.append(f"retry: analysis of step {p.step + 1}/{total} runs again")
    if rollout.full and exposure < 100 and frozen is not None:
        return hold(
            Outcome.WAITING,
            Reason.FREEZE_WINDOW,
            f"promote --full waits: {frozen.message}",
            "full release",
            frozen.until,
        )
    if rollout.full and exposure < 100:
        if promote:
            p = replace(p, promoted=rollout.promoted_at)
        return RolloutDecision(
            replace(p, halt=None, message="", next_action="full release", next_time=now),
            Outcome.PROGRESSING,
            Reason.RELEASING_FULLY,
            f"promote --full: skipping the rest of the schedule, {exposure}% -> 100%",
            target=100,
            completed=tuple(completed),
        )
    if p.halt in _ANALYSIS_HALTS and not promote:
        return RolloutDecision(p, Outcome.STALLED, Reason(p.halt), p.message)

    for _ in range(total + 1):
        if p.step >= total:
            return hold(
                Outcome.DONE,
                Reason.GRAYSCALE_REACHED if exposure < 100 else Reason.RELEASED,
                f"rollout complete: {exposure}% of users (all {total} steps done)",
            )
        step = steps[p.step]
        where = f"step {p.step + 1}/{total} ({step.describe()})"
        if step.kind is StepKind.GRAYSCALE:
            assert step.grayscale is not None
            if exposure < step.grayscale and waiting is not None:
                return hold(
                    Outcome.WAITING,
                    Reason.WAITING_FOR_WAVE,
                    f"{where}: holding at {exposure}%: {waiting[0]}",
                    step.describe(),
                    waiting[1],
                )
            if exposure < step.grayscale and frozen is not None:
                return hold(
                    Outcome.WAITING,
                    Reason.FREEZE_WINDOW,
                    f"{where}: holding at {exposure}%: {frozen.message}",
                    step.describe(),
                    frozen.until,
                )
            if exposure < step.grayscale:
                return RolloutDecision(
                    replace(p, halt=None, message="", next_action=step.describe(), next_time=now),
                    Outcome.PROGRESSING,
                    Reason.RAISING_GRAYSCALE,
                    f"{where}: raising grayscale {exposure}% -> {step.grayscale}%",
                    target=step.grayscale,
                    completed=tuple(completed),
                )
        elif step.kind is StepKind.PAUSE:
            if step.duration is None:
                if not promote:
                    return hold(
                        Outcome.WAITING,
                        Reason.WAITING_FOR_PROMOTION,
                        f"{where}: waiting for relctl promote at {exposure}% since "
                        f"{_clock(p.step_started_at)}",
                        "relctl promote",
                    )
                p = replace(p, promoted=rollout.promoted_at)
                promote = False
            else:
                due = p.step_started_at + step.duration
                if promote:
                    p = replace(p, promoted=rollout.promoted_at)
                    promote = False
                elif now < due:
                    return hold(
                        Outcome.WAITING,
                        Reason.SOAKING,
                        f"{where}: soaking at {exposure}% until {_clock(due)}",
                        _next_words(steps, p.step),
                        due,
                    )
        else:
            assert step.template is not None
            if promote:
                p = replace(p, promoted=rollout.promoted_at, halt=None, message="")
                promote = False
                completed.append(f"{where}: promoted past the analysis by a person")
            else:
                p = _record(step.template, p, measurements)
                decision = _analyse(rollout, step.template, p, now, where)
                if decision is not None:
                    return replace(decision, completed=(*completed, *decision.completed))
                p = replace(p, halt=None, message="")
        completed.append(f"{where} done")
        p = replace(p, step=p.step + 1, step_started_at=now, next_action="", next_time=None)
        if p.step < total and steps[p.step].kind is StepKind.ANALYSIS:
            p = replace(p, runs=())
    raise AssertionError("a rollout schedule advances at most once per step")  # pragma: no cover


_ANALYSIS_HALTS = frozenset({str(Reason.ANALYSIS_FAILED), str(Reason.ANALYSIS_INCONCLUSIVE)})
_MOVING = frozenset({Reason.SOAKING, Reason.ANALYZING, Reason.RAISING_GRAYSCALE})


def _record(
    template: AnalysisTemplate, p: RolloutProgress, measurements: Iterable[Measurement]
) -> RolloutProgress:
    """This pass's measurements of the template's metrics, judged and added to the runs."""
    metrics = {m.name: m for m in template.metrics}
    runs = list(p.runs)
    for measurement in measurements:
        metric = metrics.get(measurement.metric)
        if metric is not None:
            runs.append(judge(metric, measurement))
    return replace(p, runs=tuple(runs))


def _analyse(
    rollout: Rollout,
    template: AnalysisTemplate,
    state: RolloutProgress,
    now: datetime,
    where: str,
) -> RolloutDecision | None:
    """The analysis step with the runs so far: None when it passed."""
    p = state
    runs = state.runs
    failed: list[AnalysisRun] = []
    unclear: list[AnalysisRun] = []
    waiting: list[datetime] = []
    for metric in template.metrics:
        mine = [r for r in runs if r.metric == metric.name]
        bad = [r for r in mine if r.result is Verdict.FAILED]
        lacking = [r for r in mine if r.result is Verdict.INCONCLUSIVE]
        if len(bad) > metric.failure_limit:
            failed.append(bad[-1])
        elif len(lacking) > metric.inconclusive_limit:
            unclear.append(lacking[-1])
        elif len(mine) < metric.count:
            waiting.append(mine[-1].time + metric.interval if mine else now)
    if failed:
        words = "; ".join(f"{r.message} at {_clock(r.time)}" for r in failed)
        reason = Reason.ANALYSIS_FAILED
        if rollout.on_failure is OnFailure.CANCEL:
            message = f"{where} failed: {words}; onFailure: cancel, canceling"
            halted = replace(state, halt=str(reason), message=message)
            return RolloutDecision(halted, Outcome.PROGRESSING, reason, message, cancel=True)
        message = (
            f"{where} failed: {words}; holding at {p.exposure}%: relctl retry, promote or abort"
        )
    elif unclear:
        words = "; ".join(f"{r.message} at {_clock(r.time)}" for r in unclear)
        reason = Reason.ANALYSIS_INCONCLUSIVE
        message = (
            f"{where} inconclusive: {words}; holding at {p.exposure}%: relctl retry, promote or "
            "abort"
        )
    elif waiting:
        at = min(waiting)
        message = f"{where}: measuring at {p.exposure}% ({len(runs)} run(s) so far)"
        return RolloutDecision(
            replace(state, halt=None, message="", next_action="measure", next_time=at),
            Outcome.WAITING,
            Reason.ANALYZING,
            message,
        )
    else:
        return None
    halted = replace(state, halt=str(reason), message=message, next_action="", next_time=None)
    return RolloutDecision(halted, Outcome.STALLED, reason, message)


def _wave_wait(
    gate: WaveGate | None, wave: WaveState | None, now: datetime
) -> tuple[str, datetime | None] | None:
    """Why the wave holds (and until when, if known), or None when it lets exposure rise."""
    if gate is None:
        return None
    want = f"waiting for {gate.target_app} to reach {gate.grayscale}%"
    if gate.soak:
        want += f" for {format_duration(gate.soak)}"
    if wave is None or wave.since is None or wave.exposure < gate.grayscale:
        seen = 0 if wave is None else wave.exposure
        return f"{want} ({gate.target_app} at {seen}%)", None
    ready = wave.since + gate.soak
    if now < ready:
        return f"{want} ({gate.target_app} at {wave.exposure}% until {_clock(ready)})", ready
    return None


def _next_words(steps: tuple[RolloutStep, ...], index: int) -> str:
    return steps[index + 1].describe() if index + 1 < len(steps) else "rollout complete"


def _clock(moment: datetime) -> str:
    moment = moment.astimezone(UTC) if moment.tzinfo is not None else moment
    return moment.strftime("%Y-%m-%d %H:%M")
