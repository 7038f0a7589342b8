"""The board as an ASGI app: ``board_app(source)`` returns a Starlette application.

``source`` is a callable returning the :class:`~controller.board.data.Board` to show (for
example ``repository_source(repo)``: the statuses of the commit main points at). It is
called once per request, so a page is always one commit's state. Routes:

=============================== ==============================================================
``/``                           every release (cards, filters ``?mp=&app=&phase=``, matrix)
``/releases/{mp}/{app}``        one release; ``?user=ID`` answers "who gets which version"
``/api/releases``               the JSON of every release (``docs/board.md``)
``/api/releases/{mp}/{app}``    the JSON of one release; ``?user=ID`` adds ``lookup``
``/static/{name}``              the stylesheet and the refresh script (package data)
=============================== ==============================================================

Unknown releases are 404, a malformed user id 400, a source that fails 503 (the page says
so, with no traceback). The daemon's HTTP server mounts this app at ``/``; ``relctl board``
serves it alone with uvicorn. Called by ``controller.cli`` and ``controller.demo``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from controller.board.data import Board, bad_user_id, board_json, lookup_user, release_json
from controller.board.pages import ASSETS, asset, index_html, release_html

__all__ = ["board_app"]

log = logging.getLogger(__name__)

_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Everything is same-origin: no CDN, no inline script (the QR code is inline SVG).
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    ),
}
_TYPES = {"css": "text/css; charset=utf-8", "js": "text/javascript; charset=utf-8"}


def board_app(
    source: Callable[[], Board], *, clock: Callable[[], datetime] | None = None
) -> Starlette:
    """The board over ``source``; ``clock`` (UTC now) is for tests and the demo's simulator."""
    now = clock or (lambda: datetime.now(UTC))

    def load() -> Board:
        try:
            return source()
        except Exception as exc:
            log.warning("board: cannot read the repository: %s", exc)
            raise HTTPException(503, "the repository cannot be read right now") from exc

    async def index(request: Request) -> Response:
        board = load()
        filters = {k: request.query_params.get(k, "") for k in ("mp", "app", "phase")}
        return HTMLResponse(index_html(board, now(), filters=filters), headers=_HEADERS)

    async def release(request: Request) -> Response:
        board = load()
        item = board.find(request.path_params["mp"], request.path_params["app"])
        if item is None:
            raise HTTPException(404, "no such release")
        user_id = request.query_params.get("user")
        lookup, error, code = None, None, 200
        if user_id is not None:
            error = bad_user_id(user_id)
            if error is None:
                lookup = lookup_user(item.status, user_id)
            else:
                code = 400
        page = release_html(
            board, item, now(), lookup=lookup, lookup_error=error, user_id=user_id or ""
        )
        return HTMLResponse(page, status_code=code, headers=_HEADERS)

    async def api_releases(request: Request) -> Response:
        return JSONResponse(board_json(load(), now()), headers=_HEADERS)

    async def api_release(request: Request) -> Response:
        board = load()
        item = board.find(request.path_params["mp"], request.path_params["app"])
        if item is None:
            raise HTTPException(404, "no such release")
        data = release_json(item, now())
        user_id = request.query_params.get("user")
        if user_id is not None:
            error = bad_user_id(user_id)
            if error is not None:
                return JSONResponse({"error": error}, status_code=400, headers=_HEADERS)
            data["lookup"] = lookup_user(item.status, user_id)
        data["revision"] = board.revision
        return JSONResponse(data, headers=_HEADERS)

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in ASSETS:
            raise HTTPException(404, "no such file")
        kind = _TYPES[name.rsplit(".", 1)[-1]]
        headers = {**_HEADERS, "Cache-Control": "no-cache"}
        return Response(asset(name), media_type=kind, headers=headers)

    async def error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": exc.detail}, status_code=exc.status_code)
        return PlainTextResponse(f"{exc.status_code}: {exc.detail}\n", status_code=exc.status_code)

    routes = [
        Route("/", index),
        Route("/releases/{mp}/{app}", release),
        Route("/api/releases", api_releases),
        Route("/api/releases/{mp}/{app}", api_release),
        Route("/static/{name}", static),
    ]
    return Starlette(routes=routes, exception_handlers={HTTPException: error})
