"""Pure tests of the rollout state machine (``controller.rollout``) and its use by ``decide``.

Tables over ``advance`` (each step kind, each command, each halt), the condition language,
judging a measurement, a whole schedule driven pass by pass with a crash at every point (no
step taken twice, none skipped), and hypothesis properties: exposure never decreases and never
exceeds the current grayscale step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.model import (
    Action,
    AnalysisTemplate,
    FreezeWindow,
    Measurement,
    Metric,
    Observed,
    OnFailure,
    Outcome,
    Phase,
    Provider,
    Reason,
    Release,
    ReleaseSpec,
    Rollout,
    RolloutProgress,
    RolloutStep,
    Status,
    StepKind,
    TargetApp,
    Verdict,
    WaveGate,
    WaveState,
    WindowKind,
    parse_duration,
)
from controller.plan import decide
from controller.platform.protocol import ReleaseSnapshot, Stage
from controller.rollout import (
    ConditionError,
    advance,
    check_condition,
    evaluate_condition,
    freeze,
    judge,
    measurements_due,
    snap,
)

T0 = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)

CRASH = Metric(
    name="crash-rate",
    provider=Provider.PLATFORM,
    query="crashRate",
    success_condition="result < 1.5",
    failure_condition="result >= 5",
    min_sample_users=100,
)
TEMPLATE = AnalysisTemplate("crash-and-errors", (CRASH,))


def gray(percent: int) -> RolloutStep:
    return RolloutStep(StepKind.GRAYSCALE, grayscale=percent)


def soak(text: str) -> RolloutStep:
    return RolloutStep(StepKind.PAUSE, duration=parse_duration(text))


HOLD = RolloutStep(StepKind.PAUSE)
ANALYSIS = RolloutStep(StepKind.ANALYSIS, template=TEMPLATE)

#: The schedule of the issue: 1%, soak 2h, analysis, 20%, wait for a person, 100%.
SCHEDULE = Rollout(steps=(gray(1), soak("2h"), ANALYSIS, gray(20), HOLD, gray(100)))


def crash_rate(value: float | None, users: int | None = 5000, at: datetime = T0) -> Measurement:
    return Measurement("crash-rate", at, value, users)


def at_step(index: int, started: datetime = T0, **fields: object) -> RolloutProgress:
    return replace(RolloutProgress(step=index, step_started_at=started), **fields)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# advance: one pass
# --------------------------------------------------------------------------------------------


def test_first_pass_raises_to_the_first_grayscale_step() -> None:
    decision = advance(SCHEDULE, None, 0, (), T0)
    assert decision.target == 1
    assert decision.progress.step == 0
    assert decision.reason is Reason.RAISING_GRAYSCALE


def test_a_grayscale_step_completes_only_when_the_platform_shows_it() -> None:
    decision = advance(SCHEDULE, at_step(0), 1, (), T0 + timedelta(minutes=1))
    assert decision.target is None
    assert decision.progress.step == 1
    assert decision.progress.step_started_at == T0 + timedelta(minutes=1)
    assert decision.reason is Reason.SOAKING


def test_soak_runs_from_when_the_exposure_took_effect() -> None:
    started = T0 + timedelta(minutes=1)
    almost = started + timedelta(hours=1, minutes=59)
    waiting = advance(SCHEDULE, at_step(1, started), 1, (), almost)
    assert waiting.reason is Reason.SOAKING and waiting.outcome is Outcome.WAITING
    assert waiting.progress.next_time == started + timedelta(hours=2)
    assert waiting.progress.halt is None
    done = advance(SCHEDULE, at_step(1, started), 1, (), started + timedelta(hours=2))
    assert done.progress.step == 2
    assert done.reason is Reason.ANALYZING


def test_analysis_measures_only_when_due() -> None:
    progress = at_step(2)
    assert measurements_due(SCHEDULE, progress, T0) == (CRASH,)
    assert measurements_due(SCHEDULE, at_step(1), T0) == ()
    judged = replace(progress, runs=(judge(CRASH, crash_rate(0.5)),))
    assert measurements_due(SCHEDULE, judged, T0) == ()  # count 1 reached


def test_a_passing_analysis_moves_on_to_the_next_grayscale_step() -> None:
    decision = advance(SCHEDULE, at_step(2), 1, (crash_rate(0.4),), T0)
    assert decision.target == 20
    assert decision.progress.step == 3
    assert [r.result for r in decision.progress.runs] == [Verdict.SUCCESSFUL]


def test_a_crash_spike_halts_with_the_measurement_in_the_message() -> None:
    decision = advance(SCHEDULE, at_step(2), 1, (crash_rate(7.25),), T0)
    assert decision.target is None
    assert decision.outcome is Outcome.STALLED
    assert decision.reason is Reason.ANALYSIS_FAILED
    assert decision.progress.halt == "AnalysisFailed"
    assert "crash-rate = 7.25 (result >= 5)" in decision.message
    assert "holding at 1%" in decision.message


@pytest.mark.parametrize(
    ("measurement", "words"),
    [
        (crash_rate(None), "crash-rate: no data"),
        (crash_rate(math.nan), "crash-rate: no data"),
        (crash_rate(0.1, users=20), "20 users on the version, fewer than 100"),
        (Measurement("crash-rate", T0, None, None, "no data (HTTP 503)"), "HTTP 503"),
    ],
    ids=["no-data", "nan", "too-few-users", "provider-error"],
)
def test_missing_data_is_inconclusive_never_success(measurement: Measurement, words: str) -> None:
    decision = advance(SCHEDULE, at_step(2), 1, (measurement,), T0)
    assert decision.target is None
    assert decision.reason is Reason.ANALYSIS_INCONCLUSIVE
    assert words in decision.message


def test_a_halted_analysis_stays_halted_without_a_command() -> None:
    halted = advance(SCHEDULE, at_step(2), 1, (crash_rate(9),), T0).progress
    again = advance(SCHEDULE, halted, 1, (), T0 + timedelta(days=3))
    assert again.progress == halted
    assert again.target is None


def test_retry_runs_the_analysis_again() -> None:
    halted = advance(SCHEDULE, at_step(2), 1, (crash_rate(9),), T0).progress
    later = T0 + timedelta(hours=1)
    retried = advance(replace(SCHEDULE, retry="r1"), halted, 1, (), later)
    assert retried.progress.halt is None and retried.progress.runs == ()
    assert retried.progress.retried == "r1"
    assert measurements_due(SCHEDULE, retried.progress, later) == (CRASH,)
    passed = advance(replace(SCHEDULE, retry="r1"), retried.progress, 1, (crash_rate(0.2),), later)
    assert passed.target == 20


def test_abort_cancels_wherever_the_rollout_is() -> None:
    for index in range(len(SCHEDULE.steps)):
        decision = advance(replace(SCHEDULE, abort=True), at_step(index), 1, (), T0)
        assert decision.cancel and decision.target is None
        assert decision.reason is Reason.ABORTING


def test_on_failure_cancel_cancels() -> None:
    decision = advance(
        replace(SCHEDULE, on_failure=OnFailure.CANCEL), at_step(2), 1, (crash_rate(9),), T0
    )
    assert decision.cancel


def test_a_pause_without_duration_waits_for_promote() -> None:
    waiting = advance(SCHEDULE, at_step(4), 20, (), T0 + timedelta(days=30))
    assert waiting.reason is Reason.WAITING_FOR_PROMOTION
    assert waiting.progress.next_action == "relctl promote"
    promoted = advance(replace(SCHEDULE, promoted_at="p1"), at_step(4), 20, (), T0)
    assert promoted.target == 100
    assert promoted.progress.promoted == "p1"


def test_a_promotion_token_is_consumed_once() -> None:
    """The same promotedAt token does not pass the next pause too."""
    twice = Rollout(steps=(gray(10), HOLD, gray(20), HOLD, gray(50)), promoted_at="p1")
    first = advance(twice, at_step(1), 10, (), T0)
    assert first.target == 20
    after = advance(twice, first.progress, 20, (), T0)
    assert after.reason is Reason.WAITING_FOR_PROMOTION
    assert after.progress.step == 3


def test_promote_full_skips_to_full_release() -> None:
    decision = advance(replace(SCHEDULE, full=True), at_step(1), 1, (), T0)
    assert decision.target == 100


def test_pause_holds_and_resume_continues() -> None:
    paused = advance(replace(SCHEDULE, paused=True), at_step(3), 1, (), T0)
    assert paused.target is None and paused.reason is Reason.ROLLOUT_PAUSED
    resumed = advance(SCHEDULE, paused.progress, 1, (), T0)
    assert resumed.target == 20


def test_stop_the_line_holds_every_rollout() -> None:
    decision = advance(SCHEDULE, at_step(3), 1, (), T0, stop_the_line="INC-42")
    assert decision.target is None
    assert decision.reason is Reason.STOP_THE_LINE
    assert "INC-42" in decision.message


def test_the_schedule_done_is_done() -> None:
    partial = Rollout(steps=(gray(10), soak("1h")))
    decision = advance(partial, at_step(1), 10, (), T0 + timedelta(hours=1))
    assert decision.outcome is Outcome.DONE
    assert decision.progress.step == 2


# --------------------------------------------------------------------------------------------
# the condition language and judging
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("condition", "result", "holds"),
    [
        ("result < 1.5", 1.0, True),
        ("result < 1.5", 1.5, False),
        ("result >= 0 and result <= 2", 3, False),
        ("not result > 2 or result == 10", 10, True),
        ("0 < result < 1", 0.5, True),
        ("result != -1", -1, False),
    ],
)
def test_conditions_evaluate(condition: str, result: float, holds: bool) -> None:
    assert evaluate_condition(condition, result) is holds


@pytest.mark.parametrize(
    "condition",
    [
        "__import__('os').system('true')",
        "result.real > 1",
        "users > 1",
        "result + 1 > 2",
        "'a' < 'b'",
        "result in (1, 2)",
        "True",
        "result <",
    ],
)
def test_anything_else_is_refused(condition: str) -> None:
    with pytest.raises(ConditionError):
        check_condition(condition)


def test_failure_condition_is_checked_before_success() -> None:
    metric = replace(CRASH, success_condition="result < 100", failure_condition="result > 3")
    assert judge(metric, crash_rate(4)).result is Verdict.FAILED


def test_a_value_outside_the_success_condition_fails() -> None:
    metric = replace(CRASH, failure_condition=None)
    assert judge(metric, crash_rate(2)).result is Verdict.FAILED


@pytest.mark.parametrize(
    ("wanted", "snapped"), [(3, 10), (10, 10), (20, 30), (55, 100), (100, 100)]
)
def test_steps_snap_up_to_what_the_app_offers(wanted: int, snapped: int) -> None:
    app = TargetApp("tng", "Touch 'n Go", grayscale_values=(10, 30, 50))
    assert snap(wanted, app) == snapped


def test_an_app_without_grayscale_values_offers_every_step() -> None:
    assert snap(77, TargetApp("gcash", "GCash")) == 77


# --------------------------------------------------------------------------------------------
# a whole schedule, pass by pass, with crashes
# --------------------------------------------------------------------------------------------


@dataclass
class Run:
    """A fake platform exposure driven by ``advance`` the way ``reconcile`` drives it."""

    rollout: Rollout
    exposure: int = 0
    progress: RolloutProgress | None = None
    raises: list[tuple[datetime, int]] | None = None

    def one_pass(self, now: datetime, *, crash_after_act: bool = False) -> None:
        self.raises = self.raises or []
        due = measurements_due(self.rollout, self.progress, now)
        found = tuple(crash_rate(0.2, at=now) for _ in due)
        decision = advance(self.rollout, self.progress, self.exposure, found, now)
        if decision.target is not None:
            assert decision.target > self.exposure, "a step was taken twice"
            self.exposure = decision.target
            self.raises.append((now, decision.target))
            if crash_after_act:
                return  # the status write is lost: the memory stays what it was
            # reconcile re-decides on the observation after the step
            decision = advance(self.rollout, decision.progress, self.exposure, (), now)
        self.progress = decision.progress


SOAKED = Rollout(steps=(gray(1), soak("2h"), ANALYSIS, gray(20), soak("1h"), gray(100)))


def drive(rollout: Rollout, crash_at: int | None) -> Run:
    run = Run(rollout)
    now = T0
    for index in range(200):
        run.one_pass(now, crash_after_act=index == crash_at)
        now += timedelta(minutes=10)
    return run


@pytest.mark.parametrize("crash_at", [None, *range(40)])
def test_a_crash_at_any_pass_takes_no_step_twice_and_skips_none(crash_at: int | None) -> None:
    run = drive(SOAKED, crash_at)
    assert [percent for _at, percent in run.raises or []] == [1, 20, 100]
    times = {p: at for at, p in run.raises or []}
    assert times[20] - times[1] >= timedelta(hours=2)  # the soak was kept
    assert times[100] - times[20] >= timedelta(hours=1)
    assert run.progress is not None and run.progress.step == len(SOAKED.steps)


# --------------------------------------------------------------------------------------------
# properties
# --------------------------------------------------------------------------------------------

steps_strategy = st.lists(
    st.one_of(
        st.integers(1, 100).map(gray),
        st.sampled_from([soak("30m"), soak("2h"), HOLD, ANALYSIS]),
    ),
    min_size=1,
    max_size=8,
)


@settings(max_examples=150, deadline=None)
@given(
    steps=steps_strategy,
    passes=st.lists(
        st.tuples(
            st.integers(0, 180),  # minutes until the pass
            st.sampled_from([None, 0.1, 9.0, math.nan]),  # the crash rate, if measured
            st.booleans(),  # promote in this pass
            st.booleans(),  # crash after acting
        ),
        max_size=25,
    ),
)
def test_exposure_never_decreases_nor_exceeds_the_current_step(
    steps: list[RolloutStep],
    passes: list[tuple[int, float | None, bool, bool]],
) -> None:
    rollout = Rollout(steps=tuple(steps))
    exposure, progress, now = 0, None, T0
    for number, (minutes, value, promote, crash) in enumerate(passes):
        now += timedelta(minutes=minutes)
        if promote:
            rollout = replace(rollout, promoted_at=f"p{number}")
        due = measurements_due(rollout, progress, now)
        found = tuple(crash_rate(value, at=now) for _ in due)
        decision = advance(rollout, progress, exposure, found, now)
        if decision.target is not None:
            current = rollout.steps[decision.progress.step]
            assert current.kind is StepKind.GRAYSCALE
            assert decision.target == current.grayscale
            assert decision.target > exposure
            exposure = decision.target
            if crash:
                continue
            decision = advance(rollout, decision.progress, exposure, (), now)
        assert decision.progress.exposure == exposure
        progress = decision.progress


# --------------------------------------------------------------------------------------------
# decide with a rollout
# --------------------------------------------------------------------------------------------


def rollout_release(rollout: Rollout = SCHEDULE) -> Release:
    return Release(
        mini_program="shop",
        target_app="gcash",
        environment="production",
        path="releases/shop/gcash.yaml",
        spec=ReleaseSpec(version="1.5.0", rollout=rollout),
    )


def snapshot(stage: Stage, grayscale: int = 0) -> ReleaseSnapshot:
    return ReleaseSnapshot(
        release_id="rel-1",
        mini_program="shop",
        version="1.5.0",
        target_app="gcash",
        environment="production",
        stage=stage,
        basic_info={},
        configuration={},
        compatibility=None,
        review=None,
        testers=(),
        grayscale=grayscale,
        stage_times={stage: T0},
        qr_code=None,
        created_at=T0,
        updated_at=T0,
    )


def memory(progress: RolloutProgress) -> Status:
    return Status(
        mini_program="shop",
        target_app="gcash",
        version="1.5.0",
        observed_commit="c0ffee",
        spec_hash="x",
        phase=Phase.GRAYSCALE,
        rollout=progress,
    )


def test_decide_raises_grayscale_along_the_schedule() -> None:
    plan = decide(rollout_release(), None, Observed(True, snapshot(Stage.RELEASE_PREPARATION)), T0)
    assert plan.step is not None and plan.step.action is Action.SET_GRAYSCALE
    assert plan.step.percent == 1
    assert plan.rollout is not None and plan.rollout.step == 0


def test_decide_releases_fully_at_the_last_step() -> None:
    plan = decide(
        rollout_release(replace(SCHEDULE, promoted_at="p")),
        memory(at_step(4, exposure=20)),
        Observed(True, snapshot(Stage.GRAYSCALE, 20)),
        T0,
    )
    assert plan.step is not None and plan.step.action is Action.FULL_RELEASE


def test_decide_halts_on_a_failed_analysis() -> None:
    plan = decide(
        rollout_release(),
        memory(at_step(2, exposure=1)),
        Observed(True, snapshot(Stage.GRAYSCALE, 1), measurements=(crash_rate(8.0),)),
        T0,
    )
    assert plan.step is None
    assert plan.phase is Phase.HALTED
    assert plan.outcome is Outcome.STALLED
    assert plan.reason is Reason.ANALYSIS_FAILED


def test_abort_cancels_the_version() -> None:
    plan = decide(
        rollout_release(replace(SCHEDULE, abort=True)),
        memory(at_step(3, exposure=1)),
        Observed(True, snapshot(Stage.GRAYSCALE, 1)),
        T0,
    )
    assert plan.step is not None and plan.step.action is Action.CANCEL
    assert "relctl abort" in plan.message


def test_decide_ignores_the_rollout_before_release_preparation() -> None:
    plan = decide(rollout_release(), None, Observed(True, snapshot(Stage.UNDER_REVIEW)), T0)
    assert plan.rollout is None
    assert plan.reason is Reason.UNDER_REVIEW


# --------------------------------------------------------------------------------------------
# freeze windows (the clock is an input)
# --------------------------------------------------------------------------------------------

MANILA = timezone(timedelta(hours=8))
WEEKEND = FreezeWindow(
    "weekend", WindowKind.DENY, "0 18 * * 5", parse_duration("62h"), "Asia/Manila"
)
OFFICE = FreezeWindow(
    "office-hours", WindowKind.ALLOW, "0 9 * * 1-4", parse_duration("8h"), "Asia/Manila",
    target_apps=("gcash",),
)  # fmt: skip


def test_inside_a_deny_window_exposure_waits_until_it_ends() -> None:
    saturday = datetime(2026, 12, 5, 10, 0, tzinfo=MANILA)
    frozen = freeze([WEEKEND], "gcash", saturday)
    assert frozen is not None
    assert frozen.until == datetime(2026, 12, 7, 8, 0, tzinfo=MANILA)
    assert "freeze window weekend until 2026-12-07 00:00 UTC" in frozen.message
    assert freeze([WEEKEND], "gcash", datetime(2026, 12, 7, 8, 0, tzinfo=MANILA)) is None
    assert freeze([WEEKEND], "gcash", datetime(2026, 12, 4, 17, 59, tzinfo=MANILA)) is None


def test_outside_every_allow_window_exposure_waits_for_the_next() -> None:
    friday = datetime(2026, 12, 4, 10, 0, tzinfo=MANILA)
    frozen = freeze([OFFICE], "gcash", friday)
    assert frozen is not None and frozen.until == datetime(2026, 12, 7, 9, 0, tzinfo=MANILA)
    assert freeze([OFFICE], "gcash", datetime(2026, 12, 3, 16, 59, tzinfo=MANILA)) is None
    assert freeze([OFFICE], "dana", friday) is None  # the window is for gcash only


def test_a_freeze_holds_raising_but_not_soaking() -> None:
    frozen = freeze([WEEKEND], "gcash", datetime(2026, 12, 5, 10, 0, tzinfo=MANILA))
    held = advance(SCHEDULE, at_step(3), 1, (), T0, frozen=frozen)
    assert held.target is None and held.reason is Reason.FREEZE_WINDOW
    assert held.progress.next_time == datetime(2026, 12, 7, 0, 0, tzinfo=UTC)
    soaking = advance(SCHEDULE, at_step(1), 1, (), T0, frozen=frozen)
    assert soaking.reason is Reason.SOAKING


def test_decide_skips_freeze_windows_with_the_override() -> None:
    saturday = datetime(2026, 12, 5, 10, 0, tzinfo=MANILA)
    observed = Observed(True, snapshot(Stage.GRAYSCALE, 1), freeze_windows=(WEEKEND,))
    held = decide(rollout_release(), memory(at_step(3, exposure=1)), observed, saturday)
    assert held.step is None and held.reason is Reason.FREEZE_WINDOW
    assert held.phase is Phase.HALTED
    forced = decide(
        rollout_release(replace(SCHEDULE, override_freeze=True)),
        memory(at_step(3, exposure=1)),
        observed,
        saturday,
    )
    assert forced.step is not None and forced.step.percent == 20


# --------------------------------------------------------------------------------------------
# waves across apps
# --------------------------------------------------------------------------------------------

AFTER_GCASH = replace(SCHEDULE, after=WaveGate("gcash", 50, parse_duration("24h")))


@pytest.mark.parametrize(
    ("wave", "raises"),
    [
        (None, False),
        (WaveState(0, None), False),
        (WaveState(20, T0 - timedelta(days=3)), False),
        (WaveState(50, T0 - timedelta(hours=23)), False),
        (WaveState(50, T0 - timedelta(hours=24)), True),
        (WaveState(100, T0 - timedelta(days=2)), True),
    ],
    ids=["unobserved", "not-released", "too-low", "not-soaked", "soaked", "full"],
)
def test_a_wave_raises_only_after_the_app_before_it(wave: WaveState | None, raises: bool) -> None:
    decision = advance(AFTER_GCASH, None, 0, (), T0, wave=wave)
    assert (decision.target == 1) is raises
    if not raises:
        assert decision.reason is Reason.WAITING_FOR_WAVE
        assert "waiting for gcash to reach 50% for 1d" in decision.message
