"""Powertools batch processing that keeps a stream's order: stop at the first failed record.

Powertools' BatchProcessor goes on after a failed record and reports each failure; on a stream, Lambda then
restarts from the lowest failed sequence number, so the records processed after the failure run twice and,
worse, ran before the one that failed (per-key order broken). This processor short-circuits instead, the way
Powertools' own SqsFifoPartialProcessor does for FIFO queues: once a record fails, every later record is
reported failed without being processed.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType


class StopAfterFailure(Exception):
    """Reported for records not processed because an earlier record of the batch failed."""


class OrderedBatchProcessor(BatchProcessor):
    """A BatchProcessor for Kinesis or DynamoDB streams that never processes past a failed record."""

    def __init__(self, event_type: EventType) -> None:
        # A batch whose first record fails is reported record by record like any other (Lambda restarts from
        # the first), rather than raised as an error that Powertools would log as "all records failed".
        super().__init__(event_type, raise_on_entire_batch_failure=False)

    def _process_record(self, record: dict[str, Any]) -> Any:
        if self.fail_messages:
            return self.failure_handler(
                record=self._to_batch_type(record, event_type=self.event_type, model=self.model),
                exception=(StopAfterFailure, StopAfterFailure("an earlier record failed"), None),
            )
        return super()._process_record(record)

    def _async_process_record(self, record: dict[str, Any]) -> Any:
        raise NotImplementedError("ordered processing is synchronous")
