"""The work-tree side of RepoFiles: link-free, bounded reads of untrusted files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.repofiles import EntryKind, Unreadable, UnreadableCode, WorkTree, check_path


@pytest.fixture(params=["descriptors", "lstat"])
def tree(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> WorkTree:
    """A work tree read through directory descriptors (POSIX), and through the lstat walk
    that stands in where ``dir_fd`` is not supported: the same refusals either way."""
    monkeypatch.setattr("controller.repofiles._DIR_FD", request.param == "descriptors")
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


def test_threads_reading_one_work_tree_each_get_their_own_files(tmp_path: Path) -> None:
    """More directories than descriptors kept open: reads in other threads close and open
    them meanwhile, and every read still gets the bytes of the file it named."""
    import random
    import threading

    paths = [f"releases/mp{n:02d}/gcash.yaml" for n in range(40)]
    for path in paths:
        (tmp_path / path).parent.mkdir(parents=True)
        (tmp_path / path).write_text(path)
    shared = WorkTree(tmp_path)
    wrong: list[str] = []

    def reader(seed: int) -> None:
        order = random.Random(seed).choices(paths, k=400)
        for path in order:
            if shared.read(path, 100) != path.encode():
                wrong.append(path)
            if [e.name for e in shared.children(path.rpartition("/")[0])] != ["gcash.yaml"]:
                wrong.append(f"listing of {path}")

    threads = [threading.Thread(target=reader, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    shared.close()
    assert wrong == []


# -- the git side: a commit's objects --------------------------------------------------------


def _git(root: Path, *args: str) -> str:
    import subprocess

    return subprocess.run(
        ["git", *args], cwd=root, check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture
def commit_tree(tmp_path: Path) -> tuple[Path, str]:
    root = tmp_path / "repo"
    (root / "releases" / "shop").mkdir(parents=True)
    (root / "releases" / "shop" / "gcash.yaml").write_bytes(b"kind: Release\n")
    (root / "big.csv").write_bytes(b"1\n" * 1000)
    os.symlink("/etc/passwd", root / "releases" / "shop" / "dana.yaml")
    os.symlink("/", root / "releases" / "rewards")
    _git(root, "init", "-q", "-b", "main")
    _git(root, "add", "-A")
    _git(root, "-c", "user.email=a@example.com", "-c", "user.name=A", "commit", "-qm", "x")
    # An outsider's attributes: a work tree checkout would re-encode every manifest.
    (root / ".gitattributes").write_text("*.yaml working-tree-encoding=UTF-16\n")
    _git(root, "add", ".gitattributes")
    _git(root, "-c", "user.email=a@example.com", "-c", "user.name=A", "commit", "-qm", "y")
    return root, _git(root, "rev-parse", "HEAD")


def test_git_tree_reads_blobs_not_the_work_tree(commit_tree: tuple[Path, str]) -> None:
    import git as gitpython

    from controller.gitops import GitTree

    root, sha = commit_tree
    (root / "releases" / "shop" / "gcash.yaml").write_bytes(b"changed in the work tree\n")
    with gitpython.Repo(root) as repo:
        tree = GitTree(repo, "HEAD")
        assert tree.revision == sha
        # .gitattributes changes nothing: the blob's bytes as committed.
        assert tree.read("releases/shop/gcash.yaml", 100) == b"kind: Release\n"
        entry = tree.entry("releases/shop/dana.yaml")
        assert entry is not None and entry.kind is EntryKind.SYMLINK
        with pytest.raises(Unreadable) as caught:
            tree.read("releases/shop/dana.yaml", 100)
        assert caught.value.code is UnreadableCode.NOT_A_FILE
        under = tree.entry("releases/rewards/tng.yaml")
        assert under is not None and under.kind is EntryKind.SYMLINK
        with pytest.raises(Unreadable) as too_big:
            tree.read("big.csv", 100)
        assert too_big.value.code is UnreadableCode.TOO_LARGE
        names = [e.path for e in tree.children("releases/shop")]
        assert names == ["releases/shop/dana.yaml", "releases/shop/gcash.yaml"]


def test_a_lazy_git_tree_reads_the_same_entries_as_a_whole_listing(
    commit_tree: tuple[Path, str],
) -> None:
    """``lazy=True`` lists a directory when first visited (``relctl check``'s base): every
    entry, child list and refusal is the same as the whole listing's, links, submodules and
    paths under them included."""
    import git as gitpython

    from controller.gitops import GitTree

    root, _sha = commit_tree
    (root / "releases" / "shop" / "a-b.csv").write_text("x\n")  # git sorts it after "a/"
    (root / "releases" / "shop" / "a").mkdir()
    (root / "releases" / "shop" / "a" / "b.csv").write_text("y\n")
    _git(root, "add", "releases/shop/a-b.csv", "releases/shop/a/b.csv")
    _git(root, "update-index", "--add", "--cacheinfo", f"160000,{_sha},releases/sub")
    _git(root, "-c", "user.email=a@example.com", "-c", "user.name=A", "commit", "-qm", "z")
    with gitpython.Repo(root) as repo:
        whole, lazy = GitTree(repo, "HEAD"), GitTree(repo, "HEAD", lazy=True)
        paths = [e.path for e in whole.walk("")]
        assert "releases/sub" in paths and "releases/shop/a/b.csv" in paths
        probes = [*paths, *(f"{p}/x.yaml" for p in paths), "nope", "releases/nope/x.yaml"]
        for path in ["", *probes]:
            assert lazy.entry(path) == whole.entry(path), path
            assert lazy.children(path) == whole.children(path), path
        assert [e.path for e in lazy.walk("")] == paths
        assert lazy.read("releases/shop/gcash.yaml", 100) == b"kind: Release\n"
        with pytest.raises(Unreadable):
            lazy.read("releases/rewards/tng.yaml", 100)
        shop = [e.name for e in whole.children("releases/shop")]
        assert shop == sorted(shop)


def test_run_git_bounds_output_and_names_failures(commit_tree: tuple[Path, str]) -> None:
    from controller.gitops import GitError, run_git

    root, _sha = commit_tree
    with pytest.raises(GitError, match="printed more than"):
        run_git(root, "cat-file", "-p", "HEAD:big.csv", max_output=100)
    with pytest.raises(GitError, match="git rev-parse failed"):
        run_git(root, "rev-parse", "--verify", "no-such-revision")
    assert run_git(root, "cat-file", "-p", "HEAD:big.csv").out == b"1\n" * 1000


def test_memory_files_imply_directories_and_bound_reads() -> None:
    from controller.repofiles import MemoryFiles

    files = MemoryFiles({"access.yaml": b"members: []\n", "releases/shop/gcash.yaml": b"x"})
    assert [e.path for e in files.children("")] == ["access.yaml", "releases"]
    assert [e.path for e in files.walk("releases")] == ["releases/shop", "releases/shop/gcash.yaml"]
    assert files.read("access.yaml", 100) == b"members: []\n"
    with pytest.raises(Unreadable):
        files.read("access.yaml", 3)
    with pytest.raises(Unreadable):
        files.read("releases", 100)


@given(st.text(alphabet="ab.-_/\\:~@ \n\t\x7fé0", max_size=12))
def test_the_plain_path_shortcut_never_accepts_what_the_full_check_refuses(path: str) -> None:
    from controller.repofiles import _check_path_fully

    assert check_path(path) == _check_path_fully(path)
