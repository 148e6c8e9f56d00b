"""The data contract: ids, timestamps and every wire form round-trip exactly."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devstack.shapes import dynamodb_stream_event
from eventlog.codec import (
    event_from_data,
    event_from_stream_record,
    event_to_data,
    event_to_item,
    item_to_event,
    kinesis_record_data,
    submission_from_data,
    submission_to_data,
    with_replay,
)
from eventlog.envelope import (
    Event,
    ReplayInfo,
    Submission,
    canonical_timestamp,
    new_event_id,
    parse_timestamp,
)
from eventlog.errors import InvalidEvent

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
payloads = st.dictionaries(st.text(max_size=10), json_values, max_size=6)


def event(payload: dict, **overrides: object) -> Event:  # type: ignore[type-arg]
    fields: dict = {  # type: ignore[type-arg]
        "event_id": new_event_id(),
        "aggregate_id": "acc-1",
        "type": "MoneyDeposited",
        "version": 3,
        "schema_version": 1,
        "occurred_at": "2026-11-26T04:26:33.123456Z",
        "recorded_at": "2026-11-26T04:26:34.000001Z",
        "payload": payload,
        "metadata": {"actor": "ada"},
    }
    fields.update(overrides)
    return Event(**fields)


def test_event_ids_are_uuid7_and_sort_by_creation_time() -> None:
    ids = [new_event_id() for _ in range(50)]
    for text in ids:
        parsed = uuid.UUID(text)
        assert parsed.version == 7
        assert parsed.variant == uuid.RFC_4122
    millis = [int(text.replace("-", "")[:12], 16) for text in ids]
    assert millis == sorted(millis)
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    assert abs(millis[-1] - now_ms) < 5000
    assert len(set(ids)) == 50


def test_timestamps_are_canonical_fixed_width_utc() -> None:
    assert canonical_timestamp("2026-01-02T03:04:05+02:00") == "2026-01-02T01:04:05.000000Z"
    assert canonical_timestamp("2026-01-02T03:04:05.5Z") == "2026-01-02T03:04:05.500000Z"
    with pytest.raises(ValueError, match="time zone"):
        parse_timestamp("2026-01-02T03:04:05")
    # string order is time order, whatever the offset they were given in
    a = canonical_timestamp(datetime(2026, 1, 1, 23, 0, tzinfo=timezone(timedelta(hours=-5))).isoformat())
    b = canonical_timestamp("2026-01-02T03:30:00Z")
    assert a > b


@given(payloads)
def test_events_table_items_round_trip_exactly(payload: dict) -> None:  # type: ignore[type-arg]
    original = event(payload)
    assert item_to_event(event_to_item(original)) == original


@given(payloads)
def test_playback_records_round_trip_exactly_with_their_replay_mark(payload: dict) -> None:  # type: ignore[type-arg]
    original = with_replay(event(payload), ReplayInfo("r-1", "fix"))
    decoded = event_from_data(event_to_data(original))
    assert decoded == original
    assert decoded.replay == ReplayInfo("r-1", "fix")


def test_submissions_round_trip_through_the_ingest_record() -> None:
    sub = Submission(new_event_id(), "acc-1", "MoneyDeposited", 1, "t1", "t2", {"amount": 5}, {}, 0)
    assert submission_from_data(submission_to_data(sub)) == sub
    kinesis_record = {"kinesis": {"data": base64.b64encode(submission_to_data(sub)).decode()}}
    assert submission_from_data(kinesis_record_data(kinesis_record)) == sub


def test_a_dynamodb_stream_record_carries_the_committed_event() -> None:
    original = event({"amount": 5})
    item = event_to_item(original)
    lambda_event = dynamodb_stream_event(
        [{"eventName": "INSERT", "dynamodb": {"Keys": {}, "NewImage": item, "SequenceNumber": "1"}}],
        stream_arn="arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/x",
        region="us-east-1",
    )
    assert event_from_stream_record(lambda_event["Records"][0]) == original


@pytest.mark.parametrize(
    "data",
    [b"", b"[]", b'{"event_id": "x"}', b"\xff", b'{"event_id":1,"replay":{"replay_id":"r","mode":"x"}}'],
)
def test_undecodable_data_is_an_invalid_event_not_a_crash(data: bytes) -> None:
    with pytest.raises(InvalidEvent):
        event_from_data(data)
    with pytest.raises(InvalidEvent):
        submission_from_data(data)


def test_an_item_missing_attributes_is_an_invalid_event() -> None:
    item = event_to_item(event({}))
    del item["payload"]
    with pytest.raises(InvalidEvent):
        item_to_event(item)
