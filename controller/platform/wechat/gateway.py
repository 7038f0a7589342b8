"""A gateway that serves a ``Platform`` the way WeChat serves a mini program's code management
API (``cgi-bin/token``, ``wxa/commit``, ``submit_audit``, ``get_auditstatus``, ``undocodeaudit``,
``release``, ``grayrelease``, ``getgrayreleaseplan``, ``revertgrayrelease``, ``bind_tester``,
``unbind_tester``, ``get_qrcode``), so that ``wechatpy`` checks our reading of the protocol.

The mini program is the ``appid``; every release goes to one target app (``wechat`` by default).
An access token comes from ``cgi-bin/token`` with the app's secret and is valid for
``expires_in`` seconds; every other call needs it (``?access_token=``), else 40001/42001.
Like WeChat, the calls name no version: they act on the mini program's current release (the
newest one in flight; ``release`` and ``grayrelease`` on the approved one). ``auditid`` is the
number of the simulator's release id (``R-000007`` -> 7). WeChat has no idempotency keys and
neither does the gateway.

Callers: ``controller.cli_platform`` (``serve --dialect wechat``) and tests.
"""

from __future__ import annotations

import hmac
import json
import secrets
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from controller.platform.errors import (
    Conflict,
    InvalidState,
    LimitExceeded,
    NotEditable,
    NotFound,
    PlatformError,
    RateLimited,
    Transient,
    Unknown,
)
from controller.platform.protocol import Platform, ReleaseSnapshot
from controller.platform.rules import FINAL_STAGES, Stage

__all__ = ["AUDIT_STATUS", "ERRCODES", "create_gateway"]

#: relctl error -> WeChat errcode. 85002: tester limit; 87013: undocodeaudit quota; 45011:
#: frequency limit; -1: system busy. The other refusals use 85020 ("status does not allow it"),
#: the message says which rule.
ERRCODES: dict[str, int] = {
    InvalidState.code: 85020,
    Conflict.code: 85020,
    NotEditable.code: 85020,
    NotFound.code: 85019,
    LimitExceeded.code: 85002,
    RateLimited.code: 45011,
    Transient.code: -1,
    Unknown.code: -1,
}

#: get_auditstatus ``status``: 0 approved, 1 rejected, 2 under review, 3 withdrawn, 4 delayed.
AUDIT_STATUS: dict[Stage, int] = {
    Stage.UNDER_REVIEW: 2,
    Stage.REJECTED: 1,
    Stage.NEW_VERSION_CREATED: 3,
    Stage.PILOT_TESTING: 0,
    Stage.RELEASE_PREPARATION: 0,
    Stage.GRAYSCALE: 0,
    Stage.FULL_RELEASE: 0,
    Stage.ARCHIVED: 0,
}

TOKEN_SECONDS = 7200


class _Refused(Exception):
    def __init__(self, errcode: int, errmsg: str) -> None:
        super().__init__(errmsg)
        self.errcode = errcode


def _release_id(auditid: Any) -> str:
    if isinstance(auditid, bool) or not isinstance(auditid, int) or auditid < 1:
        raise _Refused(40097, "invalid args: auditid")
    return f"R-{auditid:06d}"


def _auditid(snapshot: ReleaseSnapshot) -> int:
    return int(snapshot.release_id.rpartition("-")[2])


def create_gateway(
    platform: Platform,
    *,
    apps: Mapping[str, str],
    target_app: str = "wechat",
    environment: str = "production",
    clock: Callable[[], float] = time.time,
) -> Starlette:
    """The ASGI application of the gateway; ``apps`` maps each appid to its secret."""
    tokens: dict[str, tuple[str, float]] = {}

    def current(appid: str, stages: frozenset[Stage] | None = None) -> ReleaseSnapshot:
        for snapshot in reversed(platform.find_releases(appid, target_app)):
            if snapshot.stage in FINAL_STAGES or snapshot.stage is Stage.FULL_RELEASE:
                continue
            if stages is None or snapshot.stage in stages:
                return snapshot
        raise _Refused(85019, "no version in progress")

    def handle(appid: str, name: str, data: dict[str, Any], key: str) -> dict[str, Any]:
        if name == "commit":
            version = data.get("user_version")
            if not isinstance(version, str) or not version:
                raise _Refused(40097, "invalid args: user_version")
            snapshot = platform.create_release(appid, version, target_app, environment,
                                               idempotency_key=key)  # fmt: skip
            if isinstance(data.get("user_desc"), str):
                info = {**snapshot.basic_info, "description": data["user_desc"]}
                platform.update_basic_info(snapshot.release_id, info, idempotency_key=f"{key}:i")
            return {}
        if name == "submit_audit":
            snapshot = current(appid)
            if snapshot.compatibility is None or snapshot.compatibility.finished_at is None:
                platform.run_compatibility_test(snapshot.release_id, idempotency_key=f"{key}:t")
            return {"auditid": _auditid(platform.apply(snapshot.release_id, idempotency_key=key))}
        if name == "get_auditstatus":
            snapshot = platform.get_release(_release_id(data.get("auditid")))
            status = AUDIT_STATUS.get(snapshot.stage)
            if status is None:
                raise _Refused(85019, f"no audit for release in stage {snapshot.stage}")
            answer: dict[str, Any] = {"status": status}
            if status == 1 and snapshot.review is not None:
                answer["reason"] = snapshot.review.reason
            return answer
        if name == "undocodeaudit":
            platform.withdraw(current(appid, frozenset({Stage.UNDER_REVIEW})).release_id,
                              idempotency_key=key)  # fmt: skip
            return {}
        if name == "release":
            platform.full_release(current(appid).release_id, idempotency_key=key)
            return {}
        if name == "grayrelease":
            percent = data.get("gray_percentage")
            if isinstance(percent, bool) or not isinstance(percent, int) or not 1 <= percent <= 100:
                raise _Refused(40097, "invalid args: gray_percentage must be 1..100")
            platform.set_grayscale(current(appid).release_id, percent, idempotency_key=key)
            return {}
        if name == "getgrayreleaseplan":
            found = [s for s in platform.find_releases(appid, target_app)
                     if s.stage is Stage.GRAYSCALE]  # fmt: skip
            if not found:
                return {"gray_release_plan": {"status": 0, "gray_percentage": 0}}
            gray = found[-1]
            started = gray.stage_times.get(Stage.GRAYSCALE)
            return {"gray_release_plan": {
                "status": 1, "gray_percentage": gray.grayscale,
                "create_timestamp": int(started.timestamp()) if started else 0}}  # fmt: skip
        if name == "revertgrayrelease":
            gray = current(appid, frozenset({Stage.GRAYSCALE}))
            platform.cancel(gray.release_id, idempotency_key=key)
            return {}
        if name in ("bind_tester", "unbind_tester"):
            wechatid = data.get("wechatid")
            if not isinstance(wechatid, str) or not wechatid:
                raise _Refused(40097, "invalid args: wechatid")
            snapshot = current(appid)
            testers = set(snapshot.testers)
            if name == "bind_tester":
                if wechatid in testers:
                    raise _Refused(85004, "the user is already a tester")
                testers.add(wechatid)
            else:
                testers.discard(wechatid)
            platform.set_testers(snapshot.release_id, sorted(testers), idempotency_key=key)
            return {"userstr": wechatid} if name == "bind_tester" else {}
        raise _Refused(40066, f"invalid url: wxa/{name}")

    async def token(request: Request) -> Response:
        query = request.query_params
        appid, secret = query.get("appid", ""), query.get("secret", "")
        expected = apps.get(appid)
        if query.get("grant_type") != "client_credential" or expected is None:
            return JSONResponse({"errcode": 40013, "errmsg": "invalid appid"})
        if not hmac.compare_digest(secret.encode(), expected.encode()):
            return JSONResponse({"errcode": 40125, "errmsg": "invalid appsecret"})
        issued = secrets.token_urlsafe(32)
        tokens[issued] = (appid, clock() + TOKEN_SECONDS)
        return JSONResponse({"access_token": issued, "expires_in": TOKEN_SECONDS})

    async def wxa(request: Request) -> Response:
        given = request.query_params.get("access_token", "")
        entry = tokens.get(given)
        if entry is None:
            return JSONResponse({"errcode": 40001, "errmsg": "invalid credential"})
        appid, expires = entry
        if clock() >= expires:
            return JSONResponse({"errcode": 42001, "errmsg": "access_token expired"})
        try:
            raw = await request.body()
            data = json.loads(raw) if raw else {}
            if not isinstance(data, dict):
                raise ValueError
        except ValueError:
            return JSONResponse({"errcode": 47001, "errmsg": "data format error"})
        name = request.path_params["name"]
        key = f"wechat:{uuid.uuid4().hex}"
        try:
            result = await run_in_threadpool(handle, appid, name, data, key)
            return JSONResponse({"errcode": 0, "errmsg": "ok", **result})
        except _Refused as refused:
            return JSONResponse({"errcode": refused.errcode, "errmsg": str(refused)})
        except PlatformError as error:
            code = ERRCODES.get(error.code, 85020)
            return JSONResponse({"errcode": code, "errmsg": f"{error.code}: {error.message}"})
        except Exception:  # a bug: the outcome of a mutation is unknown
            return JSONResponse({"errcode": -1, "errmsg": "system error"})

    return Starlette(routes=[
        Route("/cgi-bin/token", token, methods=["GET"]),
        Route("/wxa/{name}", wxa, methods=["GET", "POST"]),
    ])  # fmt: skip
