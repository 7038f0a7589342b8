"""The Alipay Open Platform gateway, driven by Alipay's official ``alipay-sdk-python``.

The SDK signs every request with RSA2 (the gateway verifies it with the app's public key) and
verifies every response's signature (made with the gateway's key): if our reading of the
protocol were wrong, the vendor's client would refuse it. Real server on 127.0.0.1, the real
simulator with a manual clock, keys generated per test run.

alipay-sdk-python 3.7.1411 ignores the port of ``server_url`` (always 80/443; a port gives a
TypeError). This test PATCHES the SDK's connection factory (``WebUtils.get_http_connection``)
to connect to the test server's port, instead of binding 127.0.0.1:80: port 80 would be shared
by the parallel test workers (pytest-xdist) and is not free on every machine.
"""

from __future__ import annotations

import base64
import http.client
import json
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alipay.aop.api.AlipayClientConfig import AlipayClientConfig
from alipay.aop.api.DefaultAlipayClient import DefaultAlipayClient
from alipay.aop.api.exception.Exception import ResponseException
from alipay.aop.api.request.AlipayOpenAppMembersCreateRequest import (
    AlipayOpenAppMembersCreateRequest,
)
from alipay.aop.api.request.AlipayOpenAppMembersDeleteRequest import (
    AlipayOpenAppMembersDeleteRequest,
)
from alipay.aop.api.request.AlipayOpenAppMembersQueryRequest import (
    AlipayOpenAppMembersQueryRequest,
)
from alipay.aop.api.request.AlipayOpenMiniBaseinfoModifyRequest import (
    AlipayOpenMiniBaseinfoModifyRequest,
)
from alipay.aop.api.request.AlipayOpenMiniExperienceCancelRequest import (
    AlipayOpenMiniExperienceCancelRequest,
)
from alipay.aop.api.request.AlipayOpenMiniExperienceCreateRequest import (
    AlipayOpenMiniExperienceCreateRequest,
)
from alipay.aop.api.request.AlipayOpenMiniExperienceQueryRequest import (
    AlipayOpenMiniExperienceQueryRequest,
)
from alipay.aop.api.request.AlipayOpenMiniVersionAuditApplyRequest import (
    AlipayOpenMiniVersionAuditApplyRequest,
)
from alipay.aop.api.request.AlipayOpenMiniVersionAuditCancelRequest import (
    AlipayOpenMiniVersionAuditCancelRequest,
)
from alipay.aop.api.request.AlipayOpenMiniVersionAuditedCancelRequest import (
    AlipayOpenMiniVersionAuditedCancelRequest,
)
from alipay.aop.api.request.AlipayOpenMiniVersionBuildQueryRequest import (
    AlipayOpenMiniVersionBuildQueryRequest,
)
from alipay.aop.api.request.AlipayOpenMiniVersionDetailQueryRequest import (
    AlipayOpenMiniVersionDetailQueryRequest,
)
from alipay.aop.api.request.AlipayOpenMiniVersionGrayCancelRequest import (
    AlipayOpenMiniVersionGrayCancelRequest,
)
from alipay.aop.api.request.AlipayOpenMiniVersionGrayOnlineRequest import (
    AlipayOpenMiniVersionGrayOnlineRequest,
)
from alipay.aop.api.request.AlipayOpenMiniVersionListQueryRequest import (
    AlipayOpenMiniVersionListQueryRequest,
)
from alipay.aop.api.request.AlipayOpenMiniVersionOnlineRequest import (
    AlipayOpenMiniVersionOnlineRequest,
)
from alipay.aop.api.request.AlipayOpenMiniVersionUploadRequest import (
    AlipayOpenMiniVersionUploadRequest,
)
from alipay.aop.api.util import WebUtils
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from httputil import serve_app

from controller.cli import cli
from controller.platform.alipay import wire
from controller.platform.alipay.gateway import create_gateway
from controller.platform.protocol import Stage
from controller.platform.sim import Simulator

APP_ID = "2021000000000001"  # the mini program's app id: the simulator's mini program


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


@pytest.fixture
def gateway(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Simulator, str]]:
    sim = Simulator(tmp_path / "platform.db")
    sim.set_clock(manual=True)
    sim.set_app("alipay", review="manual", build_seconds=0, test_seconds=0,
                grayscale_values=(10, 30, 50))  # fmt: skip
    sim.upload(APP_ID, "1.4.0")
    app = create_gateway(sim, app_public_key=wire.load_public_key(APP_KEYS[1]),
                         gateway_private_key=wire.load_private_key(GATEWAY_KEYS[0]))  # fmt: skip
    with serve_app(app) as url:
        port = urllib.parse.urlparse(url).port

        def connection(url: str, query_string: str, timeout: int) -> tuple[str, Any]:
            parsed = urllib.parse.urlparse(url)
            target = f"{parsed.path}?{query_string}"
            return target, http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)

        monkeypatch.setattr(WebUtils, "get_http_connection", connection)
        yield sim, url
    sim.close()


def sdk(url: str, *, app_private_key: str = APP_KEYS[0]) -> DefaultAlipayClient:
    config = AlipayClientConfig()
    config.server_url = f"{url}/gateway.do"
    config.app_id = APP_ID
    config.app_private_key = app_private_key
    config.alipay_public_key = GATEWAY_KEYS[1]
    config.sign_type = "RSA2"
    return DefaultAlipayClient(alipay_client_config=config)


def call(client: DefaultAlipayClient, request: Any, biz: dict[str, Any] | None = None) -> Any:
    if biz is not None:
        request.biz_content = biz
    return json.loads(client.execute(request))


def test_a_release_lifecycle_through_the_official_sdk(gateway: tuple[Simulator, str]) -> None:
    sim, url = gateway
    client = sdk(url)
    version = {"app_version": "1.4.0"}
    uploaded = call(client, AlipayOpenMiniVersionUploadRequest(), {**version, "bundle_id": "x"})
    assert uploaded["code"] == "10000", uploaded
    assert call(client, AlipayOpenMiniVersionDetailQueryRequest(), version)["status"] == "INIT"
    apply = AlipayOpenMiniVersionAuditApplyRequest()
    apply.app_version = "1.4.0"
    apply.version_desc = "Browse and pay with your wallet."
    assert call(client, apply)["status"] == "AUDITING"
    assert call(client, AlipayOpenMiniVersionAuditCancelRequest(), version)["status"] == "INIT"
    assert call(client, apply)["status"] == "AUDITING"
    (release,) = sim.releases()
    sim.review(release.release_id, approve=True)
    gray = call(client, AlipayOpenMiniVersionGrayOnlineRequest(),
                {**version, "gray_strategy": "p30"})  # fmt: skip
    assert (gray["status"], gray["gray_strategy"]) == ("GRAY", "p30")
    online = call(client, AlipayOpenMiniVersionOnlineRequest(), version)
    assert online["status"] == "RELEASE"
    assert sim.get_release(release.release_id).stage is Stage.FULL_RELEASE
    listed = call(client, AlipayOpenMiniVersionListQueryRequest(), {})
    assert listed["app_version_infos"] == [{"app_version": "1.4.0", "version_status": "RELEASE"}]


def test_builds_base_info_experience_versions_and_experiencers_through_the_official_sdk(
    gateway: tuple[Simulator, str],
) -> None:
    sim, url = gateway
    sim.set_app("alipay", build_seconds=60, pilot_required=True)
    client = sdk(url)
    version = {"app_version": "1.4.0"}
    call(client, AlipayOpenMiniVersionUploadRequest(), version)
    building = call(client, AlipayOpenMiniVersionBuildQueryRequest(), version)
    assert (building["create_status"], building["version_created"]) == ("1", "false")
    assert call(client, AlipayOpenMiniVersionDetailQueryRequest(), version)["status"] == "INIT"
    sim.advance(60)
    built = call(client, AlipayOpenMiniVersionBuildQueryRequest(), version)
    assert (built["create_status"], built["version_created"]) == ("6", "true")
    base = AlipayOpenMiniBaseinfoModifyRequest()
    base.app_name, base.app_slogan, base.app_desc = "Shop", "One tap", "Browse and pay."
    assert call(client, base)["code"] == "10000"
    detail = call(client, AlipayOpenMiniVersionDetailQueryRequest(), version)
    assert (detail["app_name"], detail["app_slogan"], detail["app_desc"]) == (
        "Shop", "One tap", "Browse and pay.",
    )  # fmt: skip
    assert "gmt_create" in detail and "gmt_apply_audit" not in detail
    not_yet = call(client, AlipayOpenMiniExperienceCreateRequest(), version)
    assert (not_yet["code"], not_yet["sub_code"]) == ("40004", "isv.invalid-state")
    apply = AlipayOpenMiniVersionAuditApplyRequest()
    apply.app_version = "1.4.0"
    call(client, apply)
    (release,) = sim.releases()
    sim.review(release.release_id, approve=True)
    approved = call(client, AlipayOpenMiniVersionDetailQueryRequest(), version)
    assert approved["status"] == "WAIT_RELEASE" and "gmt_audit_end" in approved
    experience = call(client, AlipayOpenMiniExperienceQueryRequest(), version)
    assert experience["status"] == "expVersionPackaged"
    assert "appId=" + APP_ID in experience["exp_qr_code_url"]
    assert call(client, AlipayOpenMiniExperienceCreateRequest(), version)["code"] == "10000"
    for tester in ("2088000000000001", "2088000000000002"):
        added = call(client, AlipayOpenAppMembersCreateRequest(),
                     {"logon_id": tester, "role": "EXPERIENCER"})  # fmt: skip
        assert added["code"] == "10000", added
    members = call(client, AlipayOpenAppMembersQueryRequest(), {"role": "EXPERIENCER"})
    assert [m["user_id"] for m in members["app_member_info_list"]] == [
        "2088000000000001", "2088000000000002",
    ]  # fmt: skip
    gone = call(client, AlipayOpenAppMembersDeleteRequest(),
                {"user_id": "2088000000000001", "role": "EXPERIENCER"})  # fmt: skip
    assert gone["code"] == "10000"
    assert sim.get_release(release.release_id).testers == ("2088000000000002",)
    twice = call(client, AlipayOpenAppMembersDeleteRequest(),
                 {"user_id": "2088000000000001", "role": "EXPERIENCER"})  # fmt: skip
    assert twice["sub_code"] == "isv.not-found"
    wrong = call(client, AlipayOpenAppMembersCreateRequest(),
                 {"logon_id": "2088000000000003", "role": "DEVELOPER"})  # fmt: skip
    assert wrong["sub_code"] == "isv.invalid-role"
    assert call(client, AlipayOpenMiniExperienceCancelRequest(), version)["code"] == "10000"
    ended = call(client, AlipayOpenMiniExperienceQueryRequest(), version)
    assert ended["status"] == "notExpVersion"
    assert sim.get_release(release.release_id).stage is Stage.RELEASE_PREPARATION
    canceled = call(client, AlipayOpenMiniVersionAuditedCancelRequest(), version)
    assert canceled["code"] == "10000"
    offline = call(client, AlipayOpenMiniVersionDetailQueryRequest(), version)
    assert offline["status"] == "OFFLINE" and "gmt_online" not in offline
    assert "gmt_offline" in offline


def test_an_application_waits_for_the_simulators_running_compatibility_test(
    gateway: tuple[Simulator, str],
) -> None:
    sim, url = gateway
    sim.set_app("alipay", test_seconds=60)
    client = sdk(url)
    call(client, AlipayOpenMiniVersionUploadRequest(), {"app_version": "1.4.0"})
    apply = AlipayOpenMiniVersionAuditApplyRequest()
    apply.app_version = "1.4.0"
    early = call(client, apply)
    assert (early["code"], early["sub_code"]) == ("40004", "isv.invalid-state")
    assert "still running" in early["sub_msg"]
    again = call(client, apply)  # the running test is waited for, not started twice
    assert "still running" in again["sub_msg"]
    sim.advance(60)
    assert call(client, apply)["status"] == "AUDITING"
    (release,) = sim.releases()
    report = sim.get_release(release.release_id).compatibility
    assert report is not None and report.report_id == "C-000001"


def test_refusals_are_business_failures_with_a_sub_code(gateway: tuple[Simulator, str]) -> None:
    _sim, url = gateway
    client = sdk(url)
    version = {"app_version": "1.4.0"}
    missing = call(client, AlipayOpenMiniVersionDetailQueryRequest(), version)
    assert (missing["code"], missing["sub_code"]) == ("40004", "isv.not-found")
    call(client, AlipayOpenMiniVersionUploadRequest(), version)
    early = call(client, AlipayOpenMiniVersionGrayOnlineRequest(),
                 {**version, "gray_strategy": "p10"})  # fmt: skip
    assert (early["code"], early["sub_code"]) == ("40004", "isv.invalid-state")
    odd = call(client, AlipayOpenMiniVersionGrayOnlineRequest(),
               {**version, "gray_strategy": "p20"})  # fmt: skip
    assert odd["sub_code"] == "isv.invalid-gray-strategy"
    canceled = call(client, AlipayOpenMiniVersionGrayCancelRequest(), version)
    assert canceled["code"] == "10000"
    again = call(client, AlipayOpenMiniVersionOnlineRequest(), version)
    assert again["sub_code"] == "isv.not-editable"


def test_unknown_outcomes_and_rate_limits_use_alipays_codes(
    gateway: tuple[Simulator, str],
) -> None:
    sim, url = gateway
    client = sdk(url)
    sim.faults(unknown_rate=1.0, seed=1)
    unknown = call(client, AlipayOpenMiniVersionUploadRequest(), {"app_version": "1.4.0"})
    assert (unknown["code"], unknown["sub_code"]) == ("20000", "isp.unknow-error")
    sim.faults(off=True)
    sim.faults(rate_limited_rate=1.0, seed=1)
    busy = call(client, AlipayOpenMiniVersionListQueryRequest(), {})
    assert (busy["code"], busy["sub_code"]) == ("20000", "aop.ACQ.SYSTEM_BUSY")


def test_a_request_signed_with_another_key_is_refused(gateway: tuple[Simulator, str]) -> None:
    sim, url = gateway
    forged = call(sdk(url, app_private_key=key_pair()[0]), AlipayOpenMiniVersionUploadRequest(),
                  {"app_version": "1.4.0"})  # fmt: skip
    assert (forged["code"], forged["sub_code"]) == ("40002", "isv.invalid-signature")
    assert sim.releases() == []


def test_the_sdk_refuses_a_response_not_signed_by_the_gateway_key(
    gateway: tuple[Simulator, str],
) -> None:
    _sim, url = gateway
    client = sdk(url)
    client._DefaultAlipayClient__config.alipay_public_key = key_pair()[1]  # type: ignore[attr-defined]
    with pytest.raises(ResponseException, match="sign verify failed"):
        client.execute(AlipayOpenMiniVersionListQueryRequest())


def test_sign_content_and_signatures_round_trip() -> None:
    params = {"b": "2", "a": "1", "sign": "x", "empty": ""}
    assert wire.sign_content(params) == "a=1&b=2"
    private, public = wire.load_private_key(APP_KEYS[0]), wire.load_public_key(APP_KEYS[1])
    signature = wire.sign(private, b"a=1&b=2")
    assert wire.verify(public, b"a=1&b=2", signature)
    assert not wire.verify(public, b"a=1&b=3", signature)


def test_serve_alipay_needs_both_keys_and_never_shows_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Simulator(tmp_path / "platform.db").close()
    db = str(tmp_path / "platform.db")
    monkeypatch.delenv("RELCTL_ALIPAY_GATEWAY_PRIVATE_KEY", raising=False)
    monkeypatch.setenv("RELCTL_ALIPAY_APP_PUBLIC_KEY", APP_KEYS[1])
    missing = CliRunner().invoke(cli, ["platform", "serve", "--db", db, "--dialect", "alipay"])
    assert missing.exit_code == 2
    assert "RELCTL_ALIPAY_GATEWAY_PRIVATE_KEY" in missing.output
    monkeypatch.setenv("RELCTL_ALIPAY_GATEWAY_PRIVATE_KEY", "not-a-key-" + APP_KEYS[1][:40])
    bad = CliRunner().invoke(cli, ["platform", "serve", "--db", db, "--dialect", "alipay"])
    assert bad.exit_code == 2
    assert APP_KEYS[1][:40] not in bad.output
