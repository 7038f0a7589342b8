"""The release board over HTTP (Starlette's TestClient): every route, every status code,
escaping of hostile repository content, and the static export."""

from __future__ import annotations

import dataclasses
import json
import subprocess
from pathlib import Path

import pytest
from boardutil import HOSTILE, NOW, make_repo, make_status, status_files
from click.testing import CliRunner
from gitutil import git, identity, isolate_git, write_files
from starlette.testclient import TestClient

from controller.board import board_app, load_board, repository_source
from controller.board.data import Board, BoardRelease, lookup_user, steps
from controller.cli import cli
from controller.model import Phase
from controller.platform.protocol import Stage
from controller.platform.sim.model import bucket
from controller.repofiles import MemoryFiles


@pytest.fixture(autouse=True)
def _isolated_git(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_git(monkeypatch, tmp_path / "home")


def client_for(board: Board) -> TestClient:
    return TestClient(board_app(lambda: board, clock=lambda: NOW))


def memory_board(*statuses_: object) -> Board:
    statuses = list(statuses_) or [
        make_status(),
        make_status("shop", "dana", Phase.RELEASED, stage=Stage.FULL_RELEASE, grayscale=100,
                    reason="Released", message="Released to everyone", qr=True),
        make_status("rewards", "gcash", Phase.PILOT_TESTING, stage=Stage.PILOT_TESTING,
                    grayscale=0, reason="PilotTesting", message="Waiting for pilot.complete"),
    ]  # fmt: skip
    return load_board(MemoryFiles(status_files(statuses)))  # type: ignore[arg-type]


def test_index_shows_every_release_with_phase_word_exposure_and_waiting_for() -> None:
    response = client_for(memory_board()).get("/")
    assert response.status_code == 200
    page = response.text
    assert "3 of 3 releases" in page
    assert 'data-phase="Grayscale"' in page and ">Grayscale</span>" in page
    assert "Pilot testing" in page and "Released" in page
    assert 'aria-valuenow="20"' in page and "20% of users" in page
    assert "a person: raise grayscale" in page
    assert "testers, then a person: pilot.complete: true" in page
    assert '<time class="age" datetime="2026-12-03T09:55:00Z">5m</time>' in page
    assert "<caption>Mini programs by partner apps</caption>" in page
    assert 'href="releases/shop/gcash"' in page


def test_index_filters_by_mini_program_app_and_phase() -> None:
    client = client_for(memory_board())
    assert "1 of 3 releases" in client.get("/?mp=rewards").text
    assert "2 of 3 releases" in client.get("/?app=gcash").text
    page = client.get("/?phase=Released").text
    assert "1 of 3 releases" in page and 'data-key="shop/dana"' in page
    assert "No release matches these filters" in client.get("/?mp=nothing").text


def test_index_of_an_empty_repository_says_so() -> None:
    page = client_for(Board(None, ())).get("/").text
    assert "the controller has written no status file" in page


def test_release_page_shows_steps_with_the_current_one_marked() -> None:
    page = client_for(memory_board()).get("/releases/rewards/gcash").text
    assert '<li class="step step-current" aria-current="step">' in page
    assert page.count("step-done") == 3
    assert "2 testers" in page
    assert "report rep-1: 97.5% passed (39 passed, 1 failed)" in page
    assert "Not yet: the QR code appears once the release is fully released." in page


def test_release_page_of_a_released_version_has_an_inline_qr_code() -> None:
    page = client_for(memory_board()).get("/releases/shop/dana").text
    assert '<svg role="img" aria-label="QR code"' in page
    assert 'href="https://render.alipay-plus.example/p/s/i/?' in page
    assert "step-current" not in page and page.count("step-done") == 6


def test_steps_mark_a_skipped_pilot_and_a_failed_review() -> None:
    no_pilot = dataclasses.replace(make_status(testers=0), history=())
    assert [s["state"] for s in steps(no_pilot)] == [
        "done", "done", "done", "skipped", "current", "todo",
    ]  # fmt: skip
    rejected = make_status(phase=Phase.REJECTED, stage=Stage.REJECTED, stalled=True)
    assert [s["state"] for s in steps(rejected)][:3] == ["done", "done", "failed"]


def test_unknown_release_is_404_in_html_and_json() -> None:
    client = client_for(memory_board())
    assert client.get("/releases/shop/nowhere").status_code == 404
    response = client.get("/api/releases/nothing/gcash")
    assert response.status_code == 404
    assert response.json() == {"error": "no such release"}
    assert client.get("/no/such/page").status_code == 404
    assert client.get("/static/secrets.txt").status_code == 404
    assert client.get("/static/..%2Fdata.py").status_code == 404


def test_who_gets_which_version_uses_the_platforms_bucketing() -> None:
    client = client_for(memory_board())
    user = "2088000000000001"
    expected = bucket("shop", user)
    response = client.get("/api/releases/shop/gcash", params={"user": user})
    assert response.status_code == 200
    lookup = response.json()["lookup"]
    assert lookup["bucket"] == expected
    assert lookup["getsVersion"] == ("1.4.0" if expected <= 20 else None)
    page = client.get("/releases/shop/gcash", params={"user": user}).text
    assert f"bucket {expected}" in page
    released = client.get("/api/releases/shop/dana", params={"user": user}).json()
    assert released["lookup"]["getsVersion"] == "1.4.0"


def test_lookup_finds_users_on_both_sides_of_the_grayscale() -> None:
    status = make_status(grayscale=50)
    answers = {lookup_user(status, f"20880000000000{n:02d}")["getsVersion"] for n in range(40)}
    assert answers == {"1.4.0", None}


@pytest.mark.parametrize("user", ["", "x" * 65, "<script>", "2088 0001", "٣٣٣"])
def test_bad_user_id_is_400(user: str) -> None:
    client = client_for(memory_board())
    response = client.get("/releases/shop/gcash", params={"user": user})
    assert response.status_code == 400
    assert "Cannot look up:" in response.text
    assert "<script>" not in response.text.split("<main", 1)[1].split("</main>")[0]
    api = client.get("/api/releases/shop/gcash", params={"user": user})
    assert api.status_code == 400 and "error" in api.json()


def test_api_releases_is_the_same_data_as_the_pages() -> None:
    response = client_for(memory_board()).get("/api/releases")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    data = response.json()
    assert data["kind"] == "ReleaseBoard" and data["generatedAt"] == "2026-12-03T10:00:00Z"
    first = {r["miniProgram"] + "/" + r["targetApp"]: r for r in data["releases"]}
    gcash = first["shop/gcash"]
    assert gcash["phase"] == "Grayscale" and gcash["grayscale"] == 20
    assert gcash["since"] == "5m" and gcash["waitingFor"] == "a person: raise grayscale"
    assert [s["state"] for s in gcash["steps"]][4] == "current"
    assert gcash["rollout"] is None


def test_static_files_are_served_and_the_page_loads_no_third_party_resource() -> None:
    client = client_for(memory_board())
    css = client.get("/static/board.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert client.get("/static/board.js").status_code == 200
    page = client.get("/").text
    assert "http://" not in page.replace("http://www.w3.org", "")
    assert "https://" not in page


def test_a_source_that_fails_is_503_without_a_traceback() -> None:
    def broken() -> Board:
        raise RuntimeError("git exploded")

    client = TestClient(board_app(broken), raise_server_exceptions=False)
    response = client.get("/")
    assert response.status_code == 503
    assert "git exploded" not in response.text and "Traceback" not in response.text
    assert client.get("/api/releases").json() == {
        "error": "the repository cannot be read right now"
    }


def test_post_is_refused() -> None:
    assert client_for(memory_board()).post("/").status_code == 405


# --------------------------------------------------------------------------------------------
# hostile repository content
# --------------------------------------------------------------------------------------------


def test_everything_from_the_repository_is_escaped(tmp_path: Path) -> None:
    long = "A" * 20_000
    hostile = make_status(
        message=HOSTILE + long, reason=HOSTILE, version='1.4.0"><script>x</script>'
    )
    repo = make_repo(tmp_path / "repo", [hostile], author=f"Eve {HOSTILE}")
    client = TestClient(board_app(repository_source(repo), clock=lambda: NOW))
    for url in ("/", "/releases/shop/gcash"):
        page = client.get(url).text
        assert "<script>alert" not in page
        assert "<img src=x" not in page
        assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page
        assert '"><script>x' not in page
        assert page.count("<script") == 1  # our own board.js, nothing else
    page = client.get("/releases/shop/gcash").text
    # git drops angle brackets from names itself; the subject keeps them, escaped.
    assert "Eve script" in page
    assert "release shop/gcash: &lt;script&gt;alert(&#34;x&#34;)" in page
    api = client.get("/api/releases").json()
    assert api["releases"][0]["message"].startswith(HOSTILE)


def test_a_qr_link_that_is_not_http_is_not_a_link(tmp_path: Path) -> None:
    status = make_status(phase=Phase.RELEASED, stage=Stage.FULL_RELEASE, grayscale=100)
    status = dataclasses.replace(status, qr_code="javascript:alert(1)")
    page = client_for(memory_board(status)).get("/releases/shop/gcash").text
    assert 'href="javascript' not in page
    assert "<code>javascript:alert(1)</code>" in page


# --------------------------------------------------------------------------------------------
# reading git: commits, signatures, the revision
# --------------------------------------------------------------------------------------------


def test_intent_commits_show_author_and_signature(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", [make_status()])
    client = TestClient(board_app(repository_source(repo), clock=lambda: NOW))
    data = client.get("/api/releases/shop/gcash").json()
    (commit,) = data["commits"]
    assert commit["author"] == "Maria" and commit["email"] == "maria@example.com"
    assert commit["signature"] == "unsigned"
    assert data["revision"] == git(repo, "rev-parse", "HEAD")
    page = client.get("/releases/shop/gcash").text
    assert '<span class="sig sig-unsigned">unsigned</span>' in page


def test_the_board_follows_the_revision_and_never_the_work_tree(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", [make_status()])
    client = TestClient(board_app(repository_source(repo), clock=lambda: NOW))
    before = client.get("/api/releases").json()
    # An uncommitted edit is not shown; a commit is.
    later = make_status(grayscale=50)
    write_files(repo, status_files([later]))
    assert client.get("/api/releases").json()["releases"][0]["grayscale"] == 20
    git(repo, "commit", "--quiet", "-am", "more", env=identity("relctl", "bot@example.com"))
    after = client.get("/api/releases").json()
    assert after["releases"][0]["grayscale"] == 50
    assert after["revision"] != before["revision"]


def test_a_bare_remote_can_be_shown(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", [make_status()])
    bare = tmp_path / "bare.git"
    git(tmp_path, "clone", "--quiet", "--bare", str(repo), str(bare))
    data = TestClient(board_app(repository_source(bare))).get("/api/releases").json()
    assert [r["targetApp"] for r in data["releases"]] == ["gcash"]


# --------------------------------------------------------------------------------------------
# relctl board
# --------------------------------------------------------------------------------------------


def test_board_out_writes_static_pages_with_relative_links(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", [make_status(), make_status("shop", "dana")])
    out = tmp_path / "site"
    result = CliRunner().invoke(cli, ["board", "--repo", str(repo), "--out", str(out)])
    assert result.exit_code == 0, result.output
    index = (out / "index.html").read_text()
    assert 'href="releases/shop/gcash.html"' in index
    assert 'href="static/board.css"' in index and 'data-api="api/releases.json"' in index
    page = (out / "releases/shop/dana.html").read_text()
    assert 'href="../../static/board.css"' in page and 'href="../../index.html"' in page
    assert 'data-static="1"' in page
    data = json.loads((out / "api/releases.json").read_text())
    assert len(data["releases"]) == 2
    assert (out / "static/board.js").is_file()


def test_board_refuses_a_malformed_listen_address(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", [make_status()])
    result = CliRunner().invoke(cli, ["board", "--repo", str(repo), "--listen", "nonsense"])
    assert result.exit_code == 2
    assert "is not HOST:PORT" in result.output


def test_a_signed_commit_is_verified_and_a_foreign_signature_is_not(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", [make_status()])
    keys = tmp_path / "keys"
    keys.mkdir()
    for name in ("maria", "mallory"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys / name)], check=True
        )
    allowed = keys / "allowed"
    allowed.write_text(f"maria@example.com {(keys / 'maria.pub').read_text()}")
    git(repo, "config", "gpg.format", "ssh")
    git(repo, "config", "gpg.ssh.allowedSignersFile", str(allowed))
    people = identity("Maria", "maria@example.com")
    for name, grayscale in (("maria", 30), ("mallory", 40)):
        write_files(repo, {"releases/shop/gcash.yaml": f"# grayscale {grayscale}\n"})
        git(repo, "add", "-A")
        key = f"user.signingkey={keys / name}.pub"
        git(repo, "-c", key, "commit", "-q", "-S", "-m", f"signed by {name}", env=people)
    commits = TestClient(board_app(repository_source(repo))).get("/api/releases/shop/gcash")
    signatures = {c["subject"]: c["signature"] for c in commits.json()["commits"]}
    assert signatures["signed by maria"] == "verified"
    assert signatures["signed by mallory"] == "unverified"
    assert signatures["release shop/gcash: " + HOSTILE] == "unsigned"


def test_relctl_board_listen_serves_on_loopback_until_stopped(tmp_path: Path) -> None:
    import signal
    import sys
    import urllib.request

    repo = make_repo(tmp_path / "repo", [make_status()])
    command = [sys.executable, "-m", "controller", "board", "--repo", str(repo)]
    server = subprocess.Popen(
        [*command, "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        assert line.startswith("relctl board: http://127.0.0.1:"), line
        url = line.split()[2]
        with urllib.request.urlopen(f"{url}api/releases", timeout=30) as response:
            data = json.load(response)
        assert [r["targetApp"] for r in data["releases"]] == ["gcash"]
        with urllib.request.urlopen(url, timeout=30) as response:
            assert 'data-key="shop/gcash"' in response.read().decode()
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0


def test_intent_commits_take_two_git_commands_whatever_the_number_of_releases(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from controller.board import data

    statuses = [make_status(f"mp{n:02d}", "gcash") for n in range(30)]
    repo = make_repo(tmp_path / "repo", statuses)
    calls: list[tuple[str, ...]] = []
    real = data.run_git

    def counting(cwd: Path | str, *args: str, **kwargs: object) -> object:
        calls.append(args)
        return real(cwd, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(data, "run_git", counting)
    board = repository_source(repo)()
    assert len(board.releases) == 30
    assert all(len(item.commits) == 1 for item in board.releases)
    assert [args[0] for args in calls] == ["rev-parse", "log", "log"]


@pytest.mark.parametrize(
    ("phase", "stage", "reason", "stalled", "waiting"),
    [
        (Phase.PENDING, None, "WaitingForUpload", False, "the version upload"),
        (Phase.BUILDING, Stage.BUILDING, "Building", False, "the platform"),
        (Phase.IN_REVIEW, Stage.UNDER_REVIEW, "UnderReview", False, "the platform's reviewers"),
        (Phase.REJECTED, Stage.REJECTED, "Rejected", True, "a person: change the manifest"),
        (Phase.READY_TO_RELEASE, Stage.RELEASE_PREPARATION, "ReadyToRelease", False,
         "a person: grayscale above 0"),
        (Phase.GRAYSCALE, Stage.GRAYSCALE, "RaisingGrayscale", False, "the platform"),
        (Phase.RELEASED, Stage.FULL_RELEASE, "Released", False, "nobody: finished"),
        (Phase.CANCELED, Stage.CANCELED, "Canceled", False, "nobody: finished"),
        (Phase.INVALID, None, "Invalid", True, "a person: fix the manifest"),
        (Phase.FORBIDDEN, None, "Forbidden", True,
         "a person with the right role: confirm the change"),
        (Phase.PAUSED, Stage.GRAYSCALE, "Paused", False, "a person: set paused: false"),
    ],
)  # fmt: skip
def test_waiting_for_names_who_moves_the_release_on(
    phase: Phase, stage: Stage | None, reason: str, stalled: bool, waiting: str
) -> None:
    from controller.board.data import waiting_for

    status = make_status(phase=phase, stage=stage, reason=reason, stalled=stalled)
    assert waiting_for(status) == waiting


def test_a_canceled_release_has_no_current_step() -> None:
    status = make_status(phase=Phase.CANCELED, stage=Stage.CANCELED, grayscale=0)
    assert {s["state"] for s in steps(status)} == {"todo"}


def test_a_plain_directory_is_read_as_it_is_without_commits(tmp_path: Path) -> None:
    here = tmp_path / "plain"
    write_files(here, status_files([make_status()]))
    data = TestClient(board_app(repository_source(here))).get("/api/releases").json()
    assert data["revision"] is None
    assert [(r["targetApp"], r["commits"]) for r in data["releases"]] == [("gcash", [])]


def test_a_rollout_block_is_shown_when_the_status_has_one() -> None:
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class Rollout:
        step: int
        analysis: str

    status = make_status()
    object.__setattr__(status, "rollout", Rollout(2, HOSTILE))
    client = client_for(Board(None, (BoardRelease(status),)))
    assert client.get("/api/releases/shop/gcash").json()["rollout"] == {
        "step": 2,
        "analysis": HOSTILE,
    }
    page = client.get("/releases/shop/gcash").text
    assert '<h2 id="rollout-h">Rollout</h2>' in page
    assert "<dt>analysis</dt><dd>&lt;script&gt;" in page


def test_an_invalid_release_lists_its_manifest_problems_escaped() -> None:
    from controller.model import Validation

    problem = Validation("releases/shop/gcash.yaml", 7, 3, "spec.grayscale", HOSTILE)
    status = dataclasses.replace(
        make_status(phase=Phase.INVALID, stage=None, reason="Invalid", stalled=True),
        errors=(problem,),
    )
    page = client_for(memory_board(status)).get("/releases/shop/gcash").text
    assert "<code>releases/shop/gcash.yaml:7:3</code> spec.grayscale: &lt;script&gt;" in page
    assert "a person: fix the manifest" in page


def test_a_huge_commit_subject_or_author_is_cut_like_every_quoted_value(tmp_path: Path) -> None:
    """A subject is one line of any length a committer typed: it is cut, not served whole
    on every page."""
    repo = make_repo(tmp_path / "repo", [make_status()], author="Eve " + "E" * 20_000)
    git(repo, "commit", "--quiet", "--allow-empty", "-m", "x", env=identity("a", "a@b.c"))
    write_files(repo, {"releases/shop/gcash.yaml": "# again\n"})
    git(repo, "commit", "--quiet", "-a", "-m", "S" * 50_000, env=identity("a", "a@b.c"))
    client = TestClient(board_app(repository_source(repo), clock=lambda: NOW))
    commits = client.get("/api/releases/shop/gcash").json()["commits"]
    assert commits, "the intent commits are still listed"
    assert all(len(c["subject"]) < 200 for c in commits)
    assert all(len(c["author"]) < 400 for c in commits)
    page = client.get("/releases/shop/gcash").text
    assert "S" * 200 not in page and "E" * 200 not in page
