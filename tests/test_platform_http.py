"""The HTTP contract: the OpenAPI document, the server's real answers, and the HttpPlatform adapter.

A real uvicorn server on 127.0.0.1 serves the real simulator (manual clock); schemathesis
generates requests from ``schemas/platform-openapi.yaml`` and checks every answer against it
(bounded: a few examples per operation, no deadline). The adapter's behaviours (typed errors,
bounded retries, Retry-After, idempotency over an Unknown answer, the token never shown) are
checked against the same server. The controller's whole end-to-end suite also runs over HTTP
(``conftest.py``).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_type_hints

import httpx
import pytest
import schemathesis
import yaml
from click.testing import CliRunner
from httputil import TOKEN, serve_app
from hypothesis import HealthCheck, given, settings
from openapi_spec_validator import validate

from controller.cli import cli
from controller.platform import open_platform
from controller.platform.errors import (
    Conflict,
    InvalidState,
    LimitExceeded,
    NotFound,
    PlatformUnusable,
    RateLimited,
    Transient,
    Unknown,
)
from controller.platform.http.client import HttpPlatform
from controller.platform.http.server import create_app
from controller.platform.protocol import ListsReleases, Platform, Stage
from controller.platform.sim import Simulator

SPEC = Path(__file__).parent.parent / "schemas" / "platform-openapi.yaml"
SCHEMA = schemathesis.openapi.from_path(SPEC)
OPERATIONS = [result.ok() for result in SCHEMA.get_all_operations()]
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def simulator(tmp_path: Path) -> Simulator:
    sim = Simulator(tmp_path / "platform.db")
    sim.set_clock(manual=True)
    sim.set_app("gcash", pilot_required=True, review="manual", build_seconds=0, test_seconds=0,
                testers_max=2)  # fmt: skip
    sim.set_app("dana", review="manual", build_seconds=0, test_seconds=0,
                grayscale_values=(10, 50))  # fmt: skip
    sim.upload("shop", "1.4.0")
    return sim


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Simulator, str]]:
    sim = simulator(tmp_path)
    with serve_app(create_app(sim, token=TOKEN)) as url:
        yield sim, url
    sim.close()


@pytest.fixture
def adapter(served: tuple[Simulator, str]) -> Iterator[HttpPlatform]:
    sleeps: list[float] = []
    http = HttpPlatform(served[1], token=TOKEN, sleep=sleeps.append)
    http.sleeps = sleeps  # type: ignore[attr-defined]
    yield http
    http.close()


def to_review(platform: Platform, sim: Simulator, app: str = "dana") -> str:
    """Create a release of shop 1.4.0 on ``app`` and apply; returns its id (under review)."""
    release = platform.create_release("shop", "1.4.0", app, "production", idempotency_key="c")
    rid = release.release_id
    platform.run_compatibility_test(rid, idempotency_key="t")
    platform.apply(rid, idempotency_key="a")
    return rid


# --- the document -----------------------------------------------------------------------------


def test_the_openapi_document_is_valid_openapi_3_1() -> None:
    document = yaml.safe_load(SPEC.read_text())
    validate(document)
    assert document["openapi"].startswith("3.1")


def test_the_document_has_one_operation_per_protocol_method() -> None:
    documented = {op.definition.raw["operationId"] for op in OPERATIONS}
    protocol = {
        name
        for proto in (Platform, ListsReleases)  # the optional ListsReleases included
        for name in vars(proto)
        if not name.startswith("_") and callable(getattr(proto, name))
    }
    assert documented == protocol
    assert "list_releases" in documented
    assert get_type_hints(Platform.get_release)["return"].__name__ == "ReleaseSnapshot"


def test_every_mutation_requires_the_idempotency_key_header() -> None:
    for op in OPERATIONS:
        names = {p.name for p in op.headers}
        assert (op.method.upper() == "POST") == ("Idempotency-Key" in names), op.path


# --- the server's real answers against the document -------------------------------------------


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda op: f"{op.method} {op.path}")
def test_generated_requests_get_documented_answers(
    served: tuple[Simulator, str], operation: Any
) -> None:
    sim, url = served
    # one release in the middle of its life, so R-000001 (the documented example) answers 200
    platform = HttpPlatform(url, token=TOKEN)
    sim.review(to_review(platform, sim), approve=True)
    platform.close()

    @given(case=operation.as_strategy())
    @settings(max_examples=12, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    def check(case: Any) -> None:
        case.call_and_validate(base_url=url, headers=AUTH)

    check()


def test_a_whole_lifecycle_answers_as_documented(served: tuple[Simulator, str]) -> None:
    """Explicit requests through every success path, each answer validated against the schema."""
    sim, url = served
    ops = {op.definition.raw["operationId"]: op for op in OPERATIONS}
    counter = iter(range(1000))

    def call(name: str, body: Any = None, **path: str) -> Any:
        headers = dict(AUTH)
        if ops[name].method.upper() == "POST":
            headers["Idempotency-Key"] = f"k{next(counter)}"
        kwargs: dict[str, Any] = {"path_parameters": path, "headers": headers}
        if body is not None:
            kwargs["body"] = body
        if name in ("find_releases", "list_releases"):
            kwargs = {"query": body, "headers": headers}
        case = ops[name].Case(**kwargs)
        response = case.call_and_validate(base_url=url)
        assert response.status_code == 200, response.text
        return response.json()

    new = {"mini_program": "shop", "version": "1.4.0", "target_app": "gcash",
           "environment": "production"}  # fmt: skip
    rid = call("create_release", new)["release_id"]
    call("get_version", mini_program="shop", version="1.4.0")
    call("update_basic_info", {"basic_info": {"name": "Shop"}}, release_id=rid)
    call("update_configuration", {"configuration": {"pages": ["a"]}}, release_id=rid)
    call("run_compatibility_test", release_id=rid)
    call("apply", release_id=rid)
    call("withdraw", release_id=rid)
    call("apply", release_id=rid)
    sim.review(rid, approve=True)
    assert call("set_testers", {"testers": ["2088000000000001"]}, release_id=rid)["added"]
    call("complete_testing", release_id=rid)
    assert call("set_grayscale", {"percent": 30}, release_id=rid)["grayscale"] == 30
    assert call("create_qr_code", release_id=rid)["url"]
    assert call("full_release", release_id=rid)["stage"] == "FULL_RELEASE"
    call("get_feedback", release_id=rid)
    page = call("find_releases", {"mini_program": "shop", "target_app": "gcash"})
    assert [r["release_id"] for r in page["items"]] == [rid]
    assert page["next_cursor"] is None
    sim.upload("shop", "1.5.0")
    second = call("create_release", {**new, "version": "1.5.0"})["release_id"]
    assert call("cancel", release_id=second)["stage"] == "CANCELED"
    first = call("list_releases", {"limit": 1})
    assert [r["release_id"] for r in first["releases"]] == [rid] and first["more"]
    rest = call("list_releases", {"since": first["cursor"]})
    assert [r["release_id"] for r in rest["releases"]] == [second] and not rest["more"]
    assert call("list_releases", {"since": rest["cursor"]})["releases"] == []


# --- the adapter ------------------------------------------------------------------------------


def test_the_adapter_raises_the_typed_error_the_server_names(
    served: tuple[Simulator, str], adapter: HttpPlatform
) -> None:
    sim, _url = served
    assert adapter.get_version("shop", "9.9.9") is None
    with pytest.raises(NotFound):
        adapter.get_release("R-999999")
    rid = to_review(adapter, sim, "gcash")
    with pytest.raises(InvalidState):
        adapter.set_grayscale(rid, 10, idempotency_key="g")
    sim.review(rid, approve=True)
    with pytest.raises(LimitExceeded):
        adapter.set_testers(rid, ["2088000000000001", "2088000000000002", "2088000000000003"],
                            idempotency_key="too-many")  # fmt: skip
    with pytest.raises(Conflict):  # the same key for another call
        adapter.complete_testing(rid, idempotency_key="too-many")


def test_a_refusal_replays_for_the_same_key_and_a_success_happens_once(
    served: tuple[Simulator, str], adapter: HttpPlatform
) -> None:
    sim, _url = served
    rid = to_review(adapter, sim)
    sim.review(rid, approve=True)
    first = adapter.set_grayscale(rid, 10, idempotency_key="gray-10")
    again = adapter.set_grayscale(rid, 10, idempotency_key="gray-10")
    assert first == again
    assert sim.get_release(rid).grayscale == 10


def test_rate_limited_calls_wait_retry_after_then_retry_with_the_same_key(
    served: tuple[Simulator, str], adapter: HttpPlatform
) -> None:
    sim, _url = served
    sim.faults(rate_limited_rate=1.0, retry_after=2, seed=1)
    with pytest.raises(RateLimited) as refused:
        adapter.get_version("shop", "1.4.0")
    assert refused.value.retry_after == 2
    assert adapter.sleeps == [2, 2]  # type: ignore[attr-defined]  # two bounded retries
    sim.faults(retry_after=60)
    adapter.sleeps.clear()  # type: ignore[attr-defined]
    with pytest.raises(RateLimited):
        adapter.get_version("shop", "1.4.0")
    assert adapter.sleeps == []  # type: ignore[attr-defined]  # too long: the caller decides


def test_unknown_answers_are_retried_with_the_same_key_and_take_effect_once(
    served: tuple[Simulator, str], adapter: HttpPlatform
) -> None:
    sim, _url = served
    sim.faults(unknown_rate=1.0, seed=3)
    with pytest.raises(Unknown):
        adapter.create_release("shop", "1.4.0", "dana", "production", idempotency_key="once")
    sim.faults(off=True)
    snapshot = adapter.create_release("shop", "1.4.0", "dana", "production",
                                      idempotency_key="once")  # fmt: skip
    assert [r.release_id for r in sim.releases()] == [snapshot.release_id]


def test_a_refused_token_is_unusable_and_never_shown(served: tuple[Simulator, str]) -> None:
    _sim, url = served
    wrong = HttpPlatform(url, token="s3cr3t-wrong-token", sleep=lambda _s: None)
    with pytest.raises(PlatformUnusable) as refused:
        wrong.get_release("R-000001")
    assert "s3cr3t" not in str(refused.value) and "s3cr3t" not in repr(wrong)
    assert "RELCTL_PLATFORM_TOKEN" in str(refused.value)
    wrong.close()


def test_without_a_token_the_http_adapter_does_not_open(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RELCTL_PLATFORM_TOKEN", raising=False)
    with pytest.raises(PlatformUnusable, match="RELCTL_PLATFORM_TOKEN"):
        open_platform("http://127.0.0.1:9")


def test_a_server_that_is_not_there_is_transient_after_bounded_retries() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    sleeps: list[float] = []
    http = HttpPlatform(f"http://127.0.0.1:{port}", token=TOKEN, sleep=sleeps.append)
    with pytest.raises(Transient):
        http.apply("R-000001", idempotency_key="k")
    assert len(sleeps) == 2
    http.close()


def test_find_releases_follows_every_page(served: tuple[Simulator, str]) -> None:
    sim, url = served
    paged = HttpPlatform(url, token=TOKEN, page_size=2)
    for minor in range(5, 10):
        sim.upload("shop", f"1.{minor}.0")
    made = []
    for n, version in enumerate(["1.4.0", "1.5.0", "1.6.0", "1.7.0", "1.8.0"]):
        release = paged.create_release("shop", version, "dana", "production",
                                       idempotency_key=f"c{n}")  # fmt: skip
        paged.cancel(release.release_id, idempotency_key=f"x{n}")
        made.append(release.release_id)
    assert [r.release_id for r in paged.find_releases("shop", "dana")] == made
    paged.close()


def test_unknown_endpoints_and_missing_keys_answer_the_error_envelope(
    served: tuple[Simulator, str],
) -> None:
    _sim, url = served
    with httpx.Client(base_url=url, headers=AUTH) as client:
        missing = client.post("/v1/releases/R-000001/apply", json={})
        assert missing.status_code == 400
        assert missing.json()["error"]["code"] == "InvalidRequest"
        nowhere = client.get("/v1/nowhere")
        assert nowhere.status_code == 404 and "error" in nowhere.json()
        anonymous = httpx.get(f"{url}/v1/releases/R-000001")
        assert anonymous.status_code == 401


# --- relctl platform serve ---------------------------------------------------------------------


def test_serve_refuses_to_start_without_a_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    simulator(tmp_path).close()
    monkeypatch.delenv("RELCTL_PLATFORM_TOKEN", raising=False)
    result = CliRunner().invoke(cli, ["platform", "serve", "--db", str(tmp_path / "platform.db")])
    assert result.exit_code == 2
    assert "RELCTL_PLATFORM_TOKEN" in result.output


def test_serve_serves_the_simulator_to_the_http_adapter(tmp_path: Path) -> None:
    simulator(tmp_path).close()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "RELCTL_PLATFORM_TOKEN": TOKEN}
    child = subprocess.Popen(
        [sys.executable, "-m", "controller", "platform", "serve",
         "--db", str(tmp_path / "platform.db"), "--listen", f"127.0.0.1:{port}"],
        env=env, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        platform = HttpPlatform(f"http://127.0.0.1:{port}", token=TOKEN, retries=0)
        for _ in range(200):  # wait for start-up (a bound on waiting, not a timed assertion)
            try:
                info = platform.get_version("shop", "1.4.0")
                break
            except Transient:
                time.sleep(0.05)
        else:
            raise AssertionError("relctl platform serve did not start")
        assert info is not None and info.version == "1.4.0"
        release = platform.create_release("shop", "1.4.0", "dana", "production",
                                          idempotency_key="k")  # fmt: skip
        assert release.stage in (Stage.BUILDING, Stage.NEW_VERSION_CREATED)
        platform.close()
    finally:
        child.terminate()
        child.wait(timeout=10)


def test_an_answer_that_is_not_json_is_unknown_for_a_mutation_and_transient_for_a_read() -> None:
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    def text(_request: Any) -> PlainTextResponse:
        return PlainTextResponse("<html>a proxy's page</html>")

    app = Starlette(routes=[Route("/{path:path}", text, methods=["GET", "POST"])])
    with serve_app(app) as url:
        http = HttpPlatform(url, token=TOKEN, sleep=lambda _s: None)
        with pytest.raises(Transient):
            http.get_release("R-000001")
        with pytest.raises(Unknown):
            http.apply("R-000001", idempotency_key="k")
        http.close()
