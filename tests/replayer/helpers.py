"""Helpers for the replayer's tests: event factories, loading the events table, reading the stream back,
checking per-aggregate order, and a transport that injects Kinesis's failures (moto never throttles)."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from eventlog.batch import put_items
from eventlog.codec import event_from_data, event_to_item
from eventlog.envelope import Event, format_timestamp
from eventlog.resources import EVENTS_TABLE
from eventlog.settings import Settings
from replayer.config import ReplayConfig
from replayer.connect import AwsConnection
from replayer.engine import run_replay
from replayer.errors import AwsError
from replayer.report import SilentReporter, Summary
from replayer.wire import Transport

TYPES = ("AccountOpened", "MoneyDeposited", "MoneyWithdrawn", "AccountClosed")
BASE_TIME = datetime(2026, 1, 1, tzinfo=UTC)


def make_events(aggregates: int, per_aggregate: int, *, seed: int = 7, prefix: str = "acct") -> list[Event]:
    """`aggregates` x `per_aggregate` events; recorded_at rises by one second per version, types cycle."""
    rng = random.Random(seed)
    events: list[Event] = []
    for a in range(aggregates):
        aggregate_id = f"{prefix}-{a:04d}"
        for version in range(1, per_aggregate + 1):
            moment = BASE_TIME + timedelta(seconds=version, milliseconds=a)
            events.append(
                Event(
                    event_id=f"{aggregate_id}-e{version}",
                    aggregate_id=aggregate_id,
                    type=TYPES[(version - 1) % len(TYPES)],
                    version=version,
                    schema_version=1,
                    occurred_at=format_timestamp(moment),
                    recorded_at=format_timestamp(moment),
                    payload={"amount": rng.randint(1, 10_000), "memo": "x" * rng.randint(0, 40)},
                    metadata={"correlation_id": f"c-{a}-{version}", "actor": "tests"},
                )
            )
    return events


def load_events(dynamodb: Any, table: str, events: Iterable[Event]) -> None:
    """Write events straight into the events table (BatchWriteItem through eventlog.batch)."""
    put_items(dynamodb, table, (event_to_item(e) for e in events), key=EVENTS_TABLE.key_names)


def read_shards(kinesis: Any, stream: str) -> dict[str, list[Event]]:
    """Shard id -> the events on that shard, in its order."""
    out: dict[str, list[Event]] = {}
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        iterator = kinesis.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        events: list[Event] = []
        while iterator:
            response = kinesis.get_records(ShardIterator=iterator, Limit=10_000)
            events.extend(event_from_data(r["Data"]) for r in response["Records"])
            if not response["Records"]:
                break
            iterator = response["NextShardIterator"]
        out[shard["ShardId"]] = events
    return out


def read_stream(kinesis: Any, stream: str) -> list[Event]:
    """Every event on the stream, shard by shard, each shard in its order."""
    return [event for events in read_shards(kinesis, stream).values() for event in events]


async def replay(
    settings: Settings,
    config: ReplayConfig,
    wrap: Callable[[Transport], Transport] | None = None,
    stop: asyncio.Event | None = None,
) -> Summary:
    """Run a replay against the test stack, its transport optionally wrapped (to inject failures)."""
    async with AwsConnection(settings) as connection:
        transport = wrap(connection.transport) if wrap else connection.transport
        return await run_replay(config, connection, SilentReporter(), stop=stop, transport=transport)


@dataclass
class Delivery:
    """What reached the stream compared with what should have."""

    order_violations: list[str] = field(default_factory=list)
    lost: set[tuple[str, int]] = field(default_factory=set)
    unexpected: set[tuple[str, int]] = field(default_factory=set)
    duplicates: int = 0


def check_delivery(expected: Sequence[Event], delivered: Sequence[Event]) -> Delivery:
    """What a consumer that dedupes on (aggregate id, version) sees: per aggregate, each version must first
    appear after every lower one (a repeat of a version already seen is a duplicate, not a reordering);
    every expected event must be there, nothing else."""
    result = Delivery()
    highest: dict[str, int] = {}
    seen: set[tuple[str, int]] = set()
    for event in delivered:
        key = (event.aggregate_id, event.version)
        if key in seen:
            continue
        seen.add(key)
        previous = highest.get(event.aggregate_id, 0)
        if event.version < previous:
            result.order_violations.append(
                f"{event.aggregate_id}: v{event.version} first seen after v{previous}"
            )
        highest[event.aggregate_id] = max(previous, event.version)
    want = {(e.aggregate_id, e.version) for e in expected}
    got = [(e.aggregate_id, e.version) for e in delivered]
    result.lost = want - set(got)
    result.unexpected = set(got) - want
    result.duplicates = len(got) - len(set(got))
    return result


def by_aggregate(events: Iterable[Event]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = defaultdict(list)
    for event in events:
        out[event.aggregate_id].append(event.version)
    return dict(out)


class FaultyTransport:
    """Wraps a transport and makes PutRecords fail the way Kinesis does, on a seeded schedule.

    - `throttle_rate` / `fail_rate`: each record is refused with ProvisionedThroughputExceededException /
      InternalFailure (it is not forwarded; the records around it are, as Kinesis does);
    - `unknown_rate`: a call is forwarded, then answered with a 500 (the records are on the stream, the
      replayer cannot know: it must send them again);
    - `error_rate`: a call is answered with a 503 without being forwarded.
    """

    def __init__(
        self,
        inner: Transport,
        *,
        throttle_rate: float = 0.0,
        fail_rate: float = 0.0,
        unknown_rate: float = 0.0,
        error_rate: float = 0.0,
        seed: int = 1,
    ) -> None:
        self.inner = inner
        self.throttle_rate = throttle_rate
        self.fail_rate = fail_rate
        self.unknown_rate = unknown_rate
        self.error_rate = error_rate
        self.rng = random.Random(seed)
        self.calls: list[tuple[str, str]] = []
        self.put_calls = 0
        self.refused = 0
        self.unknown = 0

    async def call(self, service: str, operation: str, body: bytes) -> bytes:
        self.calls.append((service, operation))
        if operation != "PutRecords":
            return await self.inner.call(service, operation, body)
        self.put_calls += 1
        if self.rng.random() < self.error_rate:
            raise AwsError("ServiceUnavailable", "injected", status=503, retryable=True, outcome_unknown=True)
        request = orjson.loads(body)
        records = request["Records"]
        refusals: dict[int, str] = {}
        for i in range(len(records)):
            draw = self.rng.random()
            if draw < self.throttle_rate:
                refusals[i] = "ProvisionedThroughputExceededException"
            elif draw < self.throttle_rate + self.fail_rate:
                refusals[i] = "InternalFailure"
        forward = [r for i, r in enumerate(records) if i not in refusals]
        answers: list[dict[str, Any]] = []
        if forward:
            raw = await self.inner.call(
                service, operation, orjson.dumps({"StreamName": request["StreamName"], "Records": forward})
            )
            answers = list(orjson.loads(raw)["Records"])
        if self.rng.random() < self.unknown_rate:
            self.unknown += 1
            raise AwsError(
                "InternalFailure", "injected after success", status=500, retryable=True, outcome_unknown=True
            )
        results: list[dict[str, Any]] = []
        taken = iter(answers)
        for i in range(len(records)):
            if i in refusals:
                self.refused += 1
                results.append({"ErrorCode": refusals[i], "ErrorMessage": "injected"})
            else:
                results.append(next(taken))
        return orjson.dumps({"FailedRecordCount": len(refusals), "Records": results})


class StopAfterPuts(FaultyTransport):
    """Sets `stop` (as SIGTERM or the Lambda's deadline does) once `calls` PutRecords calls were answered
    (calls overlap: the count may pass it before the one that reached it returns)."""

    def __init__(self, inner: Transport, stop: asyncio.Event, calls: int = 4) -> None:
        super().__init__(inner)
        self.stop = stop
        self.limit = calls

    async def call(self, service: str, operation: str, body: bytes) -> bytes:
        answer = await super().call(service, operation, body)
        if self.put_calls >= self.limit:
            self.stop.set()
        return answer


class RecordingTransport:
    """Answers PutRecords with success without any AWS, and keeps every call's records (for limit tests)."""

    def __init__(self) -> None:
        self.calls: list[list[dict[str, Any]]] = []

    async def call(self, service: str, operation: str, body: bytes) -> bytes:
        assert operation == "PutRecords", operation
        records = orjson.loads(body)["Records"]
        self.calls.append(records)
        return orjson.dumps(
            {
                "FailedRecordCount": 0,
                "Records": [
                    {"SequenceNumber": str(i), "ShardId": "shardId-000000000000"} for i in range(len(records))
                ],
            }
        )
