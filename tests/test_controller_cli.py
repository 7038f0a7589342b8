"""The controller's commands: reconcile, run, plan, status (real git, real simulator)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from controller_world import ACCESS, CONFIG, manifest
from gitutil import isolate_git, make_remote, remote_log

from controller.cli import cli
from controller.gitops import Workspace
from controller.platform.sim import Simulator

GCASH = "releases/shop/gcash.yaml"


@pytest.fixture(autouse=True)
def _isolated_git(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_git(monkeypatch, tmp_path / "home")


@pytest.fixture
def setup(tmp_path: Path) -> tuple[str, Path, Path]:
    """A remote with one release, a simulator with the version uploaded; (remote, db, work)."""
    remote = make_remote(
        tmp_path, {"relctl.yaml": CONFIG, "access.yaml": ACCESS, GCASH: manifest()}
    )
    db = tmp_path / "platform.db"
    with Simulator(db) as simulator:
        simulator.set_app("gcash", build_seconds=60)
        simulator.upload("shop", "1.4.0")
    return remote, db, tmp_path / "work"


def invoke(*args: str) -> click.testing.Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def controller_args(remote: str, db: Path, work: Path) -> list[str]:
    return [
        "--remote", remote, "--workdir", str(work), "--platform", f"sim:{db}",
        "--trust-on-first-use",
    ]  # fmt: skip


def effects(db: Path) -> int:
    import sqlite3

    with sqlite3.connect(db) as conn:
        (count,) = conn.execute("SELECT count(*) FROM idempotency").fetchone()
    return int(count)


def test_reconcile_runs_one_pass_and_then_has_nothing_to_do(
    setup: tuple[str, Path, Path],
) -> None:
    remote, db, work = setup
    first = invoke("reconcile", *controller_args(remote, db, work), "--format", "json")
    assert first.exit_code == 0, first.output
    data = json.loads(first.output)
    assert data["pushed"] == remote_log(remote)[0].sha
    (release,) = data["releases"]
    assert (release["release"], release["phase"], release["action"]) == (
        "shop/gcash",
        "Building",
        "create release",
    )

    second = invoke("reconcile", *controller_args(remote, db, work))
    assert second.exit_code == 0
    assert "nothing changed" in second.output
    assert remote_log(remote)[0].sha == data["pushed"]


def test_reconcile_exits_1_when_a_release_is_invalid(
    tmp_path: Path, setup: tuple[str, Path, Path]
) -> None:
    _remote, db, work = setup
    bad = manifest().replace("version: 1.4.0", "version: 1.10")
    remote = make_remote(
        tmp_path,
        {"relctl.yaml": CONFIG, "access.yaml": ACCESS, GCASH: bad},
        name="bad.git",
    )
    result = invoke("reconcile", *controller_args(remote, db, work / "bad"))
    assert result.exit_code == 1
    assert "Invalid" in result.output


def test_reconcile_reports_an_unreachable_remote_in_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli,
        ["reconcile", "--trust-on-first-use",
         "--remote", str(tmp_path / "nowhere.git"), "--workdir", str(tmp_path / "w"),
         "--platform", f"sim:{tmp_path / 'p.db'}"],
    )  # fmt: skip
    assert result.exit_code == 2
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    assert result.output.startswith("relctl: ")


def test_two_controllers_cannot_share_a_workdir(setup: tuple[str, Path, Path]) -> None:
    remote, db, work = setup
    with Workspace(remote, "main", work):
        result = CliRunner().invoke(cli, ["reconcile", *controller_args(remote, db, work)])
    assert result.exit_code == 2
    assert "lock" in result.output.lower()


def test_plan_shows_the_next_step_without_touching_platform_or_git(
    tmp_path: Path, setup: tuple[str, Path, Path]
) -> None:
    remote, db, _work = setup
    checkout = tmp_path / "checkout"
    subprocess.run(["git", "clone", "-q", remote, str(checkout)], check=True)
    head = remote_log(remote)[0].sha

    text = invoke("plan", "--repo", str(checkout), "--platform", f"sim:{db}")
    as_json = invoke("plan", "--repo", str(checkout), "--platform", f"sim:{db}", "--format", "json")
    markdown = invoke("plan", "--repo", str(checkout), "--platform", f"sim:{db}", "--format",
                      "markdown")  # fmt: skip

    assert text.exit_code == as_json.exit_code == markdown.exit_code == 0
    assert "shop/gcash 1.4.0" in text.output and "create release" in text.output
    assert json.loads(as_json.output)[0]["action"] == "create release"
    assert "| shop/gcash | 1.4.0 |" in markdown.output
    assert effects(db) == 0
    with Simulator(db) as simulator:
        assert simulator.releases() == []
    assert remote_log(remote)[0].sha == head
    assert not (checkout / "status").exists()


def test_status_reads_a_remote_or_a_checkout(setup: tuple[str, Path, Path], tmp_path: Path) -> None:
    remote, db, work = setup
    assert invoke("reconcile", *controller_args(remote, db, work)).exit_code == 0

    table = invoke("status", "--remote", remote)
    assert table.exit_code == 0
    assert table.output.splitlines()[0].split()[:4] == ["MINI", "PROGRAM", "APP", "VERSION"]
    assert "shop" in table.output and "Building" in table.output

    checkout = tmp_path / "checkout"
    subprocess.run(["git", "clone", "-q", remote, str(checkout)], check=True)
    rows = json.loads(invoke("status", "--repo", str(checkout), "--format", "json").output)
    assert [(r["miniProgram"], r["targetApp"], r["phase"]) for r in rows] == [
        ("shop", "gcash", "Building")
    ]


def test_run_once_runs_a_single_pass(setup: tuple[str, Path, Path]) -> None:
    remote, db, work = setup
    result = invoke("run", *controller_args(remote, db, work), "--once")
    assert result.exit_code == 0, result.output
    assert "shop/gcash 1.4.0 New -> Building: create release" in result.output
    assert "stopped after 1 pass(es)" in result.output


def test_sigterm_lets_the_pass_in_progress_finish_then_exits_0(
    setup: tuple[str, Path, Path],
) -> None:
    remote, db, work = setup
    with Simulator(db) as simulator:
        simulator.faults(latency=0.3)  # every platform call is slow: SIGTERM lands mid-pass
    process = subprocess.Popen(
        [sys.executable, "-m", "controller", "run", *controller_args(remote, db, work),
         "--interval", "30"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    assert process.stdout is not None
    assert "relctl controller:" in process.stdout.readline()
    time.sleep(0.5)  # inside the first pass: it needs several slow platform calls
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=60)

    assert process.returncode == 0, output
    assert "create release" in output  # the pass in progress finished...
    assert "stopped after 1 pass(es)" in output  # ...and no new one started
    assert len(remote_log(remote)) == 2  # seed + the status commit of that pass


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [prefix]
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            found.extend(_commands(command, (*prefix, name)))
        else:
            found.append((*prefix, name))
    return found


@pytest.mark.parametrize("command", _commands(cli), ids=lambda c: " ".join(c) or "relctl")
def test_every_command_has_help(command: tuple[str, ...]) -> None:
    result = invoke(*command, "--help")
    assert result.exit_code == 0
    assert "Usage:" in result.output
    summary = result.output.split("\n\n")[1].strip()
    assert len(summary) > 20, f"{command}: no description"


def test_sigterm_in_a_long_pass_starts_no_new_release(tmp_path: Path) -> None:
    """Finding 11: the daemon ended only after the whole pass; now the pass in progress
    starts no new release, pushes what it did, and the process exits 0."""
    count = 20
    files = {"relctl.yaml": CONFIG, "access.yaml": ACCESS}
    files |= {f"releases/mp{i}/gcash.yaml": manifest(f"mp{i}") for i in range(count)}
    remote = make_remote(tmp_path, files)
    db = tmp_path / "platform.db"
    with Simulator(db) as simulator:
        for i in range(count):
            simulator.upload(f"mp{i}", "1.4.0")
        simulator.faults(latency=0.3)  # a pass over every release takes 20 x 0.9 s or more
    process = subprocess.Popen(
        [sys.executable, "-m", "controller", "run",
         *controller_args(remote, db, tmp_path / "work"), "--interval", "30"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    assert process.stdout is not None
    assert "relctl controller:" in process.stdout.readline()
    time.sleep(2)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=60)

    assert process.returncode == 0, output
    assert "stopped after 1 pass(es)" in output
    created = effects(db)
    assert 0 < created < count, output  # some releases were reconciled, not all
    assert len(remote_log(remote)) == 2  # what the pass did was pushed
