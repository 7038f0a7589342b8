"""The JSON form of a status the controller keeps in its state for cold starts.

It must read back exactly what the YAML reads back (the state's cache can never give
``decide`` another status than the record), and anything else must read as "no status".
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from test_status import full_status, statuses

from controller.model import Status
from controller.status import parse_status, render_status, status_from_json, status_to_json


@settings(deadline=None)
@given(statuses)
def test_the_json_form_reads_back_what_the_yaml_reads_back(status: Status) -> None:
    data = status_to_json(status)
    assert status_from_json(data) == parse_status(render_status(status), file="x") == status


def test_a_full_status_survives_json() -> None:
    status = full_status()
    assert status_from_json(status_to_json(status)) == status


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"{",
        b"[]",
        b"null",
        b'{"apiVersion": "relctl/v1", "kind": "ReleaseStatus"}',
        json.dumps({"apiVersion": "relctl/v1", "kind": "Release", "status": {}}).encode(),
        b"\xff\xfe not utf-8",
        b"[" * 100_000,
    ],
    ids=["empty", "truncated", "list", "null", "no-body", "other-kind", "bytes", "deep"],
)
def test_anything_else_is_no_status(data: bytes) -> None:
    assert status_from_json(data) is None


def test_a_wrong_field_type_is_no_status() -> None:
    document = json.loads(status_to_json(full_status()))
    document["status"]["grayscale"] = "ten"
    assert status_from_json(json.dumps(document).encode()) is None
