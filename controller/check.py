"""Judge a pull request before it is merged: ``relctl check --base REF [--head REF]``.

``check_change`` runs everything ``relctl validate`` runs on the head revision, then judges
the change itself: what the pull request's own commits change, compared with the base
revision (usually ``origin/main``) and with the status files at the base (what the controller
last observed on the platform). Changes the platform would refuse, or that the controller
would stall on or silently ignore, are refused here, where the author can still fix them:

=========================== ================================================================
code                        refused when
=========================== ================================================================
``version-not-increasing``  ``spec.version`` changes to one that is not greater (x.y.z)
``grayscale-decrease``      ``spec.grayscale`` falls below the base's or the observed one
``configuration-frozen``    ``spec.configuration`` changes once the version passed review
``configuration-in-review`` (warning) the same during review: the controller withdraws
``uncancel``                ``cancel: true`` is taken back for the same version
``supersede-required``      a new version replaces one testers or users may have, without
                            ``supersede: true``
``status-edited``           the change touches ``status/`` (the controller owns it)
``forbidden``               a commit changes what its author has no right to change
``release-removed``         (warning) a manifest is deleted: the controller stops managing it
``rollout-command``         ``spec.rollout.abort`` or ``full`` (``relctl abort``, ``promote
                            --full``) set by someone who is not an owner of the mini program
                            or a master; ``overrideFreeze`` by someone who is not a master
=========================== ================================================================

"The change" is the difference between the merge base of base and head and head (``git diff
BASE...HEAD``), and the commits ``BASE..HEAD``: when main moved on after the branch was made,
what main did meanwhile is not held against the pull request. A release is judged only on the
fields its own change touches. A renamed manifest is a removed one plus a new one; a new one
is only validated.

Every finding is a :class:`controller.manifests.Problem` located at the head manifest's field,
so the text, json and github output of ``relctl check`` have the same shape as validate's.
No platform call and no git write happen. Called by ``controller.cli``.

Incremental by content: validation outcomes are kept by blob id in the clone's own git
directory (``.git/relctl/validation-cache``, :func:`cache_path`; never in what is judged). A
pull request's next push validates the manifests whose blobs are new (plus the checks across
files, over everything), and only the changed manifests' releases are built and judged. The
file is rewritten only when a check validated enough manifests anew for it to pay
(:func:`_worth_saving`): a push that changes a handful validates them again next time. The
file is discarded (with a log line) when damaged or written by another relctl version or
schema set; the verdict is the same with or without it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from controller.access import Reason as AccessReason
from controller.access import TrustError, judge_range
from controller.gitops import (
    STATUS_DIR,
    GitError,
    GitTree,
    repository,
    resolve_revision,
    run_git,
)
from controller.manifests import (
    ACCESS_FILE,
    MANIFEST_SUFFIXES,
    RELEASES_DIR,
    YAML_SIZE_LIMIT,
    Access,
    LoadResult,
    Problem,
    Role,
    Severity,
    ValidationCache,
    load_repository,
    problem_at,
    release_key,
)
from controller.model import Release, Status
from controller.platform.rules import (
    CONFIGURATION_FROZEN_STAGES,
    RELEASED_STAGES,
    SUPERSEDE_REQUIRED_STAGES,
    Stage,
    Version,
)
from controller.repofiles import EntryKind, RepoFiles, Unreadable
from controller.status import parse_status

__all__ = ["CheckResult", "cache_path", "check_change"]

_SIGN = "sign the commit with the SSH key access.yaml records for you (policy.requireSignedCommits)"
#: How to fix a denial, by its reason.
_FORBIDDEN_HINTS: Mapping[str, str] = {
    AccessReason.NOT_A_MEMBER: "have a member with the right make this commit, or ask a master "
    "to add you to access.yaml in a change of its own",
    AccessReason.NO_RIGHT: "have a member with the right (a master, or an owner or developer of "
    "the mini program) make this commit, or ask a master to grant you the right in access.yaml "
    "in a change of its own",
    AccessReason.NOT_MASTER: "ask a master to make this change",
    AccessReason.UNTRUSTED_ACCESS: "access.yaml and relctl.yaml only change by a master's commit "
    "that leaves rules relctl can read: at least one master (with a signingKey when signed "
    "commits are required), and a readable policy",
    AccessReason.NOT_AUTHORIZED: "make every change in commits of the pull request, by members "
    "with the right; do not merge older versions of files into the branch",
    AccessReason.UNSIGNED: _SIGN,
    AccessReason.BAD_SIGNATURE: _SIGN,
    AccessReason.UNKNOWN_KEY: _SIGN,
}


@dataclass(frozen=True)
class CheckResult:
    """What :func:`check_change` found: every problem of the head revision and of the change."""

    #: Full commit shas the change was judged between.
    base: str
    head: str
    #: Validation problems of the head revision plus the change's own, sorted by location.
    problems: tuple[Problem, ...]
    #: Number of files validated at the head revision.
    files: int
    #: Manifests at head parsed and checked anew: the others' outcomes came from the cache
    #: (their blobs were validated before). Everything else in the result is the same.
    revalidated: int = 0

    @property
    def ok(self) -> bool:
        """True when there is no error (warnings allowed; ``--strict`` is the CLI's)."""
        return not self.errors

    @property
    def errors(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.severity is Severity.ERROR)

    @property
    def warnings(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.severity is Severity.WARNING)


def check_change(
    repo_root: Path, base: str, head: str = "HEAD", *, use_cache: bool = True
) -> CheckResult:
    """Validate ``head`` and judge the change from ``base`` to it (see the module docstring).

    ``use_cache``: keep per-manifest validation outcomes by blob id in the repository's git
    directory (:func:`cache_path`), so that a later check validates only the manifests whose
    content changed; the result is the same either way.

    Raises :class:`GitError` when ``base`` or ``head`` is not a commit of the repository, or
    when they share no history; never for anything in the repository's files.
    """
    base_sha = resolve_revision(repo_root, base)
    head_sha = resolve_revision(repo_root, head)
    fork_sha = _merge_base(repo_root, base_sha, head_sha)
    changed = _git_paths(repo_root, "diff", "--name-only", "-z", "--no-renames", fork_sha, head_sha)
    manifests = sorted(path for path in changed if _is_manifest(path))
    cache = ValidationCache.open(cache_path(repo_root)) if use_cache else None
    with repository(repo_root) as repo:
        head_tree = GitTree(repo, head_sha)
        # Of base and the merge base only the changed manifests, their status files and the
        # governance files are read: their directories are listed as they are visited.
        base_tree = GitTree(repo, base_sha, lazy=True)
        fork_tree = base_tree if fork_sha == base_sha else GitTree(repo, fork_sha, lazy=True)
        # Only the changed manifests' releases are judged: the others are validated (from
        # the cache when their blobs were seen before) but not built.
        judged = {key for key in map(release_key, manifests) if key is not None}
        after = load_repository(head_tree, cache=cache, only_releases=judged)
        revalidated = (
            cache.stats.misses if cache is not None else sum(map(_is_manifest, after.files))
        )
        change = _Change(
            head=head_tree,
            before=_releases(fork_tree, manifests, cache),
            main=_releases(base_tree, manifests, cache),
            after={r.key: r for r in after.releases},
            invalid=frozenset(after.invalid),
            statuses=_statuses(base_tree, manifests),
        )
        problems = list(after.problems)
        for file in manifests:
            problems.extend(change.judge(file))
        problems.extend(_status_edits(head_tree, changed))
        access = load_repository(base_tree, [ACCESS_FILE]).access
        problems.extend(_rollout_commands(repo_root, fork_sha, head_sha, change, access))
        problems.extend(_forbidden(repo_root, base_sha, head_sha))
    if cache is not None and _worth_saving(cache):
        cache.save()
    return CheckResult(
        base=base_sha,
        head=head_sha,
        problems=tuple(sorted(set(problems), key=lambda p: p.sort_key)),
        files=len(after.files),
        revalidated=revalidated,
    )


# --------------------------------------------------------------------------------------------
# The rules about one release's manifest
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Change:
    """The releases on both sides of the change, and what the controller observed at base.

    ``before`` is the merge base (what the change started from), ``main`` the base revision
    now, ``after`` the head revision; ``statuses`` are the status files at the base revision.
    """

    head: RepoFiles
    before: Mapping[str, Release]
    main: Mapping[str, Release]
    after: Mapping[str, Release]
    invalid: frozenset[str]
    statuses: Mapping[str, Status]

    def judge(self, file: str) -> Iterator[Problem]:
        key = release_key(file)
        if key is None:
            return  # validation reports the misplaced file
        before, after = self.before.get(key), self.after.get(key)
        if before is not None and before.path == file and after is None and key not in self.invalid:
            yield _removed(before)
        if before is None or after is None or after.path != file or before.path != file:
            return  # new (or renamed) manifests are only validated; invalid ones too
        rules = (
            self._version,
            self._grayscale,
            self._configuration,
            self._uncancel,
            self._supersede,
        )
        for rule in rules:
            found = rule(before, after, self.main.get(key), self.statuses.get(key))
            if found is not None:
                yield found

    def _at(
        self,
        release: Release,
        field: str,
        code: str,
        message: str,
        hint: str,
        severity: Severity = Severity.ERROR,
    ) -> Problem:
        return problem_at(
            self.head, release.path, ["spec", field], code, message, hint, severity=severity
        )

    def _version(
        self, before: Release, after: Release, main: Release | None, _status: Status | None
    ) -> Problem | None:
        old, new = before.spec.version, after.spec.version
        if new == old:
            return None
        floor, where = old, "the version this change started from"
        if main is not None and main.spec.version != old:
            if new == main.spec.version:
                return None  # main made the same change meanwhile
            if Version.parse(main.spec.version) > Version.parse(old):
                floor, where = main.spec.version, "the version on the base branch now"
        if Version.parse(new) > Version.parse(floor):
            return None
        return self._at(
            after,
            "version",
            "version-not-increasing",
            f"version {new} is not greater than {floor} ({where}): versions of "
            f"{after.key} only move forward",
            f"set version to an uploaded version greater than {floor}, "
            f"e.g. {Version.parse(floor).next_patch()}",
        )

    def _grayscale(
        self, before: Release, after: Release, main: Release | None, status: Status | None
    ) -> Problem | None:
        new = after.spec.grayscale
        if (
            after.spec.version != before.spec.version
            or new == before.spec.grayscale
            or after.spec.cancel
            # A rollout never lowers exposure: a step at or below what users have is done.
            or after.spec.rollout is not None
        ):
            return None
        floors = [(before.spec.grayscale, "in the manifest before this change")]
        if main is not None and main.spec.version == after.spec.version:
            floors.append((main.spec.grayscale, "in the manifest on the base branch"))
        if (
            status is not None
            and status.version == after.spec.version
            and status.stage in RELEASED_STAGES
        ):
            floors.append((status.grayscale, f"observed on {after.target_app} at base"))
        floor, where = max(floors, key=lambda pair: pair[0])
        if new >= floor:
            return None
        return self._at(
            after,
            "grayscale",
            "grayscale-decrease",
            f"grayscale {floor} -> {new}: lower than {floor}% ({where}); grayscale only rises",
            f"keep grayscale at {floor} or raise it; to roll back, set cancel: true (with "
            "grayscale: 0) to cancel this version, then release a fixed version",
        )

    def _configuration(
        self, before: Release, after: Release, _main: Release | None, status: Status | None
    ) -> Problem | None:
        version = after.spec.version
        if (
            version != before.spec.version
            or not after.spec.configuration  # empty: not managed, the platform's is kept
            or dict(after.spec.configuration) == dict(before.spec.configuration)
            or status is None
            or status.version != version
            or status.stage is None
        ):
            return None
        stage = status.stage
        if stage is Stage.UNDER_REVIEW:
            return self._at(
                after,
                "configuration",
                "configuration-in-review",
                f"{version} is under review on {after.target_app}: the controller will "
                "withdraw it, push the new configuration, test it and apply again",
                "fine if intended: the review starts over; otherwise revert the configuration",
                Severity.WARNING,
            )
        if stage not in CONFIGURATION_FROZEN_STAGES:
            return None
        return self._at(
            after,
            "configuration",
            "configuration-frozen",
            f"the configuration of {version} is frozen: it is {_stage_words(status)} on "
            f"{after.target_app} (observed at base), and only basic info, testers, grayscale "
            "and the release gates can still change",
            "revert the configuration change, or upload a new version with it and set "
            "version (and supersede: true if this one is still in flight)",
        )

    def _uncancel(
        self, before: Release, after: Release, _main: Release | None, status: Status | None
    ) -> Problem | None:
        version = after.spec.version
        if version != before.spec.version or not before.spec.cancel or after.spec.cancel:
            return None
        seen = ""
        if status is not None and status.version == version and status.stage is Stage.CANCELED:
            seen = f" ({version} is canceled on {after.target_app}, observed at base)"
        return self._at(
            after,
            "cancel",
            "uncancel",
            f"cancel: true -> false for {version}: a cancel is final for a version{seen}",
            "keep cancel: true; to release again, upload a new version and set version to it",
        )

    def _supersede(
        self, before: Release, after: Release, _main: Release | None, status: Status | None
    ) -> Problem | None:
        new = after.spec.version
        if (
            new == before.spec.version
            or after.spec.supersede
            or status is None
            or status.stage not in SUPERSEDE_REQUIRED_STAGES
            or status.version == new
            # a status file is untrusted: one whose version is not x.y.z still holds testers
            # or users in this stage, so replacing it still asks for supersede: true
            or (
                (observed := Version.parse_or_none(status.version)) is not None
                and observed >= Version.parse(new)
            )
        ):
            return None
        return self._at(
            after,
            "version",
            "supersede-required",
            f"version {status.version} -> {new}: {status.version} is "
            f"{_stage_words(status)} on {after.target_app} (observed at base); replacing it "
            "cancels it for its testers or users",
            f"set supersede: true to cancel {status.version} and release {new}, or wait "
            f"until {status.version} is fully released",
        )


def _removed(before: Release) -> Problem:
    return Problem(
        before.path,
        1,
        1,
        "",
        Severity.WARNING,
        "release-removed",
        f"{before.key} is no longer managed: the controller deletes its status and leaves "
        f"{before.spec.version} on {before.target_app} as it is",
        "to stop the release on the platform, set cancel: true instead of deleting the manifest",
    )


# --------------------------------------------------------------------------------------------
# The rules about the files and commits of the change
# --------------------------------------------------------------------------------------------


def _status_edits(head: RepoFiles, changed: Iterable[str]) -> Iterator[Problem]:
    for file in changed:
        if not file.startswith(f"{STATUS_DIR}/"):
            continue
        entry = head.entry(file)
        deleted = entry is None or entry.kind is not EntryKind.FILE
        yield Problem(
            file,
            1,
            1,
            "",
            Severity.ERROR,
            "status-edited",
            f"this change {'deletes' if deleted else 'edits'} {file}: status files are "
            "written by the controller only",
            f"revert it (git checkout <base> -- {file}); to change a release, edit its "
            f"manifest under {RELEASES_DIR}/",
        )


def _forbidden(repo_root: Path, base_sha: str, head_sha: str) -> Iterator[Problem]:
    """A ``forbidden`` problem per file a commit of the change changed without the right.

    :func:`controller.access.judge_range` judges every commit of ``merge-base..head`` under
    the ``access.yaml`` and ``relctl.yaml`` of the base (every path but ``status/``, which
    ``status-edited`` covers).
    """
    try:
        denials = judge_range(repo_root, base_sha, head_sha)
    except TrustError as exc:
        yield Problem(
            ACCESS_FILE,
            1,
            1,
            "",
            Severity.ERROR,
            "forbidden",
            f"no change can be authorized: {exc}",
            "a master must commit a valid access.yaml with at least one master on the base branch",
        )
        return
    for denial in denials:
        yield Problem(
            denial.path,
            1,
            1,
            "",
            Severity.ERROR,
            "forbidden",
            denial.message,
            _FORBIDDEN_HINTS.get(denial.reason, _FORBIDDEN_HINTS[AccessReason.NO_RIGHT]),
        )


# --------------------------------------------------------------------------------------------
# git and small helpers
# --------------------------------------------------------------------------------------------


#: Rollout fields only some roles may set: (field, who may, the roles that may).
_GUARDED_FIELDS = (
    ("abort", "relctl abort", (Role.OWNER, Role.MASTER)),
    ("full", "relctl promote --full", (Role.OWNER, Role.MASTER)),
    ("overrideFreeze", "the freeze-window override", (Role.MASTER,)),
)


def _rollout_commands(
    repo_root: Path, fork_sha: str, head_sha: str, change: _Change, access: Access | None
) -> Iterator[Problem]:
    """``abort`` and ``promote --full`` need an owner of the mini program or a master, the
    freeze override a master: every author of the change's commits to the manifest must be
    one (under the access.yaml of the base)."""
    for key, after in change.after.items():
        rollout = after.spec.rollout
        before = change.before.get(key)
        if rollout is None or before is None:
            continue
        old = before.spec.rollout
        set_now = {
            "abort": rollout.abort and not (old is not None and old.abort),
            "full": rollout.full and not (old is not None and old.full),
            "overrideFreeze": rollout.override_freeze
            and not (old is not None and old.override_freeze),
        }
        if not any(set_now.values()):
            continue
        log = _git(repo_root, "log", "--format=%ae", f"{fork_sha}..{head_sha}", "--", after.path)
        authors = sorted(set(log.split()))
        for field, words, roles in _GUARDED_FIELDS:
            if not set_now[field]:
                continue
            for email in authors:
                member = access.member(email) if access is not None else None
                allowed = member is not None and (
                    member.role is Role.MASTER
                    or (member.role in roles and after.mini_program in member.mini_programs)
                )
                if allowed:
                    continue
                who = " or ".join(f"{r}" for r in roles)
                yield problem_at(
                    change.head,
                    after.path,
                    ["spec", "rollout", field],
                    "rollout-command",
                    f"{email} may not use {words} on {after.key}: it needs a {who}"
                    + (" of the mini program" if Role.OWNER in roles else ""),
                    f"ask a {who} to make this commit",
                )


def _merge_base(repo_root: Path, base_sha: str, head_sha: str) -> str:
    out = _git(repo_root, "merge-base", base_sha, head_sha)
    if not out.strip():
        raise GitError(
            f"{base_sha[:7]} and {head_sha[:7]} share no history (a shallow clone? fetch the "
            "whole history, e.g. actions/checkout with fetch-depth: 0)"
        )
    return out.strip()


def _git_paths(repo_root: Path, *args: str) -> list[str]:
    """The NUL-separated paths a git command prints, deduplicated, in order."""
    return list(dict.fromkeys(p for p in _git(repo_root, *args).split("\0") if p.strip()))


def _git(repo_root: Path, *args: str) -> str:
    """stdout of ``git args`` (``merge-base`` without a common ancestor: "")."""
    done = run_git(repo_root, *args, ok=(0, 1) if args[0] == "merge-base" else (0,))
    return "" if done.status == 1 else done.text


#: Rewriting the cache file costs about this many manifest validations per entry it holds
#: (measured: ~3.5 us an entry to rewrite, ~0.1 ms to validate a manifest anew).
_REWRITE_COST = 1 / 30


def _worth_saving(cache: ValidationCache) -> bool:
    """Whether this check learned enough to rewrite the cache file: the cold run, or main
    moving far, yes; a pull request's next push, whose few new blobs cost less to validate
    again next time than rewriting every entry, no (its base's entries are all there)."""
    return cache.total.misses >= len(cache) * _REWRITE_COST


def cache_path(repo_root: Path) -> Path | None:
    """Where ``relctl check`` keeps its validation cache: ``relctl/validation-cache`` in
    the repository's (common) git directory, the clone's own and never part of what is
    judged; None when git cannot say where that is."""
    done = run_git(repo_root, "rev-parse", "--git-common-dir", ok=None)
    text = done.text.strip()
    if done.status != 0 or not text:
        return None
    return (repo_root / text).resolve() / "relctl" / "validation-cache"


def _releases(
    tree: RepoFiles, manifests: Sequence[str], cache: ValidationCache | None
) -> dict[str, Release]:
    """The valid releases among ``manifests`` in ``tree``, by key."""
    present = [file for file in manifests if _is_file(tree, file)]
    if not present:
        return {}
    loaded: LoadResult = load_repository(tree, present, cache=cache)
    return {r.key: r for r in loaded.releases}


def _statuses(tree: RepoFiles, manifests: Sequence[str]) -> dict[str, Status]:
    """The status files in ``tree`` of the releases ``manifests`` are about, by key."""
    found: dict[str, Status] = {}
    for key in sorted({k for k in map(release_key, manifests) if k is not None}):
        file = f"{STATUS_DIR}/{key}.yaml"
        try:
            data = tree.read(file, YAML_SIZE_LIMIT)
        except Unreadable:
            continue  # none, or not a regular file: no usable status
        parsed = parse_status(data, file=file)
        if parsed is not None:
            found[key] = parsed
    return found


def _is_file(tree: RepoFiles, path: str) -> bool:
    entry = tree.entry(path)
    return entry is not None and entry.kind is EntryKind.FILE


def _is_manifest(path: str) -> bool:
    return path.startswith(f"{RELEASES_DIR}/") and path.endswith(MANIFEST_SUFFIXES)


def _stage_words(status: Status) -> str:
    if status.stage is Stage.GRAYSCALE:
        return f"in grayscale at {status.grayscale}%"
    return {
        Stage.UNDER_REVIEW: "under review",
        Stage.PILOT_TESTING: "in pilot testing",
        Stage.RELEASE_PREPARATION: "approved (release preparation)",
        Stage.FULL_RELEASE: "fully released",
        Stage.CANCELED: "canceled",
        Stage.ARCHIVED: "archived",
    }.get(status.stage or Stage.BUILDING, str(status.phase))
