"""The board's HTML: Jinja2 templates (package data) rendered with autoescape on.

Every value from the repository (a release message, an author name, a mini program id) is
untrusted: templates only ever print it through Jinja2's escaping, and the one piece of markup
made here, the QR code, is an SVG that segno draws from the link (the link becomes modules
of the code, never text of the page). Links are relative (``base`` climbs back to the
board's root), so the same pages work served at ``/``, mounted under a prefix, or exported
as files for GitHub/GitLab Pages (``ext=".html"``).

Called by ``controller.board.app`` and ``controller.board.export``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final
from urllib.parse import quote, urlsplit

import jinja2
from markupsafe import Markup

from controller.board.data import Board, BoardRelease, board_json, release_json

__all__ = ["ASSETS", "asset", "index_html", "qr_svg", "release_html", "release_link"]

#: Files under ``static/`` the pages link to.
ASSETS: Final = ("board.css", "board.js")
#: A link longer than this gets no QR code (a code that large does not scan).
QR_LIMIT: Final = 1000

_env = jinja2.Environment(
    loader=jinja2.PackageLoader("controller.board", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def asset(name: str) -> bytes:
    """The bytes of a static file shipped with the package."""
    from importlib.resources import files

    return (files("controller.board") / "static" / name).read_bytes()


def release_link(base: str, ext: str, mini_program: str, target_app: str) -> str:
    """The relative link of a release's page (each id percent-encoded)."""
    return f"{base}releases/{quote(mini_program, safe='')}/{quote(target_app, safe='')}{ext}"


def qr_svg(url: str) -> Markup | None:
    """The QR code of ``url`` as inline SVG, or None when it is too long to scan."""
    import segno

    if len(url) > QR_LIMIT:
        return None
    try:
        code = segno.make(url, error="m")
    except (ValueError, segno.DataOverflowError):
        return None
    svg: str = code.svg_inline(scale=4, border=2)
    # Drawn by segno: the link is encoded as modules of the code, never copied as text.
    return Markup(svg.replace("<svg ", '<svg role="img" aria-label="QR code" ', 1))


def _web_link(url: str | None) -> str | None:
    """``url`` when it is an http(s) link (never ``javascript:`` or ``data:``), else None."""
    if url and urlsplit(url).scheme in ("http", "https"):
        return url
    return None


def _choices(board: Board) -> dict[str, list[str]]:
    statuses = [r.status for r in board.releases]
    return {
        "mp": sorted({s.mini_program for s in statuses}),
        "app": sorted({s.target_app for s in statuses}),
        "phase": sorted({str(s.phase) for s in statuses}),
    }


def _matches(item: BoardRelease, filters: Mapping[str, str]) -> bool:
    status = item.status
    return (
        filters.get("mp", "") in ("", status.mini_program)
        and filters.get("app", "") in ("", status.target_app)
        and filters.get("phase", "") in ("", str(status.phase))
    )


def index_html(
    board: Board,
    now: datetime,
    *,
    filters: Mapping[str, str],
    base: str = "",
    ext: str = "",
    api: str = "api/releases",
) -> str:
    """``/``: every release as a card, the filters, and the matrix mini programs x apps."""
    shown = [item for item in board.releases if _matches(item, filters)]
    rows = [release_json(item, now) for item in shown]
    for row in rows:
        row["link"] = release_link(base, ext, row["miniProgram"], row["targetApp"])
    matrix_mps = sorted({r["miniProgram"] for r in rows})
    matrix_apps = sorted({r["targetApp"] for r in rows})
    cells = {(r["miniProgram"], r["targetApp"]): r for r in rows}
    return _env.get_template("index.html").render(
        title="Releases",
        board=board_json(Board(board.revision, ()), now),
        rows=rows,
        total=len(board.releases),
        choices=_choices(board),
        filters={key: filters.get(key, "") for key in ("mp", "app", "phase")},
        matrix_mps=matrix_mps,
        matrix_apps=matrix_apps,
        cells=cells,
        base=base,
        ext=ext,
        api=f"{base}{api}",
    )


def release_html(
    board: Board,
    item: BoardRelease,
    now: datetime,
    *,
    base: str = "../../",
    ext: str = "",
    api: str = "api/releases",
    lookup: Mapping[str, Any] | None = None,
    lookup_error: str | None = None,
    user_id: str = "",
) -> str:
    """``/releases/<mp>/<app>``: steps, report, testers, history, commits, QR code, lookup."""
    data = release_json(item, now)
    qr = qr_svg(data["qrCode"]) if data["qrCode"] and data["phase"] == "Released" else None
    rollout = data["rollout"]
    rollout_items: Sequence[tuple[str, Any]] = (
        list(rollout.items()) if isinstance(rollout, Mapping) else []
    )
    return _env.get_template("release.html").render(
        title=f"{data['miniProgram']} on {data['targetApp']}",
        board=board_json(Board(board.revision, ()), now),
        r=data,
        qr=qr,
        qr_href=_web_link(data["qrCode"]),
        rollout_items=rollout_items,
        lookup=lookup,
        lookup_error=lookup_error,
        user_id=user_id,
        base=base,
        ext=ext,
        api=f"{base}{api}",
        static=ext == ".html",
    )
