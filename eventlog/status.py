"""Where each event stands, keyed by event id, in a table of its own (never the events table).

    pending    accepted at the API and put on the ingest stream; not in the log yet
    committed  in the log at `version`; `outcome` says whether the domain applied or refused it
               (absent until the write handler has processed it)
    rejected   refused before recording, with `reason` (an expected_version conflict); nothing in the log

Transitions only go forward: pending -> committed | rejected, and a committed event gains its outcome.
Every write is conditional on that, so a duplicate delivery can never move an event back or sideways.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import orjson
from botocore.exceptions import ClientError

from eventlog.batch import batch_get
from eventlog.codec import AttributeValue, Item, ItemView

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

Status = Literal["pending", "committed", "rejected"]
Outcome = Literal["applied", "refused"]

PENDING_TTL_SECONDS = 7 * 24 * 3600
_FINAL: tuple[Status, ...] = ("committed", "rejected")


@dataclass(frozen=True, slots=True)
class EventStatus:
    event_id: str
    status: Status
    aggregate_id: str
    type: str
    accepted_at: str
    version: int | None = None
    recorded_at: str | None = None
    reason: str | None = None
    outcome: Outcome | None = None
    outcome_reason: str | None = None
    decided_at: str | None = None
    fingerprint: str | None = None
    # Set by the write function: the fix or feature replay whose recomputation last changed the outcome, and
    # the applied reversal that reverses this event.
    outcome_replay_id: str | None = None
    reversed_by_version: int | None = None
    reversed_by_event_id: str | None = None

    @property
    def is_final(self) -> bool:
        return self.status in _FINAL

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape served by `GET /events/{event_id}` (absent fields left out)."""
        data: dict[str, Any] = {
            "event_id": self.event_id,
            "status": self.status,
            "aggregate_id": self.aggregate_id,
            "type": self.type,
            "accepted_at": self.accepted_at,
        }
        for name in (
            "version",
            "recorded_at",
            "reason",
            "outcome",
            "outcome_reason",
            "decided_at",
            "outcome_replay_id",
        ):
            value = getattr(self, name)
            if value is not None:
                data[name] = value
        if self.status == "committed" and self.outcome is None:
            data["outcome"] = "pending"
        if self.reversed_by_version is not None:
            data["reversed_by"] = {"version": self.reversed_by_version, "event_id": self.reversed_by_event_id}
        return data


def request_fingerprint(aggregate_id: str, type_: str, payload: Any, expected_version: int | None) -> str:
    """What makes two requests the same event: a reused event id with a different fingerprint is a conflict,
    not a retry. (occurred_at is left out: a client that lets the server stamp it gets a new time per retry.)"""
    canonical = orjson.dumps([aggregate_id, type_, payload, expected_version], option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()[:32]


def pending_item(event_id: str, aggregate_id: str, type_: str, accepted_at: str, fingerprint: str) -> Item:
    return {
        "event_id": {"S": event_id},
        "status": {"S": "pending"},
        "aggregate_id": {"S": aggregate_id},
        "type": {"S": type_},
        "accepted_at": {"S": accepted_at},
        "fingerprint": {"S": fingerprint},
        # A pending entry whose event never reached the log (the put failed after it was written) expires.
        "expires_at": {"N": str(int(time.time()) + PENDING_TTL_SECONDS)},
    }


def committed_item(
    event_id: str,
    aggregate_id: str,
    type_: str,
    accepted_at: str,
    fingerprint: str,
    version: int,
    recorded_at: str,
) -> Item:
    return {
        "event_id": {"S": event_id},
        "status": {"S": "committed"},
        "aggregate_id": {"S": aggregate_id},
        "type": {"S": type_},
        "accepted_at": {"S": accepted_at},
        "fingerprint": {"S": fingerprint},
        "version": {"N": str(version)},
        "recorded_at": {"S": recorded_at},
    }


def rejected_item(
    event_id: str,
    aggregate_id: str,
    type_: str,
    accepted_at: str,
    fingerprint: str,
    reason: str,
    decided_at: str,
) -> Item:
    return {
        "event_id": {"S": event_id},
        "status": {"S": "rejected"},
        "aggregate_id": {"S": aggregate_id},
        "type": {"S": type_},
        "accepted_at": {"S": accepted_at},
        "fingerprint": {"S": fingerprint},
        "reason": {"S": reason},
        "decided_at": {"S": decided_at},
    }


# The condition every final write carries: the entry is new, or still pending.
NOT_FINAL_CONDITION = "attribute_not_exists(event_id) OR #status = :pending"
NOT_FINAL_NAMES = {"#status": "status"}
NOT_FINAL_VALUES: dict[str, AttributeValue] = {":pending": {"S": "pending"}}


def item_to_status(item: ItemView) -> EventStatus:
    def s(name: str) -> str | None:
        value = item.get(name)
        return value["S"] if value else None

    version = item.get("version")
    reversed_by = item.get("reversed_by_version")
    return EventStatus(
        event_id=item["event_id"]["S"],
        status=item["status"]["S"],
        aggregate_id=item["aggregate_id"]["S"],
        type=item["type"]["S"],
        accepted_at=item["accepted_at"]["S"],
        version=int(version["N"]) if version else None,
        recorded_at=s("recorded_at"),
        reason=s("reason"),
        outcome=s("outcome"),  # type: ignore[arg-type]
        outcome_reason=s("outcome_reason"),
        decided_at=s("decided_at"),
        fingerprint=s("fingerprint"),
        outcome_replay_id=s("outcome_replay_id"),
        reversed_by_version=int(reversed_by["N"]) if reversed_by else None,
        reversed_by_event_id=s("reversed_by_event_id"),
    )


class StatusStore:
    """Reads and writes the event status table."""

    def __init__(self, dynamodb: DynamoDBClient, table: str) -> None:
        self._db = dynamodb
        self.table = table

    def mark_pending(
        self, event_id: str, aggregate_id: str, type_: str, accepted_at: str, fingerprint: str
    ) -> EventStatus | None:
        """Record that an event was accepted. Returns the existing status instead when the id is known."""
        try:
            self._db.put_item(
                TableName=self.table,
                Item=pending_item(event_id, aggregate_id, type_, accepted_at, fingerprint),
                ConditionExpression="attribute_not_exists(event_id)",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            old: Any = exc.response.get("Item")
            return item_to_status(old) if old else self.get(event_id)
        return None

    def forget_pending(self, event_id: str) -> None:
        """Remove a pending entry whose submission never reached the stream (best effort, still pending only)."""
        try:
            self._db.delete_item(
                TableName=self.table,
                Key={"event_id": {"S": event_id}},
                ConditionExpression="#status = :pending",
                ExpressionAttributeNames=NOT_FINAL_NAMES,
                ExpressionAttributeValues=NOT_FINAL_VALUES,
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise

    def get(self, event_id: str, consistent: bool = False) -> EventStatus | None:
        response = self._db.get_item(
            TableName=self.table, Key={"event_id": {"S": event_id}}, ConsistentRead=consistent
        )
        item = response.get("Item")
        return item_to_status(item) if item else None

    def get_many(self, event_ids: Iterable[str], consistent: bool = True) -> dict[str, EventStatus]:
        """Statuses of many events (BatchGetItem through eventlog.batch: 100 keys a call, unprocessed keys
        asked again with backoff, BatchIncomplete when they stay unprocessed)."""
        keys = [{"event_id": {"S": i}} for i in event_ids]
        found = batch_get(self._db, self.table, keys, consistent=consistent)
        return {status.event_id: status for status in map(item_to_status, found)}

    def record_outcome(
        self, event_id: str, version: int, outcome: Outcome, reason: str | None, decided_at: str
    ) -> None:
        """Record whether the domain applied or refused a committed event. Idempotent."""
        self._update_decision(
            event_id,
            version,
            {
                "outcome": {"S": outcome},
                "decided_at": {"S": decided_at},
                "outcome_reason": None if reason is None else {"S": reason},
            },
        )

    def record_decision(
        self,
        event_id: str,
        version: int,
        outcome: Outcome,
        reason: str | None,
        decided_at: str,
        *,
        reversed_by: tuple[int, str] | None = None,
        replay_id: str | None = None,
    ) -> None:
        """Record a recomputed decision (a fix or feature replay, or a reversal's fold): the outcome, which
        applied reversal reverses the event (None: none does), and the replay that decided (None: live).
        Idempotent, and only for the committed entry of this version, like `record_outcome`."""
        self._update_decision(
            event_id,
            version,
            {
                "outcome": {"S": outcome},
                "decided_at": {"S": decided_at},
                "outcome_reason": None if reason is None else {"S": reason},
                "outcome_replay_id": None if replay_id is None else {"S": replay_id},
                "reversed_by_version": None if reversed_by is None else {"N": str(reversed_by[0])},
                "reversed_by_event_id": None if reversed_by is None else {"S": reversed_by[1]},
            },
        )

    def _update_decision(
        self, event_id: str, version: int, fields: Mapping[str, AttributeValue | None]
    ) -> None:
        """Set these attributes of the committed entry of this version (REMOVE those given as None); no-op
        when there is none: an event written to the log by other means (a test environment's replay, a
        restore) has no status to update, and that is not an error."""
        values: dict[str, AttributeValue] = {":committed": {"S": "committed"}, ":v": {"N": str(version)}}
        sets: list[str] = []
        removes: list[str] = []
        for i, (name, value) in enumerate(fields.items()):
            if value is None:
                removes.append(name)
            else:
                sets.append(f"{name} = :a{i}")
                values[f":a{i}"] = value
        update = "SET " + ", ".join(sets) + (" REMOVE " + ", ".join(removes) if removes else "")
        try:
            self._db.update_item(
                TableName=self.table,
                Key={"event_id": {"S": event_id}},
                UpdateExpression=update,
                ConditionExpression="#status = :committed AND version = :v",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=values,
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
