"""A gateway that serves a ``Platform`` the way WeChat serves a mini program's code management
API, so that ``wechatpy`` (and relctl's own WeChat adapter, ``adapter.py``) check our reading of
the protocol without a WeChat account.

Served: ``cgi-bin/token`` and ``cgi-bin/stable_token``; ``wxa/`` ``gettemplatelist``,
``commit``, ``getversioninfo``, ``submit_audit``, ``get_auditstatus``,
``get_latest_auditstatus``, ``undocodeaudit``,
``release``, ``grayrelease``, ``getgrayreleaseplan``, ``revertgrayrelease``,
``revertcoderelease``, ``bind_tester``, ``unbind_tester`` and ``get_qrcode`` (an image).

The mini program is the ``appid``; every release goes to one target app (``wechat`` by default).
An access token comes from ``cgi-bin/token`` with the app's secret and is valid for
``expires_in`` seconds; every other call needs it (``?access_token=``), else 40001/42001.
Like WeChat, the calls name no version: they act on the mini program's current release (the
newest one in flight; ``release`` and ``grayrelease`` on the approved one). ``auditid`` is the
number of the simulator's release id (``R-000007`` -> 7). WeChat has no idempotency keys and
neither does the gateway.

What only WeChat has, the gateway keeps itself (in memory, for the life of the server), so the
simulator core stays the platform of every dialect:

* the ``undocodeaudit`` quota: ``withdrawals_per_day`` successful withdrawals per mini program
  per day of the simulator's clock, the day starting at 00:00 Beijing time (UTC+8) as WeChat's
  quotas do; one more answers 87013;
* ``revertcoderelease``: the released version goes back to the previous one, once per release
  (87012 when there is no previous one or it was already rolled back); ``getversioninfo``
  then shows the previous version as released.

Committing a newer version replaces WeChat's trial version: an older release still in flight
(not under review, not in grayscale) is canceled in the simulator. Leaving pilot testing is no
step of WeChat's: ``grayrelease`` and ``release`` of a release in pilot testing complete it
first.

Callers: ``controller.cli_platform`` (``serve --dialect wechat``) and tests.
"""

from __future__ import annotations

import hmac
import json
import secrets
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
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
from controller.platform.protocol import (
    Platform,
    ReleaseSnapshot,
    ReviewDecision,
    configuration_digest,
)
from controller.platform.rules import FINAL_STAGES, Stage
from controller.platform.sim.console import PlatformConsole
from controller.platform.sim.model import deep_link, qr_png

__all__ = [
    "AUDIT_STATUS",
    "BEIJING",
    "ERRCODES",
    "TOKEN_SECONDS",
    "WITHDRAWALS_PER_DAY",
    "create_gateway",
]

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
#: Successful ``undocodeaudit`` calls per mini program per day before 87013.
WITHDRAWALS_PER_DAY = 1
#: WeChat's quotas reset at midnight Beijing time.
BEIJING = timezone(timedelta(hours=8), "UTC+8")


class _Refused(Exception):
    def __init__(self, errcode: int, errmsg: str) -> None:
        super().__init__(errmsg)
        self.errcode = errcode


@dataclass
class _Account:
    """What the gateway keeps per mini program besides the simulator's state."""

    #: Beijing date -> successful withdrawals that day.
    withdrawals: dict[str, int] = field(default_factory=dict)
    #: Release ids whose full release was rolled back (each at most once).
    rolled_back: set[str] = field(default_factory=set)


def _release_id(auditid: Any) -> str:
    if isinstance(auditid, bool) or not isinstance(auditid, int) or auditid < 1:
        raise _Refused(40097, "invalid args: auditid")
    return f"R-{auditid:06d}"


def _auditid(snapshot: ReleaseSnapshot) -> int:
    return int(snapshot.release_id.rpartition("-")[2])


def _epoch(moment: datetime | None) -> int:
    return int(moment.timestamp()) if moment is not None else 0


def _audit_status(snapshot: ReleaseSnapshot) -> int | None:
    """get_auditstatus of a release: its stage, or for a canceled one its last decision."""
    if snapshot.stage is Stage.CANCELED:
        if Stage.UNDER_REVIEW not in snapshot.stage_times:
            return None
        if snapshot.review is None:
            return 3
        return 0 if snapshot.review.decision is ReviewDecision.APPROVED else 1
    return AUDIT_STATUS.get(snapshot.stage)


def create_gateway(
    platform: Platform,
    *,
    apps: Mapping[str, str],
    target_app: str = "wechat",
    environment: str = "production",
    clock: Callable[[], float] = time.time,
    withdrawals_per_day: int = WITHDRAWALS_PER_DAY,
) -> Starlette:
    """The ASGI application of the gateway; ``apps`` maps each appid to its secret.

    ``clock`` is the token clock; the withdrawal quota's day is the simulator's (when
    ``platform`` is one; else the token clock's).
    """
    tokens: dict[str, tuple[str, float]] = {}
    accounts: dict[str, _Account] = {appid: _Account() for appid in apps}
    console = platform if isinstance(platform, PlatformConsole) else None

    def today() -> datetime:
        now = console.now() if console is not None else datetime.fromtimestamp(clock(), UTC)
        return now.astimezone(BEIJING)

    def releases(appid: str) -> list[ReleaseSnapshot]:
        return platform.find_releases(appid, target_app)

    def current(appid: str, stages: frozenset[Stage] | None = None) -> ReleaseSnapshot:
        for snapshot in reversed(releases(appid)):
            if snapshot.stage in FINAL_STAGES or snapshot.stage is Stage.FULL_RELEASE:
                continue
            if stages is None or snapshot.stage in stages:
                return snapshot
        raise _Refused(85019, "no version in progress")

    def released(appid: str) -> ReleaseSnapshot | None:
        """The release users get: the newest fully released one that was not rolled back."""
        rolled_back = accounts[appid].rolled_back
        full = [s for s in releases(appid) if s.stage in (Stage.FULL_RELEASE, Stage.ARCHIVED)
                and s.release_id not in rolled_back]  # fmt: skip
        return full[-1] if full else None

    def leave_pilot(snapshot: ReleaseSnapshot, key: str) -> None:
        if snapshot.stage is Stage.PILOT_TESTING:
            platform.complete_testing(snapshot.release_id, idempotency_key=f"{key}:p")

    def commit(appid: str, data: dict[str, Any], key: str) -> dict[str, Any]:
        version = data.get("user_version")
        if not isinstance(version, str) or not version:
            raise _Refused(40097, "invalid args: user_version")
        ext: Any = {}
        if "ext_json" in data:
            try:
                ext = json.loads(data["ext_json"]) if isinstance(data["ext_json"], str) else None
            except ValueError:
                ext = None
            if not isinstance(ext, dict) or not isinstance(ext.get("ext", {}), dict):
                raise _Refused(85021, "ext_json is not a JSON object with an object ext")
        existing = [s for s in releases(appid) if s.version == version]
        snapshot = existing[-1] if existing else None
        if snapshot is None or snapshot.stage in FINAL_STAGES:
            for older in releases(appid):
                if older.stage in (Stage.UNDER_REVIEW, Stage.GRAYSCALE):
                    raise _Refused(85020, f"{older.version} is {older.stage.value.lower()}: "
                                   "undo the audit or finish the gray release first")  # fmt: skip
            for older in releases(appid):
                if older.stage not in FINAL_STAGES and older.stage is not Stage.FULL_RELEASE:
                    platform.cancel(older.release_id, idempotency_key=f"{key}:c{older.release_id}")
            snapshot = platform.create_release(appid, version, target_app, environment,
                                               idempotency_key=key)  # fmt: skip
        if isinstance(ext.get("ext"), dict):
            snapshot = platform.update_configuration(snapshot.release_id, ext["ext"],
                                                     idempotency_key=f"{key}:e")  # fmt: skip
        if isinstance(data.get("user_desc"), str):
            info = {**snapshot.basic_info, "description": data["user_desc"]}
            platform.update_basic_info(snapshot.release_id, info, idempotency_key=f"{key}:i")
        return {}

    def latest_audit(appid: str) -> dict[str, Any]:
        audited = [s for s in releases(appid) if Stage.UNDER_REVIEW in s.stage_times]
        if not audited:
            raise _Refused(85019, "no audit submitted")
        snapshot = audited[-1]
        answer = audit_answer(snapshot)
        answer.update({
            "auditid": _auditid(snapshot), "user_version": snapshot.version,
            "user_desc": snapshot.basic_info.get("description", ""),
            "submit_audit_time": _epoch(snapshot.stage_times.get(Stage.UNDER_REVIEW))})  # fmt: skip
        return answer

    def audit_answer(snapshot: ReleaseSnapshot) -> dict[str, Any]:
        status = _audit_status(snapshot)
        if status is None:
            raise _Refused(85019, f"no audit for release in stage {snapshot.stage}")
        answer: dict[str, Any] = {"status": status}
        if status == 1 and snapshot.review is not None:
            answer["reason"] = snapshot.review.reason
        return answer

    def withdraw(appid: str, key: str) -> dict[str, Any]:
        snapshot = current(appid, frozenset({Stage.UNDER_REVIEW}))
        account, day = accounts[appid], today()
        used = account.withdrawals.get(day.date().isoformat(), 0)
        if used >= withdrawals_per_day:
            reset = (day + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
            raise _Refused(87013, f"undocodeaudit quota reached ({withdrawals_per_day} per "
                           f"day); next at {reset.isoformat()}")  # fmt: skip
        platform.withdraw(snapshot.release_id, idempotency_key=key)
        account.withdrawals[day.date().isoformat()] = used + 1
        return {}

    def version_info(appid: str) -> dict[str, Any]:
        answer: dict[str, Any] = {}
        trial = [s for s in releases(appid) if s.stage not in FINAL_STAGES]
        if trial:
            exp = trial[-1]
            answer["exp_info"] = {"exp_time": _epoch(exp.created_at), "exp_version": exp.version,
                                  "exp_desc": exp.basic_info.get("description", "")}  # fmt: skip
        online = released(appid)
        if online is not None:
            answer["release_info"] = {
                "release_time": _epoch(online.stage_times.get(Stage.FULL_RELEASE)),
                "release_version": online.version,
                "release_desc": online.basic_info.get("description", "")}  # fmt: skip
        return answer

    def rollback(appid: str) -> dict[str, Any]:
        online = released(appid)
        if online is None or online.stage is not Stage.FULL_RELEASE:
            raise _Refused(87012, "this version cannot be rolled back: it is a rolled-back-to "
                           "version, or nothing is released")  # fmt: skip
        earlier = [s for s in releases(appid) if s.stage is Stage.ARCHIVED]
        if not earlier:
            raise _Refused(87012, "no previous release to roll back to")
        if any(s.stage is Stage.GRAYSCALE for s in releases(appid)):
            raise _Refused(87011, "a gray release is in progress: cannot roll back")
        accounts[appid].rolled_back.add(online.release_id)
        return {}

    def template_list(appid: str) -> dict[str, Any]:
        if console is None:
            return {"template_list": []}
        uploads = console.versions(appid)
        return {"template_list": [
            {"template_id": index, "user_version": v.version, "user_desc": "",
             "create_time": int(v.uploaded_at)}
            for index, v in enumerate(uploads, start=1)]}  # fmt: skip

    def handle(appid: str, name: str, data: dict[str, Any], key: str) -> dict[str, Any] | bytes:
        if name == "gettemplatelist":
            return template_list(appid)
        if name == "commit":
            return commit(appid, data, key)
        if name == "getversioninfo":
            return version_info(appid)
        if name == "submit_audit":
            snapshot = current(appid)
            report = snapshot.compatibility  # WeChat has none: the simulator's must be current
            if (
                report is None
                or report.finished_at is None
                or report.configuration_digest != configuration_digest(snapshot.configuration)
            ):
                platform.run_compatibility_test(snapshot.release_id, idempotency_key=f"{key}:t")
            return {"auditid": _auditid(platform.apply(snapshot.release_id, idempotency_key=key))}
        if name == "get_auditstatus":
            return audit_answer(platform.get_release(_release_id(data.get("auditid"))))
        if name == "get_latest_auditstatus":
            return latest_audit(appid)
        if name == "undocodeaudit":
            return withdraw(appid, key)
        if name == "release":
            snapshot = current(appid)
            leave_pilot(snapshot, key)
            platform.full_release(snapshot.release_id, idempotency_key=key)
            return {}
        if name == "grayrelease":
            percent = data.get("gray_percentage")
            if isinstance(percent, bool) or not isinstance(percent, int) or not 1 <= percent <= 100:
                raise _Refused(40097, "invalid args: gray_percentage must be 1..100")
            snapshot = current(appid)
            leave_pilot(snapshot, key)
            platform.set_grayscale(snapshot.release_id, percent, idempotency_key=key)
            return {}
        if name == "getgrayreleaseplan":
            found = [s for s in releases(appid) if s.stage is Stage.GRAYSCALE]
            if not found:
                return {"gray_release_plan": {"status": 0, "gray_percentage": 0}}
            gray = found[-1]
            started = gray.stage_times.get(Stage.GRAYSCALE)
            return {"gray_release_plan": {
                "status": 1, "gray_percentage": gray.grayscale,
                "create_timestamp": _epoch(started)}}  # fmt: skip
        if name == "revertgrayrelease":
            gray = current(appid, frozenset({Stage.GRAYSCALE}))
            platform.cancel(gray.release_id, idempotency_key=key)
            return {}
        if name == "revertcoderelease":
            return rollback(appid)
        if name == "get_qrcode":
            trial = [s for s in releases(appid) if s.stage not in FINAL_STAGES]
            if not trial:
                raise _Refused(85019, "no trial version")
            return qr_png(deep_link(appid, trial[-1].version, target_app))
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

    def issue(appid: str, secret: str, grant_type: Any, *, reuse: bool) -> Response:
        expected = apps.get(appid)
        if grant_type != "client_credential" or expected is None:
            return JSONResponse({"errcode": 40013, "errmsg": "invalid appid"})
        if not hmac.compare_digest(secret.encode(), expected.encode()):
            return JSONResponse({"errcode": 40125, "errmsg": "invalid appsecret"})
        now = clock()
        if reuse:
            for issued, (owner, expires) in tokens.items():
                if owner == appid and now < expires:
                    return JSONResponse({"access_token": issued, "expires_in": int(expires - now)})
        issued = secrets.token_urlsafe(32)
        tokens[issued] = (appid, now + TOKEN_SECONDS)
        return JSONResponse({"access_token": issued, "expires_in": TOKEN_SECONDS})

    async def token(request: Request) -> Response:
        query = request.query_params
        return issue(query.get("appid", ""), query.get("secret", ""), query.get("grant_type"),
                     reuse=False)  # fmt: skip

    async def stable_token(request: Request) -> Response:
        """POST cgi-bin/stable_token: the secret in the body; the same token while it is valid,
        a new one with ``force_refresh``."""
        try:
            data = json.loads(await request.body())
            if not isinstance(data, dict):
                raise ValueError
        except ValueError:
            return JSONResponse({"errcode": 47001, "errmsg": "data format error"})
        appid, secret = data.get("appid"), data.get("secret")
        if not isinstance(appid, str) or not isinstance(secret, str):
            return JSONResponse({"errcode": 40097, "errmsg": "invalid args: appid, secret"})
        reuse = data.get("force_refresh") is not True
        return issue(appid, secret, data.get("grant_type"), reuse=reuse)

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
        data = {**request.query_params, **data}
        data.pop("access_token", None)
        name = request.path_params["name"]
        key = f"wechat:{uuid.uuid4().hex}"
        try:
            result = await run_in_threadpool(handle, appid, name, data, key)
        except _Refused as refused:
            return JSONResponse({"errcode": refused.errcode, "errmsg": str(refused)})
        except PlatformError as error:
            code = ERRCODES.get(error.code, 85020)
            return JSONResponse({"errcode": code, "errmsg": f"{error.code}: {error.message}"})
        except Exception:  # a bug: the outcome of a mutation is unknown
            return JSONResponse({"errcode": -1, "errmsg": "system error"})
        if isinstance(result, bytes):
            return Response(result, media_type="image/png")
        return JSONResponse({"errcode": 0, "errmsg": "ok", **result})

    return Starlette(routes=[
        Route("/cgi-bin/token", token, methods=["GET"]),
        Route("/cgi-bin/stable_token", stable_token, methods=["POST"]),
        Route("/wxa/{name}", wxa, methods=["GET", "POST"]),
    ])  # fmt: skip
