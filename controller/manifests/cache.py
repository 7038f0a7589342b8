"""Validation results by content: a manifest whose blob did not change is not parsed again.

:func:`~controller.manifests.repository.load_repository` takes a :class:`ValidationCache`
(``load_repository(files, cache=cache)``); ``reconcile`` keeps one for the daemon's life
(``ValidationCache.open(<workdir>/cache/validation)``, :meth:`ValidationCache.save` after a
pass) and ``relctl check`` keeps one in the repository's git directory.

What is cached is the per-file outcome of a Release manifest: its parse, schema check and
semantic checks, as a :class:`~controller.model.Release` (or none) and its problems. The key
is everything that outcome depends on:

- the manifest's git blob id (computed from its bytes when the files are a work tree) and its
  path (the path names the release: ``metadata`` must match it);
- the parts of ``relctl.yaml`` the checks read (target apps, the platform, analysis
  templates: :func:`config_digest`); a ``stopTheLine`` or a notification change keeps every
  entry;
- relctl's version, the schemas and the code of the checks (:func:`cache_version`: a file of
  another version is discarded whole);
- and, checked on every hit, what each tester file the manifest names was when the entry
  was made (blob id, or missing, or a link...).

Cross-file checks (one manifest per release: ``x.yaml`` beside ``x.yml``) are not cached:
``load_repository`` runs them over every manifest every time. The file format and its
safety are :class:`controller.blobcache.BlobCache`'s; entries are JSON, decoded into typed
values by this module only, and an entry that does not decode is dropped (a miss).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Any

from controller import __version__
from controller.blobcache import DEFAULT_MAX_ENTRIES, BlobCache
from controller.manifests.problems import Problem, Severity
from controller.manifests.schema import SCHEMA_DIR, SCHEMA_FILES
from controller.manifests.testers import TESTERS_SIZE_LIMIT
from controller.manifests.yamlload import YAML_SIZE_LIMIT
from controller.model import (
    AnalysisTemplate,
    Compatibility,
    OnFailure,
    Pilot,
    Release,
    ReleaseSpec,
    RepoConfig,
    Rollout,
    RolloutStep,
    StepKind,
    WaveGate,
)
from controller.repofiles import EntryKind, RepoFiles, Unreadable

__all__ = ["CacheStats", "Outcome", "ValidationCache", "cache_version", "config_digest"]

#: The modules whose code decides a cached outcome: a change to any of them is a new version.
_CODE = (
    "controller.model",
    "controller.rollout",
    "controller.platform.capabilities",
    "controller.manifests.cache",
    "controller.manifests.documents",
    "controller.manifests.patterns",
    "controller.manifests.problems",
    "controller.manifests.quoting",
    "controller.manifests.releases",
    "controller.manifests.testers",
    "controller.manifests.yamlload",
)


@cache
def cache_version() -> str:
    """relctl's version, and digests of the shipped schemas and of the checks' code."""
    import importlib.util

    schemas = hashlib.sha256()
    for name in sorted(SCHEMA_FILES.values()):
        schemas.update(name.encode() + b"\0" + (SCHEMA_DIR / name).read_bytes())
    code = hashlib.sha256()
    for module in _CODE:
        spec = importlib.util.find_spec(module)
        origin = spec.origin if spec is not None else None
        try:
            code.update(module.encode() + b"\0" + Path(origin or "").read_bytes())
        except OSError:  # no source (a frozen build): the version alone
            code.update(module.encode() + b"\0?")
    return f"relctl {__version__} schemas {schemas.hexdigest()[:16]} code {code.hexdigest()[:16]}"


def config_digest(config: RepoConfig | None) -> str:
    """Digest of what the per-file checks read from ``relctl.yaml`` ("none" without one)."""
    if config is None:
        return "none"
    relevant = (
        tuple(config.target_apps.items()),
        config.platform,
        tuple(config.analysis_templates.items()),
    )
    return hashlib.sha256(repr(relevant).encode()).hexdigest()[:32]


def blob_id(data: bytes) -> str:
    """The git blob id of ``data`` (``git hash-object``)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


@dataclass(frozen=True)
class Outcome:
    """The cached result of one manifest: what ``load_repository`` makes of it alone."""

    #: The release, when the manifest is valid on its own (and the caller asked for it).
    release: Release | None
    #: Its problems (the manifest's and its tester files').
    problems: tuple[Problem, ...]
    #: False when the document did not parse or failed its schema (no semantic check ran).
    checked: bool
    #: (path, fingerprint) of every tester file path the checks looked at.
    depends: tuple[tuple[str, str], ...] = ()
    #: True when the manifest makes a release, whether or not :attr:`release` is built.
    valid: bool = False


@dataclass
class CacheStats:
    """Counts of the last :func:`load_repository` with this cache (and in total)."""

    hits: int = 0
    misses: int = 0
    #: Entries found but unusable (a tester file changed, or the entry did not decode).
    stale: int = 0


class ValidationCache:
    """Per-manifest validation outcomes by content, in memory and optionally in a file.

    One load at a time (the daemon's passes are sequential); not for concurrent threads.
    Files in a work tree are keyed by the blob id of their bytes, read once more for it.
    """

    def __init__(self, store: BlobCache) -> None:
        self._store = store
        self._memory: dict[str, Outcome] = {}
        self.stats = CacheStats()
        self.total = CacheStats()

    @classmethod
    def open(cls, path: Path | None, *, max_entries: int = DEFAULT_MAX_ENTRIES) -> ValidationCache:
        """The cache kept in the file ``path`` (None: memory only). A damaged file, or one
        of another relctl version or schema set, is discarded with a log line."""
        return cls(BlobCache.open(path, cache_version(), max_entries=max_entries))

    @property
    def path(self) -> Path | None:
        return self._store.path

    def __len__(self) -> int:
        return len(self._store) if self._store.path is not None else len(self._memory)

    def save(self) -> bool:
        """Write the file (atomically) if anything changed; False when nothing was written."""
        return self._store.save()

    def session(self, files: RepoFiles, config: RepoConfig | None) -> CacheSession:
        """The lookups of one load of ``files`` under ``config`` (resets :attr:`stats`)."""
        self.stats = CacheStats()
        return CacheSession(self, files, config)

    # -- used by CacheSession -------------------------------------------------------------

    def _get(self, key: str, config: RepoConfig | None, release: bool) -> Outcome | None:
        """The entry of ``key``; its release decoded only when ``release`` is asked for
        (decoding is most of a hit's cost, and ``relctl check`` needs a handful)."""
        found = self._memory.pop(key, None)
        if found is not None:
            self._memory[key] = found
            if self._store.path is not None:
                self._store.get(key)  # keep the file's order in step
            return found
        text = self._store.get(key) if self._store.path is not None else None
        if text is None:
            return None
        try:
            found = decode_outcome(text, config, release=release)
        except (ValueError, TypeError, KeyError, IndexError, AttributeError):
            self._store.discard(key)
            return None
        if found.release is not None or not found.valid:
            self._remember(key, found)  # complete: memory may answer next time
        return found

    def _put(self, key: str, outcome: Outcome) -> None:
        self._remember(key, outcome)
        if self._store.path is not None:
            self._store.put(key, encode_outcome(outcome))

    def _remember(self, key: str, outcome: Outcome) -> None:
        self._memory[key] = outcome
        while len(self._memory) > self._store.max_entries:
            del self._memory[next(iter(self._memory))]

    def _drop(self, key: str) -> None:
        self._memory.pop(key, None)
        self._store.discard(key)


class CacheSession:
    """One load's view of a :class:`ValidationCache`: keys under one config, and the tester
    files' fingerprints computed once for the load."""

    def __init__(self, cache: ValidationCache, files: RepoFiles, config: RepoConfig | None):
        self._cache = cache
        self._files = files
        self._config = config
        self._config_digest = config_digest(config)
        self._fingerprints: dict[str, str] = {}
        self._keys: dict[str, str] = {}
        #: Blob ids computed from a work tree's bytes (git trees give theirs), by path.
        self._blobs: dict[str, str | None] = {}

    def lookup(self, file: str, *, release: bool = True) -> Outcome | None:
        """The cached outcome of manifest ``file`` if its blob and tester files are unchanged
        (``release=False``: its :attr:`Outcome.release` may be left unbuilt)."""
        key = self._key(file)
        if key is None:
            self._count("misses")
            return None
        found = self._cache._get(key, self._config, release)
        if found is None:
            self._count("misses")
            return None
        if any(self.fingerprint(path) != seen for path, seen in found.depends):
            self._cache._drop(key)
            self._count("stale")
            self._count("misses")
            return None
        self._count("hits")
        return found

    def store(self, file: str, outcome: Outcome, consulted: Sequence[str]) -> None:
        """Remember ``outcome`` for ``file`` (read at this load), with the tester file paths
        the checks ``consulted``."""
        key = self._key(file)
        if key is None:
            return
        if self._blobs.get(file) is not None and self._blob(file) != self._blobs[file]:
            return  # a work tree's file changed during the load: what was parsed is unknown
        depends = tuple((path, self.fingerprint(path)) for path in dict.fromkeys(consulted))
        kept = Outcome(
            outcome.release, outcome.problems, outcome.checked, depends, outcome.release is not None
        )
        self._cache._put(key, kept)

    def fingerprint(self, path: str) -> str:
        """What ``path`` is now: its blob id, or why it is not a readable file."""
        found = self._fingerprints.get(path)
        if found is None:
            found = self._fingerprints[path] = _fingerprint(self._files, path)
        return found

    def _key(self, file: str) -> str | None:
        key = self._keys.get(file)
        if key is None:
            entry = self._files.entry(file)
            if entry is None or entry.kind is not EntryKind.FILE or entry.size > YAML_SIZE_LIMIT:
                return None  # refused by the read: nothing to cache
            oid = entry.oid
            if oid is None:  # a work tree: the blob id of what is there now
                oid = self._blobs[file] = self._blob(file)
                if oid is None:
                    return None
            raw = f"{self._config_digest}\0{oid}\0{file}".encode("utf-8", "surrogateescape")
            key = self._keys[file] = hashlib.sha256(raw).hexdigest()
        return key

    def _blob(self, file: str) -> str | None:
        """The blob id of a work tree's ``file`` as it is now (None: unreadable)."""
        try:
            return blob_id(self._files.read(file, YAML_SIZE_LIMIT))
        except Unreadable:
            return None

    def _count(self, name: str) -> None:
        for stats in (self._cache.stats, self._cache.total):
            if name == "hits":
                stats.hits += 1
            elif name == "misses":
                stats.misses += 1
            else:
                stats.stale += 1


def _fingerprint(files: RepoFiles, path: str) -> str:
    entry = files.entry(path)
    if entry is None:
        return "missing"
    if entry.kind is not EntryKind.FILE:
        return str(entry.kind)
    if entry.size > TESTERS_SIZE_LIMIT:
        return f"too-large {entry.size}"
    if entry.oid is not None:
        return entry.oid
    try:
        return blob_id(files.read(path, TESTERS_SIZE_LIMIT))
    except Unreadable as exc:
        return f"unreadable {exc.code}"


# --------------------------------------------------------------------------------------------
# The JSON form of an outcome (decoded strictly: a value of the wrong type is a bad entry)
# --------------------------------------------------------------------------------------------


#: Separates an entry's outcome from its release (JSON text escapes it, never holds it).
_SEPARATOR = "\x1e"


def encode_outcome(outcome: Outcome) -> str:
    """One line of text: the outcome's JSON, then the release's (decoded only on demand)."""
    head = {
        "problems": [_encode_problem(p) for p in outcome.problems],
        "checked": outcome.checked,
        "depends": [list(pair) for pair in outcome.depends],
        "valid": outcome.release is not None,
    }
    release = "" if outcome.release is None else _dumps(_encode_release(outcome.release))
    return f"{_dumps(head)}{_SEPARATOR}{release}"


def decode_outcome(text: str, config: RepoConfig | None, *, release: bool = True) -> Outcome:
    """The outcome ``text`` encodes (its release only when ``release``); raises
    ``ValueError``/``TypeError``/``KeyError`` when it is not one (the entry is dropped)."""
    head_text, separator, release_text = text.partition(_SEPARATOR)
    if not separator:
        raise ValueError("no separator")
    if head_text == _CLEAN and release_text and not release:  # most entries: nothing to parse
        return _VALID_UNBUILT
    head = _dict(json.loads(head_text))
    valid = _bool(head["valid"])
    if valid != bool(release_text):
        raise ValueError("a valid outcome holds a release, an invalid one none")
    built = _decode_release(_dict(json.loads(release_text)), config) if valid and release else None
    return Outcome(
        release=built,
        problems=tuple(_decode_problem(p) for p in _list(head["problems"])),
        checked=_bool(head["checked"]),
        depends=tuple((_str(a), _str(b)) for a, b in map(_list, _list(head["depends"]))),
        valid=valid,
    )


#: The head of a valid manifest without problems or tester files, and its unbuilt outcome.
_CLEAN = '{"problems":[],"checked":true,"depends":[],"valid":true}'
_VALID_UNBUILT = Outcome(None, (), checked=True, depends=(), valid=True)


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def _encode_problem(p: Problem) -> list[Any]:
    return [p.file, p.line, p.column, p.path, str(p.severity), p.code, p.message, p.hint]


def _decode_problem(data: Any) -> Problem:
    file, line, column, path, severity, code, message, hint = _list(data)
    return Problem(
        _str(file),
        _int(line),
        _int(column),
        _str(path),
        Severity(severity),
        _str(code),
        _str(message),
        None if hint is None else _str(hint),
    )


def _encode_release(r: Release) -> dict[str, Any]:
    s = r.spec
    return {
        "miniProgram": r.mini_program,
        "targetApp": r.target_app,
        "environment": r.environment,
        "path": r.path,
        "sources": list(r.sources),
        "version": s.version,
        "basicInfo": dict(s.basic_info),
        "configuration": dict(s.configuration),
        "minPassRate": s.compatibility.min_pass_rate,
        "retest": s.compatibility.retest,
        "testers": list(s.pilot.testers),
        "complete": s.pilot.complete,
        "grayscale": s.grayscale,
        "cancel": s.cancel,
        "supersede": s.supersede,
        "paused": s.paused,
        "rollout": None if s.rollout is None else _encode_rollout(s.rollout),
        "specHash": r.spec_hash,
    }


def _decode_release(d: Mapping[str, Any], config: RepoConfig | None) -> Release:
    rollout = d["rollout"]
    release = Release(
        mini_program=_str(d["miniProgram"]),
        target_app=_str(d["targetApp"]),
        environment=_str(d["environment"]),
        path=_str(d["path"]),
        sources=tuple(_str(s) for s in _list(d["sources"])),
        spec=ReleaseSpec(
            version=_str(d["version"]),
            basic_info=MappingProxyType(_dict(d["basicInfo"])),
            configuration=MappingProxyType(_dict(d["configuration"])),
            compatibility=Compatibility(
                min_pass_rate=_float(d["minPassRate"]), retest=_int(d["retest"])
            ),
            pilot=Pilot(
                testers=tuple(_str(t) for t in _list(d["testers"])),
                complete=_bool(d["complete"]),
            ),
            grayscale=_int(d["grayscale"]),
            cancel=_bool(d["cancel"]),
            supersede=_bool(d["supersede"]),
            paused=_bool(d["paused"]),
            rollout=None if rollout is None else _decode_rollout(rollout, config),
        ),
    )
    # The spec's digest as computed when the entry was made (canonical JSON of the whole
    # spec: a third of a cold start's decoding, were it computed again). It is a function of
    # what the entry holds, under the relctl.yaml digest the entry is keyed by; stored where
    # ``functools.cached_property`` keeps it.
    release.__dict__["spec_hash"] = _str(d["specHash"])
    return release


def _encode_rollout(r: Rollout) -> dict[str, Any]:
    return {
        "steps": [
            [
                str(step.kind),
                step.grayscale,
                _encode_delta(step.duration),
                None if step.template is None else step.template.name,
            ]
            for step in r.steps
        ],
        "onFailure": str(r.on_failure),
        "promotedAt": r.promoted_at,
        "full": r.full,
        "retry": r.retry,
        "paused": r.paused,
        "abort": r.abort,
        "overrideFreeze": r.override_freeze,
        "after": None
        if r.after is None
        else [r.after.target_app, r.after.grayscale, _encode_delta(r.after.soak)],
    }


def _decode_rollout(d: Mapping[str, Any], config: RepoConfig | None) -> Rollout:
    templates: Mapping[str, AnalysisTemplate] = config.analysis_templates if config else {}
    steps = []
    for kind, grayscale, duration, template in map(_list, _list(d["steps"])):
        steps.append(
            RolloutStep(
                StepKind(kind),
                grayscale=None if grayscale is None else _int(grayscale),
                duration=_decode_delta(duration),
                template=None if template is None else templates[_str(template)],
            )
        )
    after = d["after"]
    gate = None
    if after is not None:
        target_app, grayscale, soak = _list(after)
        delta = _decode_delta(soak)
        if delta is None:
            raise ValueError("a wave gate has a soak time")
        gate = WaveGate(_str(target_app), _int(grayscale), delta)
    return Rollout(
        steps=tuple(steps),
        on_failure=OnFailure(d["onFailure"]),
        promoted_at=_optional(_str, d["promotedAt"]),
        full=_bool(d["full"]),
        retry=_optional(_str, d["retry"]),
        paused=_bool(d["paused"]),
        abort=_bool(d["abort"]),
        override_freeze=_bool(d["overrideFreeze"]),
        after=gate,
    )


def _encode_delta(delta: timedelta | None) -> list[int] | None:
    return None if delta is None else [delta.days, delta.seconds, delta.microseconds]


def _decode_delta(data: Any) -> timedelta | None:
    if data is None:
        return None
    days, seconds, microseconds = (_int(x) for x in _list(data))
    return timedelta(days=days, seconds=seconds, microseconds=microseconds)


def _checked(kind: type[Any] | tuple[type[Any], ...]) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            raise TypeError(f"expected {kind}, found {type(value).__name__}")
        return value

    return check


_str: Callable[[Any], str] = _checked(str)
_int: Callable[[Any], int] = _checked(int)
_bool: Callable[[Any], bool] = _checked(bool)
_list: Callable[[Any], list[Any]] = _checked(list)
_dict: Callable[[Any], dict[str, Any]] = _checked(dict)


def _float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, found {type(value).__name__}")
    return float(value)


def _optional(check: Callable[[Any], Any], value: Any) -> Any:
    return None if value is None else check(value)
