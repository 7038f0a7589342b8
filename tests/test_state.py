"""The controller's own memory: staged and confirmed statuses, crash recovery, bad databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from controller.state import ControllerState, StateError


def test_statuses_are_recorded_only_once_the_push_is_confirmed(tmp_path: Path) -> None:
    with ControllerState(tmp_path) as state:
        state.stage("c1", {"shop/gcash": b"a", "shop/dana": b"b"})
        assert state.pushed() == {}
        state.confirm()
        assert state.pushed() == {"shop/gcash": b"a", "shop/dana": b"b"}
        state.stage("c2", {"shop/gcash": b"a2", "shop/dana": None})
        state.discard()
        assert state.pushed() == {"shop/gcash": b"a", "shop/dana": b"b"}
        state.stage("c3", {"shop/gcash": b"a3", "shop/dana": None})
        state.confirm()
        assert state.pushed() == {"shop/gcash": b"a3"}


@pytest.mark.parametrize("reached", [True, False])
def test_a_crash_between_push_and_record_is_settled_by_what_main_has(
    tmp_path: Path, reached: bool
) -> None:
    with ControllerState(tmp_path) as state:
        state.stage("c1", {"shop/gcash": b"a"})
    asked: list[str] = []
    with ControllerState(tmp_path) as state:  # a new process after the crash
        state.settle(lambda commit: asked.append(commit) or reached)
        assert asked == ["c1"]
        assert state.pushed() == ({"shop/gcash": b"a"} if reached else {})
        state.settle(lambda commit: pytest.fail("nothing left to settle"))


def test_what_the_controller_knows_is_kept_apart_from_what_it_pushed(tmp_path: Path) -> None:
    with ControllerState(tmp_path) as state:
        state.remember({"shop/gcash": b"known", "shop/dana": b"d"})
        state.remember({"shop/dana": None})
        assert state.statuses() == {"shop/gcash": b"known"}
        assert state.pushed() == {}


def test_named_values_survive_a_restart(tmp_path: Path) -> None:
    with ControllerState(tmp_path) as state:
        state.set("trust", {"anchor": "abc", "authorized": {"a": "1"}})
    with ControllerState(tmp_path) as state:
        assert state.get("trust") == {"anchor": "abc", "authorized": {"a": "1"}}
        state.set("trust", None)
        assert state.get("trust") is None


def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "state.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StateError, match=r"state\.db cannot be used .* move it away"):
        ControllerState(tmp_path).open()


def test_parsed_statuses_are_read_only_in_the_format_that_wrote_them(tmp_path: Path) -> None:
    with ControllerState(tmp_path) as state:
        state.remember({"shop/gcash": b"yaml"}, {"shop/gcash": (b"d1", b"{}")}, tag="v1")
        assert state.parsed("v1") == {"shop/gcash": (b"d1", b"{}")}
        assert state.parsed("v2") == {}
    with ControllerState(tmp_path) as state:  # a newer relctl: the old rows are dropped
        state.remember({}, {"shop/dana": (b"d2", b"[]")}, tag="v2")
        assert state.parsed("v2") == {"shop/dana": (b"d2", b"[]")}
        assert state.parsed("v1") == {}
        assert state.statuses() == {"shop/gcash": b"yaml"}


def test_forgetting_a_release_forgets_its_parsed_status_and_observation(tmp_path: Path) -> None:
    at = datetime(2025, 1, 15, 9, 0, tzinfo=UTC)
    with ControllerState(tmp_path) as state:
        state.remember(
            {"shop/gcash": b"y", "shop/dana": b"z"}, {"shop/gcash": (b"d", b"{}")}, tag="t"
        )
        state.record_observed({"shop/gcash": at, "shop/dana": at + timedelta(seconds=1)})
        state.remember({"shop/gcash": None})
        assert state.parsed("t") == {}
        assert state.observed() == {"shop/dana": at + timedelta(seconds=1)}
        state.record_observed({"shop/dana": None})
        assert state.observed() == {}


def test_observation_times_survive_a_restart_and_bad_ones_are_left_out(tmp_path: Path) -> None:
    at = datetime(2025, 1, 15, 9, 0, tzinfo=UTC)
    with ControllerState(tmp_path) as state:
        state.record_observed({"shop/gcash": at, "shop/dana": at})
    import sqlite3

    with sqlite3.connect(tmp_path / "state.db") as db:
        db.execute("UPDATE observed SET at = '2025-01-15T09:00:00' WHERE key = 'shop/dana'")
        db.execute("INSERT INTO observed VALUES ('shop/wx', 'not a time')")
    with ControllerState(tmp_path) as state:
        assert state.observed() == {"shop/gcash": at}  # naive or unreadable: observe again
        state.forget_observed()
        assert state.observed() == {}


def test_the_trust_generation_moves_on_every_bump_and_a_staged_push_is_unconfirmed(
    tmp_path: Path,
) -> None:
    with ControllerState(tmp_path) as state:
        assert state.trust_generation() == 0
        state.bump_trust_generation()
        state.bump_trust_generation()
        assert state.trust_generation() == 2
        assert not state.unconfirmed()
        state.stage("c1", {"shop/gcash": b"a"})
        assert state.unconfirmed()
        state.confirm()
        assert not state.unconfirmed()


def test_statuses_and_pushed_share_the_bytes_they_have_in_common(tmp_path: Path) -> None:
    with ControllerState(tmp_path) as state:
        state.remember({"shop/gcash": b"same", "shop/dana": b"known"})
        state.stage("c1", {"shop/gcash": b"same", "shop/dana": b"pushed", "shop/wx": b"gone"})
        state.confirm()
        known, pushed = state.statuses_and_pushed()
        assert known == state.statuses()
        assert pushed == state.pushed()
        assert pushed["shop/gcash"] is known["shop/gcash"]
