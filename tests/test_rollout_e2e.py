"""Rollouts end to end: real git, the real simulator, the real controller; only the clock is
fake (the simulator's manual clock, which the controller reads).

A schedule rolls out by itself with its soak time, an analysis on the platform's feedback
passes or halts (crash spike, no data), each command is a commit in a person's clone, stop the
line holds everything, abort cancels.
"""

from __future__ import annotations

import json
from datetime import UTC, timedelta
from pathlib import Path

import yaml
from click.testing import CliRunner
from controller_world import ACCESS, World, make_world, manifest

from controller.cli import cli
from controller.commands import Command, run_command
from controller.model import Phase, Status

PATH = "releases/shop/gcash.yaml"
KEY = "shop/gcash"

CONFIG = """\
apiVersion: relctl/v1
kind: Config
targetApps:
  gcash: {name: GCash, environment: production, testersMax: 50}
  dana: {name: DANA, environment: production, testersMax: 20, grayscaleValues: [10, 50]}
analysisTemplates:
  crash:
    metrics:
      - name: crash-rate
        provider: platform
        query: crashRate
        successCondition: result < 1.5
        failureCondition: result >= 5
        minSampleUsers: 1000
"""

STEPS = [
    {"grayscale": 10},
    {"pause": {"duration": "1h"}},
    {"analysis": {"template": "crash"}},
    {"grayscale": 50},
    {"pause": {}},
    {"grayscale": 100},
]


def rollout_manifest(**rollout: object) -> str:
    document = yaml.safe_load(manifest(complete=True))
    del document["spec"]["grayscale"]
    document["spec"]["rollout"] = {"steps": STEPS, **rollout}
    return yaml.safe_dump(document, sort_keys=False)


def shop(world: World) -> Status:
    return world.statuses()[KEY]


def command(world: World, which: Command) -> None:
    """The person runs ``relctl <command> shop gcash`` in their clone and pushes."""
    world.person.pull()
    world.person.git("config", "user.name", world.person.name)
    world.person.git("config", "user.email", world.person.email)
    run_command(world.person.path, which, "shop", "gcash", world.simulator.now())
    world.person.push()


def release_id(world: World) -> str:
    return next(s.release_id for s in world.simulator.releases() if s.version == "1.4.0")


def roll_to_first_step(tmp_path: Path, world: World) -> Status:
    world.edit(PATH, rollout_manifest())
    statuses = world.run_until(lambda s: KEY in s and s[KEY].grayscale == 10)
    status = statuses[KEY]
    assert status.rollout is not None and status.rollout.step == 1  # soaking
    return status


def test_a_schedule_rolls_out_soaks_analyses_and_waits_for_promote(tmp_path: Path) -> None:
    with make_world(tmp_path, {"relctl.yaml": CONFIG, "access.yaml": ACCESS}, pilot_apps=()) as w:
        status = roll_to_first_step(tmp_path, w)
        w.simulator.set_metrics(release_id(w), crash_rate=0.3, error_rate=0.1)
        w.simulator.advance(30 * 60)
        w.pass_once()
        assert shop(w).grayscale == 10, "the soak is not over after 30 minutes"
        w.simulator.advance(31 * 60)
        w.pass_once()  # soak over: the analysis starts
        w.pass_once()  # measured, passed: 50%, then waiting for a person
        status = shop(w)
        assert status.grayscale == 50
        assert status.phase is Phase.HALTED
        assert status.rollout is not None
        assert status.rollout.halt == "WaitingForPromotion"
        assert [r.result.value for r in status.rollout.runs] == ["Successful"]
        assert any(e.reason == "StepCompleted" for e in status.history)
        shown = CliRunner().invoke(cli, ["status", "shop", "gcash", "--repo", str(w.person.path)])
        assert shown.exit_code == 0, shown.output
        assert "  >  5. pause until promoted" in shown.output
        assert "WaitingForPromotion" in shown.output
        assert "     1. grayscale 10%                    done" in shown.output
        assert "crash-rate = 0.3, 10,000 users: Successful (result < 1.5)" in shown.output
        as_json = CliRunner().invoke(
            cli, ["status", "shop", "gcash", "--repo", str(w.person.path), "--format", "json"]
        )
        assert as_json.exit_code == 0, as_json.output
        detail = json.loads(as_json.output)
        assert detail["release"] == "shop/gcash"
        assert detail["exposure"] == 50
        steps = detail["rollout"]["steps"]
        assert steps[0] == {"index": 1, "step": "grayscale 10%", "state": "done"}
        assert steps[4] == {"index": 5, "step": "pause until promoted", "state": "current"}
        assert all(step["state"] == "pending" for step in steps[5:])
        progress = detail["rollout"]["progress"]
        assert progress["step"] == 5 and progress["halt"] == "WaitingForPromotion"
        assert [(r["metric"], r["value"], r["result"]) for r in progress["runs"]] == [
            ("crash-rate", 0.3, "Successful")
        ]
        w.simulator.advance(24 * 3600)
        w.pass_once()
        assert shop(w).grayscale == 50, "a pause without duration waits for a person"
        command(w, Command.PROMOTE)
        w.pass_once()
        w.pass_once()
        status = shop(w)
        assert status.phase is Phase.RELEASED
        assert status.rollout is not None and status.rollout.step == len(STEPS)
        grays = [req for op, req in w.effects("set_grayscale")]
        assert len(grays) == 2  # 10 and 50, each once
        assert len(w.effects("full_release")) == 1


def test_a_crash_spike_halts_with_the_measurement_and_retry_continues(tmp_path: Path) -> None:
    with make_world(tmp_path, {"relctl.yaml": CONFIG, "access.yaml": ACCESS}, pilot_apps=()) as w:
        roll_to_first_step(tmp_path, w)
        w.simulator.set_metrics(release_id(w), crash_rate=8.5)
        w.simulator.advance(3601)
        w.pass_once()
        w.pass_once()
        status = shop(w)
        assert status.phase is Phase.HALTED and status.grayscale == 10
        assert status.rollout is not None and status.rollout.halt == "AnalysisFailed"
        assert "crash-rate = 8.5 (result >= 5)" in status.rollout.message
        assert any(e.reason == "AnalysisFailed" for e in status.history)
        w.simulator.advance(3600)
        w.pass_once()
        assert shop(w).grayscale == 10, "a failed analysis holds the exposure"
        w.simulator.set_metrics(release_id(w), crash_rate=0.2)
        w.simulator.advance(60)
        command(w, Command.RETRY)
        w.pass_once()
        w.pass_once()
        assert shop(w).grayscale == 50


def test_too_few_users_is_inconclusive_not_success(tmp_path: Path) -> None:
    with make_world(tmp_path, {"relctl.yaml": CONFIG, "access.yaml": ACCESS}, pilot_apps=()) as w:
        w.simulator.set_app("gcash", users=5000)  # 10% = 500 users < minSampleUsers 1000
        roll_to_first_step(tmp_path, w)
        w.simulator.set_metrics(release_id(w), crash_rate=0.0)
        w.simulator.advance(3601)
        w.pass_once()
        w.pass_once()
        status = shop(w)
        assert status.rollout is not None
        assert status.rollout.halt == "AnalysisInconclusive"
        assert "500 users on the version, fewer than 1,000" in status.rollout.message
        assert status.grayscale == 10


def test_stop_the_line_holds_and_pause_resume_abort_are_commits(tmp_path: Path) -> None:
    with make_world(tmp_path, {"relctl.yaml": CONFIG, "access.yaml": ACCESS}, pilot_apps=()) as w:
        roll_to_first_step(tmp_path, w)
        w.edit("relctl.yaml", CONFIG + 'stopTheLine: "INC-7: payments down"\n')
        w.simulator.advance(7200)
        w.pass_once()
        status = shop(w)
        assert status.rollout is not None and status.rollout.halt == "StopTheLine"
        assert "INC-7" in status.rollout.message and status.grayscale == 10
        w.edit("relctl.yaml", CONFIG)
        command(w, Command.PAUSE)
        w.pass_once()
        status = shop(w)
        assert status.phase is Phase.PAUSED and status.grayscale == 10
        log = w.person.git("log", "-1", "--format=%s", "--", PATH)
        assert log == "rollout: pause shop/gcash 1.4.0"
        command(w, Command.ABORT)
        w.pass_once()
        w.pass_once()
        assert shop(w).phase is Phase.CANCELED
        assert len(w.effects("cancel")) == 1


def test_a_freeze_window_holds_raising_until_it_ends(tmp_path: Path) -> None:
    with make_world(tmp_path, {"relctl.yaml": CONFIG, "access.yaml": ACCESS}, pilot_apps=()) as w:
        roll_to_first_step(tmp_path, w)
        start = w.simulator.now().astimezone(UTC)
        cron = f"{start.minute} {start.hour} * * *"
        window = (
            "freezeWindows:\n"
            f"  - {{name: release-freeze, kind: deny, schedule: '{cron}', duration: 3h}}\n"
        )
        w.edit("relctl.yaml", CONFIG + window)
        w.simulator.advance(3601)
        w.pass_once()  # the soak ends: soaking is not held by a freeze
        w.pass_once()  # the analysis passes; raising to 50% waits
        status = shop(w)
        assert status.grayscale == 10
        assert status.rollout is not None and status.rollout.halt == "FreezeWindow"
        assert "freeze window release-freeze until" in status.rollout.message
        assert status.rollout.next_time is not None
        assert status.rollout.next_time - start <= timedelta(hours=3)
        w.simulator.advance(2 * 3600)
        w.pass_once()
        assert shop(w).grayscale == 50


WAVE_CONFIG = CONFIG.replace(
    "analysisTemplates:",
    "  tng: {name: Touch 'n Go, environment: production, testersMax: 20}\nanalysisTemplates:",
)


def wave_manifest(app: str, after: str | None) -> str:
    document = yaml.safe_load(manifest(target_app=app, complete=True))
    del document["spec"]["grayscale"]
    rollout: dict[str, object] = {
        "steps": [{"grayscale": 10}, {"grayscale": 50}, {"grayscale": 100}]
    }
    if after is not None:
        rollout["after"] = {"targetApp": after, "grayscale": 50, "soak": "1h"}
    document["spec"]["rollout"] = rollout
    return yaml.safe_dump(document, sort_keys=False)


def test_a_three_app_wave_goes_gcash_then_dana_then_tng(tmp_path: Path) -> None:
    with make_world(
        tmp_path, {"relctl.yaml": WAVE_CONFIG, "access.yaml": ACCESS}, pilot_apps=()
    ) as w:
        w.simulator.set_app(
            "tng", pilot_required=False, review="manual", build_seconds=10, test_seconds=10
        )
        w.simulator.set_app("dana", grayscale_values=())
        w.edit("releases/shop/gcash.yaml", wave_manifest("gcash", None))
        w.edit("releases/shop/dana.yaml", wave_manifest("dana", "gcash"))
        w.edit("releases/shop/tng.yaml", wave_manifest("tng", "dana"))
        statuses = w.run_until(lambda s: len(s) == 3 and s["shop/gcash"].phase is Phase.RELEASED)
        assert statuses["shop/dana"].grayscale == 0
        assert statuses["shop/tng"].grayscale == 0
        dana = statuses["shop/dana"].rollout
        assert dana is not None and dana.halt == "WaitingForWave"
        assert "waiting for gcash to reach 50% for 1h" in dana.message
        w.simulator.advance(3600)
        statuses = w.run_until(lambda s: s["shop/dana"].phase is Phase.RELEASED)
        assert statuses["shop/tng"].grayscale == 0
        w.simulator.advance(3600)
        statuses = w.run_until(lambda s: s["shop/tng"].phase is Phase.RELEASED)
        order = sorted(
            (at, app)
            for app in ("gcash", "dana", "tng")
            for at in [statuses[f"shop/{app}"].rollout.step_started_at]  # type: ignore[union-attr]
        )
        assert [app for _at, app in order] == ["gcash", "dana", "tng"]


def test_resume_continues_and_promote_full_skips_to_full_release(tmp_path: Path) -> None:
    with make_world(tmp_path, {"relctl.yaml": CONFIG, "access.yaml": ACCESS}, pilot_apps=()) as w:
        roll_to_first_step(tmp_path, w)
        command(w, Command.PAUSE)
        w.simulator.advance(7200)
        w.pass_once()
        assert shop(w).phase is Phase.PAUSED
        command(w, Command.RESUME)
        w.pass_once()  # the soak is over: the analysis starts
        status = shop(w)
        assert status.rollout is not None and status.rollout.step == 2
        assert status.phase is Phase.GRAYSCALE
        command(w, Command.PROMOTE_FULL)
        w.pass_once()
        w.pass_once()
        status = shop(w)
        assert status.phase is Phase.RELEASED and status.grayscale == 100
        assert len(w.effects("full_release")) == 1


def test_on_failure_cancel_cancels_the_version(tmp_path: Path) -> None:
    with make_world(tmp_path, {"relctl.yaml": CONFIG, "access.yaml": ACCESS}, pilot_apps=()) as w:
        w.edit(PATH, rollout_manifest(onFailure="cancel"))
        w.run_until(lambda s: KEY in s and s[KEY].grayscale == 10)
        w.simulator.set_metrics(release_id(w), crash_rate=12.0)
        w.simulator.advance(3601)
        w.pass_once()
        w.pass_once()
        w.pass_once()
        status = shop(w)
        assert status.phase is Phase.CANCELED
        assert any(e.reason == "AnalysisFailed" for e in status.history)
        assert len(w.effects("cancel")) == 1
