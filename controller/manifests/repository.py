"""The whole release repository: find the files, load them, gather the result.

:func:`load_repository` is what ``reconcile`` calls once per pass and ``relctl validate``
formats: ``relctl.yaml`` and ``access.yaml`` (``config``), every manifest under
``releases/`` parsed and schema-checked (``documents``; from ``PARALLEL_THRESHOLD``
manifests on, in two processes), then the semantic checks (``releases``) in the caller.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from types import MappingProxyType

from controller.manifests.config import ACCESS_FILE, CONFIG_FILE, Access, load_access, load_config
from controller.manifests.documents import Document, check_document
from controller.manifests.problems import Located, Problem, Severity, file_problem, yaml_problem
from controller.manifests.releases import (
    MANIFEST_SUFFIXES,
    RELEASES_DIR,
    ReleaseChecker,
    release_key,
)
from controller.manifests.schema import SCHEMA_FILES, check_schemas
from controller.manifests.testers import TESTER_SUFFIXES
from controller.manifests.yamlload import load_yaml
from controller.model import API_VERSION, Release, RepoConfig

#: From this many manifests on, parsing and schema checks use a second process.
PARALLEL_THRESHOLD = 2000


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
    root: Path, paths: Sequence[Path] | None = None, *, workers: int | None = None
) -> LoadResult:
    """Load and validate the release repository at ``root``.

    ``paths`` (absolute, or relative to ``root``) narrows the check: manifests, directories
    (every manifest below), tester files (every manifest of that mini program), ``relctl.yaml``
    (every manifest: its rules apply to all), ``access.yaml``,
    or any other YAML file (checked against the schema its ``kind`` names, without semantic
    checks). ``relctl.yaml`` is always loaded and its problems always reported: every release
    depends on it. ``workers``: processes for parsing (None: 2 for large repositories).
    Raises ``ValueError`` for a path outside ``root`` and :class:`SchemaSetError` when relctl's
    own schemas are broken; never for anything in the repository.
    """
    root = Path(os.path.abspath(root))
    check_schemas()
    manifests, others, want_access = _select(root, paths)
    problems: list[Problem] = []
    config, config_problems = load_config(root)
    problems.extend(config_problems)
    access: Access | None = None
    if want_access:
        access, access_problems = load_access(root)
        problems.extend(access_problems)
    documents = _check_documents(root, manifests, workers)
    checker = ReleaseChecker(root, config)
    releases: list[Release] = []
    invalid: dict[str, tuple[Problem, ...]] = {}
    for doc in documents:
        key = release_key(doc.file)
        if key is None:
            depth_problem = file_problem(
                doc.file,
                "manifest-path",
                f"{doc.file} is not at releases/<mini-program>/<target-app>.yaml",
                "move the manifest; tester files belong next to it as .csv or .txt",
            )
            problems.append(depth_problem)
            continue
        if doc.ok:
            release, found = checker.check(doc)
        else:
            release, found = None, list(doc.problems)
        problems.extend(found)
        if release is not None:
            releases.append(release)
        elif found:
            invalid[key] = tuple(sorted(set(found), key=lambda p: p.sort_key))
    for file in others:
        problems.extend(_check_standalone(root, file).problems)
    checked = [*manifests, *others, CONFIG_FILE]
    if want_access and (root / ACCESS_FILE).is_file():
        checked.append(ACCESS_FILE)
    return LoadResult(
        config=config,
        access=access,
        releases=tuple(sorted(releases, key=lambda r: r.key)),
        problems=tuple(sorted(set(problems), key=lambda p: p.sort_key)),
        invalid=MappingProxyType(dict(sorted(invalid.items()))),
        files=tuple(sorted(set(checked))),
    )


def _select(root: Path, paths: Sequence[Path] | None) -> tuple[list[str], list[str], bool]:
    """(manifest files, other YAML files, whether access.yaml is checked), repo-relative."""
    if paths is None:
        return _manifests_under(root, root / RELEASES_DIR), [], True
    manifests: set[str] = set()
    others: set[str] = set()
    want_access = False
    for given in paths:
        full = Path(os.path.abspath(given if given.is_absolute() else root / given))
        if not full.is_relative_to(root):
            raise ValueError(f"{given} is outside the repository {root}")
        rel = full.relative_to(root).as_posix()
        if full.is_dir():
            manifests.update(_manifests_under(root, full))
            if full == root:
                want_access = True
        elif rel == CONFIG_FILE:  # its rules apply to every manifest: check them all
            manifests.update(_manifests_under(root, root / RELEASES_DIR))
        elif rel == ACCESS_FILE:
            want_access = True
        elif rel.startswith(f"{RELEASES_DIR}/") and rel.lower().endswith(TESTER_SUFFIXES):
            parts = PurePosixPath(rel).parts
            if len(parts) > 2:
                manifests.update(m for m in _manifests_under(root, root / RELEASES_DIR / parts[1]))
        elif rel.startswith(f"{RELEASES_DIR}/"):
            manifests.add(rel)
        else:
            others.add(rel)
    return sorted(manifests), sorted(others), want_access


def _manifests_under(root: Path, directory: Path) -> list[str]:
    """Every ``*.yaml``/``*.yml`` below ``directory`` that belongs to ``releases/``."""
    found: list[str] = []
    for current, dirs, files in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        base = Path(current).relative_to(root).as_posix()
        if base != RELEASES_DIR and not base.startswith(f"{RELEASES_DIR}/"):
            continue
        found.extend(f"{base}/{name}" for name in files if name.endswith(MANIFEST_SUFFIXES))
    return sorted(found)


def _check_documents(root: Path, files: Sequence[str], workers: int | None) -> list[Document]:
    if workers is None:
        workers = 2 if len(files) >= PARALLEL_THRESHOLD and (os.cpu_count() or 1) > 1 else 1
    if workers <= 1 or len(files) < 2:
        return _check_chunk(str(root), list(files))
    # The caller's process takes the first share; workers - 1 processes take the rest.
    share = -(-len(files) // workers)
    chunks = [list(files[i : i + share]) for i in range(0, len(files), share)]
    # fork is cheap (nothing to import again) but unsafe once threads run (the daemon):
    # then forkserver, which costs a fresh interpreter importing this module.
    method = "fork" if threading.active_count() == 1 and os.name == "posix" else "forkserver"
    context = multiprocessing.get_context(method)
    try:
        with ProcessPoolExecutor(max_workers=len(chunks) - 1, mp_context=context) as pool:
            futures = [pool.submit(_check_chunk, str(root), chunk) for chunk in chunks[1:]]
            results = _check_chunk(str(root), chunks[0])
            for future in futures:
                results.extend(future.result())
    except (OSError, BrokenProcessPool):  # no processes to be had: do it all here
        return _check_chunk(str(root), list(files))
    return results


def _check_chunk(root: str, files: list[str]) -> list[Document]:
    """Parse and schema-check manifests (runs in the caller and in worker processes)."""
    return [check_document(root, file, "Release") for file in files]


def _check_standalone(root: Path, file: str) -> Document:
    """A YAML file outside the repository layout (e.g. ``examples/``): schema by ``kind``."""
    loaded = load_yaml((root / file).read_bytes()) if (root / file).is_file() else None
    if loaded is None or loaded.problem is not None:
        if loaded is None:
            return Document(file, None, (file_problem(file, "unreadable", "not a file"),))
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
                    f"kind {kind!r} is not one of {', '.join(SCHEMA_FILES)}",
                    f"apiVersion: {API_VERSION} files have kind Release, Config or Access",
                ),
            ),
        )
    return check_document(root, file, str(kind))
