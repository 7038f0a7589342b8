"""The one table of platform rules: versions, stage sets and transitions agree with each other."""

from __future__ import annotations

import pytest

from controller.platform import protocol, rules
from controller.platform.rules import (
    CANCELABLE_STAGES,
    CONFIGURATION_EDITABLE_STAGES,
    FINAL_STAGES,
    IN_FLIGHT_STAGES,
    RELEASABLE_STAGES,
    TRANSITIONS,
    Stage,
    Version,
)


def test_versions_order_numerically_not_as_text() -> None:
    assert Version.parse("1.10.0") > Version.parse("1.9.0")
    assert Version.parse("2.0.0") > Version.parse("1.99.99")
    assert Version.parse("1.4.0") == Version(1, 4, 0)
    assert sorted(map(Version.parse, ["1.10.0", "1.2.0", "1.9.1"])) == [
        Version(1, 2, 0),
        Version(1, 9, 1),
        Version(1, 10, 0),
    ]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "1.0",
        "1.0.0.0",
        "01.0.0",
        "1.00.0",
        "v1.0.0",
        "1.0.0-beta",
        "1.0.0\n",
        " 1.0.0",
        "1..0",
        "-1.0.0",
        "+1.0.0",
        "1.0.\u0661",  # ARABIC-INDIC DIGIT ONE: \d would take it, x.y.z does not
        "\uff11.0.0",  # FULLWIDTH DIGIT ONE
    ],
)
def test_anything_but_strict_ascii_x_y_z_is_not_a_version(text: str) -> None:
    with pytest.raises(ValueError, match=r"use x\.y\.z"):
        Version.parse(text)
    assert Version.parse_or_none(text) is None


def test_a_version_prints_as_it_parses_and_knows_its_next_patch() -> None:
    assert str(Version.parse("1.10.0")) == "1.10.0"
    assert str(Version.parse("0.0.0").next_patch()) == "0.0.1"
    assert Version.parse("1.4.9").next_patch() == Version(1, 4, 10)


def test_every_stage_has_a_row_in_the_transition_table() -> None:
    assert set(TRANSITIONS) == set(Stage)
    assert all(targets <= set(Stage) for targets in TRANSITIONS.values())


def test_final_stages_are_exactly_the_stages_nothing_leaves() -> None:
    assert {stage for stage, targets in TRANSITIONS.items() if not targets} == FINAL_STAGES


def test_cancel_is_possible_exactly_in_flight() -> None:
    can_cancel = {stage for stage, targets in TRANSITIONS.items() if Stage.CANCELED in targets}
    assert can_cancel == CANCELABLE_STAGES == IN_FLIGHT_STAGES
    assert Stage.FULL_RELEASE not in IN_FLIGHT_STAGES


def test_grayscale_and_full_release_start_only_from_releasable_stages() -> None:
    into_release = {
        stage
        for stage, targets in TRANSITIONS.items()
        if targets & {Stage.GRAYSCALE, Stage.FULL_RELEASE}
    }
    assert into_release == RELEASABLE_STAGES


def test_applying_to_release_starts_only_where_the_configuration_is_editable() -> None:
    # UNDER_REVIEW is entered by Apply to Release, from the stages View Configuration edits
    applies = {stage for stage, targets in TRANSITIONS.items() if Stage.UNDER_REVIEW in targets}
    assert applies == CONFIGURATION_EDITABLE_STAGES


def test_protocol_reexports_the_one_stage_enum() -> None:
    assert protocol.Stage is rules.Stage
