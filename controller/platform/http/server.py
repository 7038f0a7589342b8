"""Serve any ``Platform`` over the HTTP contract (``schemas/platform-openapi.yaml``).

``relctl platform serve --db DB --listen 127.0.0.1:PORT`` serves the simulator with it, so
the controller (``--platform http://...``) and any third-party client can drive the same
platform over the network; a partner platform or an in-house gateway implements the same
contract. This module is the whole server side: routing, the bearer token, reading and checking
requests, and turning the adapter's values and typed errors into JSON. It decides nothing about
releases: every answer comes from the wrapped ``Platform``.

Requests are checked before the platform sees them (a wrong body is ``400 InvalidRequest``,
never a 500); the platform's calls run in a worker thread (the simulator is synchronous).

Callers: ``controller.cli_platform`` (``serve``) and tests.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from controller.platform.errors import NotFound, PlatformError, RateLimited, Unknown
from controller.platform.http.contract import (
    API_PREFIX,
    BAD_REQUEST,
    IDEMPOTENCY_HEADER,
    LIST_CHANGES_PATH,
    MAX_CURSOR,
    MAX_PAGE,
    STATUS_BY_CODE,
    UNAUTHORIZED,
    envelope,
)
from controller.platform.protocol import LIST_RELEASES_MAX, ListsReleases, Platform
from controller.platform.sim import codec

__all__ = ["BadRequest", "create_app"]

log = logging.getLogger("relctl.platform.serve")

#: Longest accepted identifier, idempotency key or string value (bytes are not the point:
#: an absurd value is a client bug, answered 400 before it reaches the platform).
_MAX_TEXT = 512


class BadRequest(Exception):
    """The request does not follow the contract (a client bug): answered 400."""


def _error_response(code: str, message: str, status: int | None = None) -> JSONResponse:
    body: dict[str, Any] = {"error": {"code": code, "message": message}}
    return JSONResponse(body, status_code=status or STATUS_BY_CODE.get(code, 500))


def _platform_error_response(error: PlatformError) -> JSONResponse:
    headers = {}
    if isinstance(error, RateLimited):
        headers["Retry-After"] = str(max(1, round(error.retry_after)))
    return JSONResponse(
        envelope(error), status_code=STATUS_BY_CODE.get(error.code, 500), headers=headers
    )


# --- reading requests ---------------------------------------------------------------------------


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value or len(value) > _MAX_TEXT:
        raise BadRequest(f"{name} must be a non-empty string of at most {_MAX_TEXT} characters")
    return value


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        raise BadRequest("the body is not JSON") from None
    if not isinstance(data, dict):
        raise BadRequest("the body must be a JSON object")
    return data


def _field(body: Mapping[str, Any], name: str) -> Any:
    if name not in body:
        raise BadRequest(f"the body needs {name!r}")
    return body[name]


def _idempotency_key(request: Request) -> str:
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is None:
        raise BadRequest(f"mutations need the {IDEMPOTENCY_HEADER} header")
    return _text(key, IDEMPOTENCY_HEADER)


def _string_map(value: Any, name: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise BadRequest(f"{name} must be an object of strings")
    return {str(k): v for k, v in value.items()}


def _object(value: Any, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadRequest(f"{name} must be an object")
    return value


def _string_list(value: Any, name: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadRequest(f"{name} must be an array of strings")
    return [_text(v, name) for v in value]


def _percent(value: Any) -> int:
    """An integer 0..100; ``35.0`` is one too (JSON has numbers, not integer types)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
        raise BadRequest("percent must be an integer from 0 to 100")
    return value


# --- the application ----------------------------------------------------------------------------

Handler = Callable[[Request], Awaitable[Any]]


def create_app(platform: Platform, *, token: str) -> Starlette:
    """The ASGI application serving ``platform``; every request needs ``Bearer <token>``."""
    if not token:
        raise ValueError("the HTTP platform server needs a bearer token")
    expected = f"Bearer {token}".encode()

    def route(path: str, method: str, handler: Handler, *, mutation: bool) -> Route:
        async def endpoint(request: Request) -> Response:
            given = request.headers.get("authorization", "").encode()
            if not hmac.compare_digest(given, expected):
                return _error_response(UNAUTHORIZED, "a valid bearer token is required")
            try:
                return JSONResponse(await handler(request), status_code=200)
            except BadRequest as error:
                return _error_response(BAD_REQUEST, str(error))
            except PlatformError as error:
                return _platform_error_response(error)
            except ValueError as error:  # the platform refused a malformed value
                return _error_response(BAD_REQUEST, str(error))
            except Exception:  # a bug: never a stack trace on the wire
                log.exception("%s %s failed", method, request.url.path)
                if mutation:  # it may have happened
                    return _platform_error_response(Unknown("internal error; re-query"))
                return _error_response(PlatformError.code, "internal error")

        return Route(API_PREFIX + path, endpoint, methods=[method])

    def call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Awaitable[Any]:
        return run_in_threadpool(fn, *args, **kwargs)

    # --- observation ------------------------------------------------------------------------
    async def get_version(request: Request) -> Any:
        mp = _text(request.path_params["mini_program"], "mini_program")
        version = _text(request.path_params["version"], "version")
        info = await call(platform.get_version, mp, version)
        if info is None:
            raise NotFound(f"version {version} of {mp} has not been uploaded")
        return codec.version_to_dict(info)

    async def get_release(request: Request) -> Any:
        release_id = _text(request.path_params["release_id"], "release_id")
        return codec.snapshot_to_dict(await call(platform.get_release, release_id))

    async def get_feedback(request: Request) -> Any:
        release_id = _text(request.path_params["release_id"], "release_id")
        return codec.feedback_to_dict(await call(platform.get_feedback, release_id))

    async def find_releases(request: Request) -> Any:
        query = request.query_params
        mp = _text(query.get("mini_program"), "mini_program")
        app = _text(query.get("target_app"), "target_app")
        limit_text = query.get("limit", str(MAX_PAGE))
        cursor_text = query.get("cursor", "0")
        if not limit_text.isascii() or not limit_text.isdigit() or int(limit_text) < 1:
            raise BadRequest(f"limit must be an integer from 1 to {MAX_PAGE}")
        if not cursor_text.isascii() or not cursor_text.isdigit() or len(cursor_text) > 9:
            raise BadRequest("cursor must be a value of next_cursor")
        limit, start = min(int(limit_text), MAX_PAGE), int(cursor_text)
        found = await call(platform.find_releases, mp, app)
        page = found[start : start + limit]
        following = start + limit
        return {
            "items": [codec.snapshot_to_dict(s) for s in page],
            "next_cursor": str(following) if following < len(found) else None,
        }

    async def list_releases(request: Request) -> Any:
        if not isinstance(platform, ListsReleases):
            raise BadRequest("this platform does not list changes: observe release by release")
        query = request.query_params
        limit_text = query.get("limit", str(LIST_RELEASES_MAX))
        if (
            not limit_text.isascii()
            or not limit_text.isdigit()
            or not 1 <= int(limit_text[:6]) <= LIST_RELEASES_MAX
        ):
            raise BadRequest(f"limit must be an integer from 1 to {LIST_RELEASES_MAX}")
        since = query.get("since")
        if since is not None and len(since) > MAX_CURSOR:
            raise BadRequest(f"since must be a cursor of at most {MAX_CURSOR} characters")
        changes = await call(platform.list_releases, since, limit=int(limit_text))
        return {
            "releases": [codec.snapshot_to_dict(s) for s in changes.releases],
            "cursor": changes.cursor,
            "more": changes.more,
        }

    # --- mutations --------------------------------------------------------------------------
    async def create_release(request: Request) -> Any:
        key = _idempotency_key(request)
        body = await _body(request)
        args = [
            _text(_field(body, name), name)
            for name in ("mini_program", "version", "target_app", "environment")
        ]
        snapshot = await call(platform.create_release, *args, idempotency_key=key)
        return codec.snapshot_to_dict(snapshot)

    def release_call(
        operation: str, read: Callable[[dict[str, Any]], tuple[Any, ...]] | None = None
    ) -> Handler:
        async def handler(request: Request) -> Any:
            release_id = _text(request.path_params["release_id"], "release_id")
            key = _idempotency_key(request)
            body = await _body(request)
            args = read(body) if read is not None else ()
            result = await call(getattr(platform, operation), release_id, *args,
                                idempotency_key=key)  # fmt: skip
            if operation == "set_testers":
                return codec.tester_change_to_dict(result)
            if operation == "create_qr_code":
                return codec.qr_to_dict(result)
            return codec.snapshot_to_dict(result)

        return handler

    release = "/releases/{release_id}"
    routes = [
        route("/mini-programs/{mini_program}/versions/{version}", "GET", get_version,
              mutation=False),
        route("/releases", "GET", find_releases, mutation=False),
        route(LIST_CHANGES_PATH, "GET", list_releases, mutation=False),
        route("/releases", "POST", create_release, mutation=True),
        route(release, "GET", get_release, mutation=False),
        route(f"{release}/feedback", "GET", get_feedback, mutation=False),
        route(f"{release}/basic-info", "POST", release_call(
            "update_basic_info",
            lambda b: (_string_map(_field(b, "basic_info"), "basic_info"),)), mutation=True),
        route(f"{release}/configuration", "POST", release_call(
            "update_configuration",
            lambda b: (_object(_field(b, "configuration"), "configuration"),)), mutation=True),
        route(f"{release}/compatibility-test", "POST",
              release_call("run_compatibility_test"), mutation=True),
        route(f"{release}/apply", "POST", release_call("apply"), mutation=True),
        route(f"{release}/withdraw", "POST", release_call("withdraw"), mutation=True),
        route(f"{release}/testers", "POST", release_call(
            "set_testers", lambda b: (_string_list(_field(b, "testers"), "testers"),)),
            mutation=True),
        route(f"{release}/complete-testing", "POST", release_call("complete_testing"),
              mutation=True),
        route(f"{release}/cancel", "POST", release_call("cancel"), mutation=True),
        route(f"{release}/grayscale", "POST", release_call(
            "set_grayscale", lambda b: (_percent(_field(b, "percent")),)), mutation=True),
        route(f"{release}/full-release", "POST", release_call("full_release"), mutation=True),
        route(f"{release}/qr-code", "POST", release_call("create_qr_code"), mutation=True),
    ]  # fmt: skip

    async def not_found(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 404)
        if status == 405:
            return _error_response(BAD_REQUEST, "method not allowed", 405)
        return _error_response(BAD_REQUEST, f"no such endpoint: {request.url.path}", 404)

    return Starlette(routes=routes, exception_handlers={404: not_found, 405: not_found})
