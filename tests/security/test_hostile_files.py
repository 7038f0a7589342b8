"""A hostile release repository: whoever can push a commit must not be able to make relctl
leak a host file, hang, exhaust memory or CPU, or wedge the other releases.

Every attack is tried in a work tree (``relctl validate`` through the real CLI: exit 1, a
located problem, nothing leaked, no hang) and, where git can hold it, in a commit read as
git objects (``GitTree``: symbolic links and submodules committed for real).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import git
import pytest
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/: shared helpers

from controller_world import make_world, manifest
from gitutil import git as run_git
from gitutil import identity, isolate_git

from controller.check import check_change
from controller.cli import cli
from controller.gitops import GitTree
from controller.manifests import (
    TESTERS_SIZE_LIMIT,
    LoadResult,
    Problem,
    Severity,
    load_access,
    load_repository,
)
from controller.repofiles import MemoryFiles, RepoFiles, WorkTree

pytestmark = pytest.mark.timeout(120)  # a hang fails the test instead of the whole run

BASE = Path(__file__).resolve().parent.parent / "data" / "base"
SECRET = "TOP-SECRET-host-credential"
MARIA = identity("Maria", "maria@example.com")
#: A valid manifest for releases/shop/dana.yaml whose description is the secret: if relctl
#: ever followed a link to it, a release would carry the secret.
SECRET_MANIFEST = f"""apiVersion: relctl/v1
kind: Release
metadata: {{miniProgram: shop, targetApp: gcash}}
spec:
  version: "9.9.9"
  basicInfo: {{name: Secret, description: {SECRET}}}
"""
RELCTL_DANA = "  dana:\n    name: DANA\n"
#: 2088000000000001 in fullwidth digits (U+FF10..U+FF19): str.isdigit() says yes, RE2 no.
FULLWIDTH_ID = "".join(chr(0xFF10 + int(digit)) for digit in "2088000000000001")


@pytest.fixture(autouse=True)
def _isolated_git(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_git(monkeypatch, tmp_path / "home")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A copy of tests/data/base (shop/gcash with a tester file, shop/tng) plus a second mini
    program, rewards/gcash, that every attack must leave loading."""
    root = tmp_path / "repo"
    shutil.copytree(BASE, root)
    rewards = (root / "releases/shop/tng.yaml").read_text().replace("shop", "rewards")
    (root / "releases/rewards").mkdir()
    (root / "releases/rewards/tng.yaml").write_text(rewards)
    return root


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    """A host file outside the repository."""
    path = tmp_path / "host" / "credentials.yaml"
    path.parent.mkdir()
    path.write_text(SECRET_MANIFEST)
    return path


def validate(root: Path, *args: str) -> tuple[int, str]:
    """``relctl validate --repo root`` through the real click command: (exit code, output)."""
    result = CliRunner().invoke(cli, ["validate", "--repo", str(root), *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.output


def found(result: LoadResult, file: str) -> list[Problem]:
    return [p for p in result.problems if p.file == file]


def assert_refused(code: int, out: str, file: str, problem_code: str) -> None:
    """Exit 1, and ``file`` reported at line 1, column 1 with ``problem_code``; no secret."""
    assert code == 1, out
    assert f"{file}:1:1: error: " in out and f"[{problem_code}]" in out, out
    assert SECRET not in out


def keys(result: LoadResult) -> list[str]:
    return [r.key for r in result.releases]


def assert_no_secret(result: LoadResult) -> None:
    assert all(SECRET not in repr(r) for r in result.releases)
    assert all(SECRET not in p.message and SECRET not in (p.hint or "") for p in result.problems)


# --------------------------------------------------------------------------------------------
# Work tree: relctl validate on a checkout
# --------------------------------------------------------------------------------------------


def test_manifest_linked_to_a_host_file_is_refused_and_others_load(
    repo: Path, secret: Path
) -> None:
    (repo / "releases/shop/dana.yaml").symlink_to(secret)
    (repo / "relctl.yaml").write_text((repo / "relctl.yaml").read_text() + RELCTL_DANA)
    code, out = validate(repo)
    assert_refused(code, out, "releases/shop/dana.yaml", "not-a-file")
    result = load_repository(repo)
    assert_no_secret(result)
    assert keys(result) == ["rewards/tng", "shop/gcash", "shop/tng"]
    assert [p.code for p in result.invalid["shop/dana"]] == ["not-a-file"]


@pytest.mark.parametrize("target", ["/dev/zero", "fifo"])
def test_manifest_linked_to_an_endless_or_blocking_file_does_not_hang(
    repo: Path, tmp_path: Path, target: str
) -> None:
    if target == "fifo":
        os.mkfifo(tmp_path / "pipe")
        target = str(tmp_path / "pipe")
    (repo / "releases/shop/dana.yaml").symlink_to(target)
    code, out = validate(repo)
    assert_refused(code, out, "releases/shop/dana.yaml", "not-a-file")
    assert keys(load_repository(repo)) == ["rewards/tng", "shop/gcash", "shop/tng"]


def test_a_fifo_in_the_work_tree_is_refused_without_blocking_the_real_relctl(repo: Path) -> None:
    os.mkfifo(repo / "releases/shop/dana.yaml")
    os.mkfifo(repo / "releases/shop/testers/gcash.csv.tmp")  # not referenced: ignored
    relctl = Path(sys.executable).parent / "relctl"
    done = subprocess.run(
        [str(relctl), "validate", "--repo", str(repo)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert_refused(done.returncode, done.stdout, "releases/shop/dana.yaml", "not-a-file")


def test_tester_file_linked_to_a_host_file_is_refused_at_the_manifest(
    repo: Path, secret: Path
) -> None:
    (repo / "releases/shop/testers/gcash.csv").unlink()
    (repo / "releases/shop/testers/gcash.csv").symlink_to(secret)
    code, out = validate(repo)
    assert code == 1 and SECRET not in out
    assert "releases/shop/gcash.yaml:13:20:" in out and "[tester-file-path]" in out, out
    result = load_repository(repo)
    assert keys(result) == ["rewards/tng", "shop/tng"] and "shop/gcash" in result.invalid


def test_tester_file_that_is_a_fifo_is_refused_at_its_own_path(repo: Path) -> None:
    (repo / "releases/shop/testers/gcash.csv").unlink()
    os.mkfifo(repo / "releases/shop/testers/gcash.csv")
    code, out = validate(repo)
    assert_refused(code, out, "releases/shop/testers/gcash.csv", "not-a-file")


def test_a_200_mb_tester_file_is_never_read(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with open(repo / "releases/shop/testers/gcash.csv", "r+b") as handle:
        handle.truncate(200 * 2**20)  # sparse: costs no disk
    read = 0
    real_read = os.read

    def counting_read(fd: int, size: int) -> bytes:
        nonlocal read
        data = real_read(fd, size)
        read += len(data)
        return data

    monkeypatch.setattr(os, "read", counting_read)
    code, out = validate(repo)
    assert_refused(code, out, "releases/shop/testers/gcash.csv", "too-large")
    assert read < TESTERS_SIZE_LIMIT, f"{read:,} bytes read"


def test_an_oversized_manifest_is_never_read(repo: Path) -> None:
    with open(repo / "releases/shop/tng.yaml", "r+b") as handle:
        handle.truncate(200 * 2**20)
    code, out = validate(repo)
    assert_refused(code, out, "releases/shop/tng.yaml", "too-large")


@pytest.mark.parametrize("name", ["relctl.yaml", "access.yaml"])
def test_config_or_access_linked_to_a_host_file_is_refused(
    repo: Path, secret: Path, name: str
) -> None:
    (repo / name).unlink()
    (repo / name).symlink_to(secret)
    code, out = validate(repo)
    assert_refused(code, out, name, "not-a-file")
    result = load_repository(repo)
    assert_no_secret(result)
    if name == "access.yaml":  # releases do not depend on access.yaml
        assert keys(result) == ["rewards/tng", "shop/gcash", "shop/tng"]
    else:
        assert result.config is None and result.releases == ()


def test_a_linked_mini_program_directory_is_unreadable_not_deleted(
    repo: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    shutil.copytree(repo / "releases/shop", outside)
    shutil.rmtree(repo / "releases/shop")
    (repo / "releases/shop").symlink_to(outside)
    code, out = validate(repo)
    assert_refused(code, out, "releases/shop", "not-a-file")
    result = load_repository(repo)
    assert result.unreadable == ("releases/shop/",)
    assert keys(result) == ["rewards/tng"]


def test_a_linked_releases_directory_is_unreadable(repo: Path, tmp_path: Path) -> None:
    shutil.move(repo / "releases", tmp_path / "elsewhere")
    (repo / "releases").symlink_to(tmp_path / "elsewhere")
    code, out = validate(repo)
    assert_refused(code, out, "releases", "not-a-file")
    result = load_repository(repo)
    assert result.unreadable == ("releases/",) and result.releases == ()


@pytest.mark.parametrize("name", ["da\nna.yaml", "da\\na.yaml", "da\x1b[2Jna.yaml"])
def test_a_manifest_with_an_odd_name_is_reported_by_its_repr(repo: Path, name: str) -> None:
    (repo / "releases/shop" / name).write_text(SECRET_MANIFEST)
    code, out = validate(repo)
    shown = repr(f"releases/shop/{name}")
    assert code == 1 and f"{shown}:1:1: error: " in out and "[bad-path]" in out, out
    assert SECRET not in out and "\x1b" not in out
    starts = ("releases/", "'releases/", "  hint:", "1 error")
    assert all(line.startswith(starts) for line in out.splitlines()), out
    assert keys(load_repository(repo)) == ["rewards/tng", "shop/gcash", "shop/tng"]


# --------------------------------------------------------------------------------------------
# A commit read as git objects (GitTree): the controller, relctl check, relctl plan --base
# --------------------------------------------------------------------------------------------


def commit_all(root: Path, message: str = "change") -> str:
    run_git(root, "add", "--all", env=MARIA)
    run_git(root, "commit", "--quiet", "--allow-empty", "-m", message, env=MARIA)
    return run_git(root, "rev-parse", "HEAD")


def init(root: Path) -> str:
    run_git(root, "init", "--quiet", "--initial-branch=main")
    return commit_all(root, "seed")


def add_entry(root: Path, mode: str, sha: str, path: str) -> str:
    """Commit an index entry git would not make from a work tree (a submodule, a name with a
    newline) with ``git update-index --cacheinfo``."""
    run_git(root, "update-index", "--add", "--cacheinfo", f"{mode},{sha},{path}")
    run_git(root, "commit", "--quiet", "-m", f"add {path!r}", env=MARIA)
    return run_git(root, "rev-parse", "HEAD")


@contextmanager
def tree(root: Path, commit: str) -> Iterator[RepoFiles]:
    with git.Repo(root) as repository:
        yield GitTree(repository, commit)


def load_commit(root: Path, commit: str) -> LoadResult:
    with tree(root, commit) as files:
        return load_repository(files)


def test_committed_symlinks_are_entries_never_followed(repo: Path, secret: Path) -> None:
    init(repo)
    (repo / "releases/shop/dana.yaml").symlink_to(secret)
    (repo / "releases/shop/testers/gcash.csv").unlink()
    (repo / "releases/shop/testers/gcash.csv").symlink_to(secret)
    head = commit_all(repo)
    result = load_commit(repo, head)
    assert_no_secret(result)
    dana = found(result, "releases/shop/dana.yaml")
    assert [(p.line, p.column, p.code) for p in dana] == [(1, 1, "not-a-file")]
    assert "symbolic link" in dana[0].message
    assert "tester-file-path" in {p.code for p in result.invalid["shop/gcash"]}
    assert keys(result) == ["rewards/tng", "shop/tng"]


def test_a_submodule_where_a_manifest_is_expected_is_a_problem_of_that_release(
    repo: Path,
) -> None:
    seed = init(repo)
    run_git(repo, "rm", "--quiet", "--cached", "releases/shop/gcash.yaml")
    head = add_entry(repo, "160000", seed, "releases/shop/gcash.yaml")
    result = load_commit(repo, head)
    assert [p.code for p in result.invalid["shop/gcash"]] == ["not-a-file"]
    assert "submodule" in result.invalid["shop/gcash"][0].message
    assert keys(result) == ["rewards/tng", "shop/tng"]


def test_a_submodule_as_a_mini_program_directory_is_unreadable(repo: Path) -> None:
    seed = init(repo)
    run_git(repo, "rm", "--quiet", "-r", "--cached", "releases/shop")
    head = add_entry(repo, "160000", seed, "releases/shop")
    result = load_commit(repo, head)
    assert result.unreadable == ("releases/shop/",)
    assert [(p.file, p.code) for p in result.errors] == [("releases/shop", "not-a-file")]
    assert keys(result) == ["rewards/tng"]


@pytest.mark.parametrize("name", ["relctl.yaml", "access.yaml"])
def test_committed_config_or_access_that_is_not_a_file_is_refused(
    repo: Path, secret: Path, name: str
) -> None:
    init(repo)
    (repo / name).unlink()
    (repo / name).symlink_to(secret)
    result = load_commit(repo, commit_all(repo))
    assert [(p.file, p.line, p.column, p.code) for p in result.errors] == [
        (name, 1, 1, "not-a-file")
    ]
    assert_no_secret(result)


def test_a_committed_tester_file_over_the_limit_is_not_read(repo: Path) -> None:
    init(repo)
    rows = b"2088000000000011\n" * (TESTERS_SIZE_LIMIT // 17 + 10)
    (repo / "releases/shop/testers/gcash.csv").write_bytes(rows)
    result = load_commit(repo, commit_all(repo))
    (problem,) = result.errors
    assert (problem.file, problem.code) == ("releases/shop/testers/gcash.csv", "too-large")
    assert keys(result) == ["rewards/tng", "shop/tng"]


def test_committed_odd_names_are_reported_by_their_repr(repo: Path) -> None:
    init(repo)
    blob = run_git(repo, "hash-object", "-w", "releases/shop/tng.yaml")
    add_entry(repo, "100644", blob, "releases/shop/t\nng.yaml")
    head = add_entry(repo, "100644", blob, "releases/shop/t\\ng.yaml")
    result = load_commit(repo, head)
    assert {(p.file, p.code) for p in result.errors} == {
        (repr("releases/shop/t\nng.yaml"), "bad-path"),
        (repr("releases/shop/t\\ng.yaml"), "bad-path"),
    }
    assert all("\n" not in p.file for p in result.problems)
    assert keys(result) == ["rewards/tng", "shop/gcash", "shop/tng"]


def test_working_tree_encoding_in_gitattributes_changes_nothing_read(repo: Path) -> None:
    seed = init(repo)
    (repo / ".gitattributes").write_text("*.yaml working-tree-encoding=UTF-16\n")
    run_git(repo, "add", ".gitattributes", env=MARIA)
    run_git(repo, "commit", "--quiet", "-m", "an outsider's attributes", env=MARIA)
    head = run_git(repo, "rev-parse", "HEAD")
    # git itself would now hand a checkout UTF-16 bytes ...
    checked_out = subprocess.run(
        ["git", "cat-file", "--filters", f"{head}:releases/shop/tng.yaml"],
        cwd=repo, capture_output=True, check=True,
    ).stdout  # fmt: skip
    assert checked_out.startswith((b"\xff\xfe", b"\xfe\xff"))
    # ... but the objects relctl reads are the committed bytes.
    before, after = load_commit(repo, seed), load_commit(repo, head)
    assert after.ok and after.releases == before.releases and len(after.releases) == 3


def test_relctl_check_reports_links_and_submodules_of_a_pull_request(
    repo: Path, secret: Path
) -> None:
    base = init(repo)
    (repo / "releases/shop/dana.yaml").symlink_to(secret)
    commit_all(repo)
    head = add_entry(repo, "160000", base, "releases/rewards/gcash.yaml")
    result = check_change(repo, base, head)
    assert {(p.file, p.code) for p in result.errors} == {
        ("releases/shop/dana.yaml", "not-a-file"),
        ("releases/rewards/gcash.yaml", "not-a-file"),
    }
    assert all(SECRET not in p.message for p in result.problems)


# --------------------------------------------------------------------------------------------
# Patterns, ids, access and huge values
# --------------------------------------------------------------------------------------------


def set_pattern(repo: Path, pattern: str) -> None:
    path = repo / "relctl.yaml"
    text = path.read_text().replace(
        "    testersMax: 10\n", f"    testersMax: 10\n    userIdPattern: '{pattern}'\n"
    )
    path.write_text(text)


@pytest.mark.timeout(10)
def test_a_catastrophic_pattern_runs_in_linear_time(repo: Path) -> None:
    set_pattern(repo, "^([0-9]+)+$")
    long_id = "1" * 100_000 + "x"  # exponential for a backtracking engine
    (repo / "releases/shop/testers/gcash.csv").write_text(f"{long_id}\n2088000000000011\n")
    code, out = validate(repo)
    assert code == 1 and "releases/shop/testers/gcash.csv:1:1: error: " in out
    assert "[tester-id]" in out and len(out) < 2000
    assert "'111111" in out and "(100,001 characters)" in out


@pytest.mark.parametrize("pattern", ["^(2088)[0-9]{8}\\1$", "^(?=2088)[0-9]{16}$"])
def test_a_pattern_re2_cannot_run_is_a_located_error(repo: Path, pattern: str) -> None:
    set_pattern(repo, pattern)
    code, out = validate(repo)
    assert code == 1
    assert "relctl.yaml:9:20: error: targetApps.gcash.userIdPattern: " in out, out
    assert "[user-id-pattern]" in out and "RE2 syntax" in out
    assert "re2.cc" not in out


@pytest.mark.parametrize(
    "tester", ['"2088000000000001\\n"', f'"{FULLWIDTH_ID}"', '"2088000000000001 "']
)
def test_ids_must_match_the_whole_pattern_in_ascii(repo: Path, tester: str) -> None:
    path = repo / "releases/shop/gcash.yaml"
    path.write_text(path.read_text().replace('["2088000000000001"]', f"[{tester}]"))
    result = load_repository(repo)
    assert [p.code for p in result.errors] == ["tester-id"]
    assert result.errors[0].path == "spec.pilot.testers[0]"
    assert "shop/gcash" in result.invalid


def test_fullwidth_digits_in_a_tester_file_are_not_digits(repo: Path) -> None:
    (repo / "releases/shop/testers/gcash.csv").write_text(f"userId\n{FULLWIDTH_ID}\n")
    result = load_repository(repo)
    assert [(p.file, p.line, p.code) for p in result.errors] == [
        ("releases/shop/testers/gcash.csv", 2, "tester-id")
    ]


NO_MASTER = """apiVersion: relctl/v1
kind: Access
members:
  - {email: budi@example.com, name: Budi, role: owner, miniPrograms: [shop]}
"""
UNSIGNED_MASTER = """apiVersion: relctl/v1
kind: Access
members:
  - {email: maria@example.com, name: Maria, role: master}
  - {email: budi@example.com, name: Budi, role: owner, miniPrograms: [shop],
     signingKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ1nD4YrcQyYwM2k1gWdXo6Bx0kXr2oC1o5p9b2B4q1X"}
"""


def test_access_without_a_master_is_refused(repo: Path) -> None:
    (repo / "access.yaml").write_text(NO_MASTER)
    code, out = validate(repo)
    assert code == 1 and "access.yaml:3:1: error: members: " in out and "[no-master]" in out
    access, problems = load_access(MemoryFiles({"access.yaml": NO_MASTER.encode()}))
    assert access is None and [p.code for p in problems] == ["no-master"]


def test_signed_commits_need_a_master_with_a_signing_key(repo: Path) -> None:
    (repo / "access.yaml").write_text(UNSIGNED_MASTER)
    assert validate(repo)[0] == 0  # signatures not required: a master is enough
    config = repo / "relctl.yaml"
    config.write_text(config.read_text() + "policy:\n  requireSignedCommits: true\n")
    code, out = validate(repo)
    assert code == 1 and "access.yaml:3:1: error: members: " in out
    assert "[no-signing-master]" in out
    files = MemoryFiles({"access.yaml": UNSIGNED_MASTER.encode()})
    assert load_access(files, require_signed=False)[0] is not None
    access, problems = load_access(files, require_signed=True)
    assert access is None and [p.code for p in problems] == ["no-signing-master"]


def test_a_900_kb_description_gives_a_short_message(repo: Path) -> None:
    path = repo / "releases/shop/gcash.yaml"
    huge = "a" * 900_000
    path.write_text(path.read_text().replace("description: Shop things", f"description: {huge}"))
    code, out = validate(repo)
    assert code == 1 and "[schema]" in out
    assert len(out) < 1000, len(out)
    assert "…' (900,000 characters)" in out


def test_a_900_kb_unknown_key_gives_a_short_message(repo: Path) -> None:
    path = repo / "releases/shop/gcash.yaml"
    path.write_text(path.read_text() + f"? {'k' * 900_000}\n: 1\n")  # explicit: no 1024 limit
    code, out = validate(repo)
    assert code == 1 and "[unknown-field]" in out and len(out) < 1000, len(out)


def test_thousands_of_bad_ids_give_a_bounded_report(repo: Path) -> None:
    rows = "".join(f"bad-{n}\n" for n in range(50_000))
    (repo / "releases/shop/testers/gcash.csv").write_text(f"userId\n{rows}")
    result = load_repository(repo)
    in_file = found(result, "releases/shop/testers/gcash.csv")
    assert 1 < len(in_file) <= 201
    assert in_file[-1].code == "more-problems" or any(p.code == "more-problems" for p in in_file)
    assert len(result.invalid["shop/gcash"]) <= 202


@pytest.mark.parametrize(
    ("text", "problem_code"),
    [
        ("  grayscale: " + "9" * 5000, "number-too-large"),
        ("  grayscale: 1e999", "non-finite-number"),
    ],
)
def test_numbers_python_cannot_hold_are_located_errors(
    repo: Path, text: str, problem_code: str
) -> None:
    path = repo / "releases/shop/tng.yaml"
    path.write_text(path.read_text().replace("  grayscale: 10", text))
    code, out = validate(repo)
    assert code == 1 and "releases/shop/tng.yaml:8:14: error: " in out
    assert f"[{problem_code}]" in out and len(out) < 1000


def test_a_csv_field_over_the_csv_module_limit_is_a_located_error(repo: Path) -> None:
    (repo / "releases/shop/testers/gcash.csv").write_text(f'2088000000000011,"{"x" * 200_000}"\n')
    code, out = validate(repo)
    assert code == 1 and "releases/shop/testers/gcash.csv:1:1: error: " in out
    assert "[tester-file-syntax]" in out and len(out) < 1000


def test_work_tree_and_memory_files_agree(repo: Path) -> None:
    """The same repository read from disk and from memory loads the same (no hidden reads
    outside RepoFiles)."""
    files = {
        e.path: WorkTree(repo).read(e.path, 2**20)
        for e in WorkTree(repo).walk("")
        if e.kind.value == "file"
    }
    assert load_repository(MemoryFiles(files)) == load_repository(repo)
    assert Severity.ERROR not in {p.severity for p in load_repository(repo).problems}


def test_the_controller_keeps_statuses_under_a_directory_it_cannot_list(tmp_path: Path) -> None:
    shop, rewards = "releases/shop/gcash.yaml", "releases/rewards/gcash.yaml"
    files = {shop: manifest(), rewards: manifest("rewards", "gcash")}
    with make_world(tmp_path, files) as world:
        world.pass_once()
        assert set(world.statuses()) == {"shop/gcash", "rewards/gcash"}
        world.person.pull()
        world.person.git("rm", "--quiet", "-r", "releases/rewards")
        (world.person.path / "releases/rewards").symlink_to("/etc")
        world.person.git("add", "releases/rewards")
        world.person.git("commit", "--quiet", "-m", "rewards is now a link")
        world.person.push()

        result = world.pass_once()

        assert result.removed == ()
        assert set(world.statuses()) == {"shop/gcash", "rewards/gcash"}


def test_an_odd_name_given_on_the_command_line_is_reported_not_dropped(repo: Path) -> None:
    odd = repo / "releases/shop/da\nna.yaml"
    odd.write_text(SECRET_MANIFEST)
    result = load_repository(repo, [odd])
    assert [(p.file, p.code) for p in result.errors] == [
        (repr("releases/shop/da\nna.yaml"), "bad-path")
    ]
    assert result.releases == () and SECRET not in repr(result)


@pytest.mark.timeout(30)
def test_sixty_thousand_unknown_fields_are_located_in_linear_time(repo: Path) -> None:
    path = repo / "releases/shop/tng.yaml"
    path.write_text(path.read_text() + "".join(f"  k{n}: 1\n" for n in range(60_000)))
    result = load_repository(repo)
    in_file = found(result, "releases/shop/tng.yaml")
    assert len(in_file) == 101 and {p.code for p in in_file} == {"unknown-field"}
    assert any(p.message == "59,900 more unknown fields" for p in in_file)
    assert keys(result) == ["rewards/tng", "shop/gcash"]
