"""What the consumers of committed events (the write and service functions) share: a record of either source
they read (the events table's change stream, or the playback Kinesis stream) turned into the event it carries,
and the record's id for ReportBatchItemFailures."""

from __future__ import annotations

from typing import Any

from eventlog.codec import event_from_data, event_from_stream_record, kinesis_record_data
from eventlog.envelope import Event
from eventlog.errors import InvalidEvent
from handlers.observability import Instrumentation


def decode(record: dict[str, Any], instrumentation: Instrumentation) -> Event | None:
    """The committed event a stream record carries, or None for a record that is not one (logged and counted
    as MalformedEventRecords: a record that can never decode would otherwise stall its shard)."""
    try:
        if record.get("eventSource") == "aws:kinesis":
            return event_from_data(kinesis_record_data(record))
        if record.get("eventName") != "INSERT":
            return None  # the log is append-only; anything else is not an event being committed
        return event_from_stream_record(record)
    except (InvalidEvent, ValueError, KeyError) as exc:
        instrumentation.logger.error("skipping a record that is not an event", extra={"error": str(exc)})
        instrumentation.count("MalformedEventRecords", 1)
        return None


def sequence_number(record: dict[str, Any]) -> str:
    """The record's id in a batchItemFailures answer (Kinesis or DynamoDB Streams)."""
    if "kinesis" in record:
        return str(record["kinesis"]["sequenceNumber"])
    return str(record["dynamodb"]["SequenceNumber"])
