"""The WeChat mini program gateway, driven by ``wechatpy`` (a widely used third-party client).

wechatpy fetches and caches the access token, sends every ``wxa/*`` call with it, turns a
non-zero ``errcode`` into an exception, and refreshes the token by itself after 40001/42001:
if our reading of the protocol were wrong, it would fail. A real server on 127.0.0.1 (wechatpy
accepts any port: only its base URLs are pointed at it), the real simulator with a manual clock,
and a fake clock for the token's expiry.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
