"""The controller's memory cannot be forged, and one commit cannot wedge or hurry a pass.

Each test is an attack as a real git history (a person's clone pushing to a bare remote)
against the real controller and the real simulator; only the clock is fake.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

from controller_world import World, make_world, manifest
from gitutil import git, identity

from controller.model import ConditionStatus, ConditionType, Phase, Reason
from controller.platform.errors import Transient
from controller.platform.sim import Simulator

SHOP = "releases/shop/gcash.yaml"
STATUS = "status/shop/gcash.yaml"


def _status_text(world: World) -> str:
    world.person.pull()
    return (world.person.path / STATUS).read_text()


def _stalled(world: World, key: str = "shop/gcash") -> tuple[str, str]:
    condition = world.statuses()[key].condition(ConditionType.STALLED)
    assert condition is not None and condition.status is ConditionStatus.TRUE
    return condition.reason, condition.message


def _rejected(world: World) -> None:
    world.edit(SHOP, manifest(), "release shop")
    for _ in range(10):
        world.pass_once()
        under_review = [s for s in world.simulator.releases() if s.stage.value == "UNDER_REVIEW"]
        if under_review:
            world.simulator.review(under_review[0].release_id, approve=False, reason="no icon")
            break
        world.simulator.advance(60)
    world.pass_once()
    assert world.statuses()["shop/gcash"].phase is Phase.REJECTED


def test_a_forged_applied_spec_hash_does_not_apply_a_rejected_release_again(
    tmp_path: Path,
) -> None:
    """Finding 6: a status-only commit claiming the rejected intent was never applied."""
    with make_world(tmp_path, {}) as world:
        _rejected(world)
        applies = len(world.effects("apply"))
        forged = "\n".join(
            "  appliedSpecHash: 0000000000000000" if line.startswith("  appliedSpecHash:") else line
            for line in _status_text(world).splitlines()
        )
        world.edit(STATUS, forged + "\n", "status: nothing was applied, honest")
        for _ in range(3):
            world.pass_once()
            world.simulator.advance(60)
        assert len(world.effects("apply")) == applies
        status = world.statuses()["shop/gcash"]
        assert status.phase is Phase.REJECTED
        assert status.applied_spec_hash != "0000000000000000"
        assert any(e.reason == Reason.STATUS_EDITED for e in status.history)


def test_a_forged_spec_hash_does_not_skip_the_access_check(tmp_path: Path) -> None:
    """Finding 2: an outsider's manifest change with a status whose specHash matches it."""
    with make_world(tmp_path, {}) as world:
        world.edit(SHOP, manifest(complete=True), "release shop")
        world.pass_once()
        before = world.statuses()["shop/gcash"]
        eve = world.person
        eve.pull()
        eve.write({SHOP: manifest(complete=True, grayscale=100)})
        # What the controller would compute for the new spec: run plan on the clone.
        from controller.manifests import load_repository

        loaded = load_repository(eve.path)
        new_hash = next(r for r in loaded.releases if r.key == "shop/gcash").spec_hash
        text = (eve.path / STATUS).read_text().replace(before.spec_hash, new_hash)
        eve.write({STATUS: text})
        eve.git("add", "-A")
        subprocess.run(
            ["git", "-c", "user.email=eve@example.net", "-c", "user.name=Eve", "commit", "-qm",
             "all users"],
            cwd=eve.path, check=True,
        )  # fmt: skip
        eve.push()
        world.pass_once()
        assert world.statuses()["shop/gcash"].phase is Phase.FORBIDDEN
        assert world.effects("full_release") == []


def test_hostile_status_files_wedge_nothing(tmp_path: Path) -> None:
    """Finding 9/10: a status naming a commit that does not exist, status/<mp> as a file, a
    status file far over the size bound: the pass runs, and status/ is restored."""
    with make_world(tmp_path, {}) as world:
        world.edit(SHOP, manifest(), "release shop")
        world.pass_once()
        text = _status_text(world).replace(world.statuses()["shop/gcash"].observed_commit, "f" * 40)
        world.edit(STATUS, text, "status: a commit that does not exist")
        result = world.pass_once()
        assert "shop/gcash" in result.edited
        world.person.pull()
        world.person.git("rm", "-q", "-r", "status")
        shutil.rmtree(world.person.path / "status", ignore_errors=True)
        world.person.write({"status/shop": "not a directory\n", "status/big.yaml": "x" * (1 << 20)})
        world.person.git("add", "-A")
        world.person.commit("wedge")
        world.person.push()
        result = world.pass_once()
        assert result.pushed is not None
        assert world.statuses()["shop/gcash"].phase is Phase.BUILDING


class _Counting:
    """The real simulator, with a count of reads and an optional hook or failure per call."""

    def __init__(self, platform: Simulator) -> None:
        self.platform = platform
        self.reads = 0
        self.fail: Exception | None = None
        self.hook: Any = None

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.platform, name)
        if name not in ("find_releases", "get_version"):
            return attribute

        def read(*args: Any, **kwargs: Any) -> Any:
            self.reads += 1
            if self.hook is not None:
                self.hook(*args)
            if self.fail is not None:
                raise self.fail
            return attribute(*args, **kwargs)

        return read


def test_a_platform_that_is_down_is_not_asked_again_before_the_backoff(tmp_path: Path) -> None:
    """Finding 14: no hot loop against a platform that is down or asks for quiet."""
    with make_world(tmp_path, {}) as world:
        world.edit(SHOP, manifest(), "release shop")
        counting = _Counting(world.simulator)
        world.controller.platform = counting  # type: ignore[assignment]
        counting.fail = Transient("platform is down")
        world.pass_once()
        assert counting.reads == 1
        for _ in range(3):  # the clock does not move: still inside the backoff
            world.pass_once()
        assert counting.reads == 1
        status = world.statuses()["shop/gcash"]
        assert status.last_error is not None and status.last_error.action == "observe"
        assert status.next_retry is not None
        counting.fail = None
        world.simulator.advance(3600)
        world.pass_once()
        assert counting.reads > 1
        assert world.statuses()["shop/gcash"].last_error is None


def test_a_release_the_platform_does_not_know_is_stalled_not_created_again(
    tmp_path: Path,
) -> None:
    """Finding 13: pointing the controller at another platform (a typo, a new database)."""
    with make_world(tmp_path, {}) as world:
        world.edit(SHOP, manifest(), "release shop")
        world.pass_once()
        other = Simulator(tmp_path / "other.db")
        try:
            other.set_clock(manual=True, at=world.simulator.now())
            other.upload("shop", "1.4.0")
            world.controller.platform = other
            result = world.pass_once()
            reason, message = _stalled(world)
            assert reason == Reason.PLATFORM_MISMATCH
            assert "does not know" in message
            assert other.releases() == []
            assert not result.healthy
        finally:
            other.close()


def test_main_moving_before_an_irreversible_step_stops_the_pass(tmp_path: Path) -> None:
    """Finding 7: a master's "pause everything" lands while the platform is slow."""
    with make_world(tmp_path, {}) as world:
        world.simulator.upload("rewards", "2.0.0")
        world.edit(SHOP, manifest(complete=True, grayscale=10), "release shop")
        world.run_until(lambda s: s["shop/gcash"].phase is Phase.GRAYSCALE)
        world.edit(SHOP, manifest(complete=True, grayscale=100), "full release")
        counting = _Counting(world.simulator)
        world.controller.platform = counting  # type: ignore[assignment]

        def pause_while_observing(*_args: object) -> None:
            counting.hook = None
            world.edit(SHOP, manifest(complete=True, grayscale=100, paused=True), "pause!")

        counting.hook = pause_while_observing
        result = world.pass_once()
        assert result.cut_short is not None and "main moved" in result.cut_short
        assert world.effects("full_release") == []
        world.pass_once()
        assert world.effects("full_release") == []
        assert world.statuses()["shop/gcash"].phase is Phase.PAUSED


def test_a_bug_on_one_release_stalls_that_release_only(tmp_path: Path) -> None:
    with make_world(tmp_path, {}) as world:
        world.edit(SHOP, manifest(), "release shop")
        world.edit("releases/shop/dana.yaml", manifest(target_app="dana"), "and dana")
        counting = _Counting(world.simulator)
        world.controller.platform = counting  # type: ignore[assignment]

        def crash_on_gcash(_mini_program: str, target_app: str, *_rest: object) -> None:
            if target_app == "gcash":
                raise RuntimeError("a bug")

        counting.hook = crash_on_gcash
        result = world.pass_once()
        reason, _message = _stalled(world)
        assert reason == Reason.INTERNAL_ERROR
        assert world.statuses()["shop/dana"].phase is Phase.BUILDING
        assert not result.healthy


def test_a_committed_link_to_a_host_file_is_reported_never_quoted(tmp_path: Path) -> None:
    """Finding 8: a manifest that is a symlink to a file the controller can read."""
    secret = tmp_path / "credential"
    secret.write_text("kind: Release\nsecret: hunter2-token\n")
    with make_world(tmp_path, {}) as world:
        world.edit(SHOP, manifest(), "release shop")
        world.pass_once()
        world.person.pull()
        (world.person.path / "releases" / "shop" / "dana.yaml").symlink_to(secret)
        world.person.commit("a link")
        world.person.push()
        world.pass_once()
        world.person.pull()
        dana = (world.person.path / "status" / "shop" / "dana.yaml").read_text()
        assert "symbolic link" in dana
        assert "hunter2" not in dana
        assert world.statuses()["shop/gcash"].phase is Phase.BUILDING


def test_a_releases_link_to_the_root_deletes_no_status(tmp_path: Path) -> None:
    """Finding 8/10: ``releases -> /`` neither hangs the pass nor reads as "every release
    was deleted"."""
    with make_world(tmp_path, {}) as world:
        world.edit(SHOP, manifest(), "release shop")
        world.pass_once()
        world.person.pull()
        world.person.git("rm", "-q", "-r", "releases")
        shutil.rmtree(world.person.path / "releases", ignore_errors=True)
        (world.person.path / "releases").symlink_to("/")
        world.person.commit("releases is the root now")
        world.person.push()
        world.pass_once()
        assert "shop/gcash" in world.statuses()


def test_an_outsiders_fix_of_an_invalid_manifest_is_still_judged(tmp_path: Path) -> None:
    """The gap a mutation check found: after an Invalid status the whole history of the
    manifest must still be judged, so an outsider cannot ride on a master's broken change."""
    with make_world(tmp_path, {}) as world:
        world.edit(SHOP, manifest().replace("version: 1.4.0", "version: 1.4"), "broken")
        world.pass_once()
        assert world.statuses()["shop/gcash"].phase is Phase.INVALID
        world.person.pull()
        world.person.write({SHOP: manifest(complete=True, grayscale=100)})
        eve = identity("Eve", "eve@example.net")  # not a member of access.yaml
        git(world.person.path, "add", "-A", env=eve)
        git(world.person.path, "commit", "-qm", "fixed", env=eve)
        world.person.push()
        world.pass_once()
        assert world.statuses()["shop/gcash"].phase is Phase.FORBIDDEN
        assert world.effects("create_release") == []


def test_a_huge_author_name_neither_bloats_the_status_nor_loops_commits(tmp_path: Path) -> None:
    """Status messages quote what people typed (a Forbidden names the commit's author): they
    are cut, so a status stays small and a pass over unchanged inputs commits nothing."""
    with make_world(tmp_path, {}) as world:
        world.edit(SHOP, manifest(), "release shop")
        world.pass_once()
        world.person.pull()
        world.person.write({SHOP: manifest(grayscale=10)})
        eve = identity("Eve " + "E" * 100_000, "eve@example.net")  # under the OS limit
        git(world.person.path, "add", "-A", env=eve)
        git(world.person.path, "commit", "-qm", "more", env=eve)
        world.person.push()
        world.pass_once()
        world.person.pull()
        text = (world.person.path / STATUS).read_text()
        assert len(text) < 20_000
        assert world.statuses()["shop/gcash"].phase is Phase.FORBIDDEN
        assert world.pass_once().pushed is None  # nothing changed: no commit
