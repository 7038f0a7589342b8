"""The controller's own memory: staged and confirmed statuses, crash recovery, bad databases."""

from __future__ import annotations

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
