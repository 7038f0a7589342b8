"""Leader election on the git remote: one ``relctl run`` replica acts, the others wait.

The lease is a ref on the release repository's remote, ``refs/relctl/lease``, pointing at a
parentless commit with an empty tree whose message is JSON: ``{"holder": ID, "renewed":
ISO time, "duration": seconds}``. It is written only with a compare-and-swap,
``git push --force-with-lease=refs/relctl/lease:<the sha read>`` (FACTS.md: atomic on
``file://`` and smart HTTP), so of replicas racing for it exactly one wins.

Expiry never compares two machines' clocks (as client-go's leader election): a replica
remembers when *it* first saw the current lease sha (its own monotonic clock) and may take
the lease over only when that sha has not changed for ``duration`` seconds. The holder counts
its own lease as valid until ``duration`` after the moment *before* its renewal push started,
which is never later than any observer's view, so a standby never takes over while the holder
still believes it leads. The holder renews on every pass (``Lease.acquire``), and a pass
starts no new release once the lease it holds ran out (``Lease.held``).

A replica killed with SIGKILL stops renewing; the others see the sha unchanged for
``duration`` and the first to push takes over: within ``duration`` plus two intervals between
passes, so within two lease periods when the interval is at most half of one
(``relctl run`` requires that).

Git runs through :func:`controller.gitops.run_git` in the controller's own clone.

Called by ``controller.daemon``.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from controller.gitops import GitError, run_git
from controller.metrics import Metrics

__all__ = ["LEASE_REF", "Lease", "LeaseRecord"]

log = logging.getLogger("relctl")

LEASE_REF = "refs/relctl/lease"
#: A lease record is a few dozen bytes of JSON; a larger commit message is not one.
MAX_RECORD_BYTES = 64 * 1024
#: A standby waits for a holder's own lease duration up to this many times its own.
MAX_LEASE_FACTOR = 10
#: Where the clone keeps the lease commit it is about to push.
_LOCAL_REF = "refs/relctl/lease-proposed"
_EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"


@dataclass(frozen=True)
class LeaseRecord:
    """What the lease commit says."""

    holder: str
    renewed: str
    duration: float

    @classmethod
    def parse(cls, message: str) -> LeaseRecord | None:
        """The record, or None when ``message`` is not one. Anyone who can push can write the
        lease ref: a duration that is not a finite number of seconds is not a record."""
        try:
            data = json.loads(message)
            record = cls(str(data["holder"]), str(data["renewed"]), float(data["duration"]))
        except (ValueError, KeyError, TypeError):
            return None
        if not math.isfinite(record.duration) or record.duration < 0:
            return None
        return record


class Lease:
    """This replica's view of the lease on ``origin`` of the clone at ``root``."""

    def __init__(
        self,
        root: Callable[[], Path],
        holder: str,
        duration: float,
        *,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
        timeout: float | None = 30.0,
    ) -> None:
        if duration <= 0:
            raise ValueError("the lease duration must be positive")
        self._root = root
        self.holder = holder
        self.duration = duration
        self._metrics = metrics
        self._clock = clock
        self._wall = wall
        self._timeout = timeout
        #: The lease sha last seen on the remote, and when (our clock) it was first seen.
        self._seen: tuple[str | None, float] | None = None
        #: Until when (our clock) we hold the lease; None when we do not.
        self._valid_until: float | None = None

    def held(self) -> bool:
        """Whether this replica holds the lease right now (by its own, conservative clock)."""
        return self._valid_until is not None and self._clock() < self._valid_until

    def acquire(self) -> bool:
        """Renew the lease if we hold it, take it if it expired; True when we hold it now.

        Raises :class:`~controller.gitops.GitError` when the remote cannot be reached (the
        caller then does not act: a replica that cannot renew must not assume it leads).
        """
        started = self._clock()
        current = self._remote_sha()
        record = self._read(current) if current is not None else None
        if self._seen is None or self._seen[0] != current:
            self._seen = (current, started)
        mine = record is not None and record.holder == self.holder
        if current is not None and not mine and record is not None:
            unchanged_for = started - self._seen[1]
            # duration 0: the holder handed it back on a graceful stop
            # A holder configured with a longer lease is waited for, up to MAX_LEASE_FACTOR
            # times ours: a pushed record claiming a year cannot keep every standby out.
            claimed = min(record.duration, MAX_LEASE_FACTOR * self.duration)
            wait = 0.0 if record.duration == 0 else max(self.duration, claimed)
            if unchanged_for < wait:
                self._lose(f"held by {record.holder}")
                return False
        if self._swap(current):
            was = self.held()
            self._valid_until = started + self.duration
            if self._metrics is not None:
                self._metrics.leader.set(1)
            if not was:
                log.info(
                    "lease %s acquired by %s", LEASE_REF, self.holder,
                    extra={"event": {"action": "lease-acquired"}},
                )  # fmt: skip
            return True
        self._lose("another replica renewed or took it first")
        return False

    def release(self) -> None:
        """On a graceful stop: hand the lease back (an expired lease), so a standby takes
        over at its next pass instead of after a lease period."""
        if not self.held():
            return
        try:
            self._swap(self._remote_sha(), duration=0.0)
        except GitError as error:
            log.warning("could not release the lease: %s", error)
        self._lose("released")

    def _lose(self, why: str) -> None:
        if self._valid_until is not None:
            log.warning("lease %s lost: %s", LEASE_REF, why)
        self._valid_until = None
        if self._metrics is not None:
            self._metrics.leader.set(0)

    # -- git ---------------------------------------------------------------------------------

    def _git(self, *args: str, ok: tuple[int, ...] = (0,)) -> str:
        return run_git(self._root(), *args, ok=ok, timeout=self._timeout).text

    def _remote_sha(self) -> str | None:
        out = self._git("ls-remote", "--", "origin", LEASE_REF)
        line = out.split("\n", 1)[0]
        return line.split("\t", 1)[0] if line else None

    def _read(self, sha: str) -> LeaseRecord | None:
        """The record of the lease commit ``sha`` (fetched when the clone lacks it)."""
        have = run_git(self._root(), "cat-file", "-e", f"{sha}^{{commit}}", ok=(0, 1, 128))
        if have.status != 0:
            self._git("fetch", "--no-tags", "--quiet", "origin", LEASE_REF)
        try:
            message = run_git(
                self._root(), "log", "-1", "--format=%B", sha,
                timeout=self._timeout, max_output=MAX_RECORD_BYTES,
            ).text  # fmt: skip
        except GitError as error:
            log.warning("%s cannot be read as a lease record (%s)", LEASE_REF, error)
            return None
        record = LeaseRecord.parse(message.strip())
        if record is None:
            log.warning("%s holds no lease record; treating it as expired", LEASE_REF)
        return record

    def _swap(self, expected: str | None, *, duration: float | None = None) -> bool:
        """Compare-and-swap the remote lease from ``expected`` to a new record of ours."""
        record = {
            "holder": self.holder,
            "renewed": self._wall().isoformat(),
            "duration": self.duration if duration is None else duration,
        }
        env = {
            "GIT_AUTHOR_NAME": "relctl",
            "GIT_AUTHOR_EMAIL": "relctl@localhost",
            "GIT_COMMITTER_NAME": "relctl",
            "GIT_COMMITTER_EMAIL": "relctl@localhost",
        }
        # the empty tree, written so that commit-tree finds it in any clone
        self._git("hash-object", "-w", "-t", "tree", "--stdin")
        commit = run_git(
            self._root(), "commit-tree", _EMPTY_TREE, "-F", "-",
            input=json.dumps(record, sort_keys=True).encode(), env=env, timeout=self._timeout,
        ).text.strip()  # fmt: skip
        self._git("update-ref", _LOCAL_REF, commit)
        if self._metrics is not None:
            self._metrics.git_push_attempts_total.labels("lease").inc()
        result = run_git(
            self._root(),
            "push",
            "--porcelain",
            "--no-verify",
            f"--force-with-lease={LEASE_REF}:{expected or ''}",
            "origin",
            f"{_LOCAL_REF}:{LEASE_REF}",
            ok=(0, 1),
            timeout=self._timeout,
        )
        for line in result.text.splitlines():
            flag, _, rest = line.partition("\t")
            if rest.startswith(f"{_LOCAL_REF}:{LEASE_REF}"):
                if flag in ("+", "*", " ", "="):
                    self._seen = (commit, self._clock())
                    return True
                return False
        if result.status != 0:
            raise GitError(f"cannot push {LEASE_REF}: {result.err.strip().splitlines()[-1:]}")
        return False
