"""The whole release repository: find the files, load them, gather the result.

:func:`load_repository` is what ``reconcile`` calls once per pass and ``relctl validate``
formats: ``relctl.yaml`` and ``access.yaml`` (``config``), every manifest under
``releases/`` parsed and schema-checked (``documents``; from ``PARALLEL_THRESHOLD``
manifests on, in two processes), then the semantic checks (``releases``) in the caller.
With a :class:`~controller.manifests.cache.ValidationCache` (the daemon, ``relctl check``),
only manifests whose blob (or tester files, or relevant config) is new are read and checked;
the check across files (one manifest per release) runs over all of them every time.
"""

from __future__ import annotations

import heapq
import multiprocessing
import os
import posixpath
import threading
from collections import deque
from collections.abc import Collection, Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from controller.manifests.cache import Outcome, ValidationCache
from controller.manifests.config import ACCESS_FILE, CONFIG_FILE, Access, load_access, load_config
from controller.manifests.documents import (
    Document,
    as_files,
    check_chunk,
    check_document,
    read_document,
)
from controller.manifests.problems import (
    Located,
    Problem,
    Severity,
    file_problem,
    shown_path,
    unreadable_problem,
    yaml_problem,
)
from controller.manifests.quoting import quote
from controller.manifests.releases import (
    MANIFEST_SUFFIXES,
    RELEASES_DIR,
    ReleaseChecker,
    release_key,
)
from controller.manifests.schema import SCHEMA_FILES, check_schemas
from controller.manifests.testers import TESTER_SUFFIXES
from controller.manifests.yamlload import YAML_SIZE_LIMIT, load_yaml
from controller.model import API_VERSION, Release, RepoConfig
from controller.repofiles import (
    Entry,
    EntryKind,
    RepoFiles,
    Unreadable,
    UnreadableCode,
    WorkTree,
    check_path,
    collector_paused,
    kind_problem,
)

#: From this many manifests on, parsing and schema checks use a second process.
PARALLEL_THRESHOLD = 2000
#: Problems reported per file at most; one more problem counts the rest.
MAX_PROBLEMS_PER_FILE = 200


@dataclass(frozen=True)
class LoadResult:
    """Everything :func:`load_repository` found.

    ``config`` is None when ``relctl.yaml`` is missing or invalid: then no release is built
    (every release depends on its target app's rules) and the caller should act on nothing.
    ``access`` is None when ``access.yaml`` is absent, invalid or was not selected.
    """

    config: RepoConfig | None
    access: Access | None
    #: Valid releases, sorted by key.
    releases: tuple[Release, ...]
    #: Every error and warning, sorted by file, line, column.
    problems: tuple[Problem, ...]
    #: Problems of every manifest that has an error (its tester files' included), by key
    #: ``<mini-program>/<target-app>`` (from the path ``releases/<mp>/<app>.yaml``).
    invalid: Mapping[str, tuple[Problem, ...]] = field(default_factory=lambda: MappingProxyType({}))
    #: Repository-relative paths of the files that were checked.
    files: tuple[str, ...] = ()
    #: Directory prefixes (``releases/``, ``releases/<mp>/``) that could not be listed
    #: because they are a symbolic link, a submodule or not a directory. Their releases are
    #: unknown, not deleted: a caller must keep what it knows of releases under them.
    unreadable: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """True when there is no error (warnings allowed)."""
        return not any(p.severity is Severity.ERROR for p in self.problems)

    @property
    def errors(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.severity is Severity.ERROR)

    @property
    def warnings(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.severity is Severity.WARNING)


def load_repository(
    files: RepoFiles | Path,
    paths: Sequence[str | os.PathLike[str]] | None = None,
    *,
    workers: int | None = None,
    cache: ValidationCache | None = None,
    only_releases: Collection[str] | None = None,
) -> LoadResult:
    """Load and validate the release repository read through ``files``.

    ``files`` is a :class:`~controller.repofiles.RepoFiles` (``GitTree`` for a commit); a
    directory means its :class:`~controller.repofiles.WorkTree`. Nothing is read except
    through it: no link is followed, no file over its limit is read, and whatever is not a
    regular file where a file is expected is a located problem of that path alone.

    ``paths`` (repository-relative; absolute ones only for a work tree) narrows the check:
    manifests, directories (every manifest below), tester files (every manifest of that mini
    program), ``relctl.yaml`` (every manifest: its rules apply to all), ``access.yaml``, or
    any other YAML file (checked against the schema its ``kind`` names, without semantic
    checks). ``relctl.yaml`` is always loaded and its problems always reported: every release
    depends on it. ``workers``: processes for parsing (None: 2 for large repositories).
    ``cache``: per-manifest outcomes by content (:class:`ValidationCache`): a manifest whose
    blob, tester files and relevant config did not change is neither read nor checked again;
    the result is the same as without it, and the cross-file checks run over every manifest.
    ``only_releases``: the release keys whose :class:`~controller.model.Release` the caller
    needs (None: all); the others are validated all the same (problems, ``invalid``) but left
    out of ``releases``, which spares decoding them from the cache (``relctl check``).
    Raises ``ValueError`` for a path outside the repository and :class:`SchemaSetError` when
    relctl's own schemas are broken; never for anything in the repository.
    """
    with collector_paused():
        return _load(files, paths, workers, cache, only_releases)


def _load(
    files: RepoFiles | Path,
    paths: Sequence[str | os.PathLike[str]] | None,
    workers: int | None,
    cache: ValidationCache | None,
    only_releases: Collection[str] | None,
) -> LoadResult:
    files = as_files(files)
    check_schemas()
    selection = _select(files, paths)
    problems: list[Problem] = list(selection.problems)
    config, config_problems = load_config(files)
    problems.extend(config_problems)
    access: Access | None = None
    if selection.want_access:
        signed = config is not None and config.require_signed_commits
        access, access_problems = load_access(files, require_signed=signed)
        problems.extend(access_problems)
    manifests = sorted(selection.manifests)
    checker = ReleaseChecker(files, config, selection.listings)
    session = cache.session(files, config) if cache is not None else None
    outcomes: list[tuple[str, Outcome]] = []
    todo: list[str] = manifests
    keys = {file: release_key(file) for file in manifests}
    if session is not None:
        todo = []
        for file in manifests:
            key = keys[file]
            wanted = key is not None and (only_releases is None or key in only_releases)
            hit = session.lookup(file, release=wanted) if key is not None else None
            if hit is None:
                todo.append(file)
            else:
                outcomes.append((file, hit))
    for doc in _check_documents(files, todo, workers):
        if doc.file not in selection.manifests:  # refused before reading: an odd name
            problems.extend(doc.problems)
            continue
        if keys.get(doc.file) is None:
            problems.append(
                file_problem(
                    doc.file,
                    "manifest-path",
                    f"{doc.file} is not at releases/<mini-program>/<target-app>.yaml",
                    "move the manifest; tester files belong next to it as .csv or .txt",
                )
            )
            continue
        if doc.ok:
            release, found = checker.check(doc, duplicates=False)
            outcome = Outcome(release, tuple(found), checked=True)
        else:
            found = list(doc.problems)
            outcome = Outcome(None, doc.problems, checked=False)
        if session is not None and not any(p.code == UnreadableCode.UNREADABLE for p in found):
            session.store(doc.file, outcome, checker.consulted if doc.ok else ())
        outcomes.append((doc.file, outcome))
    releases: list[Release] = []
    invalid: dict[str, list[Problem]] = {k: list(v) for k, v in selection.keyed.items()}
    for file, outcome in outcomes:
        key = keys[file]
        assert key is not None
        release, found = outcome.release, list(outcome.problems)
        # The one check across files runs every time, cached outcome or not.
        twin = checker.duplicate(file, key) if outcome.checked else None
        if twin is not None:
            found.append(twin)
            release = None
        problems.extend(found)
        if release is not None:
            if only_releases is None or key in only_releases:
                releases.append(release)
        elif outcome.valid and twin is None:
            pass  # valid, from the cache, and not asked for: not built
        elif found:
            invalid.setdefault(key, []).extend(found)
    for file in sorted(selection.others):
        problems.extend(_check_standalone(files, file).problems)
    checked = [*manifests, *selection.others, CONFIG_FILE]
    if selection.want_access and files.entry(ACCESS_FILE) is not None:
        checked.append(ACCESS_FILE)
    return LoadResult(
        config=config,
        access=access,
        releases=tuple(sorted(releases, key=lambda r: r.key)),
        problems=_capped(problems),
        invalid=MappingProxyType({k: _capped(v) for k, v in sorted(invalid.items())}),
        files=tuple(sorted(set(checked))),
        unreadable=tuple(sorted(selection.unreadable)),
    )


def _capped(problems: Sequence[Problem]) -> tuple[Problem, ...]:
    """The problems without duplicates, sorted, at most :data:`MAX_PROBLEMS_PER_FILE` per
    file and then one that counts the rest: a hostile file of 100,000 bad ids gives a page
    of output (and a bounded status), not 100,000 lines."""
    by_file: dict[str, set[Problem]] = {}
    for problem in problems:
        by_file.setdefault(problem.file, set()).add(problem)
    out: list[Problem] = []
    for file, found in by_file.items():
        if len(found) <= MAX_PROBLEMS_PER_FILE:
            out.extend(found)
            continue
        first = heapq.nsmallest(MAX_PROBLEMS_PER_FILE + 1, found, key=lambda p: p.sort_key)
        out.extend(first[:-1])
        errors = any(p.severity is Severity.ERROR for p in found - set(first[:-1]))
        out.append(
            Problem(
                file, first[-1].line, first[-1].column, "",
                Severity.ERROR if errors else Severity.WARNING, "more-problems",
                f"{len(found) - MAX_PROBLEMS_PER_FILE:,} more problems in this file are not shown",
                "fix the problems shown and validate again",
            )
        )  # fmt: skip
    return tuple(sorted(out, key=lambda p: p.sort_key))


# --------------------------------------------------------------------------------------------
# Which files: the scan of releases/ and the paths a caller names
# --------------------------------------------------------------------------------------------


@dataclass
class _Selection:
    """What to load, and what the scan refused on the way."""

    manifests: set[str] = field(default_factory=set)
    others: set[str] = field(default_factory=set)
    want_access: bool = False
    #: Entries that are not what they must be (links, submodules, odd names).
    problems: list[Problem] = field(default_factory=list)
    #: The same problems for entries at a release's path, by release key.
    keyed: dict[str, list[Problem]] = field(default_factory=dict)
    unreadable: set[str] = field(default_factory=set)
    #: Names in each directory listed, for the checker's duplicate-release rule.
    listings: dict[str, frozenset[str]] = field(default_factory=dict)

    def scan(self, files: RepoFiles, entry: Entry) -> None:
        """Every manifest at or below ``entry`` (a path under ``releases/``, or itself)."""
        path = entry.path
        depth = path.count("/")  # releases: 0, releases/<mp>: 1, releases/<mp>/<file>: 2
        kind = entry.kind
        if kind is EntryKind.DIRECTORY:
            if depth > 0 and entry.name.startswith("."):
                return  # hidden directories (.git, editors' folders) hold no release
            if self._odd_name(entry, depth):
                return
            children = files.children(path)
            self.listings[path] = frozenset(child.name for child in children)
            for child in children:
                self.scan(files, child)
            return
        is_manifest = entry.name.endswith(MANIFEST_SUFFIXES)
        if kind is EntryKind.FILE:
            if is_manifest and not self._odd_name(entry, depth):
                self.manifests.add(path)
            return
        if depth <= 1 or is_manifest:
            refused = kind_problem(entry)
            self._refuse(path, depth, refused.message, refused.hint, refused.code)

    def _odd_name(self, entry: Entry, depth: int) -> bool:
        """Refuse (and say True for) a path that is not a plain repository path."""
        odd = check_path(entry.path)
        if odd is not None:
            shown = shown_path(entry.path)
            self._refuse(entry.path, depth, f"{shown}: {odd}", _ODD_NAME_HINT)
        return odd is not None

    def _refuse(
        self,
        path: str,
        depth: int,
        message: str,
        hint: str,
        code: UnreadableCode = UnreadableCode.BAD_PATH,
    ) -> None:
        problem = unreadable_problem(Unreadable(path, code, message, hint))
        self.problems.append(problem)
        if depth <= 1:  # releases/ itself or a mini program's directory: cannot be listed
            self.unreadable.add(f"{path}/")
        key = release_key(path) if check_path(path) is None else None
        if key is not None:
            self.keyed.setdefault(key, []).append(problem)


_ODD_NAME_HINT = "rename it with printable characters and '/' separators only"


def _select(files: RepoFiles, paths: Sequence[str | os.PathLike[str]] | None) -> _Selection:
    """What :func:`load_repository` loads for ``paths`` (None: the whole repository)."""
    selection = _Selection()
    if paths is None:
        _scan_releases(files, selection, RELEASES_DIR)
        selection.want_access = True
        return selection
    for given in paths:
        rel = _relative(files, given)
        entry = files.entry(rel)
        if rel == "":
            _scan_releases(files, selection, RELEASES_DIR)
            selection.want_access = True
        elif rel == CONFIG_FILE:  # its rules apply to every manifest: check them all
            _scan_releases(files, selection, RELEASES_DIR)
        elif rel == ACCESS_FILE:
            selection.want_access = True
        elif not (rel == RELEASES_DIR or rel.startswith(f"{RELEASES_DIR}/")):
            if entry is None or entry.kind is not EntryKind.DIRECTORY:
                selection.others.add(rel)
        elif rel.lower().endswith(TESTER_SUFFIXES):
            parts = rel.split("/")
            if len(parts) > 2:
                _scan_releases(files, selection, f"{RELEASES_DIR}/{parts[1]}")
        elif entry is None or entry.kind is EntryKind.FILE:
            selection.manifests.add(rel)  # a missing one is reported by the read
        else:
            _scan_releases(files, selection, rel)
    return selection


def _scan_releases(files: RepoFiles, selection: _Selection, path: str) -> None:
    entry = files.entry(path)
    if entry is not None:
        selection.scan(files, entry)


def _relative(files: RepoFiles, given: str | os.PathLike[str]) -> str:
    """A caller's path as a repository path ("" for the top)."""
    text = os.fspath(given)
    root = files.root if isinstance(files, WorkTree) else None
    if root is not None:
        full = Path(os.path.abspath(text if os.path.isabs(text) else root / text))
        if not full.is_relative_to(root):
            raise ValueError(f"{given} is outside the repository {root}")
        rel = full.relative_to(root).as_posix()
    else:
        rel = posixpath.normpath(text.replace(os.sep, "/"))
        if rel.startswith(("/", "../")) or rel == "..":
            raise ValueError(f"{given} is outside the repository")
    return "" if rel == "." else rel


# --------------------------------------------------------------------------------------------
# Parsing and schema checks, in one or two processes
# --------------------------------------------------------------------------------------------

#: Files in one batch: what a worker process is sent at a time, and what the caller parses
#: itself when it would otherwise wait (small enough that neither side idles long at the end).
_BATCH = 500
#: Batches queued for the workers ahead of the one the caller waits on: enough that a worker
#: never waits for the caller to read the next one.
_AHEAD = 4


def _check_documents(
    files: RepoFiles, manifests: Sequence[str], workers: int | None
) -> Iterator[Document]:
    """Read every manifest here, through ``files``; parse and schema-check them here and, for
    large repositories, in worker processes that are sent bytes, never paths.

    The work is shared by stealing, not by a fixed split: batches are queued for the workers
    a few ahead, and whenever the oldest is not done yet the caller parses the next unsent
    batch itself instead of waiting. Documents come as they are ready (not in path order),
    so the caller's semantic checks overlap the workers' parsing, and whichever side is
    faster on this machine does more of it.
    """
    if workers is None:
        workers = 2 if len(manifests) >= PARALLEL_THRESHOLD and (os.cpu_count() or 1) > 1 else 1
    if workers <= 1 or len(manifests) < 2:
        yield from (read_document(files, file, "Release") for file in manifests)
        return
    # fork is cheap (nothing to import again) but unsafe once threads run (the daemon):
    # then forkserver, which costs a fresh interpreter importing this module.
    method = "fork" if threading.active_count() == 1 and os.name == "posix" else "forkserver"
    context = multiprocessing.get_context(method)
    try:
        pool = ProcessPoolExecutor(max_workers=workers - 1, mp_context=context)
    except OSError:  # no processes to be had: do it all here
        yield from (read_document(files, file, "Release") for file in manifests)
        return
    batches = deque(manifests[start : start + _BATCH] for start in range(0, len(manifests), _BATCH))
    sent: deque[tuple[list[tuple[str, bytes]], Future[list[Document]] | None]] = deque()
    with pool:
        while batches or sent:
            while batches and len(sent) < _AHEAD * (workers - 1):
                read, refused = _read_batch(files, batches.popleft())
                yield from refused
                try:
                    sent.append((read, pool.submit(check_chunk, "Release", read)))
                except (OSError, RuntimeError):  # a broken pool: this batch is parsed here
                    sent.append((read, None))
            read, future = sent[0]
            if future is not None and not future.done():
                if batches:  # steal the last unsent batch
                    read, refused = _read_batch(files, batches.pop())
                    yield from refused
                    yield from check_chunk("Release", read)
                    continue
                last_read, last = sent[-1]
                if len(sent) > 1 and last is not None and last.cancel():  # not started: take it
                    sent.pop()
                    yield from check_chunk("Release", last_read)
                    continue
            sent.popleft()
            try:
                done = future.result() if future is not None else None
            except (OSError, BrokenProcessPool):
                done = None
            yield from done if done is not None else check_chunk("Release", read)


def _read_batch(
    files: RepoFiles, batch: Sequence[str]
) -> tuple[list[tuple[str, bytes]], list[Document]]:
    """(the bytes of every readable file, the documents of those refused)."""
    read: list[tuple[str, bytes]] = []
    refused: list[Document] = []
    for file in batch:
        try:
            read.append((file, files.read(file, YAML_SIZE_LIMIT)))
        except Unreadable as exc:
            refused.append(Document(shown_path(file), None, (unreadable_problem(exc),)))
    return read, refused


def _check_standalone(files: RepoFiles, file: str) -> Document:
    """A YAML file outside the repository layout (e.g. ``examples/``): schema by ``kind``."""
    try:
        data = files.read(file, YAML_SIZE_LIMIT)
    except Unreadable as exc:
        return Document(shown_path(file), None, (unreadable_problem(exc),))
    loaded = load_yaml(data)
    if loaded.problem is not None:
        return Document(file, None, (yaml_problem(file, loaded.problem),))
    kind = loaded.value.get("kind") if isinstance(loaded.value, dict) else None
    if kind not in SCHEMA_FILES:
        at = Located(file, loaded.text)
        return Document(
            file,
            None,
            (
                at.problem(
                    ["kind"],
                    "unknown-kind",
                    f"kind {quote(kind)} is not one of {', '.join(SCHEMA_FILES)}",
                    f"apiVersion: {API_VERSION} files have kind Release, Config or Access",
                ),
            ),
        )
    return check_document(file, data, str(kind))
