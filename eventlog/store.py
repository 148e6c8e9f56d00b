"""The event store: the events table (the log) and the commit protocol the pump uses to append to it.

`commit` is the only way events enter the log. For a batch of submissions, in stream order, it

- assigns each aggregate's next version (head + 1), gapless, in the order the submissions arrive;
- refuses a submission whose `expected_version` is not the aggregate's head (recorded as `rejected`);
- drops a submission whose event id is already committed or rejected (a duplicate delivery or client retry);
- writes each event together with its status entry in one DynamoDB transaction, many events a call, so an
  event is never in the log without its status, nor its status without the event.

Every put is conditional: the event's (aggregate_id, version) slot must be free and its status must not be
final. A conflict cancels the whole transaction, so nothing is half-written; the store then reads which
submissions are duplicates and what the heads are now, and tries again.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import orjson
from botocore.exceptions import BotoCoreError, ClientError

from eventlog.batch import BatchIncomplete
from eventlog.codec import Item, event_to_item, item_to_event
from eventlog.envelope import Event, Submission, utc_now
from eventlog.errors import CommitInterrupted, ConcurrencyError
from eventlog.status import (
    NOT_FINAL_CONDITION,
    NOT_FINAL_NAMES,
    NOT_FINAL_VALUES,
    StatusStore,
    committed_item,
    rejected_item,
    request_fingerprint,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

# DynamoDB: TransactWriteItems takes 100 actions and 4 MB; leave room for keys and attribute names.
MAX_TRANSACTION_ACTIONS = 100
MAX_TRANSACTION_BYTES = 3_500_000
MAX_CONFLICT_RETRIES = 6


@dataclass(frozen=True, slots=True)
class CommitResult:
    """What became of one submission."""

    event_id: str
    aggregate_id: str
    result: Literal["committed", "duplicate", "rejected"]
    version: int | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class EventPage:
    events: list[Event]
    next_from_version: int | None


def _expected_version_reason(expected: int, head: int) -> str:
    if head == 0:
        return f"expected_version {expected}, but the aggregate has no events yet"
    return f"expected_version {expected}, but the aggregate is at version {head}"


class EventStore:
    """The events table, plus the status entries written atomically with each event."""

    def __init__(
        self,
        dynamodb: DynamoDBClient,
        events_table: str,
        status_table: str,
        *,
        clock: Callable[[], str] = utc_now,
        head_lookup_concurrency: int = 8,
    ) -> None:
        self._db = dynamodb
        self.events_table = events_table
        self.statuses = StatusStore(dynamodb, status_table)
        self._clock = clock
        self._head_concurrency = head_lookup_concurrency

    # -- reading ---------------------------------------------------------------------------------------

    def head_version(self, aggregate_id: str) -> int:
        """The aggregate's latest version (0 when it has no events), read consistently."""
        response = self._db.query(
            TableName=self.events_table,
            KeyConditionExpression="aggregate_id = :a",
            ExpressionAttributeValues={":a": {"S": aggregate_id}},
            ProjectionExpression="version",
            ScanIndexForward=False,
            Limit=1,
            ConsistentRead=True,
        )
        items = response.get("Items", [])
        return int(items[0]["version"]["N"]) if items else 0

    def head_versions(self, aggregate_ids: Sequence[str]) -> dict[str, int]:
        """Heads of many aggregates, looked up concurrently (one Query each)."""
        ids = list(dict.fromkeys(aggregate_ids))
        if len(ids) <= 1 or self._head_concurrency <= 1:
            return {a: self.head_version(a) for a in ids}
        with ThreadPoolExecutor(max_workers=min(self._head_concurrency, len(ids))) as pool:
            return dict(zip(ids, pool.map(self.head_version, ids), strict=True))

    def read_page(
        self,
        aggregate_id: str,
        from_version: int = 1,
        limit: int = 100,
        to_version: int | None = None,
        consistent: bool = False,
    ) -> EventPage:
        """Up to `limit` events of one aggregate from `from_version` on, and where the next page starts."""
        if to_version is None:
            condition = "aggregate_id = :a AND version >= :from"
            values: dict[str, Any] = {":a": {"S": aggregate_id}, ":from": {"N": str(from_version)}}
        else:
            condition = "aggregate_id = :a AND version BETWEEN :from AND :to"
            values = {
                ":a": {"S": aggregate_id},
                ":from": {"N": str(from_version)},
                ":to": {"N": str(to_version)},
            }
        events: list[Event] = []
        start_key: dict[str, Any] | None = None
        # Not a paginator: the page's size is the caller's `limit` and what it hands back is where the next
        # page starts (an API client's resume token), not every page to the end. Bounded: at most `limit`
        # items in all, and each call starts after the last key the one before read (no filter, so a page
        # that ends early carries items or is the last).
        while len(events) < limit:
            kwargs: dict[str, Any] = {
                "TableName": self.events_table,
                "KeyConditionExpression": condition,
                "ExpressionAttributeValues": values,
                "Limit": limit - len(events),
                "ConsistentRead": consistent,
            }
            if start_key:
                kwargs["ExclusiveStartKey"] = start_key
            response = self._db.query(**kwargs)
            events.extend(item_to_event(item) for item in response.get("Items", []))
            start_key = response.get("LastEvaluatedKey")
            if not start_key:
                break
        more = start_key is not None or len(events) >= limit
        next_from = events[-1].version + 1 if events and more else None
        if next_from is not None and to_version is not None and next_from > to_version:
            next_from = None
        return EventPage(events=events, next_from_version=next_from)

    def read(
        self,
        aggregate_id: str,
        from_version: int = 1,
        to_version: int | None = None,
        consistent: bool = False,
    ) -> Iterator[Event]:
        """Every event of one aggregate in version order, from `from_version` through `to_version`."""
        next_from: int | None = from_version
        while next_from is not None:
            page = self.read_page(aggregate_id, next_from, 1000, to_version, consistent)
            yield from page.events
            next_from = page.next_from_version

    def get(self, aggregate_id: str, version: int) -> Event | None:
        response = self._db.get_item(
            TableName=self.events_table,
            Key={"aggregate_id": {"S": aggregate_id}, "version": {"N": str(version)}},
            ConsistentRead=True,
        )
        item = response.get("Item")
        return item_to_event(item) if item else None

    # -- appending -------------------------------------------------------------------------------------

    def commit(self, submissions: Sequence[Submission]) -> list[CommitResult]:
        """Append submissions to the log in order. See the module docstring for the rules.

        Raises CommitInterrupted(index) when the table cannot take a write: submissions before `index` are
        committed (or settled as duplicates or rejections), the rest are not, and the caller retries them.
        """
        results: list[CommitResult | None] = [None] * len(submissions)
        heads: dict[str, int] = {}
        start = 0
        while start < len(submissions):
            end = _group_end(submissions, start)
            try:
                missing = [s.aggregate_id for s in submissions[start:end] if s.aggregate_id not in heads]
                heads.update(self.head_versions(missing))
                self._commit_group(submissions, range(start, end), heads, results)
            except (ClientError, BotoCoreError, ConcurrencyError, BatchIncomplete) as exc:
                # BatchIncomplete: the status table kept throttling the look-up of duplicates.
                raise CommitInterrupted(start, exc) from exc
            start = end
        return [r for r in results if r is not None]

    def _commit_group(
        self,
        submissions: Sequence[Submission],
        indexes: range,
        heads: dict[str, int],
        results: list[CommitResult | None],
    ) -> None:
        remaining = list(indexes)
        for attempt in range(MAX_CONFLICT_RETRIES):
            if not remaining:
                return
            recorded_at = self._clock()
            planned = dict(heads)
            actions: list[dict[str, Any]] = []
            outcomes: list[tuple[int, CommitResult]] = []
            for i in remaining:
                sub = submissions[i]
                head = planned[sub.aggregate_id]
                fingerprint = request_fingerprint(
                    sub.aggregate_id, sub.type, sub.payload, sub.expected_version
                )
                if sub.expected_version is not None and sub.expected_version != head:
                    reason = _expected_version_reason(sub.expected_version, head)
                    actions.append(
                        self._status_put(
                            rejected_item(
                                sub.event_id,
                                sub.aggregate_id,
                                sub.type,
                                sub.accepted_at,
                                fingerprint,
                                reason,
                                recorded_at,
                            )
                        )
                    )
                    outcomes.append(
                        (i, CommitResult(sub.event_id, sub.aggregate_id, "rejected", None, reason))
                    )
                    continue
                version = head + 1
                planned[sub.aggregate_id] = version
                actions.append(
                    {
                        "Put": {
                            "TableName": self.events_table,
                            "Item": event_to_item(sub.to_event(version, recorded_at)),
                            "ConditionExpression": "attribute_not_exists(version)",
                        }
                    }
                )
                actions.append(
                    self._status_put(
                        committed_item(
                            sub.event_id,
                            sub.aggregate_id,
                            sub.type,
                            sub.accepted_at,
                            fingerprint,
                            version,
                            recorded_at,
                        )
                    )
                )
                outcomes.append((i, CommitResult(sub.event_id, sub.aggregate_id, "committed", version)))
            try:
                self._db.transact_write_items(
                    TransactItems=actions,  # type: ignore[arg-type]
                    ClientRequestToken=_token(actions),
                )
            except ClientError as exc:
                if exc.response["Error"]["Code"] != "TransactionCanceledException":
                    raise
                cancelled: Any = exc.response.get("CancellationReasons", [])
                reasons = [r.get("Code", "None") for r in cancelled]
                if any(
                    code not in ("None", "ConditionalCheckFailed", "TransactionConflict") for code in reasons
                ):
                    raise
                remaining = self._settle_conflicts(submissions, remaining, heads, results)
                time.sleep(random.uniform(0, 0.02 * 2**attempt))
                continue
            heads.update(planned)
            for i, outcome in outcomes:
                results[i] = outcome
            return
        raise ConcurrencyError(
            f"gave up after {MAX_CONFLICT_RETRIES} conflicting attempts to commit {len(remaining)} events"
        )

    def _settle_conflicts(
        self,
        submissions: Sequence[Submission],
        remaining: list[int],
        heads: dict[str, int],
        results: list[CommitResult | None],
    ) -> list[int]:
        """After a cancelled transaction: settle the duplicates, refresh the heads, return what is left."""
        known = self.statuses.get_many((submissions[i].event_id for i in remaining), consistent=True)
        left: list[int] = []
        for i in remaining:
            status = known.get(submissions[i].event_id)
            if status is not None and status.is_final:
                results[i] = CommitResult(
                    status.event_id, status.aggregate_id, "duplicate", status.version, status.reason
                )
            else:
                left.append(i)
        heads.update(self.head_versions([submissions[i].aggregate_id for i in left]))
        return left

    def _status_put(self, item: Item) -> dict[str, Any]:
        return {
            "Put": {
                "TableName": self.statuses.table,
                "Item": item,
                "ConditionExpression": NOT_FINAL_CONDITION,
                "ExpressionAttributeNames": NOT_FINAL_NAMES,
                "ExpressionAttributeValues": NOT_FINAL_VALUES,
            }
        }


def _group_end(submissions: Sequence[Submission], start: int) -> int:
    """End of the transaction group that starts at `start`: within DynamoDB's limits, and no event id twice
    (a transaction may not touch one item twice; the repeat goes to the next group and is found a duplicate)."""
    actions = 0
    size = 0
    seen: set[str] = set()
    end = start
    while end < len(submissions):
        sub = submissions[end]
        cost = len(orjson.dumps(sub.payload)) + len(orjson.dumps(sub.metadata)) + 1024
        if (
            sub.event_id in seen
            or actions + 2 > MAX_TRANSACTION_ACTIONS
            or (end > start and size + cost > MAX_TRANSACTION_BYTES)
        ):
            break
        seen.add(sub.event_id)
        actions += 2
        size += cost
        end += 1
    return end


def _token(actions: list[dict[str, Any]]) -> str:
    """ClientRequestToken: the same actions give the same token, so an SDK retry of a transaction whose
    first attempt did succeed is answered as a success instead of failing its conditions."""
    return hashlib.sha256(orjson.dumps(actions)).hexdigest()[:36]
