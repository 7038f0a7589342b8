"""Where the controller's trust starts and what stops it, through the real CLI.

Findings 1 (orphan-root takeover) and 5 (a force-pushed main is followed) of issue 10, and
the operator's side: no anchor, no action; re-anchoring is an explicit command.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from controller_world import ACCESS, CONFIG, manifest
from gitutil import PersonClone, isolate_git, make_remote, remote_head

from controller.cli import cli
from controller.platform.sim import Simulator

GCASH = "releases/shop/gcash.yaml"


@pytest.fixture(autouse=True)
def _isolated_git(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_git(monkeypatch, tmp_path / "home")


def invoke(*args: str) -> click.testing.Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


class Setup:
    def __init__(self, tmp: Path) -> None:
        self.remote = make_remote(
            tmp, {"relctl.yaml": CONFIG, "access.yaml": ACCESS, GCASH: manifest(complete=True)}
        )
        self.anchor = remote_head(self.remote)
        self.db = tmp / "platform.db"
        with Simulator(self.db) as simulator:
            simulator.set_app("gcash", build_seconds=60)
            simulator.upload("shop", "1.4.0")
        self.work = tmp / "work"
        self.maria = PersonClone(
            self.remote, tmp / "maria", name="Maria", email="maria@example.com"
        )
        self.eve = PersonClone(self.remote, tmp / "eve", name="Eve", email="eve@example.net")

    def reconcile(self, *extra: str) -> click.testing.Result:
        return invoke(
            "reconcile", "--remote", self.remote, "--workdir", str(self.work),
            "--platform", f"sim:{self.db}", "--format", "json", *extra,
        )  # fmt: skip

    def effects(self, operation: str) -> int:
        with sqlite3.connect(self.db) as conn:
            (count,) = conn.execute(
                "SELECT count(*) FROM idempotency WHERE operation = ?", (operation,)
            ).fetchone()
        return int(count)


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    return Setup(tmp_path)


def _conditions(result: click.testing.Result) -> list[str]:
    data = json.loads(result.stdout)
    return [release["reason"] for release in data["releases"]]


def test_the_controller_does_not_act_without_knowing_where_trust_starts(setup: Setup) -> None:
    result = setup.reconcile()
    assert result.exit_code == 2
    assert "--trust-anchor" in result.stderr
    assert setup.effects("create_release") == 0


def test_an_orphan_root_merged_as_first_parent_takes_nothing_over(setup: Setup) -> None:
    """Finding 1: the outsider's own access.yaml on a new root, merged with main as the
    second parent so that the push is a fast-forward."""
    assert setup.reconcile("--trust-anchor", setup.anchor).exit_code == 0
    eve = setup.eve
    eve.git("checkout", "-q", "--orphan", "takeover")
    eve.git("rm", "-q", "-r", "--cached", ".")
    evil_access = ACCESS.replace("maria@example.com", "eve@example.net").replace("Maria", "Eve")
    eve.write({"access.yaml": evil_access, "relctl.yaml": CONFIG,
               GCASH: manifest(complete=True, grayscale=100)})  # fmt: skip
    eve.git("add", "access.yaml", "relctl.yaml", GCASH)
    eve.git("commit", "-q", "-m", "a new beginning")
    eve.git("fetch", "-q", "origin")
    eve.git("merge", "-q", "--allow-unrelated-histories", "-s", "ours", "origin/main",
            "-m", "merge main")  # fmt: skip
    eve.git("push", "-q", "origin", "HEAD:main")

    result = setup.reconcile()
    assert result.exit_code == 1
    assert set(_conditions(result)) == {"HistoryDiverged"}
    assert setup.effects("full_release") == 0
    assert setup.effects("set_grayscale") == 0
    shown = invoke("trust", "show", "--workdir", str(setup.work), "--format", "json")
    assert json.loads(shown.stdout)["anchor"] == setup.anchor


def test_a_force_pushed_main_holds_everything_until_the_operator_re_anchors(
    setup: Setup,
) -> None:
    """Finding 5: a rollback of main to an older commit is not followed."""
    assert setup.reconcile("--trust-anchor", setup.anchor).exit_code == 0
    maria = setup.maria
    maria.pull()
    maria.commit_and_push({GCASH: manifest(complete=True, grayscale=10)}, "start at 10%")
    setup.reconcile()
    maria.git("reset", "-q", "--hard", setup.anchor)
    maria.write({GCASH: manifest(complete=True, grayscale=100)})
    maria.commit("straight to 100%")
    maria.git("push", "-q", "--force", "origin", "HEAD:main")

    held = setup.reconcile()
    assert held.exit_code == 1
    assert set(_conditions(held)) == {"HistoryDiverged"}
    assert "does not continue" in json.loads(held.stdout)["releases"][0]["message"]
    assert setup.effects("full_release") == 0

    tip = remote_head(setup.remote)
    reset = invoke(
        "trust", "reset", "--remote", setup.remote, "--workdir", str(setup.work),
        "--anchor", tip,
    )  # fmt: skip
    assert reset.exit_code == 0, reset.output
    assert f"trust re-anchored at {tip[:12]}" in reset.stdout
    after = setup.reconcile()
    assert "HistoryDiverged" not in _conditions(after)


def test_trust_show_before_the_first_start_says_so(tmp_path: Path) -> None:
    result = invoke("trust", "show", "--workdir", str(tmp_path / "nothing"))
    assert result.exit_code == 2
    assert "holds no controller state" in result.stderr


def test_reconcile_exits_1_while_a_release_is_forbidden(setup: Setup) -> None:
    """Finding 15: reconcile said exit 0 with a Forbidden release."""
    assert setup.reconcile("--trust-anchor", setup.anchor).exit_code == 0
    setup.eve.commit_and_push({GCASH: manifest(complete=True, grayscale=50)}, "half of them")
    result = setup.reconcile()
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["healthy"] is False
    assert data["releases"][0]["phase"] == "Forbidden"
    assert data["releases"][0]["reason"] == "Forbidden"
