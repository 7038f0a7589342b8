"""The controller enforces access.yaml on main: real git, commits by different people.

A release whose manifest was changed by someone without the right to is ``Forbidden``: the
status names the commit, the identity and the missing right, and the platform is not touched.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from controller_world import CONFIG, World, make_world, manifest
from gitutil import PersonClone, isolate_git

from controller.access import TrustError
from controller.model import ConditionType, Phase, Reason
from controller.platform.protocol import Stage


@pytest.fixture(autouse=True)
def _git(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_git(monkeypatch, tmp_path / "home")


ACCESS = """\
apiVersion: relctl/v1
kind: Access
members:
  - {email: maria@example.com, name: Maria, role: master}
  - {email: budi@example.com, name: Budi, role: owner, miniPrograms: [shop]}
  - {email: lim@example.com, name: Lim, role: developer, miniPrograms: [rewards]}
"""

SHOP = "releases/shop/gcash.yaml"


def person(world: World, name: str, email: str) -> PersonClone:
    return PersonClone(world.remote, world.tmp / name, name=name, email=email)


def test_a_change_by_someone_without_the_right_is_forbidden_and_touches_nothing(
    tmp_path: Path,
) -> None:
    with make_world(tmp_path, {"access.yaml": ACCESS}) as world:
        lim = person(world, "Lim", "lim@example.com")
        sha = lim.commit_and_push({SHOP: manifest()}, "release shop")
        world.pass_once()
        status = world.statuses()["shop/gcash"]
        assert status.phase is Phase.FORBIDDEN
        stalled = status.condition(ConditionType.STALLED)
        assert stalled is not None and stalled.reason == Reason.FORBIDDEN
        assert stalled.message == (
            f"commit {sha[:7]} by Lim <lim@example.com> changed {SHOP} without release rights "
            "for mini program shop (a developer of: rewards)"
        )
        assert world.effects() == []
        # It stays Forbidden, and a pass over the same main writes nothing new.
        assert world.pass_once().pushed is None
        assert world.effects() == []


def test_an_owner_of_the_mini_program_may_release_it(tmp_path: Path) -> None:
    with make_world(tmp_path, {"access.yaml": ACCESS}) as world:
        budi = person(world, "Budi", "budi@example.com")
        budi.commit_and_push({SHOP: manifest()}, "release shop")
        world.pass_once()
        assert world.statuses()["shop/gcash"].phase is Phase.BUILDING
        assert len(world.effects("create_release")) == 1


def test_a_non_member_is_forbidden_even_with_a_members_name(tmp_path: Path) -> None:
    with make_world(tmp_path, {"access.yaml": ACCESS}) as world:
        eve = person(world, "Maria", "eve@example.net")
        eve.commit_and_push({SHOP: manifest()}, "release shop")
        world.pass_once()
        status = world.statuses()["shop/gcash"]
        assert status.phase is Phase.FORBIDDEN
        stalled = status.condition(ConditionType.STALLED)
        assert stalled is not None and "eve@example.net is not a member" in stalled.message


def test_a_forbidden_change_to_a_running_release_keeps_what_the_platform_has(
    tmp_path: Path,
) -> None:
    with make_world(tmp_path, {"access.yaml": ACCESS}) as world:
        world.edit(SHOP, manifest(complete=True, grayscale=10), "release shop")
        world.run_until(lambda s: s["shop/gcash"].phase is Phase.GRAYSCALE)
        effects = world.effects()
        lim = person(world, "Lim", "lim@example.com")
        lim.commit_and_push({SHOP: manifest(complete=True, grayscale=100)}, "all users")
        world.pass_once()
        status = world.statuses()["shop/gcash"]
        assert status.phase is Phase.FORBIDDEN
        assert (status.stage, status.grayscale) == (Stage.GRAYSCALE, 10)
        assert world.effects() == effects
        # Lim reverting his own change brings the file back to the authorized version: the
        # refusal no longer applies, and nothing happens on the platform.
        lim.commit_and_push({SHOP: manifest(complete=True, grayscale=10)}, "revert")
        world.pass_once()
        assert world.statuses()["shop/gcash"].phase is Phase.GRAYSCALE
        assert world.effects() == effects
        # The owner's commit is authorized: the controller carries on with it.
        budi = person(world, "Budi", "budi@example.com")
        budi.commit_and_push({SHOP: manifest(complete=True, grayscale=50)}, "50% is enough")
        statuses = world.run_until(lambda s: s["shop/gcash"].grayscale == 50)
        assert statuses["shop/gcash"].phase is Phase.GRAYSCALE


def test_an_authorized_members_commit_on_top_of_a_refused_change_replaces_it(
    tmp_path: Path,
) -> None:
    """By design: the file is then the authorized member's version, whoever wrote the
    lines before; the owner reviewed what they committed."""
    with make_world(tmp_path, {"access.yaml": ACCESS}) as world:
        lim = person(world, "Lim", "lim@example.com")
        lim.commit_and_push({SHOP: manifest(description="Lim's words")}, "release shop")
        world.pass_once()
        assert world.statuses()["shop/gcash"].phase is Phase.FORBIDDEN
        budi = person(world, "Budi", "budi@example.com")
        budi.commit_and_push({SHOP: manifest(description="Budi's words")}, "release shop")
        world.pass_once()
        assert world.statuses()["shop/gcash"].phase is Phase.BUILDING


def test_a_masters_commit_on_top_of_a_forbidden_change_clears_it(tmp_path: Path) -> None:
    with make_world(tmp_path, {"access.yaml": ACCESS}) as world:
        lim = person(world, "Lim", "lim@example.com")
        lim.commit_and_push({SHOP: manifest()}, "release shop")
        world.pass_once()
        assert world.statuses()["shop/gcash"].phase is Phase.FORBIDDEN
        # Maria (master) reviews the file and confirms it with a commit of her own.
        world.edit(SHOP, manifest(description="Reviewed by Maria."), "confirm shop release")
        world.pass_once()
        assert world.statuses()["shop/gcash"].phase is Phase.BUILDING
        assert len(world.effects("create_release")) == 1


def test_granting_yourself_a_right_in_access_yaml_grants_nothing(tmp_path: Path) -> None:
    with make_world(tmp_path, {"access.yaml": ACCESS}) as world:
        lim = person(world, "Lim", "lim@example.com")
        lim.commit_and_push(
            {"access.yaml": ACCESS.replace("miniPrograms: [rewards]", "miniPrograms: [shop]")},
            "give me shop",
        )
        lim.commit_and_push({SHOP: manifest()}, "release shop")
        world.pass_once()
        assert world.statuses()["shop/gcash"].phase is Phase.FORBIDDEN
        assert world.effects() == []


def test_a_right_granted_by_a_master_takes_effect_for_later_commits(tmp_path: Path) -> None:
    with make_world(tmp_path, {"access.yaml": ACCESS}) as world:
        world.edit(
            "access.yaml",
            ACCESS.replace("miniPrograms: [rewards]", "miniPrograms: [rewards, shop]"),
            "Lim joins the shop team",
        )
        lim = person(world, "Lim", "lim@example.com")
        lim.commit_and_push({SHOP: manifest()}, "release shop")
        world.pass_once()
        assert world.statuses()["shop/gcash"].phase is Phase.BUILDING


def test_tester_files_need_the_same_right_as_the_manifest(tmp_path: Path) -> None:
    files = {
        "access.yaml": ACCESS,
        "releases/shop/testers/gcash.csv": "user_id\n2088000000000001\n",
        SHOP: manifest(testers=[], testers_files=["testers/gcash.csv"]),
    }
    with make_world(tmp_path, files) as world:
        world.pass_once()
        assert world.statuses()["shop/gcash"].phase is Phase.BUILDING
        lim = person(world, "Lim", "lim@example.com")
        lim.commit_and_push(
            {"releases/shop/testers/gcash.csv": "user_id\n2088000000000009\n"}, "testers"
        )
        world.pass_once()
        status = world.statuses()["shop/gcash"]
        assert status.phase is Phase.FORBIDDEN
        stalled = status.condition(ConditionType.STALLED)
        assert stalled is not None and "releases/shop/testers/gcash.csv" in stalled.message


def test_without_access_yaml_the_controller_does_not_start(tmp_path: Path) -> None:
    """Issue 10 replaces "no access.yaml, no access control": trust needs a master."""
    with make_world(tmp_path, {"access.yaml": None}) as world:
        anyone = person(world, "Anyone", "anyone@example.net")
        anyone.commit_and_push({SHOP: manifest()}, "release shop")
        with pytest.raises(TrustError, match=r"there is no access\.yaml"):
            world.pass_once()
        assert world.simulator.releases() == []


def test_deleting_access_yaml_does_not_switch_access_control_off(tmp_path: Path) -> None:
    with make_world(tmp_path, {"access.yaml": ACCESS}) as world:
        world.person.commit_and_push({"access.yaml": None}, "no more access control")
        anyone = person(world, "Anyone", "anyone@example.net")
        anyone.commit_and_push({SHOP: manifest()}, "release shop")
        world.pass_once()
        assert world.statuses()["shop/gcash"].phase is Phase.FORBIDDEN


def test_relctl_yaml_changed_by_a_non_master_stops_every_release_until_a_master_commits(
    tmp_path: Path,
) -> None:
    with make_world(tmp_path, {"access.yaml": ACCESS}) as world:
        world.edit(SHOP, manifest(), "release shop")
        world.pass_once()
        statuses = world.statuses()
        budi = person(world, "Budi", "budi@example.com")
        budi.commit_and_push(
            {"relctl.yaml": CONFIG.replace("testersMax: 50", "testersMax: 99")}, "more"
        )
        world.simulator.advance(60)
        result = world.pass_once()
        assert result.pushed is None and result.releases == ()
        assert [(p.file, p.code) for p in result.problems] == [("relctl.yaml", "forbidden")]
        assert "relctl.yaml may only be changed by a master" in result.problems[0].message
        assert world.statuses() == statuses
        # Maria confirms the new limit: the controller carries on under it.
        world.edit("relctl.yaml", CONFIG.replace("testersMax: 50", "testersMax: 60"), "60")
        result = world.pass_once()
        assert result.problems == () and len(result.releases) == 1


def test_a_shared_tester_file_outside_releases_needs_a_master(tmp_path: Path) -> None:
    files = {
        "access.yaml": ACCESS,
        "testers/vip.csv": "2088000000000001\n",
        SHOP: manifest(testers=[], testers_files=["../../testers/vip.csv"]),
    }
    with make_world(tmp_path, files) as world:
        world.pass_once()
        assert world.statuses()["shop/gcash"].phase is Phase.BUILDING
        budi = person(world, "Budi", "budi@example.com")  # owner of shop, not a master
        budi.commit_and_push({"testers/vip.csv": "2088000000000009\n"}, "testers")
        world.pass_once()
        status = world.statuses()["shop/gcash"]
        assert status.phase is Phase.FORBIDDEN
        stalled = status.condition(ConditionType.STALLED)
        assert stalled is not None and "changed testers/vip.csv without the master role" in (
            stalled.message
        )
