"""A real HTTP server on 127.0.0.1 for tests: uvicorn in a thread, on a free port.

Used by the HTTP contract tests and by ``controller_world`` (the controller's end-to-end
scenarios over HTTP). Only 127.0.0.1 is ever bound.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

TOKEN = "test-token-not-a-secret"


@contextmanager
def serve_app(app: Any, *, port: int = 0) -> Iterator[str]:
    """Serve the ASGI ``app`` on 127.0.0.1 until the block ends; yields its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit it: without it, Nagle's algorithm meets the client's
    # delayed ACK and every answer waits ~40 ms (uvicorn leaves a socket it is given as is).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", port))
    bound = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    for _ in range(500):  # wait for start-up (not a timed assertion: a bound on waiting)
        if server.started:
            break
        time.sleep(0.01)
    assert server.started, "the test server did not start"
    try:
        yield f"http://127.0.0.1:{bound}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
