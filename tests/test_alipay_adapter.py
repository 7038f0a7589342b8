"""relctl's Alipay adapter against the Alipay gateway, served on 127.0.0.1 over the simulator.

Real server (uvicorn in a thread), real RSA2 keys generated per run, the real simulator with a
manual clock; only the clock and the adapter's waits are fake. The simulator's idempotency
table lists every effect that reached the platform, so "one effect" is counted, not assumed.
The last test runs the real controller (``relctl reconcile``, a bare git remote) with
``platform: alipay:URL`` until the release is fully released.
"""

from __future__ import annotations

import asyncio
import base64
import sqlite3
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml
from click.testing import CliRunner
from controller_world import ACCESS
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from gitutil import PersonClone, isolate_git, make_remote
from httputil import serve_app
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from controller.cli import cli
from controller.platform import open_platform
from controller.platform.alipay import wire
from controller.platform.alipay.adapter import AlipayPlatform
from controller.platform.alipay.client import MAX_ANSWER, AlipayClient, Credentials, error_for
from controller.platform.alipay.gateway import create_gateway
from controller.platform.errors import (
    InvalidState,
    LimitExceeded,
    NotEditable,
    NotFound,
    PlatformUnusable,
    RateLimited,
    Transient,
    Unknown,
)
from controller.platform.protocol import CompatibilityStatus, Platform, Stage
from controller.platform.sim import Simulator
from controller.status import parse_status

APP_ID = "2021000000000001"
TESTERS = ["2088000000000001", "2088000000000002"]


def key_pair() -> tuple[str, str]:
    """(private PKCS#1 body, public SubjectPublicKeyInfo body), as the Alipay console shows."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    der = serialization.Encoding.DER
    private = key.private_bytes(
        der, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(der, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(private).decode(), base64.b64encode(public).decode()


APP_KEYS = key_pair()
GATEWAY_KEYS = key_pair()


@dataclass
class Alipay:
    sim: Simulator
    url: str
    adapter: AlipayPlatform
    client: AlipayClient
    sleeps: list[float]

    def effects(self, operation: str) -> int:
        """How many times ``operation`` reached the simulator (refusals included)."""
        with sqlite3.connect(self.sim.path) as conn:
            (count,) = conn.execute(
                "SELECT count(*) FROM idempotency WHERE operation = ?", (operation,)
            ).fetchone()
        return int(count)


def adapter_for(url: str, sleeps: list[float], *, alipay_public_key: str = GATEWAY_KEYS[1]) -> (
    tuple[AlipayPlatform, AlipayClient]
):  # fmt: skip
    credentials = Credentials(
        APP_ID, wire.load_private_key(APP_KEYS[0]), wire.load_public_key(alipay_public_key)
    )
    client = AlipayClient(credentials, f"{url}/gateway.do", sleep=sleeps.append)
    return AlipayPlatform(client, sleep=sleeps.append), client


@pytest.fixture
def alipay(tmp_path: Path) -> Iterator[Alipay]:
    sim = Simulator(tmp_path / "platform.db")
    sim.set_clock(manual=True)
    sim.set_app("alipay", review="manual", build_seconds=0, test_seconds=0, pilot_required=True,
                grayscale_values=(10, 30, 50))  # fmt: skip
    sim.upload(APP_ID, "1.4.0")
    app = create_gateway(sim, app_public_key=wire.load_public_key(APP_KEYS[1]),
                         gateway_private_key=wire.load_private_key(GATEWAY_KEYS[0]))  # fmt: skip
    sleeps: list[float] = []
    with serve_app(app) as url:
        adapter, client = adapter_for(url, sleeps)
        try:
            yield Alipay(sim, url, adapter, client, sleeps)
        finally:
            adapter.close()
    sim.close()


def created(alipay: Alipay) -> str:
    snapshot = alipay.adapter.create_release(APP_ID, "1.4.0", "alipay", "production",
                                             idempotency_key="k")  # fmt: skip
    return snapshot.release_id


def approved(alipay: Alipay, *, pilot: bool = True) -> str:
    """Created, applied and approved: pilot testing (or release preparation)."""
    if not pilot:
        alipay.sim.set_app("alipay", pilot_required=False)
    rid = created(alipay)
    alipay.adapter.apply(rid, idempotency_key="k")
    (release,) = alipay.sim.releases()
    alipay.sim.review(release.release_id, approve=True)
    return rid


def test_a_full_lifecycle_through_the_gateway(alipay: Alipay) -> None:
    adapter = alipay.adapter
    assert adapter.get_version(APP_ID, "1.4.0") is None  # not on Alipay before the upload
    rid = created(alipay)
    assert adapter.get_version(APP_ID, "1.4.0") is not None
    snapshot = adapter.get_release(rid)
    assert snapshot.stage is Stage.NEW_VERSION_CREATED
    report = snapshot.compatibility
    assert report is not None and report.status is CompatibilityStatus.FINISHED
    assert report.cases == ()
    info = {"name": "Shop", "description": "Browse and pay.", "slogan": "One tap"}
    assert dict(adapter.update_basic_info(rid, info, idempotency_key="k").basic_info) == info
    assert adapter.apply(rid, idempotency_key="k").stage is Stage.UNDER_REVIEW
    (release,) = alipay.sim.releases()
    alipay.sim.review(release.release_id, approve=True)
    piloted = adapter.get_release(rid)
    assert piloted.stage is Stage.PILOT_TESTING
    assert piloted.review is not None and piloted.review.pilot_required
    change = adapter.set_testers(rid, TESTERS, idempotency_key="k")
    assert change.added == tuple(TESTERS)
    assert adapter.get_release(rid).testers == tuple(TESTERS)
    change = adapter.set_testers(rid, TESTERS[:1], idempotency_key="k")
    assert (change.added, change.removed) == ((), (TESTERS[1],))
    assert alipay.sim.get_release(release.release_id).testers == (TESTERS[0],)
    assert adapter.complete_testing(rid, idempotency_key="k").stage is Stage.RELEASE_PREPARATION
    gray = adapter.set_grayscale(rid, 10, idempotency_key="k")
    assert (gray.stage, gray.grayscale) == (Stage.GRAYSCALE, 10)
    assert adapter.set_grayscale(rid, 30, idempotency_key="k").grayscale == 30
    released = adapter.full_release(rid, idempotency_key="k")
    assert (released.stage, released.grayscale) == (Stage.FULL_RELEASE, 100)
    assert released.qr_code is not None and APP_ID in released.qr_code.url
    qr = adapter.create_qr_code(rid, idempotency_key="k")
    assert qr.url == alipay.sim.get_release(release.release_id).qr_code.url  # type: ignore[union-attr]
    assert qr.svg.startswith("<svg")
    assert [s.stage for s in adapter.find_releases(APP_ID, "alipay")] == [Stage.FULL_RELEASE]
    assert dict(adapter.get_release(rid).basic_info) == info
    assert alipay.effects("apply") == 1 and alipay.effects("full_release") == 1


def test_withdraw_returns_the_version_to_development(alipay: Alipay) -> None:
    rid = created(alipay)
    alipay.adapter.apply(rid, idempotency_key="k")
    assert alipay.adapter.withdraw(rid, idempotency_key="k").stage is Stage.NEW_VERSION_CREATED
    # withdrawing again: already in development, nothing is sent to the platform
    assert alipay.adapter.withdraw(rid, idempotency_key="k").stage is Stage.NEW_VERSION_CREATED
    assert alipay.effects("withdraw") == 1


def test_cancel_of_an_approved_and_of_a_gray_version_is_final(alipay: Alipay) -> None:
    rid = approved(alipay)
    canceled = alipay.adapter.cancel(rid, idempotency_key="k")
    assert canceled.stage is Stage.CANCELED
    assert alipay.adapter.cancel(rid, idempotency_key="k").stage is Stage.CANCELED
    assert alipay.effects("cancel") == 1
    alipay.sim.upload(APP_ID, "1.5.0")
    later = alipay.adapter.create_release(APP_ID, "1.5.0", "alipay", "production",
                                          idempotency_key="k")  # fmt: skip
    alipay.adapter.apply(later.release_id, idempotency_key="k")
    newest = alipay.sim.releases()[-1]
    alipay.sim.review(newest.release_id, approve=True)
    alipay.adapter.complete_testing(later.release_id, idempotency_key="k")
    alipay.adapter.set_grayscale(later.release_id, 50, idempotency_key="k")
    assert alipay.adapter.cancel(later.release_id, idempotency_key="k").stage is Stage.CANCELED
    stages = [s.stage for s in alipay.adapter.find_releases(APP_ID, "alipay")]
    assert stages == [Stage.CANCELED, Stage.CANCELED]


def test_refusals_are_typed_and_name_what_is_refused(alipay: Alipay) -> None:
    adapter = alipay.adapter
    with pytest.raises(NotFound, match="'gcash'"):
        adapter.create_release(APP_ID, "1.4.0", "gcash", "production", idempotency_key="k")
    with pytest.raises(NotFound, match="'shop'"):
        adapter.find_releases("shop", "alipay")
    rid = created(alipay)
    with pytest.raises(InvalidState, match=r"isv\.invalid-state"):
        adapter.full_release(rid, idempotency_key="k")
    assert alipay.effects("full_release") == 1  # refused once, not repeated
    sent = alipay.client.sent
    with pytest.raises(LimitExceeded, match="p10, p30, p50"):
        adapter.set_grayscale(rid, 20, idempotency_key="k")
    assert alipay.client.sent == sent  # refused before anything was sent
    with pytest.raises(NotEditable, match=r"spec\.configuration"):
        adapter.update_configuration(rid, {"pages": ["a"]}, idempotency_key="k")
    adapter.apply(rid, idempotency_key="k")
    alipay.sim.review(alipay.sim.releases()[0].release_id, approve=True)
    with pytest.raises(LimitExceeded, match="50 experiencers"):
        adapter.set_testers(rid, [f"20880000000001{n:02d}" for n in range(51)],
                            idempotency_key="k")  # fmt: skip


def test_a_rejection_carries_alipays_reason_and_can_be_applied_again(alipay: Alipay) -> None:
    rid = created(alipay)
    alipay.adapter.apply(rid, idempotency_key="k")
    (release,) = alipay.sim.releases()
    alipay.sim.review(release.release_id, approve=False, reason="the slogan promises cash")
    rejected = alipay.adapter.get_release(rid)
    assert rejected.stage is Stage.REJECTED
    assert rejected.review is not None and rejected.review.reason == "the slogan promises cash"
    assert rejected.stage_times[Stage.REJECTED] == rejected.review.decided_at
    assert alipay.adapter.apply(rid, idempotency_key="k").stage is Stage.UNDER_REVIEW
    assert alipay.effects("apply") == 2


@pytest.mark.parametrize(
    ("result", "mutation", "expected"),
    [
        ({"code": "20000", "sub_code": "isp.unknow-error"}, True, Unknown),
        ({"code": "20000", "sub_code": "isp.unknow-error"}, False, Transient),
        ({"code": "20000", "sub_code": "aop.ACQ.SYSTEM_BUSY"}, True, RateLimited),
        ({"code": "40004", "sub_code": "isv.not-found"}, True, NotFound),
        ({"code": "40004", "sub_code": "isv.not-editable"}, True, NotEditable),
        ({"code": "40004", "sub_code": "isv.limit-exceeded"}, True, LimitExceeded),
        ({"code": "40004", "sub_code": "isv.something-new"}, True, InvalidState),
        ({"code": "40002", "sub_code": "isv.invalid-gray-strategy"}, True, LimitExceeded),
        ({"code": "40002", "sub_code": "isv.invalid-signature"}, False, PlatformUnusable),
        ({"code": "20001", "sub_code": "aop.invalid-auth-token"}, False, PlatformUnusable),
        ({"code": "40006", "sub_code": "isv.insufficient-isv-permissions"}, True, PlatformUnusable),
    ],
)
def test_alipay_codes_map_onto_typed_errors_by_one_table(
    result: dict[str, str], mutation: bool, expected: type[Exception]
) -> None:
    error = error_for("alipay.open.mini.version.online", {**result, "sub_msg": "words"},
                      mutation=mutation)  # fmt: skip
    assert type(error) is expected
    assert result["sub_code"] in error.message and "words" in error.message


def test_a_rate_limit_is_retried_briefly_then_reported(alipay: Alipay) -> None:
    rid = created(alipay)
    alipay.sim.faults(rate_limited_rate=1.0, seed=3)
    sent = alipay.client.sent
    with pytest.raises(RateLimited, match=r"aop\.ACQ\.SYSTEM_BUSY"):
        alipay.adapter.get_release(rid)
    assert alipay.client.sent - sent == 3  # one call, two bounded retries
    assert len(alipay.sleeps) == 2
    alipay.sim.faults(off=True)
    assert alipay.adapter.get_release(rid).stage is Stage.NEW_VERSION_CREATED


def test_an_unknown_outcome_that_took_effect_is_not_repeated(alipay: Alipay) -> None:
    rid = approved(alipay, pilot=False)
    alipay.sim.faults(unknown_rate=1.0, seed=1)  # every change takes effect, answers 20000
    released = alipay.adapter.full_release(rid, idempotency_key="k")
    alipay.sim.faults(off=True)
    assert released.stage is Stage.FULL_RELEASE
    assert alipay.effects("full_release") == 1  # re-queried, found done: not sent again


def test_an_unknown_outcome_without_effect_is_repeated_after_a_query(alipay: Alipay) -> None:
    rid = created(alipay)
    # the gateway's audit.apply first runs the simulator's compatibility test: with every
    # change answering Unknown, that test happens and the application does not; the adapter
    # finds the version still in development and applies again, once
    alipay.sim.faults(unknown_rate=1.0, seed=1)
    applied = alipay.adapter.apply(rid, idempotency_key="k")
    alipay.sim.faults(off=True)
    assert applied.stage is Stage.UNDER_REVIEW
    assert alipay.effects("apply") == 1


def test_an_answer_not_signed_by_alipay_is_never_trusted(alipay: Alipay) -> None:
    forged, _client = adapter_for(alipay.url, [], alipay_public_key=key_pair()[1])
    with pytest.raises(PlatformUnusable, match="does not verify"):
        forged.create_release(APP_ID, "1.4.0", "alipay", "production", idempotency_key="k")
    forged.close()


def broken_gateway() -> Starlette:
    """A server on the gateway's path that answers the way no Alipay gateway may."""

    async def answer(request: Request) -> Response:
        kind = request.query_params.get("method", "")
        if kind.endswith("version.online"):  # a slow answer: the change may have happened
            await asyncio.sleep(2)
            return Response("{}")
        if kind.endswith("list.query"):  # far too much
            return Response(b"x" * (MAX_ANSWER + 10))
        if kind.endswith("gray.online"):
            return Response("upstream failed", status_code=502)
        return Response('{"alipay_open_mini_version_detail_query_response":{"code":"10000"}}')

    return Starlette(routes=[Route("/gateway.do", answer, methods=["POST"])])


def test_transport_failures_and_answers_that_are_not_alipays_are_typed() -> None:
    sleeps: list[float] = []
    credentials = Credentials(
        APP_ID, wire.load_private_key(APP_KEYS[0]), wire.load_public_key(GATEWAY_KEYS[1])
    )
    with serve_app(broken_gateway()) as url:
        client = AlipayClient(credentials, f"{url}/gateway.do", sleep=sleeps.append,
                              timeout=httpx.Timeout(0.5, connect=2.0))  # fmt: skip
        adapter = AlipayPlatform(client, sleep=sleeps.append)
        with pytest.raises(PlatformUnusable, match="not a signed Alipay response"):
            adapter.get_release(f"{APP_ID}@1.4.0")
        with pytest.raises(PlatformUnusable, match="larger than"):
            adapter.find_releases(APP_ID, "alipay")
        sent = client.sent
        with pytest.raises(Unknown, match="after sending"):
            client.call("alipay.open.mini.version.online", {"app_version": "1.4.0"},
                        mutation=True)  # fmt: skip
        assert client.sent == sent + 1  # a change that may have happened is not repeated
        with pytest.raises(Transient, match="after sending"):
            client.call("alipay.open.mini.version.online", {}, mutation=False)
        with pytest.raises(Unknown, match="HTTP 502"):
            client.call("alipay.open.mini.version.gray.online", {}, mutation=True)
        adapter.close()
    closed = AlipayClient(credentials, url + "/gateway.do", sleep=sleeps.append)
    sent = closed.sent
    with pytest.raises(Transient, match="cannot reach"):  # the server is gone: nothing sent
        closed.call("alipay.open.mini.version.online", {}, mutation=True)
    assert closed.sent - sent == 3  # nothing happened, so it was tried again (bounded)
    closed.close()


def test_a_missing_or_bad_credential_is_refused_by_name_and_never_shown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RELCTL_ALIPAY_APP_ID", APP_ID)
    monkeypatch.setenv("RELCTL_ALIPAY_PUBLIC_KEY", GATEWAY_KEYS[1])
    monkeypatch.delenv("RELCTL_ALIPAY_APP_PRIVATE_KEY", raising=False)
    with pytest.raises(PlatformUnusable, match="RELCTL_ALIPAY_APP_PRIVATE_KEY"):
        open_platform("alipay:")
    monkeypatch.setenv("RELCTL_ALIPAY_APP_PRIVATE_KEY", "not-a-key-" + APP_KEYS[0][:40])
    with pytest.raises(PlatformUnusable) as bad:
        open_platform("alipay:")
    assert APP_KEYS[0][:40] not in str(bad.value)
    monkeypatch.setenv("RELCTL_ALIPAY_APP_PRIVATE_KEY", APP_KEYS[0])
    with pytest.raises(ValueError, match="https"):
        open_platform("alipay:http://example.com/gateway.do")
    adapter = open_platform("alipay:")
    assert isinstance(adapter, Platform) and "openapi.alipay.com" in repr(adapter)
    assert APP_KEYS[0][:40] not in repr(adapter) + repr(getattr(adapter, "_client", ""))
    adapter.close()  # type: ignore[attr-defined]


# --- the real controller ----------------------------------------------------------------------

CONFIG = """\
apiVersion: relctl/v1
kind: Config
platform: "alipay:"
targetApps:
  alipay: {name: Alipay, environment: production}
"""


def manifest(grayscale: int) -> str:
    document = {
        "apiVersion": "relctl/v1",
        "kind": "Release",
        "metadata": {"miniProgram": APP_ID, "targetApp": "alipay"},
        "spec": {
            "version": "1.4.0",
            "basicInfo": {"name": "Shop", "description": "Browse and pay.", "slogan": "One tap"},
            "compatibility": {"minPassRate": 0},
            "pilot": {"testers": TESTERS, "complete": True},
            "grayscale": grayscale,
        },
    }
    return yaml.safe_dump(document, sort_keys=False)


def test_the_controller_takes_a_release_to_full_release_on_alipay(
    alipay: Alipay, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    isolate_git(monkeypatch, tmp_path / "home")
    path = f"releases/{APP_ID}/alipay.yaml"
    remote = make_remote(tmp_path, {"relctl.yaml": CONFIG, "access.yaml": ACCESS,
                                    path: manifest(grayscale=30)})  # fmt: skip
    anchor = subprocess.run(["git", "ls-remote", remote, "refs/heads/main"], check=True,
                            capture_output=True, text=True).stdout.split()[0]  # fmt: skip
    person = PersonClone(remote, tmp_path / "person", name="Maria", email="maria@example.com")
    monkeypatch.setenv("RELCTL_ALIPAY_APP_ID", APP_ID)
    monkeypatch.setenv("RELCTL_ALIPAY_APP_PRIVATE_KEY", APP_KEYS[0])
    monkeypatch.setenv("RELCTL_ALIPAY_PUBLIC_KEY", GATEWAY_KEYS[1])
    args = ["reconcile", "--remote", remote, "--workdir", str(tmp_path / "work"),
            "--platform", f"alipay:{alipay.url}/gateway.do", "--trust-anchor", anchor]  # fmt: skip
    # the developer uploads 1.4.0 to Alipay (the IDE's upload): the version now exists there
    alipay.adapter.create_release(APP_ID, "1.4.0", "alipay", "production", idempotency_key="u")

    def status() -> tuple[str, str]:
        person.pull()
        file = person.path / f"status/{APP_ID}/alipay.yaml"
        found = parse_status(file.read_bytes(), file=str(file))
        assert found is not None
        return str(found.stage), str(found.phase)

    def run_until(stage: Stage, passes: int = 12) -> None:
        for _ in range(passes):
            result = CliRunner().invoke(cli, args, catch_exceptions=False)
            assert result.exit_code in (0, 1), result.output
            if status()[0] == stage:
                return
            for release in alipay.sim.releases():
                if release.stage is Stage.UNDER_REVIEW:
                    alipay.sim.review(release.release_id, approve=True)
        raise AssertionError(f"not {stage}: {status()}")

    run_until(Stage.GRAYSCALE)
    (release,) = alipay.sim.releases()
    snapshot = alipay.sim.get_release(release.release_id)
    assert (snapshot.grayscale, snapshot.testers) == (30, tuple(TESTERS))
    assert dict(snapshot.basic_info)["slogan"] == "One tap"
    person.commit_and_push({path: manifest(grayscale=100)}, "release to everyone")
    run_until(Stage.FULL_RELEASE)
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert status() == ("FULL_RELEASE", "Released")
    assert alipay.effects("apply") == 1 and alipay.effects("full_release") == 1
