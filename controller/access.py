"""Who made each commit of the release repository, and whether ``access.yaml`` allowed it.

The controller (``reconcile``) and ``relctl check`` build one :class:`AccessLog` per pass and
ask it, for every release whose manifest changed, :meth:`AccessLog.authorize` (the first
:class:`Denial`, or None) or :meth:`AccessLog.denials` (all of them). ``relctl codeowners``
calls :func:`render_codeowners`.

The rules (``docs/access.md`` says the same for users):

1. A commit that changes a file under ``releases/<mp>/`` must be made by a member who may
   release ``<mp>`` (:meth:`Member.may_release`). A file directly under ``releases/`` (not in
   a mini program's directory) needs a master.
2. A commit that changes ``access.yaml`` or ``relctl.yaml`` (the governance files) must be made
   by a master.
3. The rules that apply to a commit are those of the *trusted* ``access.yaml`` effective at
   its parents: the latest trusted governance change that is an ancestor of the commit (not
   the commit itself). Governance changes are judged oldest first (topological order); a
   change is trusted when a master of the version in force before it made it. An untrusted
   change is ignored (the version before it stays in force) and is itself a denial, so a
   developer cannot grant themselves rights, nor turn ``policy.requireSignedCommits`` off.
   Trust on first use: the first valid ``access.yaml`` of the history (in topological
   order) is trusted whoever committed it; any later one needs a master. Until an
   ``access.yaml`` has been trusted there is no access control at all (everything allowed,
   :attr:`AccessLog.enforced` is False). An invalid or deleted ``access.yaml`` is never
   trusted: access control cannot be switched off by breaking or removing the file.
4. Judged commits: every non-merge commit in ``since..until`` touching the paths asked
   about. A merge commit is made by whoever merged (a reviewer, or the git host); the
   content it brings comes from commits that are judged themselves. A merge is judged only
   for the files it changes on its own, that is files differing from every parent
   (conflict resolutions and "evil merges"), and only when a clean merge of its parents
   would not have produced the same file (``git merge-tree``).
5. Identity: the author email, matched case-insensitively to a member. When the trusted
   ``relctl.yaml`` in force sets ``policy.requireSignedCommits: true``, only an SSH
   signature proves who made a commit: the signature must be good and made with the
   ``signingKey`` of a member of the ``access.yaml`` in force; that member made the commit,
   whatever its author field says.

Merges and history shape: the trusted state is propagated exactly along the commit graph
(``git rev-list --parents``, restricted to the commits that touch ``releases/`` or the
governance files, merges always kept). At a merge whose parents have different trusted
states, the state latest in topological order wins, which is exact when one descends from the
other; two governance changes made concurrently on parallel branches are an approximation
(one of them wins). Keep governance changes linear to avoid this.

Cost: a constant number of git processes per :class:`AccessLog` (graph, governance log,
governance file contents, plus a signature-checked log of governance commits when signing is
ever required) and per distinct ``since`` (one log), plus one ``git merge-tree`` for each merge
that changes a file on its own *and* whose merger lacks the right for it (rare).
Errors: a git failure (not a repository, unknown revision) raises
:class:`controller.gitops.GitError` with one line; bad repository content never raises.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import hashlib
import os
import secrets
import subprocess
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from controller.gitops import GitError
from controller.manifests import ACCESS_FILE, CONFIG_FILE, RELEASES_DIR, Access, Member, Role
from controller.manifests import load_access as _load_access
from controller.manifests.yamlload import load_yaml
from controller.repofiles import MemoryFiles

#: The files whose changes need a master and decide which rules apply.
GOVERNANCE_FILES = (ACCESS_FILE, CONFIG_FILE)
#: The paths of the trust chain's graph (releases and the governance files).
_PATHSPEC = (f"{RELEASES_DIR}/", *GOVERNANCE_FILES)
#: What the ranges judged by :meth:`AccessLog.denials` log: everything but the controller's
#: own ``status/`` (a release may read a tester file anywhere in the repository).
_STATUS_PREFIX = "status/"
_RANGE_PATHSPEC = (".", f":(exclude){_STATUS_PREFIX}")
_FIELDS_PLAIN = ("%H", "%an", "%ae", "%P")
_FIELDS_SIGNED = (*_FIELDS_PLAIN, "%G?", "%GK")
_SIGNATURE_WORDS = {
    "B": "bad",
    "U": "good but of unknown validity",
    "X": "expired",
    "Y": "made by an expired key",
    "R": "made by a revoked key",
    "E": "impossible to check",
}


class Reason(StrEnum):
    """Why a commit was refused (the ``reason`` code of a :class:`Denial`)."""

    NOT_A_MEMBER = "not-a-member"
    NO_RIGHT = "no-right"
    NOT_MASTER = "not-master"
    UNSIGNED = "unsigned"
    BAD_SIGNATURE = "bad-signature"
    UNKNOWN_KEY = "unknown-key"
    UNTRUSTED_ACCESS = "untrusted-access"


@dataclass(frozen=True)
class Denial:
    """A change the trusted ``access.yaml`` did not allow: who, what, and the missing right."""

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


# --------------------------------------------------------------------------------------------
# Pure helpers
# --------------------------------------------------------------------------------------------


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


def _new_mark() -> str:
    """The token that starts each commit record of one log. Paths come from the repository,
    so a fixed marker could be forged by a file of that name: each log gets its own."""
    return f"relctl-commit-{secrets.token_hex(12)}"


def _person(member: Member) -> str:
    return f"{member.name} <{member.email}>"


def _article(role: Role) -> str:
    return "an" if str(role)[0] in "aeiou" else "a"


def _rights(member: Member) -> str:
    if member.role is Role.MASTER:
        return "a master"
    programs = ", ".join(member.mini_programs) or "nothing"
    return f"{_article(member.role)} {member.role} of: {programs}"


def _mini_program(path: str) -> str | None:
    """``releases/<mp>/...`` -> ``<mp>``; None for any other file (directly under
    ``releases/``, or outside it, such as a tester file shared by several mini programs)."""
    parts = path.split("/")
    return parts[1] if len(parts) >= 3 and parts[0] == RELEASES_DIR and parts[1] else None


def _require_signed(data: bytes) -> bool | None:
    """``policy.requireSignedCommits`` of a ``relctl.yaml``; None when it cannot be read.

    Loaded with relctl's strict loader: a version in the history may be hostile (an alias
    bomb, a huge file) and is never trusted to be well-formed."""
    loaded = load_yaml(data)
    value: Any = loaded.value if loaded.ok else None
    if not isinstance(value, dict):
        return None
    policy = value.get("policy", {})
    if not isinstance(policy, dict):
        return None
    flag = policy.get("requireSignedCommits", False)
    return flag if isinstance(flag, bool) else None


def _parse_access(data: bytes) -> tuple[Access | None, str]:
    """An ``access.yaml`` version: (Access, "") or (None, why it is invalid)."""
    try:
        access, problems = _load_access(MemoryFiles({ACCESS_FILE: data}))
    except Exception as exc:  # a broken schema set is relctl's bug; never trust then
        return None, f"cannot be checked: {exc}"
    if access is not None:
        return access, ""
    first = next(iter(problems), None)
    if first is None:
        return None, "it is empty"
    return None, f"line {first.line}: {first.message}"


# --------------------------------------------------------------------------------------------
# Values read from git
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Commit:
    """One commit of a path-limited log."""

    sha: str
    name: str
    email: str
    parents: tuple[str, ...]
    paths: tuple[str, ...]
    signature: str = "N"  # %G?
    key: str = ""  # %GK: the SSH key's fingerprint

    @property
    def author(self) -> str:
        return f"{self.name} <{self.email}>"

    @property
    def merge(self) -> bool:
        return len(self.parents) > 1


@dataclass(frozen=True)
class _Trusted:
    """The governance in force after a trusted change (``commit`` None: before any)."""

    commit: str | None
    access: Access | None
    require_signed: bool
    order: int  # position of ``commit`` in the topological order; -1 before any
    previous: _Trusted | None = None


_NOTHING = _Trusted(commit=None, access=None, require_signed=False, order=-1)


@dataclass(frozen=True)
class _Verdict:
    """Who made a commit under some governance: a member, or the denial of their identity."""

    member: Member | None
    denial: tuple[str, str, str, str] | None = None  # reason, missing, identity, detail


# --------------------------------------------------------------------------------------------
# The access log
# --------------------------------------------------------------------------------------------


class AccessLog:
    """The trusted access rules along the history of ``until`` in the repository ``repo_root``.

    ``repo_root`` is a work tree or a bare repository; ``until`` any revision. Git runs a
    constant number of times here and once per distinct ``since`` in :meth:`denials`.
    """

    def __init__(self, repo_root: Path, until: str = "HEAD") -> None:
        self.root = Path(repo_root)
        if not self.root.is_dir():
            raise GitError(f"{self.root} is not a directory")
        self.until = self._resolve(until)
        self._ranges: dict[str | None, list[_Commit]] = {}
        self._merge_checks: dict[tuple[str, str], bool] = {}
        self._ancestry: dict[tuple[str, str], bool] = {}
        self._indexes: dict[str | None, tuple[dict[str, list[int]], list[str]]] = {}
        self._denials: dict[str, Denial] = {}  # governance commit -> its denial
        self._governance_changes: dict[str, _Commit] = {}
        self._versions: dict[tuple[str, str], bytes | None] = {}
        self._keys: tuple[str, ...] = ()
        self._signing_ever = False
        self._state_after: dict[str, _Trusted] = {}
        self._graph: dict[str, tuple[str, ...]] = {}
        self._enforced = False
        self._parsed: dict[str, tuple[Access | None, str]] = {}
        self._build()

    # -- public ----------------------------------------------------------------------------

    @property
    def enforced(self) -> bool:
        """False when no ``access.yaml`` was ever trusted: then everything is allowed."""
        return self._enforced

    def access_at(self, commit: str) -> Access | None:
        """The trusted ``access.yaml`` effective for ``commit`` (from its parents)."""
        return self._state_before(self._resolve(commit)).access

    def denials(self, paths: Sequence[str], *, since: str | None = None) -> list[Denial]:
        """Every denial for commits in ``since..until`` touching ``paths``, oldest first.

        ``paths`` are files or directories (``releases/shop/``), repository-relative.
        Governance denials (untrusted changes of ``access.yaml``/``relctl.yaml``) are included
        when ``paths`` include those files.
        """
        commits = self._range(since)
        found: list[Denial] = []
        for position, path in self._touching(since, paths):
            denial = self._judge(commits[position], path)
            if denial is not None:
                found.append(denial)
        return [d for d in found if not self._endorsed(d, commits)]

    def untrusted(self, file: str) -> Denial | None:
        """The denial of the latest change to the governance ``file`` (``relctl.yaml``,
        ``access.yaml``) when that change was not trusted: the file's content at ``until`` is
        then not what a master decided. None when it was trusted or never changed."""
        latest = None
        for sha, change in self._governance_changes.items():  # topological order
            if file in change.paths:
                latest = sha
        denial = self._denials.get(latest) if latest is not None else None
        return replace(denial, path=file) if denial is not None else None

    def authorize(self, paths: Sequence[str], *, since: str | None = None) -> Denial | None:
        """The first denial for commits in ``since..until`` touching ``paths``, or None."""
        found = self.denials(paths, since=since)
        return found[0] if found else None

    # -- git -------------------------------------------------------------------------------

    def _git(self, *args: str, data: bytes | None = None, ok: Iterable[int] = (0,)) -> bytes:
        command = [
            "git",
            "--no-replace-objects",
            "-c",
            "log.showSignature=false",
            "-c",
            "core.quotePath=false",
            *args,
        ]
        env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
        try:
            done = subprocess.run(
                command, cwd=self.root, input=data, capture_output=True, env=env, check=False
            )
        except OSError as exc:
            raise GitError(f"cannot run git: {exc.strerror or exc}") from exc
        if done.returncode not in ok:
            raise GitError(f"git {args[0]} in {self.root} failed: {_one_line(done.stderr)}")
        return done.stdout

    def _resolve(self, revision: str) -> str:
        if not revision or revision.startswith("-"):
            raise GitError(f"not a revision: {revision!r}")
        try:
            out = self._git("rev-parse", "--verify", "--end-of-options", f"{revision}^{{commit}}")
        except GitError as exc:
            raise GitError(f"{revision!r} is not a commit of {self.root} ({exc})") from None
        return out.decode().strip()

    def _log(
        self,
        revisions: Sequence[str],
        *,
        signed: bool,
        allowed: Path | None,
        pathspec: Sequence[str] = _PATHSPEC,
    ) -> list[_Commit]:
        """Commits of ``revisions`` touching ``pathspec``, oldest first, with their files."""
        fields = _FIELDS_SIGNED if signed else _FIELDS_PLAIN
        mark = _new_mark()
        options: list[str] = []
        if signed:
            assert allowed is not None
            options = [
                "-c",
                "gpg.format=ssh",
                "-c",
                f"gpg.ssh.allowedSignersFile={allowed}",
                "-c",
                "gpg.ssh.program=ssh-keygen",
            ]
        out = self._git(
            *options,
            "log",
            "-z",
            "--topo-order",
            "--reverse",
            "--full-history",
            "--no-mailmap",
            "--no-renames",
            "-c",
            "--name-only",
            "--format=" + "%x00".join(("%x00" + mark, *fields)) + "%x00",
            *revisions,
            "--",
            *pathspec,
        )
        return list(_parse_log(out.decode("utf-8", errors="replace"), len(fields), mark))

    def _signed_log(
        self, revisions: Sequence[str], pathspec: Sequence[str] = _PATHSPEC
    ) -> list[_Commit]:
        with tempfile.TemporaryDirectory(prefix="relctl-signers-") as temp:
            allowed = Path(temp, "allowed_signers")
            allowed.write_text(
                "".join(
                    f'key-{n}@relctl namespaces="git" {" ".join(key.split()[:2])}\n'
                    for n, key in enumerate(self._keys)
                )
            )
            return self._log(revisions, signed=True, allowed=allowed, pathspec=pathspec)

    # -- the trust chain -------------------------------------------------------------------

    def _build(self) -> None:
        graph_out = self._git(
            "rev-list",
            "--topo-order",
            "--reverse",
            "--full-history",
            "--parents",
            self.until,
            "--",
            *_PATHSPEC,
        ).decode()
        order: list[str] = []
        for line in graph_out.splitlines():
            shas = line.split()
            if shas:
                order.append(shas[0])
                self._graph[shas[0]] = tuple(shas[1:])
        changes = [
            c
            for c in self._log([self.until], signed=False, allowed=None)
            if any(p in GOVERNANCE_FILES for p in c.paths)
        ]
        self._read_versions(changes)
        self._keys = tuple(
            dict.fromkeys(
                member.signing_key
                for (sha, file), data in self._versions.items()
                if file == ACCESS_FILE and data is not None
                for access in [self._access_version(sha, data)[0]]
                if access is not None
                for member in access.members
                if member.signing_key
            )
        )
        self._signing_ever = any(
            _require_signed(data)
            for (_sha, file), data in self._versions.items()
            if file == CONFIG_FILE and data is not None
        )
        if self._signing_ever and changes:
            changes = [
                c
                for c in self._signed_log([self.until])
                if any(p in GOVERNANCE_FILES for p in c.paths)
            ]
        self._governance_changes = {c.sha: c for c in changes}
        tofu_done = False
        for index, sha in enumerate(order):
            before = self._merge_states(self._graph[sha])
            change = self._governance_changes.get(sha)
            if change is None:
                self._state_after[sha] = before
                continue
            after, denial, tofu = self._trust(change, before, index, tofu_done)
            tofu_done = tofu_done or tofu
            self._state_after[sha] = after
            self._enforced = self._enforced or after.access is not None
            if denial is not None:
                self._denials[sha] = denial

    def _read_versions(self, changes: Sequence[_Commit]) -> None:
        """The bytes of each governance file each change left (None: deleted), in one call."""
        wanted = [(c.sha, f) for c in changes for f in GOVERNANCE_FILES if f in c.paths]
        if not wanted:
            return
        request = "".join(f"{sha}:{file}\n" for sha, file in wanted).encode()
        out = self._git("cat-file", "--batch", data=request)
        position = 0
        for key in wanted:
            end = out.index(b"\n", position)
            header = out[position:end].split()
            position = end + 1
            if len(header) == 3 and header[1] == b"blob":
                size = int(header[2])
                self._versions[key] = out[position : position + size]
                position += size + 1
            else:
                self._versions[key] = None
                if len(header) == 3:  # a tree or something else where a file should be
                    position += int(header[2]) + 1

    def _access_version(self, sha: str, data: bytes) -> tuple[Access | None, str]:
        if sha not in self._parsed:
            self._parsed[sha] = _parse_access(data)
        return self._parsed[sha]

    def _merge_states(self, parents: Sequence[str]) -> _Trusted:
        states = [self._state_after.get(p, _NOTHING) for p in parents]
        return max(states, key=lambda s: s.order, default=_NOTHING)

    def _state_before(self, sha: str) -> _Trusted:
        if sha in self._graph:
            return self._merge_states(self._graph[sha])
        out = self._git(
            "rev-list", "--topo-order", "--full-history", "--max-count=1", sha, "--", *_PATHSPEC
        )
        top = out.decode().strip()
        return self._state_after.get(top, _NOTHING)

    def _trust(
        self, change: _Commit, before: _Trusted, order: int, tofu_done: bool
    ) -> tuple[_Trusted, Denial | None, bool]:
        """(state after ``change``, its denial if untrusted, whether it was trust on first use)."""
        access, require_signed = before.access, before.require_signed
        access_changed = ACCESS_FILE in change.paths
        problem = ""
        if access_changed:
            data = self._versions.get((change.sha, ACCESS_FILE))
            if data is None:
                problem = "access.yaml was deleted; access control cannot be switched off"
            else:
                access, problem = self._access_version(change.sha, data)
        if CONFIG_FILE in change.paths:
            data = self._versions.get((change.sha, CONFIG_FILE))
            flag = _require_signed(data) if data is not None else None
            require_signed = require_signed if flag is None else flag
        after = _Trusted(change.sha, access, require_signed, order, before)
        if before.access is None:  # no access control yet
            if not access_changed:
                return after, None, False
            if problem:
                return before, self._governance_denial(change, problem), False
            if tofu_done:
                problem = "an access.yaml was already trusted on first use on another branch"
                return before, self._governance_denial(change, problem), False
            return after, None, True  # trust on first use
        if problem:
            return before, self._governance_denial(change, problem), False
        for path in GOVERNANCE_FILES:
            if path in change.paths:
                denial = self._check(change, path, before, merge_excuse=False)
                if denial is not None:
                    return before, denial, False
        return after, None, False

    def _governance_denial(self, change: _Commit, problem: str) -> Denial:
        return Denial(
            commit=change.sha,
            author=change.author,
            path=ACCESS_FILE,
            reason=Reason.UNTRUSTED_ACCESS,
            missing="a valid access.yaml (the change is ignored)",
            identity="unknown",
            detail=problem,
        )

    # -- judging ---------------------------------------------------------------------------

    def _range(self, since: str | None) -> list[_Commit]:
        cached = self._ranges.get(since)
        if cached is None:
            revisions = [self.until] if since is None else [f"^{self._resolve(since)}", self.until]
            if self._signing_ever:
                cached = self._signed_log(revisions, _RANGE_PATHSPEC)
            else:
                cached = self._log(revisions, signed=False, allowed=None, pathspec=_RANGE_PATHSPEC)
            self._ranges[since] = cached
        return cached

    def _touching(self, since: str | None, paths: Sequence[str]) -> list[tuple[int, str]]:
        """(position in the range, file) of every change to ``paths`` (files, or directories
        with everything below), oldest first. Indexed per range: a commit touching 10,000
        files costs a lookup per release, not a scan."""
        index = self._indexes.get(since)
        if index is None:
            by_path: dict[str, list[int]] = {}
            for position, commit in enumerate(self._range(since)):
                for path in commit.paths:
                    by_path.setdefault(path, []).append(position)
            index = self._indexes[since] = (by_path, sorted(by_path))
        by_path, files = index
        hits: set[tuple[int, str]] = set()
        for wanted in paths:
            base = wanted.strip("/")
            hits.update((position, base) for position in by_path.get(base, ()))
            prefix = base + "/"
            at = bisect.bisect_left(files, prefix)
            while at < len(files) and files[at].startswith(prefix):
                hits.update((position, files[at]) for position in by_path[files[at]])
                at += 1
        return sorted(hits)

    def _judge(self, commit: _Commit, path: str) -> Denial | None:
        state = self._state_before(commit.sha)
        if path in GOVERNANCE_FILES and commit.sha in self._governance_changes:
            denial = self._denials.get(commit.sha)
            if denial is None:
                return None  # a trusted change
            if denial.reason == Reason.UNTRUSTED_ACCESS:
                return replace(denial, path=path)
            return self._check(commit, path, state, merge_excuse=False)
        return self._check(commit, path, state)

    def _check(
        self, commit: _Commit, path: str, state: _Trusted, *, merge_excuse: bool = True
    ) -> Denial | None:
        """The denial of ``commit`` changing ``path`` under the governance ``state``, if any.

        ``merge_excuse``: a merge whose file is a clean merge of its parents is not judged
        (never for governance changes: their content decides the rules, so only a master's
        merge makes it trusted). Checked last: it costs a ``git merge-tree``.
        """
        denial = self._refusal(commit, path, state)
        clean_merge = denial is not None and merge_excuse and commit.merge
        if clean_merge and self._clean_merge_result(commit, path):
            return None  # the merge only combined its parents: their commits are judged
        return denial

    def _refusal(self, commit: _Commit, path: str, state: _Trusted) -> Denial | None:
        if state.access is None:
            return None  # no access.yaml trusted yet: no access control
        verdict = self._identify(commit, state)
        if verdict.denial is not None:
            reason, missing, identity, detail = verdict.denial
            return Denial(commit.sha, commit.author, path, reason, missing, identity, detail)
        member = verdict.member
        assert member is not None
        mini_program = _mini_program(path)
        if path in GOVERNANCE_FILES or mini_program is None:
            if member.role is Role.MASTER:
                return None
            if path in GOVERNANCE_FILES:
                why = f"{path} may only be changed by a master"
            elif path.startswith(f"{RELEASES_DIR}/"):
                why = f"files directly under {RELEASES_DIR}/ may only be changed by a master"
            else:
                why = (
                    f"files outside {RELEASES_DIR}/<mini-program>/ that releases read "
                    "may only be changed by a master"
                )
            reason, missing = Reason.NOT_MASTER, f"the master role ({why})"
        elif member.may_release(mini_program):
            return None
        else:
            reason, missing = Reason.NO_RIGHT, f"release rights for mini program {mini_program}"
        return Denial(
            commit.sha, commit.author, path, reason, missing, _person(member), _rights(member)
        )

    def _identify(self, commit: _Commit, state: _Trusted) -> _Verdict:
        access = state.access
        assert access is not None
        if not state.require_signed:
            member = access.member(commit.email)
            if member is not None:
                return _Verdict(member)
            return _Verdict(
                None,
                (
                    Reason.NOT_A_MEMBER,
                    "membership in access.yaml",
                    "unknown",
                    f"{commit.email} is not a member",
                ),
            )
        signed_missing = "an SSH signature by a member's key (requireSignedCommits is on)"
        if commit.signature == "N":
            return _Verdict(None, (Reason.UNSIGNED, signed_missing, "unknown", "not signed"))
        word = _SIGNATURE_WORDS.get(commit.signature, f"status {commit.signature!r}")
        if not commit.key:
            detail = f"git reports the signature as {word}"
            return _Verdict(None, (Reason.BAD_SIGNATURE, signed_missing, "unknown", detail))
        matching = [
            m
            for m in access.members
            if m.signing_key and ssh_fingerprint(m.signing_key) == commit.key
        ]
        if not matching:
            detail = f"signed with key {commit.key}, which no member lists"
            return _Verdict(
                None,
                (Reason.UNKNOWN_KEY, "a signing key listed in access.yaml", "unknown", detail),
            )
        if commit.signature != "G":
            detail = f"git reports the signature as {word}"
            return _Verdict(None, (Reason.BAD_SIGNATURE, signed_missing, "unknown", detail))
        # Two members listing one key is a mistake in access.yaml: prefer the named author.
        named = [m for m in matching if m.email.casefold() == commit.email.casefold()]
        return _Verdict((named or matching)[0])

    def _endorsed(self, denial: Denial, commits: Sequence[_Commit]) -> bool:
        """Whether a master later committed to the denied file on top of the denied commit.

        A master's own commit to a file says "this file is right as it is now" (a revert of
        the refused change, or any edit that keeps it): it clears earlier denials of that file
        made by commits it descends from. A commit on a parallel branch clears nothing: its
        author never saw the refused change. Governance files are not endorsed this way: a
        master's trusted change of them replaces their rules anyway.
        """
        if denial.path in GOVERNANCE_FILES:
            return False
        for commit in reversed(commits):
            if commit.sha == denial.commit:
                return False  # only later commits (topological order) can descend from it
            if denial.path not in commit.paths:
                continue
            state = self._state_before(commit.sha)
            if state.access is None:
                continue
            verdict = self._identify(commit, state)
            master = verdict.member is not None and verdict.member.role is Role.MASTER
            if master and self._is_ancestor(denial.commit, commit.sha):
                return True
        return False

    def _is_ancestor(self, ancestor: str, descendant: str) -> bool:
        key = (ancestor, descendant)
        if key not in self._ancestry:
            try:
                done = subprocess.run(
                    ["git", "merge-base", "--is-ancestor", ancestor, descendant],
                    cwd=self.root,
                    capture_output=True,
                    check=False,
                )
            except OSError as exc:
                raise GitError(f"cannot run git: {exc.strerror or exc}") from exc
            if done.returncode not in (0, 1):
                raise GitError(f"git merge-base in {self.root} failed: {_one_line(done.stderr)}")
            self._ancestry[key] = done.returncode == 0
        return self._ancestry[key]

    def _clean_merge_result(self, merge: _Commit, path: str) -> bool:
        """True when ``path`` in ``merge`` is what a clean merge of its parents gives."""
        if len(merge.parents) != 2:
            return False  # octopus merges are judged as their merger's own change
        key = (merge.sha, path)
        if key not in self._merge_checks:
            tree = self._git(
                "merge-tree", "--write-tree", "--no-messages", *merge.parents, ok=(0, 1)
            )
            lines = tree.decode().splitlines()
            clean_tree = lines[0].strip() if lines else ""
            request = f"{clean_tree}:{path}\n{merge.sha}:{path}\n".encode()
            out = self._git("cat-file", "--batch-check=%(objectname)", data=request).split()
            self._merge_checks[key] = len(out) == 2 and out[0] == out[1] and b"missing" not in out
        return self._merge_checks[key]


def _parse_log(text: str, count: int, mark: str) -> Iterator[_Commit]:
    """Records of ``mark`` + ``count`` fields, each followed by the paths it changed (the
    controller's own ``status/`` files left out)."""
    tokens = [t.lstrip("\n") for t in text.split("\0")]
    index = 0
    while index < len(tokens):
        if tokens[index] != mark:
            index += 1
            continue
        values = tokens[index + 1 : index + 1 + count]
        index += 1 + count
        paths: list[str] = []
        while index < len(tokens) and tokens[index] != mark:
            if tokens[index] and not tokens[index].startswith(_STATUS_PREFIX):
                paths.append(tokens[index])
            index += 1
        if len(values) < count:
            break
        sha, name, email, parents = values[:4]
        signature, key = (values[4], values[5]) if count > 4 else ("N", "")
        yield _Commit(
            sha, name, email, tuple(parents.split()), tuple(dict.fromkeys(paths)), signature, key
        )


def _one_line(stderr: bytes) -> str:
    lines = [line.strip() for line in stderr.decode(errors="replace").splitlines() if line.strip()]
    for line in lines:
        if line.startswith(("fatal:", "error:")):
            return line
    return lines[-1] if lines else "no error output"


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
