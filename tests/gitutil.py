"""Test helpers for real git: bare remotes in tmp directories and clones acting as people.

Everything is local (``file://`` remotes), nothing touches the network, and nothing depends on
the machine's git configuration once :func:`isolate_git` has run (call it from an autouse
fixture). Typical use::

    url = make_remote(tmp_path, {"releases/shop/gcash.yaml": "..."})
    alice = PersonClone(url, tmp_path / "alice", name="Alice")
    alice.commit_and_push({"releases/shop/gcash.yaml": "grayscale: 20\\n"}, "Raise grayscale")
    assert remote_file(url, "releases/shop/gcash.yaml") == b"grayscale: 20\\n"

Remotes keep a reflog of their branches (``core.logAllRefUpdates``), so
:func:`assert_fast_forward_only` can prove that no update of the branch was ever forced.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

#: Content of a file to write; None deletes the file.
FileContent = str | bytes | None


def isolate_git(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    """Make git ignore the machine's global and system config, identity and repo variables."""
    for name in list(os.environ):
        if name.startswith("GIT_") and not name.startswith("GIT_PYTHON"):
            monkeypatch.delenv(name)
    monkeypatch.delenv("EMAIL", raising=False)
    home.mkdir(parents=True, exist_ok=True)
    config = home / ".gitconfig"
    # No background "git gc --auto": it races with tmp_path cleanup and makes timings noisy.
    config.write_text("[gc]\n\tauto = 0\n[maintenance]\n\tauto = false\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(config))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_TERMINAL_PROMPT", "0")


def identity(name: str, email: str) -> dict[str, str]:
    """Environment that makes git author and commit as ``name <email>``."""
    return {
        "GIT_AUTHOR_NAME": name,
        "GIT_AUTHOR_EMAIL": email,
        "GIT_COMMITTER_NAME": name,
        "GIT_COMMITTER_EMAIL": email,
    }


def git(cwd: Path, *args: str, env: Mapping[str, str] | None = None) -> str:
    """Run git in ``cwd``; stdout without the trailing newline; fail the test on error."""
    result = subprocess.run(
        ["git", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed in {cwd}: {result.stderr.strip()}")
    return result.stdout.rstrip("\n")


def write_files(root: Path, files: Mapping[str, FileContent]) -> None:
    """Write (or, for None, delete) files below ``root``, creating directories."""
    for relpath, content in files.items():
        path = root / relpath
        if content is None:
            path.unlink(missing_ok=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        data = content.encode() if isinstance(content, str) else content
        path.write_bytes(data)


# --------------------------------------------------------------------------------------------
# Remotes
# --------------------------------------------------------------------------------------------


def make_remote(
    tmp_path: Path,
    files: Mapping[str, str | bytes],
    *,
    branch: str = "main",
    name: str = "origin.git",
) -> str:
    """A bare repository seeded with one commit of ``files`` on ``branch``; its file:// URL.

    The commit is written with ``git fast-import`` (no work tree), so seeding a 10,000-file
    repository takes well under a second.
    """
    bare = tmp_path / name
    git(tmp_path, "init", "--quiet", "--bare", f"--initial-branch={branch}", str(bare))
    git(bare, "config", "core.logAllRefUpdates", "true")
    git(bare, "config", "gc.auto", "0")
    stream = bytearray(
        f"commit refs/heads/{branch}\n"
        f"committer Seed <seed@example.com> {int(time.time())} +0000\n"
        "data 5\nSeed\n".encode()
    )
    for relpath, content in sorted(files.items()):
        data = content.encode() if isinstance(content, str) else content
        stream += f"M 100644 inline {relpath}\ndata {len(data)}\n".encode() + data + b"\n"
    subprocess.run(["git", "fast-import", "--quiet"], cwd=bare, input=bytes(stream), check=True)
    return bare.as_uri()


def remote_path(url: str) -> Path:
    """The directory of a ``file://`` (or plain path) remote."""
    parts = urlsplit(url)
    return Path(unquote(parts.path)) if parts.scheme == "file" else Path(url)


def remote_head(url: str, branch: str = "main") -> str:
    """The commit the remote's branch points to."""
    return git(remote_path(url), "rev-parse", "--verify", f"refs/heads/{branch}")


def remote_file(url: str, relpath: str, branch: str = "main") -> bytes | None:
    """The bytes of ``relpath`` at the remote's branch, None if it does not exist there."""
    result = subprocess.run(
        ["git", "cat-file", "blob", f"refs/heads/{branch}:{relpath}"],
        cwd=remote_path(url),
        capture_output=True,
        check=False,
    )
    return result.stdout if result.returncode == 0 else None


@dataclass(frozen=True)
class RemoteCommit:
    """One commit of a remote branch, as :func:`remote_log` lists it."""

    sha: str
    parents: tuple[str, ...]
    author: str
    subject: str
    message: str


def remote_log(url: str, branch: str = "main") -> list[RemoteCommit]:
    """Every commit of the remote's branch, newest first."""
    out = git(remote_path(url), "log", "-z", "--format=%H%x1f%P%x1f%an%x1f%s%x1f%B", branch)
    commits = []
    for record in filter(None, out.split("\0")):
        sha, parents, author, subject, message = record.split("\x1f", 4)
        commits.append(RemoteCommit(sha, tuple(parents.split()), author, subject, message))
    return commits


def remote_ref_updates(url: str, branch: str = "main") -> list[tuple[str, str]]:
    """Every (old, new) update of the remote's branch, oldest first, from its reflog."""
    log = remote_path(url) / "logs" / "refs" / "heads" / branch
    if not log.exists():
        return []
    return [
        (line.split()[0], line.split()[1]) for line in log.read_text().splitlines() if line.strip()
    ]


def assert_fast_forward_only(url: str, branch: str = "main") -> None:
    """Fail unless every update of the remote's branch was a fast-forward (nothing forced)."""
    zero = "0" * 40
    for old, new in remote_ref_updates(url, branch):
        if old == zero:
            continue
        result = subprocess.run(
            ["git", "merge-base", "--is-ancestor", old, new], cwd=remote_path(url), check=False
        )
        assert result.returncode == 0, f"forced update of {branch}: {old} -> {new}"


def install_hook(url: str, name: str, script: str) -> Path:
    """Install an executable hook (e.g. ``pre-receive``) in a bare remote; its path."""
    hook = remote_path(url) / "hooks" / name
    hook.write_text(script)
    hook.chmod(0o755)
    return hook


# --------------------------------------------------------------------------------------------
# People
# --------------------------------------------------------------------------------------------


class PersonClone:
    """A person's clone of a remote: write files, commit as them, push (never forced)."""

    def __init__(
        self,
        url: str,
        path: Path,
        *,
        name: str = "Pat Person",
        email: str = "pat@example.com",
        branch: str = "main",
    ) -> None:
        self.url = url
        self.path = path
        self.name = name
        self.email = email
        self.branch = branch
        git(path.parent, "clone", "--quiet", "--branch", branch, url, str(path))

    def git(self, *args: str) -> str:
        """Run git in this clone as this person."""
        return git(self.path, *args, env=identity(self.name, self.email))

    def write(self, files: Mapping[str, FileContent]) -> None:
        """Write (None: delete) files in the work tree."""
        write_files(self.path, files)

    def commit(self, message: str) -> str:
        """Commit every change in the work tree; the new commit."""
        self.git("add", "--all")
        self.git("commit", "--quiet", "-m", message)
        return self.git("rev-parse", "HEAD")

    def push(self) -> None:
        """Push the branch; fails the test if the remote rejects it."""
        self.git("push", "--quiet", "origin", f"refs/heads/{self.branch}:refs/heads/{self.branch}")

    def pull(self) -> str:
        """Fetch and move to the remote's branch; the commit now checked out."""
        self.git("fetch", "--quiet", "origin")
        self.git("reset", "--quiet", "--hard", f"origin/{self.branch}")
        return self.git("rev-parse", "HEAD")

    def commit_and_push(self, files: Mapping[str, FileContent], message: str) -> str:
        """Pull, write ``files``, commit and push; the pushed commit."""
        self.pull()
        self.write(files)
        sha = self.commit(message)
        self.push()
        return sha


# --------------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChildProcess:
    """A child process of this test process, read from /proc."""

    pid: int
    state: str
    args: str


def child_processes(parent: int | None = None) -> list[ChildProcess]:
    """Direct children of ``parent`` (default: this process), zombies included (state Z)."""
    parent = os.getpid() if parent is None else parent
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue  # the process ended while we looked
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        state, ppid = stat[stat.rindex(")") + 2 :].split()[:2]
        if int(ppid) == parent:
            args = cmdline.replace(b"\0", b" ").decode(errors="replace").strip()
            children.append(ChildProcess(int(entry.name), state, args or f"[{comm}]"))
    return children


def process_group(pgid: int) -> list[ChildProcess]:
    """The processes of process group ``pgid``, read from /proc; zombies (state Z) left out:
    they hold no files and no locks any more."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue  # the process ended while we looked
        state, _ppid, pgrp = stat[stat.rindex(")") + 2 :].split()[:3]
        if int(pgrp) == pgid and state != "Z":
            args = cmdline.replace(b"\0", b" ").decode(errors="replace").strip()
            members.append(ChildProcess(int(entry.name), state, args))
    return members
