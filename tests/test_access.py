"""Access control on commits (controller/access.py), against real git repositories and keys."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
from gitutil import git, identity, isolate_git, write_files

from controller.access import AccessLog, Denial, render_codeowners, ssh_fingerprint
from controller.gitops import GitError
from controller.manifests import Access, Member, Role


@pytest.fixture(autouse=True)
def _isolated_git(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_git(monkeypatch, tmp_path / "home")


@dataclass(frozen=True)
class Person:
    name: str
    email: str

    @property
    def author(self) -> str:
        return f"{self.name} <{self.email}>"


MARIA = Person("Maria Santos", "maria.santos@example.com")  # master
BUDI = Person("Budi Hartono", "budi.hartono@example.com")  # owner of shop
AISYAH = Person("Aisyah Rahman", "aisyah.rahman@example.com")  # owner of rewards
JOSE = Person("Jose Reyes", "jose.reyes@example.com")  # developer of shop
EVE = Person("Eve Outsider", "eve@example.com")  # not a member


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Private key paths (the .pub next to each) for maria, budi and a stranger."""
    folder = tmp_path_factory.mktemp("keys")
    found = {}
    for name in ("maria", "budi", "stranger"):
        path = folder / name
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path), "-C", name],
            check=True,
        )
        found[name] = path
    return found


def public(key: Path) -> str:
    return Path(f"{key}.pub").read_text().strip()


def access_yaml(*, budi: tuple[str, ...] = ("shop",), keys: Mapping[str, str] | None = None) -> str:
    keys = keys or {}

    def key(name: str) -> str:
        return f'    signingKey: "{keys[name]}"\n' if name in keys else ""

    return (
        "apiVersion: relctl/v1\nkind: Access\nmembers:\n"
        f"  - email: {MARIA.email}\n    name: {MARIA.name}\n    role: master\n{key('maria')}"
        f"  - email: {BUDI.email}\n    name: {BUDI.name}\n    role: owner\n"
        f"    miniPrograms: [{', '.join(budi)}]\n{key('budi')}"
        f"  - email: {AISYAH.email}\n    name: {AISYAH.name}\n    role: owner\n"
        "    miniPrograms: [rewards]\n"
        f"  - email: {JOSE.email}\n    name: {JOSE.name}\n    role: developer\n"
        "    miniPrograms: [shop]\n"
    )


def relctl_yaml(*, signed: bool) -> str:
    return (
        "apiVersion: relctl/v1\nkind: Config\ntargetApps:\n  gcash:\n    name: GCash\n"
        f"policy:\n  requireSignedCommits: {'true' if signed else 'false'}\n"
    )


class Repo:
    """A work tree where people commit (optionally SSH-signed)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        git(path.parent, "init", "--quiet", "--initial-branch=main", str(path))

    def commit(
        self,
        files: Mapping[str, str | None],
        by: Person,
        *,
        key: Path | None = None,
        message: str = "change",
    ) -> str:
        write_files(self.path, files)
        git(self.path, "add", "--all")
        signing = ["-c", "gpg.format=ssh", "-c", f"user.signingkey={key}"] if key else []
        sign = ["-S"] if key else []
        env = identity(by.name, by.email)
        git(
            self.path, *signing, "commit", "--quiet", *sign, "--allow-empty", "-m", message, env=env
        )
        return self.head

    def git(self, *args: str, by: Person = MARIA) -> str:
        return git(self.path, *args, env=identity(by.name, by.email))

    @property
    def head(self) -> str:
        return git(self.path, "rev-parse", "HEAD")

    def denials(self, *paths: str, since: str | None = None) -> list[Denial]:
        return AccessLog(self.path).denials(list(paths) or ["releases/"], since=since)


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    """A release repository whose first commit (by Maria) adds access.yaml and relctl.yaml."""
    made = Repo(tmp_path / "repo")
    made.commit(
        {"access.yaml": access_yaml(), "relctl.yaml": relctl_yaml(signed=False)},
        MARIA,
        message="access",
    )
    return made


@pytest.fixture
def signed_repo(tmp_path: Path, keys: dict[str, Path]) -> Repo:
    """Signed commits required; Maria and Budi list their keys."""
    made = Repo(tmp_path / "repo")
    listed = {"maria": public(keys["maria"]), "budi": public(keys["budi"])}
    made.commit(
        {"access.yaml": access_yaml(keys=listed), "relctl.yaml": relctl_yaml(signed=True)},
        MARIA,
        key=keys["maria"],
    )
    return made


def reasons(denials: list[Denial]) -> list[tuple[str, str]]:
    return [(d.reason, d.path) for d in denials]


# --------------------------------------------------------------------------------------------
# Release rights
# --------------------------------------------------------------------------------------------


def test_owner_may_change_their_mini_program(repo: Repo) -> None:
    repo.commit({"releases/shop/gcash.yaml": "a\n"}, BUDI)
    assert repo.denials("releases/shop/") == []


def test_owner_changing_another_mini_program_is_refused(repo: Repo) -> None:
    sha = repo.commit({"releases/rewards/gcash.yaml": "a\n"}, BUDI)
    (denial,) = repo.denials("releases/rewards/gcash.yaml")
    assert denial.commit == sha
    assert denial.reason == "no-right"
    assert denial.identity == BUDI.author
    assert denial.missing == "release rights for mini program rewards"
    assert denial.message == (
        f"commit {sha[:7]} by Budi Hartono <budi.hartono@example.com> changed "
        "releases/rewards/gcash.yaml without release rights for mini program rewards "
        "(an owner of: shop)"
    )
    assert denial.to_dict()["reason"] == "no-right"
    assert AccessLog(repo.path).authorize(["releases/rewards/"]) == denial


def test_non_member_is_refused(repo: Repo) -> None:
    repo.commit({"releases/shop/gcash.yaml": "a\n"}, EVE)
    (denial,) = repo.denials("releases/shop/")
    assert denial.reason == "not-a-member"
    assert denial.identity == "unknown"
    assert "Eve Outsider <eve@example.com> (unverified)" in denial.message


def test_author_email_matches_members_case_insensitively(repo: Repo) -> None:
    repo.commit({"releases/shop/gcash.yaml": "a\n"}, Person("Budi", "Budi.Hartono@EXAMPLE.com"))
    assert repo.denials("releases/shop/") == []


def test_developer_may_change_assigned_mini_program_only(repo: Repo) -> None:
    repo.commit({"releases/shop/gcash.yaml": "a\n"}, JOSE)
    repo.commit({"releases/rewards/gcash.yaml": "a\n"}, JOSE)
    assert reasons(repo.denials("releases/")) == [("no-right", "releases/rewards/gcash.yaml")]
    assert "a developer of: shop" in repo.denials("releases/")[0].message


def test_master_may_change_every_file(repo: Repo) -> None:
    repo.commit(
        {
            "releases/rewards/gcash.yaml": "a\n",
            "releases/shop/gcash.yaml": "b\n",
            "releases/loose.yaml": "c\n",
            "access.yaml": access_yaml(budi=("shop", "rewards")),
            "relctl.yaml": relctl_yaml(signed=False) + "# changed\n",
        },
        MARIA,
    )
    assert repo.denials("releases/", "access.yaml", "relctl.yaml") == []


def test_file_directly_under_releases_needs_a_master(repo: Repo) -> None:
    repo.commit({"releases/loose.yaml": "a\n"}, BUDI)
    assert reasons(repo.denials("releases/")) == [("not-master", "releases/loose.yaml")]


def test_a_file_outside_releases_that_a_release_reads_needs_a_master(repo: Repo) -> None:
    """A tester file shared by several mini programs (``testers/``, ``shared/testers/``)
    belongs to none of them: only a master may change it."""
    repo.commit({"testers/vip.csv": "2088000000000001\n"}, MARIA)
    repo.commit({"shared/testers/qa.csv": "2088000000000002\n"}, BUDI)
    repo.commit({"testers/vip.csv": "2088000000000003\n"}, BUDI)
    found = repo.denials("testers/vip.csv", "shared/testers/qa.csv")
    assert reasons(found) == [
        ("not-master", "shared/testers/qa.csv"),
        ("not-master", "testers/vip.csv"),
    ]
    assert "files outside releases/<mini-program>/ that releases read" in found[0].message


def test_a_hostile_relctl_yaml_in_the_history_is_never_parsed_unsafely(repo: Repo) -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\n"
    bomb += "c: &c [*b, *b, *b, *b, *b, *b, *b, *b]\npolicy: {requireSignedCommits: true}\n"
    repo.commit({"relctl.yaml": bomb}, MARIA)
    repo.commit({"releases/shop/gcash.yaml": "a\n"}, BUDI)
    # Aliases are refused by relctl's loader: the flag cannot be read, the previous one holds.
    assert repo.denials("releases/") == []


def test_rename_needs_rights_on_both_sides(repo: Repo) -> None:
    repo.commit({"releases/shop/gcash.yaml": "a\n"}, BUDI)
    repo.commit({"releases/shop/gcash.yaml": None, "releases/rewards/gcash.yaml": "a\n"}, BUDI)
    assert reasons(repo.denials("releases/")) == [("no-right", "releases/rewards/gcash.yaml")]


def test_paths_select_the_files_judged(repo: Repo) -> None:
    repo.commit({"releases/rewards/gcash.yaml": "a\n", "releases/shop/gcash.yaml": "a\n"}, BUDI)
    assert repo.denials("releases/shop/") == []
    assert repo.denials("releases/shop") == []
    assert len(repo.denials("releases/rewards")) == 1
    assert repo.denials("releases/rewards/dana.yaml") == []


# --------------------------------------------------------------------------------------------
# Governance and the trust chain
# --------------------------------------------------------------------------------------------


def test_no_access_yaml_means_no_access_control(tmp_path: Path) -> None:
    bare = Repo(tmp_path / "repo")
    bare.commit({"releases/rewards/gcash.yaml": "a\n"}, EVE)
    log = AccessLog(bare.path)
    assert not log.enforced
    assert log.access_at("HEAD") is None
    assert log.denials(["releases/"]) == []


def test_first_access_yaml_is_trusted_on_first_use(tmp_path: Path) -> None:
    fresh = Repo(tmp_path / "repo")
    fresh.commit({"releases/rewards/gcash.yaml": "a\n"}, EVE)
    fresh.commit({"access.yaml": access_yaml()}, EVE)  # whoever adds it first
    fresh.commit({"releases/rewards/gcash.yaml": "b\n"}, EVE)
    log = AccessLog(fresh.path)
    assert log.enforced
    assert reasons(log.denials(["releases/", "access.yaml"])) == [
        ("not-a-member", "releases/rewards/gcash.yaml")
    ]


def test_owner_changing_access_yaml_is_refused_and_ignored(repo: Repo) -> None:
    grant = repo.commit({"access.yaml": access_yaml(budi=("shop", "rewards"))}, BUDI)
    after = repo.commit({"releases/rewards/gcash.yaml": "a\n"}, BUDI)
    log = AccessLog(repo.path)
    found = log.denials(["access.yaml", "releases/"])
    assert [(d.commit, d.reason, d.path) for d in found] == [
        (grant, "not-master", "access.yaml"),
        (after, "no-right", "releases/rewards/gcash.yaml"),
    ]
    assert "the master role (access.yaml may only be changed by a master)" in found[0].message
    access = log.access_at("HEAD")
    assert access is not None
    budi = access.member(BUDI.email)
    assert budi is not None and budi.mini_programs == ("shop",)


def test_master_access_change_applies_to_later_commits_only(repo: Repo) -> None:
    before = repo.commit({"releases/rewards/gcash.yaml": "a\n"}, BUDI)
    grant = repo.commit({"access.yaml": access_yaml(budi=("shop", "rewards"))}, MARIA)
    repo.commit({"releases/rewards/gcash.yaml": "b\n"}, BUDI)
    log = AccessLog(repo.path)
    assert [d.commit for d in log.denials(["releases/", "access.yaml"])] == [before]
    old, new = log.access_at(grant), log.access_at("HEAD")
    assert old is not None and new is not None
    assert old.member(BUDI.email) != new.member(BUDI.email)


def test_invalid_access_yaml_is_not_trusted(repo: Repo) -> None:
    repo.commit({"access.yaml": "apiVersion: relctl/v1\nkind: Access\n"}, MARIA)
    repo.commit({"releases/rewards/gcash.yaml": "a\n"}, BUDI)
    found = repo.denials("access.yaml", "releases/")
    assert reasons(found) == [
        ("untrusted-access", "access.yaml"),
        ("no-right", "releases/rewards/gcash.yaml"),
    ]


def test_deleting_access_yaml_does_not_switch_access_control_off(repo: Repo) -> None:
    repo.commit({"access.yaml": None}, MARIA)
    repo.commit({"releases/rewards/gcash.yaml": "a\n"}, EVE)
    assert reasons(repo.denials("access.yaml", "releases/")) == [
        ("untrusted-access", "access.yaml"),
        ("not-a-member", "releases/rewards/gcash.yaml"),
    ]


def test_non_master_cannot_turn_signing_off(signed_repo: Repo, keys: dict[str, Path]) -> None:
    signed_repo.commit({"relctl.yaml": relctl_yaml(signed=False)}, BUDI, key=keys["budi"])
    signed_repo.commit({"releases/shop/gcash.yaml": "a\n"}, BUDI)  # unsigned
    assert reasons(signed_repo.denials("relctl.yaml", "releases/")) == [
        ("not-master", "relctl.yaml"),
        ("unsigned", "releases/shop/gcash.yaml"),
    ]


def test_master_may_turn_signing_off(signed_repo: Repo, keys: dict[str, Path]) -> None:
    signed_repo.commit({"relctl.yaml": relctl_yaml(signed=False)}, MARIA, key=keys["maria"])
    signed_repo.commit({"releases/shop/gcash.yaml": "a\n"}, BUDI)  # unsigned
    assert signed_repo.denials("relctl.yaml", "releases/") == []


# --------------------------------------------------------------------------------------------
# Ranges and merges
# --------------------------------------------------------------------------------------------


def test_since_limits_the_range(repo: Repo) -> None:
    repo.commit({"releases/rewards/gcash.yaml": "a\n"}, BUDI)
    middle = repo.commit({"releases/shop/gcash.yaml": "a\n"}, BUDI)
    late = repo.commit({"releases/rewards/gcash.yaml": "b\n"}, BUDI)
    log = AccessLog(repo.path)
    assert len(log.denials(["releases/"])) == 2
    assert [d.commit for d in log.denials(["releases/"], since=middle)] == [late]
    assert log.denials(["releases/"], since=late) == []


def test_side_branch_commits_are_judged_and_clean_merges_are_not(repo: Repo) -> None:
    repo.git("checkout", "--quiet", "-b", "side")
    shop = repo.commit({"releases/shop/gcash.yaml": "a\n"}, BUDI)
    rewards = repo.commit({"releases/rewards/gcash.yaml": "a\n"}, BUDI)
    repo.git("checkout", "--quiet", "main")
    repo.commit({"releases/shop/dana.yaml": "a\n"}, JOSE)
    repo.git("merge", "--quiet", "--no-ff", "-m", "merge", "side", by=EVE)  # Eve merged
    found = repo.denials("releases/")
    assert [(d.commit, d.reason) for d in found] == [(rewards, "no-right")]
    assert shop not in {d.commit for d in found}


def test_clean_merge_of_one_file_changed_on_both_sides_is_not_judged(repo: Repo) -> None:
    repo.commit({"releases/shop/gcash.yaml": "a\nb\nc\nd\ne\nf\n"}, BUDI)
    repo.git("checkout", "--quiet", "-b", "side")
    repo.commit({"releases/shop/gcash.yaml": "A\nb\nc\nd\ne\nf\n"}, BUDI)
    repo.git("checkout", "--quiet", "main")
    repo.commit({"releases/shop/gcash.yaml": "a\nb\nc\nd\ne\nF\n"}, JOSE)
    repo.git("merge", "--quiet", "--no-ff", "-m", "merge", "side", by=EVE)
    assert repo.denials("releases/") == []


def test_changes_a_merge_makes_on_its_own_are_judged(repo: Repo) -> None:
    repo.git("checkout", "--quiet", "-b", "side")
    repo.commit({"releases/shop/gcash.yaml": "a\n"}, BUDI)
    repo.git("checkout", "--quiet", "main")
    repo.git("merge", "--quiet", "--no-ff", "--no-commit", "side", by=EVE)
    write_files(repo.path, {"releases/rewards/gcash.yaml": "evil\n"})
    repo.git("add", "--all", by=EVE)
    repo.git("commit", "--quiet", "-m", "merge", by=EVE)
    merge = repo.head
    found = repo.denials("releases/")
    assert [(d.commit, d.reason, d.path) for d in found] == [
        (merge, "not-a-member", "releases/rewards/gcash.yaml")
    ]


def test_a_masters_later_commit_to_the_file_clears_its_earlier_denials(repo: Repo) -> None:
    refused = repo.commit({"releases/rewards/gcash.yaml": "a\n"}, BUDI)
    other = repo.commit({"releases/rewards/dana.yaml": "a\n"}, BUDI)
    assert [d.commit for d in repo.denials("releases/")] == [refused, other]
    repo.commit({"releases/rewards/gcash.yaml": "reviewed\n"}, MARIA)
    # Only the file Maria committed to is cleared; dana.yaml still needs her (or Aisyah).
    assert [(d.commit, d.path) for d in repo.denials("releases/")] == [
        (other, "releases/rewards/dana.yaml")
    ]


def test_a_masters_commit_on_a_parallel_branch_clears_nothing(repo: Repo) -> None:
    repo.git("checkout", "--quiet", "-b", "side")
    repo.commit({"releases/rewards/gcash.yaml": "maria's version\n"}, MARIA)
    repo.git("checkout", "--quiet", "main")
    refused = repo.commit({"releases/rewards/gcash.yaml": "budi's version\n"}, BUDI)
    # Maria never saw Budi's change: merging her branch afterwards does not endorse it.
    repo.git("merge", "--quiet", "--no-ff", "-X", "ours", "-m", "merge", "side", by=MARIA)
    assert [d.commit for d in repo.denials("releases/")] == [refused]


# --------------------------------------------------------------------------------------------
# Signed commits
# --------------------------------------------------------------------------------------------


def test_member_signing_with_their_listed_key_is_accepted(
    signed_repo: Repo, keys: dict[str, Path]
) -> None:
    signed_repo.commit({"releases/shop/gcash.yaml": "a\n"}, BUDI, key=keys["budi"])
    signed_repo.commit({"releases/rewards/gcash.yaml": "a\n"}, MARIA, key=keys["maria"])
    assert signed_repo.denials("releases/") == []


def test_forged_author_email_without_signature_is_refused(signed_repo: Repo) -> None:
    signed_repo.commit({"releases/rewards/gcash.yaml": "a\n"}, MARIA)  # anyone can write this
    (denial,) = signed_repo.denials("releases/")
    assert denial.reason == "unsigned"
    assert denial.identity == "unknown"
    assert "(unverified)" in denial.message and "not signed" in denial.message


def test_signature_with_an_unlisted_key_is_refused(
    signed_repo: Repo, keys: dict[str, Path]
) -> None:
    signed_repo.commit({"releases/shop/gcash.yaml": "a\n"}, BUDI, key=keys["stranger"])
    (denial,) = signed_repo.denials("releases/")
    assert denial.reason == "unknown-key"
    assert ssh_fingerprint(public(keys["stranger"])) in denial.message


def test_signer_is_the_identity_whatever_the_author_field_says(
    signed_repo: Repo, keys: dict[str, Path]
) -> None:
    signed_repo.commit({"releases/rewards/gcash.yaml": "a\n"}, MARIA, key=keys["budi"])
    signed_repo.commit({"releases/shop/gcash.yaml": "a\n"}, EVE, key=keys["budi"])
    (denial,) = signed_repo.denials("releases/")
    assert denial.reason == "no-right"
    assert denial.identity == BUDI.author
    assert denial.author == MARIA.author


def test_fingerprint_matches_ssh_keygen(keys: dict[str, Path]) -> None:
    shown = subprocess.run(
        ["ssh-keygen", "-lf", f"{keys['maria']}.pub"], capture_output=True, text=True, check=True
    ).stdout.split()[1]
    assert ssh_fingerprint(public(keys["maria"])) == shown
    assert ssh_fingerprint("ssh-ed25519 not*base64") is None


# --------------------------------------------------------------------------------------------
# Cost and errors
# --------------------------------------------------------------------------------------------


def test_git_runs_once_per_since_not_per_release(
    repo: Repo, monkeypatch: pytest.MonkeyPatch
) -> None:
    for n in range(5):
        repo.commit({f"releases/mp{n}/gcash.yaml": "a\n"}, BUDI)
    calls: list[object] = []
    real_run = subprocess.run

    def counting_run(*args: object, **kwargs: object) -> object:
        calls.append(args)
        return real_run(*args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(subprocess, "run", counting_run)
    log = AccessLog(repo.path)
    built = len(calls)
    first = log.denials(["releases/mp0/"])
    one_range = len(calls)
    for n in range(1, 5):
        log.denials([f"releases/mp{n}/"])
    assert len(calls) == one_range and one_range - built == 1
    assert len(first) == 1


def test_unknown_revision_is_a_git_error(repo: Repo) -> None:
    with pytest.raises(GitError, match="not a commit"):
        AccessLog(repo.path, until="no-such-branch")
    with pytest.raises(GitError, match="not a commit"):
        AccessLog(repo.path).denials(["releases/"], since="nope")


def test_not_a_repository_is_a_git_error(tmp_path: Path) -> None:
    (tmp_path / "plain").mkdir()
    with pytest.raises(GitError):
        AccessLog(tmp_path / "plain")


# --------------------------------------------------------------------------------------------
# CODEOWNERS
# --------------------------------------------------------------------------------------------


def test_codeowners_lists_owners_then_masters() -> None:
    access = Access(
        (
            Member("maria@example.com", "Maria", Role.MASTER),
            Member("budi@example.com", "Budi", Role.OWNER, ("shop",)),
            Member("jose@example.com", "Jose", Role.DEVELOPER, ("shop", "games")),
            Member("lim@example.com", "Lim", Role.MASTER),
        )
    )
    expected = (
        "# Generated by `relctl codeowners` from access.yaml: do not edit by hand.\n"
        "# Owners of each mini program, then the masters, review changes to its releases.\n"
        "\n"
        "/releases/games/ maria@example.com lim@example.com\n"
        "/releases/rewards/ maria@example.com lim@example.com\n"
        "/releases/shop/ budi@example.com maria@example.com lim@example.com\n"
        "\n"
        "/access.yaml maria@example.com lim@example.com\n"
        "/relctl.yaml maria@example.com lim@example.com\n"
        "/status/ maria@example.com lim@example.com\n"
    )
    assert render_codeowners(access, ["shop", "rewards"]) == expected
    assert render_codeowners(access, iter(["rewards", "shop", "rewards"])) == expected
