"""``relctl board --out DIR``: the board as static files for GitHub/GitLab Pages.

Writes ``index.html``, ``releases/<mp>/<app>.html``, ``api/releases.json`` (the same JSON as
``/api/releases``), and ``static/``; every link is relative, so the folder works at any
path of any static host. A release whose ids are not safe file names (they always are for
a status file the controller wrote; ``status_files`` skips odd names) is left out.
Filters and the "who gets which version" lookup run in the page's script there.

Called by ``controller.cli``.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from controller.board.data import Board, board_json
from controller.board.pages import ASSETS, asset, index_html, release_html
from controller.repofiles import check_path

__all__ = ["export_board"]


def export_board(board: Board, out: Path, now: datetime) -> list[Path]:
    """Write the board's static files under ``out`` (created); the files written."""
    written: list[Path] = []

    def write(relpath: str, data: bytes) -> None:
        target = out.joinpath(*relpath.split("/"))
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        written.append(target)

    api = "api/releases.json"
    write("index.html", index_html(board, now, filters={}, ext=".html", api=api).encode())
    for item in board.releases:
        status = item.status
        relpath = f"releases/{status.mini_program}/{status.target_app}.html"
        if check_path(relpath) is not None or relpath.count("/") != 2:
            continue
        page = release_html(board, item, now, base="../../", ext=".html", api=api)
        write(relpath, page.encode())
    write(api, (json.dumps(board_json(board, now), indent=2) + "\n").encode())
    for name in ASSETS:
        write(f"static/{name}", asset(name))
    return written
