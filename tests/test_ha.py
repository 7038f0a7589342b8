"""Several ``relctl`` replicas against one remote: exactly one acts, through the lease on
``refs/relctl/lease``; the leader is killed with SIGKILL again and again, a standby takes over,
and the simulator's idempotency table shows every platform effect happened once.

Real git remote, real replica processes (real clocks for the lease), the real simulator.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from controller_world import make_world
from gitutil import assert_fast_forward_only, isolate_git
from test_resilience import RELEASES, assert_every_effect_happened_once, converged, upload_versions

from controller.lease import LEASE_REF, LeaseRecord

# Real daemon processes open the simulator's file themselves: one transport is enough.
pytestmark = pytest.mark.inprocess_only

#: A replica: passes back to back (the lease check first), until it is killed.
REPLICA = """\
import sys, time
from pathlib import Path
from controller.daemon import Controller
from controller.gitops import Workspace
from controller.lease import Lease
from controller.platform.sim import Simulator
from controller.trust import TrustSettings


remote, workdir, db, name, duration = sys.argv[1:6]
simulator = Simulator(Path(db))
workspace = Workspace(remote, "main", Path(workdir)).open()
lease = Lease(lambda: workspace.root, name, float(duration))
controller = Controller(
    workspace, simulator, now=simulator.now, trust=TrustSettings(first_use=True), lease=lease
)
print("ready", flush=True)
while True:
    controller.pass_once()
    time.sleep(0.05)
"""

LEASE_SECONDS = 2.0


@pytest.fixture(autouse=True)
def _git(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_git(monkeypatch, tmp_path / "home")


def lease_holder(remote: str) -> str | None:
    result = subprocess.run(
        ["git", "--git-dir", remote.removeprefix("file://"), "log", "-1", "--format=%B", LEASE_REF],
        check=False, capture_output=True, text=True,
    )  # fmt: skip
    record = LeaseRecord.parse(result.stdout.strip()) if result.returncode == 0 else None
    return record.holder if record is not None and record.duration > 0 else None


def wait_for_holder(remote: str, among: set[str], deadline: float = 60.0) -> str:
    """The lease holder once it is one of ``among`` (a generous bound, not a timing claim)."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        holder = lease_holder(remote)
        if holder in among:
            return holder
        time.sleep(0.05)
    raise AssertionError(f"no replica of {sorted(among)} took the lease: {lease_holder(remote)}")


@pytest.mark.slow
def test_three_replicas_and_repeated_leader_kills_never_duplicate_a_platform_effect(
    tmp_path: Path,
) -> None:
    rng = random.Random(20261203)
    with make_world(tmp_path, RELEASES) as world:
        upload_versions(world)
        world.simulator.faults(latency=0.004)
        replicas: dict[str, subprocess.Popen[bytes]] = {}
        generation = 0

        def start(slot: int) -> None:
            nonlocal generation
            generation += 1
            name = f"replica{slot}-g{generation}"
            child = subprocess.Popen(
                [sys.executable, "-c", REPLICA, world.remote, str(tmp_path / f"work{slot}"),
                 str(world.simulator.path), name, str(LEASE_SECONDS)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )  # fmt: skip
            assert child.stdout is not None
            assert child.stdout.readline() == b"ready\n", child.stderr and child.stderr.read()
            replicas[name] = child

        try:
            for slot in range(3):
                start(slot)
            leaders: list[str] = []
            for _ in range(5):
                leader = wait_for_holder(world.remote, set(replicas))
                leaders.append(leader)
                time.sleep(rng.uniform(0.2, 1.2))  # the leader acts for a while
                world.approve_all()
                world.simulator.advance(60)
                victim = replicas.pop(leader)
                victim.send_signal(signal.SIGKILL)
                victim.wait(30)
                assert victim.returncode == -signal.SIGKILL
                for other in replicas.values():
                    assert other.poll() is None, other.stderr and other.stderr.read()
                slot = int(leader.removeprefix("replica").split("-")[0])
                start(slot)  # restarted in its own workdir, under a new name
            # a standby took over after every kill
            assert len(set(leaders)) == len(leaders)
            wait_for_holder(world.remote, set(replicas))
        finally:
            for child in replicas.values():
                child.send_signal(signal.SIGKILL)
                child.wait(30)
        # the replicas did the work: only what is left is finished in-process
        assert len(world.effects()) >= 3
        world.simulator.faults(off=True)
        world.run_until(converged)
        assert_every_effect_happened_once(world)
        assert_fast_forward_only(world.remote)
