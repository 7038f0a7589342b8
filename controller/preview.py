"""What merging a change will make the controller do: ``relctl plan --base REF``.

For every release whose manifest differs between the base revision (main) and the head of a
pull request, ``preview_change`` projects the controller's own steps with the pure
:func:`controller.plan.decide`: it starts from what the controller last observed (the status
file at the base revision), applies each step's expected effect to that picture, and stops
where the platform or a person has to move next (a build, a review, a gate) or where the
controller would refuse. No platform call and no git write happen, so the preview runs in CI
without platform credentials and renders the same text for the same change.

``render_markdown`` writes it as one pull-request comment; a hidden marker lets CI update the
same comment in place. Called by ``controller.cli``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import git

from controller.access import AccessLog
from controller.gitops import STATUS_DIR, GitError, GitTree, resolve_revision
from controller.manifests import (
    YAML_SIZE_LIMIT,
    LoadResult,
    Problem,
    Severity,
    load_repository,
)
from controller.model import Action, Observed, Outcome, Phase, Plan, Release, Status, Step
from controller.plan import decide, derive_phase
from controller.platform.protocol import (
    CompatibilityReport,
    CompatibilityStatus,
    QrCode,
    ReleaseSnapshot,
    Review,
    ReviewDecision,
    Stage,
)
from controller.repofiles import EntryKind, RepoFiles, Unreadable
from controller.status import parse_status

#: The hidden marker CI uses to find and update the plan comment in place.
MARKER = "<!-- relctl-plan -->"
#: A projection never takes more steps than this (a safety net; real chains are short).
MAX_STEPS = 12

#: Steps after which the platform has to move before the controller can go on, with the
#: phase the step leads to and what happens next.
_WAITS_FOR_PLATFORM = {
    Action.CREATE_RELEASE: (Phase.BUILDING, "then waits for the build"),
    Action.RUN_COMPATIBILITY_TEST: (Phase.TESTING, "then waits for the compatibility report"),
    Action.APPLY: (Phase.IN_REVIEW, "then waits for the review"),
    Action.WITHDRAW: (
        Phase.TESTING,
        "then pushes the new configuration, tests it and applies again",
    ),
}


@dataclass(frozen=True)
class ReleaseChange:
    """The preview of one release touched by the change."""

    key: str
    kind: str  # "added" | "changed" | "removed" | "invalid"
    version_before: str | None
    version_after: str | None
    phase_before: str
    phase_after: str
    steps: tuple[str, ...] = ()
    #: What happens after the projected steps (a wait, a gate, done), or why it is refused.
    then: str = ""
    refused: bool = False
    testers_added: tuple[str, ...] = ()
    testers_removed: tuple[str, ...] = ()
    problems: tuple[Problem, ...] = ()


@dataclass(frozen=True)
class Preview:
    base: str
    head: str
    changes: tuple[ReleaseChange, ...]


def preview_change(repo_root: Path, base: str, head: str, now: datetime) -> Preview:
    """Preview what merging ``head`` into ``base`` makes the controller do, per release."""
    base_sha = resolve_revision(repo_root, base)
    head_sha = resolve_revision(repo_root, head)
    try:
        repo = git.Repo(repo_root)
    except git.GitError as exc:
        raise GitError(f"{repo_root} is not a git repository: {exc}") from exc
    try:
        base_tree = GitTree(repo, base_sha)
        before = load_repository(base_tree)
        statuses = _statuses(base_tree)
        after = load_repository(GitTree(repo, head_sha))
    finally:
        repo.close()
    changes = _changes(before, after, statuses, now)
    return Preview(
        base_sha, head_sha, tuple(_access(repo_root, base_sha, head_sha, after, changes))
    )


def _statuses(tree: RepoFiles) -> dict[str, Status]:
    """The readable status files ``status/<mp>/<app>.yaml`` of ``tree``, by release key
    (regular files within the size limit only; a file that is not a status is skipped)."""
    found: dict[str, Status] = {}
    for directory in tree.children(STATUS_DIR):
        if directory.kind is not EntryKind.DIRECTORY:
            continue
        for entry in tree.children(directory.path):
            if entry.kind is not EntryKind.FILE or not entry.name.endswith(".yaml"):
                continue
            try:
                data = tree.read(entry.path, YAML_SIZE_LIMIT)
            except Unreadable:
                continue
            status = parse_status(data, file=entry.path)
            if status is not None:
                found[f"{directory.name}/{entry.name.removesuffix('.yaml')}"] = status
    return found


def _access(
    repo_root: Path, base: str, head: str, after: LoadResult, changes: list[ReleaseChange]
) -> list[ReleaseChange]:
    """Mark releases the controller will refuse as Forbidden: a commit of the change touched
    their files without the right to (access.yaml, as the controller enforces it)."""
    log = AccessLog(repo_root, until=head)
    if not log.enforced:
        return changes
    sources = {r.key: r.sources or (r.path,) for r in after.releases}
    judged: list[ReleaseChange] = []
    for change in changes:
        denial = None
        if change.kind in ("added", "changed") and change.key in sources:
            denial = log.authorize(list(sources[change.key]), since=base)
        if denial is None:
            judged.append(change)
            continue
        judged.append(
            replace(
                change,
                phase_after=str(Phase.FORBIDDEN),
                steps=(),
                then=f"refused: {denial.message}",
                refused=True,
            )
        )
    return judged


def _changes(
    before: LoadResult, after: LoadResult, statuses: Mapping[str, Status], now: datetime
) -> list[ReleaseChange]:
    old = {r.key: r for r in before.releases}
    new = {r.key: r for r in after.releases}
    changes: list[ReleaseChange] = []
    for key in sorted(set(old) | set(new) | set(after.invalid)):
        status = statuses.get(key)
        phase = _status_words(status)
        if key in after.invalid:
            problems = tuple(p for p in after.invalid[key] if p.severity is Severity.ERROR)
            changes.append(
                ReleaseChange(
                    key,
                    "invalid",
                    _version(old.get(key)),
                    None,
                    phase,
                    "Invalid",
                    then="the manifest is invalid: the controller will not touch this release",
                    refused=True,
                    problems=problems,
                )
            )
        elif key not in new:
            changes.append(
                ReleaseChange(
                    key,
                    "removed",
                    _version(old.get(key)),
                    None,
                    phase,
                    phase,
                    then="no longer managed: its status file is deleted; nothing on the "
                    "platform changes (to stop a release, set cancel: true instead)",
                )
            )
        elif key not in old or old[key].spec_hash != new[key].spec_hash:
            changes.append(_project(old.get(key), new[key], status, now))
    return changes


def _version(release: Release | None) -> str | None:
    return release.spec.version if release else None


def _project(
    old: Release | None, new: Release, status: Status | None, now: datetime
) -> ReleaseChange:
    """Run decide() forward on a picture of the platform built from the last status."""
    observed = _observed(old, new, status, now)
    before_testers = set(old.spec.pilot.testers) if old else set()
    after_testers = set(new.spec.pilot.testers)
    steps: list[str] = []
    then, refused = "", False
    phase_after = ""
    for _ in range(MAX_STEPS):
        plan = decide(new, status, observed, now)
        if plan.step is None:
            then, refused = _ending(plan, moved=bool(steps))
            break
        steps.append(plan.step.describe())
        if plan.step.action in _WAITS_FOR_PLATFORM:
            phase, then = _WAITS_FOR_PLATFORM[plan.step.action]
            phase_after = str(phase)
            break
        observed = _effect(observed, plan.step)
    if not phase_after:
        phase_after = _phase_words(derive_phase(new, observed.release), observed.release)
    return ReleaseChange(
        key=new.key,
        kind="added" if old is None else "changed",
        version_before=_version(old),
        version_after=new.spec.version,
        phase_before=_status_words(status),
        phase_after=phase_after,
        steps=tuple(steps),
        then=then,
        refused=refused,
        testers_added=tuple(sorted(after_testers - before_testers)),
        testers_removed=tuple(sorted(before_testers - after_testers)),
    )


def _ending(plan: Plan, *, moved: bool) -> tuple[str, bool]:
    """What a person reads after the steps: a refusal, a gate, or where it rests."""
    if plan.outcome is Outcome.STALLED:
        return f"refused: {plan.message}", True
    if moved and plan.outcome is Outcome.DONE:
        return "then rests there until main asks for more", False
    return plan.message, False


def _phase_words(phase: Phase, snapshot: ReleaseSnapshot | None) -> str:
    if snapshot is not None and snapshot.stage is Stage.GRAYSCALE:
        return f"Grayscale {snapshot.grayscale}%"
    return str(phase)


def _status_words(status: Status | None) -> str:
    if status is None:
        return "New"
    if status.phase is Phase.GRAYSCALE:
        return f"Grayscale {status.grayscale}%"
    return str(status.phase)


def _observed(old: Release | None, new: Release, status: Status | None, now: datetime) -> Observed:
    """The platform as the controller last saw it, rebuilt from the status at base."""
    if status is None or status.release_id is None or status.stage is None or old is None:
        return Observed(version_uploaded=True)
    snapshot = _snapshot(old, status, now)
    if status.version != new.spec.version:
        return Observed(version_uploaded=True, others=(snapshot,))
    return Observed(version_uploaded=True, release=snapshot)


def _snapshot(release: Release, status: Status, now: datetime) -> ReleaseSnapshot:
    assert status.release_id is not None and status.stage is not None
    spec = release.spec
    compatibility = None
    if status.compatibility is not None:
        summary = status.compatibility
        compatibility = CompatibilityReport(
            report_id=summary.report_id,
            status=CompatibilityStatus.FINISHED,
            pass_rate=summary.pass_rate,
            cases=(),
            configuration_digest=summary.configuration_digest,
            started_at=now,
            finished_at=now,
        )
    review = None
    if status.review is not None:
        review = Review(
            decision=ReviewDecision(status.review.decision),
            reason=status.review.reason,
            pilot_required=status.stage is Stage.PILOT_TESTING,
            decided_at=now,
        )
    since = status.history[-1].time if status.history else now
    return ReleaseSnapshot(
        release_id=status.release_id,
        mini_program=release.mini_program,
        version=status.version,
        target_app=release.target_app,
        environment=release.environment,
        stage=status.stage,
        basic_info=dict(spec.basic_info),
        configuration=dict(spec.configuration),
        compatibility=compatibility,
        review=review,
        testers=spec.pilot.testers if status.stage is Stage.PILOT_TESTING else (),
        grayscale=status.grayscale,
        stage_times={status.stage: since},
        qr_code=QrCode(status.qr_code, "") if status.qr_code else None,
        created_at=since,
        updated_at=since,
    )


def _effect(observed: Observed, step: Step) -> Observed:
    """The platform after ``step`` succeeds (only steps that do not wait for the platform)."""
    target = observed.release
    if step.action is Action.CANCEL and target is None:  # superseding an older version
        others = tuple(
            replace(o, stage=Stage.CANCELED) if o.release_id == step.release_id else o
            for o in observed.others
        )
        return replace(observed, others=others)
    assert target is not None
    changes: dict[str, object] = {}
    if step.action is Action.UPDATE_BASIC_INFO:
        changes["basic_info"] = dict(step.basic_info or {})
    elif step.action is Action.UPDATE_CONFIGURATION:
        changes["configuration"] = dict(step.configuration or {})
    elif step.action is Action.SET_TESTERS:
        changes["testers"] = tuple(step.testers or ())
    elif step.action is Action.COMPLETE_TESTING:
        changes["stage"] = Stage.RELEASE_PREPARATION
    elif step.action is Action.SET_GRAYSCALE:
        changes.update(stage=Stage.GRAYSCALE, grayscale=int(step.percent or 0))
    elif step.action is Action.FULL_RELEASE:
        changes.update(stage=Stage.FULL_RELEASE, grayscale=100)
    elif step.action is Action.CANCEL:
        changes["stage"] = Stage.CANCELED
    elif step.action is Action.CREATE_QR_CODE:
        changes["qr_code"] = QrCode("pending", "")
    if "stage" in changes:
        stage = changes["stage"]
        assert isinstance(stage, Stage)
        changes["stage_times"] = {**target.stage_times, stage: target.updated_at}
    return replace(observed, release=replace(target, **changes))  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# rendering
# --------------------------------------------------------------------------------------------


def render_markdown(preview: Preview) -> str:
    """One pull-request comment: per release, the transition, the steps and the gates."""
    lines = [MARKER, "### relctl plan: what merging this change will do", ""]
    if not preview.changes:
        lines.append("This change touches no release manifest: the controller will do nothing.")
    for change in preview.changes:
        lines.extend(_markdown_release(change))
    refused = sum(1 for c in preview.changes if c.refused)
    lines.append(
        f"<sub>{len(preview.changes)} release(s) affected, {refused} refused. Projected from "
        f"the status the controller last wrote at `{preview.base[:7]}`; reviews, builds and "
        f"tests happen on the platform's own time.</sub>"
    )
    return "\n".join(lines) + "\n"


def _markdown_release(change: ReleaseChange) -> list[str]:
    mini_program, target_app = change.key.split("/", 1)
    version = change.version_after or change.version_before or "?"
    if (
        change.version_before
        and change.version_after
        and (change.version_before != change.version_after)
    ):
        version = f"{change.version_before} → {change.version_after}"
    transition = (
        change.phase_before
        if change.phase_before == change.phase_after
        else f"{change.phase_before} → {change.phase_after}"
    )
    icon = "⛔" if change.refused else "✅"
    lines = [f"{icon} **{mini_program}** on **{target_app}** {version}: {transition}"]
    if change.steps:
        lines.append(f"- steps: {', then '.join(change.steps)}")
    if change.then:
        lines.append(f"- {change.then}")
    if change.testers_added or change.testers_removed:
        ids = [f"+{t}" for t in change.testers_added]
        ids += [f"-{t}" for t in change.testers_removed]
        lines.append(
            f"- testers: +{len(change.testers_added)} -{len(change.testers_removed)} "
            f"({', '.join(ids)})"
        )
    for problem in change.problems:
        lines.append(
            f"- `{problem.file}:{problem.line}:{problem.column}` {problem.path}: {problem.message}"
        )
    lines.append("")
    return lines


def preview_json(preview: Preview) -> dict[str, object]:
    return {
        "base": preview.base,
        "head": preview.head,
        "releases": [
            {
                "release": c.key,
                "kind": c.kind,
                "versionBefore": c.version_before,
                "versionAfter": c.version_after,
                "phaseBefore": c.phase_before,
                "phaseAfter": c.phase_after,
                "steps": list(c.steps),
                "then": c.then,
                "refused": c.refused,
                "testersAdded": list(c.testers_added),
                "testersRemoved": list(c.testers_removed),
                "problems": [p.to_dict() for p in c.problems],
            }
            for c in preview.changes
        ],
    }


def render_text(preview: Preview) -> str:
    lines = []
    for c in preview.changes:
        steps = ", then ".join(c.steps) or "no action"
        mark = "REFUSED " if c.refused else ""
        lines.append(
            f"{mark}{c.key} {c.version_after or c.version_before}: "
            f"{c.phase_before} -> {c.phase_after}: {steps}; {c.then}"
        )
    return "\n".join(lines) or "no release manifest changed"
