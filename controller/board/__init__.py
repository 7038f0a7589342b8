"""The release board: every release's progress, steps, history and QR code, in a browser.

Read-only and built from the status files in git, so it can never disagree with the
repository. ``data`` reads a revision (statuses and intent commits) into a ``Board``;
``pages`` renders it with Jinja2 (autoescaped templates and a small stylesheet shipped as
package data, no CDN, no build step); ``app`` serves it as a Starlette app (mounted at ``/``
by the daemon's HTTP server, or served alone by ``relctl board --listen``); ``export`` writes
the same pages as static files (``relctl board --out``) for GitHub/GitLab Pages.
Documented in ``docs/board.md``.
"""

from __future__ import annotations

from controller.board.app import board_app
from controller.board.data import Board, load_board, repository_source
from controller.board.export import export_board

__all__ = ["Board", "board_app", "export_board", "load_board", "repository_source"]
