"""Who may change what on main: the trust ledger, the pull-request check, CODEOWNERS.

The controller keeps a :class:`TrustState` (its own memory, never a file in the repository)
and moves it along main with :meth:`Ledger.advance`; before acting on a release it asks
:meth:`Ledger.denial` whether the files the release is read from are the versions main
authorized. ``relctl check --base`` and ``relctl plan --base`` call :func:`judge_range` on
the commits of a pull request. ``relctl codeowners`` calls :func:`render_codeowners`.

The ledger (``docs/access.md`` says the same for users):

1. Trust starts at an anchor commit the operator names outside the repository
   (:meth:`Ledger.start`): every file of the anchor's tree is authorized as it is there, and its
   ``access.yaml`` must be valid and name a master.
2. Main is followed along its first-parent chain only. A main whose first-parent chain does not
   contain the last commit judged (a force push, a rollback, a new history, a merge whose
   first parent is a new root) is a :class:`Divergence`: nothing is judged and the state does
   not move until the operator re-anchors.
3. Each step ``C`` (parent ``P = C^1``) is judged for the change it makes to main: ``git
   diff-tree -r P C``. A merge is judged for its diff against its first parent, as its
   merger's change: whatever it brings, restored files included.
4. The actor is ``C``'s author email, or, when ``policy.requireSignedCommits`` is in force,
   ``C``'s SSH signature: git must report it good (``G``) and its key must be the
   ``signingKey`` of a member. The rules in force are the authorized ``access.yaml`` and
   ``relctl.yaml`` of the ledger at ``P``, never the versions in ``C``'s own ancestry: a
   removed member or a rotated key fails as soon as the removal is on main.
5. Per changed path: ``releases/<mp>/**`` needs a member who may release ``<mp>``;
   ``status/**`` is the controller's output and never judged; every other path (``access.yaml``,
   ``relctl.yaml``, ``.gitattributes``, shared tester files, anything) needs a master.
6. An authorized change moves ``authorized[path]`` and clears ``refusals[path]``; a refused one
   leaves ``authorized[path]`` as it was and records ``refusals[path]``. A change back to the
   authorized content clears the refusal, whoever made it. A change of ``access.yaml`` or
   ``relctl.yaml`` that relctl cannot read, deletes it, or leaves no master (in signed mode: no
   master with a ``signingKey``) is refused even from a master: it can neither lock everyone
   out nor switch access control off.

A release is acted on only when each of its files at the tip is the authorized version
(:meth:`Ledger.denial`).

Cost of :meth:`Ledger.advance`: one ``git rev-list`` (the first-parent chain, checked before
anything is read) and one ``git log --raw`` over the new steps; ``git cat-file`` (two
processes) only when a governance blob not read before is involved; in signed mode one more
``git log`` with ``%G?``/``%GF``, for which git runs ``ssh-keygen`` once per signed commit.
Git runs only through :func:`controller.gitops.run_git`: bounded output, one error type
(:class:`controller.gitops.GitError`). Repository content never raises; a state that cannot
be trusted raises :class:`TrustError`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import secrets
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Any

from controller.gitops import GitError, run_git
from controller.manifests import ACCESS_FILE, CONFIG_FILE, RELEASES_DIR, Access, Member, Role
from controller.manifests import load_access as _load_access
from controller.manifests.yamlload import YAML_SIZE_LIMIT, load_yaml
from controller.repofiles import MemoryFiles

__all__ = [
    "GOVERNANCE_FILES",
    "Advance",
    "Change",
    "Commit",
    "Denial",
    "Divergence",
    "Ledger",
    "Reason",
    "Refusal",
    "TrustError",
    "TrustState",
    "identify",
    "judge_range",
    "render_codeowners",
    "ssh_fingerprint",
]

#: The files that set the rules: changing them needs a master, and a version relctl cannot
#: read is refused from anyone.
GOVERNANCE_FILES = (ACCESS_FILE, CONFIG_FILE)
#: The controller's output: never authorization input, never judged.
STATUS_PREFIX = "status/"
_HEX = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_ZERO = re.compile(r"0+")
#: One entry of ``--raw`` output: ``:<old mode> <new mode> <old id> <new id> <status>``.
_RAW = re.compile(rb":([0-7]{6}) ([0-7]{6}) ([0-9a-f]{40,64}) ([0-9a-f]{40,64}) ([A-Z])[0-9]*")
_SIGNATURE_WORDS = {
    "B": "bad",
    "U": "good but of unknown validity",
    "X": "expired",
    "Y": "made by an expired key",
    "R": "made by a revoked key",
    "E": "impossible to check",
}


class Reason(StrEnum):
    """Why a change was refused (the ``reason`` code of a :class:`Denial`)."""

    NOT_A_MEMBER = "not-a-member"
    NO_RIGHT = "no-right"
    NOT_MASTER = "not-master"
    UNSIGNED = "unsigned"
    BAD_SIGNATURE = "bad-signature"
    UNKNOWN_KEY = "unknown-key"
    #: A change of access.yaml or relctl.yaml relctl refuses whoever made it (unreadable,
    #: deleted, or leaving no master).
    UNTRUSTED_ACCESS = "untrusted-access"
    #: Content no judged commit made: it differs from the authorized version and no refusal
    #: explains it (a merge that kept or brought an older version, or a tree not judged).
    NOT_AUTHORIZED = "not-authorized"


class TrustError(Exception):
    """Trust cannot start or continue: a bad anchor, or a corrupt saved state."""


@dataclass(frozen=True)
class Denial:
    """A refused change: which commit, who, which file, and the missing right."""

    commit: str  # full sha
    author: str  # "Name <email>" as git recorded it
    path: str  # the file the commit changed, repo-relative
    reason: str  # a Reason value
    missing: str  # the missing right in words
    identity: str  # who relctl believes made it: a member, the signer, or "unknown"
    detail: str = ""  # what relctl found instead, e.g. "an owner of: shop"

    @property
    def message(self) -> str:
        """One sentence a person understands."""
        if self.reason == Reason.NOT_AUTHORIZED:
            text = f"{self.path} at {self.commit[:7]} is not {self.missing}"
        else:
            who = self.identity if self.identity != "unknown" else f"{self.author} (unverified)"
            text = f"commit {self.commit[:7]} by {who} changed {self.path} without {self.missing}"
        return f"{text} ({self.detail})" if self.detail else text

    def to_dict(self) -> dict[str, str]:
        return {
            "commit": self.commit,
            "author": self.author,
            "path": self.path,
            "reason": str(self.reason),
            "missing": self.missing,
            "identity": self.identity,
            "detail": self.detail,
            "message": self.message,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Denial:
        """The inverse of :meth:`to_dict` (``message`` is derived, so it is ignored)."""
        names = ("commit", "author", "path", "reason", "missing", "identity", "detail")
        values = {name: data.get(name, "") for name in names}
        if not all(isinstance(value, str) for value in values.values()):
            raise TrustError(f"a saved refusal has a field that is not text: {dict(data)!r:.200}")
        if values["reason"] not in {str(r) for r in Reason}:
            raise TrustError(f"a saved refusal has an unknown reason {values['reason']!r:.60}")
        return cls(**values)


@dataclass(frozen=True)
class TrustState:
    """The controller's memory of main: where trust started, the last main commit judged,
    what main authorized (path -> blob id, every path but ``status/**``) and the refused
    changes still in effect (path -> the latest refusal). JSON-serialisable."""

    anchor: str
    commit: str
    authorized: Mapping[str, str]
    refusals: Mapping[str, Denial] = field(default_factory=lambda: MappingProxyType({}))

    def to_dict(self) -> dict[str, Any]:
        return {
            "anchor": self.anchor,
            "commit": self.commit,
            "authorized": dict(sorted(self.authorized.items())),
            "refusals": {path: d.to_dict() for path, d in sorted(self.refusals.items())},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrustState:
        """The inverse of :meth:`to_dict`; raises :class:`TrustError` on anything malformed."""
        if not isinstance(data, Mapping):
            raise TrustError("the saved trust state is not a mapping")
        anchor, commit = data.get("anchor"), data.get("commit")
        authorized, refusals = data.get("authorized"), data.get("refusals", {})
        for name, value in (("anchor", anchor), ("commit", commit)):
            if not isinstance(value, str) or not _HEX.fullmatch(value):
                raise TrustError(f"the saved trust state has no valid {name} commit")
        if not isinstance(authorized, Mapping) or not isinstance(refusals, Mapping):
            raise TrustError("the saved trust state has no authorized files")
        files: dict[str, str] = {}
        for path, oid in authorized.items():
            if not isinstance(path, str) or not isinstance(oid, str) or not _HEX.fullmatch(oid):
                raise TrustError(f"the saved trust state has a bad entry for {path!r:.200}")
            files[path] = oid
        refused: dict[str, Denial] = {}
        for path, item in refusals.items():
            if not isinstance(path, str) or not isinstance(item, Mapping):
                raise TrustError(f"the saved trust state has a bad refusal for {path!r:.200}")
            refused[path] = Denial.from_dict(item)
        assert isinstance(anchor, str) and isinstance(commit, str)
        return cls(anchor, commit, MappingProxyType(files), MappingProxyType(refused))


@dataclass(frozen=True)
class Divergence:
    """Main no longer continues the history the ledger judged: ``tip``'s first-parent chain
    does not contain ``known``, the last commit judged."""

    known: str
    tip: str
    detail: str = ""

    @property
    def message(self) -> str:
        text = (
            f"main at {self.tip[:7]} does not continue {self.known[:7]}, the last commit "
            "judged, along its first parents (a force push, a rollback, a new history, or a "
            "merge whose first parent is not main): nothing on main is trusted until the "
            "operator re-anchors trust"
        )
        return f"{text} ({self.detail})" if self.detail else text

    def to_dict(self) -> dict[str, str]:
        return {"known": self.known, "tip": self.tip, "detail": self.detail}


@dataclass(frozen=True)
class Advance:
    """What :meth:`Ledger.advance` did: the new state, or the divergence (state unchanged),
    and how many steps of main it judged."""

    state: TrustState
    diverged: Divergence | None
    steps: int


# --------------------------------------------------------------------------------------------
# Commits and identities (pure)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Change:
    """One path a commit changed against its first parent: blob ids before and after
    (None: absent)."""

    path: str
    old: str | None
    new: str | None


@dataclass(frozen=True)
class Commit:
    """One commit as git reports it: who wrote it, how it is signed, what it changed."""

    sha: str
    parents: tuple[str, ...]
    name: str
    email: str
    changes: tuple[Change, ...] = ()
    signature: str = "N"  # git's %G?
    fingerprint: str = ""  # git's %GF: the SSH key's SHA256 fingerprint

    @property
    def author(self) -> str:
        return f"{self.name} <{self.email}>"


@dataclass(frozen=True)
class Refusal:
    """Why a commit's actor is nobody relctl can accept, for any path."""

    reason: str
    missing: str
    detail: str

    def denial(self, commit: Commit, path: str) -> Denial:
        return Denial(
            commit.sha, commit.author, path, self.reason, self.missing, "unknown", self.detail
        )


def identify(commit: Commit, access: Access, *, signed: bool) -> Member | Refusal:
    """The member who made ``commit`` under ``access``, or why there is none.

    Unsigned mode: the author email (case-insensitive). Signed mode: the member whose
    ``signingKey`` made a signature git reports good (``G``), whatever the author field says.
    """
    if not signed:
        member = access.member(commit.email)
        if member is not None:
            return member
        return Refusal(
            Reason.NOT_A_MEMBER, "membership in access.yaml", f"{commit.email} is not a member"
        )
    missing = "an SSH signature by a member's key (requireSignedCommits is on)"
    if commit.signature == "N":
        return Refusal(Reason.UNSIGNED, missing, "not signed")
    word = _SIGNATURE_WORDS.get(commit.signature, f"status {commit.signature!r:.20}")
    if not commit.fingerprint:
        return Refusal(Reason.BAD_SIGNATURE, missing, f"git reports the signature as {word}")
    matching = [
        m
        for m in access.members
        if m.signing_key and ssh_fingerprint(m.signing_key) == commit.fingerprint
    ]
    if not matching:
        return Refusal(
            Reason.UNKNOWN_KEY,
            "a signing key listed in access.yaml",
            f"signed with key {commit.fingerprint:.80}, which no member lists",
        )
    if commit.signature != "G":
        return Refusal(Reason.BAD_SIGNATURE, missing, f"git reports the signature as {word}")
    # Two members listing one key is a mistake in access.yaml: prefer the named author.
    named = [m for m in matching if m.email.casefold() == commit.email.casefold()]
    return (named or matching)[0]


def ssh_fingerprint(public_key: str) -> str | None:
    """``SHA256:...`` of an SSH public key line (as ``ssh-keygen -l``), None if malformed."""
    parts = public_key.split()
    if len(parts) < 2:
        return None
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except (binascii.Error, ValueError):
        return None
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    return f"SHA256:{digest}"


def _person(member: Member) -> str:
    return f"{member.name} <{member.email}>"


def _rights(member: Member) -> str:
    if member.role is Role.MASTER:
        return "a master"
    article = "an" if str(member.role)[0] in "aeiou" else "a"
    programs = ", ".join(member.mini_programs) or "nothing"
    return f"{article} {member.role} of: {programs}"


def _is_status(path: str) -> bool:
    return path.startswith(STATUS_PREFIX)


def _mini_program(path: str) -> str | None:
    """``releases/<mp>/...`` -> ``<mp>``; None for every other path (a file directly under
    ``releases/``, or anything outside it)."""
    parts = path.split("/")
    return parts[1] if len(parts) >= 3 and parts[0] == RELEASES_DIR and parts[1] else None


def _right(commit: Commit, path: str, member: Member) -> Denial | None:
    """The denial of ``member`` changing ``path``, or None when the role allows it."""
    mini_program = _mini_program(path)
    if mini_program is not None:
        if member.may_release(mini_program):
            return None
        reason, missing = Reason.NO_RIGHT, f"release rights for mini program {mini_program}"
    elif member.role is Role.MASTER:
        return None
    else:
        if path in GOVERNANCE_FILES:
            why = f"{path} may only be changed by a master"
        elif path.startswith(f"{RELEASES_DIR}/"):
            why = f"files directly under {RELEASES_DIR}/ may only be changed by a master"
        else:
            why = f"files outside {RELEASES_DIR}/<mini-program>/ may only be changed by a master"
        reason, missing = Reason.NOT_MASTER, f"the master role ({why})"
    return Denial(
        commit.sha, commit.author, path, reason, missing, _person(member), _rights(member)
    )


# --------------------------------------------------------------------------------------------
# Governance files
# --------------------------------------------------------------------------------------------


def _parse_access(data: bytes) -> tuple[Access | None, str]:
    """An ``access.yaml`` version: (Access, "") or (None, why it is invalid).

    The one call into ``controller.manifests``' loading."""
    try:
        access, problems = _load_access(MemoryFiles({ACCESS_FILE: data}))
    except Exception as exc:  # a broken schema set is relctl's bug; never trust then
        return None, f"it cannot be checked: {exc}"
    if access is not None:
        return access, ""
    first = next(iter(problems), None)
    if first is None:
        return None, "it is empty"
    return None, f"line {first.line}: {first.message}"


def _parse_policy(data: bytes) -> tuple[bool | None, str]:
    """``policy.requireSignedCommits`` of a ``relctl.yaml`` version, or (None, why it cannot
    be read). Read with relctl's strict loader: a version never authorized may be hostile."""
    loaded = load_yaml(data)
    if not loaded.ok:
        problem = loaded.problem
        return None, f"it is not readable YAML ({problem.message if problem else 'unknown'})"
    value: Any = loaded.value
    if not isinstance(value, dict):
        return None, "it is not a mapping"
    policy = value.get("policy", {})
    if not isinstance(policy, dict):
        return None, "policy is not a mapping"
    flag = policy.get("requireSignedCommits", False)
    if not isinstance(flag, bool):
        return None, "policy.requireSignedCommits is not true or false"
    return flag, ""


def _rules_problem(access: Access, signed: bool) -> str:
    """Why rules would leave nobody able to change them again ("" when they do not)."""
    masters = [m for m in access.members if m.role is Role.MASTER]
    if not masters:
        return "it leaves no master: nobody could ever change access.yaml or relctl.yaml again"
    if signed and not any(m.signing_key and ssh_fingerprint(m.signing_key) for m in masters):
        return (
            "requireSignedCommits is on and no master has a signingKey: nobody could ever "
            "change access.yaml or relctl.yaml again"
        )
    return ""


@dataclass(frozen=True)
class _Rules:
    """The rules in force: the access.yaml and relctl.yaml policy of one point of main."""

    access: Access
    signed: bool

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(m.signing_key for m in self.access.members if m.signing_key)


class _Blobs:
    """Governance blobs of one repository, read at most once each, size-checked first."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._data: dict[str, bytes | None] = {}
        self._access: dict[str, tuple[Access | None, str]] = {}
        self._policy: dict[str, tuple[bool | None, str]] = {}

    def fetch(self, oids: Iterable[str | None]) -> None:
        """Read the blobs not read yet: one ``cat-file --batch-check``, then one ``--batch``
        for those that are blobs within relctl's YAML size limit."""
        wanted = sorted({o for o in oids if o is not None and o not in self._data})
        if not wanted:
            return
        request = "".join(f"{oid}\n" for oid in wanted).encode()
        checked = run_git(
            self.root, "cat-file", "--batch-check=%(objectname) %(objecttype) %(objectsize)",
            input=request,
        )  # fmt: skip
        small: list[str] = []
        for line in checked.out.decode("ascii", "replace").splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[1] == "blob" and int(parts[2]) <= YAML_SIZE_LIMIT:
                small.append(parts[0])
        for oid in wanted:
            self._data[oid] = None
        if not small:
            return
        out = run_git(
            self.root, "cat-file", "--batch", input="".join(f"{o}\n" for o in small).encode()
        ).out
        position = 0
        for _ in small:
            end = out.index(b"\n", position)
            header = out[position:end].split()
            position = end + 1
            if len(header) != 3 or header[1] != b"blob":
                raise GitError("git cat-file printed an unexpected record")
            size = int(header[2])
            self._data[header[0].decode()] = out[position : position + size]
            position += size + 1

    def access(self, oid: str | None) -> tuple[Access | None, str]:
        """An access.yaml version (None: deleted) as (Access, "") or (None, why not)."""
        if oid is None:
            return None, "access.yaml was deleted; access control cannot be switched off"
        if oid not in self._access:
            self.fetch([oid])
            data = self._data.get(oid)
            if data is None:
                self._access[oid] = (None, "it is not a regular file within the size limit")
            else:
                access, why = _parse_access(data)
                self._access[oid] = (access, f"access.yaml is invalid: {why}" if why else "")
        return self._access[oid]

    def policy(self, oid: str | None) -> tuple[bool | None, str]:
        """``requireSignedCommits`` of a relctl.yaml version (None: deleted), or why not."""
        if oid is None:
            return None, "relctl.yaml was deleted; its policy cannot be switched off that way"
        if oid not in self._policy:
            self.fetch([oid])
            data = self._data.get(oid)
            if data is None:
                self._policy[oid] = (None, "it is not a regular file within the size limit")
            else:
                flag, why = _parse_policy(data)
                self._policy[oid] = (flag, f"relctl.yaml cannot be read: {why}" if why else "")
        return self._policy[oid]

    def rules(self, files: Mapping[str, str]) -> _Rules:
        """The rules of an authorized set of files; raises TrustError when they are not
        valid rules (only an anchor can be: a judged change never makes them so)."""
        self.fetch([files.get(ACCESS_FILE), files.get(CONFIG_FILE)])
        if ACCESS_FILE not in files:
            raise TrustError(f"there is no {ACCESS_FILE}")
        access, why = self.access(files[ACCESS_FILE])
        if access is None:
            raise TrustError(why)
        signed = False
        if CONFIG_FILE in files:
            flag, why = self.policy(files[CONFIG_FILE])
            if flag is None:
                raise TrustError(why)
            signed = flag
        problem = _rules_problem(access, signed)
        if problem:
            raise TrustError(f"{ACCESS_FILE}: {problem}")
        return _Rules(access, signed)


def _judge_commit(
    commit: Commit, changes: Sequence[Change], rules: _Rules, blobs: _Blobs
) -> list[tuple[Change, Denial | None]]:
    """Each of ``changes`` (made by ``commit``) judged under ``rules``: its denial or None."""
    actor = identify(commit, rules.access, signed=rules.signed)
    verdicts: dict[str, Denial | None] = {}
    for change in changes:
        if isinstance(actor, Refusal):
            verdicts[change.path] = actor.denial(commit, change.path)
        else:
            verdicts[change.path] = _right(commit, change.path, actor)
    governance = [c for c in changes if c.path in GOVERNANCE_FILES and verdicts[c.path] is None]
    if governance and isinstance(actor, Member):
        access, signed = rules.access, rules.signed
        accepted: list[Change] = []
        for change in governance:
            if change.path == ACCESS_FILE:
                parsed, why = blobs.access(change.new)
                if parsed is not None:
                    access = parsed
            else:
                flag, why = blobs.policy(change.new)
                if flag is not None:
                    signed = flag
            if why:
                verdicts[change.path] = _invalid(commit, change.path, actor, why)
            else:
                accepted.append(change)
        problem = _rules_problem(access, signed)
        for change in accepted if problem else ():
            verdicts[change.path] = _invalid(commit, change.path, actor, problem)
    return [(change, verdicts[change.path]) for change in changes]


def _invalid(commit: Commit, path: str, member: Member, why: str) -> Denial:
    return Denial(
        commit.sha,
        commit.author,
        path,
        Reason.UNTRUSTED_ACCESS,
        f"a valid {path} (the change is ignored: the previous version stays in force)",
        _person(member),
        why,
    )


# --------------------------------------------------------------------------------------------
# Reading git
# --------------------------------------------------------------------------------------------


def _check_revision(revision: str) -> str:
    if not revision or revision.startswith("-") or any(c.isspace() for c in revision):
        raise GitError(f"not a revision: {revision!r:.80}")
    return revision


def _resolve(root: Path, *revisions: str) -> list[str | None]:
    """The commit each revision names (None: no such commit), with one git call."""
    request = "".join(f"{_check_revision(r)}^{{commit}}\n" for r in revisions).encode()
    out = run_git(root, "cat-file", "--batch-check=%(objectname) %(objecttype)", input=request)
    found: list[str | None] = []
    for line in out.out.decode("utf-8", "replace").splitlines():
        parts = line.split()
        found.append(parts[0] if len(parts) == 2 and parts[1] == "commit" else None)
    if len(found) != len(revisions):
        raise GitError("git cat-file printed an unexpected answer")
    return found


def _commit_of(root: Path, revision: str) -> str:
    (sha,) = _resolve(root, revision)
    if sha is None:
        raise GitError(f"{revision!r:.80} is not a commit of {root}")
    return sha


def _tree(root: Path, commit: str) -> dict[str, str]:
    """Every non-directory entry of ``commit``'s tree but ``status/**``: path -> object id."""
    listing = run_git(root, "ls-tree", "-r", "-z", "--full-tree", commit).out
    files: dict[str, str] = {}
    for record in listing.split(b"\0"):
        meta, tab, raw_path = record.partition(b"\t")
        parts = meta.split()
        if not tab or len(parts) != 3 or parts[1] == b"tree":
            continue
        path = raw_path.decode("utf-8", "surrogateescape")
        if not _is_status(path):
            files[path] = parts[2].decode("ascii")
    return files


class _Marks:
    """Tokens that delimit the fields of one ``git log``. Names, emails and paths come from
    the repository, so a fixed marker could be forged: each log gets its own random one."""

    def __init__(self) -> None:
        token = secrets.token_hex(12)
        self.commit, self.name, self.email, self.end = (
            f"relctl-{token}-{part}".encode() for part in ("c", "n", "e", "z")
        )


def _log(
    root: Path,
    revisions: Sequence[str],
    *,
    first_parent: bool,
    changes: bool = True,
    signers: Path | None = None,
) -> list[Commit]:
    """The commits of ``revisions``, oldest first, each with the paths it changed against
    its first parent (``changes``) and, with ``signers`` (an allowed-signers file), its SSH
    signature status and key fingerprint."""
    marks = _Marks()
    header = ["%H", "%P", *(["%G?", "%GF"] if signers is not None else [])]
    fields = [
        marks.commit.decode(), *header, marks.name.decode(), "%an", marks.email.decode(), "%ae",
        marks.end.decode(),
    ]  # fmt: skip
    options: list[str] = []
    if signers is not None:
        options = [
            "-c", "gpg.format=ssh",
            "-c", f"gpg.ssh.allowedSignersFile={signers}",
            "-c", "gpg.ssh.program=ssh-keygen",
        ]  # fmt: skip
    walk = ["--first-parent"] if first_parent else ["--topo-order"]
    diff = (
        ["--diff-merges=first-parent", "--raw", "-r", "--root", "--no-renames", "--no-abbrev",
         "--ignore-submodules=none"]
        if changes
        else ["--no-patch"]
    )  # fmt: skip
    out = run_git(
        root,
        *options,
        "log",
        "-z",
        "--reverse",
        "--no-mailmap",
        "--no-color",
        *walk,
        *diff,
        "--format=" + "%x00".join(fields),
        "--end-of-options",
        *revisions,
        "--",
    ).out
    return list(_parse_log(out, marks, len(header)))


def _parse_log(out: bytes, marks: _Marks, header: int) -> Iterator[Commit]:
    """Records of :func:`_log`: ``header`` fields git writes (ids, signature status), then
    the author's name and email between random marks, then the raw changes. Whatever a
    person controls sits between two marks, so no name, email or path can shift a field or
    forge a change."""
    tokens = out.split(b"\0")
    index = 0

    def upto(mark: bytes) -> list[bytes]:
        nonlocal index
        start = index
        while index < len(tokens) and tokens[index] != mark:
            index += 1
        if index == len(tokens):
            raise GitError("git log printed a truncated record")
        index += 1
        return tokens[start : index - 1]

    def text(parts: list[bytes]) -> str:
        return "\ufffd".join(p.decode("utf-8", "replace") for p in parts)

    while index < len(tokens):
        token = tokens[index].lstrip(b"\n")
        index += 1
        if not token:
            continue
        if token != marks.commit:
            raise GitError("git log printed an unexpected record")
        fields = [f.decode("ascii", "replace") for f in upto(marks.name)]
        if len(fields) != header or not _HEX.fullmatch(fields[0]):
            raise GitError("git log printed a record without a commit id")
        sha, parents = fields[0], tuple(fields[1].split())
        if not all(_HEX.fullmatch(p) for p in parents):
            raise GitError("git log printed a record with bad parents")
        signature, fingerprint = (fields[2] or "N", fields[3]) if header == 4 else ("N", "")
        name = text(upto(marks.email))
        email = text(upto(marks.end))
        found: list[Change] = []
        while index < len(tokens):
            token = tokens[index].lstrip(b"\n")
            if token == marks.commit:
                break
            index += 1
            if not token:
                continue
            raw = _RAW.fullmatch(token)
            if raw is None or index >= len(tokens):
                raise GitError("git log printed an unexpected change record")
            path = tokens[index].decode("utf-8", "surrogateescape")
            index += 1
            old, new = raw.group(3).decode(), raw.group(4).decode()
            found.append(
                Change(
                    path,
                    None if _ZERO.fullmatch(old) else old,
                    None if _ZERO.fullmatch(new) else new,
                )
            )
        yield Commit(sha, parents, name, email, tuple(found), signature, fingerprint)


def _allowed_signers(folder: str, keys: Iterable[str]) -> Path:
    """An allowed-signers file for git (``gpg.ssh.allowedSignersFile``) listing ``keys``.

    Only keys from a parsed ``access.yaml`` come here (the schema admits one
    ``ssh-ed25519 <base64>`` line); the comment is dropped."""
    path = Path(folder, "allowed_signers")
    lines = []
    for number, key in enumerate(dict.fromkeys(keys)):
        parts = key.split()
        if len(parts) >= 2 and ssh_fingerprint(key) is not None:
            lines.append(f'key-{number}@relctl namespaces="git" {parts[0]} {parts[1]}\n')
    path.write_text("".join(lines))
    return path


def _signatures(root: Path, revisions: Sequence[str], keys: Iterable[str]) -> dict[str, Commit]:
    """Signature status and key of each commit of a first-parent range, by sha."""
    with tempfile.TemporaryDirectory(prefix="relctl-signers-") as folder:
        signers = _allowed_signers(folder, keys)
        commits = _log(root, revisions, first_parent=True, changes=False, signers=signers)
    return {c.sha: c for c in commits}


# --------------------------------------------------------------------------------------------
# The ledger
# --------------------------------------------------------------------------------------------


class Ledger:
    """Judges main, step by step along its first-parent chain, in the repository
    ``repo_root`` (a work tree or a bare repository). Keeps the governance blobs it read,
    so one instance per controller reads each version once."""

    def __init__(self, repo_root: Path) -> None:
        self.root = Path(repo_root)
        if not self.root.is_dir():
            raise GitError(f"{self.root} is not a directory")
        self._blobs = _Blobs(self.root)

    def start(self, anchor: str) -> TrustState:
        """Trust the tree of ``anchor`` as it is: every file there is authorized.

        Raises :class:`TrustError` when its ``access.yaml`` is missing, invalid, names no
        master (or, when its ``relctl.yaml`` requires signed commits, no master with a
        ``signingKey``); :class:`GitError` when ``anchor`` is not a commit."""
        commit = _commit_of(self.root, anchor)
        files = _tree(self.root, commit)
        try:
            self._blobs.rules(files)
        except TrustError as exc:
            raise TrustError(f"cannot start trust at {commit[:7]}: {exc}") from None
        return TrustState(commit, commit, MappingProxyType(files), MappingProxyType({}))

    def advance(self, state: TrustState, tip: str) -> Advance:
        """Judge every step of main from ``state.commit`` to ``tip``.

        When ``state.commit`` is not on ``tip``'s first-parent chain, nothing is judged: the
        :class:`Divergence` names both commits and the state is returned unchanged."""
        _check_revision(tip)
        if tip == state.commit:
            return Advance(state, None, 0)
        try:
            listing = run_git(
                self.root, "rev-list", "--first-parent", "--parents", "--end-of-options",
                tip, f"^{state.commit}", "--",
            ).text  # fmt: skip
        except GitError:
            tip_sha, known = _resolve(self.root, tip, state.commit)
            if tip_sha is None:
                raise GitError(f"{tip!r:.80} is not a commit of {self.root}") from None
            if known is None:
                detail = f"{state.commit[:7]} is not in the repository any more"
                return Advance(state, Divergence(state.commit, tip_sha, detail), 0)
            raise
        chain = [line.split() for line in reversed(listing.splitlines()) if line.strip()]
        if not chain:
            tip_sha = _commit_of(self.root, tip)
            if tip_sha == state.commit:
                return Advance(state, None, 0)
            return Advance(state, Divergence(state.commit, tip_sha, "main went back"), 0)
        tip_sha = chain[-1][0]
        previous = state.commit
        for entry in chain:
            if len(entry) < 2 or entry[1] != previous:
                return Advance(state, Divergence(state.commit, tip_sha), 0)
            previous = entry[0]
        range_ = [tip_sha, f"^{state.commit}"]
        commits = _log(self.root, range_, first_parent=True)
        if [c.sha for c in commits] != [entry[0] for entry in chain]:
            raise GitError("git log and git rev-list disagree about main's first parents")
        return Advance(self._judge(state, tip_sha, commits, range_), None, len(commits))

    def _judge(
        self, state: TrustState, tip: str, commits: Sequence[Commit], range_: Sequence[str]
    ) -> TrustState:
        governance = [
            change.new
            for commit in commits
            for change in commit.changes
            if change.path in GOVERNANCE_FILES
        ]
        self._blobs.fetch(
            [state.authorized.get(ACCESS_FILE), state.authorized.get(CONFIG_FILE), *governance]
        )
        rules = self._rules(state.authorized)
        config_changes = any(
            change.path == CONFIG_FILE for commit in commits for change in commit.changes
        )
        if rules.signed or config_changes:
            keys = list(rules.keys)
            for commit in commits:
                for change in commit.changes:
                    if change.path == ACCESS_FILE:
                        version, _why = self._blobs.access(change.new)
                        keys += (
                            [m.signing_key for m in version.members if m.signing_key]
                            if version
                            else []
                        )
            signed = _signatures(self.root, range_, keys)
            commits = [
                replace(c, signature=signed[c.sha].signature, fingerprint=signed[c.sha].fingerprint)
                for c in commits
            ]
        authorized, refusals = dict(state.authorized), dict(state.refusals)
        for commit in commits:
            pending: list[Change] = []
            for change in commit.changes:
                if _is_status(change.path):
                    continue
                if authorized.get(change.path) == change.new:
                    refusals.pop(change.path, None)  # back to the authorized version
                else:
                    pending.append(change)
            rules_changed = False
            for change, denial in _judge_commit(commit, pending, rules, self._blobs):
                if denial is not None:
                    refusals[change.path] = denial
                    continue
                refusals.pop(change.path, None)
                if change.new is None:
                    authorized.pop(change.path, None)
                else:
                    authorized[change.path] = change.new
                rules_changed = rules_changed or change.path in GOVERNANCE_FILES
            if rules_changed:
                rules = self._rules(authorized)
        return TrustState(
            state.anchor, tip, MappingProxyType(authorized), MappingProxyType(refusals)
        )

    def _rules(self, authorized: Mapping[str, str]) -> _Rules:
        try:
            return self._blobs.rules(authorized)
        except TrustError as exc:
            raise TrustError(f"the authorized rules cannot be read: {exc}") from None

    def access_in_force(self, state: TrustState) -> Access:
        """The authorized ``access.yaml`` of ``state``."""
        return self._rules(state.authorized).access

    def config_blob_in_force(self, state: TrustState) -> str | None:
        """The blob id of the authorized ``relctl.yaml`` (None: there is none)."""
        return state.authorized.get(CONFIG_FILE)

    def denial(
        self, state: TrustState, paths_with_tip_oids: Mapping[str, str | None]
    ) -> Denial | None:
        """Why a release read from these files at the tip is not what main authorized, or
        None. ``paths_with_tip_oids``: each file's blob id at the tip (None: absent there).

        A file equal to its authorized version is fine whoever touched it last. Otherwise the
        refusal recorded for it, or, when none explains it, a ``not-authorized`` denial."""
        for path, oid in paths_with_tip_oids.items():
            if _is_status(path) or state.authorized.get(path) == oid:
                continue
            found = state.refusals.get(path)
            if found is not None:
                return found
            return Denial(
                state.commit,
                "",
                path,
                Reason.NOT_AUTHORIZED,
                "the version main authorized",
                "unknown",
                f"no judged commit up to {state.commit[:7]} made it",
            )
        return None


# --------------------------------------------------------------------------------------------
# Pull requests
# --------------------------------------------------------------------------------------------


def judge_range(repo_root: Path, base: str, head: str) -> list[Denial]:
    """Every refused change of the commits ``merge-base(base, head)..head``, oldest first.

    All commits are judged, not only first parents; a merge for its diff against its first
    parent. The rules are those in force at ``base`` (main as CI sees it): its
    ``access.yaml`` and ``relctl.yaml``; a change of either needs a master of base's
    ``access.yaml``. A change to the content ``base`` or the merge base already has is not
    the pull request's own (a merge of main into the branch). Finally each file the pull
    request changes must hold a version one of its judged commits made: a merge that keeps
    or brings an older version from outside the change is refused (``not-authorized``).

    Raises :class:`GitError` for unknown revisions or unrelated histories, and
    :class:`TrustError` when ``base`` has no valid ``access.yaml``.
    """
    root = Path(repo_root)
    base_sha, head_sha = _resolve(root, base, head)
    if base_sha is None or head_sha is None:
        wrong = base if base_sha is None else head
        raise GitError(f"{wrong!r:.80} is not a commit of {root}")
    found = run_git(root, "merge-base", "--end-of-options", base_sha, head_sha, ok=(0, 1))
    fork = found.text.strip()
    if found.status == 1 or not _HEX.fullmatch(fork):
        raise GitError(
            f"{base_sha[:7]} and {head_sha[:7]} share no history (a shallow clone? fetch the "
            "whole history, e.g. actions/checkout with fetch-depth: 0)"
        )
    if fork == head_sha:
        return []
    at_base = _tree(root, base_sha)
    at_fork = at_base if fork == base_sha else _tree(root, fork)
    blobs = _Blobs(root)
    try:
        rules = blobs.rules(at_base)
    except TrustError as exc:
        raise TrustError(f"the rules at {base_sha[:7]} cannot be read: {exc}") from None
    revisions = [head_sha, f"^{fork}"]
    if rules.signed:
        with tempfile.TemporaryDirectory(prefix="relctl-signers-") as folder:
            signers = _allowed_signers(folder, rules.keys)
            commits = _log(root, revisions, first_parent=False, signers=signers)
    else:
        commits = _log(root, revisions, first_parent=False)
    blobs.fetch(c.new for commit in commits for c in commit.changes if c.path in GOVERNANCE_FILES)
    denials: list[Denial] = []
    made: dict[str, set[str | None]] = {}
    for commit in commits:
        own = [
            change
            for change in commit.changes
            if not _is_status(change.path)
            and change.new != at_base.get(change.path)
            and change.new != at_fork.get(change.path)
        ]
        for change, denial in _judge_commit(commit, own, rules, blobs):
            made.setdefault(change.path, set()).add(change.new)
            if denial is not None:
                denials.append(denial)
    head_commit = next(c for c in commits if c.sha == head_sha)
    net = run_git(root, "diff-tree", "-r", "-z", "--no-renames", "--no-abbrev", fork, head_sha).out
    tokens = net.split(b"\0")
    for meta, raw_path in zip(tokens[0::2], tokens[1::2], strict=False):
        entry = _RAW.fullmatch(meta.lstrip(b"\n"))
        if entry is None:
            continue
        path = raw_path.decode("utf-8", "surrogateescape")
        new = entry.group(4).decode()
        tip = None if _ZERO.fullmatch(new) else new
        if _is_status(path) or tip == at_base.get(path) or tip in made.get(path, ()):
            continue
        denials.append(
            Denial(
                head_sha,
                head_commit.author,
                path,
                Reason.NOT_AUTHORIZED,
                "a version any commit of the change made",
                "unknown",
                "a merge kept or brought it from outside the change, e.g. an older version",
            )
        )
    return denials


# --------------------------------------------------------------------------------------------
# CODEOWNERS
# --------------------------------------------------------------------------------------------


def render_codeowners(access: Access, mini_programs: Iterable[str]) -> str:
    """A GitHub/GitLab ``CODEOWNERS`` file for ``access``: same input, same bytes.

    Each mini program (those passed and those assigned in ``access.yaml``) is owned by its
    owners, then the masters; the governance files and ``status/`` by the masters.
    """
    masters = [m.email for m in access.members if m.role is Role.MASTER]
    programs = sorted(set(mini_programs) | {mp for m in access.members for mp in m.mini_programs})
    lines = [
        "# Generated by `relctl codeowners` from access.yaml: do not edit by hand.",
        "# Owners of each mini program, then the masters, review changes to its releases.",
        "",
    ]
    for mp in programs:
        owners = [m.email for m in access.members if m.role is Role.OWNER and mp in m.mini_programs]
        emails = list(dict.fromkeys([*owners, *masters]))
        lines.append(" ".join([f"/{RELEASES_DIR}/{mp}/", *emails]).rstrip())
    lines.append("")
    for governed in (f"/{ACCESS_FILE}", f"/{CONFIG_FILE}", "/status/"):
        lines.append(" ".join([governed, *masters]).rstrip())
    return "\n".join(lines) + "\n"
