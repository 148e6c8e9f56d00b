"""`python -m ops redrive`: recover the batches a consumer of committed events dead-lettered.

A mapping whose batch failed past its retries (eventlog/topology.py) sends Lambda's on-failure record to its
dead-letter queue (`<prefix>-<mapping>-failures`): the shard, the sequence range, the batch size and the records'
arrival times, never the records themselves. Redriving one:

1. Receive the queue's messages (they stay invisible to anyone else while this runs).
2. Find the aggregates each names: read the range back from its stream (`range`). A change stream keeps a record
   24 hours, the playback stream its retention; when the range is gone (or only partly there), take every event
   the log recorded in the batch's arrival window, widened by `margin_s` (`window`; a scan of the events table,
   said so in the report). A playback range that is gone cannot be resolved that way (its arrival times are the
   replay's, not the events'): the message is kept and the report says to run the original replay again.
3. Replay those aggregates' whole histories from the log to that consumer only (`consumer` in the replay's
   stored definition; the other consumer skips it). Events that came from the events table's change stream are
   replayed in mode `redrive`: the consumer processes them exactly as live processing would have (the write
   function projects incrementally into the live state table and records outcomes; the service function uses
   live gateway semantics: an update already sent is not sent again, a query already answered is answered from
   its recording). Events that came from the playback stream are replayed in the mode of the replay that
   delivered them (its stored definition: the same state table, fix or feature), addressed to the consumer.
   Replaying is idempotent for both consumers, so whole histories are safe, and a second redrive changes nothing.
4. Wait until the consumer has acknowledged every aggregate at the version the replay put
   (eventlog.replays.ConsumerAcks), then delete the messages. A message whose redrive is not confirmed in time is
   made visible again and kept; run the command again.

The pump's queue (`ingest-to-pump-failures`) holds submissions that never reached the log: they cannot be
replayed from it. `--peek` shows their range; docs/deploy.md says how to post them again.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

import orjson
from botocore.exceptions import ClientError

from eventlog.aws import dynamodb_client, dynamodbstreams_client, kinesis_client
from eventlog.codec import event_from_data
from eventlog.envelope import ReplayMode, format_timestamp, parse_timestamp
from eventlog.errors import InvalidEvent
from eventlog.provision import sqs_client
from eventlog.replays import ConsumerAcks, ReplayDirectory
from eventlog.settings import Settings
from eventlog.topology import MAPPINGS, MappingSpec, mapping_spec
from ops.errors import OpsError, OpsUsageError
from ops.replay import PutLedger, Say, make_reporter, run_replay
from replayer.config import Filters, ReplayConfig
from replayer.errors import UsageError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodbstreams import DynamoDBStreamsClient
    from mypy_boto3_kinesis import KinesisClient

# Events recorded this long before the batch's first arrival or after its last are taken too when the range is
# gone: an event's recorded_at is set by the pump just before its commit reaches the change stream.
DEFAULT_MARGIN_S = 300.0
# SQS hides a received message for at most 12 hours.
MAX_VISIBILITY_S = 12 * 3600
# Reading a range back: GetRecords calls per message, at most (a range is at most one batch of records).
MAX_READS = 200
REDRIVE_PREFIX = "redrive-"

How = Literal["range", "window", "unresolved"]


def consumer_mappings() -> tuple[MappingSpec, ...]:
    """The mappings `redrive` replays for: every consumer of committed events (not the pump)."""
    return tuple(m for m in MAPPINGS if m.function != "pump")


def choose_mappings(keys: Sequence[str], *, redriving: bool) -> tuple[MappingSpec, ...]:
    """The mappings named (default: every consumer's); the pump's only for a look."""
    if not keys:
        return consumer_mappings()
    chosen: list[MappingSpec] = []
    for key in keys:
        try:
            spec = mapping_spec(key)
        except KeyError as exc:
            raise OpsUsageError(str(exc.args[0])) from exc
        if redriving and spec.function == "pump":
            raise OpsUsageError(
                f"{key}: the pump's dead letters are submissions not yet in the log and cannot be replayed; "
                "--peek shows their range (docs/deploy.md, 'When an alarm fires')"
            )
        chosen.append(spec)
    return tuple(dict.fromkeys(chosen))


@dataclass(frozen=True)
class DeadLetter:
    """One on-failure record of a mapping, as Lambda sends it (KinesisBatchInfo or DDBStreamBatchInfo)."""

    mapping: MappingSpec
    message_id: str
    receipt_handle: str
    condition: str
    invocations: int
    timestamp: str
    shard_id: str
    start: str
    end: str
    size: int
    stream_arn: str
    first_arrival: str | None = None
    last_arrival: str | None = None

    @classmethod
    def parse(cls, mapping: MappingSpec, message: Mapping[str, Any]) -> DeadLetter:
        """Read an SQS message; raise OpsError if its body is not an on-failure record of a stream batch."""
        try:
            body = orjson.loads(message["Body"])
            info = body.get("KinesisBatchInfo") or body.get("DDBStreamBatchInfo")
            context = body.get("requestContext") or {}
            return cls(
                mapping=mapping,
                message_id=str(message["MessageId"]),
                receipt_handle=str(message["ReceiptHandle"]),
                condition=str(context.get("condition", "")),
                invocations=int(context.get("approximateInvokeCount", 0)),
                timestamp=str(body.get("timestamp", "")),
                shard_id=str(info["shardId"]),
                start=str(info["startSequenceNumber"]),
                end=str(info["endSequenceNumber"]),
                size=int(info["batchSize"]),
                stream_arn=str(info["streamArn"]),
                first_arrival=info.get("approximateArrivalOfFirstRecord"),
                last_arrival=info.get("approximateArrivalOfLastRecord"),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
            raise OpsError(
                f"{mapping.key}: message {message.get('MessageId')} is not an on-failure record of a stream batch"
            ) from exc

    def to_dict(self) -> dict[str, Any]:
        return {
            "mapping": self.mapping.key,
            "message_id": self.message_id,
            "condition": self.condition,
            "invocations": self.invocations,
            "failed_at": self.timestamp,
            "shard_id": self.shard_id,
            "start_sequence_number": self.start,
            "end_sequence_number": self.end,
            "batch_size": self.size,
            "first_arrival": self.first_arrival,
            "last_arrival": self.last_arrival,
        }


@dataclass(frozen=True)
class Resolved:
    """What a dead letter names: per aggregate, the replay that delivered its events (None: live events)."""

    letter: DeadLetter
    how: How
    # aggregate id -> the replay id its records carried (playback sources), or None (the live change stream)
    aggregates: dict[str, str | None] = field(default_factory=dict)
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.letter.to_dict(),
            "how": self.how,
            "aggregates": sorted(self.aggregates),
            "note": self.note,
        }


@dataclass
class MappingReport:
    """What `redrive` did for one mapping."""

    mapping: str
    messages: int = 0
    redriven: int = 0  # messages confirmed and deleted
    kept: int = 0
    aggregates: int = 0
    replays: list[str] = field(default_factory=list)
    events_put: int = 0
    problems: list[str] = field(default_factory=list)
    letters: list[Resolved] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "mapping": self.mapping,
            "messages": self.messages,
            "redriven": self.redriven,
            "kept": self.kept,
            "aggregates": self.aggregates,
            "replays": self.replays,
            "events_put": self.events_put,
            "problems": self.problems,
            "letters": [r.to_dict() for r in self.letters],
        }


@dataclass(frozen=True)
class QueueState:
    mapping: str
    queue: str
    visible: int
    in_flight: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "mapping": self.mapping,
            "queue": self.queue,
            "visible": self.visible,
            "in_flight": self.in_flight,
        }


class Redrives:
    """The dead-letter queues of a stack, and the replays that recover them (see the module docstring).

    - `wait_timeout_s`: how long to wait for the consumer to confirm a redrive before keeping its messages;
    - `margin_s`: how far the arrival-window fallback reaches beyond the batch's arrival times;
    - `max_messages`: the most messages a run takes from one queue;
    - `tick`: called while waiting (tests deliver the playback stream there)."""

    def __init__(
        self,
        settings: Settings,
        *,
        say: Say,
        wait_timeout_s: float = 300.0,
        margin_s: float = DEFAULT_MARGIN_S,
        max_messages: int = 1000,
        progress: str = "none",
        tick: Callable[[], None] | None = None,
        sqs: Any = None,
        dynamodb: DynamoDBClient | None = None,
        kinesis: KinesisClient | None = None,
        streams: DynamoDBStreamsClient | None = None,
    ) -> None:
        self.settings = settings
        self._say = say
        self.wait_timeout_s = wait_timeout_s
        self.margin_s = margin_s
        self.max_messages = max_messages
        self._progress = progress
        self._tick = tick
        self._sqs = sqs if sqs is not None else sqs_client(settings)
        self._db = dynamodb if dynamodb is not None else dynamodb_client(settings)
        self._kinesis = kinesis if kinesis is not None else kinesis_client(settings)
        self._streams = streams if streams is not None else dynamodbstreams_client(settings)
        self._definitions = ReplayDirectory(self._db, settings.replay_checkpoints_table)
        self._acks = ConsumerAcks(self._db, settings.replay_checkpoints_table)
        self._urls: dict[str, str] = {}

    # -- queues ----------------------------------------------------------------------------------------------

    def queue_url(self, mapping: MappingSpec) -> str:
        if mapping.key not in self._urls:
            name = mapping.dead_letter_queue(self.settings.prefix)
            try:
                self._urls[mapping.key] = self._sqs.get_queue_url(QueueName=name)["QueueUrl"]
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                if code in ("AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"):
                    raise OpsError(
                        f"dead-letter queue {name} not found (is ES_NAME_PREFIX the stack's?)"
                    ) from exc
                raise
        return self._urls[mapping.key]

    def queues(self, mappings: Sequence[MappingSpec]) -> list[QueueState]:
        """Each mapping's queue and how many messages it holds (visible, and taken by someone right now)."""
        out = []
        for mapping in mappings:
            attributes = self._sqs.get_queue_attributes(
                QueueUrl=self.queue_url(mapping),
                AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
            )["Attributes"]
            out.append(
                QueueState(
                    mapping.key,
                    mapping.dead_letter_queue(self.settings.prefix),
                    int(attributes.get("ApproximateNumberOfMessages", 0)),
                    int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0)),
                )
            )
        return out

    def _receive(self, mapping: MappingSpec, visibility_s: int) -> tuple[list[DeadLetter], list[str]]:
        """The queue's messages as dead letters, and a problem for each message that is not one (those are
        made visible again at once, left for a person to look at)."""
        url = self.queue_url(mapping)
        letters: list[DeadLetter] = []
        problems: list[str] = []
        seen: set[str] = set()
        while len(letters) < self.max_messages:
            response = self._sqs.receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=min(10, self.max_messages - len(letters)),
                VisibilityTimeout=visibility_s,
                WaitTimeSeconds=0,
            )
            messages = response.get("Messages") or []
            fresh = [m for m in messages if m["MessageId"] not in seen]
            if not fresh:
                break
            for message in fresh:
                seen.add(message["MessageId"])
                try:
                    letters.append(DeadLetter.parse(mapping, message))
                except OpsError as exc:
                    problems.append(f"{exc}; left in the queue")
                    self._sqs.change_message_visibility(
                        QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
                    )
        return letters, problems

    def _release(self, letters: Iterable[DeadLetter]) -> None:
        """Make messages visible again at once (kept for the next run)."""
        for letter in letters:
            try:
                self._sqs.change_message_visibility(
                    QueueUrl=self.queue_url(letter.mapping),
                    ReceiptHandle=letter.receipt_handle,
                    VisibilityTimeout=0,
                )
            except ClientError as exc:  # it becomes visible anyway when its timeout ends
                self._say(f"  could not release message {letter.message_id}: {exc}")

    def _delete(self, letters: Sequence[DeadLetter]) -> None:
        for i in range(0, len(letters), 10):
            chunk = letters[i : i + 10]
            response = self._sqs.delete_message_batch(
                QueueUrl=self.queue_url(chunk[0].mapping),
                Entries=[
                    {"Id": str(n), "ReceiptHandle": letter.receipt_handle} for n, letter in enumerate(chunk)
                ],
            )
            failed = response.get("Failed") or []
            if failed:
                raise OpsError(
                    f"{chunk[0].mapping.key}: {len(failed)} message(s) could not be deleted: {failed[0]}"
                )

    # -- finding the aggregates ------------------------------------------------------------------------------

    def resolve(self, letter: DeadLetter) -> Resolved:
        """The aggregates a dead letter names (read-only)."""
        records = self._read_range(letter)
        if records is not None:
            return Resolved(
                letter, "range", self._aggregates_of(letter, records), "read back from the stream"
            )
        if letter.mapping.source_kind == "kinesis":
            return Resolved(
                letter,
                "unresolved",
                note=(
                    f"the range is no longer in the {letter.mapping.source} stream (past its retention); "
                    "its arrival times are the replay's, not the events': run the original replay again"
                ),
            )
        return self._window(letter)

    def _read_range(self, letter: DeadLetter) -> list[Mapping[str, Any]] | None:
        """The records start..end of the shard, or None when they are not all there any more."""
        start, end = int(letter.start), int(letter.end)
        records: list[Mapping[str, Any]] = []
        try:
            iterator: str | None = self._iterator(letter)
            for _ in range(MAX_READS):
                if iterator is None:
                    break
                page, iterator, caught_up = self._page(letter, iterator)
                for record in page:
                    number = int(self._sequence_number(letter, record))
                    if number > end:
                        iterator = None
                        break
                    if number >= start:
                        records.append(record)
                if len(records) >= letter.size or (caught_up and not page):
                    break
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in (
                "ResourceNotFoundException",
                "TrimmedDataAccessException",
                "ExpiredIteratorException",
                "InvalidArgumentException",
            ):
                return None
            raise
        numbers = [self._sequence_number(letter, r) for r in records]
        if (
            len(records) != letter.size
            or not numbers
            or numbers[0] != letter.start
            or numbers[-1] != letter.end
        ):
            return None  # part of the range is gone: take the window instead, which covers all of it
        return records

    def _iterator(self, letter: DeadLetter) -> str:
        if letter.mapping.source_kind == "kinesis":
            return self._kinesis.get_shard_iterator(
                StreamName=letter.stream_arn.split(":stream/", 1)[1],
                ShardId=letter.shard_id,
                ShardIteratorType="AT_SEQUENCE_NUMBER",
                StartingSequenceNumber=letter.start,
            )["ShardIterator"]
        return self._streams.get_shard_iterator(
            StreamArn=letter.stream_arn,
            ShardId=letter.shard_id,
            ShardIteratorType="AT_SEQUENCE_NUMBER",
            SequenceNumber=letter.start,
        )["ShardIterator"]

    def _page(self, letter: DeadLetter, iterator: str) -> tuple[list[Mapping[str, Any]], str | None, bool]:
        if letter.mapping.source_kind == "kinesis":
            k = self._kinesis.get_records(ShardIterator=iterator, Limit=1000)
            return list(k["Records"]), k.get("NextShardIterator"), k.get("MillisBehindLatest", 0) == 0
        d = self._streams.get_records(ShardIterator=iterator, Limit=1000)
        return list(d["Records"]), d.get("NextShardIterator"), not d["Records"]

    @staticmethod
    def _sequence_number(letter: DeadLetter, record: Mapping[str, Any]) -> str:
        if letter.mapping.source_kind == "kinesis":
            return str(record["SequenceNumber"])
        return str(record["dynamodb"]["SequenceNumber"])

    def _aggregates_of(
        self, letter: DeadLetter, records: Sequence[Mapping[str, Any]]
    ) -> dict[str, str | None]:
        out: dict[str, str | None] = {}
        for record in records:
            if letter.mapping.source_kind == "dynamodb":
                out[record["dynamodb"]["Keys"]["aggregate_id"]["S"]] = None
                continue
            aggregate = str(record["PartitionKey"])  # the aggregate id, on both streams
            replay_id: str | None = None
            if letter.mapping.source == "playback":
                try:
                    event = event_from_data(record["Data"])
                    replay_id = event.replay.replay_id if event.replay else None
                except InvalidEvent:
                    replay_id = None  # not an event: the consumer skipped it; its aggregate is replayed live
            out.setdefault(aggregate, replay_id)
        return out

    def _window(self, letter: DeadLetter) -> Resolved:
        if not letter.first_arrival or not letter.last_arrival:
            return Resolved(
                letter, "unresolved", note="the range is gone and the message has no arrival times"
            )
        margin = timedelta(seconds=self.margin_s)
        since = format_timestamp(parse_timestamp(letter.first_arrival) - margin)
        until = format_timestamp(parse_timestamp(letter.last_arrival) + margin)
        paginator = self._db.get_paginator("scan")
        found: dict[str, str | None] = {}
        for page in paginator.paginate(
            TableName=self.settings.events_table,
            FilterExpression="#r BETWEEN :a AND :b",
            ProjectionExpression="aggregate_id",
            ExpressionAttributeNames={"#r": "recorded_at"},
            ExpressionAttributeValues={":a": {"S": since}, ":b": {"S": until}},
        ):
            for item in page.get("Items", []):
                found[item["aggregate_id"]["S"]] = None
        if not found:
            return Resolved(
                letter,
                "unresolved",
                note=f"the range is gone and the log recorded no event in {since}..{until}: widen --margin",
            )
        return Resolved(
            letter,
            "window",
            found,
            note=(
                f"the range is past the change stream's 24 hours: took every event recorded {since}..{until} "
                f"(arrival window widened by {self.margin_s:.0f} s; a scan of {self.settings.events_table})"
            ),
        )

    # -- the commands ----------------------------------------------------------------------------------------

    def peek(self, mappings: Sequence[MappingSpec]) -> list[MappingReport]:
        """Each queue's messages and what they name, without taking them (they are made visible again)."""
        reports = []
        for mapping in mappings:
            letters, problems = self._receive(mapping, visibility_s=30)
            try:
                resolved = [self.resolve(letter) for letter in letters]
            finally:
                self._release(letters)
            report = MappingReport(mapping.key, messages=len(letters), letters=resolved, problems=problems)
            report.aggregates = len({a for r in resolved for a in r.aggregates})
            reports.append(report)
        return reports

    def redrive(self, mappings: Sequence[MappingSpec]) -> list[MappingReport]:
        """Redrive every message of each mapping's queue (see the module docstring)."""
        visibility = min(MAX_VISIBILITY_S, int(self.wait_timeout_s) + 600)
        reports = []
        for mapping in mappings:
            report = MappingReport(mapping.key)
            letters, report.problems = self._receive(mapping, visibility)
            report.messages = len(letters)
            if not letters:
                reports.append(report)
                continue
            self._say(f"{mapping.key}: {len(letters)} dead-lettered batch(es)")
            try:
                self._redrive_mapping(mapping, letters, report)
            except BaseException:
                self._release(letters)  # nothing confirmed: every message stays for the next run
                raise
            reports.append(report)
        return reports

    def _redrive_mapping(
        self, mapping: MappingSpec, letters: list[DeadLetter], report: MappingReport
    ) -> None:
        resolved = [self.resolve(letter) for letter in letters]
        report.letters = resolved
        unresolved = [r for r in resolved if r.how == "unresolved"]
        for r in unresolved:
            report.problems.append(f"message {r.letter.message_id} kept: {r.note}")
        self._release(r.letter for r in unresolved)
        for r in resolved:
            if r.how == "window":
                self._say(f"  {r.note}")
        # One replay per original replay (playback sources) or one for the live events (the change stream).
        groups: dict[str | None, tuple[set[str], list[DeadLetter]]] = {}  # origin -> aggregates, letters
        for r in resolved:
            if r.how == "unresolved":
                continue
            origins = set(r.aggregates.values())
            for aggregate, origin in r.aggregates.items():
                groups.setdefault(origin, (set(), []))[0].add(aggregate)
            for origin in origins:
                groups[origin][1].append(r.letter)
        report.aggregates = len({a for r in resolved for a in r.aggregates})
        confirmed: set[str] = set()
        failed: set[str] = set()
        for origin, (aggregates, group_letters) in groups.items():
            try:
                self._replay(mapping, origin, sorted(aggregates), report)
            except OpsError as exc:
                report.problems.append(str(exc))
                failed.update(letter.message_id for letter in group_letters)
                continue
            confirmed.update(letter.message_id for letter in group_letters)
        done = [r.letter for r in resolved if r.how != "unresolved" and r.letter.message_id not in failed]
        done = [letter for letter in done if letter.message_id in confirmed]
        self._delete(done)
        self._release(r.letter for r in resolved if r.letter.message_id in failed)
        report.redriven = len(done)
        report.kept = report.messages - report.redriven

    def _replay(
        self, mapping: MappingSpec, origin: str | None, aggregates: list[str], report: MappingReport
    ) -> None:
        mode: ReplayMode = "redrive"
        state_table: str | None = None
        if origin is not None:
            definition = self._definitions.get(origin)
            if definition is None:
                raise OpsError(
                    f"replay {origin} that delivered the failed events has no stored definition any more "
                    "(kept 30 days); run it again"
                )
            mode, state_table = definition.mode, definition.state_table
        replay_id = (
            f"{REDRIVE_PREFIX}{mapping.function}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(2)}"
        )
        s = self.settings
        try:
            config = ReplayConfig(
                events_table=s.events_table,
                stream=s.playback_stream,
                checkpoint_table=s.replay_checkpoints_table,
                filters=Filters.build(aggregates=aggregates),
                mode=mode,
                replay_id=replay_id,
                state_table=state_table,
                consumer=mapping.function,
            )
        except UsageError as exc:
            raise OpsError(f"{mapping.key}: {exc}") from exc
        what = "as live" if mode == "redrive" else f"in mode {mode}, as replay {origin} did"
        self._say(
            f"  replay {replay_id}: {len(aggregates)} aggregate(s) to the {mapping.function} function, {what}"
        )
        ledger = PutLedger()
        summary = run_replay(s, config, make_reporter(self._progress), ledger)
        report.replays.append(replay_id)
        report.events_put += summary.put
        self.wait_confirmed(replay_id, mapping.function, ledger.versions)
        self._say(f"  {mapping.function} confirmed {len(ledger.versions)} aggregate(s) of {replay_id}")

    def wait_confirmed(self, replay_id: str, consumer: str, versions: Mapping[str, int]) -> None:
        """Wait until `consumer` has acknowledged every aggregate of the replay at (at least) the version put."""
        deadline = time.monotonic() + self.wait_timeout_s
        delay = 0.2
        pending = dict(versions)
        while pending:
            if self._tick is not None:
                self._tick()
            acked = self._acks.acknowledged(replay_id, consumer)
            pending = {a: v for a, v in pending.items() if acked.get(a, 0) < v}
            if not pending:
                return
            if time.monotonic() > deadline:
                examples = ", ".join(f"{a} v{v}" for a, v in sorted(pending.items())[:3])
                raise OpsError(
                    f"replay {replay_id}: the {consumer} function has not confirmed {len(pending)} aggregate(s) "
                    f"after {self.wait_timeout_s:.0f}s ({examples}); its messages are kept: is it consuming the "
                    "playback stream, or failing again (its log, and its playback dead-letter queue)?"
                )
            time.sleep(delay)
            delay = min(delay * 1.5, 2.0)


# -- what the command prints ----------------------------------------------------------------------------------


def queues_text(queues: Sequence[QueueState]) -> str:
    """`--list`: one line a queue."""
    width = max((len(q.mapping) for q in queues), default=0)
    lines = [
        f"{q.mapping.ljust(width)}  {q.visible:>5} message(s)  ({q.in_flight} in flight)  {q.queue}"
        for q in queues
    ]
    return "\n".join(lines) or "no queues"


def redrive_text(reports: Sequence[MappingReport], *, peek: bool, limit: int = 10) -> str:
    """A redrive's (or a peek's) report, for a reader."""
    lines: list[str] = []
    for r in reports:
        if not r.messages:
            lines.append(f"{r.mapping}: no dead letters")
            lines.extend(f"  kept: {p}" for p in r.problems)
            continue
        if peek:
            lines.append(f"{r.mapping}: {r.messages} dead letter(s), {r.aggregates} aggregate(s)")
        else:
            lines.append(
                f"{r.mapping}: {r.messages} dead letter(s), {r.aggregates} aggregate(s), {r.events_put} event(s) "
                f"replayed ({', '.join(r.replays) or 'no replay'}); {r.redriven} redriven and deleted, {r.kept} kept"
            )
        for resolved in r.letters[:limit]:
            letter = resolved.letter
            aggregates = sorted(resolved.aggregates)
            shown = ", ".join(aggregates[:5]) + (
                f" ... and {len(aggregates) - 5} more" if len(aggregates) > 5 else ""
            )
            lines.append(
                f"  {letter.condition or 'failed'} at {letter.timestamp}: shard {letter.shard_id} "
                f"{letter.start}..{letter.end} ({letter.size} record(s), {resolved.how}): {shown or '-'}"
            )
            if resolved.how != "range":
                lines.append(f"    {resolved.note}")
        if len(r.letters) > limit:
            lines.append(f"  ... and {len(r.letters) - limit} more")
        lines.extend(f"  kept: {p}" for p in r.problems)
    return "\n".join(lines)
