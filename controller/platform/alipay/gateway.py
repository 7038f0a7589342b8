"""A gateway that serves a ``Platform`` the way the Alipay Open Platform serves its mini-program
release API (``POST /gateway.do``, ``alipay.open.mini.version.*``), RSA2-signed both ways.

``relctl platform serve --dialect alipay`` runs it over the simulator, so that the vendor's own
client (``alipay-sdk-python``) checks our reading of the protocol, and relctl's Alipay adapter
can be driven through full lifecycles without an Alipay account.

The mini program is the request's ``app_id``; every release goes to one target app (``alipay``
by default). Requests with a bad signature are refused (40002 ``isv.invalid-signature``);
every answer is signed with the gateway's key. Alipay has no idempotency keys, and neither
does the gateway: every request is a new call (a client re-queries before repeating one that
answered 20000).

Stages as ``version_status`` (``STATUS``): Alipay's own values. A version being built or whose
build failed is ``INIT`` (in development); its build is told by ``version.build.query``
(``create_status``, ``BUILD_STATUS``). Pilot testing is ``WAIT_RELEASE`` with an experience
version (``experience.query``: ``expVersionPackaged``). A canceled version is ``OFFLINE``
without ``gmt_online``: Alipay sends a canceled version back to development (``INIT``), but
the simulator's cancel is final, and a gateway that showed ``INIT`` would offer an
application the simulator refuses; an archived version is ``OFFLINE`` with ``gmt_online``.

What Alipay keeps per app and the simulator per release: the experiencers
(``app.members.*``, role ``EXPERIENCER``) are the testers of the release in pilot testing;
the base info (``mini.baseinfo.modify``: ``app_name``, ``app_slogan``, ``app_desc``) is the
basic info of the release in flight. ``experience.cancel`` completes pilot testing.

Callers: ``controller.cli_platform`` (``serve --dialect alipay``) and tests.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode

from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from controller.platform.alipay import wire
from controller.platform.alipay.wire import (
    BASE_INFO,
    EXPERIENCE_PACKAGED,
    EXPERIENCER,
    GRAY_STRATEGIES,
    NOT_EXPERIENCE,
    alipay_time,
)
from controller.platform.errors import InvalidState, NotFound, PlatformError, Unknown
from controller.platform.protocol import Platform, ReleaseSnapshot, configuration_digest
from controller.platform.rules import IN_FLIGHT_STAGES, Stage

__all__ = ["BUILD_CREATED", "BUILD_STATUS", "STATUS", "create_gateway"]

STATUS: dict[Stage, str] = {
    Stage.BUILDING: "INIT",
    Stage.BUILD_FAILED: "INIT",
    Stage.NEW_VERSION_CREATED: "INIT",
    Stage.UNDER_REVIEW: "AUDITING",
    Stage.REJECTED: "AUDIT_REJECT",
    Stage.PILOT_TESTING: "WAIT_RELEASE",
    Stage.RELEASE_PREPARATION: "WAIT_RELEASE",
    Stage.GRAYSCALE: "GRAY",
    Stage.FULL_RELEASE: "RELEASE",
    Stage.CANCELED: "OFFLINE",
    Stage.ARCHIVED: "OFFLINE",
}

#: ``version.build.query``'s ``create_status`` (relctl's reading of Alipay's reference):
#: 1 building, 3 build failed, 6 version created.
BUILD_STATUS: dict[Stage, str] = {Stage.BUILDING: "1", Stage.BUILD_FAILED: "3"}
BUILD_CREATED = "6"

_CHARSET = "utf-8"

#: The common parameters of every request (the rest belong to the API).
_COMMON = frozenset(
    {"app_id", "method", "format", "charset", "sign_type", "sign", "timestamp", "version",
     "notify_url", "return_url", "encrypt_type", "app_auth_token", "auth_token", "biz_content"}
)  # fmt: skip


class _Refused(Exception):
    """A request the gateway refuses before the platform sees it (40002)."""

    def __init__(self, sub_code: str, sub_msg: str) -> None:
        super().__init__(sub_msg)
        self.result = {"code": "40002", "msg": "Invalid Arguments", "sub_code": sub_code,
                       "sub_msg": sub_msg}  # fmt: skip


def create_gateway(
    platform: Platform,
    *,
    app_public_key: rsa.RSAPublicKey,
    gateway_private_key: rsa.RSAPrivateKey,
    target_app: str = "alipay",
    environment: str = "production",
) -> Starlette:
    """The ASGI application of the gateway over ``platform``."""

    def release_of(mini_program: str, biz: Mapping[str, Any]) -> ReleaseSnapshot:
        version = biz.get("app_version")
        if not isinstance(version, str) or not version:
            raise _Refused("isv.missing-app-version", "biz_content needs app_version")
        for snapshot in reversed(platform.find_releases(mini_program, target_app)):
            if snapshot.version == version:
                return snapshot
        raise NotFound(f"version {version} of {mini_program} does not exist on {target_app}")

    def describe(snapshot: ReleaseSnapshot) -> dict[str, Any]:
        info: dict[str, Any] = {
            "app_version": snapshot.version,
            "status": STATUS[snapshot.stage],
            "version_desc": snapshot.basic_info.get("description", ""),
            "gmt_create": alipay_time(snapshot.created_at),
        }
        for field, key in BASE_INFO.items():
            if snapshot.basic_info.get(key):
                info[field] = snapshot.basic_info[key]
        times = snapshot.stage_times
        if Stage.UNDER_REVIEW in times:
            info["gmt_apply_audit"] = alipay_time(times[Stage.UNDER_REVIEW])
        if snapshot.review is not None:
            info["gmt_audit_end"] = alipay_time(snapshot.review.decided_at)
        if Stage.FULL_RELEASE in times:
            info["gmt_online"] = alipay_time(times[Stage.FULL_RELEASE])
        for final in (Stage.CANCELED, Stage.ARCHIVED):
            if snapshot.stage is final:
                info["gmt_offline"] = alipay_time(times.get(final, snapshot.updated_at))
        if snapshot.stage is Stage.GRAYSCALE:
            info["gray_strategy"] = f"p{snapshot.grayscale}"
        if snapshot.review is not None and snapshot.stage is Stage.REJECTED:
            info["reject_reason"] = snapshot.review.reason
        return info

    def in_flight(mini_program: str) -> ReleaseSnapshot:
        """The release of ``mini_program`` in flight: what Alipay's per-app calls act on."""
        for snapshot in reversed(platform.find_releases(mini_program, target_app)):
            if snapshot.stage in IN_FLIGHT_STAGES:
                return snapshot
        raise InvalidState(f"{mini_program} has no version in development on {target_app}")

    def members(mini_program: str) -> list[str]:
        found = platform.find_releases(mini_program, target_app)
        piloted = [s for s in found if s.stage is Stage.PILOT_TESTING]
        return list(piloted[-1].testers) if piloted else []

    def member_of(biz: Mapping[str, Any], field: str) -> str:
        if biz.get("role") != EXPERIENCER:
            raise _Refused("isv.invalid-role", f"role must be {EXPERIENCER}")
        value = biz.get(field)
        if not isinstance(value, str) or not value:
            raise _Refused(f"isv.missing-{field.replace('_', '-')}", f"biz_content needs {field}")
        return value

    def set_members(mini_program: str, key: str, change: Callable[[list[str]], list[str]]) -> None:
        piloted = [s for s in platform.find_releases(mini_program, target_app)
                   if s.stage is Stage.PILOT_TESTING]  # fmt: skip
        if not piloted:
            raise InvalidState(f"{mini_program} has no experience version on {target_app}")
        release = piloted[-1]
        platform.set_testers(release.release_id, change(list(release.testers)),
                             idempotency_key=key)  # fmt: skip

    def update_base_info(snapshot: ReleaseSnapshot, biz: Mapping[str, Any], key: str) -> None:
        info = dict(snapshot.basic_info)
        for field, name in BASE_INFO.items():
            value = biz.get(field)
            if isinstance(value, str):
                info[name] = value
        info = {k: v for k, v in info.items() if v}
        if info != dict(snapshot.basic_info):
            platform.update_basic_info(snapshot.release_id, info, idempotency_key=key)

    def experience_url(snapshot: ReleaseSnapshot) -> str:
        query = urlencode({"appId": snapshot.mini_program, "version": snapshot.version,
                           "experience": "true"})  # fmt: skip
        return f"alipays://platformapi/startapp?{query}"

    def handle(mp: str, method: str, biz: dict[str, Any], key: str) -> dict[str, Any]:
        short = method.removeprefix("alipay.open.")
        if short == "mini.version.upload":
            version = biz.get("app_version")
            if not isinstance(version, str) or not version:
                raise _Refused("isv.missing-app-version", "biz_content needs app_version")
            snapshot = platform.create_release(mp, version, target_app, environment,
                                               idempotency_key=key)  # fmt: skip
            return {"build_status": STATUS[snapshot.stage]}
        if short == "mini.version.list.query":
            found = platform.find_releases(mp, target_app)
            return {
                "app_versions": [s.version for s in found],
                "app_version_infos": [
                    {"app_version": s.version, "version_status": STATUS[s.stage]} for s in found
                ],
            }
        if short == "app.qrcode.create":
            released = [s for s in platform.find_releases(mp, target_app)
                        if s.stage in (Stage.GRAYSCALE, Stage.FULL_RELEASE)]  # fmt: skip
            if not released:
                raise InvalidState(f"{mp} has no released version on {target_app}")
            qr = platform.create_qr_code(released[-1].release_id, idempotency_key=key)
            return {"qr_code_url": qr.url}
        if short == "mini.baseinfo.modify":
            update_base_info(in_flight(mp), biz, key)
            return {}
        if short == "app.members.query":
            if biz.get("role") != EXPERIENCER:
                raise _Refused("isv.invalid-role", f"role must be {EXPERIENCER}")
            return {"app_member_info_list": [
                {"user_id": m, "logon_id": m, "role": EXPERIENCER, "status": "VALID"}
                for m in members(mp)
            ]}  # fmt: skip
        if short == "app.members.create":
            logon_id = member_of(biz, "logon_id")
            set_members(
                mp, key, lambda current: current if logon_id in current else [*current, logon_id]
            )
            return {}
        if short == "app.members.delete":
            user_id = member_of(biz, "user_id")
            if user_id not in members(mp):
                raise NotFound(f"{user_id} is not an experiencer of {mp}")
            set_members(mp, key, lambda current: [m for m in current if m != user_id])
            return {}
        snapshot = release_of(mp, biz)
        rid = snapshot.release_id
        if short == "mini.version.detail.query":
            return describe(snapshot)
        if short == "mini.version.build.query":
            status = BUILD_STATUS.get(snapshot.stage, BUILD_CREATED)
            return {"create_status": status, "build_status": status, "need_rotation": "false",
                    "version_created": str(status == BUILD_CREATED).lower()}  # fmt: skip
        if short == "mini.experience.query":
            if snapshot.stage is not Stage.PILOT_TESTING:
                return {"status": NOT_EXPERIENCE}
            return {"status": EXPERIENCE_PACKAGED, "exp_qr_code_url": experience_url(snapshot)}
        if short == "mini.experience.create":
            if snapshot.stage is not Stage.PILOT_TESTING:
                raise InvalidState(
                    f"{mp} {snapshot.version} is {snapshot.stage}: on {target_app} an experience "
                    "version exists only while the platform runs pilot testing after approval"
                )
            return {}
        if short == "mini.experience.cancel":
            platform.complete_testing(rid, idempotency_key=key)
            return {}
        if short == "mini.version.audit.apply":
            if isinstance(biz.get("version_desc"), str) and biz["version_desc"]:
                biz.setdefault("app_desc", biz["version_desc"])
            update_base_info(snapshot, biz, f"{key}:info")
            # Alipay has no compatibility test; the simulator wants a current report. A test
            # still running is waited for (the application is refused until it finishes).
            current = platform.get_release(rid)
            report = current.compatibility
            digest = configuration_digest(current.configuration)
            if report is None or (
                report.finished_at is not None and report.configuration_digest != digest
            ):
                platform.run_compatibility_test(rid, idempotency_key=f"{key}:test")
            return describe(platform.apply(rid, idempotency_key=key))
        if short == "mini.version.audit.cancel":
            return describe(platform.withdraw(rid, idempotency_key=key))
        if short in ("mini.version.audited.cancel", "mini.version.gray.cancel"):
            return describe(platform.cancel(rid, idempotency_key=key))
        if short == "mini.version.gray.online":
            strategy = biz.get("gray_strategy")
            if strategy not in GRAY_STRATEGIES:
                allowed = ", ".join(GRAY_STRATEGIES)
                raise _Refused("isv.invalid-gray-strategy", f"gray_strategy must be {allowed}")
            percent = GRAY_STRATEGIES[str(strategy)]
            return describe(platform.set_grayscale(rid, percent, idempotency_key=key))
        if short == "mini.version.online":
            return describe(platform.full_release(rid, idempotency_key=key))
        raise _Refused("isv.invalid-method", f"method {method} is not served by this gateway")

    def answer(method: str, result: Mapping[str, Any]) -> Response:
        body = wire.signed_response(gateway_private_key, method or "error", result)
        return Response(body, media_type=f"text/html;charset={_CHARSET}")

    async def gateway(request: Request) -> Response:
        params = dict(parse_qsl(request.url.query, keep_blank_values=True))
        raw = (await request.body()).decode(params.get("charset") or _CHARSET, "replace")
        params.update(parse_qsl(raw, keep_blank_values=True))
        method = params.get("method", "")
        signature = params.get("sign", "")
        content = wire.sign_content(params).encode(_CHARSET)
        if params.get("sign_type") != "RSA2" or not wire.verify(app_public_key, content,
                                                                 signature):  # fmt: skip
            refused = _Refused("isv.invalid-signature", "the request's RSA2 signature is invalid")
            return answer(method, refused.result)
        mini_program = params.get("app_id", "")
        try:
            biz = json.loads(params.get("biz_content") or "{}")
            if not isinstance(biz, dict):
                raise ValueError
        except ValueError:
            return answer(method, _Refused("isv.invalid-biz-content", "not JSON").result)
        # some APIs (audit.apply) send their fields as top-level parameters
        biz.update({k: v for k, v in params.items() if k not in _COMMON})
        key = f"alipay:{uuid.uuid4().hex}"  # Alipay has no idempotency: every request is new
        call: Callable[[], dict[str, Any]] = lambda: handle(mini_program, method, biz, key)  # noqa: E731
        try:
            result = {**wire.SUCCESS, **await run_in_threadpool(call)}
        except _Refused as refused:
            result = refused.result
        except PlatformError as error:
            result = wire.error_result(error)
        except Exception:  # a bug: the outcome of a mutation is unknown
            result = wire.error_result(Unknown("internal error; query the version"))
        return answer(method, result)

    return Starlette(routes=[Route("/gateway.do", gateway, methods=["POST"])])
