"""relctl's WeChat adapter against the WeChat gateway served by a real server on 127.0.0.1.

The simulator (manual clock) is the platform behind the gateway; the adapter speaks WeChat's
API to it over HTTP, exactly as it would to api.weixin.qq.com. Only the clocks are fake: the
simulator's (reviews, the withdrawal quota's day) and the token clock (expiry). Then the real
controller takes a release to full release through ``wechat:`` over a bare git remote.
"""

from __future__ import annotations

import logging
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml
from controller_world import ACCESS, manifest
from gitutil import PersonClone, make_remote
from httputil import serve_app

from controller.daemon import Controller
from controller.gitops import Workspace
from controller.model import Phase, Status
from controller.platform import open_platform
from controller.platform.errors import (
    Conflict,
    InvalidState,
    LimitExceeded,
    NotEditable,
    NotFound,
    PlatformUnusable,
    RateLimited,
    Transient,
    Unknown,
)
from controller.platform.protocol import CompatibilityStatus, ReleaseSnapshot, Stage
from controller.platform.sim import Simulator
from controller.platform.wechat.adapter import WeChatPlatform, WeChatView, derive_stage
from controller.platform.wechat.gateway import TOKEN_SECONDS, create_gateway
from controller.platform.wechat.ledger import Record
from controller.status import parse_status
from controller.trust import TrustSettings

APPID, SECRET = "wx0123456789abcdef", "s3cret-for-tests"
CONFIGURATION = {"pages": ["pages/index/index"], "theme": "light"}
INFO = {"name": "Shop", "description": "Browse and pay", "slogan": "One tap"}


class Clock:
    """A token clock that moves only when a test says so."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Wx:
    sim: Simulator
    url: str
    gateway_clock: Clock
    adapter_clock: Clock
    sleeps: list[float]
    adapter: WeChatPlatform
    tmp: Path

    def other_adapter(self, ledger: str) -> WeChatPlatform:
        return WeChatPlatform(self.url, app_id=APPID, app_secret=SECRET,
                              ledger=self.tmp / ledger, clock=self.adapter_clock)  # fmt: skip

    def sim_release(self) -> ReleaseSnapshot:
        (release,) = [r for r in self.sim.releases() if r.version == "1.4.0"]
        return release

    def effects(self, operation: str) -> list[str]:
        with sqlite3.connect(self.sim.path) as conn:
            rows = conn.execute(
                "SELECT request FROM idempotency WHERE operation = ? ORDER BY created_at",
                (operation,),
            ).fetchall()
        return [row[0] for row in rows]


@pytest.fixture
def wx(tmp_path: Path) -> Iterator[Wx]:
    sim = Simulator(tmp_path / "platform.db")
    sim.set_clock(manual=True)
    sim.set_app("wechat", review="manual", build_seconds=0, test_seconds=0, testers_max=2,
                pilot_required=True, user_id_pattern="^[a-z][a-z0-9_]{3,19}$")  # fmt: skip
    sim.upload(APPID, "1.4.0")
    gateway_clock, adapter_clock, sleeps = Clock(), Clock(), list[float]()
    with serve_app(create_gateway(sim, apps={APPID: SECRET}, clock=gateway_clock)) as url:
        adapter = WeChatPlatform(url, app_id=APPID, app_secret=SECRET,
                                 ledger=tmp_path / "ledger.db", clock=adapter_clock,
                                 sleep=sleeps.append)  # fmt: skip
        yield Wx(sim, url, gateway_clock, adapter_clock, sleeps, adapter, tmp_path)
        adapter.close()
    sim.close()


def committed(wx: Wx) -> ReleaseSnapshot:
    """1.4.0 committed, configured, 'tested' and submitted for audit."""
    release = wx.adapter.create_release(APPID, "1.4.0", "wechat", "production",
                                        idempotency_key="k-create")  # fmt: skip
    rid = release.release_id
    wx.adapter.update_basic_info(rid, INFO, idempotency_key="k-info")
    wx.adapter.update_configuration(rid, CONFIGURATION, idempotency_key="k-config")
    wx.adapter.run_compatibility_test(rid, idempotency_key="k-test")
    return wx.adapter.apply(rid, idempotency_key="k-apply")


def approved(wx: Wx) -> ReleaseSnapshot:
    release = committed(wx)
    wx.sim.review(wx.sim_release().release_id, approve=True)
    return wx.adapter.get_release(release.release_id)


def in_preparation(wx: Wx) -> ReleaseSnapshot:
    release = approved(wx)
    return wx.adapter.complete_testing(release.release_id, idempotency_key="k-complete")


# --- a full lifecycle ------------------------------------------------------------------------


def test_a_full_lifecycle_from_commit_to_release_and_qr_code(wx: Wx) -> None:
    adapter = wx.adapter
    assert adapter.get_version(APPID, "1.4.0") is not None  # in WeChat's template list
    assert adapter.get_version(APPID, "9.9.9") is None
    release = adapter.create_release(APPID, "1.4.0", "wechat", "production",
                                     idempotency_key="k1")  # fmt: skip
    assert (release.stage, release.version) == (Stage.NEW_VERSION_CREATED, "1.4.0")
    rid = release.release_id
    adapter.update_basic_info(rid, INFO, idempotency_key="k2")
    release = adapter.update_configuration(rid, CONFIGURATION, idempotency_key="k3")
    assert dict(release.configuration) == CONFIGURATION
    # the configuration went to WeChat as ext_json's "ext", the description as user_desc
    assert dict(wx.sim_release().configuration) == CONFIGURATION
    assert wx.sim_release().basic_info["description"] == INFO["description"]
    release = adapter.run_compatibility_test(rid, idempotency_key="k4")
    report = release.compatibility
    assert report is not None and report.status is CompatibilityStatus.FINISHED
    assert report.cases == () and report.configuration_digest
    assert adapter.apply(rid, idempotency_key="k5").stage is Stage.UNDER_REVIEW
    wx.sim.review(wx.sim_release().release_id, approve=True)
    release = adapter.get_release(rid)
    assert release.stage is Stage.PILOT_TESTING and release.review is not None
    change = adapter.set_testers(rid, ["anna_1", "ben_22"], idempotency_key="k6")
    assert change.added == ("anna_1", "ben_22")
    assert wx.sim_release().testers == ("anna_1", "ben_22")
    change = adapter.set_testers(rid, ["anna_1"], idempotency_key="k7")
    assert (change.added, change.removed) == ((), ("ben_22",))
    assert wx.sim_release().testers == ("anna_1",)
    assert adapter.complete_testing(rid, idempotency_key="k8").stage is Stage.RELEASE_PREPARATION
    for percent in (10, 40):
        release = adapter.set_grayscale(rid, percent, idempotency_key=f"k-g{percent}")
        assert (release.stage, release.grayscale) == (Stage.GRAYSCALE, percent)
        assert wx.sim_release().grayscale == percent
    with pytest.raises(InvalidState, match="only rises"):
        adapter.set_grayscale(rid, 20, idempotency_key="k-g20")
    release = adapter.full_release(rid, idempotency_key="k9")
    assert release.stage is Stage.FULL_RELEASE and wx.sim_release().stage is Stage.FULL_RELEASE
    qr = adapter.create_qr_code(rid, idempotency_key="k10")
    assert qr.svg.startswith("<svg") and "data:image/png;base64," in qr.svg
    assert adapter.get_release(rid).qr_code == qr
    (only,) = adapter.find_releases(APPID, "wechat")
    assert only.stage is Stage.FULL_RELEASE and only.release_id == rid


def test_a_repeated_call_in_its_target_state_is_success_without_a_second_effect(wx: Wx) -> None:
    release = committed(wx)
    assert wx.adapter.apply(release.release_id, idempotency_key="again").stage is (
        Stage.UNDER_REVIEW
    )
    again = wx.adapter.create_release(APPID, "1.4.0", "wechat", "production",
                                      idempotency_key="again")  # fmt: skip
    assert again.release_id == release.release_id
    assert len(wx.effects("apply")) == 1
    assert len(wx.effects("create_release")) == 1


def test_the_configuration_is_frozen_once_submitted(wx: Wx) -> None:
    release = committed(wx)
    with pytest.raises(NotEditable, match="UNDER_REVIEW"):
        wx.adapter.update_configuration(release.release_id, {"pages": []}, idempotency_key="x")


def release_fully(wx: Wx, version: str) -> ReleaseSnapshot:
    """``version`` through commit, audit (approved), pilot testing and full release."""
    adapter = wx.adapter
    created = adapter.create_release(APPID, version, "wechat", "production", idempotency_key="r")
    rid = created.release_id
    adapter.update_configuration(rid, CONFIGURATION, idempotency_key=f"{version}c")
    adapter.run_compatibility_test(rid, idempotency_key=f"{version}t")
    adapter.apply(rid, idempotency_key=f"{version}a")
    (mine,) = [r for r in wx.sim.releases() if r.version == version]
    wx.sim.review(mine.release_id, approve=True)
    adapter.complete_testing(rid, idempotency_key=f"{version}p")
    return adapter.full_release(rid, idempotency_key=f"{version}f")


def test_a_newer_release_archives_the_previous_one_and_a_rollback_shows(wx: Wx) -> None:
    first = release_fully(wx, "1.4.0")
    wx.sim.upload(APPID, "1.5.0")
    second = release_fully(wx, "1.5.0")
    assert second.stage is Stage.FULL_RELEASE
    assert wx.adapter.get_release(first.release_id).stage is Stage.ARCHIVED
    # a person rolls WeChat back (revertcoderelease); relctl reports it, it does not undo it
    body = {"grant_type": "client_credential", "appid": APPID, "secret": SECRET}
    token = httpx.post(f"{wx.url}/cgi-bin/stable_token", json=body).json()["access_token"]
    answer = httpx.get(f"{wx.url}/wxa/revertcoderelease", params={"access_token": token})
    assert answer.json()["errcode"] == 0
    rolled_back = wx.adapter.get_release(second.release_id)
    assert rolled_back.stage is Stage.ARCHIVED and "WeChat now serves 1.4.0" in rolled_back.message


def test_a_cancel_before_exposure_is_recorded_and_the_next_commit_replaces_the_trial(
    wx: Wx,
) -> None:
    release = approved(wx)
    canceled = wx.adapter.cancel(release.release_id, idempotency_key="c")
    assert canceled.stage is Stage.CANCELED and "no cancel step" in canceled.message
    assert wx.adapter.calls.get("/wxa/revertgrayrelease", 0) == 0
    wx.sim.upload(APPID, "1.5.0")
    newer = wx.adapter.create_release(APPID, "1.5.0", "wechat", "production", idempotency_key="n")
    assert newer.stage is Stage.NEW_VERSION_CREATED
    assert wx.sim_release().stage is Stage.CANCELED  # WeChat's trial version was replaced
    stages = {r.version: r.stage for r in wx.adapter.find_releases(APPID, "wechat")}
    assert stages == {"1.4.0": Stage.CANCELED, "1.5.0": Stage.NEW_VERSION_CREATED}


# --- refusals ---------------------------------------------------------------------------------


def test_withdrawing_until_the_quota_refuses_with_a_hint(wx: Wx) -> None:
    release = committed(wx)
    rid = release.release_id
    assert wx.adapter.withdraw(rid, idempotency_key="w1").stage is Stage.NEW_VERSION_CREATED
    # a repeat (after an Unknown, say) is success without a second undocodeaudit
    assert wx.adapter.withdraw(rid, idempotency_key="w1").stage is Stage.NEW_VERSION_CREATED
    assert wx.adapter.calls["/wxa/undocodeaudit"] == 1
    assert wx.adapter.apply(rid, idempotency_key="a2").stage is Stage.UNDER_REVIEW
    with pytest.raises(LimitExceeded) as refused:
        wx.adapter.withdraw(rid, idempotency_key="w2")
    message = refused.value.message
    assert "87013" in message and "resets at 00:00 Beijing time" in message
    assert "Let the review finish" in message
    assert wx.adapter.get_release(rid).stage is Stage.UNDER_REVIEW
    wx.sim.advance(24 * 3600)  # the next day of the simulator's clock: a new quota
    assert wx.adapter.withdraw(rid, idempotency_key="w3").stage is Stage.NEW_VERSION_CREATED


def test_cancel_during_grayscale_reverts_the_gray_release(wx: Wx) -> None:
    release = in_preparation(wx)
    wx.adapter.set_grayscale(release.release_id, 10, idempotency_key="g10")
    canceled = wx.adapter.cancel(release.release_id, idempotency_key="c")
    assert canceled.stage is Stage.CANCELED and "revertgrayrelease" in canceled.message
    assert wx.sim_release().stage is Stage.CANCELED
    with pytest.raises(Conflict, match="canceled"):
        wx.adapter.create_release(APPID, "1.4.0", "wechat", "production", idempotency_key="r")


def test_the_tester_limit_is_limit_exceeded_and_bound_testers_are_kept(wx: Wx) -> None:
    release = approved(wx)
    with pytest.raises(LimitExceeded, match="85002"):
        wx.adapter.set_testers(release.release_id, ["anna_1", "ben_22", "carl_3"],
                               idempotency_key="t")  # fmt: skip
    assert wx.adapter.get_release(release.release_id).testers == ("anna_1", "ben_22")
    assert wx.sim_release().testers == ("anna_1", "ben_22")


def test_a_target_app_or_mini_program_the_adapter_does_not_serve_is_refused_by_name(
    wx: Wx,
) -> None:
    with pytest.raises(NotFound, match="'gcash'"):
        wx.adapter.find_releases(APPID, "gcash")
    with pytest.raises(NotFound, match="'shop'"):
        wx.adapter.create_release("shop", "1.4.0", "wechat", "production", idempotency_key="x")


def test_a_version_committed_outside_relctl_is_shown_without_invented_state(wx: Wx) -> None:
    committed(wx)
    stranger = wx.other_adapter("another-ledger.db")  # e.g. a lost ledger
    try:
        (release,) = stranger.find_releases(APPID, "wechat")
        assert release.stage is Stage.UNDER_REVIEW  # what WeChat says
        assert dict(release.configuration) == {} and release.compatibility is None
        assert "committed outside relctl" in release.message
        with pytest.raises(InvalidState, match="committed outside relctl"):
            stranger.withdraw(release.release_id, idempotency_key="w")
    finally:
        stranger.close()


# --- rate limits, unknown outcomes, tokens, credentials ----------------------------------------


def test_a_rate_limit_is_retried_briefly_then_surfaces(wx: Wx) -> None:
    committed(wx)
    wx.sim.faults(rate_limited_rate=1.0, seed=7)
    with pytest.raises(RateLimited, match="45011"):
        wx.adapter.find_releases(APPID, "wechat")
    assert wx.sleeps == [1.0, 1.0]  # two bounded retries, then the controller's policy
    wx.sim.faults(off=True)
    assert wx.adapter.find_releases(APPID, "wechat")[0].stage is Stage.UNDER_REVIEW


def test_an_unknown_outcome_that_took_effect_is_re_queried_not_repeated(wx: Wx) -> None:
    release = in_preparation(wx)
    wx.adapter.set_grayscale(release.release_id, 10, idempotency_key="g10")
    wx.sim.faults(unknown_rate=1.0, seed=3)  # every mutation happens, then answers -1
    raised = wx.adapter.set_grayscale(release.release_id, 40, idempotency_key="g40")
    assert (raised.stage, raised.grayscale) == (Stage.GRAYSCALE, 40)
    assert sum('"percent": 40' in request for request in wx.effects("set_grayscale")) == 1
    released = wx.adapter.full_release(release.release_id, idempotency_key="full")
    assert released.stage is Stage.FULL_RELEASE
    assert len(wx.effects("full_release")) == 1


def test_a_commit_whose_answer_was_lost_is_found_as_relctls_own(wx: Wx) -> None:
    wx.sim.faults(unknown_rate=1.0, seed=5)  # the commit happens, every answer is -1
    with pytest.raises(Unknown):
        wx.adapter.create_release(APPID, "1.4.0", "wechat", "production", idempotency_key="c")
    wx.sim.faults(off=True)
    (release,) = wx.adapter.find_releases(APPID, "wechat")
    assert release.stage is Stage.NEW_VERSION_CREATED and release.extra["ledger"] is True
    assert "outside relctl" not in release.message
    wx.adapter.update_configuration(release.release_id, CONFIGURATION, idempotency_key="u")
    assert len(wx.effects("create_release")) == 1


def test_an_expired_token_is_refreshed_once(wx: Wx) -> None:
    wx.adapter.find_releases(APPID, "wechat")
    assert wx.adapter.calls["/cgi-bin/stable_token"] == 1
    wx.adapter.find_releases(APPID, "wechat")
    assert wx.adapter.calls["/cgi-bin/stable_token"] == 1  # cached
    wx.gateway_clock.now += TOKEN_SECONDS + 1  # WeChat says 42001; the adapter did not know
    wx.adapter.find_releases(APPID, "wechat")
    assert wx.adapter.calls["/cgi-bin/stable_token"] == 2
    wx.adapter_clock.now += TOKEN_SECONDS - 200  # within the margin: renewed before it expires
    wx.adapter.find_releases(APPID, "wechat")
    assert wx.adapter.calls["/cgi-bin/stable_token"] == 3


def test_a_wrong_secret_is_unusable_and_never_printed(wx: Wx, tmp_path: Path) -> None:
    secret = "wrong-secret-value"
    adapter = WeChatPlatform(wx.url, app_id=APPID, app_secret=secret,
                             ledger=tmp_path / "l.db")  # fmt: skip
    try:
        with pytest.raises(PlatformUnusable) as refused:
            adapter.find_releases(APPID, "wechat")
        assert "RELCTL_WECHAT_APP_SECRET" in str(refused.value)
        assert secret not in str(refused.value) and secret not in repr(adapter)
    finally:
        adapter.close()


def test_missing_credentials_are_refused_naming_the_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RELCTL_WECHAT_LEDGER", str(tmp_path / "ledger.db"))
    monkeypatch.setenv("RELCTL_WECHAT_APP_ID", APPID)
    monkeypatch.delenv("RELCTL_WECHAT_APP_SECRET", raising=False)
    with pytest.raises(PlatformUnusable, match=r"set RELCTL_WECHAT_APP_SECRET$"):
        open_platform("wechat:")
    with pytest.raises(ValueError, match="base URL"):
        open_platform("wechat:ftp://example.com")
    monkeypatch.setenv("RELCTL_WECHAT_APP_SECRET", SECRET)
    platform = open_platform("wechat:")  # opening sends nothing
    assert isinstance(platform, WeChatPlatform)
    assert platform.base_url == "https://api.weixin.qq.com" and SECRET not in repr(platform)
    platform.close()


def test_an_unreachable_wechat_is_transient(tmp_path: Path) -> None:
    adapter = WeChatPlatform("http://127.0.0.1:9", app_id=APPID, app_secret=SECRET,
                             ledger=tmp_path / "l.db", sleep=lambda _s: None)  # fmt: skip
    try:
        with pytest.raises(Transient, match="cannot reach"):
            adapter.find_releases(APPID, "wechat")
    finally:
        adapter.close()


def test_the_secret_never_crosses_a_network_in_clear_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RELCTL_WECHAT_LEDGER", str(tmp_path / "ledger.db"))
    monkeypatch.setenv("RELCTL_WECHAT_APP_ID", APPID)
    monkeypatch.setenv("RELCTL_WECHAT_APP_SECRET", SECRET)
    with pytest.raises(ValueError, match="https://HOST"):
        open_platform("wechat:http://api.weixin.qq.com")
    open_platform("wechat:http://127.0.0.1:9").close()  # a gateway on this machine


def test_an_answer_too_large_is_never_read_whole(tmp_path: Path) -> None:
    """WeChat's answers are untrusted input: a body past 4 MiB is not read, and the outcome of
    a change it answered is unknown (re-queried, never assumed)."""
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    huge = b"{" + b" " * (5 * 1024 * 1024) + b"}"

    async def endless(_request: object) -> Response:
        return Response(huge, media_type="application/json")

    app = Starlette(routes=[Route("/{path:path}", endless, methods=["GET", "POST"])])
    with serve_app(app) as url:
        adapter = WeChatPlatform(url, app_id=APPID, app_secret=SECRET,
                                 ledger=tmp_path / "l.db", sleep=lambda _s: None)  # fmt: skip
        try:
            with pytest.raises(Transient, match="larger than"):
                adapter.find_releases(APPID, "wechat")
        finally:
            adapter.close()


# --- the controller, end to end ---------------------------------------------------------------

CONFIG = """\
apiVersion: relctl/v1
kind: Config
platform: "wechat:"
targetApps:
  wechat: {name: WeChat, environment: production, userIdPattern: "^[a-z][a-z0-9_]{3,19}$"}
"""


@dataclass
class ControllerWorld:
    """The real controller over a bare git remote, reaching the gateway through ``wechat:``."""

    wx: Wx
    person: PersonClone
    controller: Controller
    platform: WeChatPlatform
    path: str

    def pass_once(self) -> Status:
        assert self.controller.pass_once(raise_errors=True) is not None
        self.person.pull()
        status_file = self.person.path / f"status/{APPID}/wechat.yaml"
        status = parse_status(status_file.read_bytes(), file=str(status_file))
        assert status is not None
        return status

    def approve_all(self) -> None:
        for release in self.wx.sim.releases():
            if release.stage is Stage.UNDER_REVIEW:
                self.wx.sim.review(release.release_id, approve=True)


@contextmanager
def controller_on_wechat(
    wx: Wx, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str
) -> Iterator[ControllerWorld]:
    monkeypatch.setenv("RELCTL_WECHAT_APP_ID", APPID)
    monkeypatch.setenv("RELCTL_WECHAT_APP_SECRET", SECRET)
    monkeypatch.setenv("RELCTL_WECHAT_LEDGER", str(tmp_path / "controller-ledger.db"))
    path = f"releases/{APPID}/wechat.yaml"
    remote = make_remote(tmp_path, {"relctl.yaml": CONFIG, "access.yaml": ACCESS, path: text})
    person = PersonClone(remote, tmp_path / "person", name="Maria", email="maria@example.com")
    anchor = subprocess.run(["git", "ls-remote", remote, "refs/heads/main"], check=True,
                            capture_output=True, text=True).stdout.split()[0]  # fmt: skip
    workspace = Workspace(remote, "main", tmp_path / "controller")
    workspace.open()
    platform = open_platform(f"wechat:{wx.url}")
    assert isinstance(platform, WeChatPlatform)
    controller = Controller(workspace, platform, now=wx.sim.now,
                            trust=TrustSettings(anchor=anchor))  # fmt: skip
    try:
        yield ControllerWorld(wx, person, controller, platform, path)
    finally:
        workspace.close()
        platform.close()


def wechat_manifest(**fields: object) -> str:
    return manifest(APPID, "wechat", min_pass_rate=0, testers=["anna_1"], **fields)  # type: ignore[arg-type]


def test_the_controller_takes_a_release_to_full_release_through_wechat(
    wx: Wx, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = wechat_manifest(grayscale=100, complete=True)
    with controller_on_wechat(wx, tmp_path, monkeypatch, text) as world:
        phases = []
        for _ in range(12):
            status = world.pass_once()
            phases.append((status.phase, status.conditions[0].message if status.conditions else ""))
            if status.qr_code is not None:
                break
            world.approve_all()
            wx.sim.advance(60)
        calls = dict(world.platform.calls)
    assert status.qr_code is not None, phases
    assert wx.sim_release().stage is Stage.FULL_RELEASE
    assert wx.sim_release().testers == ("anna_1",)
    assert dict(wx.sim_release().configuration) == yaml.safe_load(text)["spec"]["configuration"]
    for operation in ("create_release", "apply", "full_release", "set_testers"):
        assert len(wx.effects(operation)) == 1, operation
    assert calls["/cgi-bin/stable_token"] == 1, calls  # one access token for the whole run


def test_a_configuration_change_in_review_past_the_quota_stalls_with_the_hint(
    wx: Wx, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with controller_on_wechat(wx, tmp_path, monkeypatch, wechat_manifest()) as world:
        for _ in range(8):
            if world.pass_once().phase is Phase.IN_REVIEW:
                break
        # a first change during review: withdraw (the day's one), push it, apply again
        world.person.commit_and_push({world.path: wechat_manifest(page="pages/a/a")}, "page a")
        for _ in range(8):
            if world.pass_once().phase is Phase.IN_REVIEW and len(wx.effects("apply")) == 2:
                break
        assert (len(wx.effects("withdraw")), len(wx.effects("apply"))) == (1, 2)
        # a second change the same day: WeChat refuses the withdrawal, the status says why
        world.person.commit_and_push({world.path: wechat_manifest(page="pages/b/b")}, "page b")
        status = world.pass_once()
    message = " ".join(c.message for c in status.conditions)
    assert "87013" in message and "resets at 00:00 Beijing time" in message, message
    assert len(wx.effects("withdraw")) == 1
    assert wx.sim_release().stage is Stage.UNDER_REVIEW


def test_the_access_token_never_reaches_a_log_line(
    wx: Wx, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="httpx")
    wx.adapter.find_releases(APPID, "wechat")
    body = {"grant_type": "client_credential", "appid": APPID, "secret": SECRET}
    token = httpx.post(f"{wx.url}/cgi-bin/stable_token", json=body).json()["access_token"]
    assert "access_token=***" in caplog.text  # the gateway answered the adapter's token above
    assert token not in caplog.text and SECRET not in caplog.text


# --- the stage, derived from what WeChat says ------------------------------------------------


def view(**answers: object) -> WeChatView:
    base: dict[str, object] = {
        "trial_version": None, "trial_time": None, "trial_desc": "", "released_version": None,
        "released_time": None, "audit_version": None, "audit_status": None, "audit_reason": "",
        "audit_time": None, "gray_percentage": 0, "gray_time": None,
    }  # fmt: skip
    return WeChatView(**{**base, **answers})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("answers", "ledger", "expected"),
    [
        ({"trial_version": "1.4.0"}, {}, (Stage.NEW_VERSION_CREATED, 0)),
        ({"trial_version": "1.4.0", "audit_version": "1.4.0", "audit_status": 2}, {},
         (Stage.UNDER_REVIEW, 0)),
        ({"trial_version": "1.4.0", "audit_version": "1.4.0", "audit_status": 4}, {},
         (Stage.UNDER_REVIEW, 0)),
        ({"trial_version": "1.4.0", "audit_version": "1.4.0", "audit_status": 1}, {},
         (Stage.REJECTED, 0)),
        ({"trial_version": "1.4.0", "audit_version": "1.4.0", "audit_status": 3}, {},
         (Stage.NEW_VERSION_CREATED, 0)),
        ({"audit_version": "1.4.0", "audit_status": 0}, {}, (Stage.PILOT_TESTING, 0)),
        ({"audit_version": "1.4.0", "audit_status": 0}, {"pilot_completed_at": 1.0},
         (Stage.RELEASE_PREPARATION, 0)),
        ({"audit_version": "1.4.0", "audit_status": 0, "gray_percentage": 30}, {},
         (Stage.GRAYSCALE, 30)),
        ({"released_version": "1.4.0"}, {}, (Stage.FULL_RELEASE, 100)),
        ({"released_version": "1.5.0"}, {"released_at": 1.0}, (Stage.ARCHIVED, 0)),
        ({"released_version": "1.3.0"}, {"released_at": 1.0}, (Stage.ARCHIVED, 0)),
        ({"trial_version": "1.5.0"}, {}, (Stage.CANCELED, 0)),
        ({"trial_version": "1.4.0", "audit_version": "1.4.0", "audit_status": 0,
          "gray_percentage": 30}, {"canceled_at": 1.0}, (Stage.CANCELED, 0)),
    ],
)  # fmt: skip
def test_the_stage_is_what_wechat_says_plus_relctls_own_steps(
    answers: dict[str, object], ledger: dict[str, float], expected: tuple[Stage, int]
) -> None:
    record = Record("1.4.0", "production", 0.0, 0.0, **ledger)  # type: ignore[arg-type]
    assert derive_stage(record, view(**answers))[:2] == expected
