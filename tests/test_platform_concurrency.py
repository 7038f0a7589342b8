"""Two processes on one simulator database: no lost updates, no 'database is locked'.

The controller and a person running ``relctl platform ...`` share one SQLite file; every
mutation is one ``BEGIN IMMEDIATE`` transaction, so concurrent writers queue instead of
overwriting each other.
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from controller.platform.protocol import Stage
from controller.platform.sim import Simulator

T0 = datetime(2025, 1, 1, tzinfo=UTC)
ROUNDS = 80


def _worker(db: str, name: str, shared_keys: bool, start: Any = None) -> None:
    """One process: advance the clock, create releases, race the other on shared keys."""
    with Simulator(db) as sim:
        if start is not None:
            start.wait(timeout=60)  # both processes begin writing at the same moment
        for i in range(ROUNDS):
            sim.advance(1)  # read-modify-write of the shared clock
            sim.upload(f"{name}{i}", "1.0.0")
            sim.create_release(
                f"{name}{i}", "1.0.0", "gcash", "production", idempotency_key=f"{name}-{i}"
            )
            if shared_keys:  # both processes send the same calls: only one may act
                sim.create_release(
                    "shared", "1.0.0", "gcash", "production", idempotency_key="shared-create"
                )
                sim.update_basic_info(
                    "R-000001", {"description": "same"}, idempotency_key=f"shared-info-{i}"
                )


def _prepare(db: Path) -> None:
    with Simulator(db) as sim:
        sim.set_clock(manual=True, at=T0)
        sim.set_app("gcash", build_seconds=5)
        sim.upload("shared", "1.0.0")


def test_two_processes_mutating_one_database_lose_nothing(tmp_path: Path) -> None:
    db = tmp_path / "platform.db"
    _prepare(db)
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_worker, args=(str(db), name, True)) for name in ("a", "b")]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert [w.exitcode for w in workers] == [0, 0]

    with Simulator(db) as sim:
        assert sim.now() == T0 + timedelta(seconds=2 * ROUNDS)  # every advance counted
        releases = sim.releases()
        assert len(releases) == 2 * ROUNDS + 1  # the shared create acted once
        assert len({r.release_id for r in releases}) == len(releases)
        assert [r.release_id for r in releases] == [f"R-{i:06d}" for i in range(1, 2 * ROUNDS + 2)]
        assert sum(r.mini_program == "shared" for r in releases) == 1
        # lazy progress happens once per release, stamped with its deadline
        sim.advance(5)
        for release in sim.releases():
            assert release.stage is Stage.NEW_VERSION_CREATED
            assert release.stage_times[Stage.NEW_VERSION_CREATED] == release.created_at + (
                timedelta(seconds=5)
            )


def test_the_cli_and_a_controller_process_share_the_database(tmp_path: Path) -> None:
    db = tmp_path / "platform.db"
    _prepare(db)
    env = {**os.environ, "RELCTL_PLATFORM_DB": str(db)}
    script = (
        "from controller.cli_platform import platform; import sys\n"
        "for i in range(10):\n"
        "    platform.main(['clock', '--advance', '1s'], standalone_mode=False)\n"
        "    platform.main(['upload', f'cli{i}', '1.0.0'], standalone_mode=False)\n"
    )
    person = subprocess.Popen(
        [sys.executable, "-c", script], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    context = multiprocessing.get_context("spawn")
    controller = context.Process(target=_worker, args=(str(db), "c", False))
    controller.start()
    controller.join(timeout=120)
    _, stderr = person.communicate(timeout=120)
    assert person.returncode == 0, stderr.decode()
    assert b"locked" not in stderr
    assert controller.exitcode == 0
    with Simulator(db) as sim:
        assert sim.now() == T0 + timedelta(seconds=10 + ROUNDS)
        assert len(sim.versions()) == 1 + 10 + ROUNDS
