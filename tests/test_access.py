"""Access rules on main (controller/access.py), against real git repositories and SSH keys.

Each test commits as people, then moves a :class:`Ledger` from the first commit (the anchor)
to main and reads what it authorized and refused. The attacks on trust itself (forged
anchors, force pushes, revocation) are in ``tests/security/test_trust_history.py``.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from gitutil import isolate_git
from historyutil import (
    AISYAH,
    BUDI,
    EVE,
    JOSE,
    LIM,
    MARIA,
    REWARDS,
    SHOP,
    History,
    Person,
    access_yaml,
    make_keys,
    public,
    relctl_yaml,
)

import controller.access
from controller.access import (
    Denial,
    Ledger,
    TrustError,
    TrustState,
    judge_range,
    render_codeowners,
    ssh_fingerprint,
)
from controller.gitops import GitError
from controller.manifests import Access, Member, Role


@pytest.fixture(autouse=True)
def _isolated_git(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_git(monkeypatch, tmp_path / "home")


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_keys(tmp_path_factory.mktemp("keys"), "maria", "budi", "stranger")


@pytest.fixture
def repo(tmp_path: Path) -> History:
    """A release repository whose first commit (by Maria) is the anchor."""
    made = History(tmp_path / "repo")
    made.commit({"access.yaml": access_yaml(), "relctl.yaml": relctl_yaml(signed=False)}, MARIA)
    return made


@pytest.fixture
def signed_repo(tmp_path: Path, keys: dict[str, Path]) -> History:
    """Signed commits required; Maria and Budi list their keys."""
    made = History(tmp_path / "repo")
    listed = {"maria": public(keys["maria"]), "budi": public(keys["budi"])}
    made.commit(
        {"access.yaml": access_yaml(keys=listed), "relctl.yaml": relctl_yaml(signed=True)},
        MARIA,
        key=keys["maria"],
    )
    return made


def anchor_of(repo: History) -> str:
    return repo.git("rev-list", "--first-parent", "--max-parents=0", "HEAD")


def judged(repo: History, tip: str = "HEAD") -> TrustState:
    ledger = Ledger(repo.path)
    advance = ledger.advance(ledger.start(anchor_of(repo)), tip)
    assert advance.diverged is None
    return advance.state


def refused(state: TrustState) -> list[tuple[str, str]]:
    return sorted((d.path, d.reason) for d in state.refusals.values())


def denial(repo: History, state: TrustState, *paths: str) -> Denial | None:
    return Ledger(repo.path).denial(state, {p: repo.blob(p) for p in paths})


# --------------------------------------------------------------------------------------------
# Release rights
# --------------------------------------------------------------------------------------------


def test_owner_may_change_their_mini_program(repo: History) -> None:
    repo.commit({SHOP: "a\n"}, BUDI)
    state = judged(repo)
    assert refused(state) == []
    assert state.authorized[SHOP] == repo.blob(SHOP)
    assert denial(repo, state, SHOP) is None


def test_owner_changing_another_mini_program_is_refused(repo: History) -> None:
    sha = repo.commit({REWARDS: "a\n"}, BUDI)
    state = judged(repo)
    found = denial(repo, state, REWARDS)
    assert found is not None and found == state.refusals[REWARDS]
    assert (found.commit, found.reason, found.identity) == (sha, "no-right", BUDI.author)
    assert found.missing == "release rights for mini program rewards"
    assert found.message == (
        f"commit {sha[:7]} by Budi Hartono <budi.hartono@example.com> changed "
        "releases/rewards/gcash.yaml without release rights for mini program rewards "
        "(an owner of: shop)"
    )
    assert REWARDS not in state.authorized


def test_non_member_is_refused(repo: History) -> None:
    repo.commit({SHOP: "a\n"}, EVE)
    found = judged(repo).refusals[SHOP]
    assert (found.reason, found.identity) == ("not-a-member", "unknown")
    assert "Eve Outsider <eve@example.com> (unverified)" in found.message


def test_author_email_matches_members_case_insensitively(repo: History) -> None:
    repo.commit({SHOP: "a\n"}, Person("Budi", "Budi.Hartono@EXAMPLE.com"))
    assert refused(judged(repo)) == []


def test_developer_may_change_assigned_mini_program_only(repo: History) -> None:
    repo.commit({SHOP: "a\n"}, JOSE)
    repo.commit({REWARDS: "a\n"}, JOSE)
    state = judged(repo)
    assert refused(state) == [(REWARDS, "no-right")]
    assert "a developer of: shop" in state.refusals[REWARDS].message


def test_master_may_change_every_file(repo: History) -> None:
    repo.commit(
        {
            REWARDS: "a\n",
            SHOP: "b\n",
            "releases/loose.yaml": "c\n",
            ".gitattributes": "* -text\n",
            "access.yaml": access_yaml(budi=("shop", "rewards")),
            "relctl.yaml": relctl_yaml(signed=False) + "# changed\n",
        },
        MARIA,
    )
    state = judged(repo)
    assert refused(state) == []
    assert state.authorized["relctl.yaml"] == repo.blob("relctl.yaml")


@pytest.mark.parametrize(
    "path", ["releases/loose.yaml", "testers/vip.csv", ".gitattributes", "docs/notes.md"]
)
def test_every_file_outside_a_mini_programs_folder_needs_a_master(repo: History, path: str) -> None:
    repo.commit({path: "a\n"}, BUDI)
    state = judged(repo)
    assert refused(state) == [(path, "not-master")]
    assert "may only be changed by a master" in state.refusals[path].message


def test_rename_needs_rights_on_both_sides(repo: History) -> None:
    repo.commit({SHOP: "a\n"}, BUDI)
    repo.commit({SHOP: None, REWARDS: "a\n"}, BUDI)
    state = judged(repo)
    assert refused(state) == [(REWARDS, "no-right")]
    assert SHOP not in state.authorized  # the deletion was his to make


def test_status_files_are_never_judged_nor_authorized(repo: History) -> None:
    repo.commit({"status/shop/gcash.yaml": "phase: Ready\n"}, EVE)
    state = judged(repo)
    assert refused(state) == []
    assert not [p for p in state.authorized if p.startswith("status/")]
    assert Ledger(repo.path).denial(state, {"status/shop/gcash.yaml": "0" * 40}) is None


# --------------------------------------------------------------------------------------------
# Governance
# --------------------------------------------------------------------------------------------


def test_owner_changing_access_yaml_is_refused_and_ignored(repo: History) -> None:
    grant = repo.commit({"access.yaml": access_yaml(budi=("shop", "rewards"))}, BUDI)
    after = repo.commit({REWARDS: "a\n"}, BUDI)
    state = judged(repo)
    assert [(d.commit, d.reason) for _, d in sorted(state.refusals.items())] == [
        (grant, "not-master"),
        (after, "no-right"),
    ]
    assert "the master role (access.yaml may only be changed by a master)" in (
        state.refusals["access.yaml"].message
    )
    budi = Ledger(repo.path).access_in_force(state).member(BUDI.email)
    assert budi is not None and budi.mini_programs == ("shop",)


def test_master_access_change_applies_to_later_commits_only(repo: History) -> None:
    before = repo.commit({REWARDS: "a\n"}, BUDI)
    repo.commit({"access.yaml": access_yaml(budi=("shop", "rewards"))}, MARIA)
    assert judged(repo).refusals[REWARDS].commit == before
    repo.commit({REWARDS: "b\n"}, BUDI)
    state = judged(repo)
    assert refused(state) == []  # his later commit is authorized and replaces the refused one
    budi = Ledger(repo.path).access_in_force(state).member(BUDI.email)
    assert budi is not None and budi.mini_programs == ("shop", "rewards")


@pytest.mark.parametrize(
    ("content", "why"),
    [
        ("apiVersion: relctl/v1\nkind: Access\n", "access.yaml is invalid"),
        (None, "access.yaml was deleted"),
        ("apiVersion: relctl/v1\nkind: Access\nmembers: []\n", "no member has role master"),
        (access_yaml(maria_role="owner"), "no member has role master"),
    ],
)
def test_an_access_yaml_that_leaves_no_valid_rules_is_refused_even_from_a_master(
    repo: History, content: str | None, why: str
) -> None:
    repo.commit({"access.yaml": content}, MARIA)
    repo.commit({REWARDS: "a\n"}, BUDI)
    repo.commit({SHOP: "a\n"}, MARIA)
    state = judged(repo)
    assert refused(state) == [("access.yaml", "untrusted-access"), (REWARDS, "no-right")]
    assert why in state.refusals["access.yaml"].message
    assert Ledger(repo.path).access_in_force(state).member(MARIA.email) is not None


def test_a_hostile_relctl_yaml_is_refused_and_never_parsed_unsafely(repo: History) -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\n"
    bomb += "c: &c [*b, *b, *b, *b, *b, *b, *b, *b]\npolicy: {requireSignedCommits: true}\n"
    repo.commit({"relctl.yaml": bomb}, MARIA)
    repo.commit({SHOP: "a\n"}, BUDI)  # unsigned: the policy in force is still "unsigned"
    state = judged(repo)
    assert refused(state) == [("relctl.yaml", "untrusted-access")]
    assert "relctl.yaml cannot be read" in state.refusals["relctl.yaml"].message


def test_a_relctl_yaml_over_the_size_limit_is_refused(repo: History) -> None:
    repo.commit({"relctl.yaml": relctl_yaml(signed=False) + "#" * (2 << 20) + "\n"}, MARIA)
    assert refused(judged(repo)) == [("relctl.yaml", "untrusted-access")]


def test_non_master_cannot_turn_signing_off(signed_repo: History, keys: dict[str, Path]) -> None:
    signed_repo.commit({"relctl.yaml": relctl_yaml(signed=False)}, BUDI, key=keys["budi"])
    signed_repo.commit({SHOP: "a\n"}, BUDI)  # unsigned
    assert refused(judged(signed_repo)) == [
        ("relctl.yaml", "not-master"),
        (SHOP, "unsigned"),
    ]


def test_master_may_turn_signing_off(signed_repo: History, keys: dict[str, Path]) -> None:
    signed_repo.commit({"relctl.yaml": relctl_yaml(signed=False)}, MARIA, key=keys["maria"])
    signed_repo.commit({SHOP: "a\n"}, BUDI)  # unsigned
    assert refused(judged(signed_repo)) == []


def test_turning_signing_on_needs_a_master_with_a_key(repo: History, keys: dict[str, Path]) -> None:
    repo.commit({"relctl.yaml": relctl_yaml(signed=True)}, MARIA)
    state = judged(repo)
    assert refused(state) == [("relctl.yaml", "untrusted-access")]
    assert "no master has a signingKey" in state.refusals["relctl.yaml"].message
    # The refused version stays in the tree, not in force: a master accepts it only by
    # committing a change. Her key and the policy in one commit: accepted, for the next one.
    listed = {"maria": public(keys["maria"])}
    enabled = relctl_yaml(signed=True) + "# signed from now on\n"
    repo.commit({"access.yaml": access_yaml(keys=listed), "relctl.yaml": enabled}, MARIA)
    repo.commit({SHOP: "b\n"}, BUDI)  # unsigned
    repo.commit({REWARDS: "b\n"}, MARIA, key=keys["maria"])
    assert refused(judged(repo)) == [(SHOP, "unsigned")]


# --------------------------------------------------------------------------------------------
# Merges on main
# --------------------------------------------------------------------------------------------


def test_a_merge_is_its_mergers_change_for_everything_it_brings(repo: History) -> None:
    repo.checkout("-b", "side")
    repo.commit({SHOP: "a\n"}, BUDI)
    repo.checkout("main")
    repo.commit({"releases/shop/dana.yaml": "a\n"}, JOSE)
    repo.merge("side", EVE)  # whoever merges answers for what the merge brings to main
    assert refused(judged(repo)) == [(SHOP, "not-a-member")]


def test_an_owner_may_merge_a_branch_of_their_mini_program(repo: History) -> None:
    repo.checkout("-b", "side")
    repo.commit({SHOP: "a\n"}, JOSE)
    repo.commit({SHOP: "b\n"}, EVE)  # not on main's first-parent chain: not judged itself
    repo.checkout("main")
    repo.commit({"releases/shop/dana.yaml": "a\n"}, JOSE)
    repo.merge("side", BUDI)
    state = judged(repo)
    assert refused(state) == []
    assert state.authorized[SHOP] == repo.blob(SHOP)


def test_a_fast_forward_keeps_each_commit_as_a_step(repo: History) -> None:
    repo.checkout("-b", "side")
    repo.commit({SHOP: "a\n"}, BUDI)
    late = repo.commit({REWARDS: "a\n"}, BUDI)
    repo.checkout("main")
    repo.git("merge", "--quiet", "--ff-only", "side")
    state = judged(repo)
    assert refused(state) == [(REWARDS, "no-right")]
    assert state.refusals[REWARDS].commit == late


# --------------------------------------------------------------------------------------------
# Signed commits
# --------------------------------------------------------------------------------------------


def test_member_signing_with_their_listed_key_is_accepted(
    signed_repo: History, keys: dict[str, Path]
) -> None:
    signed_repo.commit({SHOP: "a\n"}, BUDI, key=keys["budi"])
    signed_repo.commit({REWARDS: "a\n"}, MARIA, key=keys["maria"])
    assert refused(judged(signed_repo)) == []


def test_forged_author_email_without_signature_is_refused(signed_repo: History) -> None:
    signed_repo.commit({REWARDS: "a\n"}, MARIA)  # anyone can write this
    found = judged(signed_repo).refusals[REWARDS]
    assert (found.reason, found.identity) == ("unsigned", "unknown")
    assert "(unverified)" in found.message and "not signed" in found.message


def test_signature_with_an_unlisted_key_is_refused(
    signed_repo: History, keys: dict[str, Path]
) -> None:
    signed_repo.commit({SHOP: "a\n"}, BUDI, key=keys["stranger"])
    found = judged(signed_repo).refusals[SHOP]
    assert found.reason == "unknown-key"
    fingerprint = ssh_fingerprint(public(keys["stranger"]))
    assert fingerprint is not None and fingerprint in found.message


def test_signer_is_the_identity_whatever_the_author_field_says(
    signed_repo: History, keys: dict[str, Path]
) -> None:
    signed_repo.commit({REWARDS: "a\n"}, MARIA, key=keys["budi"])
    signed_repo.commit({SHOP: "a\n"}, EVE, key=keys["budi"])
    state = judged(signed_repo)
    assert refused(state) == [(REWARDS, "no-right")]
    assert state.refusals[REWARDS].identity == BUDI.author
    assert state.refusals[REWARDS].author == MARIA.author


def test_a_key_a_master_adds_counts_from_the_next_commit(
    tmp_path: Path, keys: dict[str, Path]
) -> None:
    made = History(tmp_path / "repo")
    listed = {"maria": public(keys["maria"])}
    made.commit(
        {"access.yaml": access_yaml(keys=listed), "relctl.yaml": relctl_yaml(signed=True)},
        MARIA,
        key=keys["maria"],
    )
    made.commit({SHOP: "a\n"}, BUDI, key=keys["budi"])  # not listed yet
    listed["budi"] = public(keys["budi"])
    made.commit({"access.yaml": access_yaml(keys=listed)}, MARIA, key=keys["maria"])
    made.commit({"releases/shop/dana.yaml": "a\n"}, BUDI, key=keys["budi"])
    state = judged(made)
    assert refused(state) == [(SHOP, "unknown-key")]


def test_fingerprint_matches_ssh_keygen(keys: dict[str, Path]) -> None:
    shown = subprocess.run(
        ["ssh-keygen", "-lf", f"{keys['maria']}.pub"], capture_output=True, text=True, check=True
    ).stdout.split()[1]
    assert ssh_fingerprint(public(keys["maria"])) == shown
    assert ssh_fingerprint("ssh-ed25519 not*base64") is None


# --------------------------------------------------------------------------------------------
# The ledger's state, cost and errors
# --------------------------------------------------------------------------------------------


def test_the_state_survives_json_and_refuses_a_corrupt_one(repo: History) -> None:
    repo.commit({REWARDS: "a\n"}, BUDI)
    state = judged(repo)
    again = TrustState.from_dict(json.loads(json.dumps(state.to_dict())))
    assert again == state
    assert again.refusals[REWARDS].message == state.refusals[REWARDS].message
    broken = state.to_dict() | {"commit": "HEAD"}
    with pytest.raises(TrustError):
        TrustState.from_dict(broken)
    with pytest.raises(TrustError):
        TrustState.from_dict(state.to_dict() | {"authorized": {SHOP: 3}})


def test_advance_continues_where_the_last_one_stopped(repo: History) -> None:
    ledger = Ledger(repo.path)
    state = ledger.start(anchor_of(repo))
    repo.commit({REWARDS: "a\n"}, BUDI)
    middle = ledger.advance(state, "HEAD")
    assert (middle.steps, refused(middle.state)) == (1, [(REWARDS, "no-right")])
    repo.commit({SHOP: "a\n"}, BUDI)
    repo.commit({REWARDS: "b\n"}, AISYAH)
    last = ledger.advance(middle.state, "HEAD")
    assert (last.steps, refused(last.state)) == (2, [])
    assert ledger.advance(last.state, "HEAD") == type(last)(last.state, None, 0)


def test_git_runs_twice_per_advance_without_governance_changes(
    repo: History, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = Ledger(repo.path)
    state = ledger.advance(ledger.start(anchor_of(repo)), "HEAD").state
    for n in range(20):
        repo.commit({f"releases/mp{n}/gcash.yaml": "a\n"}, BUDI)
    calls: list[tuple[str, ...]] = []
    real = controller.access.run_git

    def counting(cwd: Path | str, *args: str, **kwargs: object) -> object:
        calls.append(args)
        return real(cwd, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(controller.access, "run_git", counting)
    advance = ledger.advance(state, "HEAD")
    assert advance.steps == 20 and len(advance.state.refusals) == 20
    assert [args[0] for args in calls] == ["rev-list", "log"]


def test_start_needs_a_valid_access_yaml_with_a_master(tmp_path: Path) -> None:
    bare = History(tmp_path / "repo")
    bare.commit({SHOP: "a\n"}, EVE)
    with pytest.raises(TrustError, match=r"no access\.yaml"):
        Ledger(bare.path).start("HEAD")
    bare.commit({"access.yaml": access_yaml(maria_role="owner")}, EVE)
    with pytest.raises(TrustError, match="no member has role master"):
        Ledger(bare.path).start("HEAD")


def test_unknown_revisions_are_git_errors(repo: History, tmp_path: Path) -> None:
    ledger = Ledger(repo.path)
    with pytest.raises(GitError, match="not a commit"):
        ledger.start("no-such-branch")
    with pytest.raises(GitError, match="not a commit"):
        ledger.advance(ledger.start("HEAD"), "nope")
    with pytest.raises(GitError):
        ledger.advance(ledger.start("HEAD"), "--output=/tmp/x")
    (tmp_path / "plain").mkdir()
    with pytest.raises(GitError):
        Ledger(tmp_path / "plain").start("HEAD")


def test_hostile_names_emails_and_paths_cannot_forge_changes(repo: History) -> None:
    odd = "releases/shop/odd \u00e9\t:100644 100644.yaml"
    repo.commit({odd: "a\n"}, Person("Budi\x01 :000000", BUDI.email))
    repo.commit({REWARDS: "a\n"}, Person("x", "jose.reyes@example.com"))
    state = judged(repo)
    assert state.authorized[odd] == repo.blob(odd)
    assert refused(state) == [(REWARDS, "no-right")]


# --------------------------------------------------------------------------------------------
# Pull requests (judge_range)
# --------------------------------------------------------------------------------------------


def test_judge_range_judges_every_commit_of_the_branch(repo: History) -> None:
    repo.checkout("-b", "change")
    refused_commit = repo.commit({REWARDS: "a\n"}, BUDI)
    repo.commit({SHOP: "a\n"}, BUDI)
    found = judge_range(repo.path, "main", "change")
    assert [(d.commit, d.path, d.reason) for d in found] == [(refused_commit, REWARDS, "no-right")]


def test_judge_range_uses_the_rules_of_the_base(repo: History) -> None:
    repo.checkout("-b", "change")
    repo.commit({"access.yaml": access_yaml(budi=("shop", "rewards"))}, MARIA)
    repo.commit({REWARDS: "a\n"}, BUDI)  # granted in the branch, not yet on main
    assert [(d.path, d.reason) for d in judge_range(repo.path, "main", "change")] == [
        (REWARDS, "no-right")
    ]


def test_judge_range_does_not_blame_a_branch_for_what_it_merged_from_main(
    repo: History,
) -> None:
    repo.checkout("-b", "change")
    repo.commit({SHOP: "a\n"}, BUDI)
    repo.checkout("main")
    repo.commit({"relctl.yaml": relctl_yaml(signed=False) + "# more\n"}, MARIA)
    repo.commit({REWARDS: "a\n"}, AISYAH)
    repo.checkout("change")
    repo.merge("main", BUDI)
    repo.checkout("main")
    repo.commit({"releases/rewards/dana.yaml": "a\n"}, AISYAH)  # main moved on again
    assert judge_range(repo.path, "main", "change") == []


def test_judge_range_refuses_a_merge_that_keeps_an_older_version(repo: History) -> None:
    repo.commit({SHOP: "grayscale: 50\n"}, MARIA)
    repo.checkout("-b", "change")
    repo.commit({REWARDS: "a\n"}, LIM)
    repo.checkout("main")
    repo.commit({SHOP: "grayscale: 0\n"}, MARIA)  # the master withdraws the 50%
    repo.checkout("change")
    repo.merge("main", LIM, options=("-s", "ours"))  # keeps 50% without changing it
    found = judge_range(repo.path, "main", "change")
    assert [(d.path, d.reason) for d in found] == [(SHOP, "not-authorized")]
    assert "a merge kept or brought it from outside the change" in found[0].message


def test_judge_range_without_access_yaml_at_base_is_a_trust_error(tmp_path: Path) -> None:
    bare = History(tmp_path / "repo")
    bare.commit({SHOP: "a\n"}, EVE)
    bare.checkout("-b", "change")
    bare.commit({SHOP: "b\n"}, EVE)
    with pytest.raises(TrustError, match=r"no access\.yaml"):
        judge_range(bare.path, "main", "change")


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
