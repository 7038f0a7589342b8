"""The daemon's HTTP server: probes, /metrics, the push webhook's verification, the board mount.

The app is driven through Starlette's TestClient (in-process ASGI) and, once, through a real
uvicorn on 127.0.0.1. The signatures are computed the way GitHub, Gitea and GitLab send them.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import urllib.request
import warnings
from collections.abc import Iterator

import pytest
from starlette.responses import PlainTextResponse
from starlette.types import Receive, Scope, Send

from controller.metrics import Metrics, ReleaseSample
from controller.server import HttpServer, WebhookSettings, build_app, parse_listen, verify_signature

with warnings.catch_warnings():  # Starlette 1.10 prefers httpx2, not available here
    warnings.simplefilter("ignore", DeprecationWarning)
    from starlette.testclient import TestClient

SECRET = "s3cret-webhook"
PUSH = json.dumps({"ref": "refs/heads/main", "after": "0" * 40}).encode()


class FakeProbes:
    def __init__(self) -> None:
        self.healthy = True
        self.is_ready = False

    def health(self) -> tuple[bool, str]:
        return self.healthy, "ok" if self.healthy else "the scheduler is not running"

    def ready(self) -> tuple[bool, str]:
        return self.is_ready, "ok" if self.is_ready else "no fetch has succeeded yet"


class Triggers:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


async def board(scope: Scope, receive: Receive, send: Send) -> None:
    """A stand-in for the release board: answers every path it is given."""
    response = PlainTextResponse(f"board:{scope['path']}")
    await response(scope, receive, send)


@pytest.fixture
def parts() -> Iterator[tuple[TestClient, FakeProbes, Triggers, Metrics]]:
    metrics, probes, triggers = Metrics(), FakeProbes(), Triggers()
    app = build_app(metrics, probes, triggers, WebhookSettings(SECRET), board=board)
    with TestClient(app) as client:
        yield client, probes, triggers, metrics


def github(body: bytes, secret: str = SECRET) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-GitHub-Event": "push", "X-Hub-Signature-256": f"sha256={digest}"}


def gitea(body: bytes, secret: str = SECRET) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Gitea-Event": "push", "X-Gitea-Signature": digest}


def gitlab(_body: bytes, secret: str = SECRET) -> dict[str, str]:
    return {"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": secret}


def test_probes_answer_what_the_daemon_says(parts: tuple) -> None:
    client, probes, _triggers, _metrics = parts
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 503 and "no fetch" in ready.text
    probes.is_ready = True
    assert client.get("/readyz").status_code == 200
    probes.healthy = False
    assert client.get("/healthz").status_code == 503


def test_metrics_are_exposed_with_their_controller_runtime_names(parts: tuple) -> None:
    client, _probes, _triggers, metrics = parts
    metrics.reconcile_total.labels("success").inc()
    metrics.record_releases([ReleaseSample("shop", "gcash", "1.4.0", "Grayscale", 20)])
    metrics.record_releases([ReleaseSample("shop", "gcash", "1.4.0", "Released", 100)])
    text = client.get("/metrics").text
    assert 'relctl_reconcile_total{result="success"} 1.0' in text
    assert "relctl_reconcile_duration_seconds_bucket" in text
    assert "relctl_leader 0.0" in text
    info = [line for line in text.splitlines() if line.startswith("relctl_release_info{")]
    # one series per release: the Grayscale series went away when the phase changed
    assert info == [
        'relctl_release_info{mini_program="shop",phase="Released",target_app="gcash",'
        'version="1.4.0"} 1.0'
    ]
    assert 'relctl_release_grayscale_percent{mini_program="shop",target_app="gcash"} 100.0' in text


@pytest.mark.parametrize("sign", [github, gitea, gitlab], ids=["github", "gitea", "gitlab"])
def test_a_signed_push_to_main_requests_a_pass(parts: tuple, sign) -> None:  # type: ignore[no-untyped-def]
    client, _probes, triggers, _metrics = parts
    response = client.post("/hooks/git", content=PUSH, headers=sign(PUSH))
    assert response.status_code == 202, response.text
    assert response.json()["triggered"] is True
    assert triggers.count == 1


@pytest.mark.parametrize("sign", [github, gitea, gitlab], ids=["github", "gitea", "gitlab"])
def test_a_bad_signature_is_refused_with_401(parts: tuple, sign) -> None:  # type: ignore[no-untyped-def]
    client, _probes, triggers, _metrics = parts
    response = client.post("/hooks/git", content=PUSH, headers=sign(PUSH, "wrong-secret"))
    assert response.status_code == 401
    assert client.post("/hooks/git", content=PUSH).status_code == 401
    if sign is not gitlab:  # GitLab sends its token, not a signature of the body
        tampered = PUSH.replace(b"0000", b"1111")
        assert client.post("/hooks/git", content=tampered, headers=sign(PUSH)).status_code == 401
    assert triggers.count == 0


def test_a_body_over_the_limit_is_refused_before_it_is_verified(parts: tuple) -> None:
    client, _probes, triggers, _metrics = parts
    body = b"{" + b" " * (1024 * 1024 + 1) + b"}"
    assert client.post("/hooks/git", content=body, headers=github(body)).status_code == 413
    assert triggers.count == 0


def test_a_push_to_another_branch_requests_nothing(parts: tuple) -> None:
    client, _probes, triggers, _metrics = parts
    body = json.dumps({"ref": "refs/heads/feature"}).encode()
    response = client.post("/hooks/git", content=body, headers=github(body))
    assert response.status_code == 202 and response.json()["triggered"] is False
    assert triggers.count == 0


def test_without_a_secret_the_webhook_refuses_everything() -> None:
    triggers = Triggers()
    app = build_app(Metrics(), FakeProbes(), triggers, WebhookSettings(None))
    with TestClient(app) as client:
        assert client.post("/hooks/git", content=PUSH, headers=github(PUSH, "")).status_code == 403
    assert triggers.count == 0


def test_the_board_is_mounted_at_root_and_leaves_the_operations_routes_alone(
    parts: tuple,
) -> None:
    client, *_ = parts
    assert client.get("/").text == "board:/"
    assert client.get("/releases/shop").text == "board:/releases/shop"
    assert client.get("/healthz").text == "ok\n"
    assert client.get("/metrics").headers["content-type"].startswith("text/plain")


def test_signature_check_names_the_forge() -> None:
    headers = {k.lower(): v for k, v in github(PUSH).items()}
    assert verify_signature(headers, PUSH, SECRET) == "github"
    headers = {k.lower(): v for k, v in gitea(PUSH).items()}
    assert verify_signature(headers, PUSH, SECRET) == "gitea"
    assert verify_signature({}, PUSH, SECRET) is None


def test_listen_addresses() -> None:
    assert parse_listen("127.0.0.1:8080") == ("127.0.0.1", 8080)
    assert parse_listen("8080") == ("127.0.0.1", 8080)
    assert parse_listen("[::1]:9000") == ("::1", 9000)
    with pytest.raises(ValueError):
        parse_listen("localhost:http")


def test_uvicorn_serves_the_app_on_loopback() -> None:
    metrics = Metrics()
    server = HttpServer(
        build_app(metrics, FakeProbes(), Triggers(), WebhookSettings(SECRET)), "127.0.0.1", 0
    )
    server.start()
    try:
        assert server.alive
        with urllib.request.urlopen(f"{server.url}/healthz", timeout=10) as response:
            assert response.status == 200
        # a second server on the same port fails at once, in the caller
        with pytest.raises(OSError, match="cannot listen"):
            HttpServer(build_app(metrics, FakeProbes(), Triggers(), WebhookSettings(None)),
                       "127.0.0.1", server.port)  # fmt: skip
    finally:
        server.stop()
    assert not server.alive
