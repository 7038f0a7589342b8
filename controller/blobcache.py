"""A content-keyed cache: in memory for the daemon, in one file for cold starts.

What a cache here holds is always derived from content that is named by its digest (a git
blob id, a sha256): the same key can only ever mean the same result, so an entry is never
stale, only unused. :class:`BlobCache` keeps text values by key, in least-recently-used
order, bounded in entries; :meth:`BlobCache.save` writes them to the file the caller named
and :meth:`BlobCache.open` reads them back.

The file is input like any other (no pickle, nothing executed): one JSON header line (the
format, the ``version`` the caller gives, the body's length and sha256) and then one
``key<TAB>value`` line per entry. It is written to a temporary file in the same directory and
renamed over the old one, so a reader (or a concurrent writer's reader) sees a whole file or
the previous one, never half of each; concurrent writers race, and the last rename wins. A
file that is truncated, corrupt, too large, of another format or of another ``version`` is
discarded with a log line, and the cache starts empty: a cache can cost time, never a wrong
answer from a damaged file. (A file that is well formed but lies, with a valid header and
checksum, is trusted: the cache lives in the controller's own work directory, beside its
state, and whoever can write there can write the state too.)

Used by ``controller.manifests.cache`` (validation results by manifest blob); any module
caching what it parsed from a blob can use it the same way.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["DEFAULT_MAX_ENTRIES", "MAX_FILE_BYTES", "BlobCache"]

log = logging.getLogger("relctl")

#: Entries a cache keeps by default (the least recently used go first). A bound below the
#: number of manifests evicts on every load (at 100,000 releases half of them were validated
#: again each pass); ~1 KB per manifest entry keeps 200,000 under :data:`MAX_FILE_BYTES`.
DEFAULT_MAX_ENTRIES = 200_000
#: Largest cache file read; a larger one is discarded unread.
MAX_FILE_BYTES = 256 * 1024 * 1024
#: The first field of the header line: what kind of file this is.
_FORMAT = "relctl-blobcache/1"
#: Longest header line read.
_MAX_HEADER = 4096


class BlobCache:
    """Text values by key, bounded, least-recently-used first out; optionally kept in a file.

    Keys and values are strings without a tab or newline (callers use hex digests as keys and
    ``json.dumps`` text as values; :meth:`put` refuses anything else).
    """

    def __init__(
        self, path: Path | None, version: str, *, max_entries: int = DEFAULT_MAX_ENTRIES
    ) -> None:
        """An empty cache; :meth:`open` is the usual way to get one (it reads ``path``)."""
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.path = path
        self.version = version
        self.max_entries = max_entries
        self._entries: dict[str, str] = {}
        self._dirty = False

    @classmethod
    def open(
        cls, path: Path | None, version: str, *, max_entries: int = DEFAULT_MAX_ENTRIES
    ) -> BlobCache:
        """The cache kept in ``path`` (None: in memory only) for ``version``.

        A missing file gives an empty cache; a damaged one, or one of another version, is
        discarded with a log line (and overwritten by the next :meth:`save`). Never raises
        for the file's content.
        """
        cache = cls(path, version, max_entries=max_entries)
        if path is not None:
            cache._load(path)
        return cache

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __iter__(self) -> Iterator[str]:
        """Keys from the least to the most recently used (a snapshot)."""
        return iter(list(self._entries))

    def get(self, key: str) -> str | None:
        """The value of ``key`` (now the most recently used), or None."""
        value = self._entries.pop(key, None)
        if value is not None:
            self._entries[key] = value
        return value

    def put(self, key: str, value: str) -> None:
        """Keep ``value`` for ``key``; the least recently used entry goes when full."""
        if _bad(key) or _bad(value):
            raise ValueError("cache keys and values hold no tab, newline or carriage return")
        self._entries.pop(key, None)
        self._entries[key] = value
        while len(self._entries) > self.max_entries:
            del self._entries[next(iter(self._entries))]
        self._dirty = True

    def discard(self, key: str) -> None:
        """Forget ``key`` (a value that turned out unusable)."""
        if self._entries.pop(key, None) is not None:
            self._dirty = True

    def save(self) -> bool:
        """Write the cache to its file, atomically; False when there was nothing to write
        (no file, or nothing changed since it was read or last saved). An ``OSError`` (a full
        disk, a read-only directory) is logged and leaves the old file in place."""
        if self.path is None or not self._dirty:
            return False
        body = "".join(f"{key}\t{value}\n" for key, value in self._entries.items()).encode()
        header = {
            "format": _FORMAT,
            "version": self.version,
            "entries": len(self._entries),
            "bytes": len(body),
            "sha256": hashlib.sha256(body).hexdigest(),
        }
        data = json.dumps(header, sort_keys=True).encode() + b"\n" + body
        try:
            _write_atomically(self.path, data)
        except OSError as exc:
            log.warning("cache %s not saved: %s", self.path, exc.strerror or exc)
            return False
        self._dirty = False
        return True

    def _load(self, path: Path) -> None:
        try:
            with path.open("rb") as handle:
                size = os.fstat(handle.fileno()).st_size
                if size > MAX_FILE_BYTES:
                    self._discard(path, f"{size:,} bytes, over the {MAX_FILE_BYTES:,} limit")
                    return
                data = handle.read(MAX_FILE_BYTES + 1)
        except FileNotFoundError:
            return
        except OSError as exc:
            self._discard(path, f"unreadable: {exc.strerror or exc}")
            return
        newline = data.find(b"\n", 0, _MAX_HEADER)
        if newline < 0:
            self._discard(path, "no header")
            return
        try:
            header = json.loads(data[:newline])
        except ValueError:
            self._discard(path, "the header is not JSON")
            return
        if not isinstance(header, dict) or header.get("format") != _FORMAT:
            self._discard(path, "not a relctl cache file")
            return
        if header.get("version") != self.version:
            self._discard(path, "written by another version of relctl or its schemas")
            return
        body = data[newline + 1 :]
        if header.get("bytes") != len(body) or (
            header.get("sha256") != hashlib.sha256(body).hexdigest()
        ):
            self._discard(path, "truncated or corrupt (length or checksum differs)")
            return
        try:
            lines = body.decode("utf-8").split("\n")
        except UnicodeDecodeError:
            self._discard(path, "not UTF-8")
            return
        entries: dict[str, str] = {}
        for line in lines[:-1]:
            key, tab, value = line.partition("\t")
            if not tab or not key or not value:
                self._discard(path, "a line is not key<TAB>value")
                return
            entries[key] = value
        if lines[-1] or len(entries) != header.get("entries"):
            self._discard(path, "the entry count differs from the header")
            return
        for key in list(entries)[: max(0, len(entries) - self.max_entries)]:
            del entries[key]
        self._entries = entries

    def _discard(self, path: Path, why: str) -> None:
        log.warning("cache %s discarded (%s); starting empty", path, why)
        self._entries = {}
        self._dirty = True  # the next save replaces the bad file


def _bad(text: str) -> bool:
    return "\t" in text or "\n" in text or "\r" in text


def _write_atomically(path: Path, data: bytes) -> None:
    """``data`` in ``path``, replaced in one rename (a temporary file beside it). Not synced
    to disk: a cache needs no durability, and a file a crash left torn or empty is detected
    (length and checksum) and discarded like any damaged one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
