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

import hashlib
import logging
import time
from collections.abc import Callable, Container, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import cache as _once
from pathlib import Path
from typing import Final, Protocol

from controller import __version__
from controller.access import Ledger, TrustState
from controller.act import OBSERVE, ActResult, act
from controller.analysis import measure
from controller.gitops import GitTree, PushResult, Workspace
from controller.manifests import (
    CONFIG_FILE,
    RELEASES_DIR,
    LoadResult,
    Problem,
    Severity,
    ValidationCache,
    load_repository,
)
from controller.model import (
    Action,
    ConditionStatus,
    ConditionType,
    Event,
    FreezeWindow,
    Observed,
    Outcome,
    Plan,
    Reason,
    Release,
    Status,
    Validation,
    WaveState,
    cut,
)
from controller.plan import decide
from controller.platform.errors import NotFound, PlatformError
from controller.platform.protocol import LIST_RELEASES_MAX, ListsReleases, Platform, Stage
from controller.repofiles import RepoFiles, WorkTree, collector_paused
from controller.rollout import measurements_due
from controller.schemas import SCHEMA_DIR
from controller.state import ControllerState
from controller.status import (
    STATUS_DIR,
    append_event,
    build_status,
    forbidden_status,
    held_status,
    invalid_status,
    observation_due,
    observation_failed,
    parse_status,
    platform_mismatch,
    read_status_file,
    render_status,
    status_entries,
    status_from_json,
    status_to_json,
)
from controller.trust import TrustSettings, follow_main

log = logging.getLogger("relctl")

#: Reported to the caller after each release (``relctl run`` prints progress with it):
#: the release's result, how many of the pass are done, and the total.
ProgressCallback = Callable[["ReleaseResult", int, int], None]
#: Asked before an irreversible step; raises :class:`MainMoved` when main moved.
IntentCheck = Callable[[], None]
#: Asked before each release: why the pass must stop now (deadline, SIGTERM), or None.
StopCheck = Callable[[], "str | None"]


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

    @property
    def healthy(self) -> bool:
        """Not Invalid, Forbidden or Stalled, and no failed step in this pass."""
        stalled = self.status.condition(ConditionType.STALLED)
        return (
            not self.status.errors
            and not (stalled is not None and stalled.status is ConditionStatus.TRUE)
            and not (self.result is not None and self.result.error is not None)
            and not (self.plan is not None and self.plan.outcome is Outcome.STALLED)
        )


@dataclass(frozen=True)
class PassResult:
    """What one pass did: per release, plus the status commit it pushed (if any)."""

    commit: str
    releases: tuple[ReleaseResult, ...]
    problems: tuple[Problem, ...] = ()
    pushed: PushResult | None = None
    removed: tuple[str, ...] = field(default_factory=tuple)
    #: Status files a person had edited, restored by this pass.
    edited: tuple[str, ...] = ()
    #: Why the pass stopped before every release (main moved, deadline), or None.
    cut_short: str | None = None
    #: True for a pass that found main where the last finished pass left it and nothing due
    #: (one ``ls-remote``, nothing else): ``releases`` are the statuses the last pass left.
    unchanged: bool = False

    @property
    def changed(self) -> tuple[ReleaseResult, ...]:
        return tuple(r for r in self.releases if r.changed)

    @property
    def unhealthy(self) -> tuple[ReleaseResult, ...]:
        """Releases that need attention: invalid, forbidden, stalled, or failing a step."""
        return tuple(r for r in self.releases if not r.healthy)

    @property
    def healthy(self) -> bool:
        """Exit 0 material: every release healthy, no error in the repository, not cut short."""
        return (
            not self.unhealthy
            and all(p.severity is Severity.WARNING for p in self.problems)
            and self.cut_short is None
        )


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


def observe_rollout(
    platform: Platform,
    release: Release,
    previous: Status | None,
    observed: Observed,
    now: datetime,
    stop_the_line: str | None,
    freeze_windows: tuple[FreezeWindow, ...] = (),
) -> Observed:
    """The rollout's inputs to ``decide``: stop the line, and the measurements of the current
    analysis step that are due (the controller's memory says which step is current)."""
    rollout = release.spec.rollout
    snapshot = observed.release
    if rollout is None or snapshot is None:
        return observed
    progress = (
        previous.rollout
        if previous is not None and previous.version == release.spec.version
        else None
    )
    due = measurements_due(rollout, progress, now)
    measurements = measure(platform, snapshot.release_id, due, now) if due else ()
    wave = None
    if rollout.after is not None:
        wave = observe_wave(platform, release, rollout.after.target_app)
    return replace(
        observed,
        measurements=measurements,
        stop_the_line=stop_the_line,
        freeze_windows=freeze_windows,
        wave=wave,
    )


def observe_wave(platform: Platform, release: Release, target_app: str) -> WaveState:
    """The same version on ``target_app``: its exposure, and when the platform last changed
    the release (a conservative start for the wave's soak: never earlier than the exposure
    was reached)."""
    found = platform.find_releases(release.mini_program, target_app)
    mine = next((r for r in found if r.version == release.spec.version), None)
    if mine is None:
        return WaveState(exposure=0, since=None)
    if mine.stage is Stage.FULL_RELEASE:
        return WaveState(100, mine.stage_times.get(Stage.FULL_RELEASE, mine.updated_at))
    if mine.stage is Stage.GRAYSCALE:
        return WaveState(mine.grayscale, mine.updated_at)
    return WaveState(exposure=0, since=None)


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
    intent: IntentCheck | None = None,
    stop_the_line: str | None = None,
    freeze_windows: tuple[FreezeWindow, ...] = (),
) -> ReleaseResult:
    """One release, as a straight line: observe -> decide -> act -> re-observe -> status.

    ``previous`` is the controller's own memory of the release; ``stop_the_line`` is
    relctl.yaml's ``stopTheLine`` (every rollout holds). ``intent`` is asked before an
    irreversible step and raises :class:`MainMoved` when main is no longer ``commit``.
    Never raises anything else for the platform's sake: a failure is recorded on the release.
    """
    if not observation_due(release, previous, now):
        assert previous is not None
        return ReleaseResult(key=release.key, status=previous)
    try:
        observed = observe(platform, release)
        observed = observe_rollout(
            platform, release, previous, observed, now, stop_the_line, freeze_windows
        )
    except PlatformError as error:
        status = observation_failed(release, previous, commit, error, now)
        return _result(release.key, previous, status)
    mismatch = platform_mismatch(release, previous, observed)
    if mismatch is not None:
        status = held_status(
            release.key, release.spec.version, previous, commit, now,
            reason=str(Reason.PLATFORM_MISMATCH), message=mismatch,
        )  # fmt: skip
        return _result(release.key, previous, status)
    plan = decide(release, previous, observed, now)
    result: ActResult | None = None
    after = observed
    if plan.step is not None and not dry_run:
        if intent is not None and plan.step.action in IRREVERSIBLE:
            intent()
        result = act(platform, release, plan.step)
        # Also after a failure: an Unknown result may have taken effect. The measurements
        # were judged by the first decision: the second must not count them again.
        after = replace(_reobserve(platform, release, observed, result), measurements=())
    status = build_status(release, previous, plan, result, after, commit, now)
    if result is not None and result.ok:
        # What the observation after the step means: the conditions say what comes next.
        status = build_status(
            release, previous, plan, result, after, commit, now,
            after=decide(release, status, after, now),
        )  # fmt: skip
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


# --------------------------------------------------------------------------------------------
# the whole repository
# --------------------------------------------------------------------------------------------


#: "Never due" for a release whose status changes only with main (Invalid, Forbidden).
NEVER: Final = datetime.max.replace(tzinfo=UTC)


@dataclass
class PassCache:
    """What a long-running controller remembers between passes.

    An optimisation only: a fresh process without it reaches the same statuses, just slower.
    It holds the load result of the last commit (manifests are not parsed again while main
    does not move), the parsed statuses by their bytes, when each settled release was last
    observed on the platform, and what the last finished pass found (``tip``, ``quiet``,
    ``due``): while main stays at ``tip`` and nothing is due, a pass is one ``ls-remote``.
    A fresh cache is primed from the controller's state (``primed``): observation times and
    the parsed form of the statuses it remembers.
    """

    #: Settled releases (Ready, spec unchanged, no retry pending) are observed on the
    #: platform at least this often; in between their status is kept as it is.
    resync: timedelta = timedelta(minutes=5)
    commit: str | None = None
    loaded: LoadResult | None = None
    statuses: dict[str, tuple[bytes, Status]] = field(default_factory=dict)
    #: The status files of the last commit read, by key (see :func:`read_previous`).
    in_repo: dict[str, InRepo] = field(default_factory=dict)
    observed_at: dict[str, datetime] = field(default_factory=dict)
    #: The judge of main, with the governance blobs it read, and the trust state of the last
    #: pass (saves reading the controller's record every pass).
    ledger: Ledger | None = None
    trust: TrustState | None = None
    #: The trust generation of the controller's state when ``ledger`` and ``trust`` were
    #: taken; ``relctl trust reset`` bumps it, and both are then read again.
    trust_generation: int | None = None
    #: Whether the observation times and parsed statuses were read from the state.
    primed: bool = False
    #: Digest of the YAML each stored parsed status was made from, by key (what the state
    #: already holds, so that only new ones are written).
    persisted: dict[str, bytes] = field(default_factory=dict)
    #: Main's commit at the last finished pass that pushed nothing, held nothing back and
    #: trusted main (None: the next pass is a real one).
    tip: str | None = None
    #: The releases of that pass as a pass that changes nothing reports them.
    quiet: PassResult | None = None
    #: The earliest time something of that pass is due again (a retry, a release in flight)
    #: other than the resync of its settled releases (:data:`NEVER`: only a new commit).
    due: datetime | None = None
    #: The settled releases of that pass, by (mini program, target app), and the earliest
    #: time one of them is due for its resync.
    settled: dict[tuple[str, str], str] = field(default_factory=dict)
    resync_due: datetime | None = None
    #: Where the platform's list of changes was last read to (``ListsReleases``); kept in
    #: the state with the observation times it vouches for.
    cursor: str | None = None
    #: A listing :func:`unchanged_pass` made and could not settle with (a settled release
    #: changed): ``run_pass`` takes it at once for the real pass that follows (never later:
    #: a listing vouches only for what happened before it).
    listed: Changes | None = None
    #: Per-manifest validation outcomes by blob id (``controller.manifests.cache``), kept in
    #: memory between passes and in ``<workdir>/cache/validation`` for a cold start.
    validation: ValidationCache | None = None

    def forget_pass(self) -> None:
        """The next pass is a real one (fetch, judge, read, observe what is due)."""
        self.tip, self.quiet, self.due, self.resync_due = None, None, None, None
        self.settled = {}


@dataclass(slots=True)
class InRepo:
    """A status file of the repository: its blob id, bytes, and parsed form if parsed."""

    oid: str | None
    data: bytes
    status: Status | None = None
    parsed: bool = False


def blob_id(data: bytes) -> str:
    """The git (SHA-1) blob id of ``data``: a status file whose entry has this id holds
    exactly these bytes, so they need not be read."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def read_previous(
    files: RepoFiles | Path,
    cache: PassCache | None = None,
    *,
    known: Mapping[str, bytes] | None = None,
    skip_parse: Container[str] = (),
) -> dict[str, tuple[Status | None, bytes]]:
    """The status files in a repository, by release key: (parsed, raw bytes).

    See :func:`controller.status.status_entries` for what is skipped. A blob id names its
    bytes, so a file is not read again when its id is the one of the last pass (``cache``)
    or of the bytes in ``known`` (what the controller pushed), and not parsed again while
    its bytes are the same. Keys in ``skip_parse`` are not parsed at all (their parsed form
    is None): the controller relies on its own memory of them, never on the file.
    """
    if isinstance(files, Path):
        files = WorkTree(files)
    found: dict[str, tuple[Status | None, bytes]] = {}
    cached_files = cache.in_repo if cache is not None else {}
    seen: dict[str, InRepo] = {}
    for key, entry in status_entries(files):
        cached = cached_files.get(key)
        mine = known.get(key) if known is not None else None
        if cached is not None and entry.oid is not None and cached.oid == entry.oid:
            item = cached
            if mine is not None and mine is not item.data and mine == item.data:
                item.data = mine  # one copy of these bytes in the process, not one per pass
        else:
            if mine is not None and entry.oid is not None and blob_id(mine) == entry.oid:
                data: bytes | None = mine
            else:
                data = read_status_file(files, entry)
            if data is None:
                continue
            item = InRepo(entry.oid, data)
            if cached is not None and cached.parsed and cached.data == data:
                item.status, item.parsed = cached.status, True
        if not item.parsed and key not in skip_parse:
            item.status, item.parsed = parse_status(item.data, file=entry.path), True
        found[key] = (item.status, item.data)
        if entry.oid is not None:
            seen[key] = item
    if cache is not None:
        cache.in_repo = seen
    return found


def _resync_due(release: Release, status: Status | None, cache: PassCache) -> datetime | None:
    """When a settled release (Ready, spec unchanged, no retry pending, observed) is to be
    observed again; None when it is not settled (it is observed on every pass)."""
    if status is None or status.spec_hash != release.spec_hash or status.next_retry:
        return None
    ready = status.condition(ConditionType.READY)
    if ready is None or ready.status is not ConditionStatus.TRUE:
        return None
    seen = cache.observed_at.get(release.key)
    return None if seen is None else seen + cache.resync


def _due(release: Release, status: Status, now: datetime) -> datetime:
    """When a release that is not settled next needs this controller after a pass left it
    at ``status``: one waiting for an observation retry at that retry; anything else (in
    flight, stalled, a step failed) at once."""
    if (
        status.next_retry is not None
        and status.last_error is not None
        and status.spec_hash == release.spec_hash
        and status.last_error.action == OBSERVE
    ):
        return status.next_retry
    return now


def _untrusted(status: Status) -> Status:
    """A status file from the repository, kept for what people read (history, conditions)
    and stripped of everything the controller would rely on: it was not the controller's
    own record, so a person may have written any of it."""
    return replace(
        status,
        spec_hash="",
        applied_spec_hash=None,
        compatibility=None,
        last_error=None,
        next_retry=None,
        rollout=None,
    )


class Authorizer(Protocol):
    """Who may change what, as the controller enforces it (``controller.access``)."""

    def config_refusal(self) -> str | None:
        """Why relctl.yaml at this commit may not be acted on, or None."""
        ...

    def denial(self, release: Release, previous: Status | None) -> str | None:
        """Why this release's intent may not be acted on (it becomes Forbidden), or None."""
        ...


@dataclass(frozen=True)
class Changes:
    """What the platform changed since a cursor (``ListsReleases``)."""

    #: (mini program, target app) of every release created or changed.
    pairs: frozenset[tuple[str, str]]
    #: Where to list from next time.
    cursor: str
    #: Listed from the start (no cursor, or the platform refused it): every release counts
    #: as changed, since what changed before this listing is unknown.
    everything: bool


#: A listing that needs more pages than this is abandoned (observe one by one instead).
MAX_PAGES = 1000


def list_changes(platform: Platform, since: str | None) -> Changes | None:
    """Every change on the platform after ``since``, all pages; None when the platform cannot
    list (no ``ListsReleases``) or the listing failed: observe release by release instead.

    A cursor the platform refuses (``NotFound``: another or a restored platform) means
    listing from the start, and then everything counts as changed.
    """
    if not isinstance(platform, ListsReleases):
        return None
    pairs: set[tuple[str, str]] = set()
    cursor, everything = since, since is None
    try:
        for _page in range(MAX_PAGES):
            try:
                page = platform.list_releases(cursor, limit=LIST_RELEASES_MAX)
            except NotFound as refused:
                if cursor is None:
                    raise
                log.warning(
                    "the platform refused the list cursor (%s): listing from the start", refused
                )
                pairs, cursor, everything = set(), None, True
                continue
            pairs.update((r.mini_program, r.target_app) for r in page.releases)
            cursor = page.cursor
            if not page.more:
                return Changes(frozenset(pairs), cursor, everything)
    except PlatformError as error:
        log.warning(
            "listing the platform's changes failed (%s): observing release by release", error
        )
        return None
    log.warning(
        "the platform's changes did not end in %d pages: observing release by release", MAX_PAGES
    )
    return None


def _resyncs(
    releases: Iterable[Release], previous: Mapping[str, Status], cache: PassCache
) -> dict[str, datetime]:
    """When each settled release is due for its resync, by key."""
    found: dict[str, datetime] = {}
    for release in releases:
        due = _resync_due(release, previous.get(release.key), cache)
        if due is not None:
            found[release.key] = due
    return found


@dataclass(frozen=True)
class RepositoryResult:
    """What one pass decided for every release, before anything is written to git."""

    releases: list[ReleaseResult]
    #: Status files to write (None: delete, the manifest is gone).
    files: dict[str, bytes | None]
    loaded: LoadResult
    #: Status files a person edited in the repository (restored in this pass).
    edited: tuple[str, ...] = ()
    #: Why the pass stopped early (main moved, deadline), or None.
    cut_short: str | None = None
    #: Changes to the controller's memory of statuses (None: forget the release).
    remember: dict[str, bytes | None] = field(default_factory=dict)
    #: Releases observed on the platform in this pass, and when (None: forget the time).
    observed: dict[str, datetime | None] = field(default_factory=dict)
    #: The earliest time a release of this pass that is not settled needs the controller
    #: again (:data:`NEVER` when only a new commit can change anything); None when unknown
    #: (no cache, a pass that held releases back, or acted on nothing for want of a trusted
    #: relctl.yaml).
    due: datetime | None = None
    #: The settled releases (key by pair) and the earliest of their resyncs (None: none).
    settled: dict[tuple[str, str], str] = field(default_factory=dict)
    resync_due: datetime | None = None
    #: The platform's list cursor after this pass (None: not listed, keep the old one).
    cursor: str | None = None


def load_manifests(tree: RepoFiles, validation: ValidationCache | None = None) -> LoadResult:
    """Every manifest of a revision, validated (the one place a pass loads them).

    With ``validation`` (the daemon's, see :attr:`PassCache.validation`) a manifest whose
    blob, tester files and relevant relctl.yaml parts were validated before is not parsed or
    validated again; the cross-file checks still run over all of them. The result is the
    same with or without it.
    """
    return load_repository(tree, cache=validation)


def reconcile_repository(
    files: RepoFiles | Path,
    platform: Platform,
    commit: str,
    now: datetime,
    *,
    memory: Mapping[str, bytes] | None = None,
    pushed: Mapping[str, bytes] | None = None,
    dry_run: bool = False,
    cache: PassCache | None = None,
    progress: ProgressCallback | None = None,
    authorizer: Authorizer | None = None,
    intent: IntentCheck | None = None,
    stop: StopCheck | None = None,
    listed: Changes | None = None,
) -> RepositoryResult:
    """Reconcile every release of one revision of a release repository.

    ``memory`` is the controller's own record of every release's status and ``pushed`` the
    status files it last pushed (``controller.state``): ``decide`` reads only the memory.
    Without it (``relctl plan``) the status files of the revision are read instead. A status
    file in the repository that differs from what the controller pushed was edited by a
    person: it is overwritten, and the edit is recorded in the release's history.
    ``stop`` is asked before each release: a reason (the pass deadline, SIGTERM) stops
    starting new ones, and they keep their status for the next pass. ``intent`` is asked
    before every irreversible step (see :func:`reconcile_release`). ``listed`` is the
    platform's changes listed just before this pass (used for a resync instead of listing
    again). Writes nothing.
    """
    tree = WorkTree(files) if isinstance(files, Path) else files
    if cache is not None and cache.commit == commit and cache.loaded is not None:
        loaded = cache.loaded
    else:
        loaded = load_manifests(tree, cache.validation if cache is not None else None)
        if cache is not None:
            cache.commit, cache.loaded = commit, loaded
    if loaded.config is None:
        # Without a valid relctl.yaml no release can be judged: act on nothing and keep every
        # status as it is (an unreadable config must never read as "all releases deleted").
        log.error("relctl.yaml is missing or invalid: no release is reconciled in this pass")
        return RepositoryResult([], {}, loaded)
    refused = authorizer.config_refusal() if authorizer is not None else None
    if refused is not None:
        # Someone other than a master changed the rules every release is judged by: act on
        # nothing and keep every status until a master commits relctl.yaml.
        log.error("relctl.yaml is not trusted, no release is reconciled: %s", refused)
        problem = Problem(
            CONFIG_FILE, 1, 1, "", Severity.ERROR, "forbidden", refused,
            "a master must commit relctl.yaml (e.g. revert the change, or confirm it)",
        )  # fmt: skip
        return RepositoryResult([], {}, replace(loaded, problems=(*loaded.problems, problem)))
    in_repo = read_previous(tree, cache, known=pushed, skip_parse=memory or ())
    previous = _previous_statuses(in_repo, memory, cache)
    edited = tuple(
        sorted(
            key for key, raw in (pushed or {}).items() if in_repo.get(key, (None, b""))[1] != raw
        )
    )
    results: list[ReleaseResult] = []
    cut_short: str | None = None
    held: set[str] = set()
    observed: dict[str, datetime | None] = {}
    due = NEVER
    settled: dict[tuple[str, str], str] = {}
    resync_due: datetime | None = None
    changes = None
    # When each settled release is due for its resync (computed once: the loop reuses it).
    resyncs = _resyncs(loaded.releases, previous, cache) if cache is not None else {}
    if cache is not None and not dry_run and loaded.releases:
        if any(now >= at for at in resyncs.values()):
            changes = listed or list_changes(platform, cache.cursor)
        elif cache.cursor is None and not resyncs:
            # No cursor yet (a new workdir, or one from before ListsReleases) and every
            # release is observed in this pass anyway: a listing from the start costs no
            # observation now, and the first resync lists only what changed after it.
            changes = list_changes(platform, None)
    total = len(loaded.releases) + len(loaded.invalid)
    for release in loaded.releases:
        before = previous.get(release.key)
        if cut_short is None and stop is not None:
            cut_short = stop()
        if cut_short is not None:
            held.add(release.key)
            continue
        denial = authorizer.denial(release, before) if authorizer is not None else None
        changed = changes is not None and (
            changes.everything or (release.mini_program, release.target_app) in changes.pairs
        )
        resync = resyncs.get(release.key)
        try:
            if denial is not None:
                item = _result(
                    release.key, before, forbidden_status(release, denial, before, commit, now)
                )
            elif cache is not None and not changed and changes is not None and resync is not None:
                # Settled, and the platform says it did not change: as good as observed now.
                assert before is not None
                item = ReleaseResult(key=release.key, status=before)
                cache.observed_at[release.key] = observed[release.key] = now
                resync = now + cache.resync
            elif before is not None and not changed and resync is not None and now < resync:
                item = ReleaseResult(key=release.key, status=before)  # settled: kept as it is
            else:
                item = reconcile_release(
                    platform, release, before, commit, now, dry_run=dry_run, intent=intent,
                    stop_the_line=loaded.config.stop_the_line,
                    freeze_windows=loaded.config.freeze_windows,
                )  # fmt: skip
                if cache is not None and not dry_run:
                    cache.observed_at[release.key] = observed[release.key] = now
            if cache is not None and denial is None:
                if item.status is not before:
                    resync = _resync_due(release, item.status, cache)
                if resync is None:
                    due = min(due, _due(release, item.status, now))
                else:
                    settled[release.mini_program, release.target_app] = release.key
                    resync_due = resync if resync_due is None else min(resync_due, resync)
        except MainMoved as moved:
            cut_short = str(moved)
            held.add(release.key)
            continue
        except Exception as error:  # the error boundary of one release: a bug stalls it alone
            log.exception("release %s: unexpected error", release.key)
            item = _result(
                release.key,
                before,
                held_status(
                    release.key, release.spec.version, before, commit, now,
                    reason=str(Reason.INTERNAL_ERROR),
                    message=f"relctl failed on this release ({type(error).__name__}: "
                    f"{cut(str(error))}); it is retried on the next pass",
                ),
            )  # fmt: skip
            due = now
        results.append(item)
        if progress is not None:
            progress(item, len(results), total)
    if cut_short is not None:
        log.warning(
            "pass cut short (%s): %d release(s) left for the next pass", cut_short, len(held)
        )
    for key, problems in sorted(loaded.invalid.items()):
        errors = tuple(
            Validation(p.file, p.line, p.column, p.path, p.message, p.code, p.hint)
            for p in problems
            if p.severity == Severity.ERROR
        )
        status = invalid_status(key, errors, previous.get(key), commit, now)
        results.append(_result(key, previous.get(key), status))
        if progress is not None:
            progress(results[-1], len(results), total)
    results = [_note_edit(item, now) if item.key in edited else item for item in results]

    to_write: dict[str, bytes | None] = {}
    final: list[ReleaseResult] = []
    for item in results:
        before = previous.get(item.key)
        _parsed, raw = in_repo.get(item.key, (None, b""))
        mine = raw if memory is None else memory.get(item.key, b"")
        # parse(render(s)) == s, so an equal status renders to the bytes already recorded.
        same = bool(mine) and before is not None and item.status == before
        rendered = mine if same else render_status(item.status)
        changed = rendered != raw
        if changed:
            to_write[f"{STATUS_DIR}/{item.key}.yaml"] = rendered
        final.append(replace(item, rendered=rendered, changed=changed))
    live = {item.key for item in final} | held | _unlisted(loaded, set(in_repo) | set(memory or {}))
    for key in sorted(set(in_repo) | set(memory or {})):
        if key not in live:
            to_write[f"{STATUS_DIR}/{key}.yaml"] = None
    remember: dict[str, bytes | None] = {}
    if memory is not None:
        remember = {i.key: i.rendered for i in final if memory.get(i.key) != i.rendered}
        remember.update({key: None for key in memory if key not in live})
    if cache is not None:
        cache.statuses = {item.key: (item.rendered, item.status) for item in final if not dry_run}
        for key in set(cache.observed_at) - live:
            del cache.observed_at[key]
            observed[key] = None
    complete = cache is not None and not held and not dry_run
    return RepositoryResult(
        final, to_write, loaded, edited, cut_short, remember, observed,
        due=due if complete else None, settled=settled, resync_due=resync_due,
        # a pass cut short may not have observed every change it listed: list them again
        cursor=changes.cursor if changes is not None and complete else None,
    )  # fmt: skip


def _previous_statuses(
    in_repo: Mapping[str, tuple[Status | None, bytes]],
    memory: Mapping[str, bytes] | None,
    cache: PassCache | None,
) -> dict[str, Status]:
    """What ``decide`` may rely on: the controller's memory when it has one; otherwise (plan,
    or a release the controller never wrote) the repository's file, stripped of what a
    person could forge when the controller acts."""
    found: dict[str, Status] = {}
    if memory is None:
        return {key: status for key, (status, _raw) in in_repo.items() if status is not None}
    known = cache.statuses if cache is not None else {}
    for key, raw in memory.items():
        cached = known.get(key)
        status = cached[1] if cached is not None and cached[0] == raw else None
        status = status or parse_status(raw, file=f"{STATUS_DIR}/{key}.yaml")
        if status is not None:
            found[key] = status
    for key, (status, _raw) in in_repo.items():
        if key not in found and status is not None:
            found[key] = _untrusted(status)
    return found


def _unlisted(loaded: LoadResult, keys: Iterable[str]) -> set[str]:
    """Keys under a directory that could not be listed (a link, a submodule): unknown, not
    deleted, so their status files stay."""
    return {key for key in keys if f"{RELEASES_DIR}/{key}".startswith(loaded.unreadable)}


def _note_edit(item: ReleaseResult, now: datetime) -> ReleaseResult:
    message = (
        f"{STATUS_DIR}/{item.key}.yaml was edited in the repository; the controller's record "
        "is restored (status/ is written by the controller only)"
    )
    history = append_event(item.status.history, Event(now, str(Reason.STATUS_EDITED), message))
    return replace(item, status=replace(item.status, history=history))


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


#: The load result of a pass that read no manifest.
_NOTHING_LOADED = LoadResult(config=None, access=None, releases=(), problems=())


def hold_everything(
    files: RepoFiles,
    memory: Mapping[str, bytes],
    pushed: Mapping[str, bytes],
    commit: str,
    now: datetime,
    *,
    reason: str,
    message: str,
) -> RepositoryResult:
    """No release is acted on: each keeps what the controller knows, with a Stalled
    condition saying why (main's history diverged). Manifests are not even read."""
    in_repo = read_previous(files)
    results: list[ReleaseResult] = []
    to_write: dict[str, bytes | None] = {}
    for key, raw in sorted(memory.items()):
        before = parse_status(raw, file=f"{STATUS_DIR}/{key}.yaml")
        if before is None:
            continue
        status = held_status(
            key, before.version, before, commit, now, reason=reason, message=message
        )
        rendered = raw if status == before else render_status(status)
        changed = rendered != in_repo.get(key, (None, b""))[1]
        if changed:
            to_write[f"{STATUS_DIR}/{key}.yaml"] = rendered
        results.append(replace(_result(key, before, status), rendered=rendered, changed=changed))
    remember: dict[str, bytes | None] = {
        r.key: r.rendered for r in results if memory.get(r.key) != r.rendered
    }
    del pushed  # what is in git is not compared: nothing is restored while nothing is trusted
    return RepositoryResult(results, to_write, _NOTHING_LOADED, (), message, remember)


class MainMoved(Exception):
    """Main moved while the pass was acting: stop, and plan again from the new tip."""


#: Steps that expose users or testers, or cannot be taken back: main is confirmed unmoved
#: (one ``ls-remote``) right before each.
IRREVERSIBLE = frozenset(
    {
        Action.APPLY,
        Action.COMPLETE_TESTING,
        Action.SET_GRAYSCALE,
        Action.FULL_RELEASE,
        Action.CANCEL,
    }
)

#: How stale a "main has not moved" answer may be (seconds): one ``ls-remote`` serves the
#: irreversible steps taken within this window.
INTENT_WINDOW = 1.0


def intent_check(
    workspace: Workspace, commit: str, clock: Callable[[], float] = time.monotonic
) -> IntentCheck:
    """An :data:`IntentCheck` that asks the remote where main is (at most once a window)."""
    checked_at: list[float] = []

    def check() -> None:
        if checked_at and clock() - checked_at[0] < INTENT_WINDOW:
            return
        tip = workspace.remote_tip()
        checked_at[:] = [clock()]
        if tip != commit:
            raise MainMoved(
                f"main moved from {commit[:12]} to {(tip or 'nothing')[:12]} while acting; "
                "planning again from the new tip"
            )

    return check


def unchanged_pass(
    workspace: Workspace,
    platform: Platform,
    state: ControllerState,
    cache: PassCache,
    now: datetime,
) -> PassResult | None:
    """The last finished pass again, when nothing can have changed since; else None.

    Nothing changed when nothing is due (no retry, no release in flight), no status commit
    waits to be confirmed, trust was not re-anchored, and main is still at the commit that
    pass judged: one ``ls-remote``, asked after the local checks. Then a real pass would
    fetch nothing new, judge nothing, read and decide the same, and ask the platform nothing.

    A resync coming due is one more call when the platform lists its changes
    (``ListsReleases``): when none of the settled releases changed, they all count as
    observed now. Any change, or a platform that cannot list, makes it a real pass.
    """
    if cache.tip is None or cache.quiet is None or cache.due is None or now >= cache.due:
        return None
    if state.unconfirmed() or state.trust_generation() != cache.trust_generation:
        return None
    resync = cache.resync_due is not None and now >= cache.resync_due
    if resync and not isinstance(platform, ListsReleases):
        return None
    if workspace.remote_tip() != cache.tip:
        return None
    if resync:
        changes = list_changes(platform, cache.cursor)
        if changes is None or changes.everything or not changes.pairs.isdisjoint(cache.settled):
            cache.listed = changes  # the real pass that follows uses this listing
            return None
        times: dict[str, datetime | None] = dict.fromkeys(cache.settled.values(), now)
        state.record_observed(times, cursor=changes.cursor)
        cache.observed_at.update(dict.fromkeys(cache.settled.values(), now))
        cache.cursor, cache.resync_due = changes.cursor, now + cache.resync
    return cache.quiet


#: The format of the parsed statuses kept in the controller's state: relctl's version and
#: the status schema's hash. A row written by another format is never read.
@_once
def parsed_format() -> str:
    schema = SCHEMA_DIR.joinpath("status.schema.json").read_bytes()
    return f"relctl {__version__}; status schema {hashlib.sha256(schema).hexdigest()[:16]}"


def _digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


def _prime(cache: PassCache, state: ControllerState, memory: Mapping[str, bytes]) -> None:
    """A fresh cache learns from the state what a previous process knew: when each release
    was observed, and the parsed form of each remembered status whose YAML it was made from
    is still the one remembered (any other row, or one that does not read back as a status
    of its key, is ignored and the YAML parsed)."""
    cache.observed_at.update(state.observed())
    cache.cursor = state.list_cursor()
    with collector_paused():  # every remembered status, kept: no cycles
        _prime_statuses(cache, state, memory)
    cache.primed = True


def _prime_statuses(cache: PassCache, state: ControllerState, memory: Mapping[str, bytes]) -> None:
    for key, (digest, data) in state.parsed(parsed_format()).items():
        raw = memory.get(key)
        if raw is None or digest != _digest(raw):
            continue
        status = status_from_json(data)
        if status is not None and status.key == key:
            cache.statuses[key] = (raw, status)
            cache.persisted[key] = digest


def _parsed_rows(
    cache: PassCache, results: Iterable[ReleaseResult]
) -> dict[str, tuple[bytes, bytes]]:
    """The parsed statuses the state does not hold yet: (digest of the YAML, JSON)."""
    rows: dict[str, tuple[bytes, bytes]] = {}
    for item in results:
        if not item.rendered:
            continue
        digest = _digest(item.rendered)
        if cache.persisted.get(item.key) != digest:
            rows[item.key] = (digest, status_to_json(item.status))
    return rows


def validation_cache_path(workdir: Path) -> Path:
    """Where the daemon keeps its validation cache: beside ``state.db``, never in the
    repository (``controller.manifests.cache`` versions it and discards a damaged file)."""
    return workdir / "cache" / "validation"


def run_pass(
    workspace: Workspace,
    platform: Platform,
    now: Callable[[], datetime],
    *,
    state: ControllerState,
    trust: TrustSettings,
    skip_ci: bool = False,
    progress: ProgressCallback | None = None,
    cache: PassCache | None = None,
    stop: StopCheck | None = None,
) -> PassResult:
    """One whole pass: sync, judge main, reconcile every release, one status commit, push.

    The controller's memory (``state``) is the only input about the past: the statuses it
    knows, the files it pushed and the trust ledger. A staged push that a crash interrupted
    is settled first. When main no longer continues the history the ledger judged, no
    release is acted on: every status says so until the operator re-anchors trust.

    With a ``cache`` (the daemon), a pass over an unchanged main with nothing due is one
    ``ls-remote`` (:func:`unchanged_pass`), and a fresh cache is primed from the state.
    """
    listed: Changes | None = None
    if cache is not None:
        quiet = unchanged_pass(workspace, platform, state, cache, now())
        if quiet is not None:
            return quiet
        listed, cache.listed = cache.listed, None
        cache.forget_pass()
        generation = state.trust_generation()
        if generation != cache.trust_generation:  # trust was re-anchored: read it again
            cache.ledger, cache.trust, cache.trust_generation = None, None, generation
    commit = workspace.sync()
    state.settle(lambda staged: workspace.contains(staged, commit))
    tree = GitTree(workspace.repo, commit)
    if cache is not None and cache.validation is None:
        cache.validation = ValidationCache.open(validation_cache_path(workspace.workdir))
    ledger = (
        cache.ledger if cache is not None and cache.ledger is not None else Ledger(workspace.root)
    )
    main = follow_main(
        ledger, state, commit, tree, trust, known=cache.trust if cache is not None else None
    )
    if cache is not None:
        cache.ledger, cache.trust = ledger, main.state
    memory, pushed_files = state.statuses_and_pushed()
    if cache is not None and not cache.primed:
        _prime(cache, state, memory)
    if main.diverged is not None:
        outcome = hold_everything(
            tree, memory, pushed_files, commit, now(), reason=str(Reason.HISTORY_DIVERGED),
            message=main.diverged.message,
        )  # fmt: skip
    else:
        outcome = reconcile_repository(
            tree,
            platform,
            commit,
            now(),
            memory=memory,
            pushed=pushed_files,
            cache=cache,
            progress=progress,
            authorizer=main,
            intent=intent_check(workspace, commit),
            stop=stop,
            listed=listed,
        )
    del memory, pushed_files
    if cache is not None and cache.validation is not None:
        cache.validation.save()  # only when something changed; a failure is only logged
    # What the controller did is recorded before git is touched: it holds even if the push fails.
    if cache is not None:
        rows = _parsed_rows(cache, outcome.releases)
        state.remember(outcome.remember, rows, tag=parsed_format())
        for key, (digest, _data) in rows.items():
            cache.persisted[key] = digest
        for key, data in outcome.remember.items():
            if data is None:
                cache.persisted.pop(key, None)
        state.record_observed(outcome.observed, cursor=outcome.cursor)
        if outcome.cursor is not None:
            cache.cursor = outcome.cursor
    else:
        state.remember(outcome.remember)
    files = outcome.files
    removed = tuple(sorted(_key(path) for path, data in files.items() if data is None))
    pushed = None
    if files:
        by_key = {_key(path): data for path, data in files.items()}
        try:
            pushed = workspace.write_status(
                files,
                commit_message(outcome.releases, removed),
                observed_commit=commit,
                skip_ci=skip_ci,
                before_push=lambda staged: state.stage(staged, by_key),
            )
        except Exception:
            state.discard()
            if cache is not None:  # what is in git is not what the cache says: start over
                cache.statuses.clear()
                cache.observed_at.clear()
                state.forget_observed()
            raise
        if pushed is None:  # the remote already had these bytes
            state.stage(commit, by_key)
        state.confirm()
    for key in outcome.edited:
        log.warning("status/%s.yaml was edited in the repository: restored", key)
    result = PassResult(
        commit=commit,
        releases=tuple(outcome.releases),
        problems=outcome.loaded.problems,
        pushed=pushed,
        removed=removed,
        edited=outcome.edited,
        cut_short=outcome.cut_short,
    )
    if cache is not None and not files and outcome.due is not None and main.diverged is None:
        # Main is where this pass found it and nothing was written: until something is due,
        # the next pass would do exactly this again.
        cache.tip, cache.due = commit, outcome.due
        cache.settled, cache.resync_due = outcome.settled, outcome.resync_due
        cache.quiet = replace(
            result,
            releases=tuple(
                ReleaseResult(key=r.key, status=r.status, rendered=r.rendered)
                for r in outcome.releases
            ),
            unchanged=True,
        )
    return result


def _key(path: str) -> str:
    return path[len(STATUS_DIR) + 1 : -len(".yaml")]


def plan_repository(
    root: Path, platform: Platform, commit: str, now: datetime
) -> list[ReleaseResult]:
    """What the next pass would do, per release: no platform mutation, no git write.

    The status files of ``root`` stand in for the controller's memory. Who may change what
    is not judged here: ``relctl plan --base`` judges a pull request's commits, and the
    controller judges main (``controller.trust``).
    """
    return reconcile_repository(root, platform, commit, now, dry_run=True).releases


def is_git_work_tree(root: Path) -> bool:
    """Whether ``root`` is the top of a git work tree (not a plain directory of files)."""
    return (root / ".git").exists()


def summarize(results: Iterable[ReleaseResult]) -> Mapping[str, int]:
    """Count releases per phase (for progress lines)."""
    counts: dict[str, int] = {}
    for r in results:
        counts[str(r.status.phase)] = counts.get(str(r.status.phase), 0) + 1
    return dict(sorted(counts.items()))
