"""The garbage collector paced between the daemon's passes (``CollectorPacing``): what a pass
made is collected after it and then frozen, a cycle that dies frozen waits for the next full
collection, and the time bound brings that one. The clock is fake."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from controller.daemon import CollectorPacing


class Node:
    partner: Node | None = None


def cycle(collected: list[str], name: str) -> Node:
    """Two nodes that point at each other (only the cyclic collector frees them)."""
    a, b = Node(), Node()
    a.partner, b.partner = b, a
    weakref.finalize(a, collected.append, name)
    return a


@pytest.fixture
def pacing() -> Iterator[tuple[CollectorPacing, list[float]]]:
    if not gc.isenabled():
        pytest.skip("the collector is disabled in this process")
    now = [0.0]
    paced = CollectorPacing(full_every=3600.0, clock=lambda: now[0])
    try:
        yield paced, now
    finally:
        paced.close()
        gc.collect()


def test_the_first_pass_is_frozen_as_it_is(pacing: tuple[CollectorPacing, list[float]]) -> None:
    paced, _now = pacing
    paced.after_pass()
    assert gc.get_freeze_count() > 0 and paced.full_collections == 0


def test_a_cycle_a_pass_made_and_dropped_is_collected_after_it(
    pacing: tuple[CollectorPacing, list[float]],
) -> None:
    paced, _now = pacing
    paced.after_pass()
    collected: list[str] = []
    cycle(collected, "this pass's")  # dropped at once: garbage before the pass ends
    paced.after_pass()
    assert collected == ["this pass's"]


def test_a_cycle_that_dies_frozen_waits_for_the_next_full_collection(
    pacing: tuple[CollectorPacing, list[float]],
) -> None:
    paced, now = pacing
    paced.after_pass()
    collected: list[str] = []
    kept = cycle(collected, "kept over a pass")
    paced.after_pass()  # still referenced: frozen
    del kept
    paced.after_pass()
    assert collected == []  # frozen objects are not walked
    now[0] += 3600.0
    paced.after_pass()
    assert collected == ["kept over a pass"] and paced.full_collections == 1


def test_close_gives_every_object_back_to_the_collector(
    pacing: tuple[CollectorPacing, list[float]],
) -> None:
    paced, _now = pacing
    paced.after_pass()
    paced.close()
    assert gc.get_freeze_count() == 0
