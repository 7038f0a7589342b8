"""The lease on the git remote (``refs/relctl/lease``): one replica acts, the others wait.

Real bare remotes and real clones; only the monotonic clock of each replica is fake here.
``test_ha.py`` runs real replica processes with real clocks and kills the leader.
"""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path

import pytest
from gitutil import isolate_git, make_remote

from controller.lease import LEASE_REF, Lease, LeaseRecord
from controller.metrics import Metrics

DURATION = 30.0


@pytest.fixture(autouse=True)
def _git(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_git(monkeypatch, tmp_path / "home")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def clone(remote: str, path: Path) -> Path:
    subprocess.run(["git", "clone", "-q", remote, str(path)], check=True)
    return path


def replica(
    remote: str, tmp: Path, name: str, metrics: Metrics | None = None
) -> tuple[Lease, Clock]:
    root = clone(remote, tmp / name)
    clock = Clock()
    return Lease(lambda: root, name, DURATION, clock=clock, metrics=metrics), clock


def holder(remote: str) -> str:
    message = subprocess.run(
        ["git", "--git-dir", remote.removeprefix("file://"), "log", "-1", "--format=%B", LEASE_REF],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    record = LeaseRecord.parse(message.strip())
    assert record is not None
    return record.holder


def test_the_first_replica_takes_the_lease_and_the_others_wait(tmp_path: Path) -> None:
    remote = make_remote(tmp_path, {"README": "x"})
    metrics = Metrics()
    a, a_clock = replica(remote, tmp_path, "a", metrics)
    b, b_clock = replica(remote, tmp_path, "b")
    assert a.acquire() and a.held()
    assert metrics.leader._value.get() == 1
    assert not b.acquire() and not b.held()
    assert holder(remote) == "a"
    # a renews every pass: b never sees the lease unchanged for a whole duration
    for _ in range(5):
        a_clock.now += DURATION / 2
        b_clock.now += DURATION / 2
        assert a.acquire()
        assert not b.acquire()
    assert holder(remote) == "a"


def test_a_standby_takes_over_a_lease_nobody_renewed_for_its_duration(tmp_path: Path) -> None:
    remote = make_remote(tmp_path, {"README": "x"})
    a, a_clock = replica(remote, tmp_path, "a")
    b, b_clock = replica(remote, tmp_path, "b")
    assert a.acquire()
    assert not b.acquire()  # b starts counting from the sha it saw
    b_clock.now += DURATION - 1
    assert not b.acquire()
    b_clock.now += 2
    assert b.acquire() and holder(remote) == "b"
    # a's own clock says its lease ran out too: it does not act, and cannot take it back
    a_clock.now += DURATION
    assert not a.held()
    assert not a.acquire()


def test_the_holder_stops_believing_it_leads_before_any_standby_can_take_over(
    tmp_path: Path,
) -> None:
    remote = make_remote(tmp_path, {"README": "x"})
    a, a_clock = replica(remote, tmp_path, "a")
    b, b_clock = replica(remote, tmp_path, "b")
    assert a.acquire()
    assert not b.acquire()
    # the same real time passes for both
    a_clock.now += DURATION
    b_clock.now += DURATION
    assert not a.held()  # a counted from before its push: it stops acting first
    assert b.acquire()


def test_a_released_lease_is_taken_at_once(tmp_path: Path) -> None:
    remote = make_remote(tmp_path, {"README": "x"})
    a, _ = replica(remote, tmp_path, "a")
    b, _ = replica(remote, tmp_path, "b")
    assert a.acquire()
    a.release()
    assert not a.held()
    assert b.acquire() and holder(remote) == "b"


def test_of_ten_replicas_racing_for_a_free_lease_exactly_one_wins(tmp_path: Path) -> None:
    remote = make_remote(tmp_path, {"README": "x"})
    leases = [replica(remote, tmp_path, f"r{i}")[0] for i in range(10)]
    start = threading.Barrier(len(leases))
    won: list[str] = []
    errors: list[BaseException] = []

    def race(lease: Lease) -> None:
        start.wait()
        try:
            if lease.acquire():
                won.append(lease.holder)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=race, args=(lease,)) for lease in leases]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(won) == 1 and holder(remote) == won[0]


@pytest.mark.parametrize(
    "message",
    [
        '{"holder": "eve", "renewed": "2026-12-03T00:00:00+00:00", "duration": 1e300}',
        '{"holder": "eve", "renewed": "2026-12-03T00:00:00+00:00", "duration": Infinity}',
        '{"holder": "eve", "renewed": "2026-12-03T00:00:00+00:00", "duration": -5}',
        "x" * (1 << 20),
    ],
)
def test_a_pushed_lease_commit_cannot_keep_standbys_out_forever(
    tmp_path: Path, message: str
) -> None:
    """Anyone who can push can write refs/relctl/lease: one hostile commit (a duration of
    forever, a non-number, a huge message) must not stop every replica from ever leading."""
    remote = make_remote(tmp_path, {"README": "x"})
    bare = remote.removeprefix("file://")
    env = {"GIT_AUTHOR_NAME": "Eve", "GIT_AUTHOR_EMAIL": "eve@example.net",
           "GIT_COMMITTER_NAME": "Eve", "GIT_COMMITTER_EMAIL": "eve@example.net"}  # fmt: skip
    tree = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
    subprocess.run(["git", "--git-dir", bare, "hash-object", "-w", "-t", "tree", "/dev/null"],
                   check=True, capture_output=True)  # fmt: skip
    sha = subprocess.run(
        ["git", "--git-dir", bare, "commit-tree", tree, "-F", "-"],
        input=message, check=True, capture_output=True, text=True,
        env={**os.environ, **env},
    ).stdout.strip()  # fmt: skip
    subprocess.run(["git", "--git-dir", bare, "update-ref", LEASE_REF, sha], check=True)
    a, a_clock = replica(remote, tmp_path, "a")
    assert not a.acquire() or holder(remote) == "a"  # a fresh sight of the ref: may wait
    a_clock.now += DURATION * 10 + 1  # at most ten of its own lease periods
    assert a.acquire() and holder(remote) == "a"
