"""One reconcile pass: main branch -> manifests -> platform -> decide -> act -> status -> git.

The pass is level-triggered and idempotent: it reads everything afresh (the manifests at the
fetched commit, the platform, the status files the controller wrote before), decides one next
action per release with the pure :func:`controller.plan.decide`, executes it with
:func:`controller.act.act`, and writes back only the status files whose bytes changed, in one
commit. A pass over unchanged inputs changes nothing and commits nothing.

``plan_repository`` is the same pass without ``act`` and without git writes (``relctl plan``).

Called by ``controller.daemon`` (scheduled passes) and ``controller.cli``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path

from controller.access import AccessLog, Denial
from controller.act import ActResult, act, record_error
from controller.gitops import PushResult, Workspace
from controller.manifests import CONFIG_FILE, LoadResult, Problem, Severity, load_repository
from controller.model import (
    Action,
    CompatibilitySummary,
    Condition,
    ConditionStatus,
    ConditionType,
    Event,
    Observed,
    Outcome,
    Phase,
    Plan,
    Reason,
    Release,
    ReviewSummary,
    Status,
    Validation,
)
from controller.plan import decide, derive_phase
from controller.platform.errors import PlatformError
from controller.platform.protocol import CompatibilityStatus, Platform, ReleaseSnapshot, Stage
from controller.status import (
    append_event,
    parse_status,
    remove_condition,
    render_status,
    set_condition,
)

log = logging.getLogger("relctl")

#: Reported to the caller after each release (``relctl run`` prints progress with it).
ProgressCallback = Callable[["ReleaseResult"], None]


@dataclass(frozen=True)
class ReleaseResult:
    """What one pass did for one release."""

    key: str
    status: Status
    plan: Plan | None = None
    result: ActResult | None = None
    #: ``"Testing -> InReview"`` when the phase changed in this pass.
    transition: str | None = None
    #: The rendered status file, and whether it differs from the one in the repository.
    rendered: bytes = b""
    changed: bool = False


@dataclass(frozen=True)
class PassResult:
    """What one pass did: per release, plus the status commit it pushed (if any)."""

    commit: str
    releases: tuple[ReleaseResult, ...]
    problems: tuple[Problem, ...] = ()
    pushed: PushResult | None = None
    removed: tuple[str, ...] = field(default_factory=tuple)

    @property
    def changed(self) -> tuple[ReleaseResult, ...]:
        return tuple(r for r in self.releases if r.changed)


# --------------------------------------------------------------------------------------------
# observation
# --------------------------------------------------------------------------------------------


def observe(platform: Platform, release: Release) -> Observed:
    """Ask the platform about one (mini program, target app). Raises PlatformError."""
    found = platform.find_releases(release.mini_program, release.target_app)
    mine = next((r for r in found if r.version == release.spec.version), None)
    others = tuple(r for r in found if r.version != release.spec.version)
    uploaded = mine is not None or (
        platform.get_version(release.mini_program, release.spec.version) is not None
    )
    return Observed(version_uploaded=uploaded, release=mine, others=others)


# --------------------------------------------------------------------------------------------
# one release
# --------------------------------------------------------------------------------------------


def reconcile_release(
    platform: Platform,
    release: Release,
    previous: Status | None,
    commit: str,
    now: datetime,
    *,
    dry_run: bool = False,
) -> ReleaseResult:
    """Observe, decide, (act,) and build the new status of one release. Never raises."""
    try:
        observed = observe(platform, release)
    except PlatformError as error:
        status = _observation_failed(release, previous, commit, error, now)
        return _result(release.key, previous, status)

    plan = decide(release, previous, observed, now)
    result: ActResult | None = None
    after = observed
    if plan.step is not None and not dry_run:
        result = act(platform, release, plan.step)
        # Also after a failure: an Unknown result may have taken effect.
        after = _reobserve(platform, release, observed, result)
    status = next_status(release, previous, plan, result, after, commit, now)
    if result is not None and result.ok:
        # Say what is true after the step and what comes next, not what was just done.
        following = decide(release, status, after, now)
        status = replace(
            status,
            conditions=_conditions(
                status.conditions,
                following.outcome,
                str(following.reason),
                following.message,
                now,
            ),
        )
    return _result(release.key, previous, status, plan, result)


def _reobserve(
    platform: Platform, release: Release, before: Observed, result: ActResult
) -> Observed:
    """The freshest view after a step: the step's own answer, or one more read."""
    if result.snapshot is not None and result.snapshot.version == release.spec.version:
        return replace(before, release=result.snapshot, version_uploaded=True)
    try:
        return observe(platform, release)
    except PlatformError:
        return before


def _result(
    key: str,
    previous: Status | None,
    status: Status,
    plan: Plan | None = None,
    result: ActResult | None = None,
) -> ReleaseResult:
    transition = None
    if previous is None or previous.phase != status.phase:
        transition = f"{previous.phase if previous else 'New'} -> {status.phase}"
    return ReleaseResult(key=key, status=status, plan=plan, result=result, transition=transition)


def next_status(
    release: Release,
    previous: Status | None,
    plan: Plan,
    result: ActResult | None,
    observed: Observed,
    commit: str,
    now: datetime,
) -> Status:
    """The status to write after deciding (and acting) for one release."""
    snapshot = observed.release
    base = _carry_over(release, previous, commit)
    history = base.history
    conditions = base.conditions

    stage = snapshot.stage if snapshot else None
    # What the controller did.
    last_error, next_retry = base.last_error, base.next_retry
    applied_spec_hash = base.applied_spec_hash
    outcome, reason, message = plan.outcome, str(plan.reason), plan.message
    if result is not None and result.ok:
        last_error, next_retry = None, None
        history = append_event(history, Event(now, str(plan.reason), result.step.describe()))
        if result.step.action is Action.APPLY:
            applied_spec_hash = release.spec_hash
    elif result is not None and result.error is not None:
        last_error, next_retry = record_error(
            result, previous.last_error if previous else None, now
        )
        message = f"{result.step.describe()} failed ({result.error.code}): {result.error}"
        if result.permanent:
            outcome, reason = Outcome.STALLED, str(Reason.PLATFORM_REFUSED)
        else:
            outcome, reason = Outcome.WAITING, str(Reason.RETRY_BACKOFF)
        history = append_event(history, Event(now, result.error.code, message))
    elif plan.reason not in (Reason.RETRY_BACKOFF, Reason.PLATFORM_REFUSED):
        # Nothing attempted and no hold on an earlier failure: any old error is history.
        last_error, next_retry = None, None
    # What the platform shows now (after the step that may have caused it).
    if snapshot is not None and (previous is None or previous.stage != stage):
        history = append_event(
            history, Event(now, _stage_reason(snapshot), _stage_message(release, snapshot))
        )
    if plan.outcome is Outcome.STALLED:
        history = append_event(history, Event(now, str(plan.reason), plan.message))
    if applied_spec_hash is None and stage is not None and snapshot and snapshot.review:
        applied_spec_hash = release.spec_hash  # applied before a crash lost the record

    conditions = _conditions(conditions, outcome, reason, message, now)
    return Status(
        mini_program=release.mini_program,
        target_app=release.target_app,
        version=release.spec.version,
        observed_commit=base.observed_commit,
        spec_hash=release.spec_hash,
        phase=derive_phase(release, snapshot),
        release_id=snapshot.release_id if snapshot else None,
        stage=stage,
        grayscale=snapshot.grayscale if snapshot else 0,
        conditions=conditions,
        compatibility=_compatibility(release, previous, snapshot),
        review=ReviewSummary(snapshot.review.decision.value, snapshot.review.reason)
        if snapshot and snapshot.review
        else None,
        testers=len(snapshot.testers) if snapshot else 0,
        qr_code=snapshot.qr_code.url if snapshot and snapshot.qr_code else None,
        applied_spec_hash=applied_spec_hash,
        last_error=last_error,
        next_retry=next_retry,
        errors=(),
        history=history,
    )


def _carry_over(release: Release, previous: Status | None, commit: str) -> Status:
    """The previous status of the same version, or a fresh one (a new version starts over)."""
    if previous is not None and previous.version == release.spec.version:
        observed_commit = (
            previous.observed_commit if previous.spec_hash == release.spec_hash else commit
        )
        return replace(previous, observed_commit=observed_commit)
    history = previous.history if previous is not None else ()
    return Status(
        mini_program=release.mini_program,
        target_app=release.target_app,
        version=release.spec.version,
        observed_commit=commit,
        spec_hash=release.spec_hash,
        phase=Phase.PENDING,
        history=history,
    )


def _conditions(
    conditions: tuple[Condition, ...], outcome: Outcome, reason: str, message: str, now: datetime
) -> tuple[Condition, ...]:
    if outcome is Outcome.DONE:
        conditions = set_condition(
            conditions, ConditionType.READY, ConditionStatus.TRUE, reason, message, now
        )
        conditions = remove_condition(conditions, ConditionType.RECONCILING)
        return remove_condition(conditions, ConditionType.STALLED)
    conditions = set_condition(
        conditions, ConditionType.READY, ConditionStatus.FALSE, reason, message, now
    )
    if outcome is Outcome.STALLED:
        conditions = remove_condition(conditions, ConditionType.RECONCILING)
        return set_condition(
            conditions, ConditionType.STALLED, ConditionStatus.TRUE, reason, message, now
        )
    conditions = remove_condition(conditions, ConditionType.STALLED)
    return set_condition(
        conditions, ConditionType.RECONCILING, ConditionStatus.TRUE, reason, message, now
    )


def _compatibility(
    release: Release, previous: Status | None, snapshot: ReleaseSnapshot | None
) -> CompatibilitySummary | None:
    report = snapshot.compatibility if snapshot else None
    before = previous.compatibility if previous else None
    if report is None:
        return before if previous and previous.version == release.spec.version else None
    retest = (
        before.retest
        if before is not None and before.report_id == report.report_id
        else release.spec.compatibility.retest
    )
    passed = sum(1 for case in report.cases if case.passed)
    finished = report.status is CompatibilityStatus.FINISHED
    return CompatibilitySummary(
        report_id=report.report_id,
        pass_rate=report.pass_rate if finished else 0.0,
        passed=passed if finished else 0,
        failed=len(report.cases) - passed if finished else 0,
        configuration_digest=report.configuration_digest,
        retest=retest,
    )


def _stage_reason(snapshot: ReleaseSnapshot) -> str:
    return "".join(part.capitalize() for part in snapshot.stage.value.split("_"))


def _stage_message(release: Release, snapshot: ReleaseSnapshot) -> str:
    stage = snapshot.stage.value.lower().replace("_", " ")
    words = f"{release.spec.version} on {release.target_app}: {stage}"
    if snapshot.stage is Stage.REJECTED and snapshot.review is not None:
        return f"{words}: {snapshot.review.reason}"
    if snapshot.stage is Stage.GRAYSCALE:
        return f"{words} {snapshot.grayscale}%"
    return words


def _observation_failed(
    release: Release,
    previous: Status | None,
    commit: str,
    error: PlatformError,
    now: datetime,
) -> Status:
    base = _carry_over(release, previous, commit)
    message = f"cannot observe the platform ({error.code}): {error}"
    return replace(
        base,
        spec_hash=release.spec_hash,
        conditions=_conditions(
            base.conditions, Outcome.WAITING, str(Reason.RETRY_BACKOFF), message, now
        ),
    )


def invalid_status(
    key: str, problems: Iterable[Problem], previous: Status | None, commit: str, now: datetime
) -> Status:
    """``Invalid``: every located error; nothing else happens to the release."""
    mini_program, target_app = key.split("/", 1)
    errors = tuple(
        Validation(p.file, p.line, p.column, p.path, p.message, p.code, p.hint)
        for p in problems
        if p.severity == "error"
    )
    message = f"{len(errors)} error(s) in the manifest; first: " + (
        f"{errors[0].file}:{errors[0].line}:{errors[0].column}: {errors[0].message}"
        if errors
        else "unknown"
    )
    base = previous or Status(
        mini_program=mini_program,
        target_app=target_app,
        version="",
        observed_commit=commit,
        spec_hash="",
        phase=Phase.INVALID,
    )
    conditions = _conditions(base.conditions, Outcome.STALLED, str(Reason.INVALID), message, now)
    history = append_event(base.history, Event(now, str(Reason.INVALID), message))
    return replace(
        base,
        phase=Phase.INVALID,
        observed_commit=commit if base.errors != errors else base.observed_commit,
        conditions=conditions,
        errors=errors,
        history=history,
    )


def forbidden_status(
    release: Release, denial: Denial, previous: Status | None, commit: str, now: datetime
) -> Status:
    """``Forbidden``: the manifest's current revision was changed by someone without the
    right to; the platform is not touched.

    Everything the controller last observed is kept as it was, including the spec hash and
    observed commit of the last revision it acted on, so the status keeps telling what the
    platform has while saying why the newer intent is refused.
    """
    base = previous or Status(
        mini_program=release.mini_program,
        target_app=release.target_app,
        version=release.spec.version,
        observed_commit=commit,
        spec_hash="",
        phase=Phase.FORBIDDEN,
    )
    message = denial.message
    conditions = _conditions(base.conditions, Outcome.STALLED, str(Reason.FORBIDDEN), message, now)
    history = append_event(base.history, Event(now, str(Reason.FORBIDDEN), message))
    return replace(base, phase=Phase.FORBIDDEN, conditions=conditions, history=history)


def authorization_since(previous: Status | None) -> str | None:
    """The revision whose manifest the controller last acted on: commits after it must be
    authorized. None (judge the whole history of the manifest) for a new release and for one
    whose last status was not an action on an authorized revision (Invalid, Forbidden)."""
    if previous is None or not previous.spec_hash:
        return None
    if previous.phase in (Phase.INVALID, Phase.FORBIDDEN):
        return None
    return previous.observed_commit


# --------------------------------------------------------------------------------------------
# the whole repository
# --------------------------------------------------------------------------------------------


@dataclass
class PassCache:
    """What a long-running controller remembers between passes.

    An optimisation only: a fresh process without it reaches the same statuses, just slower.
    It holds the load result of the last commit (manifests are not parsed again while main
    does not move), the parsed status files by their bytes, and when each settled release
    was last observed on the platform.
    """

    #: Settled releases (Ready, spec unchanged, no retry pending) are observed on the
    #: platform at least this often; in between their status is kept as it is.
    resync: timedelta = timedelta(minutes=5)
    commit: str | None = None
    loaded: LoadResult | None = None
    statuses: dict[str, tuple[bytes, Status | None]] = field(default_factory=dict)
    observed_at: dict[str, datetime] = field(default_factory=dict)
    #: Commit history and trusted access.yaml versions of ``commit`` (git is read once per
    #: commit, not once per release).
    access: AccessLog | None = None


def read_previous(
    root: Path, cache: PassCache | None = None
) -> dict[str, tuple[Status | None, bytes]]:
    """The status files in the repository, by release key: (parsed, raw bytes).

    With a cache, a file whose bytes did not change since the last pass is not parsed again.
    """
    found: dict[str, tuple[Status | None, bytes]] = {}
    status_dir = root / "status"
    if not status_dir.is_dir():
        return found
    known = cache.statuses if cache is not None else {}
    for path in sorted(status_dir.glob("*/*.yaml")):
        data = path.read_bytes()
        key = f"{path.parent.name}/{path.stem}"
        cached = known.get(key)
        if cached is not None and cached[0] == data:
            found[key] = (cached[1], data)
            continue
        found[key] = (parse_status(data, file=path.relative_to(root).as_posix()), data)
    return found


def _settled(release: Release, before: Status | None, cache: PassCache, now: datetime) -> bool:
    """Whether a release can keep its status without asking the platform in this pass."""
    if before is None or before.spec_hash != release.spec_hash or before.next_retry:
        return False
    ready = before.condition(ConditionType.READY)
    if ready is None or ready.status is not ConditionStatus.TRUE:
        return False
    seen = cache.observed_at.get(release.key)
    return seen is not None and now - seen < cache.resync


def reconcile_repository(
    root: Path,
    platform: Platform,
    commit: str,
    now: datetime,
    *,
    dry_run: bool = False,
    cache: PassCache | None = None,
    progress: ProgressCallback | None = None,
    authorize: bool = True,
) -> tuple[list[ReleaseResult], dict[str, bytes | None], LoadResult]:
    """Reconcile every release of a checked-out repository.

    Returns the per-release results, the status files to write (``None`` = delete: the
    manifest is gone) and the load result. Writes nothing to git; with ``authorize`` it reads
    the history of ``commit`` (``root`` must then be a git work tree) to enforce access.yaml
    on every release whose manifest changed since the controller last acted on it.
    """
    if cache is not None and cache.commit == commit and cache.loaded is not None:
        loaded = cache.loaded
    else:
        loaded = load_repository(root)
        if cache is not None:
            cache.commit, cache.loaded, cache.access = commit, loaded, None
    if loaded.config is None:
        # Without a valid relctl.yaml no release can be judged: act on nothing and keep every
        # status as it is (an unreadable config must never read as "all releases deleted").
        log.error("relctl.yaml is missing or invalid: no release is reconciled in this pass")
        return [], {}, loaded
    access = _AccessCheck(root, commit, cache) if authorize else None
    refused = access.untrusted_config() if access is not None else None
    if refused is not None:
        # Someone other than a master changed the rules every release is judged by: act on
        # nothing and keep every status until a master commits relctl.yaml.
        log.error("relctl.yaml is not trusted, no release is reconciled: %s", refused.message)
        problem = Problem(
            CONFIG_FILE, 1, 1, "", Severity.ERROR, "forbidden", refused.message,
            "a master must commit relctl.yaml (e.g. revert the change, or confirm it)",
        )  # fmt: skip
        return [], {}, replace(loaded, problems=(*loaded.problems, problem))
    previous = read_previous(root, cache)
    results: list[ReleaseResult] = []
    for release in loaded.releases:
        before, _raw = previous.get(release.key, (None, b""))
        denial = None
        if access is not None and (before is None or before.spec_hash != release.spec_hash):
            denial = access.denial(release, authorization_since(before))
        if denial is not None:
            results.append(
                _result(release.key, before, forbidden_status(release, denial, before, commit, now))
            )
        elif cache is not None and before is not None and _settled(release, before, cache, now):
            results.append(ReleaseResult(key=release.key, status=before))
        else:
            results.append(
                reconcile_release(platform, release, before, commit, now, dry_run=dry_run)
            )
            if cache is not None:
                cache.observed_at[release.key] = now
        if progress is not None:
            progress(results[-1])
    for key, problems in sorted(loaded.invalid.items()):
        before, _raw = previous.get(key, (None, b""))
        status = invalid_status(key, problems, before, commit, now)
        results.append(_result(key, before, status))
        if progress is not None:
            progress(results[-1])

    files: dict[str, bytes | None] = {}
    final: list[ReleaseResult] = []
    for item in results:
        before, raw = previous.get(item.key, (None, b""))
        # parse(render(s)) == s, so an equal status renders to the bytes already there.
        rendered = (
            raw if before is not None and item.status == before else render_status(item.status)
        )
        changed = rendered != raw
        if changed:
            files[f"status/{item.key}.yaml"] = rendered
        final.append(replace(item, rendered=rendered, changed=changed))
    live = {item.key for item in final}
    for key in previous:
        # A release under a directory that could not be listed is unknown, not deleted.
        if key not in live and not f"releases/{key}".startswith(loaded.unreadable):
            files[f"status/{key}.yaml"] = None
    if cache is not None:
        cache.statuses = {item.key: (item.rendered, item.status) for item in final if not dry_run}
        for key in set(cache.observed_at) - live:
            del cache.observed_at[key]
    return final, files, loaded


class _AccessCheck:
    """access.yaml enforcement for one pass; reads the history only when a release needs it."""

    def __init__(self, root: Path, commit: str, cache: PassCache | None) -> None:
        self.root, self.commit, self.cache = root, commit or "HEAD", cache
        self._log: AccessLog | None = cache.access if cache is not None else None

    @property
    def log(self) -> AccessLog:
        if self._log is None:
            self._log = AccessLog(self.root, until=self.commit)
            if self.cache is not None:
                self.cache.access = self._log
        return self._log

    def untrusted_config(self) -> Denial | None:
        """The refusal of the latest change of relctl.yaml, if a non-master made it."""
        return self.log.untrusted(CONFIG_FILE) if self.log.enforced else None

    def denial(self, release: Release, since: str | None) -> Denial | None:
        if not self.log.enforced:
            return None
        # The manifest and the tester files it reads: every file the spec comes from.
        return self.log.authorize(list(release.sources or (release.path,)), since=since)


#: A status commit lists at most this many releases (a pass may change 10,000).
MESSAGE_LINES = 200


def commit_message(results: Iterable[ReleaseResult], removed: Iterable[str]) -> str:
    """A subject that summarises the transitions, and one line per changed release."""
    changed = [r for r in results if r.changed]
    transitions = [r for r in changed if r.transition]
    removed = list(removed)
    if len(transitions) == 1 and len(changed) == 1 and not removed:
        only = transitions[0]
        subject = f"status: {only.key} {only.status.version} {only.transition}"
    else:
        parts = [f"{len(changed)} release(s) updated"]
        if transitions:
            parts.append(f"{len(transitions)} transition(s)")
        if removed:
            parts.append(f"{len(removed)} removed")
        subject = "status: " + ", ".join(parts)
    lines = []
    for r in changed:
        what = r.transition or str(r.status.phase)
        step = f" ({r.result.step.describe()})" if r.result and r.result.ok else ""
        lines.append(f"- {r.key} {r.status.version}: {what}{step}")
    lines.extend(f"- {key}: manifest removed, status deleted" for key in removed)
    if len(lines) > MESSAGE_LINES:
        more = len(lines) - MESSAGE_LINES + 1
        lines = [*lines[: MESSAGE_LINES - 1], f"- ... and {more} more (see the status files)"]
    return subject + ("\n\n" + "\n".join(lines) if lines else "")


def run_pass(
    workspace: Workspace,
    platform: Platform,
    now: Callable[[], datetime],
    *,
    skip_ci: bool = False,
    progress: ProgressCallback | None = None,
    cache: PassCache | None = None,
) -> PassResult:
    """One whole pass: sync, reconcile every release, one status commit, push."""
    commit = workspace.sync()
    results, files, loaded = reconcile_repository(
        workspace.root, platform, commit, now(), cache=cache, progress=progress
    )
    removed = tuple(
        sorted(path[len("status/") : -len(".yaml")] for path, data in files.items() if data is None)
    )
    pushed = None
    if files:
        try:
            pushed = workspace.write_status(
                files,
                commit_message(results, removed),
                observed_commit=commit,
                skip_ci=skip_ci,
            )
        except Exception:
            if cache is not None:  # what is in git is not what the cache says: start over
                cache.statuses.clear()
                cache.observed_at.clear()
            raise
    return PassResult(
        commit=commit,
        releases=tuple(results),
        problems=loaded.problems,
        pushed=pushed,
        removed=removed,
    )


def plan_repository(
    root: Path, platform: Platform, commit: str, now: datetime
) -> list[ReleaseResult]:
    """What the next pass would do, per release: no platform mutation, no git write.

    access.yaml is enforced as the controller would when ``root`` is a git work tree (on the
    history of its ``HEAD`` when ``commit`` is empty); uncommitted edits are judged as if a
    member with every right had made them.
    """
    results, _files, _loaded = reconcile_repository(
        root, platform, commit, now, dry_run=True, authorize=is_git_work_tree(root)
    )
    return results


def is_git_work_tree(root: Path) -> bool:
    """Whether ``root`` is the top of a git work tree (not a plain directory of files)."""
    return (root / ".git").exists()


def summarize(results: Iterable[ReleaseResult]) -> Mapping[str, int]:
    """Count releases per phase (for progress lines)."""
    counts: dict[str, int] = {}
    for r in results:
        counts[str(r.status.phase)] = counts.get(str(r.status.phase), 0) + 1
    return dict(sorted(counts.items()))
