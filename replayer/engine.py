"""Running a replay: plan it, read its parts, put their events, checkpoint, report.

    prepare()   resolves the plan: the table's size (default segments), the stream's shards, the replay's
                definition (stored on first run, read back on --resume), this worker's parts and watermarks
    Runner      reads up to `read_concurrency` parts at once (each its own coroutine, paging from its own
                position), hands records to the Sender, saves checkpoints every `checkpoint_interval`
                seconds and when it ends, and reports progress
    dry_run()   reads the same parts and counts instead of putting

A stop request (SIGTERM on Fargate, the Lambda running out of time) stops reading, lets the calls in flight
finish, saves the watermarks and ends with outcome "stopped": `--resume` then repeats nothing.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import gc
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any, Protocol

import orjson

from eventlog.envelope import ReplayInfo, utc_now
from replayer.checkpoints import CheckpointStore, DynamoCheckpoints, MemoryCheckpoints, RunState
from replayer.config import Filters, ReplayConfig
from replayer.connect import AwsConnection, StreamInfo, TableInfo
from replayer.errors import AwsError, ReplayError, ReplayFailed, SetupError
from replayer.parts import Part
from replayer.plan import (
    AGGREGATE_DONE,
    Expressions,
    default_query_parts,
    default_segments,
    plan_parts,
    worker_parts,
)
from replayer.records import Record, RecordEncoder, item_key
from replayer.report import Reporter, Snapshot, Summary
from replayer.sender import Sender
from replayer.shards import RateLimiter
from replayer.wire import Backoff, Transport, call_with_retries

# List prices in us-east-1 (2025) for the dry run's estimate; they change, and other regions differ.
PRICE_DYNAMODB_READ_UNIT = 0.125 / 1e6  # on-demand, per read request unit (4 KB strongly / 8 KB eventually)
PRICE_KINESIS_PUT_UNIT = 0.014 / 1e6  # provisioned, per 25 KB PUT payload unit
PRICE_KINESIS_SHARD_HOUR = 0.015
PRICE_KINESIS_ON_DEMAND_GB = 0.08  # on-demand, per GB ingested (each record rounded up to 1 KB)
PRICE_KINESIS_ON_DEMAND_HOUR = 0.04

READ_BACKOFF = Backoff(base=0.05, cap=5.0, max_attempts=12)

# The hot path allocates about fifteen container objects per event (a Scan page's dicts, the envelope, the
# record), nearly all freed by reference counting: with CPython's default thresholds (700, 10, 10) the cyclic
# collector ran every ~50 events and took a third of the replayer's CPU (docs/replayer.md). A replay raises
# the thresholds while it runs and puts them back afterwards.
GC_THRESHOLDS = (50_000, 20, 20)


@contextlib.contextmanager
def gc_tuned() -> Iterator[None]:
    """Collect cycles less often while a replay runs (see GC_THRESHOLDS); never lower a higher setting."""
    previous = gc.get_threshold()
    gc.set_threshold(*(max(a, b) for a, b in zip(previous, GC_THRESHOLDS, strict=False)))
    try:
        yield
    finally:
        gc.set_threshold(*previous)


class ControlPlane(Protocol):
    """What planning needs from AWS (AwsConnection provides it; benchmarks fake it)."""

    async def describe_table(self, name: str, what: str = "table") -> TableInfo: ...

    async def describe_stream(self, name: str) -> StreamInfo: ...


@dataclass
class Prepared:
    """A replay ready to run: its resolved config, this worker's parts and the target stream."""

    config: ReplayConfig
    parts: list[Part]
    total_parts: int
    stream: StreamInfo
    table: TableInfo
    resumed: bool = False

    @property
    def plan(self) -> str:
        return "query" if self.config.filters.uses_query else "scan"

    @property
    def total_estimate(self) -> int | None:
        """What this worker will put, when it can be known cheaply (an unfiltered scan: the item count)."""
        if self.plan != "scan" or self.config.filters != Filters():
            return None
        share = self.table.item_count * len(self.parts) / max(1, self.total_parts)
        return max(0, math.ceil(share))


async def prepare(
    config: ReplayConfig,
    control: ControlPlane,
    checkpoints: CheckpointStore,
    read_ahead: int = 5000,
) -> Prepared:
    """Resolve the plan, store or load the replay's definition, and build this worker's parts."""
    stored = None
    if config.resume:
        stored = await checkpoints.load(config.replay_id)
        if stored is None:
            raise SetupError(
                f"no replay {config.replay_id} in the checkpoint table {config.checkpoint_table}"
            )
        try:
            config = config.with_definition(stored.definition)
        except (KeyError, TypeError, ValueError) as exc:
            raise SetupError(
                f"replay {config.replay_id}: its stored definition is unreadable ({exc})"
            ) from exc
        if config.segments is not None and config.segments < config.worker.count:
            raise SetupError(
                f"replay {config.replay_id} has {config.segments} parts; it cannot be shared by "
                f"{config.worker.count} workers"
            )
    table = await control.describe_table(config.events_table, "events table")
    stream = await control.describe_stream(config.stream)
    if config.state_table is not None and not config.dry_run:
        # A missing shadow table would fail every record at the write function (and stall its shard):
        # refuse to start instead.
        await control.describe_table(config.state_table, "state table")
    if config.segments is None:
        if config.filters.uses_query:
            segments = default_query_parts(len(config.filters.aggregates), config.worker.count)
        else:
            segments = default_segments(table.size_bytes, config.worker.count)
        config = replace(config, segments=segments)
    assert config.segments is not None
    if not config.resume and not config.dry_run and config.checkpoints:
        definition = config.definition(config.segments)
        try:
            await checkpoints.create(config.replay_id, definition)
        except SetupError:
            # Workers of one replay all start it: the first stores the definition, the others join it.
            stored = await checkpoints.load(config.replay_id) if config.worker.count > 1 else None
            if stored is None or stored.definition != orjson.loads(orjson.dumps(definition)):
                raise
    specs = worker_parts(plan_parts(config.filters, config.segments), config.worker)
    states = stored.parts if stored else {}
    parts = [Part(spec, states.get(spec.name), limit=read_ahead) for spec in specs]
    return Prepared(config, parts, config.segments, stream, table, resumed=stored is not None)


class PartReader:
    """Reads one part page by page from its own position and hands each page's records to `sink`."""

    def __init__(
        self,
        transport: Transport,
        config: ReplayConfig,
        sink: Callable[[list[Record]], None],
        on_retry: Callable[[AwsError], None] | None = None,
    ) -> None:
        self._transport = transport
        self._table = config.events_table
        self._expressions = Expressions(config.filters)
        self._encoder = RecordEncoder(ReplayInfo(config.replay_id, config.mode))
        self._sink = sink
        self._on_retry = on_retry

    async def read(self, part: Part) -> None:
        if part.done:
            return
        if part.spec.kind == "scan":
            await self._scan(part)
        else:
            await self._query(part)

    async def _page(self, operation: str, body: bytes) -> tuple[list[Record], tuple[str, int] | None]:
        try:
            raw = await call_with_retries(
                self._transport, "dynamodb", operation, body, READ_BACKOFF, on_retry=self._on_retry
            )
        except AwsError as exc:
            raise ReplayFailed(f"{operation} on table {self._table} failed: {exc}") from exc
        try:
            page = orjson.loads(raw)
            items = page.get("Items") or ()
            last = page.get("LastEvaluatedKey")
        except (orjson.JSONDecodeError, AttributeError) as exc:
            raise ReplayFailed(f"{operation} on {self._table}: unreadable answer ({exc})") from exc
        encode = self._encoder.encode
        return [encode(item) for item in items], (item_key(last) if last else None)

    def _deliver(self, part: Part, records: list[Record]) -> None:
        if records:
            part.add(records)
            records = part.fresh(records)
            if records:
                self._sink(records)

    async def _scan(self, part: Part) -> None:
        # Hand-written, not aiobotocore's paginator: the pages come raw through wire.py and orjson, since
        # botocore's parsing of a 1 MB page costs several times the work itself (docs/replayer.md); and each
        # page's end is a watermark marker for the checkpoints. Bounded: every page starts after the last
        # key of the one before (a segment is finite), each call's retries are bounded (READ_BACKOFF), and
        # a missing LastEvaluatedKey ends it.
        spec = part.spec
        start = part.position
        while True:
            body = self._expressions.scan_body(self._table, spec.index, spec.total, start)
            records, last = await self._page("Scan", body)
            self._deliver(part, records)
            if last is None:
                part.add_marker(None, final=True)
                return
            part.add_marker(last)
            start = last
            await part.room()

    async def _query(self, part: Part) -> None:
        aggregates = part.spec.aggregates
        index, after = 0, 0
        if part.position is not None:
            # Aggregates are sorted within a part: continue with the one the watermark is in.
            index = bisect.bisect_left(aggregates, part.position[0])
            if index < len(aggregates) and aggregates[index] == part.position[0]:
                after = part.position[1]
        for aggregate in aggregates[index:]:
            start: tuple[str, int] | None = None
            # Raw pages, as in _scan; each page starts after the last key of the one before.
            while after < AGGREGATE_DONE and not self._expressions.query_range_empty(after):
                body = self._expressions.query_body(self._table, aggregate, after, start)
                records, start = await self._page("Query", body)
                self._deliver(part, records)
                if start is None:
                    break
                part.add_marker(start)
                await part.room()
            part.add_marker((aggregate, AGGREGATE_DONE))
            after = 0
            await part.room()
        part.add_marker(None, final=True)


class Runner:
    """Runs a prepared replay to its end (complete, failed or stopped) and returns the summary."""

    def __init__(
        self,
        prepared: Prepared,
        transport: Transport,
        checkpoints: CheckpointStore,
        reporter: Reporter,
        *,
        stop: asyncio.Event | None = None,
        pace: bool = True,
        clock: Callable[[], float] = time.monotonic,
        on_put: Callable[[Record], None] | None = None,
    ) -> None:
        self.prepared = prepared
        self.config = prepared.config
        self._transport = transport
        self._checkpoints = checkpoints
        self._reporter = reporter
        self._stop = stop or asyncio.Event()
        self._clock = clock
        self.limiter = (
            RateLimiter(
                prepared.stream.shard_map,
                clock(),
                rate=self.config.limits.rate,
                max_bytes_per_s=self.config.limits.max_bytes_per_s,
            )
            if pace
            else None
        )
        self.sender = Sender(
            transport,
            self.config.stream,
            prepared.stream.shard_map,
            self.limiter,
            concurrency=self.config.concurrency,
            clock=clock,
            on_put=on_put,
            spread=self.config.spread_shards,
        )
        self._read_retries = 0
        self._started = 0.0
        self._started_at = ""
        self._save_lock = asyncio.Lock()
        self._save_error: str | None = None
        self._remaining_estimate: int | None = None

    def _on_read_retry(self, error: AwsError) -> None:
        self._read_retries += 1

    def snapshot(self) -> Snapshot:
        parts = self.prepared.parts
        stats = self.sender.stats
        return Snapshot(
            elapsed_s=self._clock() - self._started,
            read=sum(p.read for p in parts),
            put=stats.put,
            put_bytes=stats.put_bytes,
            retried=stats.retried,
            throttled=stats.throttled,
            waiting=self.sender.waiting,
            parts_done=sum(1 for p in parts if p.done),
            parts=len(parts),
            total=self._remaining_estimate,
        )

    def info(self) -> dict[str, Any]:
        """What the start line says."""
        config = self.config
        limiter = self.limiter
        return {
            "replay_id": config.replay_id,
            "mode": config.mode,
            "filters": config.filters.describe(),
            "stream": config.stream,
            "events_table": config.events_table,
            "state_table": config.state_table,
            "spread_shards": config.spread_shards,
            "plan": self.prepared.plan,
            "segments": config.segments,
            "parts": len(self.prepared.parts),
            "worker": str(config.worker),
            "shards": len(self.prepared.stream.shard_map),
            "resumed": self.prepared.resumed,
            "already_put": sum(p.put for p in self.prepared.parts),
            "total": self._remaining_estimate,
            "rate_limit": {
                "events_per_s": limiter.records_per_s if limiter else 0.0,
                "bytes_per_s": limiter.bytes_per_s if limiter else 0.0,
            },
        }

    async def run(self) -> Summary:
        """Read, put and checkpoint until done, failed or stopped."""
        with gc_tuned():
            return await self._run()

    async def _run(self) -> Summary:
        self._started = self._clock()
        self._started_at = utc_now()
        estimate = self.prepared.total_estimate
        already = sum(p.put for p in self.prepared.parts)
        self._remaining_estimate = None if estimate is None else max(0, estimate - already)
        self._reporter.start(self.info())
        sender_task = asyncio.create_task(self.sender.run())
        reading = asyncio.create_task(self._read_all())
        stopping = asyncio.create_task(self._stop.wait())
        background = [asyncio.create_task(self._save_loop()), asyncio.create_task(self._report_loop())]
        error: BaseException | None = None
        try:
            await asyncio.wait({reading, sender_task, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if reading.done() and not reading.cancelled() and reading.exception() is None:
                self.sender.finish()
                await asyncio.wait({sender_task, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if reading.done() and not reading.cancelled():
                error = _unwrap(reading.exception())
        finally:
            reading.cancel()
            if not sender_task.done():
                self.sender.stop()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(reading, return_exceptions=True)
            try:
                await sender_task
            except Exception as exc:
                error = error or exc
            for task in (*background, stopping):
                task.cancel()
            await asyncio.gather(*background, stopping, return_exceptions=True)
            done = all(p.done for p in self.prepared.parts)
            if error is not None:
                outcome = "failed"
            elif done:
                outcome = "complete"
            else:
                outcome = "stopped"
            await self._save(outcome, error, everything=True)
        if error is not None and not isinstance(error, ReplayError):
            raise error
        summary = self._summary(outcome, error)
        self._reporter.finish(summary)
        return summary

    async def _read_all(self) -> None:
        reader = PartReader(self._transport, self.config, self.sender.put, self._on_read_retry)
        queue = [p for p in self.prepared.parts if not p.done]
        queue.reverse()

        async def read_parts() -> None:
            while queue:
                await reader.read(queue.pop())

        async with asyncio.TaskGroup() as group:
            for _ in range(min(self.config.read_concurrency, len(queue))):
                group.create_task(read_parts())

    async def _save_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.checkpoint_interval)
            await self._save("running")

    async def _report_loop(self) -> None:
        while True:
            await asyncio.sleep(self._reporter.interval)
            self._reporter.update(self.snapshot())

    async def _save(self, state: str, error: BaseException | None = None, everything: bool = False) -> None:
        """Save the parts whose watermark moved (every part when `everything`) and this worker's run state."""
        if not self.config.checkpoints:
            return
        async with self._save_lock:
            dirty = [p for p in self.prepared.parts if p.dirty or everything]
            for part in dirty:
                part.dirty = False
            snapshot = self.snapshot()
            run = RunState(
                worker=str(self.config.worker),
                state=state,
                read=snapshot.read,
                put=snapshot.put,
                retried=snapshot.retried,
                throttled=snapshot.throttled,
                started_at=self._started_at,
                error=str(error) if error else "",
            )
            try:
                await self._checkpoints.save(self.config.replay_id, [p.state() for p in dirty], run)
                self._save_error = None
            except BaseException as exc:
                # Not saved (or cancelled half way): the next save must write these parts again.
                for part in dirty:
                    part.dirty = True
                if not isinstance(exc, Exception):
                    raise
                self._save_error = f"checkpoint not saved: {exc}"

    def _summary(self, outcome: Any, error: BaseException | None) -> Summary:
        stats = self.sender.stats
        snapshot = self.snapshot()
        message = str(error) if error else None
        if self._save_error and outcome != "complete":
            message = f"{message}; {self._save_error}" if message else self._save_error
        return Summary(
            replay_id=self.config.replay_id,
            mode=self.config.mode,
            plan=self.prepared.plan,
            stream=self.config.stream,
            worker=str(self.config.worker),
            parts=len(self.prepared.parts),
            segments=self.config.segments or 0,
            outcome=outcome,
            read=snapshot.read,
            put=stats.put,
            put_bytes=stats.put_bytes,
            retried=stats.retried,
            throttled=stats.throttled,
            failed_records=stats.failed,
            maybe_repeated=stats.maybe_repeated,
            read_retries=self._read_retries,
            duration_s=snapshot.elapsed_s,
            error=message,
            rate_limit=self.info()["rate_limit"],
        )


async def dry_run(prepared: Prepared, transport: Transport, reporter: Reporter) -> Summary:
    """Read what the replay would put and count it: events, bytes, aggregates, time at the pace, cost."""
    config = prepared.config
    shard_map = prepared.stream.shard_map
    per_shard_records = [0] * len(shard_map)
    per_shard_bytes = [0] * len(shard_map)
    aggregates: set[str] = set()
    put_units = 0
    kib_units = 0

    def count(records: list[Record]) -> None:
        nonlocal put_units, kib_units
        for record in records:
            aggregates.add(record.aggregate_id)
            shard = shard_map.shard_of(record.aggregate_id)
            per_shard_records[shard] += 1
            per_shard_bytes[shard] += record.size
            put_units += -(-record.size // 25_600)
            kib_units += -(-record.size // 1024)
            record.part.confirm(record)

    started = time.monotonic()
    reader = PartReader(transport, config, count)
    with gc_tuned():
        for part in prepared.parts:
            await reader.read(part)
    limiter = RateLimiter(shard_map, 0.0, config.limits.rate, config.limits.max_bytes_per_s)
    events, total_bytes = sum(per_shard_records), sum(per_shard_bytes)
    if config.spread_shards:  # the sender evens the shards out (to within an aggregate)
        shards = len(shard_map)
        per_shard_records = [-(-events // shards)] * shards
        per_shard_bytes = [-(-total_bytes // shards)] * shards
    seconds = limiter.estimate_seconds(per_shard_records, per_shard_bytes)
    if prepared.plan == "scan":
        scanned = prepared.table.size_bytes * len(prepared.parts) / max(1, prepared.total_parts)
    else:
        scanned = total_bytes
    read_usd = math.ceil(scanned / 8192) * PRICE_DYNAMODB_READ_UNIT
    hours = seconds / 3600
    if prepared.stream.on_demand:
        kinesis_usd = kib_units / 1024**2 * PRICE_KINESIS_ON_DEMAND_GB + hours * PRICE_KINESIS_ON_DEMAND_HOUR
    else:
        kinesis_usd = put_units * PRICE_KINESIS_PUT_UNIT + hours * len(shard_map) * PRICE_KINESIS_SHARD_HOUR
    summary = Summary(
        replay_id=config.replay_id,
        mode=config.mode,
        plan=prepared.plan,
        stream=config.stream,
        worker=str(config.worker),
        parts=len(prepared.parts),
        segments=config.segments or 0,
        outcome="dry-run",
        read=events,
        duration_s=time.monotonic() - started,
        events=events,
        bytes=total_bytes,
        aggregates=len(aggregates),
        seconds_at_rate=round(seconds, 3),
        rate_limit={"events_per_s": limiter.records_per_s, "bytes_per_s": limiter.bytes_per_s},
        estimated_cost_usd={
            "dynamodb_reads": round(read_usd, 6),
            "kinesis_puts": round(kinesis_usd, 6),
            "total": round(read_usd + kinesis_usd, 6),
        },
    )
    reporter.finish(summary)
    return summary


def _unwrap(error: BaseException | None) -> BaseException | None:
    """The first real error inside (nested) exception groups, as TaskGroup raises them."""
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    return error


async def run_replay(
    config: ReplayConfig,
    connection: AwsConnection,
    reporter: Reporter,
    stop: asyncio.Event | None = None,
    transport: Transport | None = None,
    on_put: Callable[[Record], None] | None = None,
) -> Summary:
    """Plan and run (or dry-run) one replay over an open connection; the summary says how it ended.

    `transport` replaces the connection's data path (tests wrap it to inject Kinesis's failures). `on_put` is
    called with every record the stream took, in each aggregate's version order (a rebuild learns from it
    which version of each aggregate it must wait for)."""
    transport = transport or connection.transport
    checkpoints: CheckpointStore
    if config.checkpoints and not config.dry_run:
        await connection.describe_table(config.checkpoint_table, "checkpoint table")
        checkpoints = DynamoCheckpoints(connection.dynamodb, config.checkpoint_table)
    else:
        checkpoints = MemoryCheckpoints()
    async with connection.explained("checkpoint table " + config.checkpoint_table):
        prepared = await prepare(config, connection, checkpoints)
    if config.dry_run:
        return await dry_run(prepared, transport, reporter)
    return await Runner(prepared, transport, checkpoints, reporter, stop=stop, on_put=on_put).run()
