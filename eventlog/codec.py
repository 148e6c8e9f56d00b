"""Codecs between the envelope and its wire forms: DynamoDB items, DynamoDB stream records, Kinesis data.

Events table items keep every envelope field as a top-level attribute, so scans can filter on `type` and
`recorded_at`, except `payload` and `metadata`, which are stored as JSON strings (orjson). That keeps the
payload exact (no float -> Decimal round trip through DynamoDB's number type) and cheap to read back: a raw
Scan response can be decoded with orjson alone.
"""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Mapping
from typing import Any

import orjson

from eventlog.envelope import Event, ReplayInfo, Submission
from eventlog.errors import InvalidEvent

# A DynamoDB attribute value in the low-level wire form: {"S": "..."} or {"N": "1"}.
AttributeValue = dict[str, Any]
Item = dict[str, AttributeValue]
# What boto3 hands back (its TypedDicts) or a stream record holds: read through this looser type.
ItemView = Mapping[str, Any]


def dumps(value: Any) -> bytes:
    """The project's JSON encoder (orjson)."""
    return orjson.dumps(value)


def loads(data: bytes | str) -> Any:
    """The project's JSON decoder (orjson)."""
    return orjson.loads(data)


def event_to_item(event: Event) -> Item:
    """The events table item for a committed event."""
    item: Item = {
        "aggregate_id": {"S": event.aggregate_id},
        "version": {"N": str(event.version)},
        "event_id": {"S": event.event_id},
        "type": {"S": event.type},
        "schema_version": {"N": str(event.schema_version)},
        "occurred_at": {"S": event.occurred_at},
        "recorded_at": {"S": event.recorded_at},
        "payload": {"S": orjson.dumps(event.payload).decode()},
    }
    if event.metadata:
        item["metadata"] = {"S": orjson.dumps(event.metadata).decode()}
    return item


def item_to_event(item: ItemView) -> Event:
    """Decode an events table item (also a DynamoDB stream NewImage, which has the same shape)."""
    try:
        metadata = item.get("metadata")
        return Event(
            event_id=item["event_id"]["S"],
            aggregate_id=item["aggregate_id"]["S"],
            type=item["type"]["S"],
            version=int(item["version"]["N"]),
            schema_version=int(item["schema_version"]["N"]),
            occurred_at=item["occurred_at"]["S"],
            recorded_at=item["recorded_at"]["S"],
            payload=orjson.loads(item["payload"]["S"]),
            metadata=orjson.loads(metadata["S"]) if metadata else {},
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidEvent(f"not an events table item: {exc!r}") from exc


def event_from_stream_record(record: Mapping[str, Any]) -> Event:
    """The committed event carried by a DynamoDB stream record of the events table (view NEW_IMAGE)."""
    try:
        image = record["dynamodb"]["NewImage"]
    except KeyError as exc:
        raise InvalidEvent(f"DynamoDB stream record has no NewImage ({record.get('eventName')})") from exc
    return item_to_event(image)


def submission_to_data(submission: Submission) -> bytes:
    """The ingest stream record's data for a submission."""
    return orjson.dumps(submission.to_dict())


def _json_object(data: bytes, what: str) -> dict[str, Any]:
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent(f"not {what}: {exc}") from exc
    if not isinstance(value, dict):
        raise InvalidEvent(f"not {what}: a JSON {type(value).__name__}, not an object")
    return value


def submission_from_data(data: bytes) -> Submission:
    value = _json_object(data, "a submission")
    try:
        return Submission.from_dict(value)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InvalidEvent(f"not a submission: {exc!r}") from exc


def event_to_data(event: Event) -> bytes:
    """The playback stream record's data for an event (the full JSON envelope)."""
    return orjson.dumps(event.to_dict())


def event_from_data(data: bytes) -> Event:
    value = _json_object(data, "an event envelope")
    try:
        return Event.from_dict(value)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InvalidEvent(f"not an event envelope: {exc!r}") from exc


def kinesis_record_data(record: Mapping[str, Any]) -> bytes:
    """The decoded data of a record in a Lambda Kinesis event (`record["kinesis"]["data"]` is base64)."""
    return base64.b64decode(record["kinesis"]["data"])


def with_replay(event: Event, replay: ReplayInfo) -> Event:
    """The same event, marked as delivered by a replay."""
    return dataclasses.replace(event, replay=replay)
