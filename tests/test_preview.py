"""relctl plan --base: what merging a pull request will make the controller do."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from controller_world import World, make_world, manifest
from gitutil import isolate_git

from controller.cli import cli
from controller.model import ConditionStatus, ConditionType, Phase, Status

GCASH = "releases/shop/gcash.yaml"
DANA = "releases/shop/dana.yaml"
REWARDS = "releases/rewards/gcash.yaml"


@pytest.fixture(autouse=True)
def _isolated_git(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_git(monkeypatch, tmp_path / "home")


def _settled(world: World) -> None:
    """shop/gcash in pilot testing, shop/dana at 50%: the state main has before the PR."""

    def done(s: dict[str, Status]) -> bool:
        dana = s["shop/dana"].condition(ConditionType.READY)
        return (
            s["shop/gcash"].phase is Phase.PILOT_TESTING
            and s["shop/dana"].grayscale == 50
            and dana is not None
            and dana.status is ConditionStatus.TRUE
        )

    world.run_until(done)


def _pull_request(world: World) -> None:
    """A branch that completes the pilot, lowers dana, adds a release and breaks nothing else."""
    world.person.pull()
    world.person.git("checkout", "--quiet", "-b", "release-shop")
    world.person.write(
        {
            GCASH: manifest(
                complete=True, grayscale=20, testers=["2088000000000001", "2088000000000009"]
            ),
            DANA: manifest("shop", "dana", grayscale=10),
            REWARDS: manifest("rewards", "gcash", version="2.0.1"),
        }
    )
    world.person.commit("shop: finish the pilot, roll dana back; start rewards")


def plan(world: World, *args: str) -> str:
    result = CliRunner().invoke(
        cli,
        ["plan", "--repo", str(world.person.path), "--base", "origin/main", *args],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    return result.output


EXPECTED = """\
<!-- relctl-plan -->
### relctl plan: what merging this change will do

✅ **rewards** on **gcash** 2.0.1: New → Building
- steps: create release
- then waits for the build
- testers: +2 -0 (+2088000000000001, +2088000000000002)

⛔ **shop** on **dana** 1.4.0: Grayscale 50%
- refused: grayscale only rises: the platform has 50%, main asks 10%; to roll back, set cancel: true

✅ **shop** on **gcash** 1.4.0: PilotTesting → Grayscale 20%
- steps: set testers (2), then complete testing, then set grayscale 20%
- then rests there until main asks for more
- testers: +1 -1 (+2088000000000009, -2088000000000002)

<sub>3 release(s) affected, 1 refused. Projected from the status the controller last wrote at \
`BASE`; reviews, builds and tests happen on the platform's own time.</sub>
"""


def test_markdown_plan_of_a_multi_release_change(tmp_path: Path) -> None:
    files = {GCASH: manifest(), DANA: manifest("shop", "dana", grayscale=50)}
    with make_world(tmp_path, files) as world:
        _settled(world)
        _pull_request(world)
        base = world.person.git("rev-parse", "--short=7", "origin/main")

        markdown = plan(world, "--format", "markdown")

        assert markdown == EXPECTED.replace("BASE", base)
        data = json.loads(plan(world, "--format", "json"))
        by_key = {r["release"]: r for r in data["releases"]}
        assert by_key["shop/gcash"]["steps"] == [
            "set testers (2)",
            "complete testing",
            "set grayscale 20%",
        ]
        assert by_key["shop/dana"]["refused"] is True
        assert by_key["rewards/gcash"]["kind"] == "added"
        text = plan(world)
        assert "REFUSED shop/dana 1.4.0" in text


def test_an_invalid_manifest_in_the_change_is_shown_with_its_location(tmp_path: Path) -> None:
    with make_world(tmp_path, {GCASH: manifest()}) as world:
        world.pass_once()
        world.person.pull()
        world.person.git("checkout", "--quiet", "-b", "typo")
        world.person.write({GCASH: manifest().replace("grayscale: 0", "grayscale: yes")})
        world.person.commit("oops")

        markdown = plan(world, "--format", "markdown")

        assert "⛔ **shop** on **gcash** 1.4.0: Building → Invalid" in markdown
        assert "`releases/shop/gcash.yaml:" in markdown and "spec.grayscale" in markdown


def test_a_change_without_manifests_plans_nothing(tmp_path: Path) -> None:
    with make_world(tmp_path, {GCASH: manifest()}) as world:
        world.person.git("checkout", "--quiet", "-b", "docs")
        world.person.write({"README.md": "notes\n"})
        world.person.commit("docs")
        assert "touches no release manifest" in plan(world, "--format", "markdown")


def test_an_unknown_base_is_a_one_line_error(tmp_path: Path) -> None:
    with make_world(tmp_path, {GCASH: manifest()}) as world:
        result = CliRunner().invoke(
            cli, ["plan", "--repo", str(world.person.path), "--base", "no-such-ref"]
        )
        assert result.exit_code == 2
        assert result.output.startswith("relctl: ") and "no-such-ref" in result.output
