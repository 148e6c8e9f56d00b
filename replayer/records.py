"""From a raw events-table item to a ready-made PutRecords entry, in one pass, with orjson only.

This is the replayer's hot path (see docs/replayer.md, "Where the time goes"): botocore's parsing of a Scan
page and its serialisation of a PutRecords call cost several times more than the data. So a page is decoded
with `orjson.loads` and each item becomes a `Record` holding its PutRecords entry already encoded
(`{"Data":"<base64>","PartitionKey":"<aggregate id>"}`); a call's body is then a join of entries.

The record data is byte for byte `eventlog.codec.event_to_data(with_replay(item_to_event(item), replay))`:
the same envelope keys in the same order, `payload` and `metadata` decoded and re-encoded by orjson exactly as
`item_to_event` and `event_to_data` do (tests/replayer/test_records.py holds the two paths to that).
"""

from __future__ import annotations

import binascii
from collections.abc import Mapping
from typing import Any

import orjson

from eventlog.envelope import ReplayInfo
from replayer.config import MAX_PARTITION_KEY_CHARS
from replayer.errors import ReplayFailed

# Kinesis: a record (data + partition key) holds at most 1 MiB; a PutRecords call at most 500 records and
# 5 MiB (data + partition keys).
MAX_RECORD_BYTES = 1024 * 1024
MAX_CALL_RECORDS = 500
MAX_CALL_BYTES = 5 * 1024 * 1024

_b64 = binascii.b2a_base64
_dumps = orjson.dumps
_loads = orjson.loads


class Record:
    """One event on its way to the stream: its key, its encoded PutRecords entry and its size.

    `part` and `seq` say where it was read (which scan segment or aggregate group, and its place in that
    part's reading order); the checkpoint watermark is built from them. `hash_key` is the ExplicitHashKey the
    sender gave the record when it spreads aggregates over shards (`--spread-shards`), else None.
    """

    __slots__ = ("aggregate_id", "entry", "event_id", "hash_key", "part", "seq", "size", "version")

    def __init__(self, aggregate_id: str, version: int, event_id: str, entry: bytes, size: int) -> None:
        self.aggregate_id = aggregate_id
        self.version = version
        self.event_id = event_id
        self.entry = entry
        # Kinesis counts data plus partition key towards its record, call and shard limits.
        self.size = size
        self.part: Any = None
        self.seq = 0
        self.hash_key: str | None = None

    def __repr__(self) -> str:
        return f"Record({self.aggregate_id!r}, v{self.version}, {self.size} B)"


class RecordEncoder:
    """Turns events-table items (DynamoDB's wire form) into `Record`s marked with one replay."""

    def __init__(self, replay: ReplayInfo, max_record_bytes: int = MAX_RECORD_BYTES) -> None:
        self._replay = replay.to_dict()
        self.max_record_bytes = max_record_bytes

    def encode(self, item: Mapping[str, Any]) -> Record:
        """One item to one record; raise ReplayFailed naming the item if it is not an event or too large."""
        try:
            aggregate_id: str = item["aggregate_id"]["S"]
            version = int(item["version"]["N"])
            event_id: str = item["event_id"]["S"]
            metadata = item.get("metadata")
            # The keys, their order and their values are those of Event.to_dict (the data contract).
            data = _dumps(
                {
                    "event_id": event_id,
                    "aggregate_id": aggregate_id,
                    "type": item["type"]["S"],
                    "version": version,
                    "schema_version": int(item["schema_version"]["N"]),
                    "occurred_at": item["occurred_at"]["S"],
                    "recorded_at": item["recorded_at"]["S"],
                    "payload": _loads(item["payload"]["S"]),
                    "metadata": _loads(metadata["S"]) if metadata else {},
                    "replay": self._replay,
                }
            )
            key = _dumps(aggregate_id)
        except (KeyError, TypeError, ValueError) as exc:
            raise ReplayFailed(f"{_describe(item)} is not an events table item ({exc!r})") from exc
        size = len(data) + (len(aggregate_id) if aggregate_id.isascii() else len(aggregate_id.encode()))
        if size > self.max_record_bytes:
            raise ReplayFailed(
                f"event {aggregate_id} v{version} ({event_id}) is {size:,} bytes as a Kinesis record; "
                f"a record holds at most {self.max_record_bytes:,} bytes (data + partition key)"
            )
        if not 0 < len(aggregate_id) <= MAX_PARTITION_KEY_CHARS:
            raise ReplayFailed(
                f"event {aggregate_id[:40]!r} v{version}: aggregate id is not a valid Kinesis partition key "
                f"(1 to {MAX_PARTITION_KEY_CHARS} characters)"
            )
        entry = b'{"Data":"' + _b64(data, newline=False) + b'","PartitionKey":' + key + b"}"
        return Record(aggregate_id, version, event_id, entry, size)

    def data_of(self, record: Record) -> bytes:
        """The record's data, decoded back from its entry (for tests and diagnostics, not the hot path)."""
        return binascii.a2b_base64(_loads(record.entry)["Data"])


def put_records_body(stream: str, records: list[Record]) -> bytes:
    """The PutRecords request body for these records, in this order."""
    return b'{"StreamName":' + _dumps(stream) + b',"Records":[' + b",".join(r.entry for r in records) + b"]}"


def item_key(item: Mapping[str, Any]) -> tuple[str, int]:
    """(aggregate_id, version) of an events-table key or item in DynamoDB's wire form."""
    return item["aggregate_id"]["S"], int(item["version"]["N"])


def key_item(aggregate_id: str, version: int) -> dict[str, dict[str, str]]:
    """The events-table key for (aggregate_id, version), as ExclusiveStartKey wants it."""
    return {"aggregate_id": {"S": aggregate_id}, "version": {"N": str(version)}}


def _describe(item: Mapping[str, Any]) -> str:
    try:
        return f"item {item['aggregate_id']['S']} v{item['version']['N']}"
    except (KeyError, TypeError):
        return "an item without an events-table key"
