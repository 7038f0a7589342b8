"""Scheduled reconcile passes: ``relctl run``.

An APScheduler 3.x ``BackgroundScheduler`` runs :func:`controller.reconcile.run_pass` on an
interval with jitter, one pass at a time (``max_instances=1``, ``coalesce``). APScheduler installs
no signal handlers and never interrupts a running job, so this module does: SIGTERM or SIGINT
sets a flag, the scheduler stops taking new passes, the pass in progress finishes (its status
commit lands), and the process exits 0.

A pass that fails (git unreachable, push rejected too often) is logged and retried on the next
tick; platform errors never get this far (``act`` records them on the release). A pass has a
deadline (``PASS_DEADLINE``), and on SIGTERM the pass in progress starts no new release, so
the process ends within the time of one release's step and one push.

Operating it (``docs/operations.md``): with ``metrics`` the pass feeds Prometheus; with a
``lease`` (``controller.lease``) only the replica holding the lease on the remote acts, the
others stay ready; with a ``notifier`` (``controller.notify``) each pass's events go to the
outbox; :meth:`Controller.request_pass` (the push webhook of ``controller.server``) asks for a
pass: requests coalesce, so at most one pass runs and one more is queued. ``run_forever``
supervises the threads it starts (HTTP server, notification worker): one that dies is
restarted or, for the server, stops the process with exit code 2 so the orchestrator restarts
it; nothing dies silently.

Called by ``controller.cli``.
"""

from __future__ import annotations

import gc
import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from types import FrameType
from typing import cast

from apscheduler.schedulers.background import BackgroundScheduler
from starlette.types import ASGIApp

from controller.access import TrustError
from controller.gitops import GitError, Workspace
from controller.lease import Lease
from controller.metrics import CountingPlatform, Metrics, ReleaseSample
from controller.notify import Notifier
from controller.platform.protocol import Platform
from controller.reconcile import PassCache, PassResult, ProgressCallback, StopCheck, run_pass
from controller.server import HttpServer, WebhookSettings, build_app
from controller.state import ControllerState, StateError
from controller.trust import TrustSettings

#: A pass starts no new release after this many seconds; the rest wait for the next pass.
PASS_DEADLINE = 300.0

log = logging.getLogger("relctl")


class CollectorPacing:
    """Python's cyclic garbage collector paced for a daemon that keeps a large heap.

    Between passes the controller keeps what it knows of every release (listings, statuses,
    validation outcomes): millions of objects at 100,000 releases, which every full
    collection walked again in the middle of a pass (2-3 s each at 100,000, measured in a
    dict comprehension). After each pass (:meth:`after_pass`) the objects the pass made are
    collected (a collection that walks only the unfrozen ones: what this pass kept), and
    whatever survives is frozen (``gc.freeze``): later collections skip it.

    The first pass only freezes (a new process's first pass ends sooner; the cycles start-up
    left wait). A cycle that becomes garbage while frozen waits for the next full
    collection, which unfreezes everything first, every ``full_every`` seconds (an hour: a
    full collection costs ~2.5 s at 100,000 releases, about a tenth at 10,000). Growth is not a
    reason for one: what makes the heap grow is what the controller keeps (listings,
    statuses), which a collection cannot free. A process whose collector is disabled is
    left alone.
    """

    def __init__(
        self, *, full_every: float = 3600.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.full_every = full_every
        self._clock = clock
        self._full_at = clock()
        self._first = True
        #: Full collections made.
        self.full_collections = 0

    def after_pass(self) -> None:
        if not gc.isenabled():
            return
        if self._first:  # what start-up and the first pass made, frozen as it is
            self._first = False
            gc.freeze()
            self._full_at = self._clock()
            return
        if self._clock() - self._full_at >= self.full_every:
            gc.unfreeze()
            self._full_at = self._clock()
            self.full_collections += 1
        gc.collect()  # walks the unfrozen objects only: what this pass made and kept
        gc.freeze()

    def close(self) -> None:
        """Give every object back to the collector (the controller stops)."""
        if gc.get_freeze_count():
            gc.unfreeze()


def utc_now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


@dataclass
class DaemonOptions:
    interval: float = 30.0
    jitter: float = 3.0
    skip_ci: bool = False
    #: Stop after this many passes (None: until a signal).
    max_passes: int | None = None
    #: Not ready when no fetch succeeded for this many intervals.
    ready_intervals: float = 3.0


class Controller:
    """A reconcile loop over one workspace and one platform."""

    def __init__(
        self,
        workspace: Workspace,
        platform: Platform,
        *,
        now: Callable[[], datetime] = utc_now,
        progress: ProgressCallback | None = None,
        on_pass: Callable[[PassResult], None] | None = None,
        skip_ci: bool = False,
        pass_deadline: float = PASS_DEADLINE,
        trust: TrustSettings | None = None,
        metrics: Metrics | None = None,
        lease: Lease | None = None,
        notifier: Notifier | None = None,
        collector: CollectorPacing | None = None,
    ) -> None:
        """``collector``: pace the garbage collector between passes (``relctl run``: a long
        process with a large heap; see :class:`CollectorPacing`). None leaves it as it is."""
        self.workspace = workspace
        self.collector = collector
        #: The controller's own memory, beside the clone in the (locked) workdir.
        self.state = ControllerState(workspace.workdir).open()
        self.pass_deadline = pass_deadline
        #: Where trust starts on the first start (the operator's, never the repository's).
        self.trust = trust or TrustSettings()
        #: Set on SIGTERM/SIGINT: the pass in progress starts no new release.
        self.stopping = threading.Event()
        self.metrics = metrics
        self.counting: CountingPlatform | None = None
        if metrics is not None:
            self.counting = CountingPlatform(platform, metrics)
            platform = cast(Platform, self.counting)
        self.platform = platform
        self.lease = lease
        self.notifier = notifier
        #: Set by :meth:`request_pass`, cleared when a pass starts.
        self.requested = threading.Event()
        #: While a pass (or the lease check before it) runs.
        self.busy = threading.Event()
        #: When the remote last answered (monotonic): a fetch or a lease check.
        self.last_contact: float | None = None
        #: This replica is waiting for the lease (another replica acts).
        self.standby = False
        self.now = now
        self.progress = progress
        self.on_pass = on_pass
        self.skip_ci = skip_ci
        self.passes = 0
        self.failures = 0
        self.cache = PassCache()
        self._lock = threading.Lock()

    def request_pass(self) -> None:
        """Ask for a pass as soon as possible (the push webhook). Never runs one here:
        requests coalesce into one flag that the next pass clears."""
        self.requested.set()

    def pass_once(self, *, raise_errors: bool = False) -> PassResult | None:
        """Run one pass; a git failure is logged and reported as None (retried next tick).

        With ``raise_errors`` the GitError propagates instead (``relctl reconcile``). With a
        lease, a replica that does not hold it runs no pass and returns None.
        """
        with self._lock:
            self.busy.set()
            try:
                self.requested.clear()
                if self.lease is not None and not self._lead():
                    return None
                return self._pass(raise_errors)
            finally:
                self.busy.clear()

    def _lead(self) -> bool:
        assert self.lease is not None
        try:
            leading = self.lease.acquire()
        except GitError as error:
            self.failures += 1
            self.count_result("error")
            log.error("lease check failed: %s (not acting until it succeeds)", error)
            return False
        self.last_contact = time.monotonic()
        if not leading:
            if not self.standby:
                log.info("standby: another replica holds the lease")
            self.standby = True
            self.count_result("standby")
            return False
        self.standby = False
        return True

    def count_result(self, result: str) -> None:
        if self.metrics is not None:
            self.metrics.reconcile_total.labels(result).inc()
            if result == "error":
                self.metrics.reconcile_errors_total.inc()

    def _pass(self, raise_errors: bool) -> PassResult | None:
        self.passes += 1
        started = time.monotonic()
        try:
            result = run_pass(
                self.workspace,
                self.platform,
                self.now,
                state=self.state,
                trust=self.trust,
                skip_ci=self.skip_ci,
                progress=self.progress,
                cache=self.cache,
                stop=self._stop_check(time.monotonic() + self.pass_deadline),
            )
        except GitError as error:
            self.failures += 1
            self.count_result("error")
            if raise_errors:
                raise
            log.error("pass %d failed: %s (retrying on the next tick)", self.passes, error)
            return None
        finally:
            if self.collector is not None:
                self.collector.after_pass()
        duration = time.monotonic() - started
        self.last_contact = time.monotonic()
        self._record(result, duration)
        if self.notifier is not None and not result.unchanged:  # the same statuses: no event
            self.notifier.on_pass(result)
        if self.on_pass is not None:
            self.on_pass(result)
        return result

    def _record(self, result: PassResult, duration: float) -> None:
        """Metrics and one log event per release that moved."""
        if self.metrics is not None:
            self.count_result("success")
            self.metrics.reconcile_duration_seconds.observe(duration)
        if self.metrics is not None and not result.unchanged:  # else the gauges already say so
            self.metrics.record_releases(
                ReleaseSample(
                    r.status.mini_program,
                    r.status.target_app,
                    r.status.version,
                    str(r.status.phase),
                    r.status.grayscale,
                )
                for r in result.releases
            )
            if result.pushed is not None:
                self.metrics.git_push_attempts_total.labels("status").inc(result.pushed.attempts)
        for r in () if result.unchanged else result.releases:
            if not r.changed and r.result is None:
                continue
            action = r.result.step.action.value if r.result is not None else None
            log.info(
                "%s %s: %s", r.key, r.status.version, r.transition or r.status.phase,
                extra={"event": {"release": r.key, "version": r.status.version,
                                 "phase": str(r.status.phase), "action": action,
                                 "commit": result.commit}},
            )  # fmt: skip
        event = {"action": "pass", "duration": round(duration, 3), "commit": result.commit}
        if result.unchanged:
            event["unchanged"] = True
        log.info(
            "pass %d: %d release(s), %d changed", self.passes, len(result.releases),
            len(result.changed), extra={"event": event},
        )  # fmt: skip

    def _stop_check(self, deadline: float) -> StopCheck:
        def check() -> str | None:
            if self.stopping.is_set():
                return "the controller is stopping"
            if self.lease is not None and not self.lease.held():
                return "this replica's lease ran out"
            if time.monotonic() > deadline:
                return f"the pass deadline ({self.pass_deadline:g} s) was reached"
            return None

        return check

    def close(self) -> None:
        """Close the controller's state database (the workspace is the caller's)."""
        if self.collector is not None:
            self.collector.close()
        self.state.close()


class DaemonProbes:
    """``/healthz`` and ``/readyz`` of a running daemon (``controller.server.Probes``)."""

    def __init__(
        self,
        controller: Controller,
        options: DaemonOptions,
        scheduler: BackgroundScheduler,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.controller = controller
        self.options = options
        self.scheduler = scheduler
        self.clock = clock

    def health(self) -> tuple[bool, str]:
        if not self.scheduler.running:
            return False, "the scheduler is not running"
        notifier = self.controller.notifier
        if notifier is not None and not notifier.alive:
            return False, "the notification worker is not running"
        return True, "ok"

    def ready(self) -> tuple[bool, str]:
        c = self.controller
        if c.state.closed:
            return False, "the controller's state database is closed"
        seen = c.last_contact
        limit = self.options.ready_intervals * self.options.interval + self.options.jitter
        if seen is None:
            return False, "no fetch has succeeded yet"
        if self.clock() - seen > limit:
            return False, f"no fetch succeeded for {self.clock() - seen:.0f} s"
        if c.counting is not None and c.counting.answered is False:
            return False, "the platform did not answer the last call"
        return True, "standby (another replica holds the lease)" if c.standby else "ok"


def run_forever(
    controller: Controller,
    options: DaemonOptions,
    *,
    listen: tuple[str, int] | None = None,
    webhook: WebhookSettings | None = None,
    board: ASGIApp | None = None,
) -> int:
    """Run passes until SIGTERM/SIGINT (or ``max_passes``); returns the exit code: 0, or 2
    when the controller's state database became unusable, trust cannot start, or the HTTP
    server died.

    With ``listen`` the HTTP server (``controller.server``) runs beside the passes; its
    address is logged as ``listening on http://HOST:PORT``.
    """
    stop = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        log.info(
            "%s received: finishing the current pass, then exiting", signal.Signals(signum).name
        )
        stop.set()
        controller.stopping.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}

    fatal: list[str] = []

    def tick() -> None:
        if stop.is_set():
            return
        try:
            controller.pass_once()
        except (StateError, TrustError) as error:  # memory or trust unusable: never guess
            log.error("stopping: %s", error)
            fatal.append(str(error))
            stop.set()
        except Exception:  # a bug: logged and counted, the next tick tries again
            log.exception("pass %d failed unexpectedly", controller.passes)
            controller.count_result("error")
        if options.max_passes is not None and controller.passes >= options.max_passes:
            stop.set()

    scheduler = BackgroundScheduler(timezone="UTC")
    scheduler.add_job(
        tick,
        "interval",
        seconds=options.interval,
        jitter=options.jitter or None,
        max_instances=1,
        coalesce=True,
        next_run_time=datetime.now(UTC),
        misfire_grace_time=max(1, int(options.interval)),
        id="reconcile",
    )
    server: HttpServer | None = None
    if listen is not None:
        metrics = controller.metrics or Metrics()
        app = build_app(
            metrics,
            DaemonProbes(controller, options, scheduler),
            controller.request_pass,
            webhook or WebhookSettings(secret=None),
            board=board,
        )
        server = HttpServer(app, *listen)
        server.start()
        log.warning("listening on %s", server.url)
    if controller.notifier is not None:
        controller.notifier.start()
    scheduler.start()
    try:
        while not stop.wait(0.2):
            if controller.requested.is_set() and not controller.busy.is_set():
                # A webhook asked for a pass: run the job now (it clears the request).
                scheduler.modify_job("reconcile", next_run_time=datetime.now(UTC))
            if controller.notifier is not None:
                controller.notifier.supervise()
            if server is not None and not server.alive:
                log.error("the HTTP server stopped (%s): exiting", server.error)
                fatal.append("the HTTP server stopped")
                stop.set()
    finally:
        scheduler.shutdown(wait=True)  # lets a running pass finish, starts no new one
        if controller.lease is not None:
            controller.lease.release()
        if controller.notifier is not None:
            controller.notifier.stop()
        if server is not None:
            server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 2 if fatal else 0
