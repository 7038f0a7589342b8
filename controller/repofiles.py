"""The one way relctl reads a release repository: entries and bounded blobs, never links.

Everything in a release repository is untrusted input. relctl reads it through
:class:`RepoFiles`, which has two implementations:

- :class:`WorkTree` (this module): a directory on disk, for ``relctl validate`` on a checkout
  or in a pre-commit hook. It never follows a symbolic link (not even a parent directory that
  is one), never opens a FIFO, device or socket, and never reads more than the caller's limit.
- ``controller.gitops.GitTree``: the objects of one commit, for the controller, ``relctl
  check`` and ``relctl plan``. Tree entries and blob sizes come first; a blob is read only when
  it is a regular file within the limit. ``.gitattributes`` cannot change what is read.

A path is always repository-relative with ``/`` separators. Anything else (absolute, ``..``,
empty or ``.`` components, a backslash, a control character) is refused before any I/O.
Whatever is not a regular file where a file is expected is an :class:`Unreadable` error for
that path alone, which callers turn into a located problem of that file.

Called by ``controller.manifests`` (loading), ``controller.reconcile`` (status files),
``controller.check`` and ``controller.preview``.
"""

from __future__ import annotations

import contextlib
import gc
import os
import re
import stat
import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from operator import attrgetter
from pathlib import Path
from typing import Protocol

__all__ = [
    "Entry",
    "EntryKind",
    "MemoryFiles",
    "RepoFiles",
    "Unreadable",
    "UnreadableCode",
    "WorkTree",
    "check_path",
    "collector_paused",
    "path_problem",
    "readable_entry",
    "walk",
]


class EntryKind(StrEnum):
    """What a repository path is. Only ``FILE`` can be read."""

    FILE = "file"
    DIRECTORY = "directory"
    SYMLINK = "symlink"
    SUBMODULE = "submodule"
    #: FIFOs, sockets, devices (a work tree only; git cannot store them).
    SPECIAL = "special"


@dataclass(frozen=True, slots=True)
class Entry:
    """One path of a repository: its kind, its size (files only) and its git object id."""

    path: str
    kind: EntryKind
    size: int = 0
    #: The blob or tree id in a git commit; None in a work tree.
    oid: str | None = None

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]


class UnreadableCode(StrEnum):
    """Why a path could not be read; each is a problem code in ``relctl validate``."""

    BAD_PATH = "bad-path"
    MISSING = "missing"
    NOT_A_FILE = "not-a-file"
    TOO_LARGE = "too-large"
    UNREADABLE = "unreadable"


class Unreadable(Exception):
    """A path that relctl refuses or fails to read, with what to do about it."""

    def __init__(self, path: str, code: UnreadableCode, message: str, hint: str) -> None:
        super().__init__(message)
        self.path = path
        self.code = code
        self.message = message
        self.hint = hint


class RepoFiles(Protocol):
    """Read-only access to the files of one revision of a release repository."""

    @property
    def revision(self) -> str | None:
        """The commit read (a full sha), or None for a work tree."""
        ...

    def entry(self, path: str) -> Entry | None:
        """What ``path`` is, or None when nothing is there."""
        ...

    def children(self, path: str) -> list[Entry]:
        """The entries directly inside directory ``path`` ("" for the top), sorted by name;
        [] when ``path`` is not a directory."""
        ...

    def walk(self, path: str) -> Iterator[Entry]:
        """Every entry below directory ``path``, depth first, sorted; links and submodules are
        listed but never entered."""
        ...

    def read(self, path: str, limit: int) -> bytes:
        """The bytes of the regular file ``path``; raises :class:`Unreadable` when it is
        anything else, larger than ``limit`` bytes, or missing."""
        ...


_CONTROL = frozenset(chr(c) for c in range(32)) | {"\x7f"}


#: The common case of a plain path, decided by one match: names of portable characters that
#: do not start with a dot ('.' and '..' components, and dotfiles, take the full check).
_PLAIN_PATH = re.compile(
    r"[A-Za-z0-9_@+=,~-][A-Za-z0-9_.@+=,~-]*(?:/[A-Za-z0-9_@+=,~-][A-Za-z0-9_.@+=,~-]*)*"
)


def check_path(path: str) -> str | None:
    """Why ``path`` is not a plain repository-relative path, or None when it is one."""
    if _PLAIN_PATH.fullmatch(path):
        return None
    return _check_path_fully(path)


def _check_path_fully(path: str) -> str | None:
    if not path:
        return "the path is empty"
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return "the path is not valid UTF-8"
    if path.startswith("/") or (len(path) > 1 and path[1] == ":"):
        return "the path is absolute"
    if "\\" in path:
        return "the path contains a backslash"
    # isprintable() is False for every control character: the loop only runs when needed.
    if not path.isprintable() and any(char in _CONTROL for char in path):
        return "the path contains a control character (newline, tab, ...)"
    if any(part in ("", ".", "..") for part in path.split("/")):
        return "the path has an empty, '.' or '..' component"
    return None


def path_problem(path: str) -> Unreadable | None:
    """:func:`check_path` as an :class:`Unreadable` error (None for a good path)."""
    why = check_path(path)
    if why is None:
        return None
    return Unreadable(
        path,
        UnreadableCode.BAD_PATH,
        f"{path!r}: {why}",
        "use a relative path inside the repository with '/' separators",
    )


def kind_problem(entry: Entry) -> Unreadable:
    """The error for reading an entry that is not a regular file."""
    if entry.kind is EntryKind.SYMLINK:
        return Unreadable(
            entry.path,
            UnreadableCode.NOT_A_FILE,
            f"{entry.path} is a symbolic link (or lies under one); relctl never follows links",
            "replace the link by the file itself",
        )
    if entry.kind is EntryKind.SUBMODULE:
        return Unreadable(
            entry.path,
            UnreadableCode.NOT_A_FILE,
            f"{entry.path} is a git submodule, not a file",
            "commit the file itself into the release repository",
        )
    if entry.kind is EntryKind.DIRECTORY:
        return Unreadable(
            entry.path,
            UnreadableCode.NOT_A_FILE,
            f"{entry.path} is a directory, not a file",
            "name a file",
        )
    return Unreadable(
        entry.path,
        UnreadableCode.NOT_A_FILE,
        f"{entry.path} is not a regular file (a FIFO, socket or device)",
        "replace it by a regular file",
    )


def size_problem(path: str, size: int, limit: int) -> Unreadable:
    """The error for a file over the caller's size limit (it is not read)."""
    return Unreadable(
        path,
        UnreadableCode.TOO_LARGE,
        f"{path} is {size:,} bytes; relctl reads at most {limit:,} bytes of such a file",
        "split the file or remove what it does not need",
    )


def missing_problem(path: str) -> Unreadable:
    return Unreadable(
        path, UnreadableCode.MISSING, f"{path} not found", "check the path and commit the file"
    )


def readable_entry(files: RepoFiles, path: str, limit: int) -> Entry:
    """The entry of ``path`` if it may be read: a plain path to a regular file of at most
    ``limit`` bytes. Raises :class:`Unreadable` otherwise; every implementation's ``read``
    starts here, so the refusals are the same whatever the repository is read from."""
    bad = path_problem(path)
    if bad is not None:
        raise bad
    entry = files.entry(path)
    if entry is None:
        raise missing_problem(path)
    if entry.kind is not EntryKind.FILE:
        raise kind_problem(entry)
    if entry.size > limit:
        raise size_problem(path, entry.size, limit)
    return entry


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off while a repository, or what is made of it, is
    read into memory (manifests, a commit's listing, the controller's remembered statuses).

    Such a read makes hundreds of thousands of small objects that live on after it and no
    reference cycles to speak of; every full collection on the way walks all of them again,
    which measured 10-15% of the CPU of a 10,000-manifest load and seconds at 100,000
    releases. The collector's previous state is restored at the end (reference counting
    frees everything meanwhile; only cycles wait for the next collection).
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def walk(files: RepoFiles, path: str) -> Iterator[Entry]:
    """Every entry below directory ``path`` of ``files``, depth first, sorted; links and
    submodules are listed but never entered."""
    for child in files.children(path):
        yield child
        if child.kind is EntryKind.DIRECTORY:
            yield from walk(files, child.path)


def _kind(mode: int) -> EntryKind:
    if stat.S_ISREG(mode):
        return EntryKind.FILE
    if stat.S_ISDIR(mode):
        return EntryKind.DIRECTORY
    if stat.S_ISLNK(mode):
        return EntryKind.SYMLINK
    return EntryKind.SPECIAL


class WorkTree:
    """A release repository as a directory on disk (``relctl validate``, pre-commit).

    Reads are link-free and bounded. Each directory on the way is opened relative to its
    parent's descriptor with ``O_DIRECTORY | O_NOFOLLOW`` (a link anywhere in the path fails
    the open, and a directory swapped for a link after it was opened is not followed either);
    the file is opened relative to its directory with ``O_NOFOLLOW | O_NONBLOCK`` (a FIFO
    cannot block it) and checked to be a regular file on the open descriptor; at most
    ``limit + 1`` bytes are read. The last few directory descriptors are kept open, because
    a repository is read directory by directory. Where ``dir_fd`` is not supported, or when
    a read fails, every component is inspected with ``lstat`` instead, which also says
    precisely what is in the way.
    """

    def __init__(self, root: Path | str) -> None:
        self.root = Path(os.path.abspath(root))
        self._directories = _DirectoryCache(str(self.root))

    @property
    def revision(self) -> str | None:
        return None

    def _full(self, path: str) -> str:
        return os.path.join(self.root, *path.split("/")) if path else str(self.root)

    def entry(self, path: str) -> Entry | None:
        if path == "":
            return Entry("", EntryKind.DIRECTORY)
        if check_path(path) is not None:
            return None
        current = str(self.root)
        parts = path.split("/")
        for index, part in enumerate(parts):
            current = f"{current}{os.sep}{part}"
            try:
                info = os.lstat(current)
            except OSError:
                return None
            kind = _kind(info.st_mode)
            if index == len(parts) - 1:
                size = info.st_size if kind is EntryKind.FILE else 0
                return Entry(path, kind, size)
            if kind is EntryKind.SYMLINK:
                return Entry(path, EntryKind.SYMLINK)
            if kind is not EntryKind.DIRECTORY:
                return None
        return None  # pragma: no cover - the loop always returns

    def children(self, path: str) -> list[Entry]:
        if path and check_path(path) is not None:
            return []
        if not _DIR_FD:
            here = self.entry(path)
            if here is None or here.kind is not EntryKind.DIRECTORY:
                return []
            return _list(self._full(path), path)
        # The entries' lstat is relative to the descriptor given: held until they are read.
        with self._directories.lock:
            try:
                directory = self._directories.open(path)
            except OSError:
                return []  # missing, a link, not a directory: nothing to list
            return _list(directory, path)

    def walk(self, path: str) -> Iterator[Entry]:
        return walk(self, path)

    def read(self, path: str, limit: int) -> bytes:
        if _DIR_FD and check_path(path) is None:
            directory, _, name = path.rpartition("/")
            try:
                with self._directories.lock:
                    fd = os.open(name, _FILE_FLAGS, dir_fd=self._directories.open(directory))
            except OSError:
                pass  # the lstat walk below says what is in the way
            else:
                return _read_open(path, fd, limit)
        readable_entry(self, path, limit)
        try:
            fd = os.open(self._full(path), _FILE_FLAGS)
        except OSError as exc:
            raise Unreadable(
                path,
                UnreadableCode.UNREADABLE,
                f"{path} cannot be read: {exc.strerror or exc}",
                "check the file's permissions",
            ) from None
        return _read_open(path, fd, limit)

    def close(self) -> None:
        """Close the directory descriptors kept open (also done when it is collected)."""
        self._directories.close()


#: Whether ``os.open`` and ``os.scandir`` take a directory descriptor here (POSIX: yes).
_DIR_FD = os.open in os.supports_dir_fd and os.scandir in os.supports_fd
_FILE_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_NONBLOCK", 0)
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_BINARY", 0)
)
_DIR_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_DIRECTORY", 0)
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_CLOEXEC", 0)
)


def _list(directory: int | str, path: str) -> list[Entry]:
    """The entries of ``directory`` (a descriptor or a path) as children of ``path``, each
    inspected without following it, sorted by path; [] when it cannot be listed."""
    found: list[Entry] = []
    prefix = f"{path}/" if path else ""
    try:
        with os.scandir(directory) as listing:
            for item in listing:
                # Odd names (a newline, a backslash) are listed: callers report them.
                try:
                    info = item.stat(follow_symlinks=False)
                except OSError:
                    continue
                kind = _kind(info.st_mode)
                size = info.st_size if kind is EntryKind.FILE else 0
                found.append(Entry(prefix + item.name, kind, size))
    except OSError:
        return []
    found.sort(key=attrgetter("path"))
    return found


class _DirectoryCache:
    """Open descriptors of a work tree's directories, the last :attr:`KEEP` used.

    ``open("releases/shop")`` opens ``releases`` relative to the root and ``shop`` relative
    to ``releases``, each with ``O_NOFOLLOW``: the descriptor is of the directory at that
    path with no link on the way, or ``OSError`` (``ELOOP``, ``ENOTDIR``, ``ENOENT``). The
    descriptors are closed when they fall out, by :meth:`close`, or with the object. A
    caller holds :attr:`lock` from :meth:`open` until it is done with the descriptor: in
    another thread it could be closed, and its number given to another file.
    """

    KEEP = 16

    def __init__(self, root: str) -> None:
        self._root = root
        self._open: OrderedDict[str, int] = OrderedDict()
        self.lock = threading.Lock()
        self._finalizer = weakref.finalize(self, _close_all, self._open)

    def open(self, path: str) -> int:
        fd = self._open.get(path)
        if fd is not None:
            self._open.move_to_end(path)
            return fd
        if path:
            parent, _, name = path.rpartition("/")
            fd = os.open(name, _DIR_FLAGS, dir_fd=self.open(parent))
        else:
            fd = os.open(self._root, _DIR_FLAGS & ~getattr(os, "O_NOFOLLOW", 0))
        self._open[path] = fd
        while len(self._open) > self.KEEP:
            os.close(self._open.popitem(last=False)[1])
        return fd

    def close(self) -> None:
        with self.lock:
            _close_all(self._open)


def _close_all(descriptors: OrderedDict[str, int]) -> None:
    while descriptors:
        with contextlib.suppress(OSError):
            os.close(descriptors.popitem()[1])


def _read_open(path: str, fd: int, limit: int) -> bytes:
    """At most ``limit`` bytes of the regular file open at ``fd`` (closed here)."""
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):  # a FIFO, device, directory: refused
            raise kind_problem(Entry(path, _kind(info.st_mode)))
        if info.st_size > limit:
            raise size_problem(path, info.st_size, limit)
        # One read of the size fstat gave, plus one byte: a short read of a regular file is
        # its end; a file that grows meanwhile is read on, up to the limit.
        chunks: list[bytes] = []
        remaining = limit + 1
        want = info.st_size + 1
        while remaining > 0:
            chunk = os.read(fd, min(remaining, want))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
            if len(chunk) < want:
                break
            want = 1 << 20
        data = b"".join(chunks)
    except OSError as exc:
        raise Unreadable(
            path,
            UnreadableCode.UNREADABLE,
            f"{path} cannot be read: {exc.strerror or exc}",
            "check the file",
        ) from None
    finally:
        os.close(fd)
    if len(data) > limit:  # grew while being read
        raise size_problem(path, len(data), limit)
    return data


class MemoryFiles:
    """A few files held in memory (a :class:`RepoFiles`): one governance blob of a past
    commit, or a test's repository. Directories are implied by the paths."""

    def __init__(self, files: dict[str, bytes], revision: str | None = None) -> None:
        for path in files:
            bad = path_problem(path)
            if bad is not None:
                raise ValueError(bad.message)
        self._files = dict(files)
        self._revision = revision

    @property
    def revision(self) -> str | None:
        return self._revision

    def entry(self, path: str) -> Entry | None:
        if path in self._files:
            return Entry(path, EntryKind.FILE, len(self._files[path]))
        if path == "" or any(p.startswith(f"{path}/") for p in self._files):
            return Entry(path, EntryKind.DIRECTORY)
        return None

    def children(self, path: str) -> list[Entry]:
        prefix = f"{path}/" if path else ""
        names = {p[len(prefix) :].split("/", 1)[0] for p in self._files if p.startswith(prefix)}
        found = (self.entry(f"{prefix}{name}") for name in sorted(names))
        return [entry for entry in found if entry is not None]

    def walk(self, path: str) -> Iterator[Entry]:
        return walk(self, path)

    def read(self, path: str, limit: int) -> bytes:
        readable_entry(self, path, limit)
        return self._files[path]
