"""The controller's own clone of the release repository: sync, read, write status, push.

``reconcile.run_pass`` opens one :class:`Workspace` per controller and, every pass, calls
:meth:`Workspace.sync` (fetch, move the local branch to the remote's), reads that commit as
git objects (:class:`GitTree`), and hands the status files that changed to
:meth:`Workspace.write_status`, which makes at most one commit and pushes it.

Nothing is checked out: the clone is a git directory with an empty work tree, so neither a
sync nor a status commit costs anything per file of the repository (100,000 releases are
200,000 files). A status commit is built with git plumbing from the base commit's tree:
``fast-import`` writes the new blobs (one pack), ``cat-file --batch`` reads only the trees on
the way to a changed file, ``mktree --batch`` writes those trees again (one call per depth)
and ``commit-tree`` makes the commit. Its cost grows with the files it changes and the size
of the directories that hold them (``status/`` has one entry per mini program), not with the
number of files in the repository. :meth:`Workspace.checkout` fills the work tree for the rare
reader that needs files (``relctl status --remote``); the next sync empties it again.

Rules this module keeps (DESIGN section 5, and the write-back pain points of Flux and Argo CD
Image Updater):

- No commit when nothing changed: identical bytes make no commit and no push.
- The controller only writes ``status/``: paths are validated before anything is written, and
  every commit about to be pushed is checked to touch nothing else.
- Never force. A rejected push (a person pushed first) is rebuilt: fetch, reset to the new
  head, lay the same status files on it, commit again, push again, with bounded, jittered
  exponential backoff. A person's commit is never lost or rewritten.
- The commit it pushed is remembered (:attr:`Workspace.last_pushed`, as Flux does) so a pass can
  tell its own commit from a person's.
- One controller per workdir: an exclusive ``flock`` held from :meth:`Workspace.open` to
  :meth:`Workspace.close`.

Layout of a workdir::

    <workdir>/relctl.lock   the lock (holds the pid of the controller that owns the workdir)
    <workdir>/repo/         the clone: its .git and nothing else (emptied on every sync)

The clone lives one level down so that emptying its work tree can never delete the lock file,
and so the workdir can hold other controller state next to the clone.

Git runs as the ``git`` CLI through GitPython's ``Repo.git`` (FACTS.md: ``repo.index`` is ~8x
slower in a 10,000-file repo and changes the process's working directory). Every ``Repo`` is
closed by :meth:`Workspace.close`, which also ends GitPython's ``git cat-file`` helpers.
A ``Workspace`` is not thread safe: use it from one pass at a time.

Errors (one line each, for people, never a traceback)::

    GitError                 a git command failed
     +-- WorkspaceLocked     another controller holds the workdir (.pid says which)
     +-- WorkspaceMismatch   the workdir holds something else than a clone of the remote
     +-- UnsafeStatusPath    a write outside status/ was refused; nothing was committed
     +-- PushRejected        the remote kept rejecting the push; nothing was forced
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from operator import attrgetter
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Self
from urllib.parse import urlsplit

from controller.repofiles import (
    Entry,
    EntryKind,
    Unreadable,
    UnreadableCode,
    collector_paused,
    kind_problem,
    readable_entry,
    size_problem,
    walk,
)

if TYPE_CHECKING:
    import git  # imported where a repository is opened: `relctl validate` never needs it

log = logging.getLogger("relctl")

#: The only top-level directory the controller writes.
STATUS_DIR = "status"
#: Trailer recording the commit of the branch a status commit was computed from.
OBSERVED_TRAILER = "Relctl-Observed-Commit"
SKIP_CI = "[skip ci]"

_LOCK_NAME = "relctl.lock"
_CLONE_NAME = "repo"
_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_CREDENTIALS = re.compile(r"(\w[\w+.-]*://)[^/@\s]+@")
#: Environment for every git call: never prompt for credentials (a daemon has no terminal).
_ENV = {"GIT_TERMINAL_PROMPT": "0"}


# --------------------------------------------------------------------------------------------
# Errors and values
# --------------------------------------------------------------------------------------------


class GitError(Exception):
    """A git operation failed; ``str()`` is one line a person can act on."""


class WorkspaceLocked(GitError):
    """Another controller (process ``pid``, when known) holds the workdir's lock."""

    def __init__(self, workdir: Path, pid: int | None) -> None:
        holder = f"process {pid}" if pid is not None else "another process"
        super().__init__(
            f"workdir {workdir} is locked by {holder}: one controller per workdir "
            "(stop the other controller or use another --workdir)"
        )
        self.workdir = workdir
        self.pid = pid


class WorkspaceMismatch(GitError):
    """The workdir holds a clone of another remote, or something that is not a clone."""


class UnsafeStatusPath(GitError, ValueError):
    """A status write outside ``status/`` was refused before anything was committed."""


class PushRejected(GitError):
    """The remote rejected every push attempt; nothing was forced and nothing was lost."""

    def __init__(self, branch: str, attempts: int, reason: str) -> None:
        super().__init__(
            f"push to {branch} rejected {attempts} time(s), last: {reason}; "
            "the status will be written again on the next pass"
        )
        self.branch = branch
        self.attempts = attempts
        self.reason = reason


@dataclass(frozen=True)
class PushResult:
    """A status commit that reached the remote."""

    commit: str
    #: 1 when the first push landed; more when people pushed in between.
    attempts: int
    #: Paths the commit changed (added, modified or deleted), sorted.
    files: tuple[str, ...]
    #: The blob id of every status file written (None: deleted), so a caller that keeps
    #: statuses by blob id need not read back what it just pushed.
    blob_ids: Mapping[str, str | None] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class CommitInfo:
    """One commit of the branch, as :meth:`Workspace.log` reports it."""

    sha: str
    author_name: str
    author_email: str
    subject: str
    time: datetime


# --------------------------------------------------------------------------------------------
# Pure helpers
# --------------------------------------------------------------------------------------------


def redact(text: str) -> str:
    """Hide credentials embedded in URLs (``https://user:token@host`` -> ``https://***@host``)."""
    return _CREDENTIALS.sub(r"\1***@", text)


def status_path(relpath: str) -> str:
    """Validate a status file path and return it normalised; raise :class:`UnsafeStatusPath`.

    Accepted: relative POSIX paths below ``status/`` with no ``.``/``..``/empty component, no
    ``.git`` component, no backslash or NUL.
    """
    parts = _relative_parts(relpath)
    if parts is None or len(parts) < 2 or parts[0] != STATUS_DIR:
        raise UnsafeStatusPath(f"refusing to write {relpath!r}: the controller only writes status/")
    return "/".join(parts)


def _relative_parts(relpath: str) -> tuple[str, ...] | None:
    """The components of a safe relative path, or None if it is absolute or escapes."""
    if not relpath or "\\" in relpath or "\0" in relpath or relpath.startswith("/"):
        return None
    parts = tuple(relpath.split("/"))
    if any(p in ("", ".", "..") or p.lower() == ".git" for p in parts):
        return None
    return parts


def backoff_delay(retry: int, rng: random.Random, *, base: float, cap: float) -> float:
    """Delay before retry number ``retry`` (1-based): exponential, capped, "equal jitter".

    The delay lies in ``[d/2, d)`` with ``d = min(cap, base * 2**(retry-1))``, so racing
    controllers spread out but no retry waits more than ``cap``.
    """
    ceiling = min(cap, base * 2.0 ** (retry - 1))
    return ceiling / 2 + rng.uniform(0, ceiling / 2)


def commit_message(message: str, observed_commit: str, *, skip_ci: bool) -> str:
    """The full status commit message: subject (+ ``[skip ci]``), body, observed-commit trailer."""
    lines = message.strip().splitlines()
    if not lines or not lines[0].strip():
        raise ValueError("a status commit needs a non-empty subject")
    subject, body = lines[0].strip(), "\n".join(lines[1:]).strip()
    if skip_ci and SKIP_CI not in subject:
        subject = f"{subject} {SKIP_CI}"
    paragraphs = [subject, body] if body else [subject]
    paragraphs.append(f"{OBSERVED_TRAILER}: {observed_commit}")
    return "\n\n".join(paragraphs) + "\n"


def _same_remote(configured: str, wanted: str) -> bool:
    return _normalise_remote(configured) == _normalise_remote(wanted)


def _normalise_remote(url: str) -> str:
    """Compare remotes loosely: local paths resolved, trailing ``/`` and ``.git`` ignored."""
    if urlsplit(url).scheme == "file":
        url = urlsplit(url).path
    if _is_local_path(url):
        url = str(Path(url).expanduser().resolve())
    url = url.rstrip("/")
    return url.removesuffix(".git")


def _is_local_path(url: str) -> bool:
    """A plain path (not ``scheme://`` and not scp-like ``host:path``)."""
    if "://" in url:
        return False
    head = url.split("/", 1)[0]
    return ":" not in head


def _one_line(stderr: str) -> str:
    """The line of git's stderr that says what went wrong."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for prefix in ("fatal:", "error:", "remote: error:"):
        for line in lines:
            if line.startswith(prefix):
                return redact(line)
    return redact(lines[-1]) if lines else "no error output"


def _split_z(output: str) -> list[str]:
    return [item.strip("\n") for item in output.split("\0") if item.strip("\n")]


# --------------------------------------------------------------------------------------------
# The workspace
# --------------------------------------------------------------------------------------------


class Workspace:
    """The controller's own, locked clone of ``remote`` at ``branch`` in ``workdir``.

    Use as a context manager (``with Workspace(...) as ws:``) or call :meth:`open` and
    :meth:`close`. ``sleep`` and ``rng`` drive the push retry backoff (tests inject them);
    ``network_timeout`` bounds each fetch and push (seconds, None for no bound).
    """

    def __init__(
        self,
        remote: str,
        branch: str,
        workdir: Path,
        *,
        author_name: str = "relctl",
        author_email: str = "relctl@localhost",
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        backoff_base: float = 0.2,
        backoff_cap: float = 5.0,
        network_timeout: float | None = 120.0,
    ) -> None:
        if _is_local_path(remote):
            remote = str(Path(remote).expanduser().resolve())
        self.remote = remote
        self.branch = branch
        self.workdir = Path(workdir).expanduser().resolve()
        self.author_name = author_name
        self.author_email = author_email
        self._sleep = sleep
        self._rng = rng if rng is not None else random.Random()
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._network_timeout = network_timeout
        self._lock_fd: int | None = None
        self._repo: git.Repo | None = None
        self._last_pushed: str | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> Self:
        return self.open()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def open(self) -> Self:
        """Take the workdir's lock, then clone the remote or check the existing clone."""
        if self._repo is not None:
            return self
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._check_branch_name()
        self._lock()
        try:
            if not (self.root / ".git").exists():
                self._clone()
            else:
                self._remove_stale_git_locks()
            import git

            self._repo = git.Repo(self.root)
            self._check_origin()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Close the GitPython ``Repo`` (ending its ``git cat-file`` helpers), release the lock."""
        if self._repo is not None:
            self._repo.close()
            self._repo = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the flock
            self._lock_fd = None

    @property
    def root(self) -> Path:
        """The top of the clone (``root/.git`` is its git directory). Its work tree is empty
        unless :meth:`checkout` filled it; read commits as git objects (:class:`GitTree`)."""
        return self.workdir / _CLONE_NAME

    @property
    def repo(self) -> git.Repo:
        """The GitPython ``Repo`` of the clone (for reads); closed by :meth:`close`."""
        if self._repo is None:
            raise GitError(f"workspace {self.workdir} is not open")
        return self._repo

    @property
    def last_pushed(self) -> str | None:
        """The last status commit this workspace pushed (None before the first push)."""
        return self._last_pushed

    @property
    def head(self) -> str:
        """The commit of the local branch (the remote's, after :meth:`sync`)."""
        status, out, _err = self._run("rev-parse", "--verify", "--quiet", "HEAD^{commit}")
        if status != 0:
            raise GitError(f"workspace {self.workdir} has no commit checked out: sync() first")
        return out

    # -- reading -----------------------------------------------------------------------------

    def sync(self) -> str:
        """Fetch the branch and move the local branch (and ``HEAD``) to it; empty the work tree.

        Returns the commit of the branch. Nothing is checked out, so an unchanged sync costs a
        fetch and a few ref updates whatever the size of the repository. Nothing of a person
        lives in this clone, so nothing is lost: the remote is the only truth.
        """
        self._fetch()
        self._follow_remote()
        return self.head

    def checkout(self) -> Path:
        """Fill the work tree with the files of :attr:`head` for a reader that needs files.

        Costs one write per file of the repository; the controller never needs it (it reads
        git objects), and the next :meth:`sync` empties the work tree again. Returns :attr:`root`.
        """
        self._git("reset", "--quiet", "--hard", "HEAD")
        self._git("clean", "-ffdxq")
        return self.root

    def read_file(self, relpath: str) -> bytes | None:
        """The bytes of ``relpath`` at :attr:`head`, or None when it is not a regular file.

        Read from git objects: a symbolic link, a directory or a submodule is None, never
        followed.
        """
        parts = _relative_parts(relpath)
        if parts is None:
            raise ValueError(f"not a relative path inside the repository: {relpath!r}")
        listing = run_git(
            self.root, "ls-tree", "-z", "--full-tree", "HEAD", "--", "/".join(parts),
            env={"GIT_LITERAL_PATHSPECS": "1"},
        ).out  # fmt: skip
        for record in listing.split(b"\0"):
            meta, _tab, name = record.partition(b"\t")
            if name.decode("utf-8", "surrogateescape") != "/".join(parts):
                continue
            mode, kind, oid = meta.split()
            if kind != b"blob" or mode not in (b"100644", b"100755"):
                return None
            return run_git(self.root, "cat-file", "blob", oid.decode()).out
        return None

    def changed_paths(self, since: str, until: str = "HEAD") -> list[str]:
        """Paths that differ between two commits (renames as delete + add), sorted."""
        out = self._git(
            "diff", "--name-only", "--no-renames", "-z", _revision(since), _revision(until), "--"
        )
        return sorted(_split_z(out))

    def log(
        self,
        paths: Sequence[str] = (),
        since: str | None = None,
        *,
        until: str = "HEAD",
        max_count: int | None = None,
    ) -> list[CommitInfo]:
        """Commits reachable from ``until`` but not ``since`` touching ``paths``; newest first."""
        args = ["log", "-z", "--format=%H%x1f%an%x1f%ae%x1f%ct%x1f%s"]
        if max_count is not None:
            args.append(f"--max-count={max_count}")
        until = _revision(until)
        args += [f"{_revision(since)}..{until}" if since else until, "--", *paths]
        commits = []
        for record in _split_z(self._git(*args)):
            sha, name, email, stamp, subject = record.split("\x1f", 4)
            when = datetime.fromtimestamp(int(stamp), UTC)
            commits.append(CommitInfo(sha, name, email, subject, when))
        return commits

    def remote_tip(self) -> str | None:
        """Where the branch is on the remote right now (one ``ls-remote``); None if absent."""
        out = self._git("ls-remote", "--", "origin", f"refs/heads/{self.branch}",
                        timeout=self._network_timeout)  # fmt: skip
        line = out.split("\n", 1)[0]
        return line.split("\t", 1)[0] if line else None

    def contains(self, commit: str, tip: str) -> bool:
        """Whether ``commit`` is ``tip`` or one of its ancestors (False for unknown commits)."""
        if not _SHA.fullmatch(commit):
            return False
        status, _out, _err = self._run("merge-base", "--is-ancestor", commit, tip)
        return status == 0

    # -- writing -----------------------------------------------------------------------------

    def write_status(
        self,
        files: Mapping[str, bytes | None],
        message: str,
        *,
        observed_commit: str,
        skip_ci: bool = False,
        max_attempts: int = 5,
        before_push: Callable[[str], None] | None = None,
    ) -> PushResult | None:
        """Commit ``files`` (None deletes) on the current head and push; None if nothing changed.

        The commit is built from the head's tree with plumbing (see the module docstring):
        nothing is checked out and no index of the whole repository is written. On a rejected
        push the same files are laid on the remote's new head and pushed again, up to
        ``max_attempts`` pushes in all, then :class:`PushRejected`. Never forces.
        ``before_push(commit)`` is called with each commit right before it is pushed (the
        controller records what it is about to push, see ``controller.state``).
        """
        wanted = {status_path(path): data for path, data in files.items()}
        if not _SHA.fullmatch(observed_commit):
            raise ValueError(f"observed_commit must be a full commit sha, not {observed_commit!r}")
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        full_message = commit_message(message, observed_commit, skip_ci=skip_ci)
        _edits(dict.fromkeys(wanted))  # a path that is both a file and a directory: refused now
        blobs: dict[str, str | None] | None = None
        reason = ""
        for attempt in range(1, max_attempts + 1):
            if attempt > 1:
                delay = backoff_delay(
                    attempt - 1, self._rng, base=self._backoff_base, cap=self._backoff_cap
                )
                self._sleep(delay)
                self._fetch()
                self._follow_remote()
            base = self.head
            try:
                if blobs is None:  # the same blobs on every attempt
                    blobs = self._write_blobs(wanted)
                commit = self._status_commit(base, blobs, full_message)
                if commit is None:
                    return None
                changed = self._changed_paths_of(base, commit)
                self._assert_only_status(commit)
                self._git("update-ref", f"refs/heads/{self.branch}", commit, base)
                if before_push is not None:
                    before_push(commit)
                reason = self._push()
            except BaseException:
                self._discard_local(base)
                raise
            if not reason:
                self._last_pushed = commit
                return PushResult(commit, attempt, tuple(changed), blob_ids=dict(blobs))
            self._discard_local(base)  # never keep a commit the remote refused
        raise PushRejected(self.branch, max_attempts, reason)

    # -- internals ---------------------------------------------------------------------------

    @property
    def _remote_ref(self) -> str:
        return f"refs/remotes/origin/{self.branch}"

    def _git(
        self,
        *args: str,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
        cwd: Path | None = None,
    ) -> str:
        status, out, err = self._run(*args, env=env, timeout=timeout, cwd=cwd)
        if status != 0:
            raise GitError(f"git {args[0]} failed: {_one_line(err)}")
        return out

    def _run(
        self,
        *args: str,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
        cwd: Path | None = None,
    ) -> tuple[int, str, str]:
        """Run ``git args`` in the clone (or ``cwd``) through :func:`run_git`; (exit status,
        stdout without its final newline, stderr)."""
        done = run_git(cwd or self.root, *args, ok=None, env=env, timeout=timeout)
        return done.status, done.text.removesuffix("\n"), done.err.strip()

    def _check_branch_name(self) -> None:
        status, _out, _err = self._run(
            "check-ref-format", f"refs/heads/{self.branch}", cwd=self.workdir
        )
        if status != 0 or self.branch.startswith("-"):
            raise GitError(f"not a valid branch name: {self.branch!r}")

    def _lock(self) -> None:
        import fcntl  # POSIX only: imported here so that `relctl validate` starts anywhere

        path = self.workdir / _LOCK_NAME
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise WorkspaceLocked(self.workdir, _read_pid(path)) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd

    def _remove_stale_git_locks(self) -> None:
        """Delete ``*.lock`` files a killed predecessor left in the clone's git directory.

        git creates ``index.lock``, ``HEAD.lock``, ``refs/.../*.lock`` while it writes and
        leaves them behind when it is killed; every later git command then refuses to run.
        Only the holder of the workdir lock runs git in this clone, and we hold it now, so
        any lock file present is stale.
        """
        git_dir = self.root / ".git"
        for stale in sorted(git_dir.rglob("*.lock")):
            if stale.is_file() and "objects" not in stale.relative_to(git_dir).parts:
                log.warning("removing %s left by an interrupted git command", stale)
                stale.unlink(missing_ok=True)

    def _clone(self) -> None:
        if self.root.exists() and (not self.root.is_dir() or any(self.root.iterdir())):
            raise WorkspaceMismatch(
                f"{self.root} exists but is not a git clone; remove it or use another --workdir"
            )
        for leftover in self.workdir.glob(f".{_CLONE_NAME}.clone-*"):  # an interrupted clone
            shutil.rmtree(leftover, ignore_errors=True)
        staging = self.workdir / f".{_CLONE_NAME}.clone-{os.getpid()}"
        status, _out, err = self._run(
            "clone",
            "--no-checkout",
            "--origin",
            "origin",
            "--",
            self.remote,
            str(staging),
            cwd=self.workdir,
        )
        if status != 0:
            shutil.rmtree(staging, ignore_errors=True)
            raise GitError(f"cannot clone {redact(self.remote)}: {_one_line(err)}")
        with contextlib.suppress(FileNotFoundError):
            self.root.rmdir()
        staging.rename(self.root)  # atomic: a crash never leaves a half clone at root

    def _check_origin(self) -> None:
        status, url, _err = self._run("config", "--get", "remote.origin.url")
        if status != 0 or not _same_remote(url, self.remote):
            found = redact(url) if status == 0 else "no origin remote"
            raise WorkspaceMismatch(
                f"{self.root} is a clone of {found}, not of {redact(self.remote)}; "
                "use another --workdir or remove it"
            )

    def _fetch(self) -> None:
        # "+" only lets our remote-tracking ref follow a rewritten branch; pushes never force.
        refspec = f"+refs/heads/{self.branch}:{self._remote_ref}"
        status, _out, err = self._run(
            "fetch", "--prune", "--no-tags", "origin", refspec, timeout=self._network_timeout
        )
        if status == 0:
            return
        if "couldn't find remote ref" in err:
            raise GitError(f"branch {self.branch!r} not found on {redact(self.remote)}")
        raise GitError(f"cannot fetch {redact(self.remote)}: {_one_line(err)}")

    def _follow_remote(self) -> None:
        """Point the local branch and ``HEAD`` at the fetched commit; empty the work tree."""
        tip = self._git("rev-parse", "--verify", "--quiet", f"{self._remote_ref}^{{commit}}")
        self._git("update-ref", f"refs/heads/{self.branch}", tip)
        self._git("symbolic-ref", "HEAD", f"refs/heads/{self.branch}")
        self._empty_work_tree()

    def _empty_work_tree(self) -> None:
        """Remove every file of the work tree and the index (a checkout by :meth:`checkout`,
        an older relctl's clone or debris): a reader must not mistake them for the head."""
        try:
            with os.scandir(self.root) as found:
                debris = [Path(entry.path) for entry in found if entry.name != ".git"]
            for path in debris:
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink()
            (self.root / ".git" / "index").unlink(missing_ok=True)
        except OSError as exc:
            raise GitError(f"cannot empty the work tree of {self.root}: {exc}") from exc

    def _discard_local(self, commit: str) -> None:
        """Put the local branch back at ``commit`` (after a failed attempt)."""
        with contextlib.suppress(GitError):
            self._git("update-ref", f"refs/heads/{self.branch}", commit)

    def _write_blobs(self, wanted: Mapping[str, bytes | None]) -> dict[str, str | None]:
        """Write the blobs of ``wanted`` with one ``git fast-import`` (a single pack, no file
        per blob; a blob the repository has already is not written again); path -> blob id,
        or None for a deletion."""
        contents = list(dict.fromkeys(data for data in wanted.values() if data is not None))
        oids: dict[bytes, str] = {}
        if contents:
            stream = bytearray()
            for number, data in enumerate(contents, start=1):
                stream += b"blob\nmark :%d\ndata %d\n%s\n" % (number, len(data), data)
            handle, marks = tempfile.mkstemp(prefix="relctl-marks-", dir=self.root / ".git")
            os.close(handle)
            try:
                run_git(
                    self.root, "fast-import", "--quiet", f"--export-marks={marks}",
                    input=bytes(stream),
                )  # fmt: skip
                exported = dict(
                    line.split(" ", 1) for line in Path(marks).read_text().splitlines() if line
                )
            finally:
                Path(marks).unlink(missing_ok=True)
            written = [exported.get(f":{number}") for number in range(1, len(contents) + 1)]
            if any(oid is None for oid in written):
                raise GitError(f"git fast-import wrote {len(exported)} of {len(contents)} blobs")
            oids = {data: str(oid) for data, oid in zip(contents, written, strict=True)}
        return {path: None if data is None else oids[data] for path, data in wanted.items()}

    def _status_commit(
        self, base: str, blobs: Mapping[str, str | None], message: str
    ) -> str | None:
        """The commit laying ``blobs`` on ``base`` (not on any branch yet); None if its tree
        is ``base``'s (the files are there already)."""
        base_tree = self._git("rev-parse", "--verify", "--quiet", f"{base}^{{tree}}")
        tree = edit_tree(self.root, base_tree, blobs)
        if tree == base_tree:
            return None
        identity = {
            "GIT_AUTHOR_NAME": self.author_name,
            "GIT_AUTHOR_EMAIL": self.author_email,
            "GIT_COMMITTER_NAME": self.author_name,
            "GIT_COMMITTER_EMAIL": self.author_email,
        }
        # The message goes by stdin (a file), never as an argument: one argument may not
        # exceed 128 KiB on Linux (E2BIG). commit-tree keeps it verbatim and runs no hook.
        done = run_git(
            self.root, "commit-tree", tree, "-p", base, input=message.encode(), env=identity
        )
        return done.text.strip()

    def _changed_paths_of(self, base: str, commit: str) -> list[str]:
        """The paths ``commit`` changes against ``base`` (a tree diff: unchanged subtrees are
        skipped, whatever the size of the repository), sorted."""
        out = self._git("diff-tree", "-r", "-z", "--no-renames", "--name-only", base, commit, "--")
        return sorted(_split_z(out))

    def _assert_only_status(self, commit: str) -> None:
        """Refuse to push unless every commit the push would send touches only ``status/``."""
        out = self._git(
            "log",
            "-z",
            "--format=",
            "--name-only",
            "--no-renames",
            "-m",
            f"{self._remote_ref}..{commit}",
            "--",
        )
        outside = sorted(
            p for p in _split_z(out) if p != STATUS_DIR and not p.startswith(f"{STATUS_DIR}/")
        )
        if outside:
            shown = ", ".join(outside[:5]) + (" ..." if len(outside) > 5 else "")
            raise UnsafeStatusPath(
                f"refusing to push: the commit touches files outside status/: {shown}"
            )

    def _push(self) -> str:
        """Push the branch (never forced); "" when it landed, else the rejection reason."""
        ref = f"refs/heads/{self.branch}"
        _status, out, err = self._run(
            "push",
            "--porcelain",
            "--no-verify",
            "origin",
            f"{ref}:{ref}",
            timeout=self._network_timeout,
        )
        for line in out.splitlines():
            flag, _, rest = line.partition("\t")
            if rest.startswith(f"{ref}:"):
                summary = rest.partition("\t")[2].strip()
                if flag in (" ", "*", "="):  # fast-forward, new branch, already there
                    return ""
                if flag == "!":
                    return summary or "rejected"
                raise GitError(f"unexpected push result for {self.branch}: {line.strip()}")
        raise GitError(f"cannot push to {redact(self.remote)}: {_one_line(err)}")


def _revision(rev: str) -> str:
    """A revision argument that git cannot mistake for an option."""
    if not rev or rev.startswith("-"):
        raise ValueError(f"not a revision: {rev!r}")
    return rev


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


# --------------------------------------------------------------------------------------------
# Editing a tree without a checkout (status commits)
# --------------------------------------------------------------------------------------------

_FORMAT_BITS = 0o170000
_DIRECTORY_BITS = 0o040000
_GITLINK_BITS = 0o160000


@dataclass
class _TreeEdit:
    """What changes below one directory: files set to a blob id (None: deleted) and the
    subdirectories holding changes; while :func:`edit_tree` runs, the directory's tree in the
    base (None: absent or not a directory), its entries there, and its new tree."""

    files: dict[bytes, str | None] = field(default_factory=dict)
    dirs: dict[bytes, _TreeEdit] = field(default_factory=dict)
    base: str | None = None
    entries: dict[bytes, tuple[bytes, str]] = field(default_factory=dict)
    result: str | None = None


def _edits(files: Mapping[str, str | None]) -> _TreeEdit:
    """The edits of ``files`` as a tree of :class:`_TreeEdit`; a path that is a file and a
    directory at once is refused (ValueError)."""
    root = _TreeEdit()
    for path in files:
        try:
            *dirs, name = (part.encode("utf-8", "surrogateescape") for part in path.split("/"))
        except UnicodeEncodeError:
            raise UnsafeStatusPath(f"refusing to write {path!r}: not a file name") from None
        node = root
        for part in dirs:
            if part in node.files:
                raise ValueError(f"{path!r}: a file of the same commit is where its directory is")
            node = node.dirs.setdefault(part, _TreeEdit())
        if name in node.dirs:
            raise ValueError(f"{path!r}: a directory of the same commit is where it is")
        node.files[name] = files[path]
    return root


def edit_tree(repo_root: Path, base_tree: str, files: Mapping[str, str | None]) -> str:
    """The id of ``base_tree`` with ``files`` (``a/b/c`` paths) set to blob ids (mode 100644)
    or deleted (None); new trees are written with ``git mktree``.

    Only the trees on the way to an edited file are read (``cat-file --batch``) and written
    (``mktree --batch``), one call of each per depth; every other entry is kept by its id,
    so the cost does not grow with the size of the repository. An entry that is not a
    directory where one is needed (a file, a symbolic link, a submodule) is replaced by a
    directory, never followed; a directory left empty disappears, as in git.
    """
    root = _edits(files)
    root.base = base_tree
    levels: list[list[_TreeEdit]] = []
    level = [root]
    while level:
        levels.append(level)
        trees = _read_trees(repo_root, [node.base for node in level if node.base is not None])
        below: list[_TreeEdit] = []
        for node in level:
            node.entries = trees[node.base] if node.base is not None else {}
            for name, child in node.dirs.items():
                found = node.entries.get(name)
                child.base = found[1] if found is not None and _is_directory(found[0]) else None
                below.append(child)
        level = below
    for level in reversed(levels):
        rebuilt: list[tuple[_TreeEdit, dict[bytes, tuple[bytes, str]]]] = []
        for node in level:
            entries = dict(node.entries)
            for name, blob in node.files.items():
                if blob is None:
                    entries.pop(name, None)
                else:
                    entries[name] = (b"100644", blob)
            for name, child in node.dirs.items():
                if child.result is None:
                    entries.pop(name, None)
                else:
                    entries[name] = (b"40000", child.result)
            if entries == node.entries:
                node.result = node.base  # unchanged, or still absent
            elif entries:
                rebuilt.append((node, entries))
            else:
                node.result = None  # left empty: git keeps no empty directory
        written = _make_trees(repo_root, [entries for _node, entries in rebuilt])
        for (node, _entries), oid in zip(rebuilt, written, strict=True):
            node.result = oid
    if root.result is None:  # every file of the repository was deleted
        return run_git(repo_root, "mktree", input=b"").text.strip()
    return root.result


def _is_directory(mode: bytes) -> bool:
    try:
        return int(mode, 8) & _FORMAT_BITS == _DIRECTORY_BITS
    except ValueError:
        return False


def _object_type(mode: bytes) -> bytes:
    """The object type ``mktree`` expects for an entry of ``mode``."""
    try:
        bits = int(mode, 8) & _FORMAT_BITS
    except ValueError:
        raise GitError(f"a tree entry has an invalid mode {mode!r}") from None
    return {_DIRECTORY_BITS: b"tree", _GITLINK_BITS: b"commit"}.get(bits, b"blob")


def _read_trees(repo_root: Path, oids: Sequence[str]) -> dict[str, dict[bytes, tuple[bytes, str]]]:
    """The entries (name -> (mode, id)) of each tree in ``oids``, read by one ``cat-file``."""
    unique = list(dict.fromkeys(oids))
    if not unique:
        return {}
    out = run_git(
        repo_root, "cat-file", "--batch", input="".join(f"{oid}\n" for oid in unique).encode()
    ).out
    trees: dict[str, dict[bytes, tuple[bytes, str]]] = {}
    position = 0
    try:
        for oid in unique:
            end = out.index(b"\n", position)
            header = out[position:end].split()
            if len(header) != 3 or header[1] != b"tree":
                raise GitError(f"{oid} is not a tree: {out[position:end][:120]!r}")
            size = int(header[2])
            trees[oid] = _parse_tree(out[end + 1 : end + 1 + size], len(oid) // 2)
            position = end + 1 + size + 1
    except ValueError as exc:
        raise GitError(f"cannot read the trees of a status commit: {exc}") from None
    return trees


def _parse_tree(body: bytes, width: int) -> dict[bytes, tuple[bytes, str]]:
    """A raw tree object (``mode SP name NUL id``...) as name -> (mode, hex id)."""
    entries: dict[bytes, tuple[bytes, str]] = {}
    position = 0
    while position < len(body):
        space = body.index(b" ", position)
        nul = body.index(b"\0", space)
        end = nul + 1 + width
        if end > len(body):
            raise ValueError("a tree object is cut short")
        entries[body[space + 1 : nul]] = (body[position:space], body[nul + 1 : end].hex())
        position = end
    return entries


def _make_trees(repo_root: Path, trees: Sequence[Mapping[bytes, tuple[bytes, str]]]) -> list[str]:
    """Write non-empty ``trees`` with one ``git mktree --batch``; their ids, in order."""
    if not trees:
        return []
    request = bytearray()
    for entries in trees:
        for name, (mode, oid) in entries.items():
            request += b"%s %s %s\t%s\0" % (mode, _object_type(mode), oid.encode(), name)
        request += b"\0"  # an empty record ends a tree
    written = run_git(repo_root, "mktree", "-z", "--batch", input=bytes(request)).text.split()
    if len(written) != len(trees):
        raise GitError(f"git mktree wrote {len(written)} of {len(trees)} trees")
    return written


# --------------------------------------------------------------------------------------------
# The one git runner, and reading a commit's objects
# --------------------------------------------------------------------------------------------

#: What one git command may print before it is stopped (a hostile history cannot exhaust
#: memory through a log or a listing).
MAX_OUTPUT = 256 * 1024 * 1024
#: The tail of stderr kept for the error message.
_STDERR_TAIL = 64 * 1024


@dataclass(frozen=True)
class GitRun:
    """What one git command did: exit status, stdout (bytes) and the tail of stderr."""

    status: int
    out: bytes
    err: str

    @property
    def text(self) -> str:
        return self.out.decode("utf-8", "surrogateescape")


def run_git(
    cwd: Path | str,
    *args: str,
    input: bytes | None = None,
    ok: Iterable[int] | None = (0,),
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    max_output: int = MAX_OUTPUT,
) -> GitRun:
    """Run ``git args`` in ``cwd``: the only way relctl starts git.

    Every call gets the same hardening: no terminal prompt, replace objects ignored, no
    signature lines in logs, paths unquoted; stdin is fed from a temporary file (no pipe
    deadlock); stdout is read up to ``max_output`` bytes and the command is killed beyond
    it; ``timeout`` (seconds) kills a command that hangs. A status outside ``ok`` raises
    :class:`GitError` with one line of stderr (``ok=None``: any status is returned); so do a
    timeout and an output overflow, always.
    """
    command = [
        "git",
        "--no-replace-objects",
        "-c", "log.showSignature=false",
        "-c", "core.quotePath=false",
        *args,
    ]  # fmt: skip
    full_env = {**os.environ, **_ENV, "GIT_NO_REPLACE_OBJECTS": "1", **(env or {})}
    with tempfile.TemporaryFile() as stdin, tempfile.TemporaryFile() as stderr:
        if input is not None:
            stdin.write(input)
            stdin.seek(0)
        try:
            process = subprocess.Popen(
                command, cwd=cwd, stdin=stdin, stdout=subprocess.PIPE, stderr=stderr, env=full_env
            )
        except OSError as exc:
            raise GitError(f"cannot run git: {exc.strerror or exc}") from exc
        expired = threading.Event()

        def _expire() -> None:
            expired.set()
            process.kill()

        timer = threading.Timer(timeout, _expire) if timeout is not None else None
        if timer is not None:
            timer.daemon = True
            timer.start()
        chunks: list[bytes] = []
        size = 0
        overflow = False
        try:
            assert process.stdout is not None
            while chunk := process.stdout.read(1 << 16):
                size += len(chunk)
                if size > max_output:
                    overflow = True
                    process.kill()
                    break
                chunks.append(chunk)
            status = process.wait()
        finally:
            if timer is not None:
                timer.cancel()
            if process.stdout is not None:
                process.stdout.close()
            if process.poll() is None:
                process.kill()
                process.wait()
        stderr.seek(0, os.SEEK_END)
        stderr.seek(max(0, stderr.tell() - _STDERR_TAIL))
        err = stderr.read().decode("utf-8", "replace")
    what = f"git {args[0] if args else ''}".strip()
    if expired.is_set():
        raise GitError(f"{what} did not finish within {timeout:g} s")
    if overflow:
        raise GitError(f"{what} printed more than {max_output:,} bytes; stopped")
    if ok is not None and status not in tuple(ok):
        raise GitError(f"{what} failed: {_one_line(err)}")
    return GitRun(status, b"".join(chunks), err)


_GIT_KINDS = {
    b"blob": EntryKind.FILE,
    b"tree": EntryKind.DIRECTORY,
    b"commit": EntryKind.SUBMODULE,
}
_FILE_MODES = (b"100644", b"100755")


@contextlib.contextmanager
def repository(repo_root: Path) -> Iterator[git.Repo]:
    """GitPython's ``Repo`` of ``repo_root`` for reading commits (:class:`GitTree`), closed on
    exit (ending its ``git cat-file`` helpers). Raises :class:`GitError` when it is none."""
    try:
        import git

        repo = git.Repo(repo_root)
    except (git.GitError, OSError) as exc:
        raise GitError(f"{repo_root} is not a git repository: {exc}") from exc
    try:
        yield repo
    finally:
        repo.close()


#: How many commit listings :class:`GitTree` keeps (per process, all repositories together).
LISTINGS_KEPT = 4
_Listing = tuple[dict[str, Entry], dict[str, list[Entry]]]
_listings: dict[tuple[str, str], _Listing] = {}
_listings_lock = threading.Lock()


class GitTree:
    """The files of one commit, read as git objects (a :class:`RepoFiles`).

    One ``git ls-tree -r -t -l`` lists every entry with its mode, object id and size; a blob
    is read through GitPython's object database only when it is a regular file (mode 100644
    or 100755) no larger than the caller's limit. No work tree, no checkout, no filters:
    ``.gitattributes`` cannot change a byte of what is read, and a symbolic link (mode
    120000) or submodule is an entry to report, never something to follow.

    The listings of the last :data:`LISTINGS_KEPT` commits are kept (a commit's tree never
    changes): a daemon's passes over an unchanged main list 200,000 entries once, not every
    pass. :attr:`listed` counts the listings actually read.

    ``lazy=True`` is for a reader of a few paths (``relctl check`` reads a handful of files
    of the base revision): each directory is listed when first visited, with one
    ``git ls-tree -l`` of its tree object, parsed the same way, so a 10,000-release base
    costs a few directory listings instead of all 20,000 entries.
    """

    #: Commits listed with ``ls-tree`` since the process started (cached ones not counted).
    listed = 0

    def __init__(self, repo: git.Repo, commit: str, *, lazy: bool = False) -> None:
        self._repo = repo
        root = str(repo.working_tree_dir or repo.git_dir)
        self._root = root
        self._commit = run_git(
            root, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{commit}^{{commit}}"
        ).text.strip()
        self._lazy = lazy
        if lazy:
            self._entries: dict[str, Entry] = {}
            self._children: dict[str, list[Entry]] = {}
            return
        key = (os.path.realpath(repo.git_dir), self._commit)
        with _listings_lock:
            listing = _listings.get(key)
        if listing is None:
            listing = _list_commit(root, self._commit)
            with _listings_lock:
                GitTree.listed += 1
                _listings[key] = listing
                while len(_listings) > LISTINGS_KEPT:
                    del _listings[next(iter(_listings))]  # the oldest
        self._entries, self._children = listing

    @property
    def revision(self) -> str:
        return self._commit

    def entry(self, path: str) -> Entry | None:
        if path == "":
            return Entry("", EntryKind.DIRECTORY)
        if self._lazy:
            parent = path.rpartition("/")[0]
            if parent:
                above = self.entry(parent)
                if above is None:
                    return None
                if above.kind in (EntryKind.SYMLINK, EntryKind.SUBMODULE):
                    return Entry(path, above.kind)  # under a link: reported as the link
                if above.kind is not EntryKind.DIRECTORY:
                    return None
            self._list_directory(parent)
            return self._entries.get(path)
        found = self._entries.get(path)
        if found is not None:
            return found
        # Under a link or a submodule: report the link, as a work tree does.
        parent = path
        while "/" in parent:
            parent = parent.rpartition("/")[0]
            above = self._entries.get(parent)
            if above is not None and above.kind in (EntryKind.SYMLINK, EntryKind.SUBMODULE):
                return Entry(path, above.kind)
        return None

    def children(self, path: str) -> list[Entry]:
        if self._lazy:
            here = self.entry(path)
            if here is None or here.kind is not EntryKind.DIRECTORY:
                return []
            self._list_directory(path)
        return list(self._children.get(path, ()))  # sorted when listed

    def walk(self, path: str) -> Iterator[Entry]:
        return walk(self, path)

    def _list_directory(self, path: str) -> None:
        """(lazy) List directory ``path`` (known to be one) from its tree object, once."""
        if path in self._children:
            return
        if path:
            tree = self._entries[path].oid
            assert tree is not None  # listed directories carry their tree's id
        else:
            tree = self._commit
        listing = run_git(self._root, "ls-tree", "-l", "-z", "--end-of-options", tree)
        self._children[path] = []
        _parse_listing(listing.out, f"{path}/" if path else "", self._entries, self._children)

    def read(self, path: str, limit: int) -> bytes:
        entry = readable_entry(self, path, limit)
        if entry.oid is None:  # pragma: no cover - every listed file has an object id
            raise kind_problem(entry)
        try:
            import git

            data: bytes = self._repo.odb.stream(bytes.fromhex(entry.oid)).read()
        except (ValueError, git.GitError) as exc:
            raise Unreadable(
                path, UnreadableCode.UNREADABLE, f"{path} cannot be read: {exc}", "run git fsck"
            ) from None
        if len(data) > limit:  # pragma: no cover - git's own size was checked first
            raise size_problem(path, len(data), limit)
        return data


def _list_commit(root: str, commit: str) -> _Listing:
    """Every entry of ``commit`` by path, and the entries of each directory (never changed
    once built: :class:`GitTree` instances of one commit share them)."""
    listing = run_git(root, "ls-tree", "-r", "-t", "-l", "-z", "--full-tree", commit)
    entries: dict[str, Entry] = {}
    children: dict[str, list[Entry]] = {"": []}
    with collector_paused():  # 20,000 entries at 10,000 releases, kept: no cycles
        _parse_listing(listing.out, "", entries, children, recursive=True)
    return entries, children


def _parse_listing(
    out: bytes,
    prefix: str,
    entries: dict[str, Entry],
    children: dict[str, list[Entry]],
    *,
    recursive: bool = False,
) -> None:
    """Add the records of ``git ls-tree -l -z`` (paths below ``prefix``) to ``entries`` and
    to their directories' lists in ``children``; with ``recursive`` (``-r -t``: every
    directory's entries are in ``out``) each directory gets its own list, empty if need be."""
    file, directory = EntryKind.FILE, EntryKind.DIRECTORY
    for record in out.split(b"\0"):
        if not record:
            continue
        meta, _tab, raw_path = record.partition(b"\t")
        mode, kind_name, oid, size = meta.split(None, 3)
        path = prefix + raw_path.decode("utf-8", "surrogateescape")
        kind = _GIT_KINDS.get(kind_name, EntryKind.SPECIAL)
        if kind is file and mode not in _FILE_MODES:
            kind = EntryKind.SYMLINK if mode == b"120000" else EntryKind.SPECIAL
        entry = Entry(path, kind, int(size) if kind is file else 0, oid.decode("ascii"))
        entries[path] = entry
        parent = path.rpartition("/")[0]
        listed = children.get(parent)
        if listed is None:
            listed = children[parent] = []
        listed.append(entry)
        if kind is directory and recursive and path not in children:
            children[path] = []
    for listed in children.values():
        # By path, as RepoFiles.children promises (git sorts a directory as if its name
        # ended with '/').
        listed.sort(key=attrgetter("path"))


# --------------------------------------------------------------------------------------------
# Reading another revision (relctl plan --base, relctl check)
# --------------------------------------------------------------------------------------------


def resolve_revision(repo_root: Path, rev: str) -> str:
    """The full commit sha of ``rev`` in the repository at ``repo_root``."""
    done = run_git(
        repo_root, "rev-parse", "--verify", "--quiet", f"{_revision(rev)}^{{commit}}", ok=None
    )
    if done.status != 0:
        raise GitError(f"{rev!r} is not a commit of {repo_root}")
    return done.text.strip()
