"""What the commands print for tools: every ``--format json`` parses and has the keys
``docs/output.md`` documents; ``relctl run --format json`` is JSON Lines on a clean stdout;
every option of every command says what it does. Real git, the real simulator."""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result
from controller_world import ACCESS, CONFIG, manifest
from gitutil import git, identity, isolate_git, make_remote

from controller.cli import cli
from controller.output.report import plan_report, run_report
from controller.platform.sim import Simulator
from controller.reconcile import PassResult

DOCS = Path(__file__).resolve().parent.parent / "docs"
GCASH = "releases/shop/gcash.yaml"
DANA = "releases/shop/dana.yaml"
MARIA = identity("Maria", "maria@example.com")
#: A problem of ``relctl validate --format json`` (docs/validate.md).
PROBLEM_KEYS = {"file", "line", "column", "path", "severity", "code", "message", "hint"}


@pytest.fixture(autouse=True)
def _isolated_git(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_git(monkeypatch, tmp_path / "home")


@dataclass(frozen=True)
class Setup:
    remote: str
    db: Path
    work: Path
    #: A clone of the remote on branch ``change``: gcash's version goes down (refused) and
    #: an invalid dana manifest appears; ``main`` is the remote's main.
    checkout: Path

    def controller(self) -> list[str]:
        return [
            "--remote", self.remote, "--workdir", str(self.work), "--platform", self.platform,
            "--trust-on-first-use",
        ]  # fmt: skip

    @property
    def platform(self) -> str:
        return f"sim:{self.db}"


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    remote = make_remote(
        tmp_path, {"relctl.yaml": CONFIG, "access.yaml": ACCESS, GCASH: manifest()}
    )
    db = tmp_path / "platform.db"
    with Simulator(db) as simulator:
        simulator.set_app("gcash", build_seconds=60)
        simulator.upload("shop", "1.4.0")
    checkout = tmp_path / "checkout"
    subprocess.run(["git", "clone", "-q", remote, str(checkout)], check=True)
    git(checkout, "checkout", "-q", "-b", "change")
    (checkout / GCASH).write_text(manifest(version="1.3.0"))
    (checkout / DANA).write_text(manifest(target_app="dana", grayscale=120))
    git(checkout, "add", "--all")
    git(checkout, "commit", "-q", "-m", "lower shop on gcash, add dana", env=MARIA)
    return Setup(remote, db, tmp_path / "work", checkout)


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def json_of(*args: str, code: int = 0) -> Any:
    result = invoke(*args, "--format", "json")
    assert result.exit_code == code, result.output
    return json.loads(result.stdout)


def documented_keys(doc: str, heading: str) -> set[str]:
    """The backticked keys of the first table under ``heading`` in ``docs/<doc>``."""
    lines = (DOCS / doc).read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.lstrip("#").strip() == heading)
    keys: set[str] = set()
    for line in lines[start + 1 :]:
        if line.startswith("#"):
            break
        if found := re.match(r"\| `([A-Za-z_]+)` \|", line):
            keys.add(found.group(1))
        elif keys and not line.startswith("|"):
            break  # the end of the first table
    assert keys, f"no table under {heading!r} in docs/{doc}"
    return keys


def test_the_documented_problem_keys_are_validates() -> None:
    assert documented_keys("validate.md", "JSON (`--format json`)") == PROBLEM_KEYS


def test_validate_and_check_print_the_documented_problems(setup: Setup) -> None:
    repo = ["--repo", str(setup.checkout)]
    validated = json_of("validate", *repo, code=1)
    checked = json_of("check", *repo, "--base", "main", "--head", "change", code=1)

    assert {p["code"] for p in validated} == {"schema"}
    assert {p["code"] for p in checked} == {"schema", "version-not-increasing"}
    assert all(set(p) == PROBLEM_KEYS for p in validated + checked)


def test_status_prints_the_documented_rows(setup: Setup) -> None:
    assert invoke("reconcile", *setup.controller()).exit_code == 0
    git(setup.checkout, "checkout", "-q", "main")
    git(setup.checkout, "pull", "-q", "origin", "main")

    rows = json_of("status", "--repo", str(setup.checkout))

    assert [(r["miniProgram"], r["targetApp"], r["phase"]) for r in rows] == [
        ("shop", "gcash", "Building")
    ]
    assert set(rows[0]) == documented_keys("output.md", "`relctl status`")


def test_plan_prints_the_documented_releases(setup: Setup) -> None:
    git(setup.checkout, "checkout", "-q", "main")

    (release,) = json_of("plan", "--repo", str(setup.checkout), "--platform", setup.platform)

    assert (release["release"], release["action"]) == ("shop/gcash", "create release")
    assert set(release) == documented_keys("output.md", "`relctl plan`")


def test_plan_base_prints_the_documented_change(setup: Setup) -> None:
    data = json_of("plan", "--repo", str(setup.checkout), "--base", "main", "--head", "change")

    assert set(data) == documented_keys("output.md", "`relctl plan --base REF`")
    releases = {r["release"]: r for r in data["releases"]}
    assert (releases["shop/dana"]["kind"], releases["shop/gcash"]["kind"]) == (
        "invalid",
        "changed",
    )
    one_release = documented_keys("output.md", "`relctl plan --base`: one release")
    assert all(set(r) == one_release for r in data["releases"])
    assert all(set(p) == PROBLEM_KEYS for p in releases["shop/dana"]["problems"])


def test_reconcile_prints_the_documented_pass(setup: Setup) -> None:
    data = json_of("reconcile", *setup.controller())

    assert set(data) == documented_keys("output.md", "`relctl reconcile`")
    (release,) = data["releases"]
    assert set(release) == documented_keys("output.md", "`relctl reconcile`: one release")
    assert (release["release"], release["action"], release["changed"]) == (
        "shop/gcash",
        "create release",
        True,
    )


def test_run_prints_one_json_line_per_pass_that_moved_and_nothing_else(setup: Setup) -> None:
    first = invoke("run", *setup.controller(), "--once", "--format", "json")
    quiet = invoke("run", *setup.controller(), "--once", "--format", "json")
    verbose = invoke("run", *setup.controller(), "--once", "--format", "json", "--verbose")

    assert first.exit_code == quiet.exit_code == verbose.exit_code == 0
    (line,) = first.stdout.splitlines()
    data = json.loads(line)
    assert set(data) == documented_keys("output.md", "`relctl run`")
    assert (data["pass"], [r["action"] for r in data["releases"]]) == (1, ["create release"])
    assert "stopped after 1 pass(es)" in first.stderr
    assert quiet.stdout == ""  # the release waits for its build: nothing moved
    (idle,) = verbose.stdout.splitlines()
    assert (json.loads(idle)["pushed"], json.loads(idle)["releases"]) == (None, [])


def test_run_json_names_only_the_releases_that_moved() -> None:
    result = PassResult(commit="c" * 40, releases=())
    assert run_report(result, 3, "json", verbose=False) == ""
    assert json.loads(run_report(result, 3, "json", verbose=True)) == {
        "pass": 3,
        "commit": "c" * 40,
        "pushed": None,
        "releases": [],
        "problems": [],
        "healthy": True,
        "edited": [],
        "cutShort": None,
        "removed": [],
    }
    assert run_report(result, 3, "text", verbose=True) == "pass 3: nothing changed at ccccccc\n"


def test_plan_text_of_no_release_prints_nothing() -> None:
    assert plan_report([], "text") == ""
    assert json.loads(plan_report([], "json")) == []


def test_platform_releases_and_show_print_the_documented_release(setup: Setup) -> None:
    assert invoke("reconcile", *setup.controller()).exit_code == 0
    db = ["platform", "--db", str(setup.db)]

    (listed,) = json_of(*db, "releases")
    shown = json_of(*db, "show", listed["release_id"])

    assert listed == shown
    assert set(shown) == documented_keys("output.md", "`relctl platform`")


@pytest.mark.parametrize(
    ("command", "keys"),
    [
        (("who-gets", "shop", "gcash", "2088000000000001"), {"version", "bucket"}),
        (("metrics", "R-000001"), {"crash_rate", "error_rate", "users_on_version"}),
        (("upload", "shop", "1.5.0"), {"mini_program", "version", "uploaded_at"}),
        (("clock",), {"mode", "manual_now", "offset", "now"}),
    ],
    ids=["who-gets", "metrics", "upload", "clock"],
)
def test_platform_commands_print_the_documented_objects(
    setup: Setup, command: tuple[str, ...], keys: set[str]
) -> None:
    assert invoke("reconcile", *setup.controller()).exit_code == 0
    assert set(json_of("platform", "--db", str(setup.db), *command)) == keys


def _commands(
    command: click.Command, path: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], click.Command]]:
    found = [(path, command)]
    if isinstance(command, click.Group):
        for name, sub in sorted(command.commands.items()):
            found.extend(_commands(sub, (*path, name)))
    return found


COMMANDS = _commands(cli)


@pytest.mark.parametrize(
    ("path", "command"),
    [pytest.param(path, command, id=" ".join(path) or "relctl") for path, command in COMMANDS],
)
def test_every_option_says_what_it_does(path: tuple[str, ...], command: click.Command) -> None:
    undocumented = [
        param.name
        for param in command.params
        if isinstance(param, click.Option) and not (param.help or "").strip()
    ]
    assert not undocumented, f"relctl {' '.join(path)}: options without help: {undocumented}"
    short = invoke(*path, "-h")  # the short flag works everywhere, with the description
    assert short.exit_code == 0
    description = (command.help or "").split("\n")[0]
    assert description and " ".join(description.split()) in " ".join(short.output.split())


def test_progress_counts_each_pass_from_zero() -> None:
    """Finding 15: the daemon's progress line counted releases over every pass it ran."""
    from controller.output.text import PROGRESS_EVERY, progress_line

    total = PROGRESS_EVERY * 3
    first = [progress_line(done, total) for done in range(1, total + 1)]
    second = [progress_line(done, total) for done in range(1, total + 1)]
    assert first == second
    assert [line for line in first if line] == [
        f"  ... {PROGRESS_EVERY}/{total} releases reconciled",
        f"  ... {PROGRESS_EVERY * 2}/{total} releases reconciled",
    ]
