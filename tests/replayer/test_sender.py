"""The sender's batching limits, its one-record-in-flight-per-aggregate rule and its pacing, without AWS."""

from __future__ import annotations

import asyncio
import base64
from collections import Counter
from typing import Any

import orjson
import pytest

from eventlog.codec import event_to_item
from eventlog.envelope import Event, ReplayInfo
from replayer.errors import ReplayFailed
from replayer.parts import Part
from replayer.plan import PartSpec
from replayer.records import MAX_CALL_BYTES, MAX_CALL_RECORDS, MAX_RECORD_BYTES, Record, RecordEncoder
from replayer.sender import Sender
from replayer.shards import SHARD_BYTES_PER_S, RateLimiter, ShardLimiter, ShardMap
from tests.replayer.helpers import RecordingTransport

ENCODER = RecordEncoder(ReplayInfo("r", "rebuild"))


def _records(aggregates: int, per_aggregate: int = 1, memo: int = 10) -> list[Record]:
    out = []
    for a in range(aggregates):
        for v in range(1, per_aggregate + 1):
            event = Event(f"e-{a}-{v}", f"agg-{a:05d}", "T", v, 1, "2026-01-01T00:00:00.000000Z",
                          "2026-01-01T00:00:00.000000Z", {"memo": "x" * memo})  # fmt: skip
            out.append(ENCODER.encode(orjson.loads(orjson.dumps(event_to_item(event)))))
    return out


async def _send_all(sender: Sender, records: list[Record]) -> Part:
    part = Part(PartSpec("scan", 0, 1), limit=10**9)
    part.add(records)
    sender.put(records)
    sender.finish()
    await asyncio.wait_for(sender.run(), 30)
    return part


def _sizes(call: list[dict[str, Any]]) -> int:
    return sum(len(base64.b64decode(r["Data"])) + len(r["PartitionKey"].encode()) for r in call)


@pytest.mark.asyncio
async def test_a_call_holds_at_most_500_records() -> None:
    transport = RecordingTransport()
    records = _records(1234)
    part = await _send_all(Sender(transport, "s", ShardMap.uniform(4)), records)
    assert [len(c) for c in transport.calls][:2] == [MAX_CALL_RECORDS, MAX_CALL_RECORDS]
    assert max(len(c) for c in transport.calls) == MAX_CALL_RECORDS
    assert sum(len(c) for c in transport.calls) == 1234
    assert part.put == 1234


@pytest.mark.asyncio
async def test_a_call_holds_at_most_5_mib() -> None:
    transport = RecordingTransport()
    records = _records(14, memo=900_000)  # each about 900 KB: five would pass 5 MiB
    await _send_all(Sender(transport, "s", ShardMap.uniform(1)), records)
    assert all(_sizes(c) <= MAX_CALL_BYTES for c in transport.calls)
    assert [len(c) for c in transport.calls][:2] == [5, 5]
    assert sum(len(c) for c in transport.calls) == 14


@pytest.mark.asyncio
async def test_a_record_of_exactly_1_mib_goes_alone_when_the_call_is_nearly_full() -> None:
    base = _records(1, memo=0)[0].size
    big = _records(6, memo=MAX_RECORD_BYTES - base)  # 1 MiB each: 5 fit in 5 MiB
    assert {r.size for r in big} == {MAX_RECORD_BYTES}
    transport = RecordingTransport()
    await _send_all(Sender(transport, "s", ShardMap.uniform(1)), big)
    assert [len(c) for c in transport.calls] == [5, 1]


class _Overlapping(RecordingTransport):
    """Holds the first call until `overlap` calls are in flight together (so calls must overlap), then answers
    each after a pause; watches that no aggregate is ever in two calls at once, or twice in one."""

    def __init__(self, overlap: int) -> None:
        super().__init__()
        self.overlap = overlap
        self.in_flight: Counter[str] = Counter()
        self.violations = 0
        self.calls_in_flight = 0
        self.most_calls_in_flight = 0
        self._together = asyncio.Event()

    async def call(self, service: str, operation: str, body: bytes) -> bytes:
        keys = [r["PartitionKey"] for r in orjson.loads(body)["Records"]]
        if len(keys) != len(set(keys)):
            self.violations += 1
        for key in keys:
            self.in_flight[key] += 1
            if self.in_flight[key] > 1:
                self.violations += 1
        self.calls_in_flight += 1
        self.most_calls_in_flight = max(self.most_calls_in_flight, self.calls_in_flight)
        if self.calls_in_flight >= self.overlap:
            self._together.set()
        await asyncio.wait_for(self._together.wait(), 10)
        await asyncio.sleep(0.002)
        self.calls_in_flight -= 1
        for key in keys:
            self.in_flight[key] -= 1
        return await super().call(service, operation, body)


@pytest.mark.asyncio
async def test_an_aggregate_never_has_two_records_in_flight() -> None:
    # Calls of at most 5 records for 20 aggregates: every aggregate's next event is in flight at once, in 4
    # calls held open together, while each aggregate has 11 more events waiting to go.
    transport = _Overlapping(overlap=4)
    records = _records(20, per_aggregate=12)
    sender = Sender(transport, "s", ShardMap.uniform(2), concurrency=8, max_call_records=5)
    await _send_all(sender, records)
    assert transport.most_calls_in_flight >= 4
    assert transport.violations == 0
    # and each aggregate's events went out in version order
    order: dict[str, list[int]] = {}
    for call in transport.calls:
        for r in call:
            order.setdefault(r["PartitionKey"], []).append(
                orjson.loads(base64.b64decode(r["Data"]))["version"]
            )
    assert len(order) == 20
    assert all(versions == list(range(1, 13)) for versions in order.values())


@pytest.mark.parametrize("spread", [False, True])
def test_events_read_out_of_version_order_are_refused(spread: bool) -> None:
    sender = Sender(RecordingTransport(), "s", ShardMap.uniform(1), spread=spread)
    first, second = _records(1, per_aggregate=2)
    sender.put([second])
    with pytest.raises(ReplayFailed, match="v1 was read after v2"):
        sender.put([first])


def test_pacing_holds_each_shard_to_its_bytes_per_second() -> None:
    # given one shard and records of 100 KB, at a frozen clock
    now = [0.0]
    limiter = RateLimiter(ShardMap.uniform(1), now[0])
    sender = Sender(RecordingTransport(), "s", ShardMap.uniform(1), limiter, clock=lambda: now[0])
    records = _records(40, memo=100_000)
    sender.put(records)
    # when batches are taken (white box: the dispatcher's own step) while the clock moves 0.5 s at a time
    taken_by_time: list[int] = []
    for _ in range(6):
        limiter.refill(now[0])
        size = 0
        while batch := sender._take_batch():
            size += sum(a.events[0].size for a in batch)
        taken_by_time.append(size)
        now[0] += 0.5
    # then the shard gets its burst, then about 1 MiB/s (0.5 MiB per half second), never much more
    burst = limiter.shards[0].bytes.capacity
    assert taken_by_time[0] <= burst + MAX_RECORD_BYTES
    for size in taken_by_time[1:]:
        assert size <= 0.5 * SHARD_BYTES_PER_S + 110_000
    assert sum(taken_by_time[1:]) >= 4 * 0.5 * SHARD_BYTES_PER_S - 110_000 * 5


def test_a_throttled_shard_slows_down_and_recovers() -> None:
    shard = ShardLimiter(0.0)
    # a few stray refusals do not slow a shard, nor does one small call with one refusal
    shard.feedback(sent=100, throttled=3)
    shard.feedback(sent=2, throttled=1)
    assert shard.factor == 1.0
    # a real share of refusals does, more each time
    shard.feedback(sent=100, throttled=40)
    first = shard.factor
    shard.feedback(sent=100, throttled=40)
    assert shard.factor < first < 1.0
    assert shard.records.tokens <= 0
    # between the two thresholds it holds
    held = shard.factor
    shard.feedback(sent=100, throttled=5)
    assert shard.factor == held
    # clean windows bring it back to full pace
    for _ in range(40):
        shard.feedback(sent=100, throttled=0)
    assert shard.factor == 1.0


def test_an_overall_rate_limits_the_batch() -> None:
    now = 0.0
    limiter = RateLimiter(ShardMap.uniform(2), now, rate=100)
    sender = Sender(RecordingTransport(), "s", ShardMap.uniform(2), limiter, clock=lambda: now)
    sender.put(_records(300))
    limiter.refill(now)
    total = 0
    while batch := sender._take_batch():
        total += len(batch)
    assert total == 20  # the overall bucket holds BURST_S (0.2 s) of 100 events/s
