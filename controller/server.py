"""The daemon's one HTTP server: probes, metrics and the git push webhook (Starlette + uvicorn).

:func:`build_app` makes the ASGI app; :class:`HttpServer` runs it with uvicorn on a thread of
``relctl run --listen HOST:PORT`` (off by default, loopback unless told otherwise).

- ``GET /healthz``: the process and its scheduler are alive (``Probes.health``).
- ``GET /readyz``: the controller can do its job (``Probes.ready``: workdir open, last fetch
  recent, platform answering); a standby replica is ready too.
- ``GET /metrics``: Prometheus text format (``controller.metrics``).
- ``POST /hooks/git``: a push webhook from GitHub (``X-Hub-Signature-256: sha256=<hmac>``),
  Gitea/Forgejo (``X-Gitea-Signature: <hmac>``) or GitLab (``X-Gitlab-Token: <secret>``),
  verified against the secret from the environment with a constant-time compare (401 when it
  does not match), the body limited to ``max_body`` bytes (413). A verified push asks for a
  pass (``trigger``): it never runs one itself, so any number of webhooks cause at most one
  pass in progress and one queued (``controller.daemon``).

Everything else, ``/`` included, belongs to the release board: ``build_app(board=...)`` mounts
it at ``/`` after the routes above.

Called by ``controller.daemon``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp

from controller.metrics import CONTENT_TYPE_LATEST, Metrics

__all__ = [
    "DEFAULT_MAX_BODY",
    "HttpServer",
    "Probes",
    "WebhookSettings",
    "build_app",
    "parse_listen",
    "verify_signature",
]

log = logging.getLogger("relctl")

#: GitHub caps push payloads at 25 MB, but a push to a release repository is small.
DEFAULT_MAX_BODY = 1024 * 1024


class Probes(Protocol):
    """What the probes ask the daemon: (ok, one line saying why)."""

    def health(self) -> tuple[bool, str]: ...

    def ready(self) -> tuple[bool, str]: ...


@dataclass(frozen=True)
class WebhookSettings:
    """The push webhook: its secret (None: the endpoint refuses everything) and branch."""

    secret: str | None
    branch: str = "main"
    max_body: int = DEFAULT_MAX_BODY


class _BodyTooLarge(Exception):
    pass


def verify_signature(headers: dict[str, str], body: bytes, secret: str) -> str | None:
    """The forge whose signature header matches ``secret`` over ``body``, else None.

    ``headers`` have lower-case names. Every comparison is constant-time.
    """
    key = secret.encode()
    digest = hmac.new(key, body, hashlib.sha256).hexdigest()
    github = headers.get("x-hub-signature-256")
    if github is not None:
        return (
            "github" if hmac.compare_digest(github.encode(), f"sha256={digest}".encode()) else None
        )
    gitea = headers.get("x-gitea-signature") or headers.get("x-forgejo-signature")
    if gitea is not None:
        return "gitea" if hmac.compare_digest(gitea.encode(), digest.encode()) else None
    gitlab = headers.get("x-gitlab-token")
    if gitlab is not None:
        return "gitlab" if hmac.compare_digest(gitlab.encode(), key) else None
    return None


async def _read_limited(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _pushed_ref(body: bytes) -> str | None:
    """The ``ref`` of a push payload (all three forges name it so), or None."""
    try:
        payload = json.loads(body)
    except ValueError:
        return None
    ref = payload.get("ref") if isinstance(payload, dict) else None
    return ref if isinstance(ref, str) else None


def build_app(
    metrics: Metrics,
    probes: Probes,
    trigger: Callable[[], None],
    webhook: WebhookSettings,
    *,
    board: ASGIApp | None = None,
) -> Starlette:
    """The daemon's ASGI app; ``board`` (the release board) is mounted at ``/``."""

    async def healthz(_request: Request) -> Response:
        ok, why = probes.health()
        return PlainTextResponse(f"{why}\n", status_code=200 if ok else 503)

    async def readyz(_request: Request) -> Response:
        ok, why = probes.ready()
        return PlainTextResponse(f"{why}\n", status_code=200 if ok else 503)

    async def metrics_endpoint(_request: Request) -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    async def git_hook(request: Request) -> Response:
        if not webhook.secret:
            return JSONResponse(
                {"error": "the webhook is disabled: set RELCTL_WEBHOOK_SECRET"}, status_code=403
            )
        try:
            body = await _read_limited(request, webhook.max_body)
        except _BodyTooLarge:
            return JSONResponse(
                {"error": f"body larger than {webhook.max_body} bytes"}, status_code=413
            )
        headers = {k.lower(): v for k, v in request.headers.items()}
        forge = verify_signature(headers, body, webhook.secret)
        if forge is None:
            log.warning("webhook refused: missing or bad signature from %s", _client(request))
            return JSONResponse({"error": "bad or missing signature"}, status_code=401)
        ref = _pushed_ref(body)
        if ref is not None and ref != f"refs/heads/{webhook.branch}":
            return JSONResponse({"triggered": False, "reason": f"not {webhook.branch}"}, 202)
        trigger()
        log.info(
            "webhook from %s: a pass is requested", forge, extra={"event": {"action": "webhook"}}
        )
        return JSONResponse({"triggered": True, "forge": forge}, status_code=202)

    routes: list[BaseRoute] = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
        Route("/hooks/git", git_hook, methods=["POST"]),
    ]
    if board is not None:
        routes.append(Mount("/", app=board))
    return Starlette(routes=routes)


def _client(request: Request) -> str:
    return request.client.host if request.client is not None else "an unknown client"


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8080`` for IPv6; a bare port means 127.0.0.1)."""
    host, sep, port = value.rpartition(":")
    if not sep:
        host, port = "127.0.0.1", value
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"not HOST:PORT: {value!r}")
    return host, int(port)


class HttpServer:
    """uvicorn serving ``app`` on a thread; :meth:`start` binds first, so a taken port fails
    at once in the caller. :attr:`alive` tells a supervisor whether the thread still serves."""

    def __init__(self, app: ASGIApp, host: str, port: int) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._socket = socket.socket(family, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted connections inherit it: without it, Nagle's algorithm meets the client's
        # delayed ACK and every answer waits ~40 ms (uvicorn leaves a socket it is given as is).
        self._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            self._socket.bind((host, port))
        except OSError as exc:
            self._socket.close()
            raise OSError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        self._socket.listen(128)
        self._socket.setblocking(False)
        self.host = host
        self.port = int(self._socket.getsockname()[1])
        config = uvicorn.Config(app, log_config=None, lifespan="off", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._serve, name="relctl-http", daemon=True)
        self.error: BaseException | None = None

    def _serve(self) -> None:
        try:
            asyncio.run(self._server.serve(sockets=[self._socket]))
        except BaseException as exc:  # recorded: the supervisor sees alive == False
            self.error = exc
            log.exception("the HTTP server stopped")

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def start(self) -> None:
        self._thread.start()
        while not self._server.started and self._thread.is_alive():
            self._thread.join(0.01)
        if not self._server.started:
            raise OSError(f"the HTTP server on {self.url} did not start: {self.error}")

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(10)
        self._socket.close()
