"""The hot-path encoder must produce exactly what the shared codec would, and refuse what Kinesis would."""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventlog.codec import event_to_data, event_to_item, item_to_event, with_replay
from eventlog.envelope import Event, ReplayInfo
from replayer.errors import ReplayFailed
from replayer.records import MAX_RECORD_BYTES, RecordEncoder, put_records_body

REPLAY = ReplayInfo("replay-1", "fix")

json_leaf = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
events = st.builds(
    Event,
    event_id=st.uuids().map(str),
    aggregate_id=st.text(min_size=1, max_size=60).filter(lambda s: s.strip() == s and s != ""),
    type=st.text(min_size=1, max_size=30),
    version=st.integers(min_value=1, max_value=2**40),
    schema_version=st.integers(min_value=1, max_value=9),
    occurred_at=st.just("2026-11-26T04:26:33.123456Z"),
    recorded_at=st.just("2026-11-26T04:26:34.000001Z"),
    payload=st.dictionaries(st.text(max_size=12), json_value, max_size=6),
    metadata=st.dictionaries(
        st.sampled_from(["correlation_id", "causation_id", "actor"]), st.text(max_size=20)
    ),
)


@settings(max_examples=300, deadline=None)
@given(event=events)
def test_record_data_is_byte_for_byte_the_shared_codecs(event: Event) -> None:
    # given an item as the events table holds it, passed through JSON as a raw Scan page would be
    item = orjson.loads(orjson.dumps(event_to_item(event)))
    # when the replayer encodes it
    encoder = RecordEncoder(REPLAY)
    record = encoder.encode(item)
    # then the data equals event_to_data(with_replay(item_to_event(item))) and the key is the aggregate id
    expected = event_to_data(with_replay(item_to_event(item), REPLAY))
    entry = orjson.loads(record.entry)
    assert base64.b64decode(entry["Data"]) == expected
    assert entry["PartitionKey"] == event.aggregate_id
    assert (record.aggregate_id, record.version, record.event_id) == (
        event.aggregate_id,
        event.version,
        event.event_id,
    )
    assert record.size == len(expected) + len(event.aggregate_id.encode())


def _item(payload: dict[str, Any], aggregate_id: str = "acct-1") -> dict[str, Any]:
    event = Event("e-1", aggregate_id, "MoneyDeposited", 3, 1, "2026-01-01T00:00:00.000000Z",
                  "2026-01-01T00:00:00.000000Z", payload)  # fmt: skip
    return orjson.loads(orjson.dumps(event_to_item(event)))


def test_an_event_too_large_for_one_record_is_a_clear_error_naming_it() -> None:
    encoder = RecordEncoder(REPLAY)
    base = encoder.encode(_item({"memo": ""})).size
    fits = encoder.encode(_item({"memo": "x" * (MAX_RECORD_BYTES - base)}))
    assert fits.size == MAX_RECORD_BYTES
    with pytest.raises(ReplayFailed, match=r"event acct-1 v3 \(e-1\) is 1,048,577 bytes.*at most 1,048,576"):
        encoder.encode(_item({"memo": "x" * (MAX_RECORD_BYTES - base + 1)}))


def test_an_item_that_is_not_an_event_is_named() -> None:
    item = _item({})
    del item["recorded_at"]
    with pytest.raises(ReplayFailed, match="item acct-1 v3 is not an events table item"):
        RecordEncoder(REPLAY).encode(item)
    with pytest.raises(ReplayFailed, match="without an events-table key"):
        RecordEncoder(REPLAY).encode({"foo": {"S": "bar"}})


def test_an_aggregate_id_too_long_for_a_partition_key_is_refused() -> None:
    with pytest.raises(ReplayFailed, match="not a valid Kinesis partition key"):
        RecordEncoder(REPLAY).encode(_item({}, aggregate_id="a" * 257))


def test_a_put_records_body_is_valid_json_with_records_in_order() -> None:
    encoder = RecordEncoder(REPLAY)
    records = [encoder.encode(_item({"n": i}, aggregate_id=f"a-{i}")) for i in range(3)]
    body = orjson.loads(put_records_body('str"eam', records))
    assert body["StreamName"] == 'str"eam'
    assert [r["PartitionKey"] for r in body["Records"]] == ["a-0", "a-1", "a-2"]
