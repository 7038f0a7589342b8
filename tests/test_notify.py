"""Notifications: events from real passes, delivered by apprise to a real SMTP server
(aiosmtpd) and a real HTTP receiver on 127.0.0.1; the outbox across crashes (SIGKILL).

Only the clocks are fake (the simulator's, and the notifier's for backoff).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from controller_world import CONFIG, World, make_world, manifest
from gitutil import isolate_git
from notifyutil import Mailbox, http_receiver, smtp_server

from controller.metrics import Metrics
from controller.model import Phase, Status
from controller.notify import (
    EventKind,
    NotificationEvent,
    Notifier,
    Outbox,
    Target,
    configured_targets,
    resolve_url,
)

# Real daemon processes open the simulator's file themselves: one transport is enough.
pytestmark = pytest.mark.inprocess_only


@pytest.fixture(autouse=True)
def _git(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_git(monkeypatch, tmp_path / "home")


def config_with(mail_url: str, hook_url: str) -> str:
    return CONFIG + (
        "notifications:\n"
        f'  - name: team-mail\n    url: "{mail_url}"\n'
        f'  - name: releases-hook\n    url: "{hook_url}"\n'
        "    events: [Released]\n    miniPrograms: [shop]\n"
    )


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def attach(
    world: World, clock: FakeClock | None = None, metrics: Metrics | None = None
) -> Notifier:
    notifier = Notifier(
        Outbox(world.workspace.workdir),
        lambda: configured_targets(world.controller.cache),
        metrics=metrics,
        clock=clock or FakeClock(),
    )
    world.controller.notifier = notifier
    return notifier


def released(statuses: dict[str, Status]) -> bool:
    return (
        statuses["shop/gcash"].phase is Phase.RELEASED
        and statuses["shop/gcash"].qr_code is not None
    )


def subjects(box: Mailbox) -> list[str]:
    return [str(m["Subject"]) for m in box.messages]


def test_a_release_is_announced_by_email_and_webhook_once_per_event(tmp_path: Path) -> None:
    with smtp_server() as box, http_receiver() as inbox:
        files = {
            "relctl.yaml": config_with(box.url(), inbox.url()),
            "releases/shop/gcash.yaml": manifest(complete=True, grayscale=100),
        }
        with make_world(tmp_path, files) as world:
            metrics = Metrics()
            notifier = attach(world, metrics=metrics)
            world.run_until(released)
            assert notifier.deliver_due() >= 4
            kinds = [s.rsplit(": ", 1)[1] for s in subjects(box)]
            assert set(kinds) >= {"Approved", "PilotStarted", "GrayscaleRaised", "Released"}
            assert len(kinds) == len(set(kinds)), kinds  # each event once
            # the webhook target wants only Released
            assert len(inbox.posts) == 1
            headers, body = inbox.posts[0]
            assert "Released" in body["title"] and "shop/gcash" in body["title"]
            assert headers["x-relctl-event-id"] in body["message"]
            # more passes and another delivery round send nothing again
            world.pass_once()
            world.pass_once()
            assert notifier.deliver_due() == 0
            assert len(box.messages) == len(kinds) and len(inbox.posts) == 1
            assert metrics.notifications_total.labels("delivered")._value.get() == len(kinds) + 1


def test_a_rejection_reaches_the_team_with_the_reviewers_reason(tmp_path: Path) -> None:
    with smtp_server() as box, http_receiver() as inbox:
        files = {
            "relctl.yaml": config_with(box.url(), inbox.url()),
            "releases/shop/gcash.yaml": manifest(grayscale=10),
        }
        with make_world(tmp_path, files) as world:
            notifier = attach(world)
            for _ in range(20):
                world.pass_once()
                under_review = [
                    r for r in world.simulator.releases() if r.stage.value == "UNDER_REVIEW"
                ]
                if under_review:
                    break
                world.simulator.advance(60)
            world.simulator.review(
                under_review[0].release_id,
                approve=False,
                reason="The privacy policy link is broken",
            )
            world.pass_once()
            notifier.deliver_due()
            rejected = [m for m in box.messages if "Rejected" in str(m["Subject"])]
            assert len(rejected) == 1
            text = rejected[0].get_payload(0).get_payload(decode=True).decode()
            assert "The privacy policy link is broken" in text


def event(n: int = 1) -> NotificationEvent:
    return NotificationEvent(
        EventKind.RELEASED, "shop/gcash", f"1.4.{n}", "Released", "shop 1.4 is released", "a" * 40
    )


def test_a_failed_delivery_is_retried_with_backoff(tmp_path: Path) -> None:
    with http_receiver() as inbox:
        clock = FakeClock()
        metrics = Metrics()
        notifier = Notifier(Outbox(tmp_path), lambda: (), metrics=metrics, clock=clock)
        notifier.outbox.add(event(), [Target("hook", inbox.url())], clock.now)
        inbox.status = 500
        assert notifier.deliver_due() == 0
        assert notifier.outbox.pending() == 1
        assert notifier.deliver_due() == 0  # not due yet: nothing is sent
        assert metrics.notifications_total.labels("failed")._value.get() == 1
        inbox.status = 200
        clock.now += notifier.backoff_base
        assert notifier.deliver_due() == 1
        assert notifier.outbox.pending() == 0 and len(inbox.posts) == 1


def test_secrets_come_from_relctl_notify_variables_only() -> None:
    env = {"RELCTL_NOTIFY_PASS": "p4ss", "RELCTL_GIT_TOKEN": "t0ken"}
    assert resolve_url("mailtos://u:${RELCTL_NOTIFY_PASS}@h", env) == "mailtos://u:p4ss@h"
    with pytest.raises(KeyError, match="only RELCTL_NOTIFY_"):
        resolve_url("json://evil.example/${RELCTL_GIT_TOKEN}", env)
    with pytest.raises(KeyError, match="not set"):
        resolve_url("json://h/${RELCTL_NOTIFY_OTHER}", env)


def test_a_dead_worker_is_restarted_and_counted(tmp_path: Path) -> None:
    metrics = Metrics()

    calls: list[str] = []

    def explode(*_args: str) -> str | None:
        calls.append("send")
        if len(calls) == 1:
            raise SystemExit("a plugin called exit()")
        return None

    notifier = Notifier(Outbox(tmp_path), lambda: (), metrics=metrics, send=explode, poll=0.05)
    notifier.outbox.add(event(), [Target("hook", "json://127.0.0.1:9/x")], notifier.clock())
    notifier.start()
    assert notifier._thread is not None
    notifier._thread.join(30)
    assert not notifier.alive
    notifier.supervise()
    assert metrics.worker_failures_total.labels("notifications")._value.get() >= 1
    # the restarted worker delivers what the dead one could not
    while notifier.outbox.pending():
        assert notifier.alive
        notifier._thread.join(0.05)
    assert notifier.alive and calls == ["send", "send"]
    notifier.stop()


#: A notifier process: delivers what is due in the outbox of a workdir, then waits.
DELIVER = """\
import sys, time
from pathlib import Path
from controller.notify import Notifier, Outbox

notifier = Notifier(Outbox(Path(sys.argv[1])), lambda: ())
sent = notifier.deliver_due()
print(f"sent {sent}", flush=True)
time.sleep(600)
"""


def deliver_in_child(workdir: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", DELIVER, str(workdir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_outbox_across_sigkill_loses_nothing_and_repeats_only_the_unrecorded_send(
    tmp_path: Path,
) -> None:
    with smtp_server() as box:
        target = [Target("team-mail", box.url())]
        outbox = Outbox(tmp_path)
        outbox.add(event(1), target, 0.0)
        outbox.add(event(2), target, 0.0)

        # 1. the process dies between the SMTP server taking message 1 and the record
        child = deliver_in_child(tmp_path)
        box.on_data = lambda _message: os.kill(child.pid, signal.SIGKILL)
        child.wait(60)
        assert child.returncode == -signal.SIGKILL
        assert len(box.messages) == 1
        box.on_data = None

        # 2. a new process: event 2 (never sent) is sent, event 1 once more, same id
        child = deliver_in_child(tmp_path)
        assert child.stdout is not None
        assert child.stdout.readline() == b"sent 2\n", child.stderr and child.stderr.read()
        child.send_signal(signal.SIGKILL)  # after the record: nothing is sent again
        child.wait(60)
        counts = box.by_event()
        assert sorted(counts.values()) == [1, 2]
        assert counts[event(1).id] == 2 and counts[event(2).id] == 1

        # 3. after that kill, a third process finds nothing to send
        child = deliver_in_child(tmp_path)
        assert child.stdout is not None
        assert child.stdout.readline() == b"sent 0\n"
        child.send_signal(signal.SIGKILL)
        child.wait(60)
        assert len(box.messages) == 3
        assert outbox.pending() == 0
