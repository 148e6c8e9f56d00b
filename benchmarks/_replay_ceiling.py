"""The replay ceiling: decode -> order -> encode with the network taken out, in CPU seconds.

- The replayer's path: the real engine (prepare, part readers, Sender, watermarks, in-memory checkpoints) and
  the real SignedTransport (SigV4 signing included), whose HTTP session is replaced by one that answers Scan
  with canned 1 MB pages and PutRecords with success, discarding the request bodies.
- The botocore path: the same work through plain boto3 clients: Scan pages parsed by botocore (a `before-send`
  hook hands it the same canned bodies), each item through `item_to_event`, `with_replay` and
  `event_to_data`, one event per aggregate per call, `put_records` in 500s serialised and validated by
  botocore (the hook answers it, discarding the request).

Both are timed with `time.process_time()`, so the figures are events per CPU-second, i.e. per core.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Iterator
from typing import Any

import boto3
import orjson
from botocore.awsrequest import AWSResponse, HTTPHeaders
from botocore.credentials import ReadOnlyCredentials

from benchmarks._replay_data import canned_pages
from eventlog.codec import event_to_data, item_to_event, with_replay
from eventlog.envelope import ReplayInfo
from replayer.checkpoints import MemoryCheckpoints
from replayer.config import ReplayConfig
from replayer.connect import StreamInfo, TableInfo
from replayer.engine import Runner, prepare
from replayer.report import SilentReporter
from replayer.shards import ShardMap
from replayer.wire import SignedTransport

SHARDS = 4
REPLAY = ReplayInfo("bench", "rebuild")


class _Response:
    def __init__(self, body: bytes) -> None:
        self.body = body
        self.status = 200
        self.headers: dict[str, str] = {}

    async def read(self) -> bytes:
        return self.body

    async def __aenter__(self) -> _Response:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None


class CannedHttp:
    """Stands in for aiohttp.ClientSession: Scan gets the canned pages, PutRecords a success for every record."""

    def __init__(self, pages: dict[int, list[bytes]]) -> None:
        self._pages = pages
        # (segment, aggregate id, version) of a page's LastEvaluatedKey -> the next page's index
        self._next: dict[tuple[int, str, int], int] = {}
        for segment, bodies in pages.items():
            for i, body in enumerate(bodies):
                last = orjson.loads(body).get("LastEvaluatedKey")
                if last:
                    self._next[(segment, last["aggregate_id"]["S"], int(last["version"]["N"]))] = i + 1
        self._answers: dict[int, bytes] = {}
        self.records_put = 0

    def post(self, url: str, data: bytes, headers: dict[str, str]) -> _Response:
        target = headers["X-Amz-Target"]
        if target.endswith(".PutRecords"):
            count = data.count(b'"PartitionKey"')
            self.records_put += count
            return _Response(self._answer(count))
        request = orjson.loads(data)
        segment = request.get("Segment", 0)
        start = request.get("ExclusiveStartKey")
        index = 0
        if start:
            index = self._next[(segment, start["aggregate_id"]["S"], int(start["version"]["N"]))]
        return _Response(self._pages[segment][index])

    def _answer(self, count: int) -> bytes:
        answer = self._answers.get(count)
        if answer is None:
            sequence = "49590338271490256608559692538361571095921575989136588898"
            record = {"SequenceNumber": sequence, "ShardId": "shardId-000000000000"}
            answer = orjson.dumps({"FailedRecordCount": 0, "Records": [record] * count})
            self._answers[count] = answer
        return answer


class _StaticCredentials:
    async def get_frozen_credentials(self) -> ReadOnlyCredentials:
        return ReadOnlyCredentials("AKIDBENCHMARK", "secret", None)


class _Control:
    def __init__(self, items: int, size: int) -> None:
        self._table = TableInfo("events", size, items)

    async def describe_table(self, name: str, what: str = "table") -> TableInfo:
        return self._table

    async def describe_stream(self, name: str) -> StreamInfo:
        return StreamInfo(name, ShardMap.uniform(SHARDS), on_demand=False)


def replayer_path(items: list[dict[str, Any]], segments: int = 4) -> tuple[int, float]:
    """Events put and CPU seconds for the replayer's own path."""
    pages = canned_pages(items, segments)
    http = CannedHttp(pages)
    size = sum(len(p) for bodies in pages.values() for p in bodies)

    async def run() -> int:
        transport = SignedTransport(
            http,  # type: ignore[arg-type]
            {"dynamodb": "https://dynamodb.us-east-1.amazonaws.com", "kinesis": "https://kinesis.us-east-1.amazonaws.com"},
            "us-east-1",
            _StaticCredentials(),
        )  # fmt: skip
        config = ReplayConfig("events", "playback", "checkpoints", replay_id="bench", segments=segments)
        checkpoints = MemoryCheckpoints()
        prepared = await prepare(config, _Control(len(items), size), checkpoints)
        runner = Runner(prepared, transport, checkpoints, SilentReporter(), pace=False)
        summary = await runner.run()
        assert summary.outcome == "complete", summary.error
        return summary.put

    loop = asyncio.new_event_loop()
    try:
        started = time.process_time()
        put = loop.run_until_complete(run())
        spent = time.process_time() - started
    finally:
        loop.close()
    assert put == http.records_put == len(items)
    return put, spent


class _RawBody:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body


def botocore_path(items: list[dict[str, Any]], segments: int = 4) -> tuple[int, float]:
    """Events put and CPU seconds for the same work through boto3's clients."""
    pages = canned_pages(items, segments)
    http = CannedHttp(pages)
    session = boto3.session.Session(
        aws_access_key_id="AKIDBENCHMARK", aws_secret_access_key="secret", region_name="us-east-1"
    )
    dynamodb = session.client("dynamodb")
    kinesis = session.client("kinesis")

    def answer(request: Any, **_: Any) -> AWSResponse:
        body = request.body if isinstance(request.body, bytes) else (request.body or "").encode()
        headers = {k: v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()}
        return AWSResponse(
            request.url, 200, HTTPHeaders(), _RawBody(http.post(request.url, body, headers).body)
        )

    # A before-send handler that returns a response stands in for the HTTP call (botocore's own mechanism).
    hook: Any = answer
    dynamodb.meta.events.register("before-send.dynamodb.Scan", hook)
    kinesis.meta.events.register("before-send.kinesis.PutRecords", hook)
    started = time.process_time()
    put = 0
    for segment in range(segments):
        kwargs: dict[str, Any] = {"TableName": "events", "Segment": segment, "TotalSegments": segments}
        while True:
            page = dynamodb.scan(**kwargs)
            waiting: dict[str, deque[Any]] = {}
            for item in page["Items"]:
                event = item_to_event(item)
                record = {
                    "Data": event_to_data(with_replay(event, REPLAY)),
                    "PartitionKey": event.aggregate_id,
                }
                waiting.setdefault(event.aggregate_id, deque()).append(record)
            while waiting:
                # One event per aggregate per call, as order under partial failure requires.
                batch = []
                for aggregate_id in list(waiting)[:500]:
                    batch.append(waiting[aggregate_id].popleft())
                    if not waiting[aggregate_id]:
                        del waiting[aggregate_id]
                response = kinesis.put_records(StreamName="playback", Records=batch)
                put += len(response["Records"]) - response["FailedRecordCount"]
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    spent = time.process_time() - started
    assert put == len(items)
    return put, spent
