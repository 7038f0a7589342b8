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

Called by ``controller.cli``.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from types import FrameType

from apscheduler.schedulers.background import BackgroundScheduler

from controller.access import TrustError
from controller.gitops import GitError, Workspace
from controller.platform.protocol import Platform
from controller.reconcile import PassCache, PassResult, ProgressCallback, StopCheck, run_pass
from controller.state import ControllerState, StateError
from controller.trust import TrustSettings

#: A pass starts no new release after this many seconds; the rest wait for the next pass.
PASS_DEADLINE = 300.0

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
        pass_deadline: float = PASS_DEADLINE,
        trust: TrustSettings | None = None,
    ) -> None:
        self.workspace = workspace
        #: The controller's own memory, beside the clone in the (locked) workdir.
        self.state = ControllerState(workspace.workdir).open()
        self.pass_deadline = pass_deadline
        #: Where trust starts on the first start (the operator's, never the repository's).
        self.trust = trust or TrustSettings()
        #: Set on SIGTERM/SIGINT: the pass in progress starts no new release.
        self.stopping = threading.Event()
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
                    state=self.state,
                    trust=self.trust,
                    skip_ci=self.skip_ci,
                    progress=self.progress,
                    cache=self.cache,
                    stop=self._stop_check(time.monotonic() + self.pass_deadline),
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

    def _stop_check(self, deadline: float) -> StopCheck:
        def check() -> str | None:
            if self.stopping.is_set():
                return "the controller is stopping"
            if time.monotonic() > deadline:
                return f"the pass deadline ({self.pass_deadline:g} s) was reached"
            return None

        return check

    def close(self) -> None:
        """Close the controller's state database (the workspace is the caller's)."""
        self.state.close()


def run_forever(controller: Controller, options: DaemonOptions) -> int:
    """Run passes until SIGTERM/SIGINT (or ``max_passes``); returns the exit code: 0, or 2
    when the controller's state database became unusable or trust cannot start."""
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
    return 2 if fatal else 0
