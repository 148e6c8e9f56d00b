"""The write Lambda: committed events -> the state table (the article's data store).

Fed by two event source mappings, in the same envelope: the events table's change stream (live events, as the
pump commits them) and the playback stream (replayed events). A batch goes to `Projector.project_batch`:
idempotent (a version the state already reflects is skipped), in version order per aggregate (a gap is filled
from the log), business rules applied by the domain (a refused event leaves the state unchanged and its refusal
is recorded with its reason for `GET /events/{event_id}`), one state read and one state write per aggregate per
batch, and different aggregates in parallel.

If an aggregate fails, the answer names its first record (ReportBatchItemFailures), and Lambda retries the
batch from there. Records of other aggregates after it may have been done already; they are skipped as
already reflected when they come again. Powertools' BatchProcessor is not used here: it works record by
record, and this handler's unit of work is an aggregate's share of the batch.

A record that is not an event at all is logged, counted and skipped, as in the pump: it can never succeed, and
retrying it would stall its shard.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from domain import DOMAIN
from eventlog.codec import event_from_data, event_from_stream_record, kinesis_record_data
from eventlog.envelope import Event
from eventlog.errors import InvalidEvent
from eventlog.projection import Projector
from handlers import runtime
from handlers.observability import Instrumentation

instrumentation = Instrumentation(service="write")
logger = instrumentation.logger

_METRIC = {
    "applied": "EventsApplied",
    "refused": "EventsRefused",
    "already_reflected": "EventsAlreadyReflected",
}


@runtime.per_container
def projector() -> Projector:
    return Projector(
        events=runtime.event_store(),
        states=runtime.state_store(),
        apply=DOMAIN.apply,
        statuses=runtime.status_store(),
    )


def decode(record: dict[str, Any]) -> Event | None:
    """The committed event a stream record carries, or None for a record that is not one."""
    try:
        if record.get("eventSource") == "aws:kinesis":
            return event_from_data(kinesis_record_data(record))
        if record.get("eventName") != "INSERT":
            return None  # the log is append-only; anything else is not an event being committed
        return event_from_stream_record(record)
    except (InvalidEvent, ValueError, KeyError) as exc:
        logger.error("skipping a record that is not an event", extra={"error": str(exc)})
        instrumentation.count("MalformedEventRecords", 1)
        return None


def sequence_number(record: dict[str, Any]) -> str:
    if "kinesis" in record:
        return str(record["kinesis"]["sequenceNumber"])
    return str(record["dynamodb"]["SequenceNumber"])


@instrumentation.handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    events: list[Event] = []
    sequence_numbers: list[str] = []
    for record in event.get("Records") or []:
        decoded = decode(record)
        if decoded is not None:
            events.append(decoded)
            sequence_numbers.append(sequence_number(record))
    if not events:
        return {"batchItemFailures": []}
    batch = projector().project_batch(events)
    counts = Counter(r.result for r in batch.results if r is not None)
    for result, count in counts.items():
        instrumentation.count(_METRIC[result], count)
    filled = sum(r.filled for r in batch.results if r is not None)
    if filled:
        logger.info("filled gaps from the log", extra={"events_read": filled})
    if batch.first_failed is None:
        return {"batchItemFailures": []}
    failed = events[batch.first_failed]
    logger.warning(
        "projection failed; Lambda retries from this record",
        extra={"aggregate_id": failed.aggregate_id, "version": failed.version, "error": repr(batch.error)},
    )
    return {"batchItemFailures": [{"itemIdentifier": sequence_numbers[batch.first_failed]}]}
