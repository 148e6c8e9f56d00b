"""Putting records on the stream: batched, paced per shard, retried, and in version order per aggregate.

The order rule. PutRecords does not keep order within a call when some records fail: a later record of the
same partition key can be taken while an earlier one is refused. And two calls in flight at once can land in
either order. So each aggregate has at most ONE record in flight, in one call: its next event goes out only
after the stream has taken the previous one. A failed record (FailedRecordCount with
ProvisionedThroughputExceeded or InternalFailure) is sent again after a backoff before anything later of its
aggregate; a call whose outcome is unknown (a 5xx, a timeout, a dropped connection) is sent again as a whole,
which may put a record twice but never out of order (consumers dedupe on aggregate id + version).

Throughput comes from many aggregates at once: a call takes the next event of up to 500 aggregates (and at
most 5 MiB), several calls are in flight, and each shard is paced by `shards.RateLimiter`.

Spreading (`spread=True`, the CLI's `--spread-shards`). By default the stream hashes the partition key (the
aggregate id), so the replay can go no faster than its busiest shard: with a few thousand aggregates one shard
easily holds 26 % of the events of a 4-shard stream instead of 25 %. Spreading sends every record with an
ExplicitHashKey instead: an aggregate seen for the first time goes to the shard with the least work queued,
and all its events follow it there (the order rule holds per shard, so an aggregate must never change shard
within a replay: its lane is kept across page ends, and a resumed replay takes the lanes the checkpoint
holds for the aggregates it had part put, see `parts.Part.lanes`). The cost: a later replay of the same
aggregate may land on another shard, so two replays of one aggregate are no longer ordered with respect to
each other on the stream; that is why it is not the default.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import random
import time
from collections import deque
from collections.abc import Callable, Collection
from dataclasses import dataclass

import orjson

from replayer.errors import AwsError, ReplayFailed
from replayer.records import MAX_CALL_BYTES, MAX_CALL_RECORDS, Record, put_records_body
from replayer.shards import RateLimiter, ShardMap
from replayer.wire import THROTTLING_CODES, Backoff, Transport

_READY, _IN_FLIGHT, _DELAYED = 0, 1, 2
# A call with fewer than a fifth of 500 records waits until the previous one is this old (KPL lingers too;
# each shard banks BURST_S of pace meanwhile, so lingering costs no throughput).
LINGER_S = 0.05

# Retries of one record: with the backoff below that is a couple of minutes of refusals before giving up.
PUT_BACKOFF = Backoff(base=0.05, cap=5.0, max_attempts=40)

# Spreading weighs a shard's queued work in bytes of its 1 MiB/s, a record costing at least 1/1000 of it
# (the shard's 1,000 records/s): whichever of the two limits the record meets first.
_RECORD_COST = 1049
# Beyond this many shards a new aggregate picks the least loaded of a sample (power of several choices).
_SPREAD_SCAN_ALL = 64
_SPREAD_SAMPLE = 8


@dataclass(slots=True)
class SenderStats:
    """What the sender did (records are counted per attempt unless said otherwise)."""

    put: int = 0  # records the stream took (each event once, unless a call's outcome was unknown)
    put_bytes: int = 0
    calls: int = 0
    retried: int = 0  # records sent again after a failure
    throttled: int = 0  # records refused with ProvisionedThroughputExceeded (or a throttled call)
    failed: int = 0  # records refused otherwise (InternalFailure) or in a failed call
    unknown_calls: int = 0  # calls whose outcome was unknown and were sent again
    maybe_repeated: int = 0  # records in those calls: each may be on the stream twice


class _Aggregate:
    """One aggregate's events waiting to be put, oldest first; the first one may be in flight."""

    __slots__ = ("aggregate_id", "attempts", "events", "hash_key", "shard", "state", "suffix")

    def __init__(self, aggregate_id: str, shard: int, hash_key: str | None = None) -> None:
        self.aggregate_id = aggregate_id
        self.shard = shard
        self.events: deque[Record] = deque()
        self.state = _READY
        self.attempts = 0
        # When spreading: the ExplicitHashKey of the aggregate's lane and the entry ending that carries it.
        self.hash_key = hash_key
        self.suffix = b',"ExplicitHashKey":"' + hash_key.encode() + b'"}' if hash_key else b""


class Sender:
    """Takes records in reading order (`put`), puts them on `stream` (`run`), confirms each to its part."""

    def __init__(
        self,
        transport: Transport,
        stream: str,
        shard_map: ShardMap,
        limiter: RateLimiter | None = None,
        *,
        concurrency: int = 16,
        backoff: Backoff = PUT_BACKOFF,
        clock: Callable[[], float] = time.monotonic,
        max_call_records: int = MAX_CALL_RECORDS,
        max_call_bytes: int = MAX_CALL_BYTES,
        on_put: Callable[[Record], None] | None = None,
        spread: bool = False,
    ) -> None:
        self._transport = transport
        self._spread = spread
        # When spreading: each shard's queued work and all the work it was given (see _RECORD_COST), and a
        # sampler for very wide streams.
        self._queued = [0] * len(shard_map)
        self._given = [0] * len(shard_map)
        self._sampler = random.Random(len(shard_map))
        self._on_put = on_put
        self._stream = stream
        self._shard_map = shard_map
        self._limiter = limiter
        self._concurrency = concurrency
        self._backoff = backoff
        self._clock = clock
        self._max_records = max_call_records
        self._max_bytes = max_call_bytes
        self._min_records = max(1, max_call_records // 5)
        self._last_launch = -LINGER_S
        self._aggregates: dict[str, _Aggregate] = {}
        self._ready: list[deque[_Aggregate]] = [deque() for _ in shard_map.shards]
        self._ready_count = 0
        self._delayed: list[tuple[float, int, _Aggregate]] = []
        self._tie = itertools.count()
        self._round_robin = 0
        self._in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._finishing = False
        self._stopping = False
        self._error: BaseException | None = None
        self.stats = SenderStats()

    # -- the reading side ------------------------------------------------------------------------------

    def put(self, records: list[Record]) -> None:
        """Queue records read from one part, in its reading order."""
        if self._spread:
            self._put_spread(records)
            return
        aggregates = self._aggregates
        for record in records:
            aggregate = aggregates.get(record.aggregate_id)
            if aggregate is None:
                aggregate = _Aggregate(record.aggregate_id, self._shard_map.shard_of(record.aggregate_id))
                aggregates[record.aggregate_id] = aggregate
                aggregate.events.append(record)
                self._ready[aggregate.shard].append(aggregate)
                self._ready_count += 1
                continue
            if record.version <= aggregate.events[-1].version:
                raise _out_of_order(record, aggregate.events[-1])
            aggregate.events.append(record)
        self._wake.set()

    def _put_spread(self, records: list[Record]) -> None:
        """`put` when spreading: each record goes with its aggregate's lane (ExplicitHashKey)."""
        aggregates = self._aggregates
        queued = self._queued
        given = self._given
        for record in records:
            aggregate = aggregates.get(record.aggregate_id)
            if aggregate is None:
                aggregate = self._lane(record)
                aggregates[record.aggregate_id] = aggregate
                self._ready[aggregate.shard].append(aggregate)
                self._ready_count += 1
            elif record.version <= aggregate.events[-1].version:
                raise _out_of_order(record, aggregate.events[-1])
            record.entry = record.entry[:-1] + aggregate.suffix
            record.hash_key = aggregate.hash_key
            cost = record.size if record.size > _RECORD_COST else _RECORD_COST
            queued[aggregate.shard] += cost
            given[aggregate.shard] += cost
            aggregate.events.append(record)
        self._wake.set()

    def _lane(self, record: Record) -> _Aggregate:
        """The queue of an aggregate not queued now, on its lane: the one it already has in this part (its
        events before a page end, or put by the run this one resumes), else the shard with the least work
        queued (a slow or throttled shard gets less), and of those the one given the least so far (an idle
        replay, whose queues are empty whenever a page comes, still takes turns)."""
        part = record.part
        aggregate_id = record.aggregate_id
        hash_key: str | None = None
        if part is not None:
            tail = part.tail_lane
            if tail is not None and tail[0] == aggregate_id:
                hash_key = tail[1]
            else:
                hash_key = part.lanes.get(aggregate_id)
        if hash_key is not None:
            shard = self._shard_map.shard_of_hash_key(hash_key)
        else:
            queued = self._queued
            count = len(queued)
            candidates: Collection[int] = range(count)
            if count > _SPREAD_SCAN_ALL:
                candidates = self._sampler.sample(range(count), _SPREAD_SAMPLE)
            given = self._given
            shard = min(candidates, key=lambda s: (queued[s], given[s]))
            hash_key = self._shard_map.hash_key(shard)
        if part is not None:
            part.tail_lane = (aggregate_id, hash_key)
        return _Aggregate(aggregate_id, shard, hash_key)

    @property
    def waiting(self) -> int:
        """Records queued and not yet taken by the stream."""
        return sum(len(a.events) for a in self._aggregates.values())

    def finish(self) -> None:
        """No more records will come: `run` returns once everything queued is on the stream."""
        self._finishing = True
        self._wake.set()

    def stop(self) -> None:
        """Stop starting calls: `run` returns once the calls in flight are answered (for a graceful stop)."""
        self._stopping = True
        self._wake.set()

    def fail(self, error: BaseException) -> None:
        if self._error is None:
            self._error = error
        self._stopping = True
        self._wake.set()

    # -- the putting side ------------------------------------------------------------------------------

    async def run(self) -> None:
        """Put records until finished (everything queued is on the stream) or stopped; raise a fatal error."""
        try:
            while True:
                ending = self._stopping or (self._finishing and not self._aggregates)
                if ending and not self._in_flight:
                    break
                self._wake.clear()
                timeout = self._dispatch()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout)
        finally:
            if self._tasks and self._error is not None:
                for task in list(self._tasks):
                    task.cancel()
                await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._error is not None:
            raise self._error

    def _dispatch(self) -> float | None:
        """Start every call that may start now; return how long to sleep (None: until woken)."""
        now = self._clock()
        delayed = self._delayed
        while delayed and delayed[0][0] <= now:
            aggregate = heapq.heappop(delayed)[2]
            aggregate.state = _READY
            self._ready[aggregate.shard].append(aggregate)
            self._ready_count += 1
        if self._stopping:
            return None
        limiter = self._limiter
        if limiter is not None:
            limiter.refill(now)
        lingering = False
        while self._in_flight < self._concurrency and self._ready_count:
            # A call goes when it can carry a fair load, or when the last one went LINGER_S ago: a stream of
            # tiny calls costs the client and the service per call and gains nothing.
            if now - self._last_launch < LINGER_S and self._sendable(limiter) < self._min_records:
                lingering = True
                break
            batch = self._take_batch()
            if not batch:
                break
            self._last_launch = now
            self._in_flight += 1
            task = asyncio.get_running_loop().create_task(self._call(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        waits: list[float] = []
        if delayed:
            waits.append(delayed[0][0] - now)
        if lingering:
            waits.append(self._last_launch + LINGER_S - now)
        elif self._ready_count and self._in_flight < self._concurrency and limiter is not None:
            waits.append(self._token_wait(limiter))
        return max(0.001, min(waits)) if waits else None

    def _sendable(self, limiter: RateLimiter | None) -> int:
        """How many records a call could take now, at most `_min_records`; or `_min_records` when the pace is
        not what holds records back (then lingering would only delay them: the end of a replay, where a few
        aggregates' events go one round trip after another)."""
        if limiter is None:
            return self._ready_count
        count = 0
        paced = False
        for index, ready in enumerate(self._ready):
            if ready:
                tokens = limiter.shards[index].records.tokens
                if tokens < len(ready):
                    paced = True
                if tokens > 0:
                    count += min(len(ready), int(tokens) + 1)
                    if count >= self._min_records:
                        break
        return count if paced else self._min_records

    def _token_wait(self, limiter: RateLimiter) -> float:
        overall = limiter.overall_wait()
        shard_waits = [limiter.shards[i].wait_time() for i, ready in enumerate(self._ready) if ready]
        # Wake a little after the first shard opens, so that a call carries more than a record or two.
        return max(overall, min(shard_waits, default=0.0)) + 0.01

    def _take_batch(self) -> list[_Aggregate]:
        """The next event of up to 500 ready aggregates, within 5 MiB and the shards' pace."""
        limiter = self._limiter
        max_records = self._max_records
        max_bytes = self._max_bytes
        if limiter is not None:
            if not limiter.overall_open():
                return []
            if limiter.records is not None:
                max_records = max(1, min(max_records, int(limiter.records.tokens)))
            if limiter.bytes is not None:
                max_bytes = max(1, min(max_bytes, int(limiter.bytes.tokens)))
        batch: list[_Aggregate] = []
        size = 0
        shards = len(self._ready)
        start = self._round_robin
        self._round_robin = (start + 1) % shards
        full = False
        for k in range(shards):
            index = (start + k) % shards
            ready = self._ready[index]
            if not ready:
                continue
            shard = limiter.shards[index] if limiter is not None else None
            while ready:
                if shard is not None and not shard.open():
                    break
                aggregate = ready[0]
                record_size = aggregate.events[0].size
                if size + record_size > max_bytes and batch:
                    full = True
                    break
                ready.popleft()
                aggregate.state = _IN_FLIGHT
                batch.append(aggregate)
                size += record_size
                if shard is not None:
                    shard.take(record_size)
                if len(batch) >= max_records:
                    full = True
                    break
            if full:
                break
        self._ready_count -= len(batch)
        if limiter is not None and batch:
            limiter.take_overall(len(batch), size)
        return batch

    async def _call(self, batch: list[_Aggregate]) -> None:
        records = [a.events[0] for a in batch]
        self.stats.calls += 1
        try:
            raw = await self._transport.call("kinesis", "PutRecords", put_records_body(self._stream, records))
        except AwsError as exc:
            self._call_failed(batch, records, exc)
            return
        except Exception as exc:  # a bug, not AWS: stop rather than guess what reached the stream
            self.fail(exc)
            return
        finally:
            self._in_flight -= 1
            self._wake.set()
        try:
            response = orjson.loads(raw)
            results = response["Records"]
            failed = int(response.get("FailedRecordCount") or 0)
            if len(results) != len(records):
                raise ValueError(f"{len(results)} results for {len(records)} records")
        except (KeyError, TypeError, ValueError) as exc:
            self._call_failed(
                batch, records, AwsError("BadResponse", repr(exc), retryable=True, outcome_unknown=True)
            )
            return
        if not failed:
            self._all_taken(batch)
            if self._limiter is not None:
                self._feedback(batch, ())
            return
        throttled: set[int] = set()
        refused: list[_Aggregate] = []
        now = self._clock()
        for i, (aggregate, record, result) in enumerate(zip(batch, records, results, strict=True)):
            code = result.get("ErrorCode")
            if not code:
                self._taken(aggregate, record)
                continue
            if code == "ProvisionedThroughputExceededException":
                self.stats.throttled += 1
                throttled.add(i)
            else:
                self.stats.failed += 1
            refused.append(aggregate)
            self._again(aggregate, record, code, result.get("ErrorMessage", ""), now)
        if self._limiter is not None:
            self._feedback(batch, throttled)
            self._refund(refused)

    def _call_failed(self, batch: list[_Aggregate], records: list[Record], exc: AwsError) -> None:
        if not exc.retryable:
            self.fail(ReplayFailed(f"PutRecords to stream {self._stream} failed: {exc}"))
            return
        if exc.outcome_unknown:
            self.stats.unknown_calls += 1
            self.stats.maybe_repeated += len(records)
        throttled = exc.code in THROTTLING_CODES
        now = self._clock()
        for aggregate, record in zip(batch, records, strict=True):
            if throttled:
                self.stats.throttled += 1
            else:
                self.stats.failed += 1
            self._again(aggregate, record, exc.code, exc.message, now)
        if self._limiter is not None:
            if throttled:
                self._feedback(batch, set(range(len(batch))))
            if not exc.outcome_unknown:
                self._refund(batch)

    def _taken(self, aggregate: _Aggregate, record: Record) -> None:
        """The stream took the record: confirm it and let the aggregate's next event go."""
        events = aggregate.events
        events.popleft()
        aggregate.attempts = 0
        if events:
            aggregate.state = _READY
            self._ready[aggregate.shard].append(aggregate)
            self._ready_count += 1
        else:
            del self._aggregates[aggregate.aggregate_id]
        if self._spread:
            self._queued[aggregate.shard] -= record.size if record.size > _RECORD_COST else _RECORD_COST
        stats = self.stats
        stats.put += 1
        stats.put_bytes += record.size
        record.entry = b""  # the data is on the stream; keep only the key for the watermark
        record.part.confirm(record)
        if self._on_put is not None:
            self._on_put(record)

    def _all_taken(self, batch: list[_Aggregate]) -> None:
        """`_taken` for every record of a call the stream took whole (the common case, kept tight)."""
        ready = self._ready
        aggregates = self._aggregates
        on_put = self._on_put
        requeued = 0
        size = 0
        queued = self._queued if self._spread else None
        for aggregate in batch:
            events = aggregate.events
            record = events.popleft()
            size += record.size
            if queued is not None:
                queued[aggregate.shard] -= record.size if record.size > _RECORD_COST else _RECORD_COST
            if events:
                aggregate.state = _READY
                aggregate.attempts = 0
                ready[aggregate.shard].append(aggregate)
                requeued += 1
            else:
                del aggregates[aggregate.aggregate_id]
            record.entry = b""
            record.part.confirm(record)
            if on_put is not None:
                on_put(record)
        self._ready_count += requeued
        self.stats.put += len(batch)
        self.stats.put_bytes += size

    def _again(self, aggregate: _Aggregate, record: Record, code: str, message: str, now: float) -> None:
        """The record was refused or its call failed: send it again after a backoff, before anything later."""
        aggregate.attempts += 1
        self.stats.retried += 1
        if aggregate.attempts >= self._backoff.max_attempts:
            self.fail(
                ReplayFailed(
                    f"event {record.aggregate_id} v{record.version} ({record.event_id}) was refused "
                    f"{aggregate.attempts} times by stream {self._stream} (last: {code} {message})".rstrip()
                )
            )
            return
        aggregate.state = _DELAYED
        heapq.heappush(
            self._delayed, (now + self._backoff.delay(aggregate.attempts), next(self._tie), aggregate)
        )

    def _feedback(self, batch: list[_Aggregate], throttled: Collection[int]) -> None:
        assert self._limiter is not None
        sent: dict[int, int] = {}
        refused: dict[int, int] = {}
        for i, aggregate in enumerate(batch):
            sent[aggregate.shard] = sent.get(aggregate.shard, 0) + 1
            if i in throttled:
                refused[aggregate.shard] = refused.get(aggregate.shard, 0) + 1
        for shard, count in sent.items():
            self._limiter.shards[shard].feedback(count, refused.get(shard, 0))

    def _refund(self, refused: list[_Aggregate]) -> None:
        """Refused records took none of the shards' throughput: give their tokens back. (Each refused
        aggregate's first event is the refused record: it stays first until the stream takes it.)"""
        limiter = self._limiter
        assert limiter is not None
        total_size = 0
        for aggregate in refused:
            size = aggregate.events[0].size
            limiter.shards[aggregate.shard].refund(1, size)
            total_size += size
        limiter.refund_overall(len(refused), total_size)


def _out_of_order(record: Record, last: Record) -> ReplayFailed:
    return ReplayFailed(
        f"aggregate {record.aggregate_id}: v{record.version} was read after v{last.version}; the table returned "
        "it out of version order, so it was not put (replay it with --aggregate)"
    )
