"""Test helpers for access control: people, real SSH keys, and a history they commit to.

A :class:`History` is a real git repository in a tmp directory where each commit is made by a
:class:`Person` (author and committer), optionally SSH-signed with a key from
:func:`make_keys`. Call :func:`gitutil.isolate_git` first (an autouse fixture).
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from gitutil import FileContent, git, identity, write_files


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
LIM = Person("Lim Wei", "lim.wei@example.com")  # developer of rewards
EVE = Person("Eve Outsider", "eve@example.com")  # not a member

SHOP = "releases/shop/gcash.yaml"
REWARDS = "releases/rewards/gcash.yaml"


def make_keys(folder: Path, *names: str) -> dict[str, Path]:
    """A fresh ed25519 key pair per name (private key path; the .pub next to it)."""
    found = {}
    for name in names:
        path = folder / name
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path), "-C", name],
            check=True,
        )
        found[name] = path
    return found


def public(key: Path) -> str:
    return Path(f"{key}.pub").read_text().strip()


def access_yaml(
    *,
    budi: tuple[str, ...] | None = ("shop",),
    keys: Mapping[str, str] | None = None,
    maria_role: str = "master",
) -> str:
    """Maria (master), Budi (owner of ``budi``; left out when None), Aisyah (owner of
    rewards), Jose (developer of shop), Lim (developer of rewards). ``keys``: signing keys by
    first name (maria, budi, jose)."""
    keys = keys or {}

    def key(name: str) -> str:
        return f'    signingKey: "{keys[name]}"\n' if name in keys else ""

    programs = "" if maria_role == "master" else "    miniPrograms: [shop]\n"
    text = "apiVersion: relctl/v1\nkind: Access\nmembers:\n"
    text += f"  - email: {MARIA.email}\n    name: {MARIA.name}\n    role: {maria_role}\n"
    text += programs + key("maria")
    if budi is not None:
        text += f"  - email: {BUDI.email}\n    name: {BUDI.name}\n    role: owner\n"
        text += f"    miniPrograms: [{', '.join(budi)}]\n{key('budi')}"
    text += (
        f"  - email: {AISYAH.email}\n    name: {AISYAH.name}\n    role: owner\n"
        "    miniPrograms: [rewards]\n"
        f"  - email: {JOSE.email}\n    name: {JOSE.name}\n    role: developer\n"
        f"    miniPrograms: [shop]\n{key('jose')}"
        f"  - email: {LIM.email}\n    name: {LIM.name}\n    role: developer\n"
        "    miniPrograms: [rewards]\n"
    )
    return text


def relctl_yaml(*, signed: bool) -> str:
    return (
        "apiVersion: relctl/v1\nkind: Config\ntargetApps:\n  gcash:\n    name: GCash\n"
        f"policy:\n  requireSignedCommits: {'true' if signed else 'false'}\n"
    )


class History:
    """A work tree where people commit (optionally SSH-signed), on ``main`` unless told."""

    def __init__(self, path: Path) -> None:
        self.path = path
        git(path.parent, "init", "--quiet", "--initial-branch=main", str(path))

    def commit(
        self,
        files: Mapping[str, FileContent],
        by: Person,
        *,
        key: Path | None = None,
        message: str = "change",
    ) -> str:
        write_files(self.path, files)
        self.git("add", "--all", by=by)
        self.git(*self.signing(key), "commit", "--quiet", "--allow-empty", "-m", message, by=by)
        return self.head

    @staticmethod
    def signing(key: Path | None) -> list[str]:
        return (
            ["-c", "gpg.format=ssh", "-c", f"user.signingkey={key}", "-c", "commit.gpgsign=true"]
            if key
            else []
        )

    def merge(
        self,
        branch: str,
        by: Person,
        *,
        key: Path | None = None,
        keep: Mapping[str, FileContent] | None = None,
        options: tuple[str, ...] = (),
    ) -> str:
        """Merge ``branch`` into the current branch as ``by``; ``keep`` overwrites files in
        the merge result before it is committed (a conflict resolved by hand)."""
        self.git("merge", "--quiet", "--no-ff", "--no-commit", *options, branch, by=by)
        if keep:
            write_files(self.path, keep)
            self.git("add", "--all", by=by)
        self.git(*self.signing(key), "commit", "--quiet", "-m", f"merge {branch}", by=by)
        return self.head

    def checkout(self, *args: str) -> None:
        self.git("checkout", "--quiet", *args)

    def git(self, *args: str, by: Person = MARIA) -> str:
        return git(self.path, *args, env=identity(by.name, by.email))

    @property
    def head(self) -> str:
        return git(self.path, "rev-parse", "HEAD")

    def blob(self, path: str, revision: str = "HEAD") -> str | None:
        found = subprocess.run(
            ["git", "rev-parse", "--verify", "--quiet", f"{revision}:{path}"],
            cwd=self.path,
            capture_output=True,
            text=True,
            check=False,
        )
        return found.stdout.strip() or None
