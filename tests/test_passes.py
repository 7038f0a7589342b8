"""Passes that cost nothing when nothing changed, and cheap cold starts (issue 15).

A pass over an unchanged main with nothing due is one ``ls-remote``: no fetch, no tree read,
no manifest, no platform call. Every reason to do a real pass does one. A restarted
controller learns from its state when each release was observed and the parsed form of each
status, and neither observes settled releases again nor parses their YAML.

Counted, never timed: git subprocesses (every one goes through ``gitops.run_git``), platform
calls (a counting wrapper around the real adapter) and status parses. Only the clock is fake.
The main scenarios also run over the HTTP contract; the others only in-process.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from controller_world import World, make_world, manifest
from gitutil import isolate_git

from controller import access, gitops, lease, reconcile
from controller import status as status_module
from controller.access import Ledger
from controller.daemon import Controller
from controller.model import ConditionStatus, ConditionType, Status
from controller.trust import TrustSettings, reset_trust

GCASH = "releases/shop/gcash.yaml"
DANA = "releases/shop/dana.yaml"


@pytest.fixture(autouse=True)
def _isolated_git(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_git(monkeypatch, tmp_path / "home")


class CountingPlatform:
    """The real adapter, counting every call by method name."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        found = getattr(self.inner, name)
        if not callable(found):
            return found

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            return found(*args, **kwargs)

        return call

    @property
    def total(self) -> int:
        return sum(self.calls.values())


@pytest.fixture
def git_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The git subcommand of every git process relctl starts (all go through run_git)."""
    calls: list[str] = []
    real = gitops.run_git

    def counting(cwd: Path, *args: str, **kwargs: Any) -> gitops.GitRun:
        calls.append(args[0])
        return real(cwd, *args, **kwargs)

    for module in (gitops, access, lease):
        monkeypatch.setattr(module, "run_git", counting)
    return calls


def ready(status: Status) -> bool:
    condition = status.condition(ConditionType.READY)
    return condition is not None and condition.status is ConditionStatus.TRUE


@pytest.fixture
def settled(tmp_path: Path) -> Iterator[tuple[World, CountingPlatform]]:
    """Two releases settled at grayscale (Ready), the controller counting platform calls,
    and one real pass after the last status commit (the one that finds nothing to do)."""
    files: dict[str, str | None] = {
        GCASH: manifest("shop", "gcash", grayscale=10),
        DANA: manifest("shop", "dana", grayscale=50),
    }
    with make_world(tmp_path, files, pilot_apps=()) as world:
        world.run_until(lambda s: len(s) == 2 and all(ready(x) for x in s.values()))
        counting = CountingPlatform(world.controller.platform)
        world.controller.platform = counting
        world.pass_once()  # the pass after the last status commit: real, commits nothing
        world.pass_once()
        counting.calls.clear()
        yield world, counting


def _commits(world: World) -> int:
    """Commits on the remote's main."""
    bare = world.tmp / "origin.git"
    return int(gitops.run_git(bare, "rev-list", "--count", "main").text)


def test_a_pass_over_an_unchanged_main_is_one_ls_remote_and_nothing_else(
    settled: tuple[World, CountingPlatform], git_calls: list[str]
) -> None:
    world, counting = settled
    before = world.controller.cache.quiet
    commits = _commits(world)
    git_calls.clear()
    world.simulator.advance(30)
    result = world.pass_once()
    assert git_calls == ["ls-remote"]
    assert counting.total == 0
    assert result.unchanged and result.pushed is None and not result.changed
    assert before is not None and result.releases == before.releases
    assert {r.key for r in result.releases} == {"shop/gcash", "shop/dana"}
    assert result.healthy
    assert _commits(world) == commits


@pytest.mark.inprocess_only
def test_a_new_commit_on_main_is_a_real_pass(
    settled: tuple[World, CountingPlatform], git_calls: list[str]
) -> None:
    world, _counting = settled
    world.person.pull()
    world.person.commit_and_push({"README.md": "release repo\n"}, "a readme")
    git_calls.clear()
    result = world.pass_once()
    assert not result.unchanged
    assert "fetch" in git_calls
    assert world.pass_once().unchanged  # and the pass after it is quiet again


@pytest.mark.inprocess_only
def test_a_manifest_change_is_acted_on_at_once(settled: tuple[World, CountingPlatform]) -> None:
    world, counting = settled
    world.edit(DANA, manifest("shop", "dana", grayscale=100), "full release")
    result = world.pass_once()
    assert not result.unchanged
    assert counting.calls["full_release"] == 1


@pytest.mark.inprocess_only
def test_a_resync_coming_due_is_a_real_pass_that_observes_the_settled_releases(
    settled: tuple[World, CountingPlatform],
) -> None:
    world, counting = settled
    cache = world.controller.cache
    assert cache.due is not None
    world.simulator.advance(cache.resync.total_seconds() - 60)
    assert world.pass_once().unchanged
    assert counting.total == 0
    world.simulator.advance(61)
    result = world.pass_once()
    assert not result.unchanged
    assert counting.calls["find_releases"] == 2  # both settled releases observed again
    counting.calls.clear()
    assert world.pass_once().unchanged
    assert counting.total == 0


@pytest.mark.inprocess_only
def test_a_release_in_flight_makes_every_pass_real(tmp_path: Path) -> None:
    with make_world(tmp_path, {}) as world:
        world.edit(GCASH, manifest(), "release shop")
        counting = CountingPlatform(world.controller.platform)
        world.controller.platform = counting
        for _ in range(4):  # building, then waiting for a review nobody gives
            world.simulator.advance(30)
            result = world.pass_once()
            assert not result.unchanged
        counting.calls.clear()
        world.simulator.advance(30)
        assert not world.pass_once().unchanged
        assert counting.calls["find_releases"] == 1  # under review: observed every pass


@pytest.mark.inprocess_only
def test_a_retry_coming_due_is_a_real_pass(tmp_path: Path) -> None:
    with make_world(
        tmp_path, {GCASH: manifest("shop", "gcash", grayscale=10)}, pilot_apps=()
    ) as world:
        world.run_until(lambda s: "shop/gcash" in s and ready(s["shop/gcash"]))
        world.simulator.advance(world.controller.cache.resync.total_seconds() + 1)
        world.simulator.faults(error_rate=1.0, seed=1)  # the platform is down for reads
        world.pass_once()  # resync: the observation fails, a retry is recorded
        world.pass_once()  # the status commit moved main: a real pass, nothing due before the retry
        status = world.controller.cache.statuses["shop/gcash"][1]
        assert status.next_retry is not None and status.last_error is not None
        assert world.controller.cache.due == status.next_retry
        world.simulator.faults(off=True)
        counting = CountingPlatform(world.controller.platform)
        world.controller.platform = counting
        assert world.pass_once().unchanged  # inside the backoff
        assert counting.total == 0
        world.simulator.advance((status.next_retry - world.simulator.now()).total_seconds() + 1)
        result = world.pass_once()
        assert not result.unchanged
        assert counting.calls["find_releases"] == 1
        assert world.statuses()["shop/gcash"].last_error is None


@pytest.mark.inprocess_only
def test_a_trust_reset_makes_the_next_pass_real_and_rereads_trust(
    settled: tuple[World, CountingPlatform], git_calls: list[str]
) -> None:
    world, _counting = settled
    anchor = world.controller.cache.tip
    assert anchor is not None
    reset_trust(Ledger(world.workspace.root), world.controller.state, anchor)
    git_calls.clear()
    result = world.pass_once()
    assert not result.unchanged
    assert "fetch" in git_calls
    assert world.pass_once().unchanged


@pytest.mark.inprocess_only
def test_an_unconfirmed_status_push_makes_the_next_pass_real(
    settled: tuple[World, CountingPlatform], git_calls: list[str]
) -> None:
    world, _counting = settled
    state = world.controller.state
    state.stage("0" * 40, {"shop/dana": b"a status commit a crash interrupted"})
    git_calls.clear()
    result = world.pass_once()
    assert not result.unchanged
    assert "fetch" in git_calls
    assert not state.unconfirmed()  # settled: the commit never reached main
    assert world.pass_once().unchanged


@pytest.mark.inprocess_only
def test_a_failed_pass_is_never_replayed_as_unchanged(
    settled: tuple[World, CountingPlatform], monkeypatch: pytest.MonkeyPatch
) -> None:
    world, _counting = settled
    world.person.pull()
    world.person.commit_and_push({"README.md": "x\n"}, "a readme")
    real_sync = world.workspace.sync

    def failing_sync() -> str:
        raise gitops.GitError("the remote went away")

    monkeypatch.setattr(world.workspace, "sync", failing_sync)
    assert world.controller.pass_once() is None
    monkeypatch.setattr(world.workspace, "sync", real_sync)
    assert not world.pass_once().unchanged


@pytest.mark.inprocess_only
def test_a_person_editing_a_status_file_is_a_real_pass_that_restores_it(
    settled: tuple[World, CountingPlatform],
) -> None:
    world, _counting = settled
    world.person.pull()
    path = world.person.path / "status" / "shop" / "dana.yaml"
    original = path.read_bytes()
    world.person.commit_and_push({"status/shop/dana.yaml": "forged: true\n"}, "edit a status")
    result = world.pass_once()
    assert not result.unchanged and result.edited == ("shop/dana",)
    world.person.pull()
    assert path.read_bytes() == world.controller.cache.statuses["shop/dana"][0] != original
    assert b"StatusEdited" in path.read_bytes()


# --------------------------------------------------------------------------------------------
# cold start: a new process over an existing workdir
# --------------------------------------------------------------------------------------------


def _restart(world: World) -> Controller:
    """A new controller process over the same workdir (the old one's state closed)."""
    old = world.controller
    old.close()
    controller = Controller(
        world.workspace, old.platform, now=world.simulator.now, trust=TrustSettings()
    )
    world.controller = controller
    return controller


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Status files parsed from YAML by the pass, by file."""
    counts: Counter[str] = Counter()
    real = status_module.parse_status

    def counting(data: bytes, *, file: str) -> Status | None:
        counts[file] += 1
        return real(data, file=file)

    monkeypatch.setattr(reconcile, "parse_status", counting)
    return counts


def test_a_restarted_controller_neither_observes_settled_releases_nor_parses_yaml(
    settled: tuple[World, CountingPlatform], parses: Counter[str]
) -> None:
    world, counting = settled
    before = {r.key: r.status for r in world.controller.cache.quiet.releases}  # type: ignore[union-attr]
    commits = _commits(world)
    _restart(world)
    world.simulator.advance(30)
    result = world.pass_once()
    assert not result.unchanged  # a new process always does one real pass
    assert counting.total == 0  # observed by the previous process within the resync period
    assert sum(parses.values()) == 0  # the parsed form came from the state, not the YAML
    assert {r.key: r.status for r in result.releases} == before
    assert _commits(world) == commits
    assert world.pass_once().unchanged


@pytest.mark.inprocess_only
def test_a_restarted_controller_validates_no_manifest_again(
    settled: tuple[World, CountingPlatform],
) -> None:
    world, _counting = settled
    first = world.controller.cache.validation
    assert first is not None and first.path is not None and first.path.is_file()
    manifests = len(world.controller.cache.loaded.releases)  # type: ignore[union-attr]
    _restart(world)
    world.simulator.advance(30)
    world.pass_once()
    validation = world.controller.cache.validation
    assert validation is not None and validation is not first  # read from the workdir's file
    assert (validation.stats.hits, validation.stats.misses) == (manifests, 0)


@pytest.mark.inprocess_only
def test_a_damaged_validation_cache_is_discarded_and_the_pass_is_the_same(
    settled: tuple[World, CountingPlatform],
) -> None:
    world, _counting = settled
    validation = world.controller.cache.validation
    assert validation is not None and validation.path is not None
    before = {r.key: r.status for r in world.controller.cache.quiet.releases}  # type: ignore[union-attr]
    data = bytearray(validation.path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    validation.path.write_bytes(bytes(data))
    _restart(world)
    world.simulator.advance(30)
    result = world.pass_once()
    again = world.controller.cache.validation
    assert again is not None and again.stats.hits == 0  # nothing believed from the damaged file
    assert {r.key: r.status for r in result.releases} == before


@pytest.mark.inprocess_only
def test_a_restarted_controller_observes_again_once_the_resync_is_due(
    settled: tuple[World, CountingPlatform],
) -> None:
    world, counting = settled
    _restart(world)
    world.simulator.advance(world.controller.cache.resync.total_seconds() + 1)
    world.pass_once()
    assert counting.calls["find_releases"] == 2


@pytest.mark.parametrize(
    "spoil",
    [
        'UPDATE parsed SET data = CAST(\'{"not": "a status"\' AS BLOB)',
        "UPDATE parsed SET data = CAST('[1, 2' AS BLOB)",
        "UPDATE parsed SET digest = zeroblob(16)",
        "UPDATE meta SET value = '\"relctl 0.0.0; status schema 0\"' WHERE name = 'parsed-format'",
        "UPDATE observed SET at = 'yesterday'",
    ],
    ids=["not-a-status", "truncated-json", "other-yaml", "other-version", "bad-time"],
)
@pytest.mark.inprocess_only
def test_a_corrupt_or_foreign_cache_in_the_state_is_discarded_never_trusted(
    settled: tuple[World, CountingPlatform], parses: Counter[str], spoil: str
) -> None:
    world, _counting = settled
    before = {r.key: r.status for r in world.controller.cache.quiet.releases}  # type: ignore[union-attr]
    commits = _commits(world)
    path = world.controller.state.path
    world.controller.close()
    with sqlite3.connect(path) as db:
        db.execute(spoil)
    _restart(world)
    result = world.pass_once()
    assert {r.key: r.status for r in result.releases} == before
    assert _commits(world) == commits
    if "observed" not in spoil:
        # both remembered statuses parsed from the YAML instead; the files in the
        # repository are not parsed at all (the controller relies on its own record)
        assert sum(parses.values()) == 2
    # the next start finds a good cache again
    parses.clear()
    _restart(world)
    world.pass_once()
    assert sum(parses.values()) == 0


# --------------------------------------------------------------------------------------------
# resync: the platform lists what changed (ListsReleases)
# --------------------------------------------------------------------------------------------


class NotListing:
    """The real adapter without ``list_releases`` (an adapter that cannot list changes)."""

    def __init__(self, inner: CountingPlatform) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        if name == "list_releases":
            raise AttributeError(name)
        return getattr(self.inner, name)


def _resync(world: World) -> None:
    """Move the clock to the earliest resync of the settled releases."""
    due = world.controller.cache.resync_due
    assert due is not None
    world.simulator.advance((due - world.simulator.now()).total_seconds() + 1)


@pytest.fixture
def listed(
    settled: tuple[World, CountingPlatform],
) -> tuple[World, CountingPlatform]:
    """Settled, and one resync done: the controller holds a list cursor."""
    world, counting = settled
    _resync(world)
    world.pass_once()  # lists what changed since the cursor of the first pass, and observes it
    assert world.controller.cache.cursor is not None
    assert world.controller.state.list_cursor() == world.controller.cache.cursor
    counting.calls.clear()
    return world, counting


def test_a_resync_is_one_listing_when_nothing_changed_on_the_platform(
    listed: tuple[World, CountingPlatform], git_calls: list[str]
) -> None:
    world, counting = listed
    for _ in range(2):
        _resync(world)
        git_calls.clear()
        counting.calls.clear()
        result = world.pass_once()
        assert result.unchanged
        assert git_calls == ["ls-remote"]
        assert counting.calls == {"list_releases": 1}
    world.simulator.advance(30)
    counting.calls.clear()
    assert world.pass_once().unchanged  # observed as of the listing: the next resync is later
    assert counting.total == 0


def test_a_release_changed_on_the_platform_is_observed_at_the_resync_and_no_other(
    listed: tuple[World, CountingPlatform],
) -> None:
    world, counting = listed
    gcash = next(r for r in world.simulator.releases() if r.target_app == "gcash")
    # a person raises grayscale in the platform's console
    world.simulator.set_grayscale(gcash.release_id, 50, idempotency_key="console-click")
    counting.calls.clear()
    world.simulator.advance(30)
    assert world.pass_once().unchanged  # not due yet: the platform is not asked
    _resync(world)
    result = world.pass_once()
    assert not result.unchanged
    assert counting.calls["find_releases"] == 1  # gcash only: dana did not change
    assert counting.calls["list_releases"] == 1  # the real pass used the fast path's listing
    assert {r.key: r.status.grayscale for r in result.releases}["shop/gcash"] == 50


@pytest.mark.inprocess_only
def test_a_list_cursor_the_platform_refuses_means_listing_from_the_start(
    listed: tuple[World, CountingPlatform],
) -> None:
    world, counting = listed
    world.controller.cache.cursor = "not-a-cursor-of-this-platform"
    _resync(world)
    result = world.pass_once()
    assert not result.unchanged
    assert counting.calls["list_releases"] >= 2  # refused, then from the start
    assert counting.calls["find_releases"] == 2  # so every settled release is observed
    assert world.controller.cache.cursor != "not-a-cursor-of-this-platform"


@pytest.mark.inprocess_only
def test_an_adapter_that_cannot_list_observes_each_settled_release_at_its_resync(
    settled: tuple[World, CountingPlatform],
) -> None:
    world, counting = settled
    world.controller.platform = NotListing(counting)
    for _ in range(2):
        _resync(world)
        counting.calls.clear()
        result = world.pass_once()
        assert not result.unchanged
        assert counting.calls["find_releases"] == 2
        assert "list_releases" not in counting.calls


@pytest.mark.inprocess_only
def test_a_restarted_controller_resyncs_from_the_cursor_it_recorded(
    listed: tuple[World, CountingPlatform],
) -> None:
    world, counting = listed
    cursor = world.controller.cache.cursor
    _restart(world)
    world.pass_once()
    assert world.controller.cache.cursor == cursor
    _resync(world)
    counting.calls.clear()
    assert world.pass_once().unchanged
    assert counting.calls == {"list_releases": 1}


@pytest.mark.inprocess_only
def test_a_pass_cut_short_keeps_the_old_cursor_so_no_listed_change_is_lost(
    listed: tuple[World, CountingPlatform],
) -> None:
    world, counting = listed
    cursor = world.controller.cache.cursor
    gcash = next(r for r in world.simulator.releases() if r.target_app == "gcash")
    world.simulator.set_grayscale(gcash.release_id, 50, idempotency_key="console-click")
    _resync(world)
    world.controller.pass_deadline = 0.0  # the pass starts no release
    result = world.pass_once()
    assert result.cut_short is not None
    assert world.controller.state.list_cursor() == cursor
    world.controller.pass_deadline = 300.0
    counting.calls.clear()
    result = world.pass_once()
    assert counting.calls["find_releases"] == 1
    assert {r.key: r.status.grayscale for r in result.releases}["shop/gcash"] == 50


@pytest.mark.inprocess_only
def test_a_workdir_without_a_cursor_lists_once_while_it_observes_everything_anyway(
    settled: tuple[World, CountingPlatform],
) -> None:
    """An upgrade: the state knows no observation times and no cursor (an older relctl)."""
    world, counting = settled
    path = world.controller.state.path
    world.controller.close()
    with sqlite3.connect(path) as db:
        db.execute("DELETE FROM observed")
        db.execute("DELETE FROM meta WHERE name = 'list-cursor'")
    _restart(world)
    world.pass_once()
    assert counting.calls["find_releases"] == 2  # nothing known: everything observed
    assert counting.calls["list_releases"] == 1  # and the cursor taken at the same time
    assert world.controller.state.list_cursor() is not None
    _resync(world)
    counting.calls.clear()
    assert world.pass_once().unchanged
    assert counting.calls == {"list_releases": 1}  # the first resync is already cheap
