"""The state table (the article's data store): each aggregate's latest state and the version it reflects.

Not the system of record: it can be wiped and rebuilt from the events table. Writes are conditional on the
version the writer read, so two writers (live and a replay) can never interleave an aggregate's versions.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from botocore.exceptions import ClientError

from eventlog.codec import AttributeValue, Item, ItemView
from eventlog.errors import ConcurrencyError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


@dataclass(frozen=True, slots=True)
class StateRecord:
    """An aggregate's state after applying its events through `version`. `state` is None while no event
    of the aggregate has been applied (every one so far was refused)."""

    aggregate_id: str
    version: int
    state: dict[str, Any] | None
    updated_at: str
    last_event_id: str
    # The fix or feature replays that recomputed this state (most recent last, a few kept): the write function
    # recomputes an aggregate once per such replay and skips the replay's later events of it.
    replays: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "aggregate_id": self.aggregate_id,
            "version": self.version,
            "state": self.state,
            "updated_at": self.updated_at,
            "last_event_id": self.last_event_id,
        }


def record_to_item(record: StateRecord) -> Item:
    item: Item = {
        "aggregate_id": {"S": record.aggregate_id},
        "version": {"N": str(record.version)},
        "state": {"S": orjson.dumps(record.state).decode()},
        "updated_at": {"S": record.updated_at},
        "last_event_id": {"S": record.last_event_id},
    }
    if record.replays:
        item["replays"] = {"S": orjson.dumps(list(record.replays)).decode()}
    return item


def item_to_record(item: ItemView) -> StateRecord:
    replays = item.get("replays")
    return StateRecord(
        aggregate_id=item["aggregate_id"]["S"],
        version=int(item["version"]["N"]),
        state=orjson.loads(item["state"]["S"]),
        updated_at=item["updated_at"]["S"],
        last_event_id=item["last_event_id"]["S"],
        replays=tuple(orjson.loads(replays["S"])) if replays else (),
    )


class StateStore:
    def __init__(self, dynamodb: DynamoDBClient, table: str) -> None:
        self._db = dynamodb
        self.table = table

    def get(self, aggregate_id: str, consistent: bool = True) -> StateRecord | None:
        response = self._db.get_item(
            TableName=self.table, Key={"aggregate_id": {"S": aggregate_id}}, ConsistentRead=consistent
        )
        item = response.get("Item")
        return item_to_record(item) if item else None

    def version(self, aggregate_id: str, consistent: bool = True) -> int:
        """The version the stored state reflects (0: none yet), reading nothing else of the item."""
        response = self._db.get_item(
            TableName=self.table,
            Key={"aggregate_id": {"S": aggregate_id}},
            ConsistentRead=consistent,
            ProjectionExpression="version",
        )
        item = response.get("Item")
        return int(item["version"]["N"]) if item else 0

    def put(
        self, record: StateRecord, expected_version: int, expected_replays: tuple[str, ...] | None = None
    ) -> None:
        """Write `record` if the stored version is still `expected_version` (0: no record yet), and, when
        `expected_replays` is given, the stored record's replays are still those (a fix replay rewrites a
        state at the same version; this is how a writer that read it before notices)."""
        values: dict[str, AttributeValue] = {}
        if expected_version == 0:
            condition = "attribute_not_exists(aggregate_id)"
        else:
            condition = "version = :expected"
            values[":expected"] = {"N": str(expected_version)}
            if expected_replays is not None:
                if expected_replays:
                    condition += " AND replays = :replays"
                    values[":replays"] = {"S": orjson.dumps(list(expected_replays)).decode()}
                else:
                    condition += " AND attribute_not_exists(replays)"
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "Item": record_to_item(record),
            "ConditionExpression": condition,
        }
        if values:
            kwargs["ExpressionAttributeValues"] = values
        try:
            self._db.put_item(**kwargs)
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                raise ConcurrencyError(
                    f"state of {record.aggregate_id} is no longer at version {expected_version}"
                ) from exc
            raise

    def scan(self) -> Iterator[StateRecord]:
        """Every record in the table (for comparisons after a rebuild)."""
        paginator = self._db.get_paginator("scan")
        for page in paginator.paginate(TableName=self.table, ConsistentRead=True):
            for item in page.get("Items", []):
                yield item_to_record(item)
