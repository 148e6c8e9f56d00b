"""Property 6: bad input gets a clear 4xx with a reason, and nothing is written anywhere.

Each case goes through the load handler with the exact API Gateway event shape; afterwards every table is
empty and the ingest stream holds no record.
"""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest

from devstack.lambda_runtime import invoke
from devstack.shapes import rest_api_event
from eventlog.settings import Settings
from handlers.append_request import MAX_BODY_BYTES
from tests.support import KinesisReader

OPEN = {"type": "AccountOpened", "payload": {"owner": "Ada"}}
JSON = ("Content-Type", "application/json")


def body(**fields: Any) -> bytes:
    return orjson.dumps(fields)


def raw(data: str) -> bytes:
    return data.encode()


# (id, aggregate path segment, headers, body bytes, expected status, expected error code, words in message)
CASES: list[tuple[str, str, list[tuple[str, str]], bytes | None, int, str, str]] = [
    (
        "malformed-json",
        "acc-1",
        [JSON],
        raw('{"type": "AccountOpened",'),
        400,
        "invalid_json",
        "not valid JSON",
    ),
    (
        "trailing-garbage",
        "acc-1",
        [JSON],
        raw('{"type": "AccountClosed", "payload": {}} x'),
        400,
        "invalid_json",
        "JSON",
    ),
    ("empty-body", "acc-1", [JSON], None, 400, "empty_body", "empty"),
    ("whitespace-body", "acc-1", [JSON], raw("   \n"), 400, "empty_body", "empty"),
    ("json-array", "acc-1", [JSON], raw("[1, 2]"), 422, "invalid_event", "JSON object"),
    ("json-string", "acc-1", [JSON], raw('"AccountOpened"'), 422, "invalid_event", "JSON object"),
    ("json-null", "acc-1", [JSON], raw("null"), 422, "invalid_event", "JSON object"),
    ("no-content-type", "acc-1", [], body(**OPEN), 415, "unsupported_media_type", "application/json"),
    (
        "text-plain",
        "acc-1",
        [("Content-Type", "text/plain")],
        body(**OPEN),
        415,
        "unsupported_media_type",
        "text/plain",
    ),
    (
        "form-encoded",
        "acc-1",
        [("Content-Type", "application/x-www-form-urlencoded")],
        raw("type=AccountOpened"),
        415,
        "unsupported_media_type",
        "application/json",
    ),
    (
        "latin1-charset",
        "acc-1",
        [("Content-Type", "application/json; charset=latin-1")],
        body(**OPEN),
        415,
        "unsupported_media_type",
        "utf-8",
    ),
    (
        "too-large",
        "acc-1",
        [JSON],
        body(type="AccountOpened", payload={"owner": "x" * (MAX_BODY_BYTES + 10)}),
        413,
        "body_too_large",
        str(MAX_BODY_BYTES),
    ),
    ("missing-type", "acc-1", [JSON], body(payload={"owner": "Ada"}), 422, "invalid_event", "type"),
    ("type-not-string", "acc-1", [JSON], body(type=7, payload={}), 422, "invalid_event", "type"),
    (
        "unknown-type",
        "acc-1",
        [JSON],
        body(type="MoneyPrinted", payload={"amount": 1}),
        422,
        "invalid_event",
        "unknown event type",
    ),
    (
        "class-path-type",
        "acc-1",
        [JSON],
        body(type="domain.ledger.AccountOpened", payload={"owner": "A"}),
        422,
        "invalid_event",
        "unknown event type",
    ),
    ("missing-payload", "acc-1", [JSON], body(type="AccountOpened"), 422, "invalid_event", "payload"),
    (
        "payload-not-object",
        "acc-1",
        [JSON],
        body(type="AccountOpened", payload="Ada"),
        422,
        "invalid_event",
        "JSON object",
    ),
    ("missing-owner", "acc-1", [JSON], body(type="AccountOpened", payload={}), 422, "invalid_event", "owner"),
    (
        "owner-number",
        "acc-1",
        [JSON],
        body(type="AccountOpened", payload={"owner": 42}),
        422,
        "invalid_event",
        "must be a string",
    ),
    (
        "owner-blank",
        "acc-1",
        [JSON],
        body(type="AccountOpened", payload={"owner": "   "}),
        422,
        "invalid_event",
        "blank",
    ),
    (
        "owner-too-long",
        "acc-1",
        [JSON],
        body(type="AccountOpened", payload={"owner": "é" * 201}),
        422,
        "invalid_event",
        "at most 200",
    ),
    (
        "owner-control-char",
        "acc-1",
        [JSON],
        body(type="AccountOpened", payload={"owner": "Ada\u0000"}),
        422,
        "invalid_event",
        "control",
    ),
    (
        "owner-bidi-override",
        "acc-1",
        [JSON],
        body(type="AccountOpened", payload={"owner": "Ada\u202egnp.exe"}),
        422,
        "invalid_event",
        "bidirectional",
    ),
    (
        "lone-surrogate",
        "acc-1",
        [JSON],
        raw('{"type": "AccountOpened", "payload": {"owner": "\\ud800"}}'),
        400,
        "invalid_json",
        "JSON",
    ),
    (
        "extra-payload-field",
        "acc-1",
        [JSON],
        body(type="MoneyDeposited", payload={"amount": 5, "memo": "x"}),
        422,
        "invalid_event",
        "unknown field",
    ),
    (
        "amount-float",
        "acc-1",
        [JSON],
        body(type="MoneyDeposited", payload={"amount": 10.5}),
        422,
        "invalid_event",
        "whole number of cents",
    ),
    (
        "amount-integral-float",
        "acc-1",
        [JSON],
        raw('{"type": "MoneyDeposited", "payload": {"amount": 10.0}}'),
        422,
        "invalid_event",
        "whole number of cents",
    ),
    (
        "amount-string",
        "acc-1",
        [JSON],
        body(type="MoneyDeposited", payload={"amount": "10"}),
        422,
        "invalid_event",
        "whole number of cents",
    ),
    (
        "amount-bool",
        "acc-1",
        [JSON],
        body(type="MoneyDeposited", payload={"amount": True}),
        422,
        "invalid_event",
        "boolean",
    ),
    (
        "amount-zero",
        "acc-1",
        [JSON],
        body(type="MoneyWithdrawn", payload={"amount": 0}),
        422,
        "invalid_event",
        "between 1",
    ),
    (
        "amount-negative",
        "acc-1",
        [JSON],
        body(type="MoneyDeposited", payload={"amount": -5}),
        422,
        "invalid_event",
        "between 1",
    ),
    (
        "amount-huge",
        "acc-1",
        [JSON],
        raw('{"type": "MoneyDeposited", "payload": {"amount": 100000000000000000000}}'),
        422,
        "invalid_event",
        "between 1",
    ),
    (
        "unknown-top-level-field",
        "acc-1",
        [JSON],
        body(**OPEN, version=3),
        422,
        "invalid_event",
        "unknown field",
    ),
    ("event-id-not-uuid", "acc-1", [JSON], body(**OPEN, event_id="abc"), 422, "invalid_event", "UUID"),
    ("event-id-number", "acc-1", [JSON], body(**OPEN, event_id=123), 422, "invalid_event", "UUID"),
    (
        "expected-version-negative",
        "acc-1",
        [JSON],
        body(**OPEN, expected_version=-1),
        422,
        "invalid_event",
        "expected_version",
    ),
    (
        "expected-version-string",
        "acc-1",
        [JSON],
        body(**OPEN, expected_version="1"),
        422,
        "invalid_event",
        "expected_version",
    ),
    (
        "expected-version-bool",
        "acc-1",
        [JSON],
        body(**OPEN, expected_version=False),
        422,
        "invalid_event",
        "expected_version",
    ),
    (
        "occurred-at-naive",
        "acc-1",
        [JSON],
        body(**OPEN, occurred_at="2026-01-01T10:00:00"),
        422,
        "invalid_event",
        "time zone",
    ),
    (
        "occurred-at-garbage",
        "acc-1",
        [JSON],
        body(**OPEN, occurred_at="yesterday"),
        422,
        "invalid_event",
        "ISO 8601",
    ),
    (
        "occurred-at-future",
        "acc-1",
        [JSON],
        body(**OPEN, occurred_at="2999-01-01T00:00:00Z"),
        422,
        "invalid_event",
        "future",
    ),
    ("metadata-not-object", "acc-1", [JSON], body(**OPEN, metadata=["x"]), 422, "invalid_event", "metadata"),
    (
        "metadata-unknown-key",
        "acc-1",
        [JSON],
        body(**OPEN, metadata={"secret": "x"}),
        422,
        "invalid_event",
        "metadata.secret",
    ),
    (
        "metadata-control-char",
        "acc-1",
        [JSON],
        body(**OPEN, metadata={"correlation_id": "a\nb"}),
        422,
        "invalid_event",
        "control",
    ),
    ("aggregate-id-space", "acc%201", [JSON], body(**OPEN), 400, "invalid_aggregate_id", "aggregate_id"),
    (
        "aggregate-id-unicode",
        "%C3%A9t%C3%A9",
        [JSON],
        body(**OPEN),
        400,
        "invalid_aggregate_id",
        "aggregate_id",
    ),
    ("aggregate-id-too-long", "a" * 129, [JSON], body(**OPEN), 400, "invalid_aggregate_id", "1-128"),
    ("aggregate-id-leading-dash", "-acc", [JSON], body(**OPEN), 400, "invalid_aggregate_id", "aggregate_id"),
    (
        "aggregate-id-encoded-slash",
        "a%2Fb",
        [JSON],
        body(**OPEN),
        400,
        "invalid_aggregate_id",
        "aggregate_id",
    ),
    (
        "idempotency-key-space",
        "acc-1",
        [JSON, ("Idempotency-Key", "two words")],
        body(**OPEN),
        400,
        "invalid_idempotency_key",
        "Idempotency-Key",
    ),
    (
        "idempotency-key-too-long",
        "acc-1",
        [JSON, ("Idempotency-Key", "k" * 256)],
        body(**OPEN),
        400,
        "invalid_idempotency_key",
        "Idempotency-Key",
    ),
]


def assert_nothing_written(settings: Settings, dynamodb: Any) -> None:
    for table in (
        settings.events_table,
        settings.state_table,
        settings.event_status_table,
        settings.idempotency_table,
    ):
        assert dynamodb.scan(TableName=table)["Count"] == 0, f"{table} was written"
    records = KinesisReader(settings, settings.ingest_stream).read()
    assert sum(len(r) for r in records.values()) == 0, "the ingest stream got a record"


def test_there_are_at_least_thirty_distinct_cases() -> None:
    assert len({c[0] for c in CASES}) == len(CASES) >= 30


@pytest.mark.parametrize(
    ("case", "aggregate", "headers", "data", "status", "code", "words"), CASES, ids=[c[0] for c in CASES]
)
def test_bad_request_is_refused_with_a_reason_and_nothing_written(
    settings: Settings,
    dynamodb: Any,
    case: str,
    aggregate: str,
    headers: list[tuple[str, str]],
    data: bytes | None,
    status: int,
    code: str,
    words: str,
) -> None:
    # given a request that is wrong in exactly one way
    event = rest_api_event(
        "POST",
        "/aggregates/{aggregate_id}/events",
        f"/aggregates/{aggregate}/events",
        headers=headers,
        body=data,
    )
    # when the load handler gets it
    response = invoke("load", event, prefix="es-test")
    # then it is refused with the status, a stable code and a message that says what was wrong
    answer = orjson.loads(response["body"])
    assert response["statusCode"] == status, answer
    assert answer["error"] == code
    assert words.lower() in (answer["message"] + orjson.dumps(answer.get("details", [])).decode()).lower()
    assert response["headers"]["Content-Type"] == "application/json"
    # and nothing was written anywhere
    assert_nothing_written(settings, dynamodb)


def test_a_binary_body_that_is_not_utf8_is_refused(settings: Settings, dynamodb: Any) -> None:
    event = rest_api_event(
        "POST",
        "/aggregates/{aggregate_id}/events",
        "/aggregates/acc-1/events",
        headers=[JSON],
        body=b"\xff\xfe{}",
    )
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == b"\xff\xfe{}"
    response = invoke("load", event, prefix="es-test")
    assert response["statusCode"] == 400
    assert orjson.loads(response["body"])["error"] == "invalid_json"
    assert_nothing_written(settings, dynamodb)


def test_every_problem_is_listed_not_only_the_first(settings: Settings) -> None:
    event = rest_api_event(
        "POST",
        "/aggregates/{aggregate_id}/events",
        "/aggregates/acc-1/events",
        headers=[JSON],
        body=body(
            type="MoneyDeposited", payload={"amount": "x", "memo": 1}, expected_version=-2, colour="red"
        ),
    )
    answer = orjson.loads(invoke("load", event, prefix="es-test")["body"])
    fields = sorted(d["field"] for d in answer["details"])
    assert fields == ["colour", "expected_version", "payload.amount", "payload.memo"]
