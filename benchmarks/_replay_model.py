"""A local endpoint that behaves like AWS where a replay's throughput is concerned, for the "model" benchmark.

It speaks the JSON protocol of the calls the replayer makes (DynamoDB: DescribeTable, Scan, Query and the
checkpoint table's PutItem / BatchWriteItem / GetItem; Kinesis: DescribeStreamSummary, ListShards,
PutRecords) and enforces what bounds a replay on AWS:

- each shard takes 1,000 records/s and 1 MiB/s (a token bucket holding one second's worth, full at start);
  a record beyond that is refused with ProvisionedThroughputExceededException;
- `fail_rate` of the records are refused at random, as PutRecords does now and then (`fail_kind`: internal =
  InternalFailure, throttle = ProvisionedThroughputExceededException, mixed = half each); a refused record
  takes no throughput;
- every call is answered after `latency_ms` (plus its own processing), concurrently with the others;
- a record goes to the shard its ExplicitHashKey falls in, else to the one its partition key's MD5 does.

It runs in a process of its own (so its CPU is not the replayer's), keeps every record it took, in shard
order, and hands them back at GET /_model/results for the lost / duplicate / order checks.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import multiprocessing
import random
import time
import urllib.request
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from benchmarks._replay_data import canned_pages
from replayer.plan import default_segments
from replayer.shards import ShardMap

RECORDS_PER_S = 1000.0
BYTES_PER_S = 1024.0 * 1024.0


@dataclass(frozen=True)
class ModelSettings:
    shards: int = 4
    fail_rate: float = 0.05
    fail_kind: str = "mixed"
    latency_ms: float = 5.0
    seed: int = 1
    events_table: str = "bench-events"
    checkpoint_table: str = "bench-checkpoints"
    stream: str = "bench-playback"


class _Bucket:
    def __init__(self, now: float) -> None:
        self.records = RECORDS_PER_S
        self.bytes = BYTES_PER_S
        self.stamp = now

    def take(self, size: int, now: float) -> bool:
        elapsed = now - self.stamp
        self.stamp = now
        self.records = min(RECORDS_PER_S, self.records + elapsed * RECORDS_PER_S)
        self.bytes = min(BYTES_PER_S, self.bytes + elapsed * BYTES_PER_S)
        if self.records < 1 or self.bytes < size:
            return False
        self.records -= 1
        self.bytes -= size
        return True


class ModelAws:
    """The endpoint's state and request handling (see the module docstring)."""

    def __init__(self, settings: ModelSettings, items: list[dict[str, Any]]) -> None:
        self.settings = settings
        self.items = items
        self.table_bytes = sum(len(orjson.dumps(i)) for i in items)
        self.shard_map = ShardMap.uniform(settings.shards)
        self.rng = random.Random(settings.seed)
        self.buckets: list[_Bucket] | None = None
        self.pages: dict[int, dict[int, list[bytes]]] = {}
        self.next_page: dict[tuple[int, int, str, int], int] = {}
        self.checkpoints: dict[tuple[str, str], dict[str, Any]] = {}
        self.taken: dict[int, list[tuple[str, int, float]]] = defaultdict(list)
        self.counts: dict[str, int] = defaultdict(int)
        # A table is ready to scan: cut the pages now for the segment count the replayer will choose.
        self._cut_pages(default_segments(self.table_bytes))

    def _cut_pages(self, total: int) -> None:
        self.pages[total] = canned_pages(self.items, total)
        for segment, bodies in self.pages[total].items():
            for i, page in enumerate(bodies):
                last = orjson.loads(page).get("LastEvaluatedKey")
                if last:
                    self.next_page[(total, segment, last["aggregate_id"]["S"], int(last["version"]["N"]))] = (
                        i + 1
                    )

    async def handle(self, request: web.Request) -> web.Response:
        target = request.headers.get("X-Amz-Target", "")
        operation = target.rsplit(".", 1)[-1]
        body = await request.read()
        self.counts[f"calls.{operation}"] += 1
        handler = getattr(self, f"op_{operation}", None)
        if handler is None:
            return _error(400, "UnknownOperationException", operation)
        try:
            status, answer = handler(orjson.loads(body) if body else {})
        except KeyError as exc:
            status, answer = 400, {"__type": "ValidationException", "message": f"missing {exc}"}
        await asyncio.sleep(self.settings.latency_ms / 1000)
        return web.Response(
            status=status, body=orjson.dumps(answer), content_type="application/x-amz-json-1.1"
        )

    async def results(self, request: web.Request) -> web.Response:
        answer = {"taken": self.taken, "counts": self.counts}
        return web.Response(body=orjson.dumps(answer, option=orjson.OPT_NON_STR_KEYS))

    # -- DynamoDB ----------------------------------------------------------------------------------------

    def op_DescribeTable(self, req: dict[str, Any]) -> tuple[int, Any]:
        name = req["TableName"]
        if name not in (self.settings.events_table, self.settings.checkpoint_table):
            return 400, {"__type": "ResourceNotFoundException", "message": f"table {name} not found"}
        events = name == self.settings.events_table
        return 200, {
            "Table": {
                "TableName": name,
                "TableStatus": "ACTIVE",
                "TableSizeBytes": self.table_bytes if events else 0,
                "ItemCount": len(self.items) if events else len(self.checkpoints),
            }
        }

    def op_Scan(self, req: dict[str, Any]) -> tuple[int, Any]:
        total = int(req.get("TotalSegments", 1))
        segment = int(req.get("Segment", 0))
        if total not in self.pages:
            self._cut_pages(total)
        start = req.get("ExclusiveStartKey")
        index = 0
        if start:
            index = self.next_page[(total, segment, start["aggregate_id"]["S"], int(start["version"]["N"]))]
        return 200, orjson.Fragment(self.pages[total][segment][index])

    def op_PutItem(self, req: dict[str, Any]) -> tuple[int, Any]:
        item = req["Item"]
        key = (item["replay_id"]["S"], item["part"]["S"])
        if "attribute_not_exists" in req.get("ConditionExpression", "") and key in self.checkpoints:
            return 400, {"__type": "ConditionalCheckFailedException", "message": "exists"}
        self.checkpoints[key] = item
        return 200, {}

    def op_BatchWriteItem(self, req: dict[str, Any]) -> tuple[int, Any]:
        for requests in req["RequestItems"].values():
            for request in requests:
                item = request["PutRequest"]["Item"]
                self.checkpoints[(item["replay_id"]["S"], item["part"]["S"])] = item
        return 200, {"UnprocessedItems": {}}

    def op_Query(self, req: dict[str, Any]) -> tuple[int, Any]:
        replay_id = req["ExpressionAttributeValues"][":r"]["S"]
        items = [item for (r, _), item in sorted(self.checkpoints.items()) if r == replay_id]
        return 200, {"Items": items, "Count": len(items)}

    # -- Kinesis ---------------------------------------------------------------------------------------

    def op_DescribeStreamSummary(self, req: dict[str, Any]) -> tuple[int, Any]:
        if req["StreamName"] != self.settings.stream:
            return 400, {"__type": "ResourceNotFoundException", "message": "no such stream"}
        return 200, {
            "StreamDescriptionSummary": {
                "StreamName": self.settings.stream,
                "StreamARN": f"arn:aws:kinesis:us-east-1:123456789012:stream/{self.settings.stream}",
                "StreamStatus": "ACTIVE",
                "StreamModeDetails": {"StreamMode": "PROVISIONED"},
                "RetentionPeriodHours": 24,
                "StreamCreationTimestamp": 1_700_000_000,
                "EnhancedMonitoring": [],
                "OpenShardCount": self.settings.shards,
            }
        }

    def op_ListShards(self, req: dict[str, Any]) -> tuple[int, Any]:
        return 200, {
            "Shards": [
                {
                    "ShardId": s.shard_id,
                    "HashKeyRange": {"StartingHashKey": str(s.start), "EndingHashKey": str(s.end)},
                    "SequenceNumberRange": {"StartingSequenceNumber": "0"},
                }
                for s in self.shard_map.shards
            ]
        }

    def op_PutRecords(self, req: dict[str, Any]) -> tuple[int, Any]:
        now = time.monotonic()
        if self.buckets is None:
            self.buckets = [_Bucket(now) for _ in self.shard_map.shards]
        results: list[dict[str, Any]] = []
        failed = 0
        fail_rate, kind = self.settings.fail_rate, self.settings.fail_kind
        for record in req["Records"]:
            data = base64.b64decode(record["Data"])
            key = record["PartitionKey"]
            explicit = record.get("ExplicitHashKey")
            shard = self.shard_map.shard_of_hash_key(explicit) if explicit else self.shard_map.shard_of(key)
            if self.rng.random() < fail_rate:
                failed += 1
                internal = kind == "internal" or (kind == "mixed" and self.rng.random() < 0.5)
                code = "InternalFailure" if internal else "ProvisionedThroughputExceededException"
                self.counts["injected"] += 1
                results.append({"ErrorCode": code, "ErrorMessage": "injected"})
                continue
            if not self.buckets[shard].take(len(data) + len(key.encode()), now):
                failed += 1
                self.counts["throttled"] += 1
                results.append(
                    {"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "Rate exceeded"}
                )
                continue
            event = orjson.loads(data)
            self.taken[shard].append((event["aggregate_id"], event["version"], now))
            self.counts["taken"] += 1
            results.append({"SequenceNumber": str(self.counts["taken"]), "ShardId": f"shardId-{shard:012d}"})
        return 200, {"FailedRecordCount": failed, "Records": results}


def _error(status: int, code: str, message: str) -> web.Response:
    return web.Response(status=status, body=orjson.dumps({"__type": code, "message": message}))


def _serve(settings: ModelSettings, items: list[dict[str, Any]], ready: Any) -> None:
    model = ModelAws(settings, items)
    # The endpoint must not stall: with the cyclic collector on, full collections over the growing record
    # log paused every shard at once for tens of milliseconds. It allocates nothing cyclic.
    gc.freeze()
    gc.disable()

    async def main() -> None:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_get("/_model/results", model.results)
        app.router.add_post("/", model.handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        ready.send(port)
        await asyncio.Event().wait()

    asyncio.run(main())


class ModelServer:
    """The model endpoint in a child process: `start()` gives its URL, `results()` what it took."""

    def __init__(self, settings: ModelSettings, items: list[dict[str, Any]]) -> None:
        self.settings = settings
        self._items = items
        self._process: Any = None
        self.url = ""

    def start(self) -> str:
        context = multiprocessing.get_context("spawn")
        parent, child = context.Pipe()
        self._process = context.Process(target=_serve, args=(self.settings, self._items, child), daemon=True)
        self._process.start()
        if not parent.poll(60):
            raise RuntimeError("the model endpoint did not start")
        self.url = f"http://127.0.0.1:{parent.recv()}"
        return self.url

    def results(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.url}/_model/results", timeout=60) as response:
            data: dict[str, Any] = orjson.loads(response.read())
        return data

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.join(10)
            self._process = None


def check_taken(expected: list[tuple[str, int]], taken: dict[str, list[list[Any]]]) -> dict[str, int]:
    """Lost, duplicated and reordered events (a version first seen after a higher one of its aggregate)."""
    want = set(expected)
    seen: set[tuple[str, int]] = set()
    highest: dict[str, int] = {}
    duplicates = violations = 0
    for records in taken.values():
        for aggregate_id, version, _ in records:
            key = (aggregate_id, version)
            if key in seen:
                duplicates += 1
                continue
            seen.add(key)
            if version < highest.get(aggregate_id, 0):
                violations += 1
            highest[aggregate_id] = max(highest.get(aggregate_id, 0), version)
    return {
        "lost": len(want - seen),
        "unexpected": len(seen - want),
        "duplicates": duplicates,
        "order_violations": violations,
    }


def shard_ceiling(records: list[tuple[str, int]], sizes: list[int], shards: int) -> tuple[float, float]:
    """The stream's write ceiling in events/s: nominal (every shard at its limit), and for this data (its
    busiest shard decides: hash keys do not spread events perfectly evenly)."""
    shard_map = ShardMap.uniform(shards)
    counts = [0] * shards
    volume = [0] * shards
    average = sum(sizes) / max(1, len(sizes))
    for (aggregate_id, _), size in zip(records, sizes, strict=True):
        shard = shard_map.shard_of(aggregate_id)
        counts[shard] += 1
        volume[shard] += size
    per_shard = min(RECORDS_PER_S, BYTES_PER_S / average) if average else RECORDS_PER_S
    busiest = max(max(c / RECORDS_PER_S, v / BYTES_PER_S) for c, v in zip(counts, volume, strict=True))
    return per_shard * shards, len(records) / busiest if busiest else 0.0
