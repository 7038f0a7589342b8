"""Real receivers on 127.0.0.1 for notification tests: an SMTP server (aiosmtpd) and an HTTP
server taking JSON posts (http.server), both recording what they were sent."""

from __future__ import annotations

import email
import json
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Mailbox:
    port: int
    messages: list[Message] = field(default_factory=list)
    #: Called with each message before the server answers 250 (a test may kill the sender).
    on_data: Callable[[Message], None] | None = None
    received: threading.Event = field(default_factory=threading.Event)

    def url(self, to: str = "team@example.com") -> str:
        return f"mailto://127.0.0.1:{self.port}?from=relctl@example.com&to={to}"

    def by_event(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for message in self.messages:
            key = str(message["X-Relctl-Event-Id"])
            counts[key] = counts.get(key, 0) + 1
        return counts


class _Handler:
    def __init__(self, box: Mailbox) -> None:
        self.box = box

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content)
        self.box.messages.append(message)
        self.box.received.set()
        if self.box.on_data is not None:
            self.box.on_data(message)
        return "250 OK"


@contextmanager
def smtp_server() -> Iterator[Mailbox]:
    box = Mailbox(free_port())
    controller = Controller(_Handler(box), hostname="127.0.0.1", port=box.port)
    controller.start()
    try:
        yield box
    finally:
        controller.stop()


@dataclass
class Inbox:
    port: int
    posts: list[tuple[dict[str, str], dict[str, Any]]] = field(default_factory=list)
    #: HTTP status to answer with (500 makes the sender retry).
    status: int = 200

    def url(self, path: str = "hook") -> str:
        return f"json://127.0.0.1:{self.port}/{path}"


@contextmanager
def http_receiver() -> Iterator[Inbox]:
    inbox = Inbox(0)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length) or b"{}")
            if inbox.status == 200:
                inbox.posts.append(({k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(inbox.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    inbox.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield inbox
    finally:
        server.shutdown()
        server.server_close()
