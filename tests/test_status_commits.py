"""Status commits built with git plumbing (``controller.gitops.Workspace.write_status``) in a
repository of a few thousand files, against real bare remotes and concurrent pushers.

What a status commit writes is measured by the objects it adds to the clone, never by time
(``bench/scale.py`` prints the figures).
"""

from __future__ import annotations

import random
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from gitutil import (
    PersonClone,
    assert_fast_forward_only,
    git,
    isolate_git,
    make_remote,
    remote_file,
    remote_head,
    remote_log,
)

from controller.gitops import GitTree, Workspace, edit_tree

MINI_PROGRAMS = 300
APPS = 10


def status_of(n: int, app: int) -> str:
    return f"status/mp{n:03d}/app{app}.yaml"


def manifest_of(n: int, app: int) -> str:
    return f"releases/mp{n:03d}/app{app}.yaml"


@pytest.fixture(autouse=True)
def _isolated_git(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_git(monkeypatch, tmp_path / "home")


@pytest.fixture
def remote(tmp_path: Path) -> str:
    """3,000 releases: a manifest and a status file each, one directory per mini program."""
    files = {"relctl.yaml": "targetApps: [app0]\n"}
    for n in range(MINI_PROGRAMS):
        for app in range(APPS):
            files[manifest_of(n, app)] = f"spec: {{version: '1.{n}.{app}'}}\n"
            files[status_of(n, app)] = f"phase: Grayscale\nrelease: {n}-{app}\n"
    return make_remote(tmp_path, files)


@pytest.fixture
def workspace(remote: str, tmp_path: Path) -> Iterator[Workspace]:
    with Workspace(remote, "main", tmp_path / "work", sleep=lambda _s: None) as ws:
        ws.sync()
        yield ws


def all_objects(repo: Path) -> set[str]:
    """The ids of every object the repository holds, loose or packed, reachable or not."""
    listing = git(repo, "cat-file", "--batch-all-objects", "--batch-check=%(objectname)")
    return set(listing.split())


def new_objects(repo: Path, base: str, commit: str) -> set[str]:
    """The objects reachable from ``commit`` and not from ``base``."""
    listing = git(repo, "rev-list", "--objects", commit, f"^{base}")
    return {line.split()[0] for line in listing.splitlines()}


def test_a_status_commit_writes_only_the_changed_blobs_and_the_trees_above_them(
    workspace: Workspace, remote: str
) -> None:
    base = workspace.head
    before = all_objects(workspace.root)
    files: dict[str, bytes | None] = {
        status_of(n, 3): f"phase: Released\nrelease: {n}-3\n".encode() for n in range(0, 300, 15)
    }
    files[status_of(7, 3)] = b"phase: Released\nrelease: 15-3\n"  # the bytes of status 15/3
    files["status/mp999/app0.yaml"] = b"phase: Building\n"  # a new mini program
    files[status_of(150, 9)] = None  # a deleted release
    files[status_of(151, 9)] = f"phase: Grayscale\nrelease: {151}-{9}\n".encode()  # unchanged

    result = workspace.write_status(files, "status: 23 releases", observed_commit=base)

    assert result is not None
    changed = sorted(path for path in files if path != status_of(151, 9))
    assert list(result.files) == changed
    written = all_objects(workspace.root) - before
    assert written == new_objects(workspace.root, base, result.commit)
    # 21 distinct blobs (two files share bytes); the 22 mini program directories that changed,
    # status/ and the root; the commit. Nothing for any other file or directory.
    assert len(written) == 21 + 22 + 2 + 1
    unchanged = git(workspace.root, "rev-parse", f"{base}:status/mp001", f"{base}:releases")
    assert git(
        workspace.root, "rev-parse", f"{result.commit}:status/mp001", f"{result.commit}:releases"
    ) == unchanged  # fmt: skip
    for path in changed:
        assert remote_file(remote, path) == files[path]
    blob_ids = {
        path: git(workspace.root, "rev-parse", f"{result.commit}:{path}") if data else None
        for path, data in files.items()
    }
    assert result.blob_ids == blob_ids
    assert remote_file(remote, status_of(151, 8)) == b"phase: Grayscale\nrelease: 151-8\n"


def test_writing_the_bytes_already_there_writes_no_tree_and_no_commit(
    workspace: Workspace, remote: str
) -> None:
    before = remote_head(remote)
    objects = all_objects(workspace.root)
    same: dict[str, bytes | None] = {
        status_of(n, 0): f"phase: Grayscale\nrelease: {n}-0\n".encode() for n in range(300)
    }
    same["status/mp999/app0.yaml"] = None  # deleting what is not there changes nothing

    assert workspace.write_status(same, "status: same", observed_commit=before) is None
    assert remote_head(remote) == before == workspace.head
    assert all_objects(workspace.root) == objects  # every blob was there already


def test_deleting_every_file_of_a_directory_removes_the_directory(
    workspace: Workspace, remote: str
) -> None:
    result = workspace.write_status(
        {status_of(42, app): None for app in range(APPS)},
        "status: mp042 gone",
        observed_commit=workspace.head,
    )
    assert result is not None
    listing = git(workspace.root, "ls-tree", "--name-only", f"{result.commit}:status")
    assert "mp042" not in listing.splitlines()
    assert len(listing.splitlines()) == MINI_PROGRAMS - 1
    assert remote_file(remote, manifest_of(42, 0)) is not None


@pytest.mark.parametrize(
    "name",
    ["tab\there.yaml", "new\nline.yaml", "space d.yaml", "ünïcödé.yaml", "-dash.yaml", "a:b.yaml"],
)
def test_hostile_status_names_are_written_exactly(
    workspace: Workspace, remote: str, name: str
) -> None:
    path = f"status/odd dir/{name}"
    result = workspace.write_status(
        {path: b"phase: Odd\n"}, "status: odd", observed_commit=workspace.head
    )
    assert result is not None
    assert result.files == (path,)
    assert remote_file(remote, path) == b"phase: Odd\n"
    assert workspace.read_file(path) == b"phase: Odd\n"


def test_a_submodule_where_a_status_directory_belongs_is_replaced(
    workspace: Workspace, remote: str, tmp_path: Path
) -> None:
    alice = PersonClone(remote, tmp_path / "alice", name="Alice", email="alice@example.com")
    alice.git("rm", "--quiet", "-r", "status/mp005")
    alice.git("update-index", "--add", "--cacheinfo", f"160000,{'1' * 40},status/mp005")
    alice.git("commit", "--quiet", "-m", "a submodule in status/")
    alice.push()
    workspace.sync()

    result = workspace.write_status(
        {status_of(5, 0): b"phase: Review\n"}, "status: review", observed_commit=workspace.head
    )

    assert result is not None
    assert result.files == ("status/mp005", status_of(5, 0))
    mode = git(workspace.root, "ls-tree", result.commit, "status/mp005").split()[0]
    assert mode == "040000"
    assert remote_file(remote, status_of(5, 0)) == b"phase: Review\n"


def test_a_path_that_is_a_file_and_a_directory_at_once_is_refused(workspace: Workspace) -> None:
    before = workspace.head
    with pytest.raises(ValueError, match="same commit"):
        workspace.write_status(
            {"status/mp001": b"x\n", status_of(1, 0): b"y\n"}, "status: x", observed_commit=before
        )
    assert workspace.head == before


def test_edit_tree_keeps_every_entry_it_does_not_edit(workspace: Workspace) -> None:
    root = workspace.root
    base_tree = git(root, "rev-parse", "HEAD^{tree}")
    blob = subprocess.run(
        ["git", "hash-object", "-w", "--stdin"], cwd=root, input=b"new\n",
        capture_output=True, check=True,
    ).stdout.decode().strip()  # fmt: skip

    tree = edit_tree(root, base_tree, {status_of(9, 9): blob, "status/new/x.yaml": blob})

    diff = git(root, "diff-tree", "-r", "--name-status", base_tree, tree).splitlines()
    assert diff == [f"M\t{status_of(9, 9)}", "A\tstatus/new/x.yaml"]
    assert edit_tree(root, base_tree, {}) == base_tree


def test_concurrent_people_and_controllers_lose_no_commit(remote: str, tmp_path: Path) -> None:
    """Two controllers (two workdirs) write status while a person keeps pushing manifests:
    every push lands on top of the others, nothing is forced, nothing is lost, and no
    controller commit touches a file outside status/."""
    alice = PersonClone(remote, tmp_path / "alice", name="Alice", email="alice@example.com")
    pushes = 12
    people: list[str] = []

    def person() -> None:
        for n in range(pushes):
            for _attempt in range(50):
                try:
                    people.append(
                        alice.commit_and_push({manifest_of(n, 0): f"n: {n}\n"}, f"Change {n}")
                    )
                    break
                except AssertionError:  # a controller pushed first: pull and try again
                    continue

    controllers = [
        Workspace(remote, "main", tmp_path / f"controller{c}", sleep=lambda _s: None,
                  rng=random.Random(c))
        for c in range(2)
    ]  # fmt: skip
    results: list[str] = []
    failures: list[BaseException] = []

    def controller(c: int) -> None:
        try:
            with controllers[c] as ws:
                for round_ in range(6):
                    ws.sync()
                    files = {
                        status_of(n, c): f"round {round_}\n".encode() for n in range(0, 300, 7)
                    }
                    pushed = ws.write_status(
                        files, f"status: c{c} r{round_}", observed_commit=ws.head,
                        max_attempts=pushes + 12,
                    )  # fmt: skip
                    assert pushed is not None
                    results.append(pushed.commit)
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)

    threads = [threading.Thread(target=person)] + [
        threading.Thread(target=controller, args=(c,)) for c in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert failures == []
    assert len(people) == pushes and len(results) == 12

    history = {c.sha: c for c in remote_log(remote)}
    assert set(people) <= set(history) and set(results) <= set(history)
    assert all(len(c.parents) <= 1 for c in history.values())
    assert_fast_forward_only(remote)
    bare = Path(remote.removeprefix("file://"))
    for commit in results:
        touched = git(bare, "diff-tree", "-r", "--name-only", "--no-commit-id", commit)
        assert touched and all(p.startswith("status/") for p in touched.splitlines())
    for c in range(2):
        assert remote_file(remote, status_of(0, c)) == b"round 5\n"
    assert remote_file(remote, manifest_of(pushes - 1, 0)) == f"n: {pushes - 1}\n".encode()


def test_before_push_sees_each_commit_about_to_be_pushed_and_the_last_one_lands(
    workspace: Workspace, remote: str, tmp_path: Path
) -> None:
    alice = PersonClone(remote, tmp_path / "alice", name="Alice", email="alice@example.com")
    person = alice.commit_and_push({manifest_of(1, 1): "spec: {grayscale: 20}\n"}, "Raise")
    staged: list[tuple[str, str]] = []

    def record(commit: str) -> None:  # what controller.state does: remember before pushing
        staged.append((commit, git(workspace.root, "rev-parse", f"{commit}^")))

    result = workspace.write_status(
        {status_of(1, 1): b"phase: Grayscale\n"}, "status: x",
        observed_commit=workspace.head, before_push=record,
    )  # fmt: skip

    assert result is not None and result.attempts == 2
    assert [commit for commit, _parent in staged][-1] == result.commit == remote_head(remote)
    assert staged[-1][1] == person  # rebuilt on the person's commit
    assert staged[0][1] != person  # the first attempt, on the old head, was refused


def test_a_commit_is_listed_once_for_every_tree_of_it(workspace: Workspace) -> None:
    """A daemon's passes over an unchanged main make a GitTree of the same commit each time;
    its 200,000 entries are listed once (a commit's tree never changes)."""
    first = GitTree(workspace.repo, workspace.head)
    listed = GitTree.listed
    again = GitTree(workspace.repo, "HEAD")
    assert GitTree.listed == listed
    assert again.revision == first.revision
    assert again.children("status/mp001") == first.children("status/mp001")
    assert again.read(status_of(1, 1), 1000) == b"phase: Grayscale\nrelease: 1-1\n"

    result = workspace.write_status(
        {status_of(1, 1): b"phase: Released\n"}, "status: x", observed_commit=workspace.head
    )
    assert result is not None
    after = GitTree(workspace.repo, result.commit)
    assert GitTree.listed == listed + 1
    assert after.read(status_of(1, 1), 1000) == b"phase: Released\n"
    assert first.read(status_of(1, 1), 1000) == b"phase: Grayscale\nrelease: 1-1\n"
