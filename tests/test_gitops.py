"""Tests of controller.gitops with real git: bare remotes in tmp_path and people's clones."""

from __future__ import annotations

import random
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from gitutil import (
    PersonClone,
    assert_fast_forward_only,
    child_processes,
    git,
    identity,
    install_hook,
    isolate_git,
    make_remote,
    remote_file,
    remote_head,
    remote_log,
    remote_path,
    remote_ref_updates,
)

from controller.gitops import (
    OBSERVED_TRAILER,
    GitError,
    PushRejected,
    UnsafeStatusPath,
    Workspace,
    WorkspaceLocked,
    WorkspaceMismatch,
    backoff_delay,
    commit_message,
    redact,
)

MANIFEST = "releases/shop/gcash.yaml"
STATUS = "status/shop/gcash.yaml"
SEED = {
    "relctl.yaml": "targetApps: [gcash, dana]\n",
    MANIFEST: "spec:\n  version: '1.4.0'\n  grayscale: 0\n",
    "releases/shop/dana.yaml": "spec:\n  version: '1.4.0'\n",
    STATUS: "phase: Building\n",
}


#: A pre-receive hook that rejects pushes while the counter file says so.
REJECT_N_TIMES = """#!/bin/sh
left=$(cat rejections-left 2>/dev/null || echo 0)
if [ "$left" -gt 0 ]; then
    echo $((left - 1)) > rejections-left
    echo "try again later" >&2
    exit 1
fi
"""


class Sleeps:
    """A fake sleep that records delays and can run an action (a person pushing) meanwhile."""

    def __init__(self) -> None:
        self.delays: list[float] = []
        self.actions: list[object] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        if self.actions:
            action = self.actions.pop(0)
            assert callable(action)
            action()


@pytest.fixture(autouse=True)
def _isolated_git(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_git(monkeypatch, tmp_path / "home")


@pytest.fixture
def remote(tmp_path: Path) -> str:
    return make_remote(tmp_path, SEED)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def workspace(remote: str, tmp_path: Path, sleeps: Sleeps) -> Iterator[Workspace]:
    ws = Workspace(
        remote,
        "main",
        tmp_path / "work",
        author_name="relctl-bot",
        author_email="bot@relctl.test",
        sleep=sleeps,
        rng=random.Random(42),
    )
    with ws:
        ws.sync()
        yield ws


@pytest.fixture
def alice(remote: str, tmp_path: Path) -> PersonClone:
    return PersonClone(remote, tmp_path / "alice", name="Alice", email="alice@example.com")


def leftovers(ws: Workspace) -> list[str]:
    """What a sync or a status write left in the controller's clone that the remote does not
    explain: files in its work tree (it holds none), an index or scratch files in its git
    directory, a local branch that is not where the remote's is."""
    found = sorted(p.name for p in ws.root.iterdir() if p.name != ".git")
    found += sorted(
        f".git/{p.name}"
        for p in (ws.root / ".git").iterdir()
        if p.name == "index" or p.name.lower().startswith("relctl")
    )
    local = git(ws.root, "rev-parse", f"refs/heads/{ws.branch}")
    tracking = git(ws.root, "rev-parse", f"refs/remotes/origin/{ws.branch}")
    if local != tracking:
        found.append(f"{ws.branch} at {local[:7]}, origin/{ws.branch} at {tracking[:7]}")
    return found


def commit_in_clone(root: Path, files: dict[str, str], message: str) -> str:
    """Commit ``files`` on the clone's local branch with plumbing and a scratch index, as a bug
    elsewhere in the controller could; nothing is pushed."""
    env = {"GIT_INDEX_FILE": str(root / ".git" / "test-scratch-index")}
    git(root, "read-tree", "HEAD", env=env)
    for path, text in files.items():
        blob = subprocess.run(
            ["git", "hash-object", "-w", "--stdin"], cwd=root, input=text.encode(),
            capture_output=True, check=True,
        ).stdout.decode().strip()  # fmt: skip
        git(root, "update-index", "--add", "--cacheinfo", f"100644,{blob},{path}", env=env)
    tree = git(root, "write-tree", env=env)
    (root / ".git" / "test-scratch-index").unlink()
    commit = git(root, "commit-tree", tree, "-p", "HEAD", "-m", message, env=identity("Bug", "b@x"))
    git(root, "update-ref", "HEAD", commit)
    return commit


# --------------------------------------------------------------------------------------------
# Clone, sync, read
# --------------------------------------------------------------------------------------------


def test_open_clones_and_sync_follows_the_remote_branch_without_a_checkout(
    workspace: Workspace, remote: str
) -> None:
    assert workspace.head == remote_head(remote)
    assert workspace.read_file(MANIFEST) == SEED[MANIFEST].encode()
    assert workspace.read_file("releases/shop/missing.yaml") is None
    assert workspace.read_file("releases") is None  # a directory is not a file
    assert workspace.root == workspace.workdir / "repo"
    assert leftovers(workspace) == []  # nothing checked out, no index


def test_checkout_fills_the_work_tree_until_the_next_sync(
    workspace: Workspace, alice: PersonClone
) -> None:
    root = workspace.checkout()
    assert (root / MANIFEST).read_text() == SEED[MANIFEST]
    assert git(root, "status", "--porcelain", "--untracked-files=all") == ""
    alice.commit_and_push({MANIFEST: "spec: {grayscale: 20}\n"}, "Raise grayscale")
    workspace.sync()
    assert leftovers(workspace) == []
    assert workspace.read_file(MANIFEST) == b"spec: {grayscale: 20}\n"


def test_read_file_never_follows_a_committed_link(workspace: Workspace, alice: PersonClone) -> None:
    (alice.path / "linked.yaml").symlink_to("relctl.yaml")
    (alice.path / "status" / "shop" / "link").symlink_to("/etc")
    alice.git("add", "-A")
    alice.commit("links")
    alice.push()
    workspace.sync()
    assert workspace.read_file("linked.yaml") is None
    assert workspace.read_file("status/shop/link/passwd") is None
    assert workspace.read_file("relctl.yaml") == SEED["relctl.yaml"].encode()


def test_read_file_refuses_paths_leaving_the_repository(workspace: Workspace) -> None:
    for path in ("../relctl.lock", "/etc/passwd", "releases/../../x"):
        with pytest.raises(ValueError):
            workspace.read_file(path)


def test_sync_follows_the_remote_and_discards_local_debris(
    workspace: Workspace, remote: str, alice: PersonClone
) -> None:
    pushed = alice.commit_and_push({MANIFEST: "spec: {grayscale: 20}\n"}, "Raise grayscale")
    (workspace.root / "stray.txt").write_text("left behind\n")
    (workspace.root / "relctl.yaml").write_text("edited in the clone\n")

    assert workspace.sync() == pushed == remote_head(remote)
    assert workspace.read_file(MANIFEST) == b"spec: {grayscale: 20}\n"
    assert leftovers(workspace) == []


def test_reopening_a_workdir_reuses_its_clone(remote: str, tmp_path: Path) -> None:
    with Workspace(remote, "main", tmp_path / "work") as ws:
        first = ws.sync()
        marker = ws.root / ".git" / "marker"
        marker.touch()
    with Workspace(remote, "main", tmp_path / "work") as ws:
        assert marker.exists()  # not cloned again
        assert ws.sync() == first


def test_workdir_holding_a_clone_of_another_remote_is_refused(remote: str, tmp_path: Path) -> None:
    other = make_remote(tmp_path, {"a.txt": "a\n"}, name="other.git")
    with Workspace(remote, "main", tmp_path / "work"):
        pass
    with pytest.raises(WorkspaceMismatch, match=r"other\.git"):
        Workspace(other, "main", tmp_path / "work").open()
    # the failed open released the lock
    with Workspace(remote, "main", tmp_path / "work") as ws:
        ws.sync()


def test_a_plain_path_remote_matches_its_file_url(remote: str, tmp_path: Path) -> None:
    plain = remote.removeprefix("file://")
    with Workspace(plain, "main", tmp_path / "work") as ws:
        ws.sync()
    with Workspace(remote, "main", tmp_path / "work") as ws:
        assert ws.read_file("relctl.yaml") is not None


def test_unknown_branch_is_a_one_line_git_error(remote: str, tmp_path: Path) -> None:
    with Workspace(remote, "release", tmp_path / "work") as ws, pytest.raises(GitError) as err:
        ws.sync()
    assert str(err.value) == f"branch 'release' not found on {ws.remote}"


def test_unreachable_remote_is_a_one_line_git_error(tmp_path: Path) -> None:
    missing = (tmp_path / "nowhere.git").as_uri()
    with pytest.raises(GitError) as err:
        Workspace(missing, "main", tmp_path / "work").open()
    message = str(err.value)
    assert message.startswith(f"cannot clone {missing}: fatal:")
    assert "\n" not in message
    assert not (tmp_path / "work" / "repo").exists()


def test_invalid_branch_name_is_refused(remote: str, tmp_path: Path) -> None:
    with pytest.raises(GitError, match="not a valid branch name"):
        Workspace(remote, "main..x", tmp_path / "work").open()


def test_credentials_in_urls_are_redacted() -> None:
    assert redact("cannot clone https://bot:s3cret@git.example/r.git") == (
        "cannot clone https://***@git.example/r.git"
    )
    assert redact("ssh://git@host/r.git and git@host:r.git") == (
        "ssh://***@host/r.git and git@host:r.git"
    )


# --------------------------------------------------------------------------------------------
# Writing status
# --------------------------------------------------------------------------------------------


def test_status_commit_carries_author_trailer_and_skip_ci(
    workspace: Workspace, remote: str
) -> None:
    observed = workspace.head
    result = workspace.write_status(
        {STATUS: b"phase: Review\n", "status/shop/dana.yaml": b"phase: Building\n"},
        "status: shop/gcash Review\n\n- shop/gcash 1.4.0: applied",
        observed_commit=observed,
        skip_ci=True,
    )

    assert result is not None
    assert result.attempts == 1
    assert result.files == ("status/shop/dana.yaml", STATUS)
    assert remote_head(remote) == result.commit == workspace.last_pushed
    assert remote_file(remote, STATUS) == b"phase: Review\n"
    top = remote_log(remote)[0]
    assert top.author == "relctl-bot"
    assert top.subject == "status: shop/gcash Review [skip ci]"
    assert top.message.endswith(f"\n\n{OBSERVED_TRAILER}: {observed}\n")
    assert "- shop/gcash 1.4.0: applied" in top.message
    committer = git(workspace.root, "log", "-1", "--format=%an <%ae> / %cn <%ce>")
    assert committer == "relctl-bot <bot@relctl.test> / relctl-bot <bot@relctl.test>"
    assert leftovers(workspace) == []


def test_a_commit_message_longer_than_one_command_line_argument_is_committed(
    workspace: Workspace, remote: str
) -> None:
    """Linux refuses a single argument over 128 KiB (E2BIG); the message goes by file."""
    body = "\n".join(f"- shop{n}/gcash 1.4.0: Testing -> InReview (apply)" for n in range(4000))
    assert len(body) > 128 * 1024
    result = workspace.write_status(
        {STATUS: b"phase: Review\n"}, f"status: 4000 releases\n\n{body}",
        observed_commit=workspace.head, skip_ci=False,
    )  # fmt: skip
    assert result is not None
    assert remote_log(remote)[0].message.count("\n- shop") == 4000
    assert not (workspace.root / ".git" / "RELCTL_COMMIT_MSG").exists()


def test_identical_status_makes_no_commit(workspace: Workspace, remote: str) -> None:
    seeded = workspace.write_status(
        {STATUS: SEED[STATUS].encode()}, "status: same", observed_commit=workspace.head
    )
    assert seeded is None
    assert remote_head(remote) == workspace.head

    first = workspace.write_status(
        {STATUS: b"phase: Review\n"}, "status: review", observed_commit=workspace.head
    )
    assert first is not None
    workspace.sync()
    again = workspace.write_status(
        {STATUS: b"phase: Review\n"}, "status: review", observed_commit=workspace.head
    )
    assert again is None
    assert remote_head(remote) == workspace.head == first.commit
    assert len(remote_log(remote)) == 2


def test_deleting_a_status_file(workspace: Workspace, remote: str) -> None:
    result = workspace.write_status(
        {STATUS: None}, "status: shop/gcash removed", observed_commit=workspace.head
    )
    assert result is not None
    assert result.files == (STATUS,)
    assert remote_file(remote, STATUS) is None
    assert remote_file(remote, MANIFEST) is not None
    assert workspace.read_file(STATUS) is None

    missing = workspace.write_status(
        {"status/shop/never.yaml": None}, "status: nothing", observed_commit=workspace.head
    )
    assert missing is None


@pytest.mark.parametrize(
    "path",
    [
        MANIFEST,
        "relctl.yaml",
        "status",
        "status/",
        "status/../releases/shop/gcash.yaml",
        "status/shop/../../relctl.yaml",
        "/etc/passwd",
        "/status/x.yaml",
        "./status/x.yaml",
        "status//x.yaml",
        "status\\x.yaml",
        "status/.git/config",
        ".git/config",
    ],
)
def test_writes_outside_status_are_refused_and_nothing_is_pushed(
    workspace: Workspace, remote: str, path: str
) -> None:
    before = remote_head(remote)
    with pytest.raises(UnsafeStatusPath):
        workspace.write_status(
            {STATUS: b"phase: Review\n", path: b"x\n"},
            "status: sneaky",
            observed_commit=workspace.head,
        )
    assert remote_head(remote) == before == workspace.head
    assert leftovers(workspace) == []


def test_a_commit_touching_files_outside_status_is_never_pushed(
    workspace: Workspace, remote: str
) -> None:
    before = remote_head(remote)
    # A bug elsewhere committed a person's file on the controller's local branch.
    bug = commit_in_clone(workspace.root, {MANIFEST: "spec: {grayscale: 100}\n"}, "bug")

    with pytest.raises(UnsafeStatusPath, match=MANIFEST):
        workspace.write_status(
            {STATUS: b"phase: Review\n"}, "status: review", observed_commit=before
        )
    assert remote_head(remote) == before
    assert workspace.head == bug  # the status commit on top of it was dropped
    assert workspace.last_pushed is None
    assert workspace.sync() == before
    assert leftovers(workspace) == []


def test_a_file_staged_in_the_clone_never_reaches_a_status_commit(
    workspace: Workspace, remote: str
) -> None:
    """Status commits are built from the head's tree, not from the clone's index or files."""
    (workspace.root / "releases" / "shop").mkdir(parents=True)
    (workspace.root / MANIFEST).write_text("spec: {grayscale: 100}\n")
    git(workspace.root, "add", MANIFEST)

    result = workspace.write_status(
        {STATUS: b"phase: Review\n"}, "status: review", observed_commit=workspace.head
    )
    assert result is not None
    assert result.files == (STATUS,)
    assert git(workspace.root, "show", "--name-only", "--format=", result.commit) == STATUS
    assert remote_file(remote, MANIFEST) == SEED[MANIFEST].encode()


@pytest.mark.parametrize("what", ["link to releases", "file", "link at status/shop"])
def test_a_status_path_that_is_not_a_directory_is_replaced_not_followed(
    workspace: Workspace, remote: str, alice: PersonClone, what: str
) -> None:
    """status/ belongs to the controller: a link or file there is removed, never written
    through, and one hostile commit cannot wedge status writes."""
    alice.git("rm", "--quiet", "-r", "status")
    if what == "link to releases":
        (alice.path / "status").symlink_to("releases")
    elif what == "file":
        (alice.path / "status").write_text("not a directory\n")
    else:
        (alice.path / "status").mkdir()
        (alice.path / "status" / "shop").symlink_to("../releases/shop")
    alice.git("add", "-A")
    alice.commit(f"status: {what}")
    alice.push()
    workspace.sync()

    pushed = workspace.write_status(
        {"status/shop/gcash.yaml": b"x\n"}, "status: x", observed_commit=workspace.head
    )
    assert pushed is not None
    assert remote_file(remote, MANIFEST) == SEED[MANIFEST].encode()
    assert remote_file(remote, "status/shop/gcash.yaml") == b"x\n"
    assert remote_head(remote) == pushed.commit


def test_bad_arguments_are_refused(workspace: Workspace) -> None:
    with pytest.raises(ValueError, match="full commit sha"):
        workspace.write_status({STATUS: b"x\n"}, "status: x", observed_commit="HEAD")
    with pytest.raises(ValueError, match="subject"):
        workspace.write_status({STATUS: b"x\n"}, "\n\n", observed_commit=workspace.head)


# --------------------------------------------------------------------------------------------
# Push races
# --------------------------------------------------------------------------------------------


def test_push_race_lands_status_on_top_of_the_persons_commit(
    workspace: Workspace, remote: str, alice: PersonClone, sleeps: Sleeps
) -> None:
    observed = workspace.head
    person = alice.commit_and_push({MANIFEST: "spec: {grayscale: 20}\n"}, "Raise grayscale")

    result = workspace.write_status(
        {STATUS: b"phase: Grayscale\n"}, "status: grayscale", observed_commit=observed
    )

    assert result is not None
    assert result.attempts == 2
    log = remote_log(remote)
    assert [c.sha for c in log[:2]] == [result.commit, person]
    assert all(len(c.parents) <= 1 for c in log)  # linear: no merge, nothing rewritten
    assert remote_file(remote, MANIFEST) == b"spec: {grayscale: 20}\n"
    assert remote_file(remote, STATUS) == b"phase: Grayscale\n"
    assert f"{OBSERVED_TRAILER}: {observed}" in log[0].message
    assert_fast_forward_only(remote)
    assert len(sleeps.delays) == 1
    assert 0.1 <= sleeps.delays[0] < 0.2


def test_push_race_on_the_same_status_file_keeps_the_person_commit(
    workspace: Workspace, remote: str, alice: PersonClone
) -> None:
    person = alice.commit_and_push({STATUS: "phase: hand-edited\n"}, "Edit status by hand")

    result = workspace.write_status(
        {STATUS: b"phase: Review\n"}, "status: review", observed_commit=workspace.head
    )

    assert result is not None
    assert remote_file(remote, STATUS) == b"phase: Review\n"
    log = remote_log(remote)
    assert [c.sha for c in log[:2]] == [result.commit, person]
    assert_fast_forward_only(remote)


def test_push_race_where_the_new_head_already_has_the_status_commits_nothing(
    workspace: Workspace, remote: str, alice: PersonClone
) -> None:
    person = alice.commit_and_push({STATUS: "phase: Review\n"}, "Same status")

    result = workspace.write_status(
        {STATUS: b"phase: Review\n"}, "status: review", observed_commit=workspace.head
    )

    assert result is None
    assert remote_head(remote) == person == workspace.head


def test_repeated_rejections_back_off_exponentially_with_jitter(
    workspace: Workspace, remote: str, alice: PersonClone, sleeps: Sleeps
) -> None:
    alice.commit_and_push({MANIFEST: "spec: {grayscale: 20}\n"}, "Raise grayscale")
    # Then the remote turns the next two pushes away (as a busy server or a lost ref lock would).
    install_hook(remote, "pre-receive", REJECT_N_TIMES)
    (remote_path(remote) / "rejections-left").write_text("2\n")

    result = workspace.write_status(
        {STATUS: b"phase: Review\n"}, "status: review", observed_commit=workspace.head
    )

    assert result is not None
    assert result.attempts == 4
    assert [c.subject for c in remote_log(remote)[:3]] == [
        "status: review",
        "Raise grayscale",
        "Seed",
    ]
    first, second, third = sleeps.delays
    assert 0.1 <= first < 0.2 and 0.2 <= second < 0.4 and 0.4 <= third < 0.8
    assert_fast_forward_only(remote)


def test_push_rejected_after_max_attempts_forces_nothing(
    workspace: Workspace, remote: str, sleeps: Sleeps
) -> None:
    hook = install_hook(remote, "pre-receive", "#!/bin/sh\necho 'branch is frozen' >&2\nexit 1\n")
    before = remote_head(remote)
    updates = remote_ref_updates(remote)

    with pytest.raises(PushRejected) as err:
        workspace.write_status(
            {STATUS: b"phase: Review\n"},
            "status: review",
            observed_commit=workspace.head,
            max_attempts=3,
        )

    assert err.value.attempts == 3
    assert "pre-receive hook declined" in str(err.value)
    assert "\n" not in str(err.value)
    assert len(sleeps.delays) == 2
    assert remote_head(remote) == before == workspace.head  # the local commit was dropped
    assert remote_ref_updates(remote) == updates
    assert leftovers(workspace) == []
    assert workspace.last_pushed is None

    hook.unlink()
    result = workspace.write_status(
        {STATUS: b"phase: Review\n"}, "status: review", observed_commit=workspace.head
    )
    assert result is not None
    assert remote_head(remote) == result.commit
    assert_fast_forward_only(remote)


def test_remote_gone_at_push_time_is_a_one_line_git_error(
    workspace: Workspace, remote: str, tmp_path: Path
) -> None:
    before = workspace.head
    remote_path(remote).rename(tmp_path / "moved.git")

    with pytest.raises(GitError) as err:
        workspace.write_status(
            {STATUS: b"phase: Review\n"}, "status: review", observed_commit=before
        )

    assert str(err.value).startswith(f"cannot push to {workspace.remote}: fatal:")
    assert "\n" not in str(err.value)
    assert workspace.head == before  # the unpushed commit was dropped
    assert leftovers(workspace) == []
    assert workspace.last_pushed is None


def test_backoff_is_bounded_and_jittered() -> None:
    rng = random.Random(1)
    delays = [backoff_delay(n, rng, base=0.2, cap=5.0) for n in range(1, 10)]
    for n, delay in enumerate(delays, start=1):
        ceiling = min(5.0, 0.2 * 2 ** (n - 1))
        assert ceiling / 2 <= delay < ceiling
    assert len(set(delays)) == len(delays)


def test_commit_message_adds_skip_ci_once_and_the_trailer() -> None:
    sha = "a" * 40
    assert commit_message("status: x [skip ci]", sha, skip_ci=True) == (
        f"status: x [skip ci]\n\n{OBSERVED_TRAILER}: {sha}\n"
    )
    assert commit_message("  status: x\n\nbody\n", sha, skip_ci=False) == (
        f"status: x\n\nbody\n\n{OBSERVED_TRAILER}: {sha}\n"
    )


# --------------------------------------------------------------------------------------------
# History helpers
# --------------------------------------------------------------------------------------------


def test_changed_paths_and_log_tell_people_from_the_controller(
    workspace: Workspace, alice: PersonClone
) -> None:
    start = workspace.head
    alice.commit_and_push({MANIFEST: "spec: {grayscale: 50}\n"}, "Raise grayscale to 50")
    workspace.sync()
    own = workspace.write_status(
        {STATUS: b"phase: Grayscale\n"}, "status: grayscale", observed_commit=workspace.head
    )
    assert own is not None
    workspace.sync()

    assert workspace.changed_paths(start) == [MANIFEST, STATUS]
    commits = workspace.log(since=start)
    assert [(c.sha == own.commit, c.author_name, c.subject) for c in commits] == [
        (True, "relctl-bot", "status: grayscale"),
        (False, "Alice", "Raise grayscale to 50"),
    ]
    assert commits[1].author_email == "alice@example.com"
    assert abs(commits[1].time.timestamp() - time.time()) < 60
    people = workspace.log(["releases/"], since=start)
    assert [c.subject for c in people] == ["Raise grayscale to 50"]
    assert workspace.last_pushed == own.commit == workspace.head


# --------------------------------------------------------------------------------------------
# Lock and processes
# --------------------------------------------------------------------------------------------


def test_second_workspace_on_the_same_workdir_is_locked(remote: str, tmp_path: Path) -> None:
    import os

    with Workspace(remote, "main", tmp_path / "work"):
        with pytest.raises(WorkspaceLocked) as err:
            Workspace(remote, "main", tmp_path / "work").open()
        assert err.value.pid == os.getpid()
        assert f"locked by process {os.getpid()}" in str(err.value)
        # another workdir is fine
        with Workspace(remote, "main", tmp_path / "other") as ws:
            ws.sync()
    with Workspace(remote, "main", tmp_path / "work") as ws:
        ws.sync()


def test_close_ends_gitpython_helper_processes(workspace: Workspace) -> None:
    def cat_files() -> list[str]:
        return [p.args for p in child_processes() if "cat-file" in p.args]

    assert workspace.repo.head.commit.message == "Seed\n"  # starts GitPython's cat-file helpers
    assert cat_files(), "the check must see GitPython's helpers while the repo is open"

    workspace.close()

    assert cat_files() == []
    assert [p for p in child_processes() if p.state == "Z"] == []
    with pytest.raises(GitError, match="not open"):
        _ = workspace.repo


# --------------------------------------------------------------------------------------------
# Large repositories (speed itself is measured by bench/reconcile.py, not asserted here)
# --------------------------------------------------------------------------------------------


def test_status_commit_in_a_large_repository_touches_only_the_written_files(
    tmp_path: Path,
) -> None:
    files = {f"releases/app{i // 100}/target{i % 100}.yaml": f"n: {i}\n" for i in range(2_000)}
    remote = make_remote(tmp_path, files)
    status = {f"status/app{i}/target0.yaml": f"phase: {i}\n".encode() for i in range(50)}
    with Workspace(remote, "main", tmp_path / "work") as ws:
        ws.sync()
        result = ws.write_status(status, "status: 50 releases", observed_commit=ws.head)
        assert result is not None
        assert sorted(result.files) == sorted(status)
        touched = git(ws.root, "show", "--name-only", "--format=", result.commit).split()
        assert sorted(touched) == sorted(status)
        assert ws.sync() == result.commit
        assert ws.write_status(status, "status: 50 releases", observed_commit=ws.head) is None
