"""Statuses and repositories for the board's tests: hand-made statuses rendered as the
controller writes them, committed by named people to a real git repository."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from gitutil import git, identity, write_files

from controller.model import (
    CompatibilitySummary,
    Condition,
    ConditionStatus,
    ConditionType,
    Event,
    Phase,
    ReviewSummary,
    Status,
)
from controller.platform.protocol import Stage
from controller.platform.sim.model import deep_link
from controller.status import render_status

NOW = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
HOSTILE = '<script>alert("x")</script>\'"&<img src=x onerror=alert(1)>'


def make_status(
    mini_program: str = "shop",
    target_app: str = "gcash",
    phase: Phase = Phase.GRAYSCALE,
    *,
    stage: Stage | None = Stage.GRAYSCALE,
    grayscale: int = 20,
    reason: str = "GrayscaleReached",
    message: str = "Grayscale 20% reached (gcash)",
    testers: int = 2,
    stalled: bool = False,
    qr: bool = False,
    since: timedelta = timedelta(minutes=5),
    version: str = "1.4.0",
) -> Status:
    conditions = [
        Condition(
            ConditionType.READY,
            ConditionStatus.TRUE if phase is Phase.RELEASED else ConditionStatus.FALSE,
            reason,
            message,
            NOW - since,
        )
    ]
    if stalled:
        conditions.append(
            Condition(ConditionType.STALLED, ConditionStatus.TRUE, reason, message, NOW - since)
        )
    return Status(
        mini_program=mini_program,
        target_app=target_app,
        version=version,
        observed_commit="0" * 40,
        spec_hash="abc",
        phase=phase,
        release_id="r-1",
        stage=stage,
        grayscale=grayscale,
        conditions=tuple(conditions),
        compatibility=CompatibilitySummary("rep-1", 97.5, 39, 1, "d", 0),
        review=ReviewSummary("approved", ""),
        testers=testers,
        qr_code=deep_link(mini_program, version, target_app) if qr else None,
        history=(
            Event(NOW - timedelta(hours=1), "PilotTesting", "Pilot testing with 2 testers"),
            Event(NOW - since, reason, message),
        ),
    )


def status_files(statuses: list[Status]) -> dict[str, bytes]:
    return {f"status/{s.mini_program}/{s.target_app}.yaml": render_status(s) for s in statuses}


def make_repo(root: Path, statuses: list[Status], author: str = "Maria") -> Path:
    """A git repository whose commits changed each manifest (by ``author``), then statuses."""
    root.mkdir(parents=True, exist_ok=True)
    git(root, "init", "--quiet", "--initial-branch=main")
    people = identity(author, "maria@example.com")
    for status in statuses:
        path = f"releases/{status.mini_program}/{status.target_app}.yaml"
        write_files(root, {path: f"# intent of {status.key}\n"})
        git(root, "add", "-A")
        git(root, "commit", "--quiet", "-m", f"release {status.key}: {HOSTILE}", env=people)
    write_files(root, status_files(statuses))
    git(root, "add", "-A")
    git(root, "commit", "--quiet", "-m", "status", env=identity("relctl", "bot@example.com"))
    return root
