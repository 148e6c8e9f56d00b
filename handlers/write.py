"""The write Lambda: committed events -> the state table (the article's data store).

Fed by two event source mappings, in the same envelope: the events table's change stream (live events, as the
pump commits them) and the playback stream (replayed events). Each event goes through `Projector.project`:
idempotent (a version the state already reflects is skipped), in version order (a gap is filled from the log),
business rules applied by the domain (a refused event leaves the state unchanged and its refusal is recorded
with its reason for `GET /events/{event_id}`).

Records are processed in order and the batch stops at the first failure (OrderedBatchProcessor); Lambda
retries from that record. A record that is not an event at all is logged, counted and skipped, as in the pump.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from aws_lambda_powertools.utilities.data_classes.kinesis_stream_event import KinesisStreamRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from domain import DOMAIN
from eventlog.codec import event_from_data, event_from_stream_record
from eventlog.errors import InvalidEvent
from eventlog.projection import Projector
from handlers import runtime
from handlers.batch import OrderedBatchProcessor
from handlers.observability import Instrumentation

instrumentation = Instrumentation(service="write")
logger = instrumentation.logger

_METRIC = {
    "applied": "EventsApplied",
    "refused": "EventsRefused",
    "already_reflected": "EventsAlreadyReflected",
}
_processors = {
    "aws:dynamodb": OrderedBatchProcessor(EventType.DynamoDBStreams),
    "aws:kinesis": OrderedBatchProcessor(EventType.KinesisDataStreams),
}


@runtime.per_container
def projector() -> Projector:
    return Projector(
        events=runtime.event_store(),
        states=runtime.state_store(),
        apply=DOMAIN.apply,
        statuses=runtime.status_store(),
    )


def record_handler(record: DynamoDBRecord | KinesisStreamRecord) -> str:
    """Project the committed event one stream record carries; returns what was done with it."""
    try:
        if isinstance(record, KinesisStreamRecord):
            event = event_from_data(record.kinesis.data_as_bytes())
        else:
            if record.raw_event.get("eventName") != "INSERT":
                return "ignored"  # the log is append-only; anything else is not an event being committed
            event = event_from_stream_record(record.raw_event)
    except InvalidEvent as exc:
        # A record that is not an event can never be projected; retrying it would stall its shard for good.
        logger.error("skipping a record that is not an event", extra={"error": str(exc)})
        instrumentation.count("MalformedEventRecords", 1)
        return "ignored"
    projected = projector().project(event)
    if projected.filled:
        logger.info(
            "filled a gap from the log",
            extra={"aggregate_id": event.aggregate_id, "filled": projected.filled},
        )
    instrumentation.count(_METRIC[projected.result], 1)
    return projected.result


@instrumentation.handler
def handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    records = event.get("Records") or []
    if not records:
        return {"batchItemFailures": []}
    source = records[0].get("eventSource")
    processor = _processors.get(source)
    if processor is None:
        raise ValueError(f"the write handler takes DynamoDB stream or Kinesis records, not {source!r}")
    # States cached by the projector are only trusted within one invocation.
    projector().reset_cache()
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
