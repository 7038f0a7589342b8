"""Benchmark of ``list_releases`` (issue 15): a resync's read of the platform, batched.

Run by ``.venv/bin/python bench/list_releases.py [--releases N]``. Everything is local and real
except the clock: the platform simulator (SQLite, manual clock) in a temporary directory, and
for the HTTP figures the simulator served by ``controller.platform.http.server.create_app`` on
127.0.0.1 (uvicorn in a thread) and read by ``HttpPlatform``.

Setup (timed separately, progress on stderr): ``--apps`` target apps (10) x mini programs make
``--releases`` (10,000) releases, each driven to Grayscale 10% through the adapter (create,
basic info, compatibility test, apply approved at once, set grayscale), the settled state of a
resync.

Then, in-process and over HTTP (``--repeat`` times each, median shown):

1. ``list all``: ``list_releases()`` followed page by page (1,000 per page) to the end: every
   release, the first read of a controller that keeps a cursor.
2. ``list since, nothing changed``: ``list_releases(since=cursor)``: the resync pass of a
   platform where nothing changed.
3. ``list since, 1% changed``: after ``--changed`` releases (1% by default) got a new basic
   info: only those come back.
4. ``release by release`` (for comparison): today's resync, one ``find_releases`` per release,
   on a sample of ``--sample`` releases, extrapolated to all of them (marked ``~``).

Counts are exact (calls, SQL statements of the in-process simulator, bytes of the HTTP
answers); wall-clock figures are noisy on a shared machine, the CPU time of this process (both
sides of the HTTP figures run in it) less so. Exit status 0 when every listing
returns what it must (every release once; nothing; exactly the changed ones), else 1.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from controller.platform.http.client import HttpPlatform
from controller.platform.http.contract import API_PREFIX, LIST_CHANGES_PATH
from controller.platform.http.server import create_app
from controller.platform.protocol import ListsReleases, ReleaseSnapshot
from controller.platform.sim import Simulator

TOKEN = "bench-token-not-a-secret"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@contextmanager
def served(app: Any) -> Iterator[str]:
    """Serve ``app`` on 127.0.0.1 (a free port) in a thread; yields its base URL.

    ``TCP_NODELAY`` as ``relctl platform serve`` has it (uvicorn's own sockets): a socket bound
    here without it makes every answer wait for a delayed ACK (about 40 ms per call).
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off",
                                           access_log=False))  # fmt: skip
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    for _ in range(1000):  # a bound on waiting for start-up
        if server.started:
            break
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def build(db: Path, releases: int, apps: int) -> Simulator:
    """A simulator with ``releases`` releases at Grayscale 10%, made through the adapter."""
    sim = Simulator(db)
    sim.set_clock(manual=True)
    app_ids = [f"app{n:02d}" for n in range(apps)]
    for app in app_ids:
        sim.set_app(app, build_seconds=0, test_seconds=0, review_after=0, review="auto")
    programs = -(-releases // apps)
    made = 0
    started = time.perf_counter()
    for mp in range(programs):
        name = f"mp{mp:05d}"
        sim.upload(name, "1.0.0")
        for app in app_ids:
            if made == releases:
                break
            key = f"{name}-{app}"
            rid = sim.create_release(name, "1.0.0", app, "production",
                                     idempotency_key=f"{key}-c").release_id  # fmt: skip
            sim.update_basic_info(rid, {"name": name, "description": "a shop"},
                                  idempotency_key=f"{key}-b")  # fmt: skip
            sim.run_compatibility_test(rid, idempotency_key=f"{key}-t")
            sim.apply(rid, idempotency_key=f"{key}-a")
            sim.set_grayscale(rid, 10, idempotency_key=f"{key}-g")
            made += 1
        if mp % 100 == 99:
            log(f"  setup: {made}/{releases} releases ({time.perf_counter() - started:.0f} s)")
    log(f"setup: {made} releases at Grayscale 10% in {time.perf_counter() - started:.1f} s")
    return sim


def drain(platform: ListsReleases, since: str | None) -> tuple[list[ReleaseSnapshot], str, int]:
    """Every release listed after ``since``: (releases, last cursor, calls)."""
    listed: list[ReleaseSnapshot] = []
    calls = 0
    while True:
        page = platform.list_releases(since)
        calls += 1
        listed.extend(page.releases)
        since = page.cursor
        if not page.more:
            return listed, page.cursor, calls


@dataclass
class Figure:
    name: str
    #: (wall, CPU of this process: both sides of HTTP run in it) seconds per repetition
    seconds: list[tuple[float, float]]
    calls: int
    count: str

    def row(self) -> str:
        wall = statistics.median(w for w, _cpu in self.seconds) * 1000
        cpu = statistics.median(c for _w, c in self.seconds) * 1000
        return (
            f"  {self.name:<38} {wall:>9.1f} ms wall {cpu:>9.1f} ms cpu  {self.calls:>6} calls"
            f"  {self.count}"
        )


def timed(repeat: int, action: Callable[[], Any]) -> tuple[list[tuple[float, float]], Any]:
    seconds, result = [], None
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        result = action()
        seconds.append((time.perf_counter() - start, time.process_time() - start_cpu))
    return seconds, result


class StatementCounter:
    """Counts the SQL statements the simulator's connection runs (in-process only)."""

    def __init__(self, sim: Simulator) -> None:
        self.count = 0
        sim._store._conn.set_trace_callback(self._seen)

    def _seen(self, _statement: str) -> None:
        self.count += 1


def measure(
    label: str,
    platform: Any,
    sim: Simulator,
    all_ids: list[str],
    args: argparse.Namespace,
    statements: Callable[[], int] | None,
) -> tuple[list[Figure], bool]:
    """The four figures of one adapter; False when a listing is not what it must be."""
    figures: list[Figure] = []
    ok = True

    def listing(name: str, since: str | None, expected: list[str]) -> str:
        nonlocal ok
        before = statements() if statements is not None else 0
        seconds, (listed, cursor, calls) = timed(args.repeat, lambda: drain(platform, since))
        ok &= sorted(r.release_id for r in listed) == expected
        count = f"{len(listed)} releases"
        if statements is not None:
            count += f", {(statements() - before) // args.repeat} SQL statements per listing"
        figures.append(Figure(f"{label}: {name}", seconds, calls, count))
        return str(cursor)

    cursor = listing("list all", None, all_ids)
    listing("list since, nothing changed", cursor, [])
    changed = all_ids[:: max(1, len(all_ids) // args.changed)][: args.changed]
    for n, rid in enumerate(changed):
        sim.update_basic_info(
            rid, {"name": f"{label} changed {n}"}, idempotency_key=f"{label}-x{n}"
        )
    listing(f"list since, {len(changed)} changed", cursor, sorted(changed))

    sample = all_ids[:: max(1, len(all_ids) // args.sample)][: args.sample]
    snapshots = {r.release_id: r for r in sim.releases()}

    def one_by_one() -> None:
        for rid in sample:
            snap = snapshots[rid]
            platform.find_releases(snap.mini_program, snap.target_app)

    seconds, _ = timed(1, one_by_one)
    scale = len(all_ids) / len(sample)
    figures.append(Figure(f"{label}: release by release",
                          [(w * scale, c * scale) for w, c in seconds], len(all_ids),
                          f"~ extrapolated from {len(sample)} find_releases"))  # fmt: skip
    return figures, ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--releases", type=int, default=10_000)
    parser.add_argument("--apps", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--changed", type=int, default=100)
    parser.add_argument("--sample", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="relctl-bench-list-") as tmp:
        sim = build(Path(tmp) / "platform.db", args.releases, args.apps)
        all_ids = sorted(r.release_id for r in sim.releases())
        counter = StatementCounter(sim)
        figures, ok = measure("in-process", sim, sim, all_ids, args, lambda: counter.count)
        sim._store._conn.set_trace_callback(None)
        with served(create_app(sim, token=TOKEN)) as url:
            http = HttpPlatform(url, token=TOKEN)
            more, ok_http = measure("http", http, sim, all_ids, args, None)
            http.close()
            with httpx.Client(base_url=url + API_PREFIX,
                              headers={"Authorization": f"Bearer {TOKEN}"}) as client:  # fmt: skip
                first = client.get(LIST_CHANGES_PATH)
            page_bytes, page_size = len(first.content), len(first.json()["releases"])
        figures += more
        print(f"list_releases over {len(all_ids)} releases (wall-clock noisy; counts exact)")
        for figure in figures:
            print(figure.row())
        print(f"  http: the first page ({page_size} releases) is {page_bytes / 1e6:.2f} MB of JSON")
        sim.close()
        ok &= ok_http
    if not ok:
        print("FAILED: a listing did not return what it must", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
