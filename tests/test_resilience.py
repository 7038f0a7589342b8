"""The controller under adversity: platform faults, a permanent failure, and SIGKILL.

Real git remotes, the real simulator (its fault injection), real controller processes killed
with SIGKILL at random points. What must hold: every release converges to what main asks,
a release that cannot move stalls without holding the others back, and no platform effect
ever happens twice (no second release, apply, complete or grayscale call for one step).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from controller_world import World, make_world, manifest
from gitutil import assert_fast_forward_only, isolate_git, process_group

from controller.model import ConditionType, Phase, Reason, Status
from controller.platform.protocol import Stage


@pytest.fixture(autouse=True)
def _git(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_git(monkeypatch, tmp_path / "home")


RELEASES = {
    # pilot on gcash: testers, complete the pilot, then straight to full release
    "releases/shop/gcash.yaml": manifest(complete=True, grayscale=100),
    # no pilot on dana: grayscale 50 of the allowed {10, 50}
    "releases/shop/dana.yaml": manifest(target_app="dana", grayscale=50),
    # every build of rewards 2.0.0 fails: a permanent failure of one release
    "releases/rewards/gcash.yaml": manifest("rewards", version="2.0.0", grayscale=10),
}


def converged(statuses: dict[str, Status]) -> bool:
    return (
        statuses["shop/gcash"].phase is Phase.RELEASED
        and statuses["shop/gcash"].qr_code is not None
        and statuses["shop/dana"].phase is Phase.GRAYSCALE
        and statuses["shop/dana"].grayscale == 50
        and statuses["rewards/gcash"].phase is Phase.BUILD_FAILED
    )


def effects_by_release(world: World) -> Counter[tuple[str, str]]:
    """How often each mutation took effect, per (operation, release or target)."""
    ids = {r.release_id: f"{r.mini_program}/{r.target_app}" for r in world.simulator.releases()}
    counts: Counter[tuple[str, str]] = Counter()
    for operation, request in world.effects():
        body = json.loads(request)
        if "release_id" in body:
            where = ids[body["release_id"]]
        else:
            where = f"{body['mini_program']}/{body['target_app']}"
        counts[(operation, where)] += 1
    return counts


def assert_every_effect_happened_once(world: World) -> None:
    counts = effects_by_release(world)
    assert counts == {
        ("create_release", "shop/gcash"): 1,
        ("update_basic_info", "shop/gcash"): 1,
        ("update_configuration", "shop/gcash"): 1,
        ("run_compatibility_test", "shop/gcash"): 1,
        ("apply", "shop/gcash"): 1,
        ("set_testers", "shop/gcash"): 1,
        ("complete_testing", "shop/gcash"): 1,
        ("full_release", "shop/gcash"): 1,
        ("create_qr_code", "shop/gcash"): 1,
        ("create_release", "shop/dana"): 1,
        ("update_basic_info", "shop/dana"): 1,
        ("update_configuration", "shop/dana"): 1,
        ("run_compatibility_test", "shop/dana"): 1,
        ("apply", "shop/dana"): 1,
        ("set_grayscale", "shop/dana"): 1,
        ("create_release", "rewards/gcash"): 1,
    }, counts


def upload_versions(world: World) -> None:
    world.simulator.upload("rewards", "2.0.0", build_fails=True)


# --------------------------------------------------------------------------------------------
# platform faults
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_releases_converge_through_errors_and_unknown_results(tmp_path: Path) -> None:
    with make_world(tmp_path, RELEASES) as world:
        upload_versions(world)
        world.simulator.faults(error_rate=0.3, unknown_rate=0.3, seed=7)
        errors: Counter[str] = Counter()
        for _ in range(150):
            world.pass_once()
            statuses = world.statuses()
            errors.update(s.last_error.code for s in statuses.values() if s.last_error)
            if converged(statuses):
                break
            world.approve_all()
            world.simulator.advance(60)
        assert converged(statuses), {k: s.phase for k, s in statuses.items()}
        world.simulator.faults(off=True)
        assert_every_effect_happened_once(world)
        # the faults were real: releases recorded both kinds on the way
        assert errors["Transient"] and errors["Unknown"], errors


def test_a_permanent_failure_stalls_one_release_while_the_others_converge(
    tmp_path: Path,
) -> None:
    with make_world(tmp_path, RELEASES) as world:
        upload_versions(world)
        statuses = world.run_until(converged)
        stalled = statuses["rewards/gcash"]
        ready = stalled.condition(ConditionType.READY)
        assert ready is not None and ready.reason == Reason.BUILD_FAILED
        assert "rewards" in ready.message or "build" in ready.message.lower()
        # more passes change nothing for anyone: the stall is final until the version changes
        head = world.pass_once()
        assert head.pushed is None
        assert_every_effect_happened_once(world)


# --------------------------------------------------------------------------------------------
# crash safety
# --------------------------------------------------------------------------------------------

#: A controller process that runs passes back to back until it is killed.
CONTROLLER = """\
import sys
from pathlib import Path
from controller.daemon import Controller
from controller.gitops import Workspace
from controller.platform.sim import Simulator
from controller.trust import TrustSettings

remote, workdir, db = sys.argv[1:4]
simulator = Simulator(Path(db))
workspace = Workspace(remote, "main", Path(workdir)).open()
controller = Controller(
    workspace, simulator, now=simulator.now, trust=TrustSettings(first_use=True)
)
print("ready", flush=True)
while True:
    controller.pass_once(raise_errors=True)
"""


def kill_process_group(child: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """SIGKILL a controller started in its own session and every process it started, and
    return once none is left.

    A git command outlives the controller that ran it: it would go on writing refs in the
    workdir's clone under the next controller, and a child caught between fork and exec
    still holds the workdir's lock. The whole group goes, as when a machine or container dies.
    """
    deadline = time.monotonic() + timeout
    while alive := process_group(child.pid):
        assert time.monotonic() < deadline, f"still running after SIGKILL: {alive}"
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
        time.sleep(0.005)
    child.wait()


#: The remote is a server, not part of the controller: its side of a push (git-receive-pack,
#: which git runs locally for a file:// remote) gets a session of its own, so that killing the
#: controller's group does not kill it inside a ref update and leave the remote locked.
REMOTE_IN_ITS_OWN_SESSION = {
    "GIT_CONFIG_COUNT": "1",
    "GIT_CONFIG_KEY_0": "remote.origin.receivepack",
    "GIT_CONFIG_VALUE_0": "setsid git-receive-pack",
}

#: Another kill schedule: ``RELCTL_TEST_CRASH_SEED=7 pytest tests/test_resilience.py``.
CRASH_SEED = int(os.environ.get("RELCTL_TEST_CRASH_SEED", "20261125"))


@pytest.mark.slow
@pytest.mark.inprocess_only  # the killed children open the simulator's file themselves
def test_sigkill_at_random_points_never_duplicates_a_platform_effect(tmp_path: Path) -> None:
    rng = random.Random(CRASH_SEED)
    with make_world(tmp_path, RELEASES) as world:
        upload_versions(world)
        # every platform call takes a moment, so kills land inside passes, between calls
        world.simulator.faults(latency=0.004)
        world.workspace.close()  # the killed processes use the same workdir, one at a time
        kills = 0
        for _ in range(14):
            child = subprocess.Popen(
                [sys.executable, "-c", CONTROLLER, world.remote, str(world.workspace.workdir),
                 str(world.simulator.path)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env={**os.environ, **REMOTE_IN_ITS_OWN_SESSION},
                start_new_session=True,  # its own process group: its git commands die with it
            )  # fmt: skip
            assert child.stdout is not None
            assert child.stdout.readline() == b"ready\n", child.stderr and child.stderr.read()
            time.sleep(rng.uniform(0.0, 0.35))
            if child.poll() is None:
                kills += 1
            kill_process_group(child)
            assert child.returncode == -signal.SIGKILL, child.stderr and child.stderr.read()
            world.approve_all()
            world.simulator.advance(60)
        assert kills == 14
        world.simulator.faults(off=True)
        world.workspace.open()  # a restarted controller in the same workdir finishes the job
        world.run_until(converged)
        assert_every_effect_happened_once(world)
        stages = {f"{r.mini_program}/{r.target_app}": r.stage for r in world.simulator.releases()}
        assert stages == {
            "shop/gcash": Stage.FULL_RELEASE,
            "shop/dana": Stage.GRAYSCALE,
            "rewards/gcash": Stage.BUILD_FAILED,
        }
        assert_fast_forward_only(world.remote)


def test_git_lock_files_left_by_a_killed_controller_do_not_block_the_next(
    tmp_path: Path,
) -> None:
    """A SIGKILL inside ``git commit`` or ``git update-ref`` leaves ``*.lock`` files behind;
    the next controller owns the workdir (its flock), so they are stale and it removes them."""
    with make_world(tmp_path, RELEASES) as world:
        upload_versions(world)
        world.pass_once()
        world.workspace.close()
        git_dir = world.workspace.root / ".git"
        for stale in ("index.lock", "HEAD.lock", "refs/heads/main.lock", "packed-refs.lock"):
            (git_dir / stale).write_text("")
        world.workspace.open()
        world.run_until(converged)
        assert not list(git_dir.rglob("*.lock"))
