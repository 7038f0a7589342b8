"""The controller's trust in main: where it starts, how it follows main, when it stops.

What reaches the platform is what main says, changed only by people with the right to. This
module wires the judge (:class:`controller.access.Ledger`) to the controller's own memory
(:class:`controller.state.ControllerState`), for ``reconcile.run_pass``:

- **A pinned root of trust.** The operator names, outside the repository, the commit trust
  starts at (``--trust-anchor COMMIT``); everything in that commit's tree is authorized.
  Trusting whatever main is at the first start (``--trust-on-first-use``) is an explicit,
  logged choice, recorded in the state. Without either, the controller does not act.
- **Fast-forward only.** Each pass advances the ledger from the last commit it judged to
  main's tip along first parents. A main that does not continue that commit (a force push, a
  rollback, a new history, an orphan root merged in as first parent) stops all action
  (:class:`MainTrust.diverged`) until the operator re-anchors with ``relctl trust reset``.
- **Judged files, not status.** A release may be acted on only when every file it reads
  (manifest, tester files) is, blob for blob, what main authorized; ``relctl.yaml`` likewise
  for every release. Nothing a person writes under ``status/`` is an input here.

Called by ``controller.reconcile`` (every pass) and ``controller.cli`` (``relctl trust``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from controller.access import Advance, Divergence, Ledger, TrustError, TrustState
from controller.manifests import CONFIG_FILE
from controller.model import Release, Status
from controller.repofiles import RepoFiles
from controller.state import ControllerState

__all__ = [
    "TRUST_KEY",
    "MainTrust",
    "TrustNotConfigured",
    "TrustSettings",
    "follow_main",
    "reset_trust",
    "saved_trust",
]

log = logging.getLogger("relctl")

#: Where the trust state lives in the controller's state database.
TRUST_KEY = "trust"


class TrustNotConfigured(TrustError):
    """The controller was not told where trust starts."""


@dataclass(frozen=True)
class TrustSettings:
    """What the operator said about trust (options or environment, never the repository)."""

    #: The commit trust starts at on the first start (``--trust-anchor``).
    anchor: str | None = None
    #: Trust whatever main is on the first start (``--trust-on-first-use``).
    first_use: bool = False


@dataclass(frozen=True)
class MainTrust:
    """The ledger's verdict on one tip of main: what main authorized, or why nothing is
    trusted (``diverged``). An ``Authorizer`` for ``reconcile_repository``."""

    state: TrustState
    diverged: Divergence | None
    files: RepoFiles
    ledger: Ledger

    def config_refusal(self) -> str | None:
        """Why relctl.yaml at the tip may not be used, or None."""
        oid = _oid(self.files, CONFIG_FILE)
        found = self.ledger.denial(self.state, {CONFIG_FILE: oid})
        return found.message if found is not None else None

    def denial(self, release: Release, previous: Status | None) -> str | None:
        """Why this release's intent may not be acted on (it becomes Forbidden), or None."""
        paths = release.sources or (release.path,)
        found = self.ledger.denial(self.state, {path: _oid(self.files, path) for path in paths})
        return found.message if found is not None else None


def _oid(files: RepoFiles, path: str) -> str | None:
    entry = files.entry(path)
    return entry.oid if entry is not None else None


def saved_trust(state: ControllerState) -> tuple[TrustState | None, Mapping[str, Any]]:
    """The trust state recorded in the controller's state (None before the first start),
    with how it was started. Raises :class:`TrustError` when the record is corrupt."""
    saved = state.get(TRUST_KEY)
    if saved is None:
        return None, {}
    if not isinstance(saved, Mapping) or not isinstance(saved.get("state"), Mapping):
        raise TrustError(f"the trust record in {state.path} is corrupt; re-anchor trust")
    return TrustState.from_dict(saved["state"]), saved.get("origin", {})


def _record(state: ControllerState, trust: TrustState, origin: Mapping[str, Any]) -> None:
    state.set(TRUST_KEY, {"state": trust.to_dict(), "origin": dict(origin)})


def follow_main(
    ledger: Ledger,
    state: ControllerState,
    tip: str,
    files: RepoFiles,
    settings: TrustSettings,
    *,
    known: TrustState | None = None,
) -> MainTrust:
    """Advance the controller's trust to ``tip`` (``files``: the tip's tree) and record it.

    ``known`` is the state a long-running controller kept from its last pass (it saves
    reading the record). On the first start the anchor comes from ``settings``; a record
    that exists wins over ``settings.anchor`` (re-anchoring is ``relctl trust reset``).
    Raises :class:`TrustNotConfigured` when there is neither, :class:`TrustError` when the
    anchor cannot be trusted.
    """
    current = known
    origin: Mapping[str, Any] = {}
    if current is None:
        current, origin = saved_trust(state)
    if current is None:
        current, origin = _first_start(ledger, tip, settings)
        _record(state, current, origin)
    elif settings.anchor and not _same_commit(settings.anchor, current.anchor):
        log.warning(
            "--trust-anchor %s is ignored: trust is anchored at %s since the first start "
            "(relctl trust show; relctl trust reset re-anchors)",
            settings.anchor[:12],
            current.anchor[:12],
        )
    advance: Advance = ledger.advance(current, tip)
    if advance.diverged is not None:
        log.error("no release is acted on: %s", advance.diverged.message)
    elif advance.state != current:
        _record(state, advance.state, origin or saved_trust(state)[1])
    return MainTrust(advance.state, advance.diverged, files, ledger)


def _first_start(
    ledger: Ledger, tip: str, settings: TrustSettings
) -> tuple[TrustState, Mapping[str, Any]]:
    if settings.anchor:
        started = ledger.start(settings.anchor)
        log.warning("trust anchored at %s (--trust-anchor)", started.anchor[:12])
        return started, {"how": "anchor", "given": settings.anchor}
    if settings.first_use:
        started = ledger.start(tip)
        log.warning(
            "TRUST ON FIRST USE: everything on main at %s is trusted as it is "
            "(--trust-on-first-use); pin --trust-anchor to a reviewed commit instead",
            started.anchor[:12],
        )
        return started, {"how": "first-use"}
    raise TrustNotConfigured(
        "the controller does not know where trust starts: give --trust-anchor COMMIT "
        "(a commit of main whose access.yaml you reviewed; env RELCTL_TRUST_ANCHOR), or "
        "--trust-on-first-use to trust main as it is now (see docs/security.md)"
    )


def _same_commit(given: str, anchor: str) -> bool:
    return anchor.startswith(given.lower()) if len(given) >= 7 else given == anchor


def reset_trust(
    ledger: Ledger, state: ControllerState, anchor: str
) -> tuple[TrustState | None, TrustState]:
    """Re-anchor trust at ``anchor`` (``relctl trust reset``): the operator's explicit
    acknowledgement after main diverged. Returns (the old state, the new one)."""
    try:
        old, _origin = saved_trust(state)
    except TrustError:
        old = None
    new = ledger.start(anchor)
    _record(state, new, {"how": "reset", "given": anchor, "previous": old.anchor if old else None})
    state.bump_trust_generation()  # a running controller's "nothing changed" no longer holds
    log.warning("trust re-anchored at %s (relctl trust reset)", new.anchor[:12])
    return old, new
