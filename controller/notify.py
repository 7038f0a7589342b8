"""Notifications: events derived from each pass, kept in an outbox, delivered by apprise.

``relctl.yaml`` lists targets (``notifications:``): an apprise URL (email over SMTP, Slack,
a generic JSON webhook, DingTalk, Lark/Feishu, WeCom...), the events it wants and the mini
programs / target apps it covers. Secrets never live in the repository: ``${RELCTL_NOTIFY_X}``
in a URL is replaced from the environment at delivery time, and only names with that prefix
are (a URL cannot exfiltrate the git credentials). The outbox stores the URL unresolved.

Events (:class:`NotificationEvent`) are derived from the statuses of a pass by comparing
each release with what the notifier last saw of it (:func:`derive_events`, pure). Each has a
deterministic id (release, version, event, detail): a pass that derives it again adds
nothing.

Delivery is an outbox (:class:`Outbox`, table ``outbox`` in the controller's
``state.db``, its own connection): the pass records every (event, target) row in one
transaction before anything is sent, and the :class:`Notifier`'s worker thread sends the due
rows and marks each delivered after the channel accepted it. So:

- a crash before sending loses nothing: the row is there, and the next process sends it;
- a crash after the delivered mark sends nothing again;
- a crash *between* the channel accepting a message and the mark (one SQLite commit) sends
  it once more after the restart: the only possible duplicate. Every message carries the
  event id (the ``X-Relctl-Event-Id`` header of emails and webhooks, and in the text) so a
  receiver can drop it; no SMTP or HTTP channel can tell the sender it already took a message.

A failed delivery is retried with exponential backoff (30 s up to 1 h) and never blocks a
pass: passes only insert rows. The worker is supervised: an unexpected error is logged and
counted (``relctl_worker_failures_total{worker="notifications"}``) and the loop goes on; a
thread that died anyway is restarted by :meth:`Notifier.supervise` and reported by the health
probe.

Called by ``controller.daemon``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from controller.metrics import Metrics
from controller.model import ConditionStatus, ConditionType, Phase, Reason, Status
from controller.reconcile import PassCache, PassResult
from controller.state import STATE_FILE

__all__ = [
    "EventKind",
    "NotificationEvent",
    "Notifier",
    "Outbox",
    "Target",
    "derive_events",
    "resolve_url",
    "targets_from_config",
]

log = logging.getLogger("relctl")

#: Only these environment variables are substituted into notification URLs.
SECRET_PREFIX = "RELCTL_NOTIFY_"
_PLACEHOLDER = re.compile(r"\$\{([A-Z0-9_]+)\}")
EVENT_HEADER = "X-Relctl-Event-Id"


class EventKind(StrEnum):
    APPROVED = "Approved"
    REJECTED = "Rejected"
    PILOT_STARTED = "PilotStarted"
    GRAYSCALE_RAISED = "GrayscaleRaised"
    HALTED = "Halted"
    WAITING_FOR_PERSON = "WaitingForPerson"
    RELEASED = "Released"
    CANCELED = "Canceled"
    FORBIDDEN = "Forbidden"
    STALLED = "Stalled"


#: Ready=False reasons that wait for a person's commit to main.
_WAITING = frozenset({Reason.PILOT_TESTING, Reason.READY_TO_RELEASE, Reason.SUPERSEDE_REQUIRED})
_APPROVED_FROM = frozenset({Phase.IN_REVIEW})
_APPROVED_TO = frozenset(
    {Phase.PILOT_TESTING, Phase.READY_TO_RELEASE, Phase.GRAYSCALE, Phase.RELEASED}
)


@dataclass(frozen=True)
class Target:
    """One ``notifications:`` entry of ``relctl.yaml``."""

    name: str
    url: str
    events: frozenset[str] = frozenset(EventKind)
    mini_programs: frozenset[str] | None = None
    target_apps: frozenset[str] | None = None

    def wants(self, event: NotificationEvent) -> bool:
        mini_program, _, target_app = event.release.partition("/")
        return (
            event.kind in self.events
            and (self.mini_programs is None or mini_program in self.mini_programs)
            and (self.target_apps is None or target_app in self.target_apps)
        )


def targets_from_config(items: Iterable[Mapping[str, Any]]) -> tuple[Target, ...]:
    """Targets from the (schema-checked) ``notifications`` list of ``relctl.yaml``."""

    def optional(item: Mapping[str, Any], name: str) -> frozenset[str] | None:
        value = item.get(name)
        return frozenset(value) if value is not None else None

    return tuple(
        Target(
            name=item["name"],
            url=item["url"],
            events=frozenset(item.get("events") or EventKind),
            mini_programs=optional(item, "miniPrograms"),
            target_apps=optional(item, "targetApps"),
        )
        for item in items
    )


def resolve_url(url: str, environ: Mapping[str, str]) -> str:
    """Replace ``${RELCTL_NOTIFY_X}`` from ``environ``; raises KeyError naming a missing or
    forbidden variable."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if not name.startswith(SECRET_PREFIX):
            raise KeyError(f"{name} (only {SECRET_PREFIX}* variables are substituted)")
        if name not in environ:
            raise KeyError(f"{name} is not set")
        return environ[name]

    return _PLACEHOLDER.sub(value, url)


@dataclass(frozen=True)
class NotificationEvent:
    """Something a person wants to hear about one release."""

    kind: EventKind
    release: str
    version: str
    phase: str
    message: str
    commit: str
    detail: str = ""

    @property
    def id(self) -> str:
        """Deterministic: the same event derived again (another pass, a restart) has it."""
        raw = f"{self.release}|{self.version}|{self.kind}|{self.detail}"
        return hashlib.sha256(raw.encode()).hexdigest()[:32]

    @property
    def title(self) -> str:
        return f"[relctl] {self.release} {self.version}: {self.kind}"

    def body(self) -> str:
        return (
            f"{self.message}\n\nrelease: {self.release}\nversion: {self.version}\n"
            f"phase: {self.phase}\ncommit: {self.commit}\nevent: {self.id}\n"
        )


@dataclass(frozen=True)
class _Seen:
    version: str
    phase: str
    grayscale: int
    stalled: str | None
    waiting: str | None

    @classmethod
    def of(cls, status: Status) -> _Seen:
        stalled = status.condition(ConditionType.STALLED)
        ready = status.condition(ConditionType.READY)
        waiting = (
            ready.reason
            if ready is not None
            and ready.status is not ConditionStatus.TRUE
            and ready.reason in _WAITING
            else None
        )
        return cls(
            version=status.version,
            phase=str(status.phase),
            grayscale=status.grayscale,
            stalled=stalled.reason
            if stalled is not None and stalled.status is ConditionStatus.TRUE
            else None,
            waiting=waiting,
        )


def _ready_message(status: Status) -> str:
    for type_ in (ConditionType.STALLED, ConditionType.READY):
        condition = status.condition(type_)
        if condition is not None and condition.message:
            return condition.message
    return f"{status.key} {status.version} is {status.phase}"


def derive_events(
    before: _Seen | None, status: Status, transition: str | None = None
) -> list[NotificationEvent]:
    """The events between what the notifier saw of a release and its new status (pure).

    A release the notifier never saw is a baseline: nothing is announced for the state it
    already had (a fresh controller does not replay history), except the phase change the
    pass itself made (``transition``, ``"InReview -> PilotTesting"``), so a replica that just
    took the lease announces what its first pass did.
    """
    if before is None:
        old = transition.split(" -> ", 1)[0] if transition else None
        if old is None or old not in set(Phase):
            return []
        before = _Seen(status.version, old, 0, None, None)
    now = _Seen.of(status)
    if before.version != status.version:
        before = _Seen(status.version, str(Phase.PENDING), 0, None, None)
    phase = status.phase
    events: list[tuple[EventKind, str, str]] = []
    message = _ready_message(status)
    if now.phase != before.phase:
        if Phase(before.phase) in _APPROVED_FROM and phase in _APPROVED_TO:
            events.append((EventKind.APPROVED, "", f"{status.key} {status.version} passed review"))
        simple = {
            Phase.PILOT_TESTING: EventKind.PILOT_STARTED,
            Phase.PAUSED: EventKind.HALTED,
            Phase.RELEASED: EventKind.RELEASED,
            Phase.CANCELED: EventKind.CANCELED,
            Phase.FORBIDDEN: EventKind.FORBIDDEN,
        }
        if phase is Phase.REJECTED:
            reason = status.review.reason if status.review is not None else message
            events.append(
                (EventKind.REJECTED, "", f"{status.key} {status.version} was rejected: {reason}")
            )
        elif phase in simple:
            events.append((simple[phase], "", message))
    if phase in (Phase.GRAYSCALE, Phase.RELEASED) and now.grayscale > before.grayscale:
        events.append(
            (
                EventKind.GRAYSCALE_RAISED,
                str(now.grayscale),
                f"{status.key} {status.version} now reaches {now.grayscale}% of users",
            )
        )
    if now.waiting is not None and now.waiting != before.waiting:
        events.append((EventKind.WAITING_FOR_PERSON, now.waiting, message))
    if now.stalled is not None and now.stalled != before.stalled and phase is not Phase.REJECTED:
        events.append((EventKind.STALLED, now.stalled, message))
    return [
        NotificationEvent(
            kind, status.key, status.version, str(phase), text, status.observed_commit, detail
        )
        for kind, detail, text in events
    ]


# --------------------------------------------------------------------------------------------
# the outbox
# --------------------------------------------------------------------------------------------

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
  event_id TEXT NOT NULL, target TEXT NOT NULL, url TEXT NOT NULL,
  title TEXT NOT NULL, body TEXT NOT NULL, created REAL NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0, next_attempt REAL NOT NULL,
  delivered REAL, last_error TEXT,
  PRIMARY KEY (event_id, target));
CREATE TABLE IF NOT EXISTS notify_seen (key TEXT PRIMARY KEY, data TEXT NOT NULL);
"""


@dataclass(frozen=True)
class Delivery:
    event_id: str
    target: str
    url: str
    title: str
    body: str
    attempts: int


class Outbox:
    """The ``outbox`` and ``notify_seen`` tables of ``<workdir>/state.db``, on a connection
    of their own (one per thread that uses it: :meth:`connect`)."""

    def __init__(self, workdir: Path) -> None:
        self.path = Path(workdir) / STATE_FILE
        with self._connect() as db:
            db.executescript(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, timeout=30)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        return db

    def record(self, result: PassResult, targets: Sequence[Target], now: float) -> int:
        """Derive the events of a pass and add one row per (event, target) that wants it, in
        one transaction with the new ``seen`` record; the number of new rows."""
        db = self._connect()
        try:
            db.execute("BEGIN IMMEDIATE")
            seen = {k: _Seen(**json.loads(v)) for k, v in db.execute("SELECT * FROM notify_seen")}
            added = 0
            for item in result.releases:
                events = derive_events(seen.get(item.key), item.status, item.transition)
                for event in events:
                    added += self._add(db, event, targets, now)
                    log.info(
                        "%s: %s", event.kind, event.message,
                        extra={"event": {"release": event.release, "version": event.version,
                                         "phase": event.phase, "action": f"notify:{event.kind}",
                                         "commit": event.commit}},
                    )  # fmt: skip
                db.execute(
                    "INSERT OR REPLACE INTO notify_seen VALUES (?, ?)",
                    (item.key, json.dumps(_Seen.of(item.status).__dict__)),
                )
            db.execute("COMMIT")
            return added
        finally:
            db.close()

    def add(self, event: NotificationEvent, targets: Sequence[Target], now: float) -> int:
        """Record one event for the targets that want it; the number of new rows."""
        db = self._connect()
        try:
            return self._add(db, event, targets, now)
        finally:
            db.close()

    @staticmethod
    def _add(
        db: sqlite3.Connection, event: NotificationEvent, targets: Sequence[Target], now: float
    ) -> int:
        added = 0
        for target in targets:
            if target.wants(event):
                cursor = db.execute(
                    "INSERT OR IGNORE INTO outbox (event_id, target, url, title, body, created, "
                    "next_attempt) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (event.id, target.name, target.url, event.title, event.body(), now, now),
                )
                added += cursor.rowcount
        return added

    def due(self, now: float, limit: int = 50) -> list[Delivery]:
        db = self._connect()
        try:
            rows = db.execute(
                "SELECT event_id, target, url, title, body, attempts FROM outbox "
                "WHERE delivered IS NULL AND next_attempt <= ? ORDER BY created LIMIT ?",
                (now, limit),
            ).fetchall()
        finally:
            db.close()
        return [Delivery(*row) for row in rows]

    def pending(self) -> int:
        db = self._connect()
        try:
            return int(
                db.execute("SELECT count(*) FROM outbox WHERE delivered IS NULL").fetchone()[0]
            )
        finally:
            db.close()

    def next_due(self) -> float | None:
        db = self._connect()
        try:
            row = db.execute(
                "SELECT min(next_attempt) FROM outbox WHERE delivered IS NULL"
            ).fetchone()
        finally:
            db.close()
        return float(row[0]) if row and row[0] is not None else None

    def mark(self, delivery: Delivery, now: float, error: str | None, retry_at: float) -> None:
        db = self._connect()
        try:
            if error is None:
                db.execute(
                    "UPDATE outbox SET delivered = ?, attempts = attempts + 1, last_error = NULL "
                    "WHERE event_id = ? AND target = ?",
                    (now, delivery.event_id, delivery.target),
                )
            else:
                db.execute(
                    "UPDATE outbox SET attempts = attempts + 1, next_attempt = ?, last_error = ? "
                    "WHERE event_id = ? AND target = ?",
                    (retry_at, error, delivery.event_id, delivery.target),
                )
        finally:
            db.close()


def _with_event_header(url: str, event_id: str) -> str:
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}+{EVENT_HEADER}={event_id}"


def send_with_apprise(url: str, title: str, body: str, event_id: str) -> str | None:
    """Deliver one message; None when the channel accepted it, else why not."""
    import apprise

    sender = apprise.Apprise()
    if not sender.add(_with_event_header(url, event_id)):
        return "apprise does not understand the target URL"
    return None if sender.notify(body=body, title=title) else "the channel refused the message"


Sender = Callable[[str, str, str, str], "str | None"]


@dataclass
class Notifier:
    """Records events of each pass in the outbox; a supervised thread delivers them."""

    outbox: Outbox
    targets: Callable[[], Sequence[Target]]
    metrics: Metrics | None = None
    send: Sender = send_with_apprise
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)
    clock: Callable[[], float] = time.time
    backoff_base: float = 30.0
    backoff_cap: float = 3600.0
    poll: float = 1.0
    _wake: threading.Event = field(default_factory=threading.Event)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def on_pass(self, result: PassResult) -> None:
        """Called after every pass (never raises into the pass: a failure is logged)."""
        try:
            targets = self.targets()
            self.outbox.record(result, targets, self.clock())
        except Exception:
            log.exception("notifications of this pass could not be recorded")
            if self.metrics is not None:
                self.metrics.worker_failures_total.labels("notifications").inc()
            return
        self._wake.set()

    # -- the worker --------------------------------------------------------------------------

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="relctl-notify", daemon=True)
        self._thread.start()

    def supervise(self) -> None:
        """Restart the worker if it died (called from the daemon's main loop)."""
        if self._thread is not None and not self._thread.is_alive() and not self._stop.is_set():
            log.error("the notification worker stopped unexpectedly: restarting it")
            if self.metrics is not None:
                self.metrics.worker_failures_total.labels("notifications").inc()
            self.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.deliver_due()
            except Exception:  # never silent: logged, counted, and the loop goes on
                log.exception("the notification worker failed; retrying")
                if self.metrics is not None:
                    self.metrics.worker_failures_total.labels("notifications").inc()
            except BaseException:  # SystemExit from a plugin: the thread ends, loudly
                log.critical("the notification worker stopped", exc_info=True)
                return
            self._wake.wait(self.poll)
            self._wake.clear()

    def deliver_due(self) -> int:
        """Send every due row once; the number delivered."""
        delivered = 0
        for delivery in self.outbox.due(self.clock()):
            if self._stop.is_set():
                break
            try:
                url = resolve_url(delivery.url, self.environ)
            except KeyError as missing:
                error: str | None = f"missing secret {missing}"
            else:
                try:
                    error = self.send(url, delivery.title, delivery.body, delivery.event_id)
                except Exception as exc:  # a plugin bug must not kill the worker
                    error = f"{type(exc).__name__}: {exc}"
            now = self.clock()
            retry_at = now + min(self.backoff_cap, self.backoff_base * 2.0**delivery.attempts)
            self.outbox.mark(delivery, now, error, retry_at)
            if self.metrics is not None:
                self.metrics.notifications_total.labels("failed" if error else "delivered").inc()
            if error is None:
                delivered += 1
            else:
                log.warning(
                    "notification %s to %s failed (attempt %d): %s; retrying later",
                    delivery.event_id, delivery.target, delivery.attempts + 1, error,
                )  # fmt: skip
        if self.metrics is not None:
            self.metrics.notifications_pending.set(self.outbox.pending())
        return delivered


def configured_targets(cache: PassCache) -> tuple[Target, ...]:
    """The targets of the ``relctl.yaml`` the last pass read (none before the first pass)."""
    config = cache.loaded.config if cache.loaded is not None else None
    return targets_from_config(config.notifications) if config is not None else ()


def notification_secrets(environ: Mapping[str, str]) -> list[str]:
    """The values of every ``RELCTL_NOTIFY_*`` variable (masked in logs)."""
    return [value for name, value in environ.items() if name.startswith(SECRET_PREFIX)]
