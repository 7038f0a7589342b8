"""What each platform adapter can do, declared as data and known without connecting.

``relctl validate``, ``relctl check`` and ``relctl plan`` run at pull-request time, with no
credentials and no network; they still refuse a manifest that asks a platform for something it
cannot do (a grayscale step Alipay does not offer, more testers than its limit, a pilot on a
platform without one), naming the platform. So capabilities belong to the adapter *scheme* of
``relctl.yaml``'s ``platform:`` spec, not to a live connection.

``None`` means "no platform-wide rule": the per-target-app rules of ``relctl.yaml`` (and the
platform's own refusals at run time) apply. 100 (a full release) is always allowed.

Callers: ``controller.manifests`` (configuration and release checks), ``docs/platforms.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

__all__ = ["CAPABILITIES", "Capabilities", "capabilities_for"]


@dataclass(frozen=True)
class Capabilities:
    """What one kind of platform supports."""

    #: The platform's name, as people read it in a refusal.
    platform: str
    #: Grayscale percentages the platform offers (besides 100); None: any integer 1..100.
    grayscale_values: tuple[int, ...] | None = None
    #: Most pilot testers the platform accepts for one version; None: per target app.
    testers_max: int | None = None
    #: Whether pilot testing (testers of an approved version) exists.
    pilot: bool = True
    #: Whether the platform runs compatibility tests (else ``minPassRate`` must be 0).
    compatibility_test: bool = True
    #: Whether the platform can re-publish the previous version without review.
    rollback: bool = False
    #: Whether a release carries a package configuration (``spec.configuration``) the
    #: platform stores and reports back.
    configuration: bool = True
    #: Whether the platform reports feedback metrics (crash and error rates) of a version,
    #: which a rollout's ``analysis`` steps measure.
    feedback_metrics: bool = True

    def allows_grayscale(self, percent: int) -> bool:
        """Whether the platform can release ``percent`` (0: not exposed; 100: full release)."""
        if percent in (0, 100):
            return True
        if self.grayscale_values is None:
            return 1 <= percent <= 100
        return percent in self.grayscale_values

    def grayscale_text(self) -> str:
        values = self.grayscale_values
        return "any of 1-100" if values is None else ", ".join(map(str, (*values, 100)))


CAPABILITIES: dict[str, Capabilities] = {
    # the simulator's limits are per target app (relctl platform set-app)
    "sim": Capabilities(platform="the relctl platform simulator"),
    # a server of the HTTP contract enforces its own rules; it answers LimitExceeded
    "http": Capabilities(platform="the HTTP platform"),
    "https": Capabilities(platform="the HTTP platform"),
    # alipay.open.mini.version.gray.online: gray_strategy p10|p30|p50; 50 experiencers
    "alipay": Capabilities(
        platform="Alipay Open Platform",
        grayscale_values=(10, 30, 50),
        testers_max=50,
        compatibility_test=False,
        rollback=True,
        # the release API holds no package configuration and no feedback metrics
        configuration=False,
        feedback_metrics=False,
    ),
    # wxa/grayrelease: an integer percentage that only rises; trial-version testers
    # the configuration travels as wxa/commit's ext_json; no feedback metrics API is mapped
    "wechat": Capabilities(
        platform="WeChat", compatibility_test=False, rollback=True, feedback_metrics=False
    ),
}
"""Capabilities per adapter scheme (the part of a platform spec before the first ``:``)."""


@lru_cache(maxsize=64)
def capabilities_for(spec: str | None) -> Capabilities:
    """The capabilities of the adapter ``spec`` names (None: the default simulator).

    A scheme relctl does not know gets the simulator's (no platform-wide rule): the spec
    itself is refused when the adapter is opened, with the list of known schemes.
    """
    scheme = (spec or "sim:").partition(":")[0]
    return CAPABILITIES.get(scheme, CAPABILITIES["sim"])
