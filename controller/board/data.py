"""The board's data: every release's status at one commit, its steps, and its intent commits.

``load_board`` reads the status files of one revision of a release repository through
:class:`~controller.repofiles.RepoFiles` (a ``GitTree`` of a commit, so a half-pushed change
is never seen; or a ``WorkTree`` for a plain directory) and the commits that changed each
manifest (``git log`` through ``gitops.run_git``, with the signature check ``%G?``).
``board_json`` and ``release_json`` turn the result into the documents of ``/api/releases``
(keys in ``docs/board.md``); the HTML pages render the same dicts, so the two never disagree.

Everything here is pure except ``load_board`` and ``repository_source``. Called by
``controller.board.app`` (the pages and the API) and ``controller.board.export``.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import Any, Final

from controller.gitops import GitError, GitTree, repository, run_git
from controller.model import ConditionStatus, ConditionType, Phase, Status, cut
from controller.platform.protocol import Stage
from controller.platform.sim.model import bucket
from controller.repofiles import RepoFiles, WorkTree
from controller.status import format_time, read_statuses

__all__ = [
    "STEPS",
    "Board",
    "BoardRelease",
    "IntentCommit",
    "bad_user_id",
    "board_json",
    "human_age",
    "intent_commits",
    "load_board",
    "lookup_user",
    "release_json",
    "repository_source",
]

#: The seed's steps, in order: (key, the words on the progress line).
STEPS: Final = (
    ("build", "Build"),
    ("compatibility", "Compatibility test"),
    ("review", "Review"),
    ("pilot", "Pilot testing"),
    ("grayscale", "Grayscale"),
    ("full", "Full release"),
)

_STAGE_STEP: Final[Mapping[Stage, int]] = {
    Stage.BUILDING: 0,
    Stage.BUILD_FAILED: 0,
    Stage.NEW_VERSION_CREATED: 1,
    Stage.UNDER_REVIEW: 2,
    Stage.REJECTED: 2,
    Stage.PILOT_TESTING: 3,
    Stage.RELEASE_PREPARATION: 4,
    Stage.GRAYSCALE: 4,
    Stage.FULL_RELEASE: 5,
    Stage.ARCHIVED: 5,
}

_PHASE_STEP: Final[Mapping[Phase, int]] = {
    Phase.PENDING: 0,
    Phase.BUILDING: 0,
    Phase.BUILD_FAILED: 0,
    Phase.TESTING: 1,
    Phase.IN_REVIEW: 2,
    Phase.REJECTED: 2,
    Phase.PILOT_TESTING: 3,
    Phase.READY_TO_RELEASE: 4,
    Phase.GRAYSCALE: 4,
    Phase.RELEASED: 5,
    Phase.ARCHIVED: 5,
}

#: The colour family of each phase (the word is always shown next to it).
_TONE: Final[Mapping[Phase, str]] = {
    Phase.PENDING: "idle",
    Phase.BUILDING: "moving",
    Phase.TESTING: "moving",
    Phase.IN_REVIEW: "waiting",
    Phase.PILOT_TESTING: "waiting",
    Phase.READY_TO_RELEASE: "waiting",
    Phase.GRAYSCALE: "moving",
    Phase.RELEASED: "done",
    Phase.ARCHIVED: "idle",
    Phase.PAUSED: "idle",
    Phase.CANCELED: "stopped",
    Phase.BUILD_FAILED: "failed",
    Phase.REJECTED: "failed",
    Phase.INVALID: "failed",
    Phase.FORBIDDEN: "failed",
}

#: Words for each phase, as a person says them.
_LABEL: Final[Mapping[Phase, str]] = {
    Phase.PENDING: "Pending",
    Phase.BUILDING: "Building",
    Phase.BUILD_FAILED: "Build failed",
    Phase.TESTING: "Testing",
    Phase.IN_REVIEW: "In review",
    Phase.REJECTED: "Rejected",
    Phase.PILOT_TESTING: "Pilot testing",
    Phase.READY_TO_RELEASE: "Ready to release",
    Phase.GRAYSCALE: "Grayscale",
    Phase.RELEASED: "Released",
    Phase.CANCELED: "Canceled",
    Phase.ARCHIVED: "Archived",
    Phase.PAUSED: "Paused",
    Phase.INVALID: "Invalid",
    Phase.FORBIDDEN: "Forbidden",
}

#: Reasons that show a release went through pilot testing.
_PILOT_REASONS: Final = frozenset({"PilotTesting", "SyncingTesters", "CompletingTesting"})

log = logging.getLogger("relctl")

#: Commits listed per release (newest first).
COMMIT_LIMIT: Final = 20
#: How far back the intent commits are looked for: the last commits that touched releases/.
SCAN_LIMIT: Final = 2000
#: What the details of the listed commits may take before they are left out altogether.
DETAILS_OUTPUT_LIMIT: Final = 16 * 1024 * 1024
_SHA: Final = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}", re.ASCII)
#: A user id the lookup accepts: ASCII letters, digits, ``._-``, at most 64 characters.
_USER_ID: Final = re.compile(r"[0-9A-Za-z._-]{1,64}", re.ASCII)

_SIGNATURES: Final[Mapping[str, str]] = {
    "G": "verified",
    "N": "unsigned",
}


@dataclass(frozen=True)
class IntentCommit:
    """A commit that changed a release's manifest: who, when, and whether it is signed."""

    sha: str
    author: str
    email: str
    time: datetime
    subject: str
    #: git's ``%G?``: G good, U good but untrusted key, B bad, X/Y expired, R revoked,
    #: E cannot check, N unsigned.
    signature_code: str

    @property
    def signature(self) -> str:
        """``verified`` (a good signature), ``unsigned``, or ``unverified`` (anything else)."""
        return _SIGNATURES.get(self.signature_code, "unverified")


@dataclass(frozen=True)
class BoardRelease:
    status: Status
    commits: tuple[IntentCommit, ...] = ()


@dataclass(frozen=True)
class Board:
    """Every release of one revision (``None`` for a directory that is not a commit)."""

    revision: str | None
    releases: tuple[BoardRelease, ...]

    def find(self, mini_program: str, target_app: str) -> BoardRelease | None:
        key = f"{mini_program}/{target_app}"
        return next((r for r in self.releases if r.status.key == key), None)


# --------------------------------------------------------------------------------------------
# Reading a repository
# --------------------------------------------------------------------------------------------


def _commit_details(root: Path, shas: list[str]) -> dict[str, IntentCommit]:
    """Author, time, signature check and subject of each commit (one ``git log --stdin``)."""
    if not shas:
        return {}
    try:
        out = run_git(
            root,
            "log",
            "--no-walk=unsorted",
            "--stdin",
            "-z",
            "--format=%H%x1f%an%x1f%ae%x1f%ct%x1f%G?%x1f%s",
            input="".join(f"{sha}\n" for sha in shas).encode(),
            timeout=60,
            max_output=DETAILS_OUTPUT_LIMIT,
        ).text
    except GitError as error:  # hostile commits (huge subjects): list none, serve the rest
        log.warning("board: intent commits left out: %s", error)
        return {}
    found: dict[str, IntentCommit] = {}
    for record in out.split("\0"):
        parts = record.strip("\n").split("\x1f", 5)
        if len(parts) != 6 or _SHA.fullmatch(parts[0]) is None or not parts[3].isdigit():
            continue  # a name with a separator in it: that commit is left out, not misread
        sha, name, email, stamp, code, subject = parts
        when = datetime.fromtimestamp(int(stamp), UTC)
        # Names and subjects are whatever a committer typed: cut like every quoted value.
        found[sha] = IntentCommit(sha, cut(name), cut(email), when, cut(subject), code or "N")
    return found


def intent_commits(
    root: Path, revision: str, paths: set[str]
) -> dict[str, tuple[IntentCommit, ...]]:
    """For each manifest path, the newest commits of ``revision`` that changed it.

    Two git commands whatever the number of releases: one ``git log --name-only`` over the
    last :data:`SCAN_LIMIT` commits that touched ``releases/`` (which commit changed which
    manifest), then one ``git log --stdin`` for the details of the commits kept (at most
    :data:`COMMIT_LIMIT` per manifest), signature checks included.
    """
    try:
        out = run_git(
            root,
            "log",
            "-z",
            f"--max-count={SCAN_LIMIT}",
            "--format=%x1e%H",
            "--name-only",
            "--no-renames",
            revision,
            "--",
            "releases/",
            timeout=60,
        ).text
    except GitError:
        return {}
    by_path: dict[str, list[str]] = {}
    for record in out.split("\x1e"):
        head, _sep, names = record.partition("\0")
        sha = head.strip()
        if _SHA.fullmatch(sha) is None:
            continue
        for name in names.split("\0"):
            path = name.strip("\n")
            if path in paths:
                kept = by_path.setdefault(path, [])
                if len(kept) < COMMIT_LIMIT:
                    kept.append(sha)
    wanted = list(dict.fromkeys(sha for shas in by_path.values() for sha in shas))
    try:
        details = _commit_details(root, wanted)
    except GitError:
        return {}
    return {
        path: tuple(details[sha] for sha in shas if sha in details)
        for path, shas in by_path.items()
    }


def load_board(files: RepoFiles, git_root: Path | None = None) -> Board:
    """The board of ``files``; with ``git_root``, also the intent commits of each release
    (read at ``files.revision``)."""
    statuses = read_statuses(files)
    revision = files.revision
    paths = {s.key: f"releases/{s.mini_program}/{s.target_app}.yaml" for s in statuses}
    commits: dict[str, tuple[IntentCommit, ...]] = {}
    if git_root is not None and revision is not None and statuses:
        commits = intent_commits(git_root, revision, set(paths.values()))
    releases = tuple(BoardRelease(s, commits.get(paths[s.key], ())) for s in statuses)
    return Board(revision, releases)


def repository_source(repo: Path, revision: str | None = "HEAD") -> Callable[[], Board]:
    """A callable the board app calls on every request: the board at ``revision`` now.

    In a git repository (bare or not) ``revision`` is resolved on each call, and the board is
    read from that commit's objects, so a page never mixes two commits; the board of a
    commit is kept until the revision moves. ``revision=None`` (or a directory that is not a
    git repository) reads the directory as it is (``WorkTree``), without commits.
    """
    root = repo.resolve()
    lock = threading.Lock()
    cache: dict[str, Board] = {}

    def work_tree() -> Board:
        return load_board(WorkTree(root))

    if revision is None:
        return work_tree
    try:
        with repository(root):
            pass
    except GitError:
        return work_tree

    def at_revision() -> Board:
        sha = run_git(
            root, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{revision}^{{commit}}"
        ).text.strip()
        with lock:
            cached = cache.get(sha)
            if cached is not None:
                return cached
            with repository(root) as handle:
                board = load_board(GitTree(handle, sha), root)
            cache.clear()
            cache[sha] = board
            return board

    return at_revision


# --------------------------------------------------------------------------------------------
# What a person reads
# --------------------------------------------------------------------------------------------


def human_age(seconds: float) -> str:
    """``45s``, ``3m``, ``2h 5m``, ``4d``: how long a release has been where it is."""
    whole = max(0, int(seconds))
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m"
    if whole < 86400:
        hours, minutes = divmod(whole // 60, 60)
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    return f"{whole // 86400}d"


def _current_step(status: Status) -> int | None:
    if status.stage is not None and status.stage in _STAGE_STEP:
        return _STAGE_STEP[status.stage]
    return _PHASE_STEP.get(status.phase)


def steps(status: Status) -> list[dict[str, str]]:
    """The seed's steps with each one's state: done, current, failed, skipped, todo."""
    current = _current_step(status)
    piloted = status.testers > 0 or any(e.reason in _PILOT_REASONS for e in status.history)
    finished = status.phase in (Phase.RELEASED, Phase.ARCHIVED)
    failed = status.phase in (Phase.BUILD_FAILED, Phase.REJECTED)
    result = []
    for index, (key, name) in enumerate(STEPS):
        if current is None:
            state = "todo"
        elif index < current:
            state = "skipped" if key == "pilot" and not piloted else "done"
        elif index == current:
            state = "done" if finished else ("failed" if failed else "current")
        else:
            state = "todo"
        result.append({"key": key, "name": name, "state": state})
    return result


def _since(status: Status) -> datetime | None:
    ready = status.condition(ConditionType.READY)
    if ready is not None:
        return ready.last_transition_time
    return status.history[-1].time if status.history else None


def _summary(status: Status) -> tuple[str, str]:
    """(reason, message) a person reads first: Stalled if true, else Ready, else the error."""
    stalled = status.condition(ConditionType.STALLED)
    if stalled is not None and stalled.status is ConditionStatus.TRUE:
        return stalled.reason, stalled.message
    ready = status.condition(ConditionType.READY) or next(iter(status.conditions), None)
    if ready is not None:
        return ready.reason, ready.message
    if status.last_error is not None:
        return status.last_error.code, status.last_error.message
    return "", ""


def waiting_for(status: Status) -> str:
    """Who or what the release is waiting for, in a few words."""
    stalled = status.condition(ConditionType.STALLED)
    reason, _message = _summary(status)
    phase = status.phase
    if phase in (Phase.RELEASED, Phase.ARCHIVED, Phase.CANCELED):
        return "nobody: finished"
    if phase is Phase.INVALID:
        return "a person: fix the manifest"
    if phase is Phase.FORBIDDEN:
        return "a person with the right role: confirm the change"
    if phase is Phase.PAUSED:
        return "a person: set paused: false"
    if stalled is not None and stalled.status is ConditionStatus.TRUE:
        return "a person: change the manifest"
    if status.last_error is not None and status.next_retry is not None:
        return "the platform: retrying"
    if phase is Phase.PENDING:
        return "the version upload" if reason == "WaitingForUpload" else "the controller"
    if phase in (Phase.BUILDING, Phase.TESTING):
        return "the platform"
    if phase is Phase.IN_REVIEW:
        return "the platform's reviewers"
    if phase is Phase.PILOT_TESTING:
        return "testers, then a person: pilot.complete: true"
    if phase is Phase.READY_TO_RELEASE:
        return "a person: grayscale above 0"
    if phase is Phase.GRAYSCALE:
        return "a person: raise grayscale" if reason == "GrayscaleReached" else "the platform"
    return "the controller"


def _plain(value: Any) -> Any:
    """A dataclass (e.g. a future ``rollout`` block) as JSON-able data."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, datetime):
        return format_time(value)
    if isinstance(value, Enum):
        return value.value
    return value


def release_json(item: BoardRelease, now: datetime) -> dict[str, Any]:
    """One release as ``/api/releases`` shows it (and as the pages render it)."""
    status = item.status
    phase = Phase(status.phase)
    reason, message = _summary(status)
    since = _since(status)
    data: dict[str, Any] = {
        "miniProgram": status.mini_program,
        "targetApp": status.target_app,
        "version": status.version,
        "phase": phase.value,
        "phaseLabel": _LABEL[phase],
        "tone": _TONE[phase],
        "grayscale": status.grayscale,
        "stage": None if status.stage is None else Stage(status.stage).value,
        "since": "-" if since is None else human_age((now - since).total_seconds()),
        "sinceTime": None if since is None else format_time(since),
        "waitingFor": waiting_for(status),
        "reason": reason,
        "message": message,
        "steps": steps(status),
        "testers": status.testers,
        "compatibility": None,
        "review": None,
        "qrCode": status.qr_code,
        "releaseId": status.release_id,
        "observedCommit": status.observed_commit,
        "lastError": None,
        "errors": [
            {
                "file": e.file,
                "line": e.line,
                "column": e.column,
                "path": e.path,
                "message": e.message,
            }
            for e in status.errors
        ],
        "history": [
            {"time": format_time(e.time), "reason": e.reason, "message": e.message}
            for e in reversed(status.history)
        ],
        "commits": [
            {
                "sha": c.sha,
                "author": c.author,
                "email": c.email,
                "time": format_time(c.time),
                "subject": c.subject,
                "signature": c.signature,
                "signatureCode": c.signature_code,
            }
            for c in item.commits
        ],
        "rollout": _plain(status.rollout),
    }
    if status.compatibility is not None:
        report = status.compatibility
        data["compatibility"] = {
            "reportId": report.report_id,
            "passRate": report.pass_rate,
            "passed": report.passed,
            "failed": report.failed,
        }
    if status.review is not None:
        data["review"] = {"decision": status.review.decision, "reason": status.review.reason}
    if status.last_error is not None:
        error = status.last_error
        data["lastError"] = {
            "code": error.code,
            "message": error.message,
            "action": error.action,
            "attempts": error.attempts,
            "time": format_time(error.time),
        }
    return data


def board_json(board: Board, now: datetime) -> dict[str, Any]:
    """``/api/releases``: the revision read and every release on it."""
    return {
        "apiVersion": "relctl/v1",
        "kind": "ReleaseBoard",
        "revision": board.revision,
        "generatedAt": format_time(now),
        "releases": [release_json(item, now) for item in board.releases],
    }


# --------------------------------------------------------------------------------------------
# Who gets which version
# --------------------------------------------------------------------------------------------


def bad_user_id(user_id: str) -> str | None:
    """Why ``user_id`` cannot be looked up, or None when it can."""
    if _USER_ID.fullmatch(user_id) is None:
        return "a user id is 1 to 64 ASCII letters, digits, '.', '_' or '-'"
    return None


def lookup_user(status: Status, user_id: str) -> dict[str, Any]:
    """Which version ``user_id`` gets on this release, with the platform's bucketing.

    A user's bucket (1..100) is fixed per mini program; the user has the new version when
    the bucket is at most the grayscale percentage. Pilot testers are only known by count.
    """
    user_bucket = bucket(status.mini_program, user_id)
    phase = status.phase
    gets_new = False
    if phase is Phase.RELEASED:
        answer = f"everyone gets {status.version}"
        gets_new = True
    elif phase is Phase.ARCHIVED:
        answer = f"gets a newer version: {status.version} was replaced by a newer full release"
    elif phase is Phase.CANCELED:
        answer = f"keeps the previous version: {status.version} was canceled"
    elif phase is Phase.GRAYSCALE or status.grayscale > 0:
        gets_new = user_bucket <= status.grayscale
        answer = (
            f"gets {status.version}: bucket {user_bucket} is within {status.grayscale}%"
            if gets_new
            else f"keeps the previous version: bucket {user_bucket} is above {status.grayscale}%"
        )
    elif phase is Phase.PILOT_TESTING:
        answer = (
            f"keeps the previous version unless a pilot tester ({status.testers} testers); "
            f"bucket {user_bucket}"
        )
    else:
        answer = f"keeps the previous version: {status.version} reaches no users yet"
    return {
        "userId": user_id,
        "bucket": user_bucket,
        "grayscale": status.grayscale,
        "getsVersion": status.version if gets_new else None,
        "answer": answer,
    }
