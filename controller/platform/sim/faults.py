"""Fault injection of the simulator: which adapter call fails, and how.

A flaky network or platform, reproducible: each decision is drawn from
``Random(f"{seed}:{call_number}")`` with the call counter stored in the database, so a test that
sets a seed sees the same sequence of faults every run. Only adapter calls (the controller's
side) are subject to faults, never the platform side (``relctl platform ...``).

Called by :class:`controller.platform.sim.Simulator` inside a write transaction.
"""

from __future__ import annotations

import random
import sqlite3
from typing import Literal

from controller.platform.errors import RateLimited, Transient
from controller.platform.sim.tables import faults, next_counter

#: What happens to a call: it fails before taking effect, or takes effect but answers Unknown.
Fault = Literal["rate_limited", "transient", "unknown"]


def draw_fault(conn: sqlite3.Connection, *, mutation: bool) -> Fault | None:
    """The fault for the next call: reproducible from the seed and the call counter.

    A read that must fail raises Transient or RateLimited here, after committing the counter
    (nothing else happened); a mutation gets the fault back and the caller raises it. Reads
    never answer Unknown.
    """
    settings = faults(conn)
    if not settings.active:
        return None
    call = next_counter(conn, "fault")
    rng = random.Random(f"{settings.seed}:{call}")
    roll = rng.random()
    fault: Fault | None
    if roll < settings.rate_limited_rate:
        fault = "rate_limited"
    elif roll < settings.rate_limited_rate + settings.error_rate:
        fault = "transient"
    else:
        fault = "unknown" if mutation and rng.random() < settings.unknown_rate else None
    if not mutation and fault is not None:
        retry_after = settings.retry_after
        conn.execute("COMMIT")
        if fault == "rate_limited":
            raise RateLimited(
                f"too many requests; retry after {retry_after:g}s", retry_after=retry_after
            )
        raise Transient("the platform is temporarily unavailable")
    return fault
