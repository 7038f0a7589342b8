"""``relctl run --listen`` as operators run it: a real daemon process, scraped by a real
Prometheus, woken by the post-receive hook of a real git server (dulwich's smart HTTP) on a
real ``git push``, logging JSON lines without secrets.

Nothing is faked here but the simulator's clock. Waits are bounded generously (a slow
machine passes); none asserts how fast something happened.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from wsgiref.simple_server import WSGIServer

import pytest
from controller_world import World, make_world, manifest
from gitutil import isolate_git
from sysdeps import require_program

# Real daemon processes open the simulator's file themselves: one transport is enough.
pytestmark = pytest.mark.inprocess_only

SECRET = "hook-s3cret-value"
TOKEN = "t0ken-in-the-url"


@pytest.fixture(autouse=True)
def _git(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_git(monkeypatch, tmp_path / "home")


def wait_until(what: str, check: Callable[[], bool], deadline: float = 90.0) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"gave up waiting for {what}")


@dataclass
class Daemon:
    process: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    url: str = ""

    def json_lines(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.lines if line.startswith("{")]


@contextmanager
def daemon(world: World, workdir: Path, remote: str, *extra: str) -> Iterator[Daemon]:
    command = [
        sys.executable, "-m", "controller", "run", "--remote", remote,
        "--workdir", str(workdir), "--platform", f"sim:{world.simulator.path}",
        "--trust-on-first-use", "--listen", "127.0.0.1:0", "--interval", "3600",
        "--jitter", "0", "--log-format", "json", *extra,
    ]  # fmt: skip
    env = {**os.environ, "RELCTL_WEBHOOK_SECRET": SECRET}
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env
    )
    running = Daemon(process)

    def read() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            running.lines.append(line.rstrip("\n"))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:

        def listening() -> bool:
            for entry in running.json_lines():
                message = str(entry.get("message", ""))
                if message.startswith("listening on "):
                    running.url = message.removeprefix("listening on ")
                    return True
            assert process.poll() is None, "\n".join(running.lines)
            return False

        wait_until("the daemon to listen", listening)
        yield running
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        reader.join(10)


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def remote_has(bare: Path, path: str) -> bool:
    result = subprocess.run(
        ["git", "--git-dir", str(bare), "cat-file", "-e", f"main:{path}"],
        check=False,
        stderr=subprocess.DEVNULL,
    )
    return result.returncode == 0


# --------------------------------------------------------------------------------------------
# a git server whose post-receive hook calls the webhook
# --------------------------------------------------------------------------------------------

HOOK = """\
#!{python}
import hashlib, hmac, json, sys, urllib.request

lines = sys.stdin.read().splitlines()  # dulwich sends no final newline
for line in lines:
    old, new, ref = line.split()
    body = json.dumps({{"ref": ref, "before": old, "after": new}}).encode()
    signature = hmac.new({secret!r}.encode(), body, hashlib.sha256).hexdigest()
    request = urllib.request.Request(
        {url!r}, data=body, method="POST",
        headers={{"Content-Type": "application/json", "X-GitHub-Event": "push",
                  "X-Hub-Signature-256": "sha256=" + signature}},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 202
"""


@contextmanager
def git_http_server(bare: Path) -> Iterator[str]:
    from dulwich.repo import Repo
    from dulwich.server import DictBackend
    from dulwich.web import WSGIRequestHandlerLogger, make_server, make_wsgi_chain

    repo = Repo(str(bare))
    app = make_wsgi_chain(DictBackend({"/": repo}))  # type: ignore[dict-item]
    server: WSGIServer = make_server("127.0.0.1", 0, app, handler_class=WSGIRequestHandlerLogger)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/"
    finally:
        server.shutdown()
        server.server_close()
        repo.close()


def test_a_push_through_a_git_server_wakes_the_daemon_through_its_webhook(
    tmp_path: Path,
) -> None:
    files = {"releases/shop/gcash.yaml": manifest()}
    with make_world(tmp_path, files) as world:
        bare = Path(world.remote.removeprefix("file://"))
        with git_http_server(bare) as git_url, daemon(world, tmp_path / "work", world.remote) as d:
            wait_until("the first pass", lambda: remote_has(bare, "status/shop/gcash.yaml"))
            hook = bare / "hooks" / "post-receive"
            hook.parent.mkdir(exist_ok=True)
            hook.write_text(
                HOOK.format(python=sys.executable, secret=SECRET, url=f"{d.url}/hooks/git")
            )
            hook.chmod(hook.stat().st_mode | stat.S_IXUSR)
            # a person pushes a new release through the git server (smart HTTP)
            person = world.person
            person.pull()
            (person.path / "releases/shop/dana.yaml").write_text(manifest(target_app="dana"))
            subprocess.run(["git", "-C", str(person.path), "add", "-A"], check=True)
            subprocess.run(
                [
                    "git",
                    "-C",
                    str(person.path),
                    "-c",
                    "user.name=Maria",
                    "-c",
                    "user.email=maria@example.com",
                    "commit",
                    "-qm",
                    "release shop to dana",
                ],
                check=True,
            )
            subprocess.run(
                ["git", "-C", str(person.path), "push", "-q", git_url, "HEAD:refs/heads/main"],
                check=True,
            )
            # the next interval is an hour away: only the webhook can bring this pass
            wait_until("the webhook's pass", lambda: remote_has(bare, "status/shop/dana.yaml"))
            messages = [str(e["message"]) for e in d.json_lines()]
            assert any(m.startswith("webhook from github") for m in messages), messages


def test_probes_and_json_logs_of_a_running_daemon_hide_secrets(tmp_path: Path) -> None:
    files = {"releases/shop/gcash.yaml": manifest()}
    with make_world(tmp_path, files) as world:
        bare = Path(world.remote.removeprefix("file://"))
        with git_http_server(bare) as git_url:
            remote = git_url.replace("http://", f"http://relctl:{TOKEN}@")
            with daemon(world, tmp_path / "work", remote, "--format", "json") as d:
                assert get(f"{d.url}/healthz")[0] == 200
                wait_until("the first pass", lambda: remote_has(bare, "status/shop/gcash.yaml"))
                wait_until("readiness", lambda: get(f"{d.url}/readyz")[0] == 200)
                status, _ = get(f"{d.url}/nothing-here")
                assert status == 404
        entries = d.json_lines()
        banners = [line for line in d.lines if line.startswith("relctl controller:")]
        # --format json puts the start and stop lines on stderr too: the remote is redacted
        assert banners[0].startswith("relctl controller: http://***@127.0.0.1:"), banners
        assert len(entries) + len(banners) == len(d.lines), "every log line is one JSON object"
        moved = [e for e in entries if e.get("release") == "shop/gcash"]
        assert moved and {"version", "phase", "commit"} <= set(moved[0])
        assert any("duration" in e for e in entries)
        text = "\n".join(d.lines)
        assert TOKEN not in text and SECRET not in text


def test_relctl_run_listen_serves_the_release_board_at_the_root(tmp_path: Path) -> None:
    """The board (controller/board) is mounted at "/" of the daemon's one HTTP server, over
    the branch as the controller last fetched or pushed it."""
    files = {"releases/shop/gcash.yaml": manifest()}
    with make_world(tmp_path, files) as world:
        bare = Path(world.remote.removeprefix("file://"))
        with daemon(world, tmp_path / "work", world.remote) as d:
            wait_until("the first pass", lambda: remote_has(bare, "status/shop/gcash.yaml"))
            wait_until(
                "the board to show shop/gcash",
                lambda: "gcash" in get(f"{d.url}/api/releases")[1],
            )
            status, page = get(f"{d.url}/")
            assert status == 200 and "gcash" in page
            assert get(f"{d.url}/releases/shop/gcash")[0] == 200
            assert get(f"{d.url}/healthz")[0] == 200  # the daemon's own routes still answer


# --------------------------------------------------------------------------------------------
# a real Prometheus scrapes /metrics
# --------------------------------------------------------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def prometheus(tmp: Path, target: str) -> Iterator[str]:
    binary = require_program("prometheus", "prometheus")
    tmp.mkdir(parents=True, exist_ok=True)
    config = tmp / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: relctl\n    static_configs: [{{targets: ['{target}']}}]\n"
    )
    port = free_port()
    process = subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(30)
        shutil.rmtree(tmp / "tsdb", ignore_errors=True)


def query(server: str, promql: str) -> list[dict[str, object]]:
    url = f"{server}/api/v1/query?query={urllib.parse.quote(promql)}"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            answer = json.load(response)
    except OSError:
        return []
    return list(answer["data"]["result"]) if answer.get("status") == "success" else []


def test_prometheus_scrapes_the_metrics_by_their_documented_names(tmp_path: Path) -> None:
    require_program("prometheus", "prometheus")
    files = {
        "releases/shop/gcash.yaml": manifest(),
        "releases/shop/dana.yaml": manifest(target_app="dana"),
    }
    with make_world(tmp_path, files) as world:
        bare = Path(world.remote.removeprefix("file://"))
        with daemon(world, tmp_path / "work", world.remote) as d:
            wait_until("the first pass", lambda: remote_has(bare, "status/shop/dana.yaml"))
            target = d.url.removeprefix("http://")
            with prometheus(tmp_path / "prom", target) as server:
                wait_until(
                    "a scrape of relctl",
                    lambda: any(r["value"][1] == "1" for r in query(server, 'up{job="relctl"}')),  # type: ignore[index]
                )
                names = {
                    str(r["metric"]["__name__"])  # type: ignore[index]
                    for r in query(server, '{__name__=~"relctl_.+"}')
                }
                assert {
                    "relctl_reconcile_total",
                    "relctl_reconcile_errors_total",
                    "relctl_reconcile_duration_seconds_bucket",
                    "relctl_release_info",
                    "relctl_release_grayscale_percent",
                    "relctl_platform_calls_total",
                    "relctl_git_push_attempts_total",
                    "relctl_leader",
                } <= names, names
                info = query(server, "relctl_release_info")
                labels = {
                    (r["metric"]["mini_program"], r["metric"]["target_app"])  # type: ignore[index]
                    for r in info
                }
                assert labels == {("shop", "gcash"), ("shop", "dana")}
                assert all("commit" not in r["metric"] for r in info)  # type: ignore[operator]
                passes = query(server, 'relctl_reconcile_total{result="success"}')
                assert passes and float(passes[0]["value"][1]) >= 1  # type: ignore[index]


# --------------------------------------------------------------------------------------------
# notifications from relctl run
# --------------------------------------------------------------------------------------------


def signed_push(url: str) -> None:
    import hashlib
    import hmac

    body = json.dumps({"ref": "refs/heads/main"}).encode()
    signature = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    request = urllib.request.Request(
        f"{url}/hooks/git", data=body, method="POST",
        headers={"X-Hub-Signature-256": f"sha256={signature}", "Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 202


def test_relctl_run_emails_the_team_when_review_approves_a_release(tmp_path: Path) -> None:
    from controller_world import CONFIG
    from notifyutil import smtp_server

    with smtp_server() as box:
        config = CONFIG + f'notifications:\n  - name: team-mail\n    url: "{box.url()}"\n'
        files = {"relctl.yaml": config, "releases/shop/gcash.yaml": manifest()}
        with make_world(tmp_path, files) as world:
            with daemon(world, tmp_path / "work", world.remote) as d:
                end = time.monotonic() + 120
                while not any("PilotStarted" in str(m["Subject"]) for m in box.messages):
                    assert time.monotonic() < end, [str(m["Subject"]) for m in box.messages]
                    # the platform moves (builds, tests, the reviewer approves); a push wakes
                    # the controller each time (its interval is an hour)
                    world.approve_all()
                    world.simulator.advance(60)
                    signed_push(d.url)
                    time.sleep(0.3)
            subjects = sorted(str(m["Subject"]) for m in box.messages)
            assert "[relctl] shop/gcash 1.4.0: Approved" in subjects, subjects
            assert len(subjects) == len(set(subjects)), subjects


# --------------------------------------------------------------------------------------------
# two replicas of relctl run
# --------------------------------------------------------------------------------------------


def leader_gauge(url: str) -> float | None:
    status, text = get(f"{url}/metrics")
    if status != 200:
        return None
    for line in text.splitlines():
        if line.startswith("relctl_leader "):
            return float(line.split()[1])
    return None


def test_two_relctl_run_replicas_one_leads_and_a_sigterm_hands_the_lease_over(
    tmp_path: Path,
) -> None:
    files = {"releases/shop/gcash.yaml": manifest()}
    lease = ("--lease-duration", "600", "--interval", "0.5")
    with make_world(tmp_path, files) as world:
        with daemon(world, tmp_path / "a", world.remote, *lease, "--replica-id", "a") as a:
            wait_until("a to lead", lambda: leader_gauge(a.url) == 1)
            with daemon(world, tmp_path / "b", world.remote, *lease, "--replica-id", "b") as b:
                wait_until("b to be ready", lambda: get(f"{b.url}/readyz")[0] == 200)
                assert "standby" in get(f"{b.url}/readyz")[1]
                assert leader_gauge(b.url) == 0 and leader_gauge(a.url) == 1
                # SIGTERM: a hands the lease back, b takes it long before 600 s
                a.process.send_signal(signal.SIGTERM)
                assert a.process.wait(60) == 0
                wait_until("b to lead", lambda: leader_gauge(b.url) == 1)
        assert any("lease" in str(e.get("message")) for e in b.json_lines())
