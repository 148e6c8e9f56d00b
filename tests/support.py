"""Test helpers: call handlers with the exact AWS event shapes and move records along the streams by hand.

The devstack's pollers do this continuously; tests use `Pipeline` to do it step by step, so they can deliver
a batch twice, crash a handler half-way, or retry from the record a handler reported as failed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from devstack.lambda_runtime import invoke
from devstack.shapes import dynamodb_stream_event, kinesis_event, kinesis_stream_arn, rest_api_event
from eventlog.aws import dynamodb_client, dynamodbstreams_client, kinesis_client
from eventlog.settings import Settings


@dataclass
class ApiResponse:
    status: int
    body: Any
    headers: dict[str, str]


def call_api(
    method: str,
    resource: str,
    path: str,
    *,
    body: bytes | str | dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    query: list[tuple[str, str]] | None = None,
    function: str | None = None,
) -> ApiResponse:
    """Invoke the route's function as API Gateway would and decode its JSON answer."""
    if isinstance(body, dict):
        raw: bytes | None = orjson.dumps(body)
    elif isinstance(body, str):
        raw = body.encode()
    else:
        raw = body
    all_headers = {"Content-Type": "application/json"} if raw is not None else {}
    all_headers.update(headers or {})
    event = rest_api_event(
        method, resource, path, headers=list(all_headers.items()), query=query or [], body=raw
    )
    target = function or ("load" if method == "POST" else "query")
    response = invoke(target, event, prefix="es-test")
    return ApiResponse(response["statusCode"], orjson.loads(response["body"]), response.get("headers") or {})


def post_event(aggregate_id: str, body: Any, headers: dict[str, str] | None = None) -> ApiResponse:
    return call_api(
        "POST",
        "/aggregates/{aggregate_id}/events",
        f"/aggregates/{aggregate_id}/events",
        body=body,
        headers=headers,
    )


def post_events(aggregate_id: str, *bodies: dict[str, Any]) -> list[str]:
    """POST each body in turn (each must be accepted); the event ids, in order."""
    ids = []
    for body in bodies:
        response = post_event(aggregate_id, body)
        assert response.status == 202, response.body
        ids.append(response.body["event_id"])
    return ids


def get_state(aggregate_id: str) -> ApiResponse:
    return call_api("GET", "/aggregates/{aggregate_id}", f"/aggregates/{aggregate_id}")


def get_status(event_id: str) -> ApiResponse:
    return call_api("GET", "/events/{event_id}", f"/events/{event_id}")


def get_history(aggregate_id: str, query: list[tuple[str, str]] | None = None) -> ApiResponse:
    return call_api(
        "GET", "/aggregates/{aggregate_id}/events", f"/aggregates/{aggregate_id}/events", query=query
    )


@dataclass
class KinesisReader:
    """Reads a Kinesis stream shard by shard from TRIM_HORIZON, remembering where each shard stands."""

    settings: Settings
    stream: str
    _iterators: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._client = kinesis_client(self.settings)

    def read(self) -> dict[str, list[dict[str, Any]]]:
        """New records per shard id since the last read."""
        if not self._iterators:
            for shard in self._client.list_shards(StreamName=self.stream)["Shards"]:
                self._iterators[shard["ShardId"]] = self._client.get_shard_iterator(
                    StreamName=self.stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
                )["ShardIterator"]
        out: dict[str, list[dict[str, Any]]] = {}
        for shard_id, iterator in list(self._iterators.items()):
            records: list[dict[str, Any]] = []
            while True:
                response = self._client.get_records(ShardIterator=iterator, Limit=10000)
                records.extend(response["Records"])  # type: ignore[arg-type]
                iterator = response["NextShardIterator"]
                if not response["Records"]:
                    break
            self._iterators[shard_id] = iterator
            out[shard_id] = records
        return out

    def event(self, shard_id: str, records: list[dict[str, Any]]) -> dict[str, Any]:
        return kinesis_event(
            records,
            shard_id=shard_id,
            stream_arn=kinesis_stream_arn(self.settings.region, self.stream),
            region=self.settings.region,
        )


@dataclass
class TableStreamReader:
    """Reads a table's DynamoDB stream from TRIM_HORIZON, remembering where each shard stands."""

    settings: Settings
    table: str
    _iterators: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._streams = dynamodbstreams_client(self.settings)
        self.stream_arn = dynamodb_client(self.settings).describe_table(TableName=self.table)["Table"][
            "LatestStreamArn"
        ]

    def read(self) -> list[dict[str, Any]]:
        shards = self._streams.describe_stream(StreamArn=self.stream_arn)["StreamDescription"]["Shards"]
        for shard in shards:
            if shard["ShardId"] not in self._iterators:
                self._iterators[shard["ShardId"]] = self._streams.get_shard_iterator(
                    StreamArn=self.stream_arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
                )["ShardIterator"]
        records: list[dict[str, Any]] = []
        for shard_id, iterator in list(self._iterators.items()):
            while True:
                response = self._streams.get_records(ShardIterator=iterator, Limit=1000)
                records.extend(response["Records"])  # type: ignore[arg-type]
                iterator = response.get("NextShardIterator") or iterator
                if not response["Records"]:
                    break
            self._iterators[shard_id] = iterator
        return records

    def event(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        return dynamodb_stream_event(records, stream_arn=self.stream_arn, region=self.settings.region)


def retry_from_failure(
    function: str, event: dict[str, Any], id_of: Any, max_attempts: int = 10
) -> list[dict[str, Any]]:
    """Invoke like an event source mapping with ReportBatchItemFailures: on a reported failure, retry the batch
    from the failed record. Returns every response. `id_of(record)` gives a record's itemIdentifier."""
    records = list(event["Records"])
    responses = []
    for _ in range(max_attempts):
        response = invoke(function, {"Records": records}, prefix="es-test")
        responses.append(response)
        failures = (response or {}).get("batchItemFailures") or []
        if not failures:
            return responses
        ids = [id_of(r) for r in records]
        first = min(ids.index(f["itemIdentifier"]) for f in failures)
        records = records[first:]
    raise AssertionError(f"{function} still failing after {max_attempts} attempts")


def kinesis_id(record: dict[str, Any]) -> str:
    return str(record["kinesis"]["sequenceNumber"])


def dynamodb_id(record: dict[str, Any]) -> str:
    return str(record["dynamodb"]["SequenceNumber"])


class Pipeline:
    """Moves records along: ingest stream -> pump -> events table stream -> write. One step at a time."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.ingest = KinesisReader(settings, settings.ingest_stream)
        self.changes = TableStreamReader(settings, settings.events_table)

    def pump(self) -> int:
        """Deliver every new ingest record to the pump (one batch per shard, retried from failures)."""
        delivered = 0
        for shard_id, records in self.ingest.read().items():
            if records:
                retry_from_failure("pump", self.ingest.event(shard_id, records), kinesis_id)
                delivered += len(records)
        return delivered

    def write(self) -> int:
        records = self.changes.read()
        if records:
            retry_from_failure("write", self.changes.event(records), dynamodb_id)
        return len(records)

    def settle(self) -> None:
        """Run pump and write until nothing moves."""
        while self.pump() + self.write():
            pass


class Injected(Exception):
    """Raised by FaultyClient for a fault that is not an AWS error (a crash, a timeout)."""


class FaultyClient:
    """A boto3 client that fails chosen calls on purpose and passes everything else through.

    `fail("transact_write_items", on={2})` makes the second call raise a throttling ClientError;
    `crash="..."` raises Injected instead (the Lambda dying mid-batch)."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.calls: dict[str, int] = {}
        self._faults: dict[str, tuple[set[int], str | None]] = {}

    def fail(
        self, operation: str, on: set[int], code: str | None = "ProvisionedThroughputExceededException"
    ) -> None:
        self._faults[operation] = (on, code)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if (
            name.startswith("_")
            or not callable(attr)
            or name in ("get_paginator", "get_waiter", "can_paginate")
        ):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            count = self.calls[name] = self.calls.get(name, 0) + 1
            fault = self._faults.get(name)
            if fault and count in fault[0]:
                if fault[1] is None:
                    raise Injected(f"{name} call {count} crashed on purpose")
                from botocore.exceptions import ClientError

                raise ClientError({"Error": {"Code": fault[1], "Message": "injected"}}, name)
            return attr(*args, **kwargs)

        return call


def all_events(settings: Settings) -> list[dict[str, Any]]:
    """Every item in the events table, as (aggregate_id, version, event_id, payload) dicts, sorted."""
    client = dynamodb_client(settings)
    items: list[dict[str, Any]] = []
    for page in client.get_paginator("scan").paginate(TableName=settings.events_table, ConsistentRead=True):
        for item in page["Items"]:
            items.append(
                {
                    "aggregate_id": item["aggregate_id"]["S"],  # type: ignore[index]
                    "version": int(item["version"]["N"]),  # type: ignore[index]
                    "event_id": item["event_id"]["S"],  # type: ignore[index]
                    "payload": orjson.loads(item["payload"]["S"]),  # type: ignore[index]
                }
            )
    return sorted(items, key=lambda e: (e["aggregate_id"], e["version"]))


def assert_gapless(events: list[dict[str, Any]]) -> None:
    by_aggregate: dict[str, list[int]] = {}
    for e in events:
        by_aggregate.setdefault(e["aggregate_id"], []).append(e["version"])
    for aggregate, versions in by_aggregate.items():
        assert versions == list(range(1, len(versions) + 1)), f"{aggregate}: versions {versions}"
    ids = [e["event_id"] for e in events]
    assert len(ids) == len(set(ids)), "an event id is in the log twice"
