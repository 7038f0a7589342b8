"""``list_releases(since=...)``: every change to a release is listed once, after its cursor.

The contract (``controller.platform.protocol.ListsReleases``): a release whose snapshot differs
from what the caller saw up to cursor ``C`` appears in ``list_releases(since=C)``; a release
that did not change does not; a cursor the platform did not hand out is refused. Checked on
the real simulator (manual clock) for every mutation, every time-driven transition (with the
clock moved by the console, and moved "quietly" as real time moves, with nothing written but
the clock), pages, the schema upgrade of an old database, and a hypothesis property over
random operation sequences. Each test runs in-process and over the HTTP contract (a real
server on 127.0.0.1 and the ``HttpPlatform`` adapter).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest
from httputil import TOKEN, serve_app
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.platform.errors import NotFound, PlatformError
from controller.platform.http.client import HttpPlatform
from controller.platform.http.server import create_app
from controller.platform.protocol import (
    CompatibilityStatus,
    ListsReleases,
    Platform,
    ReleaseSnapshot,
    Stage,
)
from controller.platform.sim import Simulator
from controller.platform.sim.store import SCHEMA_VERSION

PILOT_TESTER = "2088000000000001"


class Both(Platform, ListsReleases, Protocol):
    """What the tests drive: an adapter that has ``list_releases`` (in-process or HTTP)."""


def make_simulator(path: Path) -> Simulator:
    """A simulator on a manual clock with three target apps:

    * ``dana``: everything at once, reviewed by a person (mutation tests);
    * ``gcash``: pilot testing required, everything at once, reviewed by a person;
    * ``slow``: builds take 10 s, tests 5 s, an automatic review 30 s (time-driven changes).
    """
    sim = Simulator(path)
    sim.set_clock(manual=True)
    sim.set_app("dana", review="manual", build_seconds=0, test_seconds=0)
    sim.set_app("gcash", review="manual", build_seconds=0, test_seconds=0, pilot_required=True)
    sim.set_app("slow", review="auto", build_seconds=10, test_seconds=5, review_after=30,
                banned_words=("casino",))  # fmt: skip
    for version in ("1.0.0", "1.1.0", "1.2.0", "1.3.0", "1.4.0", "1.5.0"):
        sim.upload("shop", version)
    return sim


@pytest.fixture(params=["inprocess", "http"])
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Simulator, Both]]:
    """The simulator (the platform side) and the adapter under test, in-process or over HTTP."""
    sim = make_simulator(tmp_path / "platform.db")
    if request.param == "inprocess":
        yield sim, sim
    else:
        with serve_app(create_app(sim, token=TOKEN)) as url:
            http = HttpPlatform(url, token=TOKEN)
            yield sim, http
            http.close()
    sim.close()


def drain(platform: ListsReleases, since: str | None, *, limit: int = 1000) -> tuple[
    list[ReleaseSnapshot], str
]:  # fmt: skip
    """Every release listed after ``since``, following ``more`` page by page; the last cursor."""
    listed: list[ReleaseSnapshot] = []
    while True:
        page = platform.list_releases(since, limit=limit)
        listed.extend(page.releases)
        since = page.cursor
        if not page.more:
            return listed, page.cursor


def pass_time_quietly(db: Path, seconds: float) -> None:
    """Move the manual clock the way real time moves: without a call to the simulator, so
    nothing but the clock is written (no time-driven change is made by this)."""
    with sqlite3.connect(db) as conn:
        (value,) = conn.execute("SELECT value FROM meta WHERE key = 'clock'").fetchone()
        clock = json.loads(value)
        clock["manual_now"] += seconds
        conn.execute(
            "UPDATE meta SET value = ? WHERE key = 'clock'", (json.dumps(clock, sort_keys=True),)
        )
    conn.close()


class Keys:
    """Fresh idempotency keys."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self) -> str:
        self.n += 1
        return f"key-{self.n}"


key = Keys()


def created(platform: Platform, app: str = "dana", version: str = "1.0.0") -> str:
    release = platform.create_release("shop", version, app, "production", idempotency_key=key())
    return release.release_id


def under_review(platform: Platform, app: str = "dana", version: str = "1.0.0") -> str:
    rid = created(platform, app, version)
    platform.run_compatibility_test(rid, idempotency_key=key())
    platform.apply(rid, idempotency_key=key())
    return rid


def approved(platform: Platform, sim: Simulator, app: str = "dana") -> str:
    rid = under_review(platform, app)
    sim.review(rid, approve=True)
    return rid


# --- every mutation ---------------------------------------------------------------------------

#: name -> (prepare(platform, sim) -> release id, change(platform, sim, release id))
Prepare = Callable[[Both, Simulator], str]
Change = Callable[[Both, Simulator, str], Any]
MUTATIONS: dict[str, tuple[Prepare, Change]] = {
    "update_basic_info": (
        lambda p, s: created(p),
        lambda p, s, r: p.update_basic_info(r, {"name": "Shop"}, idempotency_key=key()),
    ),
    "update_configuration": (
        lambda p, s: created(p),
        lambda p, s, r: p.update_configuration(r, {"pages": ["a"]}, idempotency_key=key()),
    ),
    "run_compatibility_test": (
        lambda p, s: created(p),
        lambda p, s, r: p.run_compatibility_test(r, idempotency_key=key()),
    ),
    "apply": (
        lambda p, s: (r := created(p), p.run_compatibility_test(r, idempotency_key=key()))[0],
        lambda p, s, r: p.apply(r, idempotency_key=key()),
    ),
    "withdraw": (
        lambda p, s: under_review(p),
        lambda p, s, r: p.withdraw(r, idempotency_key=key()),
    ),
    "review approves (console)": (
        lambda p, s: under_review(p),
        lambda p, s, r: s.review(r, approve=True),
    ),
    "review rejects (console)": (
        lambda p, s: under_review(p),
        lambda p, s, r: s.review(r, approve=False, reason="no description"),
    ),
    "set_testers": (
        lambda p, s: approved(p, s, "gcash"),
        lambda p, s, r: p.set_testers(r, [PILOT_TESTER], idempotency_key=key()),
    ),
    "complete_testing": (
        lambda p, s: approved(p, s, "gcash"),
        lambda p, s, r: p.complete_testing(r, idempotency_key=key()),
    ),
    "cancel": (
        lambda p, s: created(p),
        lambda p, s, r: p.cancel(r, idempotency_key=key()),
    ),
    "set_grayscale": (
        approved,
        lambda p, s, r: p.set_grayscale(r, 20, idempotency_key=key()),
    ),
    "full_release": (
        approved,
        lambda p, s, r: p.full_release(r, idempotency_key=key()),
    ),
    "create_qr_code": (
        lambda p, s: (r := approved(p, s), p.set_grayscale(r, 20, idempotency_key=key()))[0],
        lambda p, s, r: p.create_qr_code(r, idempotency_key=key()),
    ),
}


def test_since_none_lists_every_release_once_in_change_order(
    world: tuple[Simulator, Both],
) -> None:
    _sim, platform = world
    assert drain(platform, None)[0] == []
    first = created(platform, "dana")
    second = created(platform, "gcash")
    platform.update_basic_info(first, {"name": "Shop"}, idempotency_key=key())
    listed, _cursor = drain(platform, None)
    assert [r.release_id for r in listed] == [second, first]  # first changed last
    assert listed == [platform.get_release(second), platform.get_release(first)]


@pytest.mark.parametrize("name", list(MUTATIONS))
def test_a_release_appears_after_each_mutation_and_only_then(
    world: tuple[Simulator, Both], name: str
) -> None:
    sim, platform = world
    prepare, change = MUTATIONS[name]
    rid = prepare(platform, sim)
    before, cursor = drain(platform, None)
    assert drain(platform, cursor)[0] == []
    change(platform, sim, rid)
    listed, after = drain(platform, cursor)
    assert listed == [platform.get_release(rid)]
    assert listed[0] != next(r for r in before if r.release_id == rid)
    assert drain(platform, after)[0] == []


def test_a_new_release_appears_after_the_cursor(world: tuple[Simulator, Both]) -> None:
    _sim, platform = world
    _listed, cursor = drain(platform, None)
    rid = created(platform)
    assert [r.release_id for r in drain(platform, cursor)[0]] == [rid]


def test_a_full_release_lists_the_release_it_archives(world: tuple[Simulator, Both]) -> None:
    sim, platform = world
    old = approved(platform, sim)
    platform.full_release(old, idempotency_key=key())
    new = created(platform, "dana", "1.1.0")
    platform.run_compatibility_test(new, idempotency_key=key())
    platform.apply(new, idempotency_key=key())
    sim.review(new, approve=True)
    _listed, cursor = drain(platform, None)
    platform.full_release(new, idempotency_key=key())
    listed = {r.release_id: r.stage for r in drain(platform, cursor)[0]}
    assert listed == {old: Stage.ARCHIVED, new: Stage.FULL_RELEASE}


def test_a_refused_or_replayed_call_lists_nothing(world: tuple[Simulator, Both]) -> None:
    _sim, platform = world
    rid = created(platform)
    platform.cancel(rid, idempotency_key="cancel-once")
    _listed, cursor = drain(platform, None)
    platform.cancel(rid, idempotency_key="cancel-once")  # replayed: no second effect
    with pytest.raises(PlatformError):
        platform.apply(rid, idempotency_key=key())  # refused: canceled is final
    assert drain(platform, cursor)[0] == []


def test_reads_metrics_and_an_idle_clock_list_nothing(world: tuple[Simulator, Both]) -> None:
    sim, platform = world
    rid = approved(platform, sim)
    pending = under_review(platform, "gcash")  # a person's review, long overdue below
    _listed, cursor = drain(platform, None)
    platform.get_release(rid)
    platform.find_releases("shop", "dana")
    platform.get_feedback(rid)
    sim.releases()
    sim.set_metrics(rid, crash_rate=2.5)  # feedback, not part of the snapshot
    sim.advance(3600)  # nothing the clock decides is pending
    pass_time_quietly(sim.path, 3600)
    assert drain(platform, cursor)[0] == []
    assert platform.get_release(pending).stage is Stage.UNDER_REVIEW


# --- every time-driven transition ---------------------------------------------------------------


def _time_passes(how: str, sim: Simulator, seconds: float) -> None:
    if how == "advance":
        sim.advance(seconds)  # the console moves the clock (and makes what is due)
    else:
        pass_time_quietly(sim.path, seconds)  # only the clock moves; list_releases must notice


TIME_DRIVEN = ["advance", "quietly"]


@pytest.mark.parametrize("how", TIME_DRIVEN)
def test_a_finished_build_is_listed(world: tuple[Simulator, Both], how: str) -> None:
    sim, platform = world
    rid = created(platform, "slow")
    _listed, cursor = drain(platform, None)
    _time_passes(how, sim, 9)
    assert drain(platform, cursor)[0] == []
    _time_passes(how, sim, 1)
    listed, _ = drain(platform, cursor)
    assert [(r.release_id, r.stage) for r in listed] == [(rid, Stage.NEW_VERSION_CREATED)]
    assert listed == [platform.get_release(rid)]


@pytest.mark.parametrize("how", TIME_DRIVEN)
def test_a_failed_build_is_listed(world: tuple[Simulator, Both], how: str) -> None:
    sim, platform = world
    sim.upload("shop", "1.9.0", build_fails=True)
    rid = created(platform, "slow", "1.9.0")
    _listed, cursor = drain(platform, None)
    _time_passes(how, sim, 10)
    listed, _ = drain(platform, cursor)
    assert [(r.release_id, r.stage) for r in listed] == [(rid, Stage.BUILD_FAILED)]


@pytest.mark.parametrize("how", TIME_DRIVEN)
def test_a_finished_compatibility_test_is_listed(world: tuple[Simulator, Both], how: str) -> None:
    sim, platform = world
    rid = created(platform, "slow")
    sim.advance(10)
    platform.run_compatibility_test(rid, idempotency_key=key())
    _listed, cursor = drain(platform, None)
    _time_passes(how, sim, 5)
    listed, _ = drain(platform, cursor)
    assert [r.release_id for r in listed] == [rid]
    report = listed[0].compatibility
    assert report is not None and report.status is CompatibilityStatus.FINISHED
    assert listed == [platform.get_release(rid)]


@pytest.mark.parametrize("how", TIME_DRIVEN)
@pytest.mark.parametrize(
    ("settings_", "description", "stage"),
    [
        ({}, "a shop", Stage.RELEASE_PREPARATION),
        ({"pilot_required": True}, "a shop", Stage.PILOT_TESTING),
        ({"review": "rules"}, "a casino", Stage.REJECTED),
    ],
    ids=["approves", "approves-to-pilot", "rules-reject"],
)
def test_a_review_the_clock_decides_is_listed(
    world: tuple[Simulator, Both],
    how: str,
    settings_: dict[str, Any],
    description: str,
    stage: Stage,
) -> None:
    sim, platform = world
    sim.set_app("slow", **settings_)
    rid = created(platform, "slow")
    sim.advance(10)
    platform.update_basic_info(rid, {"description": description}, idempotency_key=key())
    platform.run_compatibility_test(rid, idempotency_key=key())
    sim.advance(5)
    platform.apply(rid, idempotency_key=key())
    _listed, cursor = drain(platform, None)
    _time_passes(how, sim, 29)
    assert drain(platform, cursor)[0] == []
    _time_passes(how, sim, 1)
    listed, _ = drain(platform, cursor)
    assert [(r.release_id, r.stage) for r in listed] == [(rid, stage)]
    assert listed == [platform.get_release(rid)]


def test_an_overdue_review_decided_once_the_app_reviews_by_itself_is_listed(
    world: tuple[Simulator, Both],
) -> None:
    sim, platform = world
    sim.set_app("slow", review="manual")
    rid = created(platform, "slow")
    sim.advance(10)
    platform.run_compatibility_test(rid, idempotency_key=key())
    sim.advance(5)
    platform.apply(rid, idempotency_key=key())
    sim.advance(3600)
    _listed, cursor = drain(platform, None)
    sim.set_app("slow", review="auto")  # the review is overdue: decided at the next look
    listed, _ = drain(platform, cursor)
    assert [(r.release_id, r.stage) for r in listed] == [(rid, Stage.RELEASE_PREPARATION)]


# --- pages ----------------------------------------------------------------------------------


def test_pages_follow_more_and_a_release_changed_between_pages_comes_again(
    world: tuple[Simulator, Both],
) -> None:
    sim, platform = world
    sim.set_app("tng", build_seconds=0)
    made = [created(platform, app) for app in ("dana", "gcash", "slow", "tng")]
    first = platform.list_releases(None, limit=2)
    assert [r.release_id for r in first.releases] == made[:2] and first.more
    second = platform.list_releases(first.cursor, limit=2)
    assert [r.release_id for r in second.releases] == made[2:] and not second.more
    assert platform.list_releases(second.cursor, limit=2).releases == ()
    platform.cancel(made[0], idempotency_key=key())  # changed after its page was read
    pages = []
    cursor = first.cursor
    while True:
        page = platform.list_releases(cursor, limit=1)
        pages.append(([r.release_id for r in page.releases], page.more))
        cursor = page.cursor
        if not page.more:
            break
    assert pages == [([made[2]], True), ([made[3]], True), ([made[0]], False)]


def test_an_empty_page_keeps_the_cursor_and_says_no_more(world: tuple[Simulator, Both]) -> None:
    _sim, platform = world
    created(platform)
    page = platform.list_releases(None)
    again = platform.list_releases(page.cursor)
    assert again.releases == () and not again.more and again.cursor == page.cursor


def test_a_limit_below_one_is_a_value_error(world: tuple[Simulator, Both]) -> None:
    _sim, platform = world
    with pytest.raises(ValueError, match="limit"):
        platform.list_releases(None, limit=0)


# --- cursors this platform did not hand out ------------------------------------------------------


@pytest.mark.parametrize(
    "garbled",
    ["", "x", "not a cursor!", "cmVsY3RsLXNpbS8xIGZvbyAx", "A" * 5000, "0", "%00"],
)
def test_a_garbled_cursor_is_refused_with_a_way_out(
    world: tuple[Simulator, Both], garbled: str
) -> None:
    _sim, platform = world
    with pytest.raises(NotFound, match=r"list from the start"):
        platform.list_releases(garbled)


def test_a_cursor_of_another_platform_database_is_refused(
    world: tuple[Simulator, Both], tmp_path: Path
) -> None:
    _sim, platform = world
    created(platform)
    other = make_simulator(tmp_path / "other.db")
    foreign = other.list_releases(None).cursor
    other.close()
    with pytest.raises(NotFound, match="not from this platform"):
        platform.list_releases(foreign)


def test_a_recreated_database_refuses_the_old_cursors(tmp_path: Path) -> None:
    db = tmp_path / "platform.db"
    sim = make_simulator(db)
    cursor = sim.list_releases(None).cursor
    sim.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    again = make_simulator(db)
    with pytest.raises(NotFound, match="not from this platform"):
        again.list_releases(cursor)
    again.close()


def test_a_database_restored_from_an_older_copy_refuses_a_cursor_from_after_it(
    tmp_path: Path,
) -> None:
    db = tmp_path / "platform.db"
    sim = make_simulator(db)
    created(sim)
    sim.close()
    shutil.copy(db, tmp_path / "backup.db")  # closed: the WAL is checkpointed into the file
    sim = Simulator(db, create=False)
    rid = created(sim, "gcash")
    sim.cancel(rid, idempotency_key=key())
    cursor = sim.list_releases(None).cursor
    sim.close()
    restored = Simulator(tmp_path / "backup.db", create=False)
    with pytest.raises(NotFound, match="ahead of this platform"):
        restored.list_releases(cursor)
    restored.close()


# --- the schema upgrade --------------------------------------------------------------------------

#: The releases table as schema 1 (relctl before list_releases) created it, verbatim.
SCHEMA_1_RELEASES = """
CREATE TABLE releases (
    release_id   TEXT PRIMARY KEY,
    seq          INTEGER NOT NULL UNIQUE,
    mini_program TEXT NOT NULL,
    target_app   TEXT NOT NULL,
    version      TEXT NOT NULL,
    stage        TEXT NOT NULL,
    -- the earliest pending time-driven change (build, test, review), NULL when none
    due          REAL,
    data         TEXT NOT NULL
)"""


def make_schema_1_database(path: Path) -> list[ReleaseSnapshot]:
    """A schema-1 database holding releases in several stages; returns their snapshots.

    The releases are made by today's simulator, then the file is taken back to schema 1: the
    releases table rebuilt with schema 1's columns (the rows' documents are the same in both
    schemas), the schema version set back, the change-sequence index gone.
    """
    sim = make_simulator(path)
    done = created(sim, "dana")
    sim.cancel(done, idempotency_key=key())
    approved(sim, sim, "gcash")
    created(sim, "slow")  # building: its build finishes later, at the next look
    snapshots = sim.releases()
    sim.close()
    with sqlite3.connect(path) as conn:
        conn.execute("DROP INDEX releases_by_change")
        conn.execute("ALTER TABLE releases RENAME TO releases_v2")
        conn.execute(SCHEMA_1_RELEASES)
        conn.execute(
            "INSERT INTO releases SELECT release_id, seq, mini_program, target_app, version, "
            "stage, due, data FROM releases_v2"
        )
        conn.execute("DROP TABLE releases_v2")
        conn.execute("CREATE INDEX releases_by_target ON releases (mini_program, target_app, seq)")
        conn.execute("CREATE INDEX releases_by_due ON releases (due) WHERE due IS NOT NULL")
        conn.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
        conn.execute("DELETE FROM meta WHERE key = 'platform_id'")
    conn.close()
    return snapshots


def test_an_old_database_is_upgraded_and_lists_everything_once(tmp_path: Path) -> None:
    db = tmp_path / "platform.db"
    before = make_schema_1_database(db)
    with sqlite3.connect(db) as conn:
        columns = {row[1] for row in conn.execute("PRAGMA table_info(releases)")}
    conn.close()
    assert "change_seq" not in columns  # really schema 1
    sim = Simulator(db, create=False)
    listed, cursor = drain(sim, None)
    assert listed == before  # every release once, in release order
    assert drain(sim, cursor)[0] == []
    sim.set_metrics(before[0].release_id, crash_rate=1.0)
    assert drain(sim, cursor)[0] == []  # the digests were filled: nothing spurious
    sim.advance(10)  # the building release finishes its build
    assert [r.release_id for r in drain(sim, cursor)[0]] == [before[-1].release_id]
    sim.close()
    with sqlite3.connect(db) as conn:
        (version,) = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    conn.close()
    assert json.loads(version) == SCHEMA_VERSION == 2


# --- the property ------------------------------------------------------------------------------

OPERATIONS = st.lists(
    st.tuples(
        st.sampled_from(
            [
                "create", "create", "basic_info", "configuration", "test", "apply", "withdraw",
                "approve", "reject", "testers", "complete", "cancel", "grayscale", "full", "qr",
                "advance", "quietly", "quietly", "read", "list", "list", "app_auto", "app_manual",
            ]
        ),
        st.integers(min_value=0, max_value=7),
        st.sampled_from([1, 5, 10, 30, 90]),
    ),
    max_size=40,
)  # fmt: skip


def _operate(sim: Simulator, op: str, pick: int, seconds: int) -> None:
    releases = sim.releases()
    target = releases[pick % len(releases)].release_id if releases else "R-000001"
    apps = ("dana", "gcash", "slow")
    calls: dict[str, Callable[[], Any]] = {
        "create": lambda: sim.create_release(
            "shop", f"1.{pick % 6}.0", apps[pick % 3], "production", idempotency_key=key()
        ),
        "basic_info": lambda: sim.update_basic_info(
            target, {"description": f"d{pick}"}, idempotency_key=key()
        ),
        "configuration": lambda: sim.update_configuration(
            target, {"n": pick}, idempotency_key=key()
        ),
        "test": lambda: sim.run_compatibility_test(target, idempotency_key=key()),
        "apply": lambda: sim.apply(target, idempotency_key=key()),
        "withdraw": lambda: sim.withdraw(target, idempotency_key=key()),
        "approve": lambda: sim.review(target, approve=True),
        "reject": lambda: sim.review(target, approve=False, reason="no"),
        "testers": lambda: sim.set_testers(
            target, [PILOT_TESTER][: pick % 2], idempotency_key=key()
        ),
        "complete": lambda: sim.complete_testing(target, idempotency_key=key()),
        "cancel": lambda: sim.cancel(target, idempotency_key=key()),
        "grayscale": lambda: sim.set_grayscale(target, 10 * (pick + 1), idempotency_key=key()),
        "full": lambda: sim.full_release(target, idempotency_key=key()),
        "qr": lambda: sim.create_qr_code(target, idempotency_key=key()),
        "advance": lambda: sim.advance(seconds),
        "quietly": lambda: pass_time_quietly(sim.path, seconds),
        "read": lambda: sim.get_release(target),
        "app_auto": lambda: sim.set_app(apps[pick % 3], review="auto", review_after=seconds),
        "app_manual": lambda: sim.set_app(apps[pick % 3], review="manual"),
    }
    with contextlib.suppress(PlatformError):  # a refusal changes nothing; the property holds
        calls[op]()


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(
    operations=OPERATIONS,
    page=st.sampled_from([1, 2, 1000]),
    last_wait=st.sampled_from([0, 5, 10, 30]),
)
def test_what_was_seen_plus_the_changes_is_the_platform_now(
    tmp_path_factory: pytest.TempPathFactory,
    operations: list[tuple[str, int, int]],
    page: int,
    last_wait: int,
) -> None:
    """Whatever happened, and however much time passed since (nothing written but the clock),
    the releases seen so far updated with the changes listed since equal the platform now."""
    sim = make_simulator(tmp_path_factory.mktemp("prop") / "platform.db")
    try:
        seen, cursor = drain(sim, None, limit=page)
        known = {r.release_id: r for r in seen}
        for op, pick, seconds in operations:
            if op == "list":
                changes, cursor = drain(sim, cursor, limit=page)
                ids = [r.release_id for r in changes]
                assert len(ids) == len(set(ids))  # each release once per listing
                known.update({r.release_id: r for r in changes})
            else:
                _operate(sim, op, pick, seconds)
        pass_time_quietly(sim.path, last_wait)
        changes, cursor = drain(sim, cursor, limit=page)
        known.update({r.release_id: r for r in changes})
        assert known == {r.release_id: r for r in sim.releases()}
        assert drain(sim, cursor, limit=page)[0] == []
    finally:
        sim.close()
