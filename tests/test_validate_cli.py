"""Tests of ``relctl validate``: output formats, exit codes, path selection, and one run of
the real ``relctl`` entry point in a subprocess."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from controller import cli as cli_module
from controller.cli import cli

BASE = Path(__file__).parent / "data" / "base"
RELCTL = Path(sys.executable).parent / "relctl"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    shutil.copytree(BASE, root)
    return root


def break_grayscale(root: Path) -> None:
    path = root / "releases/shop/gcash.yaml"
    path.write_text(path.read_text().replace("grayscale: 0", "grayscale: 120"))


def add_duplicate_tester(root: Path) -> None:
    path = root / "releases/shop/gcash.yaml"
    path.write_text(path.read_text().replace('["2088000000000001"]', '["2088000000000011"]'))


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["validate", *args])
    return result.exit_code, result.stdout, result.stderr


def test_valid_repository_exits_0_with_a_summary(repo: Path) -> None:
    code, out, _ = run("--repo", str(repo))
    assert code == 0
    assert out == "4 files valid\n"


def test_invalid_manifest_prints_file_line_column_field_and_exits_1(repo: Path) -> None:
    break_grayscale(repo)
    code, out, _ = run("--repo", str(repo))
    assert code == 1
    assert out.splitlines() == [
        "releases/shop/gcash.yaml:15:14: error: spec.grayscale: "
        "120 is greater than the maximum of 100 [schema]",
        "1 error in 4 files",
    ]


def test_hints_are_indented_under_their_problem(repo: Path) -> None:
    path = repo / "releases/shop/tng.yaml"
    path.write_text(path.read_text().replace("grayscale: 10", "grayscale: 20"))
    _, out, _ = run("--repo", str(repo))
    assert out.splitlines()[1] == "  hint: allowed values: 0, 10, 30, 50, 100"


def test_json_format_is_a_stable_list_of_problems(repo: Path) -> None:
    break_grayscale(repo)
    tng = repo / "releases/shop/tng.yaml"
    tng.write_text(tng.read_text().replace("version: ", "versio: "))
    code, out, _ = run("--repo", str(repo), "--format", "json")
    assert code == 1
    problems = json.loads(out)
    assert [sorted(p) for p in problems] == [
        ["code", "column", "file", "hint", "line", "message", "path", "severity"]
    ] * 3
    assert problems[0] == {
        "file": "releases/shop/gcash.yaml",
        "line": 15,
        "column": 14,
        "path": "spec.grayscale",
        "severity": "error",
        "code": "schema",
        "message": "120 is greater than the maximum of 100",
        "hint": None,
    }


def test_json_format_of_a_valid_repository_is_an_empty_list(repo: Path) -> None:
    code, out, _ = run("--repo", str(repo), "--format", "json")
    assert (code, json.loads(out)) == (0, [])


def test_github_format_prints_workflow_annotations(repo: Path) -> None:
    path = repo / "releases/shop/gcash.yaml"
    path.write_text(path.read_text().replace("cancel: false", "cancel: yes"))
    code, out, _ = run("--repo", str(repo), "--format", "github")
    assert code == 1
    assert out.splitlines()[0] == (
        "::error file=releases/shop/gcash.yaml,line=16,col=11,"
        "title=spec.cancel (yaml-1.1-boolean)::'yes' is a string, not a boolean"
        "%0Ahint: YAML 1.2 booleans are only true and false: write true or false"
    )


def test_warnings_pass_unless_strict(repo: Path) -> None:
    add_duplicate_tester(repo)
    code, out, _ = run("--repo", str(repo))
    assert code == 0 and "warning: " in out and "0 errors, 1 warning in 4 files" in out
    code, _, _ = run("--repo", str(repo), "--strict")
    assert code == 1


def test_paths_limit_the_check(repo: Path) -> None:
    break_grayscale(repo)
    code, out, _ = run("--repo", str(repo), str(repo / "releases/shop/tng.yaml"))
    assert (code, out) == (0, "2 files valid\n")


def test_repo_defaults_to_the_nearest_directory_with_relctl_yaml(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    break_grayscale(repo)
    monkeypatch.chdir(repo / "releases/shop")
    code, out, _ = run("gcash.yaml")
    assert code == 1 and out.startswith("releases/shop/gcash.yaml:15:14: error:")


def test_a_path_outside_the_repository_is_a_usage_error(repo: Path, tmp_path: Path) -> None:
    code, _, err = run("--repo", str(repo), str(tmp_path))
    assert code == 2 and "outside the repository" in err


def test_a_missing_path_is_a_usage_error(repo: Path) -> None:
    code, _, _ = run("--repo", str(repo), str(repo / "nope.yaml"))
    assert code == 2


def test_an_internal_error_is_one_line_on_stderr_and_exit_2(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(*_: object, **__: object) -> None:
        raise KeyError("boom")

    monkeypatch.setattr(cli_module, "load_repository", explode)
    code, out, err = run("--repo", str(repo))
    assert code == 2 and out == ""
    assert err == "relctl: internal error: KeyError: 'boom'\n"


def test_the_real_entry_point_validates_the_project_sample() -> None:
    project = Path(__file__).parent.parent
    done = subprocess.run(
        [str(RELCTL), "validate", "--format", "json"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout) == []
    assert done.stderr == ""


def test_the_cli_starts_without_the_daemon_servers_or_the_simulator_console() -> None:
    """`relctl validate` is a pre-commit hook: importing the CLI must not load what only
    `run`, `platform` and the servers need (apscheduler, uvicorn, apprise, the console)."""
    probe = (
        "import sys, controller.cli\n"
        "heavy = ['controller.daemon', 'controller.server', 'controller.notify', "
        "'controller.cli_platform', 'apscheduler', 'uvicorn', 'apprise']\n"
        "print(','.join(m for m in heavy if m in sys.modules))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == "", f"imported at start-up: {loaded}"
