"""Stream pollers: Lambda's event source mappings for Kinesis and DynamoDB Streams, run in-process.

One `MappingPoller` per entry of `eventlog.topology.MAPPINGS`, one `ShardPoller` thread per shard. Each shard
poller reads its shard with GetRecords and calls the mapping's function the way Lambda does:

- Batching: up to `batch_size` records, or whatever has arrived once `batching_window_s` has passed since the
  first record of the batch was read (and never more than Lambda's 6 MB invocation payload).
- ReportBatchItemFailures (always on): `{"batchItemFailures": [{"itemIdentifier": seq}]}` means the records
  before the lowest failed sequence number are done and the batch is retried starting AT that record. An empty
  list, no list, or no response means the whole batch is done. A handler exception, or an identifier that is
  missing, empty or not in the batch, fails the whole batch.
- Retries: with exponential backoff and jitter, up to `max_retry_attempts` (-1: for ever, as Lambda). When they
  run out, the batch is discarded: kept in a `DiscardedBatches` list, logged, and, with a `DeadLetterSink`
  (the local stack's is `SqsDeadLetters`), sent to the mapping's dead-letter queue as Lambda's on-failure
  record (`DiscardedBatch.to_dict`: `KinesisBatchInfo` or `DDBStreamBatchInfo` with the shard, the sequence
  range, the batch size and the arrival times). With `bisect_on_error`, a failed batch is split in two and the
  halves are retried one after the other; as on Lambda, splitting does not use up the retry quota.
- Record age: a record older than `max_record_age_s` (by its arrival time and the wall clock) is not handed to
  the function; the expired head of a batch is discarded as above, with condition `RecordAgeExceeded`.
- Order: per shard, batches are strictly sequential, and a poller never goes past a record that failed
  (unless its retries ran out).

The poller calls a `LocalFunction`, which runs one invocation of a function at a time (see there why), so any
handler callable can be injected, including ones that fail on purpose.

What differs from Lambda: records that were read but not yet done live in memory, so a restarted poller starts
again from the mapping's starting position (the devstack's emulator forgets everything when it stops anyway);
`parallelization_factor` is not honoured (one invocation of a function at a time makes it moot); a function's
timeout is not enforced; the shard list is read once at start (a child shard is read after its parent).
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol

import orjson
from botocore.exceptions import BotoCoreError, ClientError

from devstack.lambda_runtime import LocalFunction
from devstack.shapes import dynamodb_stream_event, function_arn, kinesis_event
from eventlog.settings import Settings
from eventlog.topology import MAPPINGS, MappingSpec

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodbstreams import DynamoDBStreamsClient
    from mypy_boto3_kinesis import KinesisClient

log = logging.getLogger("devstack.pollers")

# Lambda's synchronous invocation payload limit: a batch stops growing before its event would exceed it.
LAMBDA_PAYLOAD_LIMIT = 6 * 1024 * 1024
# Room for the envelope around each record's own bytes (ARNs, ids, names): an estimate, on the safe side.
_RECORD_OVERHEAD = 600

Record = Mapping[str, Any]  # one GetRecords record, as boto3 returns it


@dataclass(frozen=True, slots=True)
class Shard:
    shard_id: str
    parent_id: str | None = None


@dataclass(frozen=True, slots=True)
class Page:
    """One GetRecords answer: the records, where to read next (None: the shard is closed and read to its end),
    and whether the reader has caught up with the shard's tip (then it waits before asking again)."""

    records: list[Record]
    next_iterator: str | None
    caught_up: bool


class StreamSource(Protocol):
    """A stream a mapping reads: Kinesis or a DynamoDB table's change stream."""

    @property
    def name(self) -> str: ...

    @property
    def arn(self) -> str: ...

    def shards(self) -> list[Shard]: ...

    def iterator(self, shard_id: str, position: str, after_sequence_number: str | None = None) -> str:
        """A shard iterator at `position` (TRIM_HORIZON or LATEST), or just after a sequence number."""
        ...

    def read(self, iterator: str, limit: int) -> Page: ...

    def sequence_number(self, record: Record) -> str:
        """The record's sequence number: what a handler reports as `itemIdentifier`."""
        ...

    def record_size(self, record: Record) -> int:
        """About how many bytes the record adds to the invocation's event."""
        ...

    def event(self, shard_id: str, records: Sequence[Record]) -> dict[str, Any]:
        """The exact event Lambda would hand the function for these records."""
        ...


class KinesisSource:
    """A Kinesis data stream, read shard by shard with ListShards, GetShardIterator and GetRecords."""

    def __init__(self, kinesis: KinesisClient, stream: str, region: str) -> None:
        self._kinesis = kinesis
        self._stream = stream
        self._region = region
        summary = kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]
        self._arn = summary["StreamARN"]

    @property
    def name(self) -> str:
        return self._stream

    @property
    def arn(self) -> str:
        return self._arn

    def shards(self) -> list[Shard]:
        shards: list[Shard] = []
        kwargs: dict[str, Any] = {"StreamName": self._stream}
        while True:
            response = self._kinesis.list_shards(**kwargs)
            shards.extend(Shard(s["ShardId"], s.get("ParentShardId")) for s in response["Shards"])
            token = response.get("NextToken")
            if not token:
                return shards
            kwargs = {"NextToken": token}  # ListShards refuses StreamName together with NextToken

    def iterator(self, shard_id: str, position: str, after_sequence_number: str | None = None) -> str:
        if after_sequence_number is not None:
            response = self._kinesis.get_shard_iterator(
                StreamName=self._stream,
                ShardId=shard_id,
                ShardIteratorType="AFTER_SEQUENCE_NUMBER",
                StartingSequenceNumber=after_sequence_number,
            )
        else:
            response = self._kinesis.get_shard_iterator(
                StreamName=self._stream,
                ShardId=shard_id,
                ShardIteratorType=position,  # type: ignore[arg-type]
            )
        return response["ShardIterator"]

    def read(self, iterator: str, limit: int) -> Page:
        response = self._kinesis.get_records(ShardIterator=iterator, Limit=limit)
        records: list[Record] = list(response["Records"])
        behind = response.get("MillisBehindLatest", 0)
        return Page(records, response.get("NextShardIterator"), caught_up=not records or behind == 0)

    def sequence_number(self, record: Record) -> str:
        return str(record["SequenceNumber"])

    def record_size(self, record: Record) -> int:
        # Data travels base64-encoded in the event.
        return (len(record["Data"]) + 2) // 3 * 4 + len(record["PartitionKey"]) + _RECORD_OVERHEAD

    def event(self, shard_id: str, records: Sequence[Record]) -> dict[str, Any]:
        return kinesis_event(records, shard_id=shard_id, stream_arn=self._arn, region=self._region)


class DynamoDBStreamSource:
    """A table's change stream: its LatestStreamArn from DescribeTable, then the DynamoDB Streams API."""

    def __init__(
        self, dynamodb: DynamoDBClient, streams: DynamoDBStreamsClient, table: str, region: str
    ) -> None:
        self._streams = streams
        self._table = table
        self._region = region
        arn = dynamodb.describe_table(TableName=table)["Table"].get("LatestStreamArn")
        if not arn:
            raise ValueError(f"table {table} has no stream (its TableSpec needs a stream_view_type)")
        self._arn = arn

    @property
    def name(self) -> str:
        return f"{self._table} (change stream)"

    @property
    def arn(self) -> str:
        return self._arn

    def shards(self) -> list[Shard]:
        shards: list[Shard] = []
        kwargs: dict[str, Any] = {"StreamArn": self._arn}
        while True:
            description = self._streams.describe_stream(**kwargs)["StreamDescription"]
            shards.extend(Shard(s["ShardId"], s.get("ParentShardId")) for s in description["Shards"])
            last = description.get("LastEvaluatedShardId")
            if not last:
                return shards
            kwargs = {"StreamArn": self._arn, "ExclusiveStartShardId": last}

    def iterator(self, shard_id: str, position: str, after_sequence_number: str | None = None) -> str:
        if after_sequence_number is not None:
            response = self._streams.get_shard_iterator(
                StreamArn=self._arn,
                ShardId=shard_id,
                ShardIteratorType="AFTER_SEQUENCE_NUMBER",
                SequenceNumber=after_sequence_number,
            )
        else:
            response = self._streams.get_shard_iterator(
                StreamArn=self._arn,
                ShardId=shard_id,
                ShardIteratorType=position,  # type: ignore[arg-type]
            )
        return response["ShardIterator"]

    def read(self, iterator: str, limit: int) -> Page:
        # DynamoDB Streams' GetRecords takes at most 1,000 records a call.
        response = self._streams.get_records(ShardIterator=iterator, Limit=min(limit, 1000))
        records: list[Record] = list(response["Records"])
        return Page(records, response.get("NextShardIterator"), caught_up=not records)

    def sequence_number(self, record: Record) -> str:
        return str(record["dynamodb"]["SequenceNumber"])

    def record_size(self, record: Record) -> int:
        return int(record["dynamodb"].get("SizeBytes", 0)) * 2 + _RECORD_OVERHEAD

    def event(self, shard_id: str, records: Sequence[Record]) -> dict[str, Any]:
        return dynamodb_stream_event(records, stream_arn=self._arn, region=self._region)


def source_for(
    mapping: MappingSpec,
    settings: Settings,
    *,
    kinesis: KinesisClient,
    dynamodb: DynamoDBClient,
    dynamodbstreams: DynamoDBStreamsClient,
) -> StreamSource:
    """The stream a mapping reads: a Kinesis stream by its key, or a table's change stream by the table's key."""
    if mapping.source_kind == "kinesis":
        return KinesisSource(kinesis, settings.stream(mapping.source), settings.region)
    return DynamoDBStreamSource(dynamodb, dynamodbstreams, settings.table(mapping.source), settings.region)


FailureCondition = Literal["RetryAttemptsExhausted", "RecordAgeExceeded"]


def lambda_timestamp(moment: datetime) -> str:
    """Lambda's timestamps in on-failure records: UTC, milliseconds, `Z` (`2019-11-14T00:38:06.021Z`)."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def arrival_time(record: Record) -> datetime | None:
    """When a record reached its stream: Kinesis' ApproximateArrivalTimestamp, or a change stream record's
    ApproximateCreationDateTime (boto3 hands back datetimes; a scripted record may give epoch seconds)."""
    if "dynamodb" in record:
        value = record["dynamodb"].get("ApproximateCreationDateTime")
    else:
        value = record.get("ApproximateArrivalTimestamp")
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int | float) and value > 0:
        return datetime.fromtimestamp(float(value), UTC)
    return None


@dataclass(frozen=True, slots=True)
class DiscardedBatch:
    """A batch given up on (retries ran out, or its records grew too old): what Lambda sends to an on-failure
    destination."""

    function: str
    source_arn: str
    shard_id: str
    first_sequence_number: str
    last_sequence_number: str
    size: int
    invocations: int
    reason: str
    discarded_at: str
    sequence_numbers: tuple[str, ...] = ()
    function_arn: str = ""
    condition: FailureCondition = "RetryAttemptsExhausted"
    # The last invocation raised (a function error) rather than reporting a failed record.
    function_error: bool = False
    first_arrival: str | None = None
    last_arrival: str | None = None
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    @property
    def batch_info_key(self) -> str:
        """`KinesisBatchInfo` for a Kinesis stream, `DDBStreamBatchInfo` for a table's change stream."""
        return "DDBStreamBatchInfo" if self.source_arn.startswith("arn:aws:dynamodb:") else "KinesisBatchInfo"

    def to_dict(self) -> dict[str, Any]:
        """Lambda's on-failure destination record for a stream source, field for field (docs: "Retain discarded
        batch records"). The devstack's own `reason` is only logged: Lambda does not send one."""
        response: dict[str, Any] = {"statusCode": 200, "executedVersion": "$LATEST"}
        if self.function_error:
            response["functionError"] = "Unhandled"
        info: dict[str, Any] = {
            "shardId": self.shard_id,
            "startSequenceNumber": self.first_sequence_number,
            "endSequenceNumber": self.last_sequence_number,
        }
        if self.first_arrival is not None:
            info["approximateArrivalOfFirstRecord"] = self.first_arrival
        if self.last_arrival is not None:
            info["approximateArrivalOfLastRecord"] = self.last_arrival
        info["batchSize"] = self.size
        info["streamArn"] = self.source_arn
        return {
            "requestContext": {
                "requestId": self.request_id,
                "functionArn": self.function_arn or self.function,
                "condition": self.condition,
                "approximateInvokeCount": self.invocations,
            },
            "responseContext": response,
            "version": "1.0",
            "timestamp": self.discarded_at,
            self.batch_info_key: info,
        }


class DeadLetterSink(Protocol):
    """Where a mapping's discarded batches go besides the in-memory list: its on-failure destination."""

    def send(self, mapping: MappingSpec, batch: DiscardedBatch) -> None: ...


class SqsDeadLetters:
    """The mappings' dead-letter queues on the embedded AWS (`MappingSpec.dead_letter_queue`, created by
    eventlog.provision): each discarded batch is sent there as Lambda's on-failure record."""

    def __init__(self, sqs: Any, prefix: str, mappings: Sequence[MappingSpec] = MAPPINGS) -> None:
        self._sqs = sqs
        self._urls = {
            m.key: sqs.get_queue_url(QueueName=m.dead_letter_queue(prefix))["QueueUrl"] for m in mappings
        }

    def send(self, mapping: MappingSpec, batch: DiscardedBatch) -> None:
        url = self._urls.get(mapping.key)
        if url is None:
            log.error("no dead-letter queue for %s: the discarded batch is only logged", mapping.key)
            return
        # The client's standard retries bound this; if they run out, the batch is still logged and listed.
        self._sqs.send_message(QueueUrl=url, MessageBody=orjson.dumps(batch.to_dict()).decode())


class DiscardedBatches:
    """The devstack's on-failure destination: every discarded batch, in order, readable from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[DiscardedBatch] = []

    def add(self, batch: DiscardedBatch) -> None:
        with self._lock:
            self._items.append(batch)

    def snapshot(self) -> list[DiscardedBatch]:
        """A copy of the discarded batches so far."""
        with self._lock:
            return list(self._items)

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)


@dataclass(frozen=True)
class PollerOptions:
    """How a poller paces itself. The defaults make the local stack feel live without busy-looping."""

    # Idle wait between GetRecords calls once caught up with the shard's tip (Lambda polls once a second).
    poll_interval_s: float = 0.05
    # Retry backoff: base * 2**(attempt-1), capped, with jitter (half fixed, half random).
    backoff_base_s: float = 0.1
    backoff_cap_s: float = 4.0
    # Largest GetRecords page asked for (Kinesis allows 10,000; DynamoDB Streams 1,000).
    read_limit: int = 1000
    # Reads of a shard (GetRecords, GetShardIterator) that may fail in a row, each after the backoff above,
    # before its poller gives up with an error in the log (about two minutes with the defaults).
    max_read_failures: int = 40
    # The clock the batching window is measured on; a test hands in a fake one.
    clock: Callable[[], float] = time.monotonic
    # The wall clock a record's age is measured on (against its arrival time).
    wall_clock: Callable[[], float] = time.time
    rng: random.Random = field(default_factory=random.Random)


@dataclass(frozen=True, slots=True)
class _Result:
    done: int  # records at the head of the batch that are done
    whole: bool  # the invocation failed as a whole (an exception or a response Lambda cannot use)
    reason: str | None = None  # why it failed; None when the whole batch is done


class ShardPoller:
    """Reads one shard and invokes the function with its records, batch after batch, as Lambda does."""

    def __init__(
        self,
        mapping: MappingSpec,
        source: StreamSource,
        shard: Shard,
        function: LocalFunction,
        *,
        options: PollerOptions,
        discarded: DiscardedBatches,
        stop: threading.Event,
        done: threading.Event | None = None,
        after: threading.Event | None = None,
        dead_letters: DeadLetterSink | None = None,
    ) -> None:
        self.mapping = mapping
        self.source = source
        self.shard = shard
        self.function = function
        self.options = options
        self.discarded = discarded
        self.dead_letters = dead_letters
        self.done = done if done is not None else threading.Event()
        self.invocations = 0
        self._stop = stop
        self._after = after  # set when the parent shard has been read to its end
        # Records read but not done yet, each with the (clock) time it was read.
        self._buffer: deque[tuple[Record, float]] = deque()
        self._iterator: str | None = None
        self._closed = False
        self._last_read: str | None = None
        # Sizes of the halves of bisected batches still to deliver, the next one last.
        self._forced: list[int] = []
        # Failed invocations of the batch starting at `_head` (what counts against max_retry_attempts).
        self._head: str | None = None
        self._head_failures = 0
        self._read_failures = 0  # failed reads in a row (not batches: those are the mapping's retries)
        self._gave_up = False
        self._last_whole = False  # the last invocation failed as a whole (an exception): a function error
        self._thread = threading.Thread(
            target=self._run, name=f"poller-{function.spec.key}-{shard.shard_id}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        try:
            if self._after is not None:
                # A child shard is read only once its parent is done, so a key's records stay in order.
                while not self._after.wait(self.options.poll_interval_s):
                    if self._stop.is_set():
                        return
            self._iterator = self._source_call(
                lambda: self.source.iterator(self.shard.shard_id, self.mapping.starting_position)
            )
            if self._iterator is None:
                return
            retrying = False
            while not self._stop.is_set():
                batch = self._gather(retrying)
                if batch is None:
                    return
                expired = self._expired(batch)
                if expired:
                    self._discard(batch[:expired], "record age exceeded", "RecordAgeExceeded")
                    retrying = False
                    continue
                result = self._invoke(batch)
                retrying = self._settle(batch, result)
                if retrying and self._stop.wait(self._backoff()):
                    return  # stopping: the batch is not retried (the emulator's data goes with the stack)
        except Exception:
            log.exception("poller for %s shard %s crashed", self.function.name, self.shard.shard_id)
        finally:
            self.done.set()

    # -- reading ---------------------------------------------------------------------------------------------

    def _gather(self, retrying: bool) -> list[Record] | None:
        """The next batch, or None when stopping or when the shard is closed and every record is done."""
        limit = self._forced[-1] if self._forced else self.mapping.batch_size
        clock = self.options.clock
        while not self._stop.is_set() and not self._gave_up:
            if self._buffer:
                window_over = clock() - self._buffer[0][1] >= self.mapping.batching_window_s
                # A retry (or a bisected half) goes again at once with the records in hand, as on Lambda.
                if retrying or self._forced or len(self._buffer) >= limit or window_over or self._closed:
                    return self._take(limit)
            elif self._closed:
                return None
            page = self._read()
            if page is None or (page.caught_up and not self._closed):
                wait = self.options.poll_interval_s
                if self._buffer:
                    left = self.mapping.batching_window_s - (clock() - self._buffer[0][1])
                    wait = max(0.0, min(wait, left))
                if wait:
                    self._stop.wait(wait)
        return None

    def _read(self) -> Page | None:
        if self._iterator is None:
            return None
        iterator = self._iterator
        try:
            page = self.source.read(iterator, self.options.read_limit)
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ExpiredIteratorException":
                self._read_failed(exc)
                return None
            # Iterators expire after five minutes unused; pick up just after the last record read.
            fresh = self._source_call(
                lambda: self.source.iterator(
                    self.shard.shard_id, self.mapping.starting_position, self._last_read
                )
            )
            if fresh is not None:
                self._iterator = fresh
            return None
        except BotoCoreError as exc:
            self._read_failed(exc)
            return None
        self._read_failures = 0
        now = self.options.clock()
        for record in page.records:
            self._buffer.append((record, now))
        if page.records:
            self._last_read = self.source.sequence_number(page.records[-1])
        self._iterator = page.next_iterator
        if page.next_iterator is None:
            self._closed = True
        return page

    def _read_failed(self, exc: Exception) -> None:
        """Back off before the next read (exponential, with jitter), or give up after too many in a row."""
        self._read_failures += 1
        if self._read_failures >= self.options.max_read_failures:
            log.error(
                "reading %s shard %s failed %d times in a row (last: %s); its poller gives up",
                self.source.name,
                self.shard.shard_id,
                self._read_failures,
                exc,
            )
            self._gave_up = True
        elif not self._stop.is_set():
            log.warning("reading %s shard %s failed: %s", self.source.name, self.shard.shard_id, exc)
            self._stop.wait(self._backoff(self._read_failures))

    def _source_call(self, call: Callable[[], str]) -> str | None:
        """A control-plane call, retried like a read until it answers, the poller stops or gives up."""
        while not self._stop.is_set() and not self._gave_up:
            try:
                answer = call()
            except (ClientError, BotoCoreError) as exc:
                self._read_failed(exc)
                continue
            self._read_failures = 0
            return answer
        return None

    def _expired(self, batch: list[Record]) -> int:
        """How many records at the head of the batch are older than the mapping's maximum record age."""
        limit = self.mapping.max_record_age_s
        if limit < 0:
            return 0
        now = self.options.wall_clock()
        count = 0
        for record in batch:
            arrived = arrival_time(record)
            if arrived is None or now - arrived.timestamp() <= limit:
                break
            count += 1
        return count

    def _take(self, limit: int) -> list[Record]:
        records: list[Record] = []
        size = 0
        for record, _ in self._buffer:
            if len(records) >= limit:
                break
            record_size = self.source.record_size(record)
            if records and size + record_size > LAMBDA_PAYLOAD_LIMIT:
                break
            records.append(record)
            size += record_size
        return records

    # -- invoking --------------------------------------------------------------------------------------------

    def _invoke(self, batch: list[Record]) -> _Result:
        event = self.source.event(self.shard.shard_id, batch)
        self.invocations += 1
        try:
            response = self.function.invoke(event)
        except Exception as exc:
            log.error(
                "%s failed on %d records of %s shard %s (from %s)",
                self.function.name,
                len(batch),
                self.source.name,
                self.shard.shard_id,
                self.source.sequence_number(batch[0]),
                exc_info=True,
            )
            self._last_whole = True
            return _Result(0, True, f"{type(exc).__name__}: {exc}")
        result = self._read_response(batch, response)
        self._last_whole = result.whole
        return result

    def _read_response(self, batch: list[Record], response: Any) -> _Result:
        """ReportBatchItemFailures, as Lambda reads it."""
        if not isinstance(response, Mapping):
            return _Result(len(batch), False)  # no response (or not an object): the whole batch is done
        failures = response.get("batchItemFailures")
        if failures is None or failures == []:
            return _Result(len(batch), False)
        if not isinstance(failures, list):
            return _Result(0, True, "batchItemFailures is not a list")
        index = {self.source.sequence_number(record): i for i, record in enumerate(batch)}
        first = len(batch)
        for failure in failures:
            identifier = failure.get("itemIdentifier") if isinstance(failure, Mapping) else None
            if not isinstance(identifier, str) or identifier not in index:
                return _Result(0, True, f"batchItemFailures names {identifier!r}, which is not in the batch")
            first = min(first, index[identifier])
        failed = self.source.sequence_number(batch[first])
        return _Result(first, False, f"the function reported record {failed} as failed")

    def _settle(self, batch: list[Record], result: _Result) -> bool:
        """Drop what is done, decide what comes next. True when the next batch is a retry."""
        size = len(batch)
        for _ in range(result.done):
            self._buffer.popleft()
        if result.done == size:
            if self._forced:
                self._forced.pop()
            self._head, self._head_failures = None, 0
            return False
        left = size - result.done
        if self._forced:
            self._forced[-1] = left
        if result.whole and self.mapping.bisect_on_error and left > 1:
            first_half = (left + 1) // 2
            if self._forced:
                self._forced.pop()
            self._forced.extend((left - first_half, first_half))
            log.info(
                "%s: bisecting a failed batch of %d records into %d and %d",
                self.function.name,
                left,
                first_half,
                left - first_half,
            )
            return True
        head = self.source.sequence_number(batch[result.done])
        if head == self._head:
            self._head_failures += 1
        else:
            self._head, self._head_failures = head, 1
        allowed = self.mapping.max_retry_attempts
        if allowed < 0 or self._head_failures <= allowed:
            log.warning(
                "%s: retry %d of the batch from %s shard %s sequence %s: %s",
                self.function.name,
                self._head_failures,
                self.source.name,
                self.shard.shard_id,
                head,
                result.reason,
            )
            return True
        self._discard(batch[result.done :], result.reason or "failed")
        return False

    def _discard(
        self, records: list[Record], reason: str, condition: FailureCondition = "RetryAttemptsExhausted"
    ) -> None:
        for _ in records:
            self._buffer.popleft()
        if self._forced:
            self._forced[-1] -= len(records)
            if self._forced[-1] <= 0:
                self._forced.pop()
        numbers = tuple(self.source.sequence_number(r) for r in records)
        head_failures = self._head_failures if self._head == numbers[0] else 0
        first, last = arrival_time(records[0]), arrival_time(records[-1])
        discarded = DiscardedBatch(
            function=self.function.name,
            source_arn=self.source.arn,
            shard_id=self.shard.shard_id,
            first_sequence_number=numbers[0],
            last_sequence_number=numbers[-1],
            size=len(records),
            invocations=head_failures,
            reason=reason,
            discarded_at=lambda_timestamp(datetime.now(UTC)),
            sequence_numbers=numbers,
            function_arn=function_arn(self.function.region, self.function.name),
            condition=condition,
            function_error=self._last_whole and head_failures > 0,
            first_arrival=lambda_timestamp(first) if first else None,
            last_arrival=lambda_timestamp(last) if last else None,
        )
        self.discarded.add(discarded)
        self._head, self._head_failures = None, 0
        log.error(
            "ON FAILURE %s: %s, discarded %d records of %s shard %s, sequence numbers %s..%s: %s",
            discarded.function,
            condition,
            discarded.size,
            self.source.name,
            discarded.shard_id,
            discarded.first_sequence_number,
            discarded.last_sequence_number,
            reason,
        )
        if self.dead_letters is not None:
            try:
                self.dead_letters.send(self.mapping, discarded)
            except (
                Exception
            ):  # the batch is logged above and kept in the list; the shard moves on as on Lambda
                log.exception(
                    "could not send the discarded batch to %s's dead-letter queue", self.mapping.key
                )

    def _backoff(self, failures: int | None = None) -> float:
        attempt = max(1, self._head_failures if failures is None else failures)
        delay = min(self.options.backoff_cap_s, self.options.backoff_base_s * 2 ** (attempt - 1))
        return delay / 2 + self.options.rng.uniform(0, delay / 2)


class MappingPoller:
    """One event source mapping: a shard poller per shard of its stream, all feeding one function."""

    def __init__(
        self,
        mapping: MappingSpec,
        source: StreamSource,
        function: LocalFunction,
        *,
        options: PollerOptions | None = None,
        discarded: DiscardedBatches | None = None,
        dead_letters: DeadLetterSink | None = None,
    ) -> None:
        self.mapping = mapping
        self.source = source
        self.function = function
        self.options = options or PollerOptions()
        self.discarded = discarded if discarded is not None else DiscardedBatches()
        self.dead_letters = dead_letters
        self.shards: list[ShardPoller] = []
        self._stop = threading.Event()

    def start(self) -> None:
        """List the shards and start one poller thread each (a child after its parent)."""
        shards = self.source.shards()
        done = {shard.shard_id: threading.Event() for shard in shards}
        for shard in shards:
            poller = ShardPoller(
                self.mapping,
                self.source,
                shard,
                self.function,
                options=self.options,
                discarded=self.discarded,
                dead_letters=self.dead_letters,
                stop=self._stop,
                done=done[shard.shard_id],
                after=done.get(shard.parent_id) if shard.parent_id else None,
            )
            self.shards.append(poller)
        for poller in self.shards:
            poller.start()
        log.info(
            "%s <- %s: %d shard(s), batch size %d, window %.2fs",
            self.function.name,
            self.source.name,
            len(self.shards),
            self.mapping.batch_size,
            self.mapping.batching_window_s,
        )

    def stop(self, timeout: float = 30.0) -> None:
        """Stop reading; a batch being handled is finished first. Waits up to `timeout` seconds in all."""
        self._stop.set()
        deadline = time.monotonic() + timeout
        for poller in self.shards:
            poller.join(max(0.0, deadline - time.monotonic()))
            if poller.is_alive():
                log.warning(
                    "poller %s shard %s did not stop in time", self.function.name, poller.shard.shard_id
                )

    @property
    def invocations(self) -> int:
        return sum(p.invocations for p in self.shards)
