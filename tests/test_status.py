"""Status: condition semantics, bounded history, deterministic YAML, tolerant reading, schema,
and the ``relctl status`` table."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from controller import status as status_module
from controller.model import (
    CompatibilitySummary,
    Condition,
    ConditionStatus,
    ConditionType,
    ErrorRecord,
    Event,
    Phase,
    ReviewSummary,
    Status,
    Validation,
)
from controller.output.table import display_width, format_status_table, status_rows
from controller.output.text import human_duration
from controller.platform.protocol import Stage
from controller.status import (
    HEADER,
    append_event,
    format_time,
    parse_status,
    read_statuses,
    remove_condition,
    render_status,
    set_condition,
    status_to_data,
)

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "schemas" / "status.schema.json"
T0 = datetime(2026, 11, 25, 10, 2, tzinfo=UTC)
READY = ConditionType.READY
RECONCILING = ConditionType.RECONCILING
STALLED = ConditionType.STALLED
TRUE = ConditionStatus.TRUE
FALSE = ConditionStatus.FALSE


def minutes(n: int) -> datetime:
    return T0 + timedelta(minutes=n)


def minimal_status(**changes: Any) -> Status:
    status = Status(
        mini_program="shop",
        target_app="gcash",
        version="1.4.0",
        observed_commit="0123456789abcdef0123456789abcdef01234567",
        spec_hash="5f0c2b1a9e8d7c6b",
        phase=Phase.PENDING,
    )
    return replace(status, **changes)


def full_status() -> Status:
    conditions = set_condition((), STALLED, FALSE, "UnderReview", "not stalled", T0)
    conditions = set_condition(
        conditions, READY, FALSE, "RaisingGrayscale", "raising grayscale to 20%", T0
    )
    conditions = set_condition(conditions, RECONCILING, TRUE, "RaisingGrayscale", "set 20%", T0)
    history: tuple[Event, ...] = ()
    for n, (reason, message) in enumerate(
        [
            ("CreatingRelease", "create release of 1.10.0 on gcash"),
            ("Applying", "apply to release: compatibility 97.5% >= 95%"),
            ("UnderReview", "waiting for review since 10:04 (gcash)"),
            ("PilotTesting", "pilot testing with 3 testers: waiting for pilot.complete"),
            ("RaisingGrayscale", "set grayscale 20%"),
        ]
    ):
        history = append_event(history, Event(minutes(n), reason, message))
    return Status(
        mini_program="shop",
        target_app="gcash",
        version="1.10.0",
        observed_commit="0123456789abcdef0123456789abcdef01234567",
        spec_hash="5f0c2b1a9e8d7c6b",
        phase=Phase.GRAYSCALE,
        release_id="rel-000042",
        stage=Stage.GRAYSCALE,
        grayscale=20,
        conditions=conditions,
        compatibility=CompatibilitySummary(
            report_id="rep-7",
            pass_rate=97.5,
            passed=39,
            failed=1,
            configuration_digest="a1b2c3d4e5f60718",
            retest=1,
        ),
        review=ReviewSummary(decision="APPROVED", reason="Looks good: ship it #1"),
        testers=3,
        qr_code="https://qr.example/shop?target=gcash",
        applied_spec_hash="00ff00ff00ff00ff",
        last_error=ErrorRecord(
            code="RateLimited",
            message="too many requests; retry after 30s",
            action="set_grayscale",
            attempts=2,
            time=minutes(5),
        ),
        next_retry=minutes(6),
        errors=(
            Validation(
                file="releases/shop/gcash.yaml",
                line=12,
                column=3,
                path="spec.grayscale",
                message="120 is greater than the maximum of 100",
            ),
        ),
        history=history,
    )


# --------------------------------------------------------------------------------------------
# Conditions
# --------------------------------------------------------------------------------------------


def test_new_condition_takes_now_as_transition_time() -> None:
    conditions = set_condition((), READY, FALSE, "UnderReview", "waiting", minutes(3))
    assert conditions == (Condition(READY, FALSE, "UnderReview", "waiting", minutes(3)),)


def test_message_change_keeps_last_transition_time() -> None:
    before = set_condition((), READY, FALSE, "UnderReview", "waiting since 10:02", T0)
    after = set_condition(before, READY, FALSE, "PilotTesting", "pilot testing", minutes(30))
    assert after == (Condition(READY, FALSE, "PilotTesting", "pilot testing", T0),)


def test_status_flip_moves_last_transition_time() -> None:
    before = set_condition((), READY, FALSE, "RaisingGrayscale", "raising", T0)
    after = set_condition(before, READY, TRUE, "Released", "released", minutes(9))
    assert after[0].last_transition_time == minutes(9)
    assert after[0].status is TRUE


def test_setting_the_same_condition_again_changes_nothing() -> None:
    once = set_condition((), READY, TRUE, "Released", "released", T0)
    twice = set_condition(once, READY, TRUE, "Released", "released", minutes(60))
    assert twice == once
    assert render_status(minimal_status(conditions=twice)) == render_status(
        minimal_status(conditions=once)
    )


def test_conditions_stay_in_ready_reconciling_stalled_order() -> None:
    conditions = set_condition((), STALLED, TRUE, "Rejected", "rejected", T0)
    conditions = set_condition(conditions, RECONCILING, FALSE, "Waiting", "", T0)
    conditions = set_condition(conditions, READY, FALSE, "Rejected", "rejected", T0)
    assert [c.type for c in conditions] == [READY, RECONCILING, STALLED]
    conditions = set_condition(conditions, STALLED, FALSE, "Applying", "re-applying", T0)
    assert [c.type for c in conditions] == [READY, RECONCILING, STALLED]


def test_transition_time_is_whole_seconds_in_utc() -> None:
    plus_eight = timezone(timedelta(hours=8))
    now = datetime(2026, 11, 25, 18, 2, 0, 999_999, tzinfo=plus_eight)
    conditions = set_condition((), READY, TRUE, "Released", "released", now)
    assert conditions[0].last_transition_time == T0
    assert conditions[0].last_transition_time.tzinfo is UTC


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        set_condition((), READY, TRUE, "Released", "released", datetime(2026, 11, 25))


def test_remove_condition() -> None:
    conditions = set_condition((), READY, FALSE, "Applying", "applying", T0)
    conditions = set_condition(conditions, RECONCILING, TRUE, "Applying", "applying", T0)
    assert [c.type for c in remove_condition(conditions, RECONCILING)] == [READY]
    assert remove_condition(conditions, STALLED) == conditions


# --------------------------------------------------------------------------------------------
# History
# --------------------------------------------------------------------------------------------


def test_history_is_newest_last_and_bounded() -> None:
    history: tuple[Event, ...] = ()
    for n in range(25):
        history = append_event(history, Event(minutes(n), "RaisingGrayscale", f"set {n}%"))
    assert len(history) == 20
    assert [e.message for e in history] == [f"set {n}%" for n in range(5, 25)]


def test_custom_history_limit() -> None:
    history: tuple[Event, ...] = ()
    for n in range(5):
        history = append_event(history, Event(minutes(n), "Step", str(n)), limit=3)
    assert [e.message for e in history] == ["2", "3", "4"]
    with pytest.raises(ValueError):
        append_event(history, Event(T0, "Step", "x"), limit=0)


def test_repeated_event_is_not_appended_again() -> None:
    history = append_event((), Event(T0, "UnderReview", "waiting for review"))
    again = append_event(history, Event(minutes(1), "UnderReview", "waiting for review"))
    assert again == history  # keeps the time it first happened


def test_same_reason_with_new_message_is_a_new_event() -> None:
    history = append_event((), Event(T0, "RaisingGrayscale", "set 10%"))
    history = append_event(history, Event(minutes(1), "RaisingGrayscale", "set 20%"))
    assert [e.message for e in history] == ["set 10%", "set 20%"]


def test_event_repeated_after_another_one_is_appended() -> None:
    history: tuple[Event, ...] = ()
    for n, reason in enumerate(["RetryBackoff", "Applying", "RetryBackoff"]):
        history = append_event(history, Event(minutes(n), reason, "x"))
    assert [e.reason for e in history] == ["RetryBackoff", "Applying", "RetryBackoff"]


def test_event_time_is_whole_seconds_in_utc() -> None:
    history = append_event((), Event(T0.replace(microsecond=500), "Released", "released"))
    assert history[0].time == T0


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------


def test_rendered_file_reads_as_a_person_expects() -> None:
    text = render_status(full_status()).decode()
    assert text.startswith(HEADER)
    assert HEADER == "# Written by the relctl controller. Do not edit: changes are overwritten.\n"
    document = yaml.safe_load(text)
    assert list(document) == ["apiVersion", "kind", "metadata", "status"]
    assert document["apiVersion"] == "relctl/v1"
    assert document["kind"] == "ReleaseStatus"
    assert list(document["metadata"]) == ["miniProgram", "targetApp"]
    assert list(document["status"]) == [
        "version",
        "phase",
        "grayscale",
        "observedCommit",
        "specHash",
        "releaseId",
        "stage",
        "conditions",
        "compatibility",
        "review",
        "testers",
        "qrCode",
        "appliedSpecHash",
        "lastError",
        "nextRetry",
        "errors",
        "history",
    ]
    assert "    lastTransitionTime: 2026-11-25T10:02:00Z\n" in text
    assert "  nextRetry: 2026-11-25T10:08:00Z\n" in text
    assert "  version: 1.10.0\n" in text


def test_minimal_status_omits_empty_fields() -> None:
    text = render_status(minimal_status()).decode()
    assert text == (
        HEADER + "apiVersion: relctl/v1\n"
        "kind: ReleaseStatus\n"
        "metadata:\n"
        "  miniProgram: shop\n"
        "  targetApp: gcash\n"
        "status:\n"
        "  version: 1.4.0\n"
        "  phase: Pending\n"
        "  grayscale: 0\n"
        "  observedCommit: 0123456789abcdef0123456789abcdef01234567\n"
        "  specHash: 5f0c2b1a9e8d7c6b\n"
        "  testers: 0\n"
    )


def test_rendering_twice_gives_the_same_bytes() -> None:
    assert render_status(full_status()) == render_status(full_status())


def test_same_state_renders_the_same_bytes_whatever_the_input_order() -> None:
    status = full_status()
    shuffled = replace(status, conditions=tuple(reversed(status.conditions)))
    assert render_status(shuffled) == render_status(status)


def test_pass_rate_100_and_100_0_render_the_same() -> None:
    status = full_status()
    assert status.compatibility is not None
    as_int = replace(status, compatibility=replace(status.compatibility, pass_rate=100))
    as_float = replace(status, compatibility=replace(status.compatibility, pass_rate=100.0))
    assert render_status(as_int) == render_status(as_float)


def test_timestamps_are_rendered_in_utc_with_seconds() -> None:
    jakarta = timezone(timedelta(hours=7))
    moment = datetime(2026, 11, 25, 17, 2, 0, 123_456, tzinfo=jakarta)
    assert format_time(moment) == "2026-11-25T10:02:00Z"
    assert format_time(datetime(999, 1, 2, tzinfo=UTC)) == "0999-01-02T00:00:00Z"
    text = render_status(minimal_status(next_retry=moment)).decode()
    assert "  nextRetry: 2026-11-25T10:02:00Z\n" in text


def test_naive_timestamp_is_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        render_status(minimal_status(next_retry=datetime(2026, 11, 25)))


TRICKY_STRINGS = [
    "1.10",
    "1.10.0",
    "010",
    "0o17",
    "0x1F",
    "1e3",
    "1.5e3",
    "1_000",
    "12:30:45",
    "2026-11-25",
    "2026-11-25T10:02:00Z",
    "true",
    "True",
    "yes",
    "no",
    "on",
    "off",
    "y",
    "null",
    "~",
    "",
    " leading and trailing ",
    "=",
    ".inf",
    ".nan",
    "- not a list",
    "? not a key",
    "key: value",
    "review rejected: missing privacy policy # see console",
    "#not a comment",
    "quote ' and \" inside",
    "'single'",
    "*alias",
    "&anchor",
    "!tag",
    "@at",
    "`tick",
    "%directive",
    "{flow: map}",
    "[flow, seq]",
    "line one\nline two",
    "windows\r\nline",
    "trailing newline\n",
    "tab\there",
    "小程序审核未通过：请补充隐私政策",  # noqa: RUF001 - a real platform message
    "Grayscale 20% 🚀",
    "ñandú — naïve café",
    "\u2028line separator",
    "bell\x07 and escape \x1b[31m",
    "x" * 300,
]


@pytest.mark.parametrize("text", TRICKY_STRINGS)
def test_tricky_strings_round_trip(text: str) -> None:
    status = minimal_status(
        version=text,
        release_id=text,
        qr_code=text,
        review=ReviewSummary(decision=text, reason=text),
        history=(Event(T0, text, text),),
    )
    data = render_status(status)
    assert parse_status(data, file="status/shop/gcash.yaml") == status
    assert yaml.safe_load(data)["status"]["version"] == text


class _PurePythonDumper(yaml.SafeDumper):
    """The status dumper's rules on PyYAML's pure-Python emitter (an install without libyaml)."""


_PurePythonDumper.yaml_representers = dict(status_module._StatusDumper.yaml_representers)
_PurePythonDumper.yaml_implicit_resolvers = {
    first: list(resolvers)
    for first, resolvers in status_module._StatusDumper.yaml_implicit_resolvers.items()
}


def render_without_libyaml(status: Status) -> bytes:
    text = yaml.dump(
        status_to_data(status),
        Dumper=_PurePythonDumper,
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=False,
        width=2**31 - 1,
    )
    return (HEADER + text).encode()


@pytest.mark.parametrize("text", TRICKY_STRINGS)
def test_same_bytes_with_or_without_libyaml(text: str) -> None:
    status = minimal_status(version=text, history=(Event(T0, text, text),))
    assert render_without_libyaml(status) == render_status(status)


@pytest.mark.parametrize("text", ["1.10", "010", "yes", "true", "null", "1e3", "0o17"])
def test_strings_that_look_like_other_types_are_quoted(text: str) -> None:
    rendered = render_status(minimal_status(version=text)).decode()
    assert f"  version: '{text}'\n" in rendered


def test_unicode_is_written_as_is() -> None:
    message = "小程序审核未通过"
    rendered = render_status(minimal_status(history=(Event(T0, "Rejected", message),)))
    assert message.encode() in rendered


def test_long_messages_are_not_folded() -> None:
    message = "word " * 60 + "end"
    rendered = render_status(minimal_status(history=(Event(T0, "Rejected", message),)))
    assert f"    message: {message}\n".encode() in rendered


def test_multi_line_text_stays_on_one_line() -> None:
    rendered = render_status(minimal_status(history=(Event(T0, "BuildFailed", "a\nb"),)))
    assert b'    message: "a\\nb"\n' in rendered


# --------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------


def test_full_status_round_trips() -> None:
    status = full_status()
    assert parse_status(render_status(status), file="status/shop/gcash.yaml") == status


def test_minimal_status_round_trips() -> None:
    status = minimal_status()
    assert parse_status(render_status(status), file="status/shop/gcash.yaml") == status


def test_parsed_timestamps_are_aware_utc() -> None:
    parsed = parse_status(render_status(full_status()), file="status/shop/gcash.yaml")
    assert parsed is not None
    moments = [c.last_transition_time for c in parsed.conditions] + [e.time for e in parsed.history]
    assert parsed.next_retry is not None
    moments.append(parsed.next_retry)
    assert all(moment.tzinfo is UTC for moment in moments)


def test_quoted_and_offset_timestamps_are_read_as_utc() -> None:
    data = render_status(minimal_status(next_retry=T0)).replace(
        b"nextRetry: 2026-11-25T10:02:00Z", b"nextRetry: '2026-11-25T18:02:00+08:00'"
    )
    parsed = parse_status(data, file="status/shop/gcash.yaml")
    assert parsed is not None
    assert parsed.next_retry == T0
    assert parsed.next_retry.tzinfo is UTC


def test_unknown_fields_are_ignored() -> None:
    data = render_status(minimal_status()) + b"  somethingNew: 1\n"
    assert parse_status(data, file="status/shop/gcash.yaml") == minimal_status()


VALID = render_status(minimal_status()).decode()

GARBAGE = {
    "empty": b"",
    "only a comment": HEADER.encode(),
    "not utf-8": b"\xff\xfe\x00\x00garbage\xff",
    "binary": bytes(range(256)),
    "unclosed flow": b"status: [1, 2\n",
    "a list": b"- a\n- b\n",
    "a scalar": b"just text\n",
    "conflict markers": VALID.replace("  phase: Pending\n", "<<<<<<< HEAD\n").encode(),
    "foreign kind": VALID.replace("kind: ReleaseStatus", "kind: Release").encode(),
    "foreign api version": VALID.replace("relctl/v1", "relctl/v2").encode(),
    "no status": VALID.split("status:\n")[0].encode(),
    "unknown phase": VALID.replace("phase: Pending", "phase: Flying").encode(),
    "unquoted float version": VALID.replace("version: 1.4.0", "version: 1.10").encode(),
    "boolean grayscale": VALID.replace("grayscale: 0", "grayscale: true").encode(),
    "missing spec hash": VALID.replace("  specHash: 5f0c2b1a9e8d7c6b\n", "").encode(),
    "duplicate key": (VALID + "  phase: Released\n").encode(),
    "impossible date": (VALID + "  nextRetry: 2026-13-45T10:02:00Z\n").encode(),
    "date without time": (VALID + "  nextRetry: 2026-11-25\n").encode(),
    "python tag": (VALID + "  nextRetry: !!python/object:os.system {}\n").encode(),
    "history not a list": (VALID + "  history: yes\n").encode(),
    "history item not a mapping": (VALID + "  history:\n  - 1\n").encode(),
    "history item without a reason": (
        VALID + "  history:\n  - {time: 2026-11-25T10:02:00Z, message: m}\n"
    ).encode(),
    "history item with a number for a message": (
        VALID + "  history:\n  - {time: 2026-11-25T10:02:00Z, reason: r, message: 7}\n"
    ).encode(),
    "history item with an impossible time": (
        VALID + "  history:\n  - {time: 2026-11-25T25:02:00Z, reason: r, message: m}\n"
    ).encode(),
    "alias bomb": (
        b"a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
        b"c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
        b"apiVersion: relctl/v1\nkind: ReleaseStatus\nmetadata: {miniProgram: s, targetApp: g}\n"
        b"status: {version: '1', phase: Pending, observedCommit: c, specHash: h, history: *d}\n"
    ),
}


@pytest.mark.parametrize("data", GARBAGE.values(), ids=GARBAGE.keys())
def test_garbage_is_not_a_status(data: bytes, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="controller.status"):
        assert parse_status(data, file="status/shop/gcash.yaml") is None
    assert "status/shop/gcash.yaml" in caplog.text


def test_a_bad_history_entry_is_named_by_its_place(caplog: pytest.LogCaptureFixture) -> None:
    data = VALID + "  history:\n  - {time: 2026-11-25T10:02:00Z, reason: r, message: m}\n"
    with caplog.at_level(logging.WARNING, logger="controller.status"):
        assert (
            parse_status((data + "  - {time: 2026-11-25T10:02:00Z}\n").encode(), file="s") is None
        )
    assert "status.history[1].reason is missing" in caplog.text


def test_duplicate_condition_type_is_not_a_status() -> None:
    condition = Condition(READY, TRUE, "Released", "released", T0)
    data = render_status(minimal_status(conditions=(condition, condition)))
    assert parse_status(data, file="status/shop/gcash.yaml") is None


# --------------------------------------------------------------------------------------------
# Generated statuses
# --------------------------------------------------------------------------------------------

texts = st.text(st.characters(codec="utf-8"), max_size=40)
moments = st.datetimes(
    min_value=datetime(1970, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
).map(lambda moment: moment.replace(microsecond=0))
counts = st.integers(min_value=0, max_value=10**6)


@st.composite
def conditions_strategy(draw: st.DrawFn) -> tuple[Condition, ...]:
    types = draw(st.sets(st.sampled_from(list(ConditionType))))
    return tuple(
        Condition(
            type=type_,
            status=draw(st.sampled_from(list(ConditionStatus))),
            reason=draw(texts),
            message=draw(texts),
            last_transition_time=draw(moments),
        )
        for type_ in ConditionType
        if type_ in types
    )


statuses = st.builds(
    Status,
    mini_program=texts.filter(bool),
    target_app=texts.filter(bool),
    version=texts,
    observed_commit=texts,
    spec_hash=texts,
    phase=st.sampled_from(list(Phase)),
    release_id=st.none() | texts,
    stage=st.none() | st.sampled_from(list(Stage)),
    grayscale=st.integers(min_value=0, max_value=100),
    conditions=conditions_strategy(),
    compatibility=st.none()
    | st.builds(
        CompatibilitySummary,
        report_id=texts,
        pass_rate=st.floats(min_value=0, max_value=100, allow_nan=False),
        passed=counts,
        failed=counts,
        configuration_digest=texts,
        retest=counts,
    ),
    review=st.none() | st.builds(ReviewSummary, decision=texts, reason=texts),
    testers=counts,
    qr_code=st.none() | texts,
    applied_spec_hash=st.none() | texts,
    last_error=st.none()
    | st.builds(
        ErrorRecord, code=texts, message=texts, action=texts, attempts=counts, time=moments
    ),
    next_retry=st.none() | moments,
    errors=st.lists(
        st.builds(Validation, file=texts, line=counts, column=counts, path=texts, message=texts),
        max_size=3,
    ).map(tuple),
    history=st.lists(st.builds(Event, time=moments, reason=texts, message=texts), max_size=5).map(
        tuple
    ),
)


@settings(deadline=None)
@given(statuses)
def test_generated_statuses_round_trip_and_match_the_schema(status: Status) -> None:
    data = render_status(status)
    assert render_status(status) == data
    assert render_without_libyaml(status) == data
    assert parse_status(data, file="status/x/y.yaml") == status
    assert_valid(load_for_schema(data))


# --------------------------------------------------------------------------------------------
# Schema
# --------------------------------------------------------------------------------------------


def schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(SCHEMA_PATH.read_text())
    return loaded


def validator() -> Draft202012Validator:
    return Draft202012Validator(schema(), format_checker=Draft202012Validator.FORMAT_CHECKER)


class _TimestampsAsText(yaml.SafeLoader):
    """Reads timestamps as the strings they are in the file (as editors' YAML servers do)."""


def _timestamp_as_text(loader: _TimestampsAsText, node: yaml.Node) -> str:
    assert isinstance(node, yaml.ScalarNode)
    return loader.construct_scalar(node)


_TimestampsAsText.add_constructor("tag:yaml.org,2002:timestamp", _timestamp_as_text)


def load_for_schema(data: bytes) -> Any:
    return yaml.load(data, Loader=_TimestampsAsText)


def assert_valid(document: Any) -> None:
    errors = [error.message for error in validator().iter_errors(document)]
    assert errors == []


def test_schema_is_valid_draft_2020_12() -> None:
    Draft202012Validator.check_schema(schema())
    assert schema()["$id"] == "https://relctl.dev/schemas/status.schema.json"


def test_rendered_statuses_match_the_schema() -> None:
    for status in (full_status(), minimal_status()):
        assert_valid(load_for_schema(render_status(status)))
        assert_valid(status_to_data(status))


def test_every_schema_property_has_a_title_and_description() -> None:
    def walk(node: Any, where: str) -> list[str]:
        missing: list[str] = []
        if isinstance(node, dict):
            for name, child in node.get("properties", {}).items():
                if not ("title" in child and "description" in child):
                    missing.append(f"{where}.{name}")
            if node.get("type") == "object" and node.get("additionalProperties") is not False:
                missing.append(f"{where} allows additional properties")
            for key, child in node.items():
                missing += walk(child, f"{where}.{key}")
        return missing

    assert walk(schema(), "$") == []


def test_schema_enums_match_the_model() -> None:
    properties = schema()["properties"]["status"]["properties"]
    condition = schema()["$defs"]["condition"]["properties"]
    assert properties["phase"]["enum"] == [phase.value for phase in Phase]
    assert properties["stage"]["enum"] == [stage.value for stage in Stage]
    assert condition["type"]["enum"] == [type_.value for type_ in ConditionType]
    assert condition["status"]["enum"] == [status.value for status in ConditionStatus]


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("status", "grayscale"), 101),
        (("status", "phase"), "Flying"),
        (("status", "nextRetry"), "2026-11-25 10:02"),
        (("status", "extra"), 1),
        (("metadata", "miniProgram"), ""),
        (("kind",), "Release"),
    ],
)
def test_schema_rejects_a_broken_status(path: tuple[str, ...], value: Any) -> None:
    document = load_for_schema(render_status(full_status()))
    node = document
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    assert list(validator().iter_errors(document))


# --------------------------------------------------------------------------------------------
# Reading a repository
# --------------------------------------------------------------------------------------------


def write(root: Path, relative: str, data: bytes) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def test_read_statuses_sorted_by_key_skipping_unreadable_files(tmp_path: Path) -> None:
    shop_dana = minimal_status(target_app="dana")
    shop_gcash = minimal_status()
    blog_gcash = minimal_status(mini_program="blog")
    write(tmp_path, "status/shop/gcash.yaml", render_status(shop_gcash))
    write(tmp_path, "status/shop/dana.yaml", render_status(shop_dana))
    write(tmp_path, "status/blog/gcash.yaml", render_status(blog_gcash))
    write(tmp_path, "status/blog/broken.yaml", b"::: not yaml [")
    write(tmp_path, "status/blog/moved.yaml", render_status(blog_gcash))  # wrong path
    write(tmp_path, "status/blog/notes.txt", b"ignored")
    write(tmp_path, "releases/shop/gcash.yaml", b"apiVersion: relctl/v1\nkind: Release\n")
    assert read_statuses(tmp_path) == [blog_gcash, shop_dana, shop_gcash]


def test_read_statuses_without_a_status_folder(tmp_path: Path) -> None:
    assert read_statuses(tmp_path) == []


# --------------------------------------------------------------------------------------------
# `relctl status`
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (-5, "0s"),
        (0, "0s"),
        (59, "59s"),
        (60, "1m"),
        (3 * 60 + 59, "3m"),
        (2 * 3600, "2h"),
        (86399, "23h"),
        (4 * 86400 + 5, "4d"),
        (400 * 86400, "1y"),
    ],
)
def test_human_duration(seconds: float, expected: str) -> None:
    assert human_duration(seconds) == expected


def test_status_rows_use_the_ready_condition() -> None:
    status = full_status()
    rows = status_rows([status, minimal_status(mini_program="blog")], now=minutes(180))
    assert [row["miniProgram"] for row in rows] == ["blog", "shop"]
    assert rows[0]["since"] == "-"
    assert rows[0]["sinceTime"] is None
    assert rows[1] == {
        "miniProgram": "shop",
        "targetApp": "gcash",
        "version": "1.10.0",
        "phase": "Grayscale",
        "grayscale": 20,
        "since": "3h",
        "sinceTime": "2026-11-25T10:02:00Z",
        "reason": "RaisingGrayscale",
        "message": "raising grayscale to 20%",
    }
    json.dumps(rows)  # the CLI's --format json prints the rows as they are


def test_status_rows_fall_back_to_the_last_error() -> None:
    status = minimal_status(
        last_error=ErrorRecord("Transient", "platform unavailable", "apply", 1, T0)
    )
    [row] = status_rows([status], now=T0)
    assert (row["reason"], row["message"]) == ("Transient", "platform unavailable")


def test_status_table_is_aligned() -> None:
    rows = status_rows(
        [full_status(), minimal_status(mini_program="blog", target_app="dana")], now=minutes(4)
    )
    lines = format_status_table(rows).splitlines()
    assert lines[0].split() == [
        "MINI",
        "PROGRAM",
        "APP",
        "VERSION",
        "PHASE",
        "GRAYSCALE",
        "SINCE",
        "REASON",
        "MESSAGE",
    ]
    assert lines[1].split() == ["blog", "dana", "1.4.0", "Pending", "0%", "-"]
    assert lines[2].split()[:7] == [
        "shop",
        "gcash",
        "1.10.0",
        "Grayscale",
        "20%",
        "4m",
        "RaisingGrayscale",
    ]
    for column in ("APP", "VERSION", "PHASE", "GRAYSCALE", "SINCE"):
        start = lines[0].index(column)
        assert lines[1][start - 2 : start] == "  "
        assert lines[2][start - 2 : start] == "  "
        assert lines[2][start] != " "


def test_status_table_truncates_the_message_to_the_width() -> None:
    status = minimal_status(
        conditions=set_condition((), READY, FALSE, "Rejected", "rejected: " + "x" * 300, T0)
    )
    table = format_status_table(status_rows([status], now=T0), width=100)
    row = table.splitlines()[1]
    assert len(row) == 100
    assert row.endswith("...")


def test_status_table_counts_wide_characters() -> None:
    message = "小程序审核未通过，请补充隐私政策" * 5  # noqa: RUF001 - fullwidth on purpose
    status = minimal_status(conditions=set_condition((), READY, FALSE, "Rejected", message, T0))
    row = format_status_table(status_rows([status], now=T0), width=90).splitlines()[1]
    assert display_width(row) <= 90
    assert display_width("小程序") == 6


def test_status_table_strips_newlines_and_terminal_escapes() -> None:
    message = "build failed\n\x1b[31mred\x1b[0m\ttail"
    status = minimal_status(conditions=set_condition((), READY, FALSE, "BuildFailed", message, T0))
    table = format_status_table(status_rows([status], now=T0))
    assert "\x1b" not in table
    assert table.count("\n") == 2
    assert table.splitlines()[1].endswith("build failed [31mred [0m tail")


def test_status_table_without_releases_is_the_header() -> None:
    assert format_status_table([]).splitlines() == [
        "MINI PROGRAM  APP  VERSION  PHASE  GRAYSCALE  SINCE  REASON  MESSAGE"
    ]
