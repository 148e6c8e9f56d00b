"""Where gateway calls are recorded: the gateway_recordings table (partition key `event_id`, sort key `call`),
a table of its own; bookkeeping never goes in the events table.

One item per (event, call): `call` is the call's stable name for the original processing of the event, and
`name@replay_id` for what a replay did about it (a correction, a suppressed update, a live fallback). So all that
ever happened to one call of one event is one Query away, and a replay never overwrites the original.

`RecordingStore` is the port; `DynamoRecordings` the table, `MemoryRecordings` a dict with the same behaviour
(held to it by one contract test suite, tests/gateways/test_recordings.py).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol

import orjson
from botocore.exceptions import ClientError

from gateways.types import JSON, Recording

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


class RecordingConflict(Exception):
    """A conditional write found the recording in another state than expected (someone else moved it)."""


class RecordingStore(Protocol):
    """What the gateways need from the recordings table."""

    def get(self, event_id: str, call: str) -> Recording | None:
        """One recording, read consistently."""
        ...

    def calls(self, event_id: str, name: str) -> list[Recording]:
        """Every recording of call `name` for the event: the original's and each replay's, oldest first."""
        ...

    def create(self, recording: Recording) -> bool:
        """Write the recording unless one with its key exists; False when one does (nothing written)."""
        ...

    def put(self, recording: Recording) -> None:
        """Write the recording whatever is there (a replay's own, re-done recordings)."""
        ...

    def replace_pending(self, recording: Recording) -> None:
        """Write the recording over one whose status is `pending` (an update's outcome, or another attempt);
        RecordingConflict when it is not pending any more."""
        ...


def recording_to_item(recording: Recording) -> dict[str, Any]:
    """The table item for a recording (JSON fields as strings, so they read back exactly)."""
    item: dict[str, Any] = {
        "event_id": {"S": recording.event_id},
        "call": {"S": recording.call},
        "kind": {"S": recording.kind},
        "status": {"S": recording.status},
        "mode": {"S": recording.mode},
        "aggregate_id": {"S": recording.aggregate_id},
        "version": {"N": str(recording.version)},
        "recorded_at": {"S": recording.recorded_at},
        "updated_at": {"S": recording.updated_at or recording.recorded_at},
        "attempts": {"N": str(recording.attempts)},
    }
    for name in ("request", "response", "wanted"):
        value = getattr(recording, name)
        if value is not None:
            item[name] = {"S": orjson.dumps(value).decode()}
    for name in ("idempotency_key", "replay_id", "note"):
        value = getattr(recording, name)
        if value is not None:
            item[name] = {"S": value}
    if recording.expires_at is not None:
        item["expires_at"] = {"N": str(recording.expires_at)}
    return item


def item_to_recording(item: Mapping[str, Any]) -> Recording:
    """Decode a table item."""

    def text(name: str) -> str | None:
        value = item.get(name)
        return None if value is None else str(value["S"])

    def json(name: str) -> JSON | None:
        value = item.get(name)
        return None if value is None else orjson.loads(value["S"])

    expires = item.get("expires_at")
    return Recording(
        event_id=item["event_id"]["S"],
        call=item["call"]["S"],
        kind=item["kind"]["S"],
        status=item["status"]["S"],
        mode=item["mode"]["S"],
        request=json("request"),
        response=json("response"),
        idempotency_key=text("idempotency_key"),
        aggregate_id=item.get("aggregate_id", {}).get("S", ""),
        version=int(item.get("version", {}).get("N", "0")),
        replay_id=text("replay_id"),
        recorded_at=item.get("recorded_at", {}).get("S", ""),
        updated_at=item.get("updated_at", {}).get("S", ""),
        attempts=int(item.get("attempts", {}).get("N", "0")),
        note=text("note"),
        wanted=json("wanted"),
        expires_at=None if expires is None else int(expires["N"]),
    )


def _order(recordings: list[Recording]) -> list[Recording]:
    # The original first, then the replays' recordings in the order they were made.
    return sorted(recordings, key=lambda r: (not r.is_original, r.recorded_at, r.call))


class DynamoRecordings:
    """The gateway_recordings table."""

    def __init__(self, dynamodb: DynamoDBClient, table: str) -> None:
        self._db = dynamodb
        self.table = table

    def get(self, event_id: str, call: str) -> Recording | None:
        """One recording, read consistently."""
        response = self._db.get_item(
            TableName=self.table,
            Key={"event_id": {"S": event_id}, "call": {"S": call}},
            ConsistentRead=True,
        )
        item = response.get("Item")
        return item_to_recording(item) if item else None

    def calls(self, event_id: str, name: str) -> list[Recording]:
        """Every recording of call `name` for the event, the original first."""
        found: list[Recording] = []
        pages = self._db.get_paginator("query").paginate(
            TableName=self.table,
            KeyConditionExpression="event_id = :e AND begins_with(#call, :name)",
            ExpressionAttributeNames={"#call": "call"},
            ExpressionAttributeValues={":e": {"S": event_id}, ":name": {"S": name}},
            ConsistentRead=True,
        )
        for page in pages:
            for item in page.get("Items", []):
                recording = item_to_recording(item)
                # begins_with also matches a longer name (`rate` and `rates`): keep this call's own.
                if recording.name == name:
                    found.append(recording)
        return _order(found)

    def create(self, recording: Recording) -> bool:
        """Write unless the key exists; False when it does."""
        try:
            self._db.put_item(
                TableName=self.table,
                Item=recording_to_item(recording),
                ConditionExpression="attribute_not_exists(event_id)",
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def put(self, recording: Recording) -> None:
        """Write whatever is there."""
        self._db.put_item(TableName=self.table, Item=recording_to_item(recording))

    def replace_pending(self, recording: Recording) -> None:
        """Write over a pending recording; RecordingConflict when it is not pending."""
        try:
            self._db.put_item(
                TableName=self.table,
                Item=recording_to_item(recording),
                ConditionExpression="#status = :pending",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={":pending": {"S": "pending"}},
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                raise RecordingConflict(
                    f"recording {recording.event_id} {recording.call} is no longer pending"
                ) from exc
            raise


class MemoryRecordings:
    """The same behaviour in a dict (tests, and anyone trying the gateways without a table)."""

    def __init__(self) -> None:
        self._items: dict[tuple[str, str], Recording] = {}
        self._lock = threading.Lock()

    def get(self, event_id: str, call: str) -> Recording | None:
        """One recording."""
        with self._lock:
            return self._items.get((event_id, call))

    def calls(self, event_id: str, name: str) -> list[Recording]:
        """Every recording of call `name` for the event, the original first."""
        with self._lock:
            found = [r for (e, _), r in self._items.items() if e == event_id and r.name == name]
        return _order(found)

    def create(self, recording: Recording) -> bool:
        """Write unless the key exists; False when it does."""
        with self._lock:
            key = (recording.event_id, recording.call)
            if key in self._items:
                return False
            self._items[key] = replace(recording)
            return True

    def put(self, recording: Recording) -> None:
        """Write whatever is there."""
        with self._lock:
            self._items[(recording.event_id, recording.call)] = replace(recording)

    def replace_pending(self, recording: Recording) -> None:
        """Write over a pending recording; RecordingConflict when it is not pending."""
        with self._lock:
            key = (recording.event_id, recording.call)
            current = self._items.get(key)
            if current is None or current.status != "pending":
                raise RecordingConflict(
                    f"recording {recording.event_id} {recording.call} is no longer pending"
                )
            self._items[key] = replace(recording)

    def all(self) -> list[Recording]:
        """Every recording (for tests)."""
        with self._lock:
            return list(self._items.values())
