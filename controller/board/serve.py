"""Serving the board with uvicorn on a socket bound first (so port 0 works and the address
printed is the real one). Loopback is the default: the board shows release intent, commit
authors and e-mail addresses, and is meant for the team, not the internet.

Called by ``controller.cli`` (``relctl board --listen``), ``controller.demo`` (``BOARD=1``)
and the end-to-end tests.
"""

from __future__ import annotations

import ipaddress
import signal
import socket
import threading
from dataclasses import dataclass
from types import FrameType

import uvicorn
from starlette.applications import Starlette

__all__ = ["BoardServer", "bind", "parse_listen"]


def parse_listen(listen: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) as (host, port); ValueError when malformed."""
    host, sep, port_text = listen.rpartition(":")
    if not sep or not host or not port_text.isascii() or not port_text.isdigit():
        raise ValueError(f"{listen!r} is not HOST:PORT (for example 127.0.0.1:8080)")
    port = int(port_text)
    if port > 65535:
        raise ValueError(f"port {port} is out of range 0..65535")
    return host.removeprefix("[").removesuffix("]"), port


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on (host, port); port 0 picks a free port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit it: without it every answer waits ~40 ms (Nagle meets the
    # client's delayed ACK; uvicorn leaves a socket it is given as is).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


@dataclass
class BoardServer:
    """uvicorn serving ``app`` on ``sock``; ``start()`` runs it in a thread, ``stop()`` ends it."""

    app: Starlette
    sock: socket.socket

    def __post_init__(self) -> None:
        config = uvicorn.Config(self.app, log_level="warning", access_log=False, lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}/"

    def run(self) -> None:
        """Serve in the main thread until Ctrl-C or SIGTERM, then exit 0.

        uvicorn finishes the requests in flight, then re-raises the signal it caught; the
        handlers set here turn that into a clean exit instead of death by signal.
        """

        def stop(signum: int, frame: FrameType | None) -> None:
            raise SystemExit(0)

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        self._server.run(sockets=[self.sock])

    def _serve(self) -> None:
        self._server.run(sockets=[self.sock])

    def start(self) -> None:
        self._thread = threading.Thread(target=self._serve, name="relctl-board", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.sock.close()
