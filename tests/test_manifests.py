"""Tests of ``controller.manifests``: loading a release repository into typed releases and
located problems. Repositories are real directories in tmp (copies of ``tests/data/base``)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import re2
from hypothesis import given
from hypothesis import strategies as st

from controller.manifests import (
    Access,
    LoadResult,
    Problem,
    Role,
    Severity,
    load_repository,
    parse_testers,
    release_key,
)
from controller.model import RepoConfig

DATA = Path(__file__).parent / "data"
BASE = DATA / "base"
INVALID = DATA / "invalid"
PROJECT = Path(__file__).parent.parent


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    shutil.copytree(BASE, root)
    return root


def write(root: Path, file: str, text: str | bytes) -> Path:
    path = root / file
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def edit(root: Path, file: str, old: str, new: str) -> None:
    path = root / file
    text = path.read_text()
    assert old in text, f"{old!r} not in {file}"
    path.write_text(text.replace(old, new))


def codes(result: LoadResult) -> set[str]:
    return {p.code for p in result.problems}


def only(result: LoadResult, code: str) -> Problem:
    found = [p for p in result.problems if p.code == code]
    assert len(found) == 1, result.problems
    return found[0]


# --- the happy path --------------------------------------------------------------------------


def test_sample_repository_at_the_project_root_is_valid() -> None:
    result = load_repository(PROJECT)
    assert result.ok and not result.problems, result.problems
    keys = [r.key for r in result.releases]
    assert keys == sorted(
        f"{mp}/{app}" for mp in ("shop", "rewards") for app in ("dana", "gcash", "tng")
    )
    assert all(r.spec.grayscale == 0 and not r.spec.pilot.complete for r in result.releases)
    assert isinstance(result.access, Access)
    assert {m.role for m in result.access.members} == set(Role)


def test_base_repository_loads_typed_config_access_and_releases(repo: Path) -> None:
    result = load_repository(repo)
    assert result.ok and result.problems == ()
    assert isinstance(result.config, RepoConfig)
    tng = result.config.target_apps["tng"]
    assert tng.grayscale_values == (10, 30, 50) and tng.environment == "sandbox"
    assert result.config.target_apps["gcash"].testers_max == 10
    assert result.config.platform == "sim:.relctl/platform.db"
    assert result.access is not None and result.access.member("BUDI@example.com") is not None
    assert result.access.members[1].may_release("shop")
    assert not result.access.members[1].may_release("rewards")
    assert result.access.members[0].may_release("anything")
    assert result.invalid == {}
    assert result.files == (
        "access.yaml",
        "relctl.yaml",
        "releases/shop/gcash.yaml",
        "releases/shop/tng.yaml",
    )


def test_testers_are_the_sorted_unique_union_of_inline_and_files(repo: Path) -> None:
    edit(
        repo,
        "releases/shop/gcash.yaml",
        '["2088000000000001"]',
        '["2088000000000013", "2088000000000001"]',
    )
    result = load_repository(repo)
    gcash = next(r for r in result.releases if r.key == "shop/gcash")
    assert gcash.spec.pilot.testers == (
        "2088000000000001",
        "2088000000000011",
        "2088000000000012",
        "2088000000000013",
    )
    warning = only(result, "duplicate-tester")
    assert warning.severity is Severity.WARNING
    assert (warning.file, warning.line, warning.column) == ("releases/shop/testers/gcash.csv", 4, 1)
    assert result.ok and "shop/gcash" not in result.invalid


def test_release_carries_environment_defaults_and_spec(repo: Path) -> None:
    result = load_repository(repo)
    tng = next(r for r in result.releases if r.key == "shop/tng")
    assert tng.environment == "sandbox"
    assert tng.path == "releases/shop/tng.yaml"
    assert tng.spec.version == "1.4.0" and tng.spec.grayscale == 10
    assert tng.spec.pilot.complete and tng.spec.pilot.testers == ()
    assert tng.spec.compatibility.min_pass_rate == 95.0
    assert not (tng.spec.cancel or tng.spec.supersede or tng.spec.paused)
    gcash = next(r for r in result.releases if r.key == "shop/gcash")
    assert gcash.spec.basic_info == {"name": "Shop", "description": "Shop things", "slogan": "Buy"}


# --- semantic checks ------------------------------------------------------------------------


def test_grayscale_outside_the_apps_profile_is_refused(repo: Path) -> None:
    edit(repo, "releases/shop/tng.yaml", "grayscale: 10", "grayscale: 40")
    problem = only(load_repository(repo), "grayscale-value")
    assert problem.path == "spec.grayscale" and (problem.line, problem.column) == (8, 14)
    assert problem.hint == "allowed values: 0, 10, 30, 50, 100"


@pytest.mark.parametrize("percent", [0, 10, 30, 50, 100])
def test_grayscale_profile_values_and_zero_and_full_are_allowed(repo: Path, percent: int) -> None:
    edit(repo, "releases/shop/tng.yaml", "grayscale: 10", f"grayscale: {percent}")
    assert load_repository(repo).ok


def test_cancel_with_grayscale_raise_is_contradictory(repo: Path) -> None:
    edit(repo, "releases/shop/tng.yaml", "grayscale: 10", "grayscale: 10\n  cancel: true")
    result = load_repository(repo)
    assert only(result, "cancel-with-grayscale").path == "spec.cancel"
    assert "shop/tng" in result.invalid and all(r.key != "shop/tng" for r in result.releases)


def test_cancel_alone_is_valid(repo: Path) -> None:
    edit(repo, "releases/shop/tng.yaml", "grayscale: 10", "grayscale: 0\n  cancel: true")
    result = load_repository(repo)
    assert result.ok
    assert next(r for r in result.releases if r.key == "shop/tng").spec.cancel


def test_invalid_release_is_keyed_and_others_still_load(repo: Path) -> None:
    edit(repo, "releases/shop/gcash.yaml", "grayscale: 0", "grayscale: 120")
    result = load_repository(repo)
    assert not result.ok
    assert list(result.invalid) == ["shop/gcash"]
    assert [r.key for r in result.releases] == ["shop/tng"]
    assert result.invalid["shop/gcash"][0].path == "spec.grayscale"


def test_errors_in_a_tester_file_make_the_release_invalid(repo: Path) -> None:
    write(repo, "releases/shop/testers/gcash.csv", "userId\n2088000000000011\nnot-an-id-1\n")
    result = load_repository(repo)
    problem = only(result, "tester-id")
    assert (problem.file, problem.line, problem.column) == ("releases/shop/testers/gcash.csv", 3, 1)
    assert problem in result.invalid["shop/gcash"]


def test_tester_file_tolerates_bom_crlf_blank_lines_comments_and_header(repo: Path) -> None:
    write(
        repo,
        "releases/shop/testers/gcash.csv",
        b"\xef\xbb\xbfuser id,name\r\n\r\n# team a\r\n"
        b"2088000000000021,Ana\r\n  2088000000000022 , Ben\r\n",
    )
    result = load_repository(repo)
    assert result.ok, result.problems
    gcash = next(r for r in result.releases if r.key == "shop/gcash")
    assert gcash.spec.pilot.testers == ("2088000000000001", "2088000000000021", "2088000000000022")


def test_txt_tester_file_takes_the_first_column(repo: Path) -> None:
    write(repo, "releases/shop/testers/qa.txt", "2088000000000031 Ana\n2088000000000032\tBen\n")
    edit(repo, "releases/shop/gcash.yaml", "[testers/gcash.csv]", "[testers/qa.txt]")
    gcash = next(r for r in load_repository(repo).releases if r.key == "shop/gcash")
    assert gcash.spec.pilot.testers == ("2088000000000001", "2088000000000031", "2088000000000032")


def test_parse_testers_reports_lines_and_columns() -> None:
    ids, problems = parse_testers("t.csv", b'id\n"2088000000000001",x\n\n  2088000000000002\n')
    assert problems == []
    assert ids == (("2088000000000001", 2, 2), ("2088000000000002", 4, 3))


def test_tester_file_over_the_size_limit_is_refused(repo: Path) -> None:
    big = b"2088000000000001\n" * (5 * 1024 * 1024 // 17 + 1)
    write(repo, "releases/shop/testers/gcash.csv", big)
    problem = only(load_repository(repo), "too-large")
    assert problem.file == "releases/shop/testers/gcash.csv"


def test_manifest_over_the_size_limit_is_refused(repo: Path) -> None:
    text = (repo / "releases/shop/tng.yaml").read_text() + "# padding\n" * 110_000
    write(repo, "releases/shop/tng.yaml", text)
    result = load_repository(repo)
    assert only(result, "too-large").file == "releases/shop/tng.yaml"
    assert "shop/tng" in result.invalid


def test_tester_file_reached_through_a_symlink_outside_the_repo_is_refused(
    repo: Path, tmp_path: Path
) -> None:
    outside = write(tmp_path, "elsewhere/testers.csv", "2088000000000041\n")
    os.symlink(outside, repo / "releases/shop/testers/link.csv")
    edit(repo, "releases/shop/gcash.yaml", "[testers/gcash.csv]", "[testers/link.csv]")
    problem = only(load_repository(repo), "tester-file-path")
    assert problem.path == "spec.pilot.testersFiles[0]"
    assert "symbolic link" in problem.message


def test_tester_file_elsewhere_inside_the_repo_is_allowed(repo: Path) -> None:
    write(repo, "releases/common/qa.txt", "2088000000000051\n")
    edit(repo, "releases/shop/gcash.yaml", "[testers/gcash.csv]", "[../common/qa.txt]")
    result = load_repository(repo)
    assert result.ok, result.problems


def test_missing_config_builds_no_release_but_still_checks_manifests(repo: Path) -> None:
    (repo / "relctl.yaml").unlink()
    edit(repo, "releases/shop/tng.yaml", "grayscale: 10", "grayscale: 101")
    result = load_repository(repo)
    assert result.config is None and result.releases == ()
    assert codes(result) == {"missing-config", "schema"}
    assert list(result.invalid) == ["shop/tng"]


def test_access_is_optional(repo: Path) -> None:
    (repo / "access.yaml").unlink()
    result = load_repository(repo)
    assert result.ok and result.access is None


def test_master_with_mini_programs_is_a_warning(repo: Path) -> None:
    edit(repo, "access.yaml", "role: master", "role: master\n    miniPrograms: [shop]")
    result = load_repository(repo)
    assert result.ok and only(result, "master-mini-programs").severity is Severity.WARNING


def test_problems_are_sorted_by_file_line_column(repo: Path) -> None:
    edit(repo, "releases/shop/gcash.yaml", "paused: false", "paused: maybe")
    edit(repo, "releases/shop/gcash.yaml", "grayscale: 0", "grayscale: 120")
    edit(repo, "releases/shop/tng.yaml", "grayscale: 10", "grayscale: 11")
    edit(repo, "access.yaml", "role: owner", "role: boss")
    problems = load_repository(repo).problems
    assert [(p.file, p.line, p.column) for p in problems] == sorted(
        (p.file, p.line, p.column) for p in problems
    )
    assert [p.file for p in problems] == [
        "access.yaml",
        "releases/shop/gcash.yaml",
        "releases/shop/gcash.yaml",
        "releases/shop/tng.yaml",
    ]


def test_paths_narrow_the_check_to_the_given_manifests(repo: Path) -> None:
    edit(repo, "releases/shop/gcash.yaml", "grayscale: 0", "grayscale: 120")
    result = load_repository(repo, [Path("releases/shop/tng.yaml")])
    assert result.ok and [r.key for r in result.releases] == ["shop/tng"]
    assert result.files == ("relctl.yaml", "releases/shop/tng.yaml")
    by_tester_file = load_repository(repo, [repo / "releases/shop/testers/gcash.csv"])
    assert list(by_tester_file.invalid) == ["shop/gcash"]


def test_naming_relctl_yaml_rechecks_every_manifest(repo: Path) -> None:
    edit(repo, "relctl.yaml", "grayscaleValues: [10, 30, 50]", "grayscaleValues: [30, 50]")
    result = load_repository(repo, [Path("relctl.yaml")])
    assert only(result, "grayscale-value").file == "releases/shop/tng.yaml"


def test_paths_can_name_an_example_outside_the_layout(repo: Path) -> None:
    write(repo, "examples/bad.yaml", "apiVersion: relctl/v1\nkind: Release\n")
    result = load_repository(repo, [Path("examples/bad.yaml")])
    assert {(p.file, p.path, p.code) for p in result.problems} == {
        ("examples/bad.yaml", "metadata", "required"),
        ("examples/bad.yaml", "spec", "required"),
    }


def test_a_path_outside_the_repository_is_a_caller_error(repo: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="outside the repository"):
        load_repository(repo, [tmp_path])


def test_two_worker_processes_give_the_same_result(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batches of 4: the worker and the caller (stealing batches when the worker is behind)
    both parse, and what comes out is the same as one process's, refusals included."""
    monkeypatch.setattr("controller.manifests.repository._BATCH", 4)
    for n in range(30):
        write(
            repo,
            f"releases/mp{n:02d}/gcash.yaml",
            (repo / "releases/shop/gcash.yaml")
            .read_text()
            .replace("miniProgram: shop", f"miniProgram: mp{n:02d}")
            .replace("[testers/gcash.csv]", "[]")
            .replace("grayscale: 0", "grayscale: 120" if n % 7 == 0 else "grayscale: 0"),
        )
    os.symlink("/etc/hostname", repo / "releases" / "mp03" / "dana.yaml")
    write(repo, "releases/mp04/dana.yaml", "spec: [unclosed\n")
    write(repo, "releases/mp05/gcash.yml", (repo / "releases/mp05/gcash.yaml").read_text())
    serial = load_repository(repo, workers=1)
    parallel = load_repository(repo, workers=2)
    codes = {p.code for p in serial.problems}
    assert codes == {"not-a-file", "yaml-syntax", "duplicate-release", "schema"}
    assert serial.problems == parallel.problems and len(serial.problems) == 9
    assert [r.key for r in serial.releases] == [r.key for r in parallel.releases]
    assert serial.invalid == parallel.invalid


def test_release_key_comes_from_the_path() -> None:
    assert release_key("releases/shop/gcash.yaml") == "shop/gcash"
    assert release_key("releases/shop/gcash.yml") == "shop/gcash"
    assert release_key("releases/shop.yaml") is None
    assert release_key("releases/shop/testers/a.yaml") is None
    assert release_key("other/shop/gcash.yaml") is None


# --- the corpus of invalid inputs -----------------------------------------------------------


def _cases() -> list[Any]:
    cases = []
    for entry in sorted(INVALID.iterdir()):
        if entry.is_dir():
            expects = (entry / "expect").read_text().split("\n")
        else:
            expects = [
                "releases/shop/gcash.yaml:" + line.removeprefix("# expect: ")
                for line in entry.read_bytes().decode("utf-8", "replace").splitlines()
                if line.startswith("# expect: ")
            ]
        expects = [e for e in expects if e.strip()]
        cases.append(pytest.param(entry, expects, id=entry.stem if entry.is_file() else entry.name))
    return cases


def _lay_case(case: Path, root: Path) -> None:
    shutil.copytree(BASE, root)
    if case.is_file():
        shutil.copyfile(case, root / "releases/shop/gcash.yaml")
        return
    for path in sorted(case.rglob("*")):
        rel = path.relative_to(case)
        if path.is_dir() or rel.as_posix() in ("expect", "delete"):
            continue
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, root / rel)
    if (case / "delete").is_file():
        for name in (case / "delete").read_text().split():
            (root / name).unlink()


def test_the_corpus_has_at_least_40_cases() -> None:
    assert len(_cases()) >= 40


@pytest.mark.parametrize(("case", "expects"), _cases())
def test_invalid_input_is_reported_at_its_file_line_and_field(
    case: Path, expects: list[str], tmp_path: Path
) -> None:
    root = tmp_path / "repo"
    _lay_case(case, root)
    result = load_repository(root)
    assert not result.ok
    found = {
        f"{p.file}:{p.line}:{p.column} {p.path or '-'} {p.code}"
        for p in result.problems
        if p.severity is Severity.ERROR
    }
    for expected in expects:
        assert expected in found, f"{expected} not in {sorted(found)}"
    for problem in result.problems:
        assert problem.line >= 1 and problem.column >= 1 and problem.message


# --------------------------------------------------------------------------------------------
# The default user id pattern is checked without RE2, with the same answers
# --------------------------------------------------------------------------------------------

_ID_LIKE = st.one_of(
    st.text(max_size=20),
    st.text(alphabet="0123456789", min_size=14, max_size=18),
    st.text(alphabet="0123456789\u0660\u0661\u00b2\n ", min_size=15, max_size=17),
)


@given(_ID_LIKE)
def test_the_default_user_id_pattern_answers_as_re2_does(text: str) -> None:
    from controller.manifests.patterns import compile_pattern
    from controller.model import DEFAULT_USER_ID_PATTERN

    program = re2.compile(DEFAULT_USER_ID_PATTERN)
    try:
        expected = program.fullmatch(text) is not None
    except UnicodeEncodeError:  # a lone surrogate is no id
        expected = False
    assert compile_pattern(DEFAULT_USER_ID_PATTERN)(text) is expected
