"""The work-tree side of RepoFiles: link-free, bounded reads of untrusted files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from controller.repofiles import EntryKind, Unreadable, UnreadableCode, WorkTree, check_path


@pytest.fixture
def tree(tmp_path: Path) -> WorkTree:
    (tmp_path / "releases" / "shop").mkdir(parents=True)
    (tmp_path / "releases" / "shop" / "gcash.yaml").write_bytes(b"kind: Release\n")
    return WorkTree(tmp_path)


def test_reads_a_regular_file(tree: WorkTree) -> None:
    assert tree.read("releases/shop/gcash.yaml", 100) == b"kind: Release\n"
    entry = tree.entry("releases/shop/gcash.yaml")
    assert entry is not None and entry.kind is EntryKind.FILE and entry.size == 14


def test_a_symlink_to_a_host_file_is_refused_not_followed(tree: WorkTree, tmp_path: Path) -> None:
    secret = tmp_path.parent / "secret-credential"
    secret.write_text("token")
    os.symlink(secret, tmp_path / "releases" / "shop" / "dana.yaml")
    with pytest.raises(Unreadable) as caught:
        tree.read("releases/shop/dana.yaml", 100)
    assert caught.value.code is UnreadableCode.NOT_A_FILE
    assert "token" not in caught.value.message


def test_a_file_under_a_symlinked_directory_is_refused(tree: WorkTree, tmp_path: Path) -> None:
    outside = tmp_path.parent / "outside"
    outside.mkdir(exist_ok=True)
    (outside / "tng.yaml").write_text("kind: Release\n")
    os.symlink(outside, tmp_path / "releases" / "rewards")
    entry = tree.entry("releases/rewards/tng.yaml")
    assert entry is not None and entry.kind is EntryKind.SYMLINK
    with pytest.raises(Unreadable):
        tree.read("releases/rewards/tng.yaml", 100)
    assert [e.kind for e in tree.children("releases/rewards")] == []


def test_a_fifo_is_refused_without_blocking(tree: WorkTree, tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "releases" / "shop" / "fifo.yaml")
    with pytest.raises(Unreadable) as caught:
        tree.read("releases/shop/fifo.yaml", 100)
    assert caught.value.code is UnreadableCode.NOT_A_FILE


def test_a_file_over_the_limit_is_not_read(tree: WorkTree, tmp_path: Path) -> None:
    (tmp_path / "big.csv").write_bytes(b"1\n" * 1000)
    with pytest.raises(Unreadable) as caught:
        tree.read("big.csv", 100)
    assert caught.value.code is UnreadableCode.TOO_LARGE


@pytest.mark.parametrize(
    "path", ["/etc/passwd", "../x", "a/../b", "a//b", "a\\b", "a\nb", "./a", "", "C:x"]
)
def test_paths_that_are_not_plain_relative_paths_are_refused(tree: WorkTree, path: str) -> None:
    assert check_path(path) is not None
    with pytest.raises(Unreadable) as caught:
        tree.read(path, 100)
    assert caught.value.code is UnreadableCode.BAD_PATH


def test_walk_lists_links_but_never_enters_them(tree: WorkTree, tmp_path: Path) -> None:
    os.symlink("/", tmp_path / "releases" / "root")
    paths = {(e.path, e.kind) for e in tree.walk("releases")}
    assert ("releases/root", EntryKind.SYMLINK) in paths
    assert all(not p.startswith("releases/root/") for p, _ in paths)
