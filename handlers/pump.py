"""The pump Lambda: the ingest stream -> the events table. The only writer of the log.

A batch is committed in stream order through `EventStore.commit` (versions gapless per aggregate, duplicates
dropped, expected_version enforced, rejections recorded). If the table cannot take a write part-way, the
answer names the first record not committed, so Lambda retries the batch from exactly there
(ReportBatchItemFailures): records before it are never repeated, records after it never skipped.

A record that is not a submission at all (written to the ingest stream by something other than the load
handler) cannot ever succeed; it is logged with its sequence number and counted, and the batch goes on, so
one bad record cannot stall its shard.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from eventlog.codec import kinesis_record_data, submission_from_data
from eventlog.envelope import Submission
from eventlog.errors import CommitInterrupted, InvalidEvent
from handlers import runtime
from handlers.observability import Instrumentation

instrumentation = Instrumentation(service="pump")
logger = instrumentation.logger


@instrumentation.handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    submissions: list[Submission] = []
    sequence_numbers: list[str] = []
    for record in event.get("Records", []):
        sequence_number = record["kinesis"]["sequenceNumber"]
        try:
            submissions.append(submission_from_data(kinesis_record_data(record)))
        except (InvalidEvent, ValueError) as exc:
            logger.error(
                "skipping a record that is not a submission",
                extra={"sequence_number": sequence_number, "error": str(exc)},
            )
            instrumentation.count("MalformedIngestRecords", 1)
            continue
        sequence_numbers.append(sequence_number)
    if not submissions:
        return {"batchItemFailures": []}
    try:
        results = runtime.event_store().commit(submissions)
        failures: list[dict[str, str]] = []
    except CommitInterrupted as interrupted:
        logger.warning(
            "commit interrupted; Lambda retries from the first uncommitted record",
            extra={"index": interrupted.index, "error": str(interrupted.cause)},
        )
        results = []
        failures = [{"itemIdentifier": sequence_numbers[interrupted.index]}]
    counts = {"committed": 0, "duplicate": 0, "rejected": 0}
    for result in results:
        counts[result.result] += 1
    instrumentation.count("EventsCommitted", counts["committed"])
    instrumentation.count("DuplicatesDropped", counts["duplicate"])
    instrumentation.count("EventsRejected", counts["rejected"])
    logger.debug("batch committed", extra=counts)
    return {"batchItemFailures": failures}
