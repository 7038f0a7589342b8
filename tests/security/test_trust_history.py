"""Attacks on who may change main (issue 10), each as a real git history with real SSH keys.

The controller's :class:`Ledger` is started at an anchor the operator chose and follows main's
first-parent chain; ``relctl check`` judges a pull request with :func:`judge_range`. Each
attack is paired with the same change made by someone with the right, so nothing passes only
because everything is refused.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from gitutil import isolate_git
from historyutil import (
    BUDI,
    EVE,
    JOSE,
    LIM,
    MARIA,
    REWARDS,
    SHOP,
    History,
    access_yaml,
    make_keys,
    public,
    relctl_yaml,
)

from controller.access import (
    Advance,
    Commit,
    Ledger,
    Refusal,
    TrustState,
    identify,
    judge_range,
    ssh_fingerprint,
)
from controller.cli import cli
from controller.manifests import Access, Member, Role

FIFTY, ZERO, HUNDRED = "grayscale: 50\n", "grayscale: 0\n", "grayscale: 100\n"


@pytest.fixture(autouse=True)
def _isolated_git(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_git(monkeypatch, tmp_path / "home")


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_keys(tmp_path_factory.mktemp("keys"), "maria", "budi", "budi_new", "jose", "eve")


def listed(keys: dict[str, Path], *names: str) -> dict[str, str]:
    """Public keys for access_yaml(keys=...): ``budi_new`` is listed as Budi's."""
    return {name.removesuffix("_new"): public(keys[name]) for name in names}


class Main:
    """A release repository, and the controller's ledger anchored at its first commit."""

    def __init__(self, history: History, anchor: str) -> None:
        self.history = history
        self.anchor = anchor
        self.ledger = Ledger(history.path)
        self.state = self.ledger.start(anchor)

    def advance(self, tip: str = "main") -> Advance:
        """Judge main up to ``tip``; the state moves only when main continued."""
        advance = self.ledger.advance(self.state, tip)
        if advance.diverged is None:
            self.state = advance.state
        return advance

    def refused(self) -> list[tuple[str, str]]:
        return sorted((d.path, d.reason) for d in self.state.refusals.values())

    def forbidden(self, *paths: str, tip: str = "main") -> str | None:
        """The reason a release read from ``paths`` at ``tip`` is Forbidden, or None."""
        found = self.ledger.denial(self.state, {p: self.history.blob(p, tip) for p in paths})
        return found.reason if found is not None else None


@pytest.fixture
def signed(tmp_path: Path, keys: dict[str, Path]) -> Main:
    """Signed commits required; Maria (master), Budi (owner of shop) and Jose (developer of
    shop) list their keys; shop and rewards released at 50% by Maria."""
    history = History(tmp_path / "repo")
    anchor = history.commit(
        {
            "access.yaml": access_yaml(keys=listed(keys, "maria", "budi", "jose")),
            "relctl.yaml": relctl_yaml(signed=True),
            SHOP: FIFTY,
            REWARDS: FIFTY,
        },
        MARIA,
        key=keys["maria"],
    )
    return Main(history, anchor)


@pytest.fixture
def unsigned(tmp_path: Path) -> Main:
    history = History(tmp_path / "repo")
    anchor = history.commit(
        {
            "access.yaml": access_yaml(),
            "relctl.yaml": relctl_yaml(signed=False),
            SHOP: FIFTY,
            REWARDS: FIFTY,
        },
        MARIA,
    )
    return Main(history, anchor)


def forbidden_files(repo: Path, base: str, head: str) -> list[tuple[str, str]]:
    """(file, reason) of every refused change ``relctl check --base base --head head`` finds."""
    return sorted({(d.path, str(d.reason)) for d in judge_range(repo, base, head)})


# --------------------------------------------------------------------------------------------
# 1. Orphan-root takeover
# --------------------------------------------------------------------------------------------


def test_orphan_root_merge_is_a_divergence_and_check_refuses_it(
    signed: Main, keys: dict[str, Path]
) -> None:
    repo = signed.history
    old_main = repo.head
    # Eve: a new root holding her own access.yaml (she is the master, with her key) ...
    repo.checkout("--orphan", "evil")
    evil_access = access_yaml(keys={"maria": public(keys["eve"])}).replace(MARIA.email, EVE.email)
    repo.commit({"access.yaml": evil_access, SHOP: HUNDRED}, EVE, key=keys["eve"])
    # ... merged with main as its SECOND parent, so the push is a fast-forward of main.
    repo.git("merge", "--quiet", "-s", "ours", "--allow-unrelated-histories", "-m", "m", "main")
    takeover = repo.head
    repo.git("update-ref", "refs/heads/main", takeover)
    repo.checkout("main")
    assert repo.git("merge-base", "--is-ancestor", old_main, takeover) == ""  # exit 0

    advance = signed.advance()

    assert advance.diverged is not None and advance.steps == 0
    assert (advance.diverged.known, advance.diverged.tip) == (old_main, takeover)
    assert advance.state.commit == old_main and signed.state.commit == old_main
    assert old_main[:7] in advance.diverged.message and takeover[:7] in advance.diverged.message
    # relctl check on the same push, as CI would run it on the pull request:
    assert ("access.yaml", "unknown-key") in forbidden_files(repo.path, old_main, takeover)
    assert (SHOP, "unknown-key") in forbidden_files(repo.path, old_main, takeover)
    result = CliRunner().invoke(
        cli, ["check", "--repo", str(repo.path), "--base", old_main, "--head", takeover]
    )
    assert result.exit_code == 1
    assert "[forbidden]" in result.output and "access.yaml" in result.output


# --------------------------------------------------------------------------------------------
# 3. A merge that restores an older manifest
# --------------------------------------------------------------------------------------------


def test_a_merge_restoring_an_older_manifest_is_judged_for_what_it_restores(
    signed: Main, keys: dict[str, Path]
) -> None:
    repo = signed.history
    repo.checkout("-b", "jose")  # from the 50% version
    repo.commit({"releases/shop/dana.yaml": ZERO}, JOSE, key=keys["jose"])
    repo.checkout("main")
    repo.commit({REWARDS: ZERO}, MARIA, key=keys["maria"])  # the master withdraws the 50%
    before = repo.head
    # Jose (developer of shop only) merges and resolves rewards to his branch's 50%: the file
    # equals one parent, so a combined diff never lists it.
    merge = repo.merge("jose", JOSE, key=keys["jose"], keep={REWARDS: FIFTY})

    signed.advance()

    assert signed.refused() == [(REWARDS, "no-right")]
    assert signed.state.refusals[REWARDS].commit == merge
    assert signed.forbidden(REWARDS) == "no-right"
    assert signed.forbidden("releases/shop/dana.yaml") is None
    assert forbidden_files(repo.path, before, merge) == [(REWARDS, "no-right")]


def test_a_master_may_merge_back_an_older_version(signed: Main, keys: dict[str, Path]) -> None:
    repo = signed.history
    repo.checkout("-b", "old")
    repo.commit({"releases/shop/dana.yaml": ZERO}, JOSE, key=keys["jose"])
    repo.checkout("main")
    repo.commit({REWARDS: ZERO}, MARIA, key=keys["maria"])
    repo.merge("old", MARIA, key=keys["maria"], keep={REWARDS: FIFTY})
    signed.advance()
    assert signed.refused() == []
    assert signed.forbidden(REWARDS) is None


# --------------------------------------------------------------------------------------------
# 4. Revocation and key rotation
# --------------------------------------------------------------------------------------------


def test_a_removed_members_signed_commit_on_an_old_parent_is_refused(
    signed: Main, keys: dict[str, Path]
) -> None:
    repo = signed.history
    repo.checkout("-b", "late")  # Budi prepares his change while he is still a member
    budi_change = repo.commit({SHOP: HUNDRED}, BUDI, key=keys["budi"])
    repo.checkout("main")
    removal = repo.commit(
        {"access.yaml": access_yaml(budi=None, keys=listed(keys, "maria", "jose"))},
        MARIA,
        key=keys["maria"],
    )
    # He merges it himself: a clean merge, signed with his (no longer listed) key.
    repo.merge("late", BUDI, key=keys["budi"])

    signed.advance()

    assert signed.refused() == [(SHOP, "unknown-key")]
    assert signed.forbidden(SHOP) == "unknown-key"
    assert forbidden_files(repo.path, removal, budi_change) == [(SHOP, "unknown-key")]
    # With his commit as the first parent instead, main does not continue the removal.
    repo.checkout("-b", "foxtrot", budi_change)
    repo.merge("main", BUDI, key=keys["budi"])
    assert signed.advance("foxtrot").diverged is not None
    # Jose, still a developer of shop, may change it.
    repo.checkout("main")
    repo.commit({SHOP: ZERO}, JOSE, key=keys["jose"])
    signed.advance()
    assert signed.refused() == []


def test_a_rotated_key_is_refused_and_the_new_one_accepted(
    signed: Main, keys: dict[str, Path]
) -> None:
    repo = signed.history
    repo.checkout("-b", "stolen")  # made with the old key before the rotation
    repo.commit({SHOP: ZERO}, BUDI, key=keys["budi"])
    repo.checkout("main")
    repo.commit(
        {"access.yaml": access_yaml(keys=listed(keys, "maria", "budi_new", "jose"))},
        MARIA,
        key=keys["maria"],
    )
    repo.merge("stolen", BUDI, key=keys["budi"])  # whoever holds the old key merges it
    repo.commit({"releases/shop/dana.yaml": ZERO}, BUDI, key=keys["budi"])

    signed.advance()

    assert signed.refused() == [
        ("releases/shop/dana.yaml", "unknown-key"),
        (SHOP, "unknown-key"),
    ]
    repo.commit({"releases/shop/dana.yaml": HUNDRED, SHOP: HUNDRED}, BUDI, key=keys["budi_new"])
    signed.advance()
    assert signed.refused() == []


# --------------------------------------------------------------------------------------------
# Signatures that are not good
# --------------------------------------------------------------------------------------------


def test_a_tampered_signature_by_a_members_key_is_refused(
    signed: Main, keys: dict[str, Path]
) -> None:
    repo = signed.history
    signed.advance()
    good = repo.commit({SHOP: HUNDRED}, BUDI, key=keys["budi"])
    body = repo.git("cat-file", "commit", good).replace("\n\nchange", "\n\nchange (edited)")
    tampered = subprocess.run(
        ["git", "hash-object", "-t", "commit", "-w", "--stdin"],
        cwd=repo.path,
        input=body + "\n",
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    repo.git("update-ref", "refs/heads/main", tampered)

    signed.advance()

    assert signed.refused() == [(SHOP, "bad-signature")]
    assert "git reports the signature as bad" in signed.state.refusals[SHOP].message


@pytest.mark.parametrize("status", ["U", "B", "E", "X", "Y", "R", "", "GG"])
def test_a_signature_git_does_not_report_good_is_refused_even_with_a_members_key(
    keys: dict[str, Path], status: str
) -> None:
    key = public(keys["budi"])
    access = Access((Member(BUDI.email, BUDI.name, Role.OWNER, ("shop",), key),))
    fingerprint = ssh_fingerprint(key)
    assert fingerprint is not None
    commit = Commit("a" * 40, (), BUDI.name, BUDI.email, signature=status, fingerprint=fingerprint)
    verdict = identify(commit, access, signed=True)
    assert isinstance(verdict, Refusal) and verdict.reason == "bad-signature"
    good = Commit("a" * 40, (), BUDI.name, BUDI.email, signature="G", fingerprint=fingerprint)
    assert identify(good, access, signed=True) == access.members[0]


# --------------------------------------------------------------------------------------------
# 12. Lockout
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "members",
    [
        "apiVersion: relctl/v1\nkind: Access\nmembers: []\n",
        "the no-key version",  # a master without a signingKey while signing is required
    ],
)
def test_an_access_yaml_that_would_lock_everyone_out_is_refused_and_the_master_goes_on(
    signed: Main, keys: dict[str, Path], members: str
) -> None:
    repo = signed.history
    if members == "the no-key version":
        members = access_yaml(keys=listed(keys, "budi", "jose"))
    lockout = repo.commit({"access.yaml": members}, MARIA, key=keys["maria"])
    repo.commit({SHOP: ZERO}, MARIA, key=keys["maria"])
    repo.commit({REWARDS: ZERO}, BUDI, key=keys["budi"])

    signed.advance()

    assert signed.refused() == [("access.yaml", "untrusted-access"), (REWARDS, "no-right")]
    assert signed.state.refusals["access.yaml"].commit == lockout
    assert signed.forbidden(SHOP) is None
    # The master's next change of access.yaml is judged as usual, and clears the refusal.
    repo.commit(
        {"access.yaml": access_yaml(budi=("shop", "rewards"), keys=listed(keys, "maria", "budi"))},
        MARIA,
        key=keys["maria"],
    )
    repo.commit({REWARDS: HUNDRED}, BUDI, key=keys["budi"])
    signed.advance()
    assert signed.refused() == []
    assert forbidden_files(repo.path, signed.anchor, lockout) == [
        ("access.yaml", "untrusted-access")
    ]


# --------------------------------------------------------------------------------------------
# Anchors, force pushes, new histories
# --------------------------------------------------------------------------------------------


def test_a_second_first_use_anchor_on_a_parallel_branch_is_refused(tmp_path: Path) -> None:
    repo = History(tmp_path / "repo")
    before = repo.commit({"README.md": "release repo\n"}, EVE)
    anchor = repo.commit(
        {"access.yaml": access_yaml(), "relctl.yaml": relctl_yaml(signed=False)}, MARIA
    )
    main = Main(repo, anchor)
    # Eve's own "first" access.yaml, on a branch from before the anchor.
    repo.checkout("-b", "parallel", before)
    eve_is_master = access_yaml().replace(MARIA.email, EVE.email)
    repo.commit(
        {"access.yaml": eve_is_master, "relctl.yaml": relctl_yaml(signed=False), SHOP: HUNDRED},
        EVE,
    )
    repo.merge("main", EVE, options=("-s", "ours"))  # main reachable, as the second parent
    assert main.advance("parallel").diverged is not None
    # Merged the other way round (main first), it is Eve's change and refused.
    repo.checkout("main")
    repo.merge("parallel", EVE, options=("-X", "theirs"))
    main.advance()
    assert main.refused() == [("access.yaml", "not-a-member"), (SHOP, "not-a-member")]
    assert main.forbidden(SHOP) == "not-a-member"


def test_a_force_pushed_rollback_or_new_history_is_a_divergence(unsigned: Main) -> None:
    repo = unsigned.history
    repo.commit({SHOP: ZERO}, MARIA)
    judged = repo.commit({REWARDS: ZERO}, MARIA)
    unsigned.advance()
    state = unsigned.state

    def diverged(tip: str) -> bool:
        advance = unsigned.advance(tip)
        assert advance.state == state and advance.steps == 0
        return advance.diverged is not None and advance.diverged.known == judged

    assert diverged(f"{judged}~1")  # rollback
    repo.checkout("-b", "amended", judged)
    repo.git("commit", "--quiet", "--amend", "-m", "same tree, new commit")
    assert diverged("amended")  # rewritten history
    repo.checkout("--orphan", "fresh")
    repo.commit({"access.yaml": access_yaml()}, MARIA)
    assert diverged("fresh")  # a whole new history
    gone = TrustState(state.anchor, "1" * 40, state.authorized, state.refusals)
    advance = unsigned.ledger.advance(gone, "main")
    assert advance.diverged is not None and "not in the repository" in advance.diverged.message
    # Main going on from the judged commit is followed as usual.
    repo.checkout("main")
    repo.commit({SHOP: HUNDRED}, MARIA)
    assert unsigned.advance().diverged is None and unsigned.state.commit == repo.head


# --------------------------------------------------------------------------------------------
# Refusals: cleared by authorized content only; status/ is never input
# --------------------------------------------------------------------------------------------


def test_an_authorized_change_after_a_refusal_clears_it(unsigned: Main) -> None:
    repo = unsigned.history
    repo.commit({SHOP: HUNDRED}, LIM)
    unsigned.advance()
    assert unsigned.forbidden(SHOP) == "no-right"
    repo.commit({SHOP: ZERO}, BUDI)  # the owner of shop: his version replaces it
    unsigned.advance()
    assert unsigned.refused() == [] and unsigned.forbidden(SHOP) is None
    assert unsigned.state.authorized[SHOP] == repo.blob(SHOP)
    # A later refused change, then a revert to the authorized content by anyone: cleared too.
    repo.commit({SHOP: HUNDRED}, EVE)
    unsigned.advance()
    assert unsigned.forbidden(SHOP) == "not-a-member"
    repo.commit({SHOP: ZERO}, EVE)
    unsigned.advance()
    assert unsigned.refused() == [] and unsigned.forbidden(SHOP) is None


def test_a_forged_status_file_changes_nothing_in_the_ledger(unsigned: Main) -> None:
    repo = unsigned.history
    refused = repo.commit({SHOP: HUNDRED}, LIM)
    unsigned.advance()
    before = unsigned.state
    forged = (
        "apiVersion: relctl/v1\nkind: Status\nphase: Ready\n"
        f"observedCommit: {refused}\nspecHash: 0123456789abcdef\n"
        "appliedSpecHash: 0123456789abcdef\n"
    )
    repo.commit({"status/shop/gcash.yaml": forged}, EVE)
    repo.commit({"status/shop/gcash.yaml": forged + "# by a master\n"}, MARIA)
    unsigned.advance()
    assert unsigned.state.authorized == before.authorized
    assert unsigned.state.refusals == before.refusals
    assert not any(path.startswith("status/") for path in unsigned.state.authorized)
    assert unsigned.forbidden(SHOP, "status/shop/gcash.yaml") == "no-right"


# --------------------------------------------------------------------------------------------
# Governance paths need a master; each rule's allowed side
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "content"),
    [
        (".gitattributes", "releases/** export-ignore\n"),
        ("relctl.yaml", relctl_yaml(signed=True) + "# by an owner\n"),
        ("testers/vip.csv", "2088000000000009\n"),
        ("releases/loose.yaml", "grayscale: 100\n"),
    ],
)
def test_a_governance_path_changed_by_a_non_master_is_refused(
    signed: Main, keys: dict[str, Path], path: str, content: str
) -> None:
    repo = signed.history
    base = repo.head
    repo.commit({path: content}, BUDI, key=keys["budi"])
    signed.advance()
    assert signed.refused() == [(path, "not-master")]
    assert signed.forbidden(path) == "not-master"
    assert forbidden_files(repo.path, base, "main") == [(path, "not-master")]
    # The same change by a master is authorized.
    repo.commit({path: content + "# reviewed\n"}, MARIA, key=keys["maria"])
    signed.advance()
    assert signed.refused() == [] and signed.forbidden(path) is None


@pytest.mark.parametrize(
    ("who", "path"),
    [
        ("budi", SHOP),  # an owner, in their mini program
        ("jose", SHOP),  # a developer, in their mini program
        ("maria", REWARDS),  # a master, anywhere
        ("maria", "access.yaml"),  # a master, a valid access.yaml
        ("maria", ".gitattributes"),  # a master, any other path
    ],
)
def test_each_right_allows_its_change(
    signed: Main, keys: dict[str, Path], who: str, path: str
) -> None:
    person = {"budi": BUDI, "jose": JOSE, "maria": MARIA}[who]
    repo = signed.history
    base = repo.head
    content = (
        access_yaml(budi=("shop", "rewards"), keys=listed(keys, "maria", "budi", "jose"))
        if path == "access.yaml"
        else HUNDRED
    )
    repo.commit({path: content}, person, key=keys[who])
    signed.advance()
    assert signed.refused() == []
    assert signed.forbidden(path) is None
    assert forbidden_files(repo.path, base, "main") == []


def test_a_right_a_master_grants_applies_from_the_next_step(
    unsigned: Main,
) -> None:
    repo = unsigned.history
    lim = "role: developer\n    miniPrograms: [rewards]"
    grant = access_yaml().replace(lim, lim.replace("[rewards]", "[rewards, shop]"))
    repo.commit({"access.yaml": grant}, MARIA)
    repo.commit({SHOP: HUNDRED}, LIM)  # Lim was made a developer of shop as well
    unsigned.advance()
    assert unsigned.refused() == [] and unsigned.forbidden(SHOP) is None
