"""What merging a change will make the controller do: ``relctl plan --base REF``.

For every release whose manifest differs between the base revision (main) and the head of a
pull request, ``preview_change`` projects the controller's own steps with the pure
:func:`controller.plan.decide`: it starts from what the controller last observed (the status
file at the base revision), applies each step's effect to that picture with the simulator's
own rules (:func:`controller.platform.sim.engine.effect`, under the target app's rules from
``relctl.yaml``), and stops where the platform or a person has to move next (a build, a
review, a gate) or where the controller or the platform would refuse. No platform call and no
git write happen, so the preview runs in CI without platform credentials and renders the same
text for the same change.

``controller.output`` renders the result (text, json, or one pull-request comment that CI
updates in place). Called by ``controller.cli``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from controller.access import TrustError, judge_range
from controller.gitops import GitTree, repository, resolve_revision
from controller.manifests import LoadResult, Problem, Severity, load_repository
from controller.model import (
    Action,
    Observed,
    Outcome,
    Phase,
    Plan,
    Release,
    RepoConfig,
    Status,
    Step,
)
from controller.plan import decide, derive_phase
from controller.platform.errors import PlatformError
from controller.platform.protocol import (
    CompatibilityReport,
    CompatibilityStatus,
    QrCode,
    ReleaseSnapshot,
    Review,
    ReviewDecision,
    Stage,
)
from controller.platform.sim import AppSettings, actions, engine
from controller.repofiles import RepoFiles
from controller.status import read_statuses

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
    with repository(repo_root) as repo:
        base_tree = GitTree(repo, base_sha)
        before = load_repository(base_tree)
        statuses = _statuses(base_tree)
        after = load_repository(GitTree(repo, head_sha))
    changes = _changes(before, after, statuses, now)
    return Preview(
        base_sha, head_sha, tuple(_access(repo_root, base_sha, head_sha, after, changes))
    )


def _statuses(tree: RepoFiles) -> dict[str, Status]:
    """The readable status files of ``tree``, by release key."""
    return {status.key: status for status in read_statuses(tree)}


def _access(
    repo_root: Path, base: str, head: str, after: LoadResult, changes: list[ReleaseChange]
) -> list[ReleaseChange]:
    """Mark releases the controller will refuse as Forbidden: a commit of the change touched
    their files without the right to (:func:`controller.access.judge_range`)."""
    try:
        denials = judge_range(repo_root, base, head)
    except TrustError as exc:
        why: dict[str, str] = {"": f"no change can be authorized: {exc}"}
    else:
        why = {}
        for denial in denials:
            why.setdefault(denial.path, denial.message)
    sources = {r.key: r.sources or (r.path,) for r in after.releases}
    judged: list[ReleaseChange] = []
    for change in changes:
        refusal = None
        if change.kind in ("added", "changed") and change.key in sources:
            found = [why[p] for p in ("", *sources[change.key]) if p in why]
            refusal = found[0] if found else None
        if refusal is None:
            judged.append(change)
            continue
        judged.append(
            replace(
                change,
                phase_after=str(Phase.FORBIDDEN),
                steps=(),
                then=f"refused: {refusal}",
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
            app = _target_app(after.config, new[key].target_app)
            changes.append(_project(old.get(key), new[key], status, now, app))
    return changes


def _version(release: Release | None) -> str | None:
    return release.spec.version if release else None


def _project(
    old: Release | None, new: Release, status: Status | None, now: datetime, app: AppSettings
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
        if plan.step.action in _WAITS_FOR_PLATFORM:
            steps.append(plan.step.describe())
            phase, then = _WAITS_FOR_PLATFORM[plan.step.action]
            phase_after = str(phase)
            break
        try:
            observed = _effect(observed, plan.step, app)
        except PlatformError as refusal:
            then = f"refused: the platform would refuse {plan.step.describe()}: {refusal}"
            refused = True
            break
        steps.append(plan.step.describe())
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


def _target_app(config: RepoConfig | None, app_id: str) -> AppSettings:
    """The platform rules of a target app as ``relctl.yaml`` declares them."""
    target = config.target_apps.get(app_id) if config is not None else None
    if target is None:
        return AppSettings(app_id=app_id)
    return AppSettings(
        app_id=app_id,
        testers_max=target.testers_max,
        grayscale_values=target.grayscale_values or (),
        user_id_pattern=target.user_id_pattern,
    )


def _effect(observed: Observed, step: Step, app: AppSettings) -> Observed:
    """The platform after ``step``, by the simulator's rules; raises the platform's refusal.

    Only steps that do not wait for the platform come here. A stage entered is stamped with the
    picture's own time (when the controller last saw the release): the preview cannot know
    when the step will run.
    """
    action = _ACTIONS[step.action](step)
    target = observed.release
    if step.action is Action.CANCEL and target is None:  # superseding an older version
        others = tuple(
            engine.effect(o, action, app, o.updated_at) if o.release_id == step.release_id else o
            for o in observed.others
        )
        return replace(observed, others=others)
    assert target is not None
    after = engine.effect(target, action, app, target.updated_at)
    others = observed.others
    if after.stage is Stage.FULL_RELEASE and target.stage is not Stage.FULL_RELEASE:
        others = tuple(
            engine.archived(o, after, after.updated_at) if o.stage is Stage.FULL_RELEASE else o
            for o in others
        )
    return replace(observed, release=after, others=others)


#: The simulator's action for each step the preview projects (the others wait for the platform).
_ACTIONS: Mapping[Action, Callable[[Step], actions.Action]] = {
    Action.UPDATE_BASIC_INFO: lambda step: actions.UpdateBasicInfo(dict(step.basic_info or {})),
    Action.UPDATE_CONFIGURATION: lambda step: actions.UpdateConfiguration(
        dict(step.configuration or {})
    ),
    Action.SET_TESTERS: lambda step: actions.SetTesters(tuple(step.testers or ())),
    Action.COMPLETE_TESTING: lambda _step: actions.CompleteTesting(),
    Action.SET_GRAYSCALE: lambda step: actions.SetGrayscale(int(step.percent or 0)),
    Action.FULL_RELEASE: lambda _step: actions.FullRelease(),
    Action.CANCEL: lambda _step: actions.Cancel(),
    Action.CREATE_QR_CODE: lambda _step: actions.CreateQrCode(),
}
