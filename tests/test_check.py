"""relctl check --base: judging a pull request against main and the status main holds."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from controller_world import CONFIG
from gitutil import FileContent, git, identity, isolate_git, write_files

from controller.check import CheckResult, check_change
from controller.cli import cli
from controller.gitops import GitError
from controller.manifests import Problem, Severity
from controller.model import Phase, Status
from controller.platform.protocol import Stage
from controller.status import render_status

GCASH = "releases/shop/gcash.yaml"
DANA = "releases/shop/dana.yaml"
GCASH_STATUS = "status/shop/gcash.yaml"

ACCESS = """\
apiVersion: relctl/v1
kind: Access
members:
  - {email: maria@example.com, name: Maria, role: master}
  - {email: budi@example.com, name: Budi, role: owner, miniPrograms: [shop]}
  - {email: lim@example.com, name: Lim, role: developer, miniPrograms: [rewards]}
"""

MARIA = ("Maria", "maria@example.com")
BUDI = ("Budi", "budi@example.com")
LIM = ("Lim", "lim@example.com")
STRANGER = ("Stranger", "stranger@example.com")
CONTROLLER = ("relctl", "relctl@localhost")

# Fields of MANIFEST by (line, column) of their value: what every refusal is located at.
VERSION_AT = (7, 12)
CONFIGURATION_AT = (12, 5)
GRAYSCALE_AT = (16, 14)
CANCEL_AT = (17, 11)


def manifest(
    mini_program: str = "shop",
    target_app: str = "gcash",
    *,
    version: str = "1.4.0",
    description: str = "Browse and pay.",
    page: str = "pages/index/index",
    complete: bool = False,
    grayscale: int = 0,
    cancel: bool = False,
    supersede: bool = False,
) -> str:
    def flag(value: bool) -> str:
        return "true" if value else "false"

    return f"""\
apiVersion: relctl/v1
kind: Release
metadata:
  miniProgram: {mini_program}
  targetApp: {target_app}
spec:
  version: "{version}"
  basicInfo:
    name: Shop
    description: {description}
  configuration:
    pages: [{page}]
  pilot:
    testers: ["2088000000000001"]
    complete: {flag(complete)}
  grayscale: {grayscale}
  cancel: {flag(cancel)}
  supersede: {flag(supersede)}
"""


def status(
    stage: Stage | None,
    *,
    version: str = "1.4.0",
    phase: Phase = Phase.PILOT_TESTING,
    grayscale: int = 0,
    target_app: str = "gcash",
) -> bytes:
    """A status file as the controller writes it after observing ``stage``."""
    return render_status(
        Status(
            mini_program="shop",
            target_app=target_app,
            version=version,
            observed_commit="0" * 40,
            spec_hash="0123456789abcdef",
            phase=phase,
            release_id="rel-1" if stage is not None else None,
            stage=stage,
            grayscale=grayscale,
            applied_spec_hash="0123456789abcdef" if stage is not None else None,
        )
    )


class Repo:
    """A release repository in a tmp dir: ``main`` as people and the controller left it."""

    def __init__(self, path: Path, files: dict[str, FileContent]) -> None:
        self.path = path
        path.mkdir()
        git(path, "init", "--quiet", "--initial-branch=main")
        self.commit({"relctl.yaml": CONFIG, "access.yaml": ACCESS, **files}, "seed", MARIA)

    def commit(
        self, files: dict[str, FileContent], message: str, who: tuple[str, str] = BUDI
    ) -> str:
        write_files(self.path, files)
        env = identity(*who)
        git(self.path, "add", "--all", env=env)
        git(self.path, "commit", "--quiet", "--allow-empty", "-m", message, env=env)
        return git(self.path, "rev-parse", "HEAD")

    def branch(self, name: str = "change", start: str = "main") -> None:
        git(self.path, "checkout", "--quiet", "-b", name, start)

    def switch(self, name: str) -> None:
        git(self.path, "checkout", "--quiet", name)

    def pull_request(
        self, files: dict[str, FileContent], who: tuple[str, str] = BUDI
    ) -> CheckResult:
        """Branch off main, commit ``files`` as ``who``, and check the branch against main."""
        self.branch()
        self.commit(files, "change", who)
        return check_change(self.path, "main")

    def cli(self, *args: str) -> Result:
        return CliRunner().invoke(cli, ["check", "--repo", str(self.path), *args])


@pytest.fixture(autouse=True)
def _isolated_git(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_git(monkeypatch, tmp_path / "home")


def is_ancestor(repo: Path, ancestor: str, rev: str) -> bool:
    done = subprocess.run(
        ["git", "merge-base", "--is-ancestor", ancestor, rev], cwd=repo, check=False
    )
    return done.returncode == 0


def codes(result: CheckResult) -> list[str]:
    return [p.code for p in result.problems]


def only(result: CheckResult, code: str) -> Problem:
    found = [p for p in result.problems if p.code == code]
    assert len(found) == 1, result.problems
    return found[0]


def located(problem: Problem) -> tuple[str, int, int, str]:
    return problem.file, problem.line, problem.column, problem.path


# --------------------------------------------------------------------------------------------
# what a change may do
# --------------------------------------------------------------------------------------------


def test_raising_grayscale_and_editing_basic_info_in_grayscale_is_allowed(tmp_path: Path) -> None:
    repo = Repo(
        tmp_path / "repo",
        {GCASH: manifest(grayscale=10), GCASH_STATUS: status(Stage.GRAYSCALE, grayscale=10)},
    )

    result = repo.pull_request({GCASH: manifest(grayscale=50, description="Pay faster.")})

    assert result.ok
    assert result.problems == ()
    assert result.base == git(repo.path, "rev-parse", "main")
    assert result.head == git(repo.path, "rev-parse", "HEAD")
    assert result.files == 3  # relctl.yaml, access.yaml and the manifest
    outcome = repo.cli("--base", "main")
    assert outcome.exit_code == 0, outcome.output
    assert outcome.output.endswith(f"{result.base[:7]}..{result.head[:7]}: allowed\n")


def test_editing_only_basic_info_during_review_passes(tmp_path: Path) -> None:
    repo = Repo(
        tmp_path / "repo",
        {GCASH: manifest(), GCASH_STATUS: status(Stage.UNDER_REVIEW, phase=Phase.IN_REVIEW)},
    )

    result = repo.pull_request({GCASH: manifest(description="Now with 'quotes' and more.")})

    assert result.problems == ()


def test_head_validation_problems_are_reported_like_validate(tmp_path: Path) -> None:
    repo = Repo(tmp_path / "repo", {GCASH: manifest()})

    result = repo.pull_request({GCASH: manifest().replace("cancel: false", "cancel: yes")})

    problem = only(result, "yaml-1.1-boolean")
    assert located(problem) == (GCASH, *CANCEL_AT, "spec.cancel")
    assert not result.ok


# --------------------------------------------------------------------------------------------
# version-not-increasing
# --------------------------------------------------------------------------------------------


def test_a_lower_version_is_refused(tmp_path: Path) -> None:
    repo = Repo(tmp_path / "repo", {GCASH: manifest(version="1.4.0")})

    result = repo.pull_request({GCASH: manifest(version="1.3.9")})

    problem = only(result, "version-not-increasing")
    assert located(problem) == (GCASH, *VERSION_AT, "spec.version")
    assert problem.severity is Severity.ERROR
    assert "1.3.9 is not greater than 1.4.0" in problem.message
    assert problem.hint is not None and "1.4.1" in problem.hint


def test_versions_compare_as_numbers_not_strings(tmp_path: Path) -> None:
    repo = Repo(tmp_path / "repo", {GCASH: manifest(version="1.9.0")})

    result = repo.pull_request({GCASH: manifest(version="1.10.0")})

    assert result.problems == ()


# --------------------------------------------------------------------------------------------
# grayscale-decrease
# --------------------------------------------------------------------------------------------


def test_lower_grayscale_than_main_is_refused(tmp_path: Path) -> None:
    repo = Repo(tmp_path / "repo", {GCASH: manifest(grayscale=50)})

    result = repo.pull_request({GCASH: manifest(grayscale=20)})

    problem = only(result, "grayscale-decrease")
    assert located(problem) == (GCASH, *GRAYSCALE_AT, "spec.grayscale")
    assert "50 -> 20" in problem.message
    assert problem.hint is not None and "cancel: true" in problem.hint


def test_grayscale_below_what_the_platform_shows_is_refused(tmp_path: Path) -> None:
    repo = Repo(
        tmp_path / "repo",
        {
            GCASH: manifest(grayscale=10),
            GCASH_STATUS: status(Stage.GRAYSCALE, phase=Phase.GRAYSCALE, grayscale=50),
        },
    )

    result = repo.pull_request({GCASH: manifest(grayscale=30)})

    problem = only(result, "grayscale-decrease")
    assert located(problem) == (GCASH, *GRAYSCALE_AT, "spec.grayscale")
    assert "observed on gcash at base" in problem.message


def test_canceling_with_grayscale_back_to_zero_is_allowed(tmp_path: Path) -> None:
    repo = Repo(
        tmp_path / "repo",
        {
            GCASH: manifest(grayscale=50),
            GCASH_STATUS: status(Stage.GRAYSCALE, phase=Phase.GRAYSCALE, grayscale=50),
        },
    )

    result = repo.pull_request({GCASH: manifest(grayscale=0, cancel=True)})

    assert result.problems == ()


def test_a_new_version_starts_again_at_grayscale_zero(tmp_path: Path) -> None:
    repo = Repo(
        tmp_path / "repo",
        {
            GCASH: manifest(grayscale=100),
            GCASH_STATUS: status(Stage.FULL_RELEASE, phase=Phase.RELEASED, grayscale=100),
        },
    )

    result = repo.pull_request({GCASH: manifest(version="1.5.0", grayscale=0)})

    assert result.problems == ()


# --------------------------------------------------------------------------------------------
# configuration-frozen / configuration-in-review
# --------------------------------------------------------------------------------------------


def test_configuration_change_in_pilot_testing_is_refused(tmp_path: Path) -> None:
    repo = Repo(tmp_path / "repo", {GCASH: manifest(), GCASH_STATUS: status(Stage.PILOT_TESTING)})

    result = repo.pull_request({GCASH: manifest(page="pages/home/home")})

    problem = only(result, "configuration-frozen")
    assert located(problem) == (GCASH, *CONFIGURATION_AT, "spec.configuration")
    assert "in pilot testing" in problem.message


def test_basic_info_change_in_pilot_testing_is_allowed(tmp_path: Path) -> None:
    repo = Repo(tmp_path / "repo", {GCASH: manifest(), GCASH_STATUS: status(Stage.PILOT_TESTING)})

    result = repo.pull_request({GCASH: manifest(description="New words.", complete=True)})

    assert result.problems == ()


def test_configuration_change_under_review_warns_that_the_review_starts_over(
    tmp_path: Path,
) -> None:
    repo = Repo(
        tmp_path / "repo",
        {GCASH: manifest(), GCASH_STATUS: status(Stage.UNDER_REVIEW, phase=Phase.IN_REVIEW)},
    )

    result = repo.pull_request({GCASH: manifest(page="pages/home/home")})

    problem = only(result, "configuration-in-review")
    assert problem.severity is Severity.WARNING
    assert located(problem) == (GCASH, *CONFIGURATION_AT, "spec.configuration")
    assert result.ok
    assert repo.cli("--base", "main").exit_code == 0
    assert repo.cli("--base", "main", "--strict").exit_code == 1


@pytest.mark.parametrize("stage", [Stage.REJECTED, Stage.NEW_VERSION_CREATED, None])
def test_configuration_change_before_review_or_after_rejection_is_allowed(
    tmp_path: Path, stage: Stage | None
) -> None:
    repo = Repo(tmp_path / "repo", {GCASH: manifest(), GCASH_STATUS: status(stage)})

    result = repo.pull_request({GCASH: manifest(page="pages/home/home")})

    assert result.problems == ()


# --------------------------------------------------------------------------------------------
# uncancel
# --------------------------------------------------------------------------------------------


def test_taking_back_a_cancel_is_refused(tmp_path: Path) -> None:
    repo = Repo(
        tmp_path / "repo",
        {
            GCASH: manifest(cancel=True),
            GCASH_STATUS: status(Stage.CANCELED, phase=Phase.CANCELED),
        },
    )

    result = repo.pull_request({GCASH: manifest(cancel=False)})

    problem = only(result, "uncancel")
    assert located(problem) == (GCASH, *CANCEL_AT, "spec.cancel")
    assert "canceled on gcash" in problem.message


def test_removing_the_cancel_field_is_refused_at_spec(tmp_path: Path) -> None:
    repo = Repo(tmp_path / "repo", {GCASH: manifest(cancel=True)})

    result = repo.pull_request({GCASH: manifest().replace("  cancel: false\n", "")})

    problem = only(result, "uncancel")
    assert located(problem) == (GCASH, 7, 3, "spec.cancel")  # the spec mapping


def test_a_new_version_after_a_cancel_is_allowed(tmp_path: Path) -> None:
    repo = Repo(
        tmp_path / "repo",
        {GCASH: manifest(cancel=True), GCASH_STATUS: status(Stage.CANCELED)},
    )

    result = repo.pull_request({GCASH: manifest(version="1.4.1", cancel=False)})

    assert result.problems == ()


# --------------------------------------------------------------------------------------------
# supersede-required
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stage", [Stage.PILOT_TESTING, Stage.GRAYSCALE])
def test_replacing_a_version_testers_or_users_have_needs_supersede(
    tmp_path: Path, stage: Stage
) -> None:
    repo = Repo(tmp_path / "repo", {GCASH: manifest(), GCASH_STATUS: status(stage, grayscale=20)})

    result = repo.pull_request({GCASH: manifest(version="1.5.0")})

    problem = only(result, "supersede-required")
    assert located(problem) == (GCASH, *VERSION_AT, "spec.version")
    assert "1.4.0 -> 1.5.0" in problem.message
    assert problem.hint is not None and "supersede: true" in problem.hint


def test_a_status_version_that_is_not_x_y_z_still_needs_supersede(tmp_path: Path) -> None:
    hand_edited = status(Stage.PILOT_TESTING, version="1.4.0\n")
    repo = Repo(tmp_path / "repo", {GCASH: manifest(), GCASH_STATUS: hand_edited})

    result = repo.pull_request({GCASH: manifest(version="1.5.0")})

    assert codes(result) == ["supersede-required"]


def test_replacing_with_supersede_is_allowed(tmp_path: Path) -> None:
    repo = Repo(tmp_path / "repo", {GCASH: manifest(), GCASH_STATUS: status(Stage.PILOT_TESTING)})

    result = repo.pull_request({GCASH: manifest(version="1.5.0", supersede=True)})

    assert result.problems == ()


def test_replacing_a_fully_released_version_needs_no_supersede(tmp_path: Path) -> None:
    repo = Repo(
        tmp_path / "repo",
        {GCASH: manifest(grayscale=100), GCASH_STATUS: status(Stage.FULL_RELEASE, grayscale=100)},
    )

    result = repo.pull_request({GCASH: manifest(version="1.5.0")})

    assert result.problems == ()


# --------------------------------------------------------------------------------------------
# status-edited, release-removed, renames
# --------------------------------------------------------------------------------------------


def test_editing_a_status_file_is_refused(tmp_path: Path) -> None:
    repo = Repo(tmp_path / "repo", {GCASH: manifest(), GCASH_STATUS: status(Stage.PILOT_TESTING)})

    result = repo.pull_request({GCASH_STATUS: status(Stage.GRAYSCALE, grayscale=100)})

    problem = only(result, "status-edited")
    assert located(problem) == (GCASH_STATUS, 1, 1, "")
    assert problem.severity is Severity.ERROR


def test_deleting_a_status_file_is_refused(tmp_path: Path) -> None:
    repo = Repo(tmp_path / "repo", {GCASH: manifest(), GCASH_STATUS: status(Stage.PILOT_TESTING)})

    result = repo.pull_request({GCASH_STATUS: None})

    assert "deletes status/shop/gcash.yaml" in only(result, "status-edited").message


def test_deleting_a_manifest_warns_that_the_release_is_no_longer_managed(tmp_path: Path) -> None:
    repo = Repo(tmp_path / "repo", {GCASH: manifest(), DANA: manifest(target_app="dana")})

    result = repo.pull_request({DANA: None})

    problem = only(result, "release-removed")
    assert located(problem) == (DANA, 1, 1, "")
    assert problem.severity is Severity.WARNING
    assert result.ok
    assert repo.cli("--base", "main").exit_code == 0
    assert repo.cli("--base", "main", "--strict").exit_code == 1


def test_renaming_a_mini_program_is_a_removal_plus_a_new_release(tmp_path: Path) -> None:
    repo = Repo(tmp_path / "repo", {GCASH: manifest(version="2.0.0", grayscale=50)})
    moved = "releases/store/gcash.yaml"

    result = repo.pull_request(
        {GCASH: None, moved: manifest("store", version="1.0.0", grayscale=0)}, who=MARIA
    )

    assert codes(result) == ["release-removed"]
    assert result.problems[0].file == GCASH


# --------------------------------------------------------------------------------------------
# forbidden
# --------------------------------------------------------------------------------------------


def test_an_owner_of_the_mini_program_may_change_its_release(tmp_path: Path) -> None:
    repo = Repo(tmp_path / "repo", {GCASH: manifest()})

    result = repo.pull_request({GCASH: manifest(grayscale=50)}, who=BUDI)

    assert result.problems == ()


def test_a_member_without_the_right_is_refused_per_file(tmp_path: Path) -> None:
    repo = Repo(tmp_path / "repo", {GCASH: manifest()})

    result = repo.pull_request({GCASH: manifest(grayscale=50)}, who=LIM)

    problem = only(result, "forbidden")
    assert located(problem) == (GCASH, 1, 1, "")
    assert problem.severity is Severity.ERROR
    assert "by Lim <lim@example.com> changed releases/shop/gcash.yaml" in problem.message
    assert "release rights for mini program shop" in problem.message
    assert problem.hint is not None and "grant you the right" in problem.hint


def test_a_shared_tester_file_outside_releases_needs_a_master(tmp_path: Path) -> None:
    shared = manifest().replace(
        'testers: ["2088000000000001"]', "testersFiles: [../../testers/vip.csv]"
    )
    repo = Repo(tmp_path / "repo", {GCASH: shared, "testers/vip.csv": "2088000000000001\n"})

    result = repo.pull_request({"testers/vip.csv": "2088000000000002\n"}, who=BUDI)

    problem = only(result, "forbidden")
    assert located(problem) == ("testers/vip.csv", 1, 1, "")
    assert "without the master role" in problem.message
    # A master may.
    repo.switch("main")
    git(repo.path, "branch", "-D", "change")
    assert repo.pull_request({"testers/vip.csv": "2088000000000003\n"}, who=MARIA).ok


def test_every_file_outside_a_mini_programs_folder_needs_a_master(tmp_path: Path) -> None:
    """Any file outside ``releases/<mp>/`` may change what relctl reads (``.gitattributes``,
    a tester file a manifest will name later): only a master may change it."""
    repo = Repo(tmp_path / "repo", {GCASH: manifest()})

    result = repo.pull_request({"docs/notes.md": "hello\n", ".gitattributes": "* -text\n"}, BUDI)

    assert sorted(p.file for p in result.problems if p.code == "forbidden") == [
        ".gitattributes",
        "docs/notes.md",
    ]
    repo.switch("main")
    git(repo.path, "branch", "-D", "change")
    assert repo.pull_request({"docs/notes.md": "hello\n"}, who=MARIA).ok


def test_someone_not_in_access_yaml_is_refused(tmp_path: Path) -> None:
    repo = Repo(tmp_path / "repo", {GCASH: manifest()})

    result = repo.pull_request({GCASH: manifest(grayscale=50)}, who=STRANGER)

    problem = only(result, "forbidden")
    assert "stranger@example.com" in problem.message
    assert problem.hint is not None and "add you to access.yaml" in problem.hint


def test_an_owner_cannot_grant_themselves_rights_in_access_yaml(tmp_path: Path) -> None:
    repo = Repo(tmp_path / "repo", {GCASH: manifest()})
    granted = ACCESS.replace("miniPrograms: [shop]", "miniPrograms: [shop, rewards]")

    result = repo.pull_request({"access.yaml": granted}, who=BUDI)

    problem = only(result, "forbidden")
    assert located(problem) == ("access.yaml", 1, 1, "")
    assert problem.hint is not None and "master" in problem.hint
    assert not result.ok


def test_a_master_may_change_access_yaml(tmp_path: Path) -> None:
    repo = Repo(tmp_path / "repo", {GCASH: manifest()})
    granted = ACCESS.replace("miniPrograms: [shop]", "miniPrograms: [shop, rewards]")

    result = repo.pull_request({"access.yaml": granted}, who=MARIA)

    assert result.problems == ()


def test_commits_main_got_meanwhile_are_not_judged_against_the_branch(tmp_path: Path) -> None:
    repo = Repo(tmp_path / "repo", {GCASH: manifest(), DANA: manifest(target_app="dana")})
    repo.branch("change")
    repo.commit({GCASH: manifest(grayscale=50)}, "raise gcash", BUDI)
    repo.switch("main")
    repo.commit({DANA: manifest(target_app="dana", grayscale=10)}, "sneaky", STRANGER)
    repo.switch("change")

    result = check_change(repo.path, "main")

    assert result.problems == ()


# --------------------------------------------------------------------------------------------
# main moved on: only the pull request's own change is judged
# --------------------------------------------------------------------------------------------


def test_when_main_moved_on_only_the_branchs_own_change_is_judged(tmp_path: Path) -> None:
    repo = Repo(tmp_path / "repo", {GCASH: manifest(grayscale=10)})
    repo.branch("change")
    repo.commit({GCASH: manifest(grayscale=10, description="Pay faster.")}, "words")
    repo.switch("main")
    repo.commit({GCASH: manifest(grayscale=50)}, "raise", MARIA)
    repo.commit(
        {GCASH_STATUS: status(Stage.GRAYSCALE, phase=Phase.GRAYSCALE, grayscale=50)},
        "status",
        CONTROLLER,
    )
    repo.switch("change")

    result = check_change(repo.path, "main")

    assert result.problems == ()
    assert not is_ancestor(repo.path, "main", "HEAD")


def test_a_branch_that_merged_main_is_not_blamed_for_mains_status_commits(
    tmp_path: Path,
) -> None:
    repo = Repo(tmp_path / "repo", {GCASH: manifest(grayscale=10)})
    repo.branch("change")
    repo.commit({GCASH: manifest(grayscale=10, description="Pay faster.")}, "words")
    repo.switch("main")
    repo.commit({GCASH_STATUS: status(Stage.GRAYSCALE, grayscale=10)}, "status", CONTROLLER)
    repo.switch("change")
    git(repo.path, "merge", "--quiet", "--no-edit", "main", env=identity(*BUDI))
    repo.switch("main")
    repo.commit({GCASH_STATUS: status(Stage.GRAYSCALE, grayscale=20)}, "status", CONTROLLER)
    repo.switch("change")

    result = check_change(repo.path, "main")

    assert result.problems == ()
    outcome = repo.cli("--base", "main")
    assert outcome.exit_code == 0, outcome.output


def test_when_main_moved_on_a_lower_version_than_mains_is_still_refused(tmp_path: Path) -> None:
    repo = Repo(tmp_path / "repo", {GCASH: manifest(version="1.4.0")})
    repo.branch("change")
    repo.commit({GCASH: manifest(version="1.5.0")}, "bump")
    repo.switch("main")
    repo.commit({GCASH: manifest(version="1.6.0")}, "bump further", MARIA)
    repo.switch("change")

    result = check_change(repo.path, "main")

    problem = only(result, "version-not-increasing")
    assert "not greater than 1.6.0 (the version on the base branch now)" in problem.message


# --------------------------------------------------------------------------------------------
# the CLI
# --------------------------------------------------------------------------------------------


def test_github_format_annotates_each_refusal_on_its_line(tmp_path: Path) -> None:
    repo = Repo(
        tmp_path / "repo", {GCASH: manifest(), DANA: manifest("shop", "dana", grayscale=50)}
    )
    repo.pull_request(
        {GCASH: manifest(version="1.3.0"), DANA: manifest("shop", "dana", grayscale=10)}
    )

    outcome = repo.cli("--base", "main", "--format", "github")

    assert outcome.exit_code == 1
    lines = outcome.output.splitlines()
    assert len(lines) == 3
    assert lines[0].startswith(
        f"::error file={DANA},line=16,col=14,title=spec.grayscale (grayscale-decrease)::"
        "grayscale 50 -> 10"
    )
    assert lines[1].startswith(
        f"::error file={GCASH},line=7,col=12,title=spec.version (version-not-increasing)::"
        "version 1.3.0 is not greater than 1.4.0"
    )
    assert "%0Ahint: " in lines[1]
    assert lines[2].startswith("2 errors in 4 files and the change ")


def test_json_format_is_validates_list_of_problems(tmp_path: Path) -> None:
    repo = Repo(tmp_path / "repo", {GCASH: manifest(grayscale=50)})
    repo.pull_request({GCASH: manifest(grayscale=20)})

    outcome = repo.cli("--base", "main", "--format", "json")

    assert outcome.exit_code == 1
    data = json.loads(outcome.output)
    assert data == [
        {
            "file": GCASH,
            "line": 16,
            "column": 14,
            "path": "spec.grayscale",
            "severity": "error",
            "code": "grayscale-decrease",
            "message": data[0]["message"],
            "hint": data[0]["hint"],
        }
    ]


def test_text_format_shows_location_code_and_hint(tmp_path: Path) -> None:
    repo = Repo(tmp_path / "repo", {GCASH: manifest(), GCASH_STATUS: status(Stage.PILOT_TESTING)})
    repo.pull_request({GCASH: manifest(page="pages/home/home")})

    outcome = repo.cli("--base", "main")

    assert outcome.exit_code == 1
    first, hint = outcome.output.splitlines()[:2]
    assert first.startswith(f"{GCASH}:12:5: error: spec.configuration: the configuration of")
    assert first.endswith("[configuration-frozen]")
    assert hint.startswith("  hint: revert the configuration change")


def test_an_unknown_base_is_a_one_line_error_with_exit_2(tmp_path: Path) -> None:
    repo = Repo(tmp_path / "repo", {GCASH: manifest()})

    outcome = repo.cli("--base", "origin/nowhere")

    assert outcome.exit_code == 2
    assert outcome.stdout == ""
    assert outcome.stderr.count("\n") == 1
    assert "'origin/nowhere' is not a commit" in outcome.stderr
    assert "Traceback" not in outcome.stderr
    with pytest.raises(GitError):
        check_change(repo.path, "main", "no-such-head")


def test_export_ignore_in_gitattributes_hides_nothing_from_check(tmp_path: Path) -> None:
    """Finding 9: check read trees with git archive, which honours export-ignore."""
    repo = Repo(tmp_path / "repo", {GCASH: manifest(grayscale=50)})

    result = repo.pull_request(
        {".gitattributes": "releases/** export-ignore\n", GCASH: manifest(grayscale=20)}
    )

    assert "grayscale-decrease" in codes(result)
    assert any(p.code == "forbidden" and p.file == ".gitattributes" for p in result.problems)


def test_switching_a_partly_released_version_to_a_rollout_is_not_a_decrease(
    tmp_path: Path,
) -> None:
    """A rollout's steps at or below the exposure users have count as done; the controller
    never lowers grayscale, so check must not read the missing ``grayscale`` as 0."""
    repo = Repo(tmp_path / "repo", {GCASH: manifest(complete=True, grayscale=50)})
    rollout = (
        "  rollout:\n    steps:\n      - grayscale: 20\n      - pause: {}\n      - grayscale: 100\n"
    )
    switched = manifest(complete=True).replace("  grayscale: 0\n", rollout)

    result = repo.pull_request({GCASH: switched}, MARIA)

    assert "grayscale-decrease" not in codes(result), result.problems
    assert "schema" not in codes(result), result.problems
