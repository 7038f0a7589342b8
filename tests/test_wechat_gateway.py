"""The WeChat mini program gateway, driven by ``wechatpy`` (a widely used third-party client).

wechatpy fetches and caches the access token, sends every ``wxa/*`` call with it, turns a
non-zero ``errcode`` into an exception, and refreshes the token by itself after 40001/42001:
if our reading of the protocol were wrong, it would fail. A real server on 127.0.0.1 (wechatpy
accepts any port: only its base URLs are pointed at it), the real simulator with a manual clock,
and a fake clock for the token's expiry.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from httputil import serve_app
from wechatpy import WeChatClient
from wechatpy.client.api import WeChatWxa
from wechatpy.exceptions import WeChatClientException

from controller.cli import cli
from controller.platform.protocol import Stage
from controller.platform.sim import Simulator
from controller.platform.wechat.gateway import TOKEN_SECONDS, create_gateway

APPID, SECRET = "wx0123456789abcdef", "s3cret-for-tests"


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[tuple[Simulator, str, Clock]]:
    sim = Simulator(tmp_path / "platform.db")
    sim.set_clock(manual=True)
    sim.set_app("wechat", review="manual", build_seconds=0, test_seconds=0, testers_max=2,
                pilot_required=True, user_id_pattern="^[a-z][a-z0-9_]{3,19}$")  # fmt: skip
    sim.upload(APPID, "1.4.0")
    clock = Clock()
    with serve_app(create_gateway(sim, apps={APPID: SECRET}, clock=clock)) as url:
        yield sim, url, clock
    sim.close()


def wechat(url: str, secret: str = SECRET) -> Any:
    """A wechatpy client whose base URLs point at the gateway (nothing else changed)."""

    class Wxa(WeChatWxa):  # type: ignore[misc]
        API_BASE_URL = f"{url}/"

    class Client(WeChatClient):  # type: ignore[misc]
        API_BASE_URL = f"{url}/cgi-bin/"
        wxa = Wxa()

        def fetch_access_token(self) -> Any:
            params = {"grant_type": "client_credential", "appid": self.appid,
                      "secret": self.secret}  # fmt: skip
            return self._fetch_access_token(url=f"{url}/cgi-bin/token", params=params)

    return Client(APPID, secret)


def test_a_release_lifecycle_through_wechatpy(gateway: tuple[Simulator, str, Clock]) -> None:
    sim, url, _clock = gateway
    client = wechat(url)
    client.wxa.commit(template_id=1, ext_json="{}", version="1.4.0", description="First")
    auditid = client.wxa.submit_audit({"item_list": []})["auditid"]
    assert client.wxa.get_audit_status(auditid)["status"] == 2
    client.wxa.undo_code_audit()
    assert client.wxa.get_audit_status(auditid)["status"] == 3
    auditid = client.wxa.submit_audit({"item_list": []})["auditid"]
    (release,) = sim.releases()
    sim.review(release.release_id, approve=True)
    assert client.wxa.get_audit_status(auditid)["status"] == 0
    client.wxa.bind_tester("maria_1")
    assert sim.get_release(release.release_id).testers == ("maria_1",)
    client.wxa.unbind_tester("maria_1")
    assert sim.get_release(release.release_id).testers == ()


def test_grayscale_only_rises_and_revert_cancels(gateway: tuple[Simulator, str, Clock]) -> None:
    sim, url, _clock = gateway
    client = wechat(url)
    client.wxa.commit(template_id=1, ext_json="{}", version="1.4.0", description="First")
    client.wxa.submit_audit({})
    (release,) = sim.releases()
    sim.set_app("wechat", pilot_required=False)
    sim.review(release.release_id, approve=True)
    client.wxa._post("wxa/grayrelease", data={"gray_percentage": 20})
    plan = client.wxa._get("wxa/getgrayreleaseplan")["gray_release_plan"]
    assert (plan["status"], plan["gray_percentage"]) == (1, 20)
    with pytest.raises(WeChatClientException) as lower:
        client.wxa._post("wxa/grayrelease", data={"gray_percentage": 10})
    assert lower.value.errcode == 85020
    client.wxa._get("wxa/revertgrayrelease")
    assert sim.get_release(release.release_id).stage is Stage.CANCELED


def test_tester_limit_and_withdraw_errors_keep_wechat_codes(
    gateway: tuple[Simulator, str, Clock],
) -> None:
    sim, url, _clock = gateway
    client = wechat(url)
    client.wxa.commit(template_id=1, ext_json="{}", version="1.4.0", description="First")
    client.wxa.submit_audit({})
    (release,) = sim.releases()
    sim.review(release.release_id, approve=True)
    client.wxa.bind_tester("anna_1")
    client.wxa.bind_tester("ben_22")
    with pytest.raises(WeChatClientException) as full:
        client.wxa.bind_tester("carl_3")
    assert full.value.errcode == 85002
    with pytest.raises(WeChatClientException) as nothing:
        client.wxa.undo_code_audit()
    assert nothing.value.errcode == 85019


def test_an_expired_token_is_refreshed_by_the_client(gateway: tuple[Simulator, str, Clock]) -> None:
    _sim, url, clock = gateway
    client = wechat(url)
    client.wxa.commit(template_id=1, ext_json="{}", version="1.4.0", description="First")
    first = client.access_token
    clock.now += TOKEN_SECONDS + 1
    client.session.set(client.access_token_key, first)  # the cached token, now expired
    client.wxa.submit_audit({})  # 42001, then wechatpy fetches a new token and retries
    assert client.access_token != first


def test_a_wrong_secret_gets_no_token(gateway: tuple[Simulator, str, Clock]) -> None:
    _sim, url, _clock = gateway
    with pytest.raises(WeChatClientException) as refused:
        wechat(url, secret="wrong").wxa.submit_audit({})
    assert refused.value.errcode == 40125


def test_serve_wechat_needs_the_appid_and_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Simulator(tmp_path / "platform.db").close()
    monkeypatch.setenv("RELCTL_WECHAT_APP_ID", APPID)
    monkeypatch.delenv("RELCTL_WECHAT_APP_SECRET", raising=False)
    args = ["platform", "serve", "--db", str(tmp_path / "platform.db"), "--dialect", "wechat"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    assert "RELCTL_WECHAT_APP_SECRET" in result.output


def test_the_latest_audit_version_info_and_trial_qr_code(
    gateway: tuple[Simulator, str, Clock],
) -> None:
    sim, url, _clock = gateway
    client = wechat(url)
    (template,) = client.wxa._get("wxa/gettemplatelist")["template_list"]
    assert template["user_version"] == "1.4.0"
    ext_json = json.dumps({"extAppid": APPID, "ext": {"theme": "dark"}})
    client.wxa.commit(template["template_id"], ext_json, "1.4.0", "First")
    (release,) = sim.releases()
    assert dict(release.configuration) == {"theme": "dark"}  # ext_json's "ext"
    info = client.wxa._post("wxa/getversioninfo", data={})
    assert info["exp_info"]["exp_version"] == "1.4.0" and "release_info" not in info
    qr = client.wxa.get_qrcode()
    assert qr.headers["content-type"] == "image/png" and qr.content.startswith(b"\x89PNG")
    auditid = client.wxa.submit_audit({})["auditid"]
    latest = client.wxa.get_latest_audit_status()
    assert (latest["auditid"], latest["status"], latest["user_version"]) == (auditid, 2, "1.4.0")
    sim.review(release.release_id, approve=False, reason="screenshots missing")
    latest = client.wxa.get_latest_audit_status()
    assert (latest["status"], latest["reason"]) == (1, "screenshots missing")


def test_the_withdrawal_quota_is_one_per_beijing_day(gateway: tuple[Simulator, str, Clock]) -> None:
    sim, url, _clock = gateway
    sim.set_clock(manual=True, at=datetime(2027, 1, 5, 15, 0, tzinfo=UTC))  # 23:00 in Beijing
    client = wechat(url)
    client.wxa.commit(template_id=1, ext_json="{}", version="1.4.0", description="First")
    client.wxa.submit_audit({})
    client.wxa.undo_code_audit()
    client.wxa.submit_audit({})
    with pytest.raises(WeChatClientException) as used_up:
        client.wxa.undo_code_audit()
    assert used_up.value.errcode == 87013
    assert "2027-01-06T00:00:00+08:00" in used_up.value.errmsg  # when it resets
    (release,) = sim.releases()
    assert sim.get_release(release.release_id).stage is Stage.UNDER_REVIEW  # nothing happened
    sim.advance(3600)  # 00:00 in Beijing: a new day, a new quota
    client.wxa.undo_code_audit()
    assert sim.get_release(release.release_id).stage is Stage.NEW_VERSION_CREATED


def test_revertcoderelease_goes_back_to_the_previous_release_once(
    gateway: tuple[Simulator, str, Clock],
) -> None:
    sim, url, _clock = gateway
    sim.set_app("wechat", pilot_required=False)
    client = wechat(url)
    with pytest.raises(WeChatClientException) as nothing:
        client.wxa.revert_code_release()
    assert nothing.value.errcode == 87012
    for version in ("1.4.0", "1.5.0"):
        if version != "1.4.0":
            sim.upload(APPID, version)
        client.wxa.commit(template_id=1, ext_json="{}", version=version, description=version)
        client.wxa.submit_audit({})
        (release,) = [r for r in sim.releases() if r.version == version]
        sim.review(release.release_id, approve=True)
        client.wxa.release()
    info = client.wxa._post("wxa/getversioninfo", data={})
    assert info["release_info"]["release_version"] == "1.5.0"
    client.wxa.revert_code_release()
    info = client.wxa._post("wxa/getversioninfo", data={})
    assert info["release_info"]["release_version"] == "1.4.0"
    with pytest.raises(WeChatClientException) as twice:
        client.wxa.revert_code_release()
    assert twice.value.errcode == 87012


def test_a_newer_commit_replaces_the_trial_version_but_not_an_audit(
    gateway: tuple[Simulator, str, Clock],
) -> None:
    sim, url, _clock = gateway
    sim.upload(APPID, "1.5.0")
    client = wechat(url)
    client.wxa.commit(template_id=1, ext_json="{}", version="1.4.0", description="First")
    client.wxa.commit(template_id=2, ext_json="{}", version="1.5.0", description="Second")
    assert [(r.version, r.stage) for r in sim.releases()] == [
        ("1.4.0", Stage.CANCELED), ("1.5.0", Stage.NEW_VERSION_CREATED)]  # fmt: skip
    client.wxa.submit_audit({})
    sim.upload(APPID, "1.6.0")
    with pytest.raises(WeChatClientException) as busy:
        client.wxa.commit(template_id=3, ext_json="{}", version="1.6.0", description="Third")
    assert busy.value.errcode == 85020


def test_a_stable_token_is_reused_until_a_forced_refresh(
    gateway: tuple[Simulator, str, Clock],
) -> None:
    _sim, url, _clock = gateway
    body = {"grant_type": "client_credential", "appid": APPID, "secret": SECRET}
    first = httpx.post(f"{url}/cgi-bin/stable_token", json=body).json()
    again = httpx.post(f"{url}/cgi-bin/stable_token", json=body).json()
    forced = httpx.post(f"{url}/cgi-bin/stable_token", json={**body, "force_refresh": True})
    assert first["access_token"] == again["access_token"] != forced.json()["access_token"]
    wrong = httpx.post(f"{url}/cgi-bin/stable_token", json={**body, "secret": "nope"}).json()
    assert wrong["errcode"] == 40125


def test_a_malformed_ext_json_is_refused_before_anything_happens(
    gateway: tuple[Simulator, str, Clock],
) -> None:
    sim, url, _clock = gateway
    client = wechat(url)
    for ext_json in ("not json", "[1]", json.dumps({"ext": [1]})):
        with pytest.raises(WeChatClientException) as bad:
            client.wxa.commit(1, ext_json, "1.4.0", "First")
        assert bad.value.errcode == 85021
    assert sim.releases() == []
