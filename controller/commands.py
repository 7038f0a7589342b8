"""Rollout commands as commits: ``relctl promote|pause|resume|retry|abort MP APP``.

Each command writes one field under ``spec.rollout`` of ``releases/<mp>/<app>.yaml`` in a
person's clone and commits it with the git CLI (signed when git is configured to sign:
``commit.gpgsign``), so every human decision is reviewed and audited in git like any change
(Flux's ``requestedAt``). The edit is textual (comments and layout are kept) and is checked by
parsing the result before anything is written. Tokens are the UTC time of the command.

Called by ``controller.cli``; the controller reads the fields (``controller.rollout``).
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path

import yaml

from controller.manifests import RELEASES_DIR

__all__ = ["Command", "CommandError", "CommandResult", "edit_rollout", "run_command"]


class Command(StrEnum):
    PROMOTE = "promote"
    PROMOTE_FULL = "promote --full"
    PAUSE = "pause"
    RESUME = "resume"
    RETRY = "retry"
    ABORT = "abort"


class CommandError(Exception):
    """The command cannot be written (no manifest, no rollout, git failed)."""


@dataclass(frozen=True)
class CommandResult:
    path: str
    commit: str
    subject: str


_ROLLOUT = re.compile(r"^(?P<indent>[ ]+)rollout:[ ]*(#.*)?$")


def _fields(command: Command, token: str) -> list[tuple[str, str]]:
    quoted = f'"{token}"'
    return {
        Command.PROMOTE: [("promotedAt", quoted)],
        Command.PROMOTE_FULL: [("promotedAt", quoted), ("full", "true")],
        Command.PAUSE: [("paused", "true")],
        Command.RESUME: [("paused", "false")],
        Command.RETRY: [("retry", quoted)],
        Command.ABORT: [("abort", "true")],
    }[command]


def edit_rollout(text: str, fields: list[tuple[str, str]]) -> str:
    """``text`` with each ``key: value`` set under ``spec.rollout`` (block style only)."""
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if _ROLLOUT.match(line.rstrip("\n"))), None)
    if start is None:
        raise CommandError("the manifest has no spec.rollout block (rollout: on a line of its own)")
    match = _ROLLOUT.match(lines[start].rstrip("\n"))
    assert match is not None
    outer = len(match.group("indent"))
    end = start + 1
    child: str | None = None
    while end < len(lines):
        stripped = lines[end].strip()
        indent = len(lines[end]) - len(lines[end].lstrip(" "))
        if stripped and not stripped.startswith("#"):
            if indent <= outer:
                break
            if child is None:
                child = " " * indent
        end += 1
    if child is None:
        raise CommandError("spec.rollout is empty")
    for key, value in fields:
        pattern = re.compile(rf"^{child}{key}:(?![^ \n])")
        found = next((i for i in range(start + 1, end) if pattern.match(lines[i])), None)
        line = f"{child}{key}: {value}\n"
        if found is not None:
            lines[found] = line
        else:
            lines.insert(start + 1, line)
            end += 1
    return "".join(lines)


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise CommandError(f"git {args[0]} failed: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout.strip()


def run_command(
    repo: Path,
    command: Command,
    mini_program: str,
    target_app: str,
    now: datetime,
    message: str | None = None,
) -> CommandResult:
    """Write ``command`` into the manifest of (mini program, target app) and commit it."""
    path = f"{RELEASES_DIR}/{mini_program}/{target_app}.yaml"
    file = repo / path
    if not file.is_file():
        raise CommandError(f"{path} not found in {repo}")
    text = file.read_text(encoding="utf-8")
    token = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    fields = _fields(command, token)
    edited = edit_rollout(text, fields)
    if edited == text:
        raise CommandError(f"nothing to change: {path} already says {command}")
    document = yaml.safe_load(edited)
    rollout = document.get("spec", {}).get("rollout", {})
    for key, value in fields:
        if rollout.get(key) != yaml.safe_load(value):
            raise CommandError(f"could not set spec.rollout.{key} in {path}: edit it by hand")
    version = document["spec"].get("version", "?")
    file.write_text(edited, encoding="utf-8")
    subject = f"rollout: {command} {mini_program}/{target_app} {version}"
    body = ["-m", message] if message else []
    _git(repo, "add", "--", path)
    _git(repo, "commit", "-q", "-m", subject, *body, "--", path)
    return CommandResult(path=path, commit=_git(repo, "rev-parse", "HEAD"), subject=subject)
