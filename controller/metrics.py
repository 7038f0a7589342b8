"""Prometheus metrics of one controller process, named as controller-runtime and Flux users
know them.

One :class:`Metrics` per controller (its own ``CollectorRegistry``, so tests and several
controllers in one process never share counters). :meth:`Metrics.observe_pass` turns a
finished pass into counters and gauges; :class:`CountingPlatform` counts every platform call
by operation and outcome. No label carries a commit, a version sha or any other value that
grows without bound: ``relctl_release_info`` has one series per release (the old series of a
release is removed when its version or phase changes).

Called by ``controller.daemon`` (recording), ``controller.notify`` (delivery counters),
``controller.lease`` (push attempts) and ``controller.server`` (``/metrics``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from controller.platform.errors import Conflict as PlatformConflict
from controller.platform.errors import InvalidState, LimitExceeded, NotEditable, NotFound

__all__ = ["CONTENT_TYPE_LATEST", "CountingPlatform", "Metrics", "ReleaseSample"]


@dataclass(frozen=True)
class ReleaseSample:
    """What ``relctl_release_info`` and ``relctl_release_grayscale_percent`` show of one release."""

    mini_program: str
    target_app: str
    version: str
    phase: str
    grayscale: int


class Metrics:
    """The controller's metrics, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.reconcile_total = Counter(
            "relctl_reconcile_total",
            "Reconcile passes, by result (success, error, standby).",
            ["result"],
            registry=r,
        )
        self.reconcile_errors_total = Counter(
            "relctl_reconcile_errors_total",
            "Reconcile passes that failed (git unreachable, push rejected too often).",
            registry=r,
        )
        self.reconcile_duration_seconds = Histogram(
            "relctl_reconcile_duration_seconds",
            "Duration of a reconcile pass.",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
            registry=r,
        )
        self.release_info = Gauge(
            "relctl_release_info",
            "One series per release: its version and phase (value 1).",
            ["mini_program", "target_app", "version", "phase"],
            registry=r,
        )
        self.release_grayscale_percent = Gauge(
            "relctl_release_grayscale_percent",
            "The share of app users a release is exposed to (100 = full release).",
            ["mini_program", "target_app"],
            registry=r,
        )
        self.platform_calls_total = Counter(
            "relctl_platform_calls_total",
            "Calls to the platform adapter, by call and outcome (ok or the error class).",
            ["call", "outcome"],
            registry=r,
        )
        self.git_push_attempts_total = Counter(
            "relctl_git_push_attempts_total",
            "Pushes to the release repository (status commits and lease renewals).",
            ["ref"],
            registry=r,
        )
        self.leader = Gauge(
            "relctl_leader",
            "1 while this replica holds the lease on the remote (acts), else 0.",
            registry=r,
        )
        self.notifications_total = Counter(
            "relctl_notifications_total",
            "Notification delivery attempts, by outcome (delivered, failed).",
            ["outcome"],
            registry=r,
        )
        self.notifications_pending = Gauge(
            "relctl_notifications_pending",
            "Notifications recorded but not yet delivered.",
            registry=r,
        )
        self.worker_failures_total = Counter(
            "relctl_worker_failures_total",
            "Unexpected failures of a background worker (restarted by its supervisor).",
            ["worker"],
            registry=r,
        )
        self._releases: dict[tuple[str, str], tuple[str, str]] = {}

    def record_releases(self, samples: Iterable[ReleaseSample]) -> None:
        """Set the release gauges to ``samples`` (every release of the last pass)."""
        seen: set[tuple[str, str]] = set()
        for s in samples:
            key = (s.mini_program, s.target_app)
            seen.add(key)
            old = self._releases.get(key)
            if old is not None and old != (s.version, s.phase):
                self.release_info.remove(*key, *old)
            self._releases[key] = (s.version, s.phase)
            self.release_info.labels(*key, s.version, s.phase).set(1)
            self.release_grayscale_percent.labels(*key).set(s.grayscale)
        for key in set(self._releases) - seen:
            self.release_info.remove(*key, *self._releases.pop(key))
            self.release_grayscale_percent.remove(*key)

    def exposition(self) -> bytes:
        """The text format Prometheus scrapes."""
        return generate_latest(self.registry)


class _Call(Protocol):
    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...


class CountingPlatform:
    """Wraps a platform adapter: every public method call is counted in
    ``relctl_platform_calls_total{call, outcome}`` (``ok`` or the exception class name)."""

    #: Errors that are the platform's answer (it is up), as opposed to silence or failure.
    ANSWERS = (InvalidState, NotFound, PlatformConflict, LimitExceeded, NotEditable)

    def __init__(self, platform: object, metrics: Metrics) -> None:
        self._platform = platform
        self._metrics = metrics
        #: Whether the last call got an answer (a result or a refusal); None before any call.
        self.answered: bool | None = None

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._platform, name)
        if name.startswith("_") or not callable(value):
            return value
        return self._counted(name, value)

    def _counted(self, name: str, call: Callable[..., Any]) -> _Call:
        counter = self._metrics.platform_calls_total

        def counted(*args: Any, **kwargs: Any) -> Any:
            try:
                result = call(*args, **kwargs)
            except Exception as error:
                counter.labels(name, type(error).__name__).inc()
                self.answered = isinstance(error, self.ANSWERS)
                raise
            counter.labels(name, "ok").inc()
            self.answered = True
            return result

        return counted
