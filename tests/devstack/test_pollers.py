"""The stream pollers against Lambda's event source mapping semantics, driven by handlers that fail on purpose.

Given records on a stream (moto's Kinesis or a table's change stream, or a scripted shard with a fake clock),
when a poller feeds them to an injected handler, then the batches, retries and discards are Lambda's.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC
from typing import Any

import pytest
from botocore.exceptions import ClientError

from devstack.lambda_runtime import LocalFunction
from devstack.pollers import (
    DeadLetterSink,
    DiscardedBatches,
    DynamoDBStreamSource,
    KinesisSource,
    MappingPoller,
    Page,
    PollerOptions,
    SqsDeadLetters,
    StreamSource,
)
from eventlog.aws import dynamodb_client, dynamodbstreams_client, kinesis_client
from eventlog.provision import create_dead_letter_queues, sqs_client
from eventlog.settings import Settings
from eventlog.topology import MappingSpec, function_spec
from tests.devstack.support import (
    FAST,
    Contention,
    Recorder,
    ScriptedSource,
    failure,
    kinesis_sequence_numbers,
    wait_until,
)

KEY = "agg-1"  # one partition key: every record lands on the same shard, in order


def kinesis_mapping(**overrides: Any) -> MappingSpec:
    options: dict[str, Any] = {
        "source_kind": "kinesis",
        "source": "ingest",
        "function": "pump",
        "batch_size": 3,
        "batching_window_s": 0.0,
    }
    options.update(overrides)
    return MappingSpec(**options)


@pytest.fixture
def pollers() -> Iterator[Callable[..., MappingPoller]]:
    """Start pollers; every one started is stopped when the test ends."""
    started: list[MappingPoller] = []

    def start(
        mapping: MappingSpec,
        source: StreamSource,
        handler: Any,
        *,
        options: PollerOptions | None = None,
        function: LocalFunction | None = None,
        dead_letters: DeadLetterSink | None = None,
    ) -> MappingPoller:
        fn = function or LocalFunction(function_spec(mapping.function), handler, "es-test", "us-east-1")
        poller = MappingPoller(
            mapping, source, fn, options=options or PollerOptions(**FAST), dead_letters=dead_letters
        )
        poller.start()
        started.append(poller)
        return poller

    yield start
    for poller in started:
        poller.stop(timeout=5)


def put(settings: Settings, count: int, key: str = KEY, start: int = 0) -> list[str]:
    """Put records r<start>..; returns their sequence numbers."""
    response = kinesis_client(settings).put_records(
        StreamName=settings.ingest_stream,
        Records=[{"PartitionKey": key, "Data": f"r{i}".encode()} for i in range(start, start + count)],
    )
    assert response.get("FailedRecordCount", 0) == 0
    return [r["SequenceNumber"] for r in response["Records"]]


def kinesis_source(settings: Settings) -> KinesisSource:
    return KinesisSource(kinesis_client(settings), settings.ingest_stream, settings.region)


def names(count: int, start: int = 0) -> list[str]:
    return [f"r{i}" for i in range(start, start + count)]


def test_a_batch_is_delivered_in_order_in_batches_of_batch_size(
    settings: Settings, pollers: Callable[..., MappingPoller]
) -> None:
    put(settings, 7)
    recorder = Recorder()

    poller = pollers(kinesis_mapping(batch_size=3), kinesis_source(settings), recorder)

    wait_until(lambda: sum(map(len, recorder.batches)) >= 7, what="7 records")
    poller.stop()
    assert recorder.batches == [names(3), names(3, 3), names(1, 6)]
    event = recorder.events[0]
    record = event["Records"][0]
    assert record["eventSource"] == "aws:kinesis"
    assert record["eventSourceARN"].endswith(f":stream/{settings.ingest_stream}")
    assert record["kinesis"]["partitionKey"] == KEY
    assert record["eventID"].startswith("shardId-")
    context = recorder.contexts[0]
    assert context.function_name == "es-test-pump"
    assert context.get_remaining_time_in_millis() > 0


def test_a_partial_failure_is_retried_from_the_failed_record(
    settings: Settings, pollers: Callable[..., MappingPoller]
) -> None:
    seqs = put(settings, 6)

    def respond(call: int, event: dict[str, Any]) -> Any:
        # First invocation: records r2 and r4 fail; Lambda retries from the lowest (r2).
        return failure(seqs[4], seqs[2]) if call == 1 else {"batchItemFailures": []}

    recorder = Recorder(respond)
    pollers(kinesis_mapping(batch_size=6), kinesis_source(settings), recorder)

    wait_until(lambda: recorder.calls >= 2, what="the retry")
    assert recorder.batches[0] == names(6)
    assert recorder.batches[1] == names(4, 2)  # nothing before r2 again, nothing after it skipped
    assert kinesis_sequence_numbers(recorder.events[1])[0] == seqs[2]


def test_a_handler_exception_retries_the_whole_batch(
    settings: Settings, pollers: Callable[..., MappingPoller]
) -> None:
    put(settings, 4)

    def respond(call: int, event: dict[str, Any]) -> Any:
        if call == 1:
            raise RuntimeError("injected crash")
        return None

    recorder = Recorder(respond)
    poller = pollers(kinesis_mapping(batch_size=4), kinesis_source(settings), recorder)

    wait_until(lambda: recorder.calls >= 2, what="the retry")
    poller.stop()
    assert recorder.batches == [names(4), names(4)]
    assert len(poller.discarded) == 0


@pytest.mark.parametrize(
    "bad_response",
    [
        failure("49999999999999999999"),  # a sequence number from no batch
        {"batchItemFailures": [{"itemIdentifier": ""}]},
        {"batchItemFailures": [{"itemIdentifier": None}]},
        {"batchItemFailures": [{"item_identifier": "1"}]},
        {"batchItemFailures": "r1"},
    ],
    ids=["unknown", "empty", "null", "wrong-key", "not-a-list"],
)
def test_a_response_lambda_cannot_use_fails_the_whole_batch(
    settings: Settings, pollers: Callable[..., MappingPoller], bad_response: dict[str, Any]
) -> None:
    put(settings, 3)
    recorder = Recorder(lambda call, event: bad_response if call == 1 else None)

    pollers(kinesis_mapping(batch_size=3), kinesis_source(settings), recorder)

    wait_until(lambda: recorder.calls >= 2, what="the retry")
    assert recorder.batches[:2] == [names(3), names(3)]


@pytest.mark.parametrize("response", [None, {}, {"batchItemFailures": []}, {"batchItemFailures": None}])
def test_an_empty_or_missing_failure_list_means_the_whole_batch_is_done(
    settings: Settings, pollers: Callable[..., MappingPoller], response: Any
) -> None:
    put(settings, 4)
    recorder = Recorder(lambda call, event: response)

    poller = pollers(kinesis_mapping(batch_size=2), kinesis_source(settings), recorder)

    wait_until(lambda: recorder.calls >= 2, what="two batches")
    poller.stop()
    assert recorder.batches == [names(2), names(2, 2)]


def test_retries_run_out_then_the_batch_is_discarded_and_the_shard_moves_on(
    settings: Settings, pollers: Callable[..., MappingPoller]
) -> None:
    seqs = put(settings, 6)

    def respond(call: int, event: dict[str, Any]) -> Any:
        if seqs[2] in kinesis_sequence_numbers(event):
            raise ValueError("poison record r2")
        return None

    recorder = Recorder(respond)
    poller = pollers(kinesis_mapping(batch_size=2, max_retry_attempts=2), kinesis_source(settings), recorder)

    wait_until(lambda: sum(b == names(2, 4) for b in recorder.batches) == 1, what="the batch after")
    poller.stop()
    # One attempt and two retries of [r2, r3], then it is given up and [r4, r5] follows.
    assert recorder.batches == [names(2), names(2, 2), names(2, 2), names(2, 2), names(2, 4)]
    [discarded] = poller.discarded.snapshot()
    assert (discarded.first_sequence_number, discarded.last_sequence_number) == (seqs[2], seqs[3])
    assert discarded.size == 2
    assert discarded.invocations == 3
    assert "poison record r2" in discarded.reason
    assert discarded.to_dict()["KinesisBatchInfo"]["shardId"] == discarded.shard_id


def test_retries_of_a_partially_failed_batch_count_against_the_same_quota(
    settings: Settings, pollers: Callable[..., MappingPoller]
) -> None:
    seqs = put(settings, 4)

    def respond(call: int, event: dict[str, Any]) -> Any:
        batch = kinesis_sequence_numbers(event)
        return failure(seqs[1]) if seqs[1] in batch else None

    recorder = Recorder(respond)
    poller = pollers(kinesis_mapping(batch_size=4, max_retry_attempts=1), kinesis_source(settings), recorder)

    wait_until(lambda: len(poller.discarded) == 1, what="the discard")
    poller.stop()
    # [r0..r3] fails at r1 (r0 done); [r1..r3] is the one retry; it fails at r1 again and is discarded.
    assert recorder.batches == [names(4), names(3, 1)]
    [discarded] = poller.discarded.snapshot()
    assert discarded.sequence_numbers == tuple(seqs[1:])


def test_bisect_on_error_isolates_the_poison_record_without_using_the_retry_quota(
    settings: Settings, pollers: Callable[..., MappingPoller]
) -> None:
    seqs = put(settings, 8)

    def respond(call: int, event: dict[str, Any]) -> Any:
        if seqs[5] in kinesis_sequence_numbers(event):
            raise ValueError("poison record r5")
        return None

    recorder = Recorder(respond)
    mapping = kinesis_mapping(batch_size=8, max_retry_attempts=0, bisect_on_error=True)
    poller = pollers(mapping, kinesis_source(settings), recorder)

    wait_until(lambda: names(2, 6) in recorder.batches, what="the last half")
    poller.stop()
    assert recorder.batches == [
        names(8),
        names(4),  # done
        names(4, 4),  # fails: split
        names(2, 4),  # fails: split
        names(1, 4),  # done
        names(1, 5),  # fails alone, no retries allowed: discarded
        names(2, 6),  # done
    ]
    assert [d.sequence_numbers for d in poller.discarded.snapshot()] == [(seqs[5],)]


def test_records_arriving_later_are_delivered_in_order_after_a_failure(
    settings: Settings, pollers: Callable[..., MappingPoller]
) -> None:
    put(settings, 2)
    release = threading.Event()

    def respond(call: int, event: dict[str, Any]) -> Any:
        if not release.is_set():
            raise RuntimeError("not yet")
        return None

    recorder = Recorder(respond)
    pollers(kinesis_mapping(batch_size=10), kinesis_source(settings), recorder)
    wait_until(lambda: recorder.calls >= 2, what="a retry")
    put(settings, 3, start=2)  # arrives while r0, r1 are being retried
    release.set()

    wait_until(lambda: names(3, 2) in recorder.batches, what="the later records")
    # A retry goes again with the records in hand: the failed batch first, then what came after it.
    *retried, last = recorder.batches
    assert all(batch == names(2) for batch in retried)
    assert last == names(3, 2)


def test_the_batching_window_gathers_what_arrives_before_it_closes() -> None:
    # Reads at t=0 (3 records), t=0.5 (2 more), t=1.0 (nothing), t=2.0 (1 more) with a 1 s window.
    source = ScriptedSource([(0.0, ["a", "b", "c"]), (0.5, ["d", "e"]), (1.0, []), (2.0, ["f"])])
    recorder = Recorder()
    mapping = kinesis_mapping(batch_size=100, batching_window_s=1.0)
    poller = MappingPoller(
        mapping,
        source,
        LocalFunction(function_spec("pump"), recorder, "es-test", "us-east-1"),
        options=PollerOptions(**FAST, clock=source.now),
    )
    poller.start()
    try:
        wait_until(lambda: recorder.calls >= 2, what="two batches")
    finally:
        poller.stop()
    assert recorder.batches == [["a", "b", "c", "d", "e"], ["f"]]


@pytest.mark.parametrize(
    ("batch_size", "window", "expected"),
    [
        (100, 0.0, [["a", "b", "c"], ["d", "e"], ["f"]]),  # no window: each read's records at once
        (2, 1.0, [["a", "b"], ["c", "d"], ["e", "f"]]),  # a full batch goes before the window closes
    ],
)
def test_batch_size_and_window_together(batch_size: int, window: float, expected: list[list[str]]) -> None:
    source = ScriptedSource([(0.0, ["a", "b", "c"]), (0.5, ["d", "e"]), (1.0, []), (2.0, ["f"])])
    recorder = Recorder()
    mapping = kinesis_mapping(batch_size=batch_size, batching_window_s=window)
    function = LocalFunction(function_spec("pump"), recorder, "es-test", "us-east-1")
    poller = MappingPoller(mapping, source, function, options=PollerOptions(**FAST, clock=source.now))
    poller.start()
    try:
        wait_until(lambda: sum(map(len, recorder.batches)) >= 6, what="six records")
    finally:
        poller.stop()
    assert recorder.batches == expected


def test_a_batch_stays_under_lambdas_6_mb_payload_limit() -> None:
    megabyte = b"x" * 1_000_000
    source = ScriptedSource([(0.0, [megabyte] * 6)])
    recorder = Recorder()
    function = LocalFunction(function_spec("pump"), recorder, "es-test", "us-east-1")
    poller = MappingPoller(kinesis_mapping(batch_size=100), source, function, options=PollerOptions(**FAST))
    poller.start()
    try:
        wait_until(lambda: sum(map(len, recorder.batches)) >= 6, what="six records")
    finally:
        poller.stop()
    # base64 makes each record about 1.33 MB in the event: four fit under 6 MB, five do not.
    assert [len(b) for b in recorder.batches] == [4, 2]


def test_a_dynamodb_change_stream_is_read_and_retried_from_the_failed_record(
    settings: Settings, pollers: Callable[..., MappingPoller]
) -> None:
    dynamodb = dynamodb_client(settings)
    for version in range(1, 6):
        dynamodb.put_item(
            TableName=settings.events_table,
            Item={"aggregate_id": {"S": "acct-1"}, "version": {"N": str(version)}},
        )
    failed_seq: list[str] = []

    def respond(call: int, event: dict[str, Any]) -> Any:
        if call == 1:
            failed_seq.append(event["Records"][3]["dynamodb"]["SequenceNumber"])
            return failure(failed_seq[0])
        return None

    recorder = Recorder(respond)
    source = DynamoDBStreamSource(
        dynamodb, dynamodbstreams_client(settings), settings.events_table, settings.region
    )
    mapping = MappingSpec(source_kind="dynamodb", source="events", function="write", batch_size=10)
    poller = pollers(mapping, source, recorder)

    wait_until(lambda: recorder.calls >= 2, what="the retry")
    poller.stop()

    def versions(event: dict[str, Any]) -> list[str]:
        return [r["dynamodb"]["NewImage"]["version"]["N"] for r in event["Records"]]

    assert [versions(e) for e in recorder.events] == [["1", "2", "3", "4", "5"], ["4", "5"]]
    first = recorder.events[0]["Records"][0]
    assert first["eventSource"] == "aws:dynamodb"
    assert first["eventName"] == "INSERT"
    assert first["eventSourceARN"] == source.arn
    assert recorder.events[1]["Records"][0]["dynamodb"]["SequenceNumber"] == failed_seq[0]
    assert recorder.contexts[0].function_name == "es-test-write"


def test_stop_lets_the_batch_in_hand_finish(
    settings: Settings, pollers: Callable[..., MappingPoller]
) -> None:
    put(settings, 2)
    inside = threading.Event()
    release = threading.Event()
    finished: list[bool] = []

    def respond(call: int, event: dict[str, Any]) -> Any:
        inside.set()
        release.wait(10)
        finished.append(True)
        return None

    poller = pollers(kinesis_mapping(), kinesis_source(settings), Recorder(respond))
    inside.wait(10)
    stopper = threading.Thread(target=poller.stop)
    stopper.start()
    stopper.join(0.2)
    assert stopper.is_alive(), "stop() returned while the handler was still running"
    release.set()
    stopper.join(10)
    assert not stopper.is_alive()
    assert finished == [True]
    assert all(not shard.is_alive() for shard in poller.shards)


def test_one_function_runs_one_invocation_at_a_time_across_shards(
    settings: Settings, pollers: Callable[..., MappingPoller]
) -> None:
    # Keys that hash to both shards of the ingest stream.
    for key in ("a", "b", "c", "d", "e", "f"):
        put(settings, 3, key=key)
    recorder = Recorder()
    # Both shards' pollers call the function while its first invocation is inside.
    contention = Contention(2, recorder)
    poller = pollers(
        kinesis_mapping(batch_size=1), kinesis_source(settings), None, function=contention.function("pump")
    )
    assert len(poller.shards) == 2
    wait_until(lambda: recorder.calls >= 18, what="18 invocations")
    assert {e["Records"][0]["eventID"].split(":")[0] for e in recorder.events} == {
        s.shard.shard_id for s in poller.shards
    }
    assert contention.most == 1


def test_discarded_batches_are_shared_by_every_shard_of_a_mapping() -> None:
    discarded = DiscardedBatches()
    source = ScriptedSource([(0.0, ["bad"])])

    def crash(event: dict[str, Any], context: Any) -> Any:
        raise RuntimeError("always")

    poller = MappingPoller(
        kinesis_mapping(max_retry_attempts=0),
        source,
        LocalFunction(function_spec("pump"), crash, "es-test", "us-east-1"),
        options=PollerOptions(**FAST),
        discarded=discarded,
    )
    poller.start()
    try:
        wait_until(lambda: len(discarded) == 1, what="the discard")
    finally:
        poller.stop()
    assert discarded.snapshot()[0].reason == "RuntimeError: always"


def test_latest_starts_at_the_tip_of_the_stream(
    settings: Settings, pollers: Callable[..., MappingPoller]
) -> None:
    put(settings, 2)  # before the mapping starts: not for a LATEST mapping
    recorder = Recorder()
    poller = pollers(kinesis_mapping(starting_position="LATEST"), kinesis_source(settings), recorder)
    wait_until(lambda: all(s._iterator is not None for s in poller.shards), what="iterators")

    put(settings, 2, start=2)

    wait_until(lambda: recorder.calls >= 1, what="a batch")
    poller.stop()
    assert [r for b in recorder.batches for r in b] == names(2, 2)


class ExpiringSource(ScriptedSource):
    """A scripted shard whose iterator expires once, after the first read."""

    def __init__(self, steps: Any) -> None:
        super().__init__(steps)
        self.iterators: list[str | None] = []

    def iterator(self, shard_id: str, position: str, after_sequence_number: str | None = None) -> str:
        self.iterators.append(after_sequence_number)
        return "iterator"

    def read(self, iterator: str, limit: int) -> Any:
        if self.reads == 1 and len(self.iterators) == 1:
            self.reads += 1
            raise ClientError(
                {"Error": {"Code": "ExpiredIteratorException", "Message": "expired"}}, "GetRecords"
            )
        return super().read(iterator, limit)


def test_an_expired_iterator_is_renewed_just_after_the_last_record_read() -> None:
    source = ExpiringSource([(0.0, ["a", "b"]), (0.0, ["c"])])
    recorder = Recorder()
    function = LocalFunction(function_spec("pump"), recorder, "es-test", "us-east-1")
    poller = MappingPoller(kinesis_mapping(batch_size=10), source, function, options=PollerOptions(**FAST))
    poller.start()
    try:
        wait_until(lambda: sum(map(len, recorder.batches)) >= 3, what="three records")
    finally:
        poller.stop()
    assert source.iterators == [None, "2"]  # the starting position, then after record 2 ("b")
    assert [r for b in recorder.batches for r in b] == ["a", "b", "c"]


class FailingSource(ScriptedSource):
    """A scripted shard whose GetRecords fails `failures` times first (None: always), and, with `iterators`,
    whose GetShardIterator fails that many times first too."""

    def __init__(self, steps: Any, failures: int | None, iterators: bool = False) -> None:
        super().__init__(steps)
        self.failures = failures
        self.fail_iterators = iterators
        self.failed_reads = 0
        self.failed_iterators = 0
        self.failed_at: list[float] = []

    def _fail(self, operation: str) -> None:
        self.failed_at.append(time.monotonic())
        raise ClientError({"Error": {"Code": "InternalFailure", "Message": "injected"}}, operation)

    def iterator(self, shard_id: str, position: str, after_sequence_number: str | None = None) -> str:
        if self.fail_iterators and (self.failures is None or self.failed_iterators < self.failures):
            self.failed_iterators += 1
            self._fail("GetShardIterator")
        return super().iterator(shard_id, position, after_sequence_number)

    def read(self, iterator: str, limit: int) -> Any:
        if self.failures is None or self.failed_reads < self.failures:
            self.failed_reads += 1
            self._fail("GetRecords")
        return super().read(iterator, limit)


SLOWER = {**FAST, "backoff_base_s": 0.01, "backoff_cap_s": 0.08}


def test_failed_reads_back_off_more_each_time_and_then_read_on() -> None:
    source = FailingSource([(0.0, ["a", "b"])], failures=5, iterators=True)
    recorder = Recorder()
    function = LocalFunction(function_spec("pump"), recorder, "es-test", "us-east-1")
    poller = MappingPoller(kinesis_mapping(batch_size=10), source, function, options=PollerOptions(**SLOWER))
    poller.start()
    try:
        wait_until(lambda: sum(map(len, recorder.batches)) >= 2, what="both records")
    finally:
        poller.stop()
    assert (source.failed_iterators, source.failed_reads) == (5, 5)
    assert [r for b in recorder.batches for r in b] == ["a", "b"]
    # The read failures' gaps: each at least half its exponential step (the wait is half fixed, half jitter;
    # 0.9 for the clock's grain). The old fixed wait (a quarter of the cap, 0.02 s) fails the last one.
    reads = source.failed_at[5:]
    gaps = [later - earlier for earlier, later in itertools.pairwise(reads)]
    assert [g >= 0.9 * 0.01 * 2**i / 2 for i, g in enumerate(gaps)] == [True] * 4


@pytest.mark.timeout(30)
@pytest.mark.parametrize("iterators", [False, True], ids=["GetRecords", "GetShardIterator"])
def test_a_shard_that_never_answers_is_given_up_on_with_an_error(
    iterators: bool, caplog: pytest.LogCaptureFixture
) -> None:
    source = FailingSource([(0.0, ["a"])], failures=None, iterators=iterators)
    function = LocalFunction(function_spec("pump"), Recorder(), "es-test", "us-east-1")
    options = PollerOptions(**FAST, max_read_failures=6)
    poller = MappingPoller(kinesis_mapping(batch_size=10), source, function, options=options)
    with caplog.at_level(logging.ERROR, logger="devstack.pollers"):
        poller.start()
        try:
            wait_until(lambda: poller.shards[0].done.is_set(), what="the shard poller to give up")
        finally:
            poller.stop()
    assert len(source.failed_at) == 6
    assert "failed 6 times in a row (last: An error occurred (InternalFailure)" in caplog.text
    assert "its poller gives up" in caplog.text


# -- the on-failure destination ---------------------------------------------------------------------------------

LAMBDA_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def dead_letter_messages(sqs: Any, url: str, want: int) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    deadline = time.monotonic() + 10
    while len(messages) < want and time.monotonic() < deadline:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        messages.extend(json.loads(m["Body"]) for m in got.get("Messages", []))
    return messages


def test_a_discarded_kinesis_batch_reaches_its_queue_as_lambdas_on_failure_record(
    settings: Settings, pollers: Callable[..., MappingPoller]
) -> None:
    # Given the mapping's dead-letter queue on the embedded AWS, and a poison record r1
    mapping = kinesis_mapping(batch_size=2, max_retry_attempts=1)
    sqs = sqs_client(settings)
    [url] = create_dead_letter_queues(settings, sqs, [mapping]).values()
    seqs = put(settings, 4)
    source = kinesis_source(settings)
    arrivals: dict[str, Any] = {}
    shard_of: dict[str, str] = {}
    for shard in source.shards():
        iterator = source.iterator(shard.shard_id, "TRIM_HORIZON")
        for record in kinesis_client(settings).get_records(ShardIterator=iterator, Limit=10)["Records"]:
            arrivals[record["SequenceNumber"]] = record["ApproximateArrivalTimestamp"]
            shard_of[record["SequenceNumber"]] = shard.shard_id

    def respond(call: int, event: dict[str, Any]) -> Any:
        if seqs[1] in kinesis_sequence_numbers(event):
            raise ValueError("poison r1")
        return None

    recorder = Recorder(respond)
    poller = pollers(mapping, source, recorder, dead_letters=SqsDeadLetters(sqs, settings.prefix, [mapping]))
    # When its retries run out
    [message] = dead_letter_messages(sqs, url, 1)
    poller.stop()
    # Then the queue holds exactly what Lambda sends, and the shard moved on
    assert set(message) == {"requestContext", "responseContext", "version", "timestamp", "KinesisBatchInfo"}
    assert (
        message["requestContext"]["functionArn"]
        == "arn:aws:lambda:us-east-1:123456789012:function:es-test-pump"
    )
    assert message["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert message["requestContext"]["approximateInvokeCount"] == 2
    assert message["responseContext"] == {
        "statusCode": 200,
        "executedVersion": "$LATEST",
        "functionError": "Unhandled",
    }
    assert message["version"] == "1.0"
    assert LAMBDA_TIME.match(message["timestamp"])
    info = message["KinesisBatchInfo"]
    # A function error fails the whole batch: [r0, r1] was given up on
    assert info["shardId"] == shard_of[seqs[0]]
    assert (info["startSequenceNumber"], info["endSequenceNumber"], info["batchSize"]) == (
        seqs[0],
        seqs[1],
        2,
    )
    assert info["streamArn"] == source.arn
    first, last = info["approximateArrivalOfFirstRecord"], info["approximateArrivalOfLastRecord"]
    assert LAMBDA_TIME.match(first)
    assert LAMBDA_TIME.match(last)
    assert first == arrivals[seqs[0]].astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    assert recorder.batches[-1] == names(2, 2)  # then the shard moved on


def test_a_discarded_change_stream_batch_carries_ddb_stream_batch_info(
    settings: Settings, pollers: Callable[..., MappingPoller]
) -> None:
    mapping = MappingSpec(source_kind="dynamodb", source="events", function="write", max_retry_attempts=0)
    sqs = sqs_client(settings)
    [url] = create_dead_letter_queues(settings, sqs, [mapping]).values()
    dynamodb = dynamodb_client(settings)
    dynamodb.put_item(
        TableName=settings.events_table, Item={"aggregate_id": {"S": "acct-1"}, "version": {"N": "1"}}
    )
    source = DynamoDBStreamSource(
        dynamodb, dynamodbstreams_client(settings), settings.events_table, settings.region
    )
    reported: list[str] = []

    def respond(call: int, event: dict[str, Any]) -> Any:
        reported.append(event["Records"][0]["dynamodb"]["SequenceNumber"])
        return failure(reported[0])  # a reported failure, not a function error

    poller = pollers(
        mapping, source, Recorder(respond), dead_letters=SqsDeadLetters(sqs, settings.prefix, [mapping])
    )
    [message] = dead_letter_messages(sqs, url, 1)
    poller.stop()
    assert "KinesisBatchInfo" not in message
    info = message["DDBStreamBatchInfo"]
    assert (info["startSequenceNumber"], info["endSequenceNumber"], info["batchSize"]) == (
        reported[0],
        reported[0],
        1,
    )
    assert info["streamArn"] == source.arn
    assert LAMBDA_TIME.match(info["approximateArrivalOfFirstRecord"])
    assert message["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST"}


class AgedSource(ScriptedSource):
    """A scripted shard whose records arrived at given wall-clock times (epoch seconds), one per payload."""

    def __init__(self, payloads: list[str], arrivals: list[float]) -> None:
        super().__init__([(0.0, payloads)])
        self._arrivals = list(arrivals)

    def read(self, iterator: str, limit: int) -> Page:
        page = super().read(iterator, limit)
        records = [dict(r, ApproximateArrivalTimestamp=self._arrivals.pop(0)) for r in page.records]
        return Page(records, page.next_iterator, page.caught_up)


def test_records_older_than_the_maximum_age_go_to_the_queue_without_an_invocation() -> None:
    # Given a one-minute limit, and three records on one shard: two arrived 90 s ago, one 10 s ago
    now = 1_800_000_000.0
    source = AgedSource(["old-1", "old-2", "young"], [now - 90, now - 90, now - 10])
    recorder = Recorder()
    poller = MappingPoller(
        kinesis_mapping(batch_size=10, max_record_age_s=60),
        source,
        LocalFunction(function_spec("pump"), recorder, "es-test", "us-east-1"),
        options=PollerOptions(**FAST, clock=source.now, wall_clock=lambda: now),
    )
    poller.start()
    try:
        wait_until(lambda: recorder.calls == 1, what="the young record")
    finally:
        poller.stop()
    # Then the old ones went to the on-failure destination untried, and only the young one was delivered
    [discarded] = poller.discarded.snapshot()
    assert recorder.batches == [["young"]]
    assert (discarded.size, discarded.invocations, discarded.condition) == (2, 0, "RecordAgeExceeded")
    record = discarded.to_dict()
    assert record["requestContext"]["condition"] == "RecordAgeExceeded"
    assert record["KinesisBatchInfo"]["approximateArrivalOfFirstRecord"] == "2027-01-15T07:58:30.000Z"
