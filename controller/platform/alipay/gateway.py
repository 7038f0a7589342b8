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

Stages as ``version_status`` (``STATUS``): Alipay's own values, except ``BUILDING`` and
``BUILD_FAIL`` (Alipay reports builds through ``version.build.query``); a canceled version is
``INIT`` again, as on Alipay (sent back to development).

Callers: ``controller.cli_platform`` (``serve --dialect alipay``) and tests.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl

from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from controller.platform.alipay import wire
from controller.platform.errors import InvalidState, NotFound, PlatformError, Unknown
from controller.platform.protocol import Platform, ReleaseSnapshot
from controller.platform.rules import Stage

__all__ = ["GRAY_STRATEGIES", "STATUS", "create_gateway"]

STATUS: dict[Stage, str] = {
    Stage.BUILDING: "BUILDING",
    Stage.BUILD_FAILED: "BUILD_FAIL",
    Stage.NEW_VERSION_CREATED: "INIT",
    Stage.UNDER_REVIEW: "AUDITING",
    Stage.REJECTED: "AUDIT_REJECT",
    Stage.PILOT_TESTING: "WAIT_RELEASE",
    Stage.RELEASE_PREPARATION: "WAIT_RELEASE",
    Stage.GRAYSCALE: "GRAY",
    Stage.FULL_RELEASE: "RELEASE",
    Stage.CANCELED: "INIT",
    Stage.ARCHIVED: "OFFLINE",
}

#: ``version.gray.online``'s ``gray_strategy`` -> percentage.
GRAY_STRATEGIES = {"p10": 10, "p30": 30, "p50": 50}

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
        }
        if snapshot.stage is Stage.GRAYSCALE:
            info["gray_strategy"] = f"p{snapshot.grayscale}"
        if snapshot.review is not None and snapshot.stage is Stage.REJECTED:
            info["reject_reason"] = snapshot.review.reason
        return info

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
        snapshot = release_of(mp, biz)
        rid = snapshot.release_id
        if short == "mini.version.detail.query":
            return describe(snapshot)
        if short == "mini.version.audit.apply":
            if isinstance(biz.get("version_desc"), str):
                info = {**snapshot.basic_info, "description": biz["version_desc"]}
                platform.update_basic_info(rid, info, idempotency_key=f"{key}:info")
            report = platform.get_release(rid).compatibility
            if report is None or report.finished_at is None:
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
