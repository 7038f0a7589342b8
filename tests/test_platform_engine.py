"""The simulator's engine: the effect of one action on one release snapshot, purely.

Most tests call ``engine.effect`` on hand-made snapshots; the last ones drive the real
simulator (manual clock) and check that what it answers is exactly what the engine computes
from the snapshot before, which is what ``relctl plan --base`` relies on.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from controller.platform.errors import (
    Conflict,
    InvalidState,
    LimitExceeded,
    NotEditable,
    NotFound,
)
from controller.platform.protocol import (
    CompatibilityReport,
    CompatibilityStatus,
    ReleaseSnapshot,
    configuration_digest,
)
from controller.platform.rules import FINAL_STAGES, TRANSITIONS, Stage
from controller.platform.sim import AppSettings, Simulator, actions, engine

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
AT = T0 + timedelta(minutes=5)
APP = AppSettings(app_id="gcash", grayscale_values=(10, 30, 50), testers_max=2)
TESTER = "2088000000000001"


def snapshot(stage: Stage, **changes: object) -> ReleaseSnapshot:
    configuration = {"theme": "dark"}
    base = ReleaseSnapshot(
        release_id="R-000001",
        mini_program="shop",
        version="1.4.0",
        target_app="gcash",
        environment="production",
        stage=stage,
        basic_info={"name": "Shop", "description": "A shop"},
        configuration=configuration,
        compatibility=CompatibilityReport(
            report_id="C-000001",
            status=CompatibilityStatus.FINISHED,
            pass_rate=100.0,
            cases=(),
            configuration_digest=configuration_digest(configuration),
            started_at=T0,
            finished_at=T0,
        ),
        review=None,
        testers=(),
        grayscale=10 if stage is Stage.GRAYSCALE else 0,
        stage_times={stage: T0},
        qr_code=None,
        created_at=T0,
        updated_at=T0,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


EVERY_ACTION: tuple[actions.Action, ...] = (
    actions.UpdateBasicInfo({"name": "Shop 2"}),
    actions.UpdateConfiguration({"theme": "light"}),
    actions.RunCompatibilityTest("C-000002"),
    actions.Apply(),
    actions.Withdraw(),
    actions.SetTesters((TESTER,)),
    actions.CompleteTesting(),
    actions.Cancel(),
    actions.SetGrayscale(30),
    actions.SetGrayscale(100),
    actions.FullRelease(),
    actions.CreateQrCode(),
    actions.ReviewApplication(approve=True, reason="ok"),
    actions.ReviewApplication(approve=False, reason="description is empty"),
)


@pytest.mark.parametrize(
    ("stage", "action"),
    list(itertools.product(Stage, EVERY_ACTION)),
    ids=lambda value: str(value).split("(")[0],
)
def test_every_stage_change_is_a_transition_of_the_table_and_the_input_is_untouched(
    stage: Stage, action: actions.Action
) -> None:
    before = snapshot(stage)
    kept = replace(before)
    try:
        after = engine.effect(before, action, APP, AT)
    except (InvalidState, NotEditable, LimitExceeded, NotFound):
        return  # a refusal changes nothing
    assert before == kept
    if after.stage_times != before.stage_times:  # a stage was entered
        assert after.stage in TRANSITIONS[stage], (stage, after.stage)
        assert after.stage_times[after.stage] == AT
    assert engine.effect(before, action, APP, AT) == after  # same inputs, same answer


@pytest.mark.parametrize("stage", sorted(FINAL_STAGES))
def test_a_final_release_refuses_every_change(stage: Stage) -> None:
    for action in EVERY_ACTION:
        if isinstance(action, actions.ReviewApplication):
            with pytest.raises(InvalidState, match="only an application under review"):
                engine.effect(snapshot(stage), action, APP, AT)
        else:
            with pytest.raises(NotEditable, match=f"is {stage}"):
                engine.effect(snapshot(stage), action, APP, AT)


def test_cancel_is_final_and_takes_the_version_away_from_users() -> None:
    after = engine.effect(snapshot(Stage.GRAYSCALE), actions.Cancel(), APP, AT)

    assert (after.stage, after.grayscale) == (Stage.CANCELED, 0)
    assert after.message == "canceled in GRAYSCALE; final: release a new version to try again"


def test_grayscale_only_rises_and_only_to_the_apps_values() -> None:
    at_10 = snapshot(Stage.GRAYSCALE)

    with pytest.raises(InvalidState, match="grayscale only rises"):
        engine.effect(at_10, actions.SetGrayscale(10), APP, AT)
    with pytest.raises(LimitExceeded, match="allowed: 10,30,50,100"):
        engine.effect(at_10, actions.SetGrayscale(20), APP, AT)
    raised = engine.effect(at_10, actions.SetGrayscale(30), APP, AT)
    assert (raised.stage, raised.grayscale, raised.extra["peak_grayscale"]) == (
        Stage.GRAYSCALE,
        30,
        30,
    )


def test_grayscale_100_is_the_full_release() -> None:
    ready = snapshot(Stage.RELEASE_PREPARATION)

    by_percent = engine.effect(ready, actions.SetGrayscale(100), APP, AT)

    assert by_percent == engine.effect(ready, actions.FullRelease(), APP, AT)
    assert (by_percent.stage, by_percent.grayscale) == (Stage.FULL_RELEASE, 100)


def test_testers_are_checked_against_the_apps_limit_and_user_ids() -> None:
    pilot = snapshot(Stage.PILOT_TESTING)
    with pytest.raises(LimitExceeded, match="at most 2"):
        engine.effect(
            pilot,
            actions.SetTesters(("2088000000000001", "2088000000000002", "2088000000000003")),
            APP,
            AT,
        )
    with pytest.raises(NotFound, match="bob"):
        engine.effect(pilot, actions.SetTesters(("bob",)), APP, AT)
    after = engine.effect(pilot, actions.SetTesters((f" {TESTER}", TESTER)), APP, AT)
    assert after.testers == (TESTER,)


def test_apply_needs_a_finished_report_of_the_current_configuration() -> None:
    changed = snapshot(Stage.NEW_VERSION_CREATED, configuration={"theme": "light"})
    with pytest.raises(InvalidState, match="run a compatibility test first"):
        engine.effect(changed, actions.Apply(), APP, AT)

    applied = engine.effect(snapshot(Stage.NEW_VERSION_CREATED), actions.Apply(), APP, AT)
    assert applied.stage is Stage.UNDER_REVIEW
    assert applied.message == "applied to release; review: auto"


def test_approval_leads_to_pilot_testing_only_where_the_app_requires_it() -> None:
    under_review = snapshot(Stage.UNDER_REVIEW)
    approve = actions.ReviewApplication(approve=True, reason="ok")

    pilot = engine.effect(under_review, approve, replace(APP, pilot_required=True), AT)
    direct = engine.effect(under_review, approve, APP, AT)

    assert pilot.stage is Stage.PILOT_TESTING and pilot.review is not None
    assert pilot.review.pilot_required
    assert direct.stage is Stage.RELEASE_PREPARATION


def test_a_version_goes_to_a_target_once_and_versions_only_increase() -> None:
    canceled = snapshot(Stage.CANCELED, version="1.4.0")
    released = snapshot(Stage.FULL_RELEASE, version="1.5.0", release_id="R-000002")

    with pytest.raises(Conflict, match="can never be redone"):
        engine.check_new_release("shop", "1.4.0", "gcash", "production", [canceled])
    with pytest.raises(Conflict, match=r"not newer than 1\.5\.0"):
        engine.check_new_release("shop", "1.4.1", "gcash", "production", [canceled, released])
    engine.check_new_release("shop", "1.10.0", "gcash", "production", [canceled, released])


# --------------------------------------------------------------------------------------------
# the simulator answers what the engine computes
# --------------------------------------------------------------------------------------------


@pytest.fixture
def sim(tmp_path: Path) -> Simulator:
    simulator = Simulator(tmp_path / "platform.db")
    simulator.set_clock(manual=True, at=T0)
    simulator.set_app("gcash", pilot_required=True, review="manual", build_seconds=0)
    simulator.set_app("gcash", test_seconds=0, grayscale_values=(10, 30, 50))
    simulator.upload("shop", "1.4.0")
    return simulator


def test_the_simulator_answers_what_the_engine_computes_for_each_step(sim: Simulator) -> None:
    keys = (f"k{n}" for n in itertools.count())
    app = sim.apps()[0]
    rid = sim.create_release("shop", "1.4.0", "gcash", "production", idempotency_key="c").release_id
    steps: list[tuple[actions.Action, Callable[[], ReleaseSnapshot]]] = [
        (
            actions.UpdateBasicInfo({"description": "A shop"}),
            lambda: sim.update_basic_info(
                rid, {"description": "A shop"}, idempotency_key=next(keys)
            ),
        ),
        (
            actions.UpdateConfiguration({"theme": "dark"}),
            lambda: sim.update_configuration(rid, {"theme": "dark"}, idempotency_key=next(keys)),
        ),
        (
            actions.RunCompatibilityTest("C-000001"),
            lambda: sim.run_compatibility_test(rid, idempotency_key=next(keys)),
        ),
        (actions.Apply(), lambda: sim.apply(rid, idempotency_key=next(keys))),
        (
            actions.ReviewApplication(approve=True, reason="approved by the reviewer"),
            lambda: sim.review(rid, True),
        ),
        (actions.CompleteTesting(), lambda: sim.complete_testing(rid, idempotency_key=next(keys))),
        (actions.SetGrayscale(30), lambda: sim.set_grayscale(rid, 30, idempotency_key=next(keys))),
        (actions.FullRelease(), lambda: sim.full_release(rid, idempotency_key=next(keys))),
    ]
    for action, call in steps:
        sim.advance(60)
        before = sim.get_release(rid)
        answer = call()
        computed = engine.effect(before, action, app, sim.now())
        if isinstance(action, actions.RunCompatibilityTest):  # test_seconds=0: done at once
            assert answer.compatibility is not None and computed.compatibility is not None
            assert answer.compatibility.report_id == computed.compatibility.report_id
            assert answer.compatibility.status is CompatibilityStatus.FINISHED
            continue
        assert _shown(answer) == _shown(computed), action
    assert sim.get_release(rid).stage is Stage.FULL_RELEASE


def test_the_simulator_refuses_what_the_engine_refuses_with_the_same_words(
    sim: Simulator,
) -> None:
    release = sim.create_release("shop", "1.4.0", "gcash", "production", idempotency_key="c")
    app = sim.apps()[0]

    with pytest.raises(InvalidState) as by_simulator:
        sim.complete_testing(release.release_id, idempotency_key="t")
    with pytest.raises(InvalidState) as by_engine:
        engine.effect(sim.get_release(release.release_id), actions.CompleteTesting(), app, AT)

    assert str(by_simulator.value) == str(by_engine.value)


def _shown(release: ReleaseSnapshot) -> ReleaseSnapshot:
    """What the engine decides: everything but the simulator's own schedule note."""
    extra = {k: v for k, v in release.extra.items() if k != "next_change_at"}
    return replace(release, extra=extra)
