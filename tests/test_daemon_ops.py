"""The daemon under webhooks: a burst of pushes coalesces into at most one more pass, passes
never overlap; log lines in JSON with the pass's fields and no secrets.

``run_forever`` runs in the test's main thread (it installs the SIGTERM handler); a helper
thread sends the webhooks through the real uvicorn server and then SIGTERMs the process.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import logging
import os
import signal
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from controller_world import make_world, manifest
from gitutil import isolate_git
from notifyutil import free_port

from controller.daemon import DaemonOptions, run_forever
from controller.logs import JsonFormatter, TextFormatter
from controller.metrics import Metrics
from controller.server import WebhookSettings

SECRET = "burst-secret"


@pytest.fixture(autouse=True)
def _git(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_git(monkeypatch, tmp_path / "home")


def push_webhook(url: str) -> int:
    body = json.dumps({"ref": "refs/heads/main"}).encode()
    signature = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    request = urllib.request.Request(
        url, data=body, method="POST",
        headers={"X-Hub-Signature-256": f"sha256={signature}", "Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=30) as response:
        return int(response.status)


def test_a_burst_of_webhooks_runs_at_most_one_more_pass_and_never_two_at_once(
    tmp_path: Path,
) -> None:
    with make_world(tmp_path, {"releases/shop/gcash.yaml": manifest()}) as world:
        world.simulator.faults(latency=0.02)  # passes take a moment: webhooks land inside
        controller = world.controller
        controller.metrics = Metrics()
        running = 0
        overlap: list[int] = []
        original = controller._pass

        def watched(raise_errors: bool) -> object:
            nonlocal running
            running += 1
            overlap.append(running)
            try:
                return original(raise_errors)
            finally:
                running -= 1

        controller._pass = watched  # type: ignore[method-assign,assignment]
        port = free_port()
        counts: dict[str, int] = {}
        errors: list[BaseException] = []

        def drive() -> None:
            try:
                deadline = time.monotonic() + 120
                while controller.passes < 1 or controller.busy.is_set():
                    assert time.monotonic() < deadline
                    time.sleep(0.02)
                counts["before"] = controller.passes
                senders = [
                    threading.Thread(
                        target=push_webhook, args=(f"http://127.0.0.1:{port}/hooks/git",)
                    )
                    for _ in range(25)
                ]
                for sender in senders:
                    sender.start()
                for sender in senders:
                    sender.join()
                # wait until the requests were served and nothing is queued or running
                while (
                    controller.passes == counts["before"]
                    or controller.requested.is_set()
                    or controller.busy.is_set()
                ):
                    assert time.monotonic() < deadline
                    time.sleep(0.05)
                time.sleep(1.0)  # room for a wrongly queued extra pass to show up
                counts["after"] = controller.passes
            except BaseException as error:
                errors.append(error)
            finally:
                os.kill(os.getpid(), signal.SIGTERM)

        helper = threading.Thread(target=drive)
        helper.start()
        code = run_forever(
            controller,
            DaemonOptions(interval=3600, jitter=0),
            listen=("127.0.0.1", port),
            webhook=WebhookSettings(SECRET),
        )
        helper.join()
        assert not errors, errors
        assert code == 0
        assert max(overlap) == 1
        extra = counts["after"] - counts["before"]
        assert 1 <= extra <= 2, counts


def test_json_log_lines_carry_the_event_fields_and_mask_secrets() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter(secrets=["hunter22"]))
    logger = logging.getLogger("relctl.test.json")
    logger.addHandler(handler)
    logger.propagate = False
    logger.warning(
        "cannot fetch https://bot:ghp_abc123@git.example.com/r.git with hunter22",
        extra={"event": {"release": "shop/gcash", "version": "1.4.0", "phase": "InReview",
                         "action": "apply", "duration": 0.25, "commit": "a" * 40}},
    )  # fmt: skip
    line = json.loads(stream.getvalue())
    assert line["release"] == "shop/gcash" and line["duration"] == 0.25
    assert line["commit"] == "a" * 40 and line["level"] == "warning"
    assert "ghp_abc123" not in line["message"] and "hunter22" not in line["message"]
    assert "https://***@git.example.com" in line["message"]
    text = TextFormatter(secrets=["hunter22"])
    record = logging.LogRecord("relctl", logging.INFO, __file__, 1, "sent hunter22", None, None)
    record.event = {"release": "shop/gcash", "phase": "Released"}
    assert text.format(record).endswith("sent *** release=shop/gcash phase=Released")
