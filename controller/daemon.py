"""Scheduled reconcile passes: ``relctl run``.

An APScheduler 3.x ``BackgroundScheduler`` runs :func:`controller.reconcile.run_pass` on an
interval with jitter, one pass at a time (``max_instances=1``, ``coalesce``). APScheduler installs
no signal handlers and never interrupts a running job, so this module does: SIGTERM or SIGINT
sets a flag, the scheduler stops taking new passes, the pass in progress finishes (its status
commit lands), and the process exits 0.

A pass that fails (git unreachable, push rejected too often) is logged and retried on the next
tick; platform errors never get this far (``act`` records them on the release).

Called by ``controller.cli``.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from types import FrameType

from apscheduler.schedulers.background import BackgroundScheduler

from controller.gitops import GitError, Workspace
from controller.platform.protocol import Platform
from controller.reconcile import PassCache, PassResult, ProgressCallback, run_pass

log = logging.getLogger("relctl")


def utc_now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


@dataclass
class DaemonOptions:
    interval: float = 30.0
    jitter: float = 3.0
    skip_ci: bool = False
    #: Stop after this many passes (None: until a signal).
    max_passes: int | None = None


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
    ) -> None:
        self.workspace = workspace
        self.platform = platform
        self.now = now
        self.progress = progress
        self.on_pass = on_pass
        self.skip_ci = skip_ci
        self.passes = 0
        self.failures = 0
        self.cache = PassCache()
        self._lock = threading.Lock()

    def pass_once(self, *, raise_errors: bool = False) -> PassResult | None:
        """Run one pass; a git failure is logged and reported as None (retried next tick).

        With ``raise_errors`` the GitError propagates instead (``relctl reconcile``).
        """
        with self._lock:
            self.passes += 1
            try:
                result = run_pass(
                    self.workspace,
                    self.platform,
                    self.now,
                    skip_ci=self.skip_ci,
                    progress=self.progress,
                    cache=self.cache,
                )
            except GitError as error:
                self.failures += 1
                if raise_errors:
                    raise
                log.error("pass %d failed: %s (retrying on the next tick)", self.passes, error)
                return None
            if self.on_pass is not None:
                self.on_pass(result)
            return result


def run_forever(controller: Controller, options: DaemonOptions) -> int:
    """Run passes until SIGTERM/SIGINT (or ``max_passes``); returns the exit code (0)."""
    stop = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        log.info(
            "%s received: finishing the current pass, then exiting", signal.Signals(signum).name
        )
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}

    def tick() -> None:
        if stop.is_set():
            return
        controller.pass_once()
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
    scheduler.start()
    try:
        while not stop.wait(0.2):
            pass
    finally:
        scheduler.shutdown(wait=True)  # lets a running pass finish, starts no new one
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
