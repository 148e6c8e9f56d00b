"""The load Lambda: `POST /aggregates/{aggregate_id}/events` -> the ingest stream (partition key = aggregate id).

It also serves `POST /aggregates/{aggregate_id}/events/{version}/reverse`: a reversal is an event too
(EventReversed, checked against the log by handlers.reverse_request) and goes the same way from there.

It checks the request (handlers.append_request), notes the event as pending in the status table, and puts it
on the ingest stream; the pump records it in the log. Answers 202 with the event id: the event is accepted,
and `GET /events/{event_id}` tells when it is committed.

Retries are safe two ways:
- with an `Idempotency-Key` header, a repeat of the same request gets the first answer back (Powertools
  idempotency, 24 hours); the same key with a different request is refused with 422;
- with a client-chosen `event_id`, a repeat is recognised by the status table and the pump; the same id with a
  different event is refused with 409.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyPersistenceLayerError,
    IdempotencyValidationError,
)
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import BotoCoreError, ClientError

from domain import DOMAIN
from eventlog.codec import submission_to_data
from eventlog.envelope import Submission
from handlers import reverse_request, runtime
from handlers.append_request import AppendRequest, parse_append_request
from handlers.http import RequestError, json_response
from handlers.observability import Instrumentation

instrumentation = Instrumentation(service="load")
logger = instrumentation.logger

IDEMPOTENCY_TTL_SECONDS = 24 * 3600


@instrumentation.handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        if event.get("resource") == reverse_request.RESOURCE:
            request = reverse_request.parse_reverse_request(event, DOMAIN, runtime.event_store())
        else:
            request = parse_append_request(event, DOMAIN)
    except RequestError as error:
        instrumentation.count("RequestsRefused", 1)
        logger.info("request refused", extra={"status": error.status, "error": error.code})
        return error.response()
    try:
        if request.idempotency_key is None:
            body = _append(request.submission, request.fingerprint)
        else:
            config, append_once = _idempotent_append()
            config.register_lambda_context(context)
            body = append_once(request=_idempotent_request(request))
    except RequestError as error:
        logger.warning("request not taken", extra={"status": error.status, "error": error.code})
        return error.response()
    except IdempotencyValidationError:
        return RequestError(
            422,
            "idempotency_key_reused",
            "this Idempotency-Key was already used with a different request; use a new key for a new event",
        ).response()
    except IdempotencyAlreadyInProgressError:
        return RequestError(
            409,
            "request_in_progress",
            "a request with this Idempotency-Key is still in progress; retry shortly",
        ).response()
    except IdempotencyPersistenceLayerError:
        logger.exception("idempotency store unavailable")
        return RequestError(503, "unavailable", "the service cannot take events right now; retry").response()
    instrumentation.count("EventsAccepted", 1)
    return json_response(202, body, headers={"Location": body["links"]["status"]})


def _append(submission: Submission, fingerprint: str) -> dict[str, Any]:
    """Note the event as pending and put it on the ingest stream. Returns the 202 body."""
    statuses = runtime.status_store()
    try:
        existing = statuses.mark_pending(
            submission.event_id, submission.aggregate_id, submission.type, submission.accepted_at, fingerprint
        )
    except (ClientError, BotoCoreError) as exc:
        logger.exception("event status table unavailable", extra={"event_id": submission.event_id})
        raise RequestError(
            503, "unavailable", "the event status table did not answer; nothing was put on the log; retry"
        ) from exc
    if existing is not None:
        if existing.aggregate_id != submission.aggregate_id or (
            existing.fingerprint is not None and existing.fingerprint != fingerprint
        ):
            raise RequestError(
                409,
                "event_id_conflict",
                f"event_id {submission.event_id} was already used for a different event",
            )
        if existing.is_final:
            body = _accepted_body(submission)
            body["status"] = existing.status
            if existing.version is not None:
                body["version"] = existing.version
            return body
        # Still pending: an earlier attempt may not have reached the stream. Put it again; the pump dedupes.
    try:
        put = runtime.kinesis().put_record(
            StreamName=runtime.settings().ingest_stream,
            Data=submission_to_data(submission),
            PartitionKey=submission.aggregate_id,
        )
    except (ClientError, BotoCoreError) as exc:
        logger.exception("ingest stream put failed", extra={"event_id": submission.event_id})
        if not _refused_for_sure(exc):
            # A timeout or a 5xx: the record may be on the stream. Keep the pending entry (a retry with this
            # event id is then recognised, and the pump dedupes) and say how to retry without a second event.
            raise RequestError(
                503,
                "ingest_outcome_unknown",
                "the ingest stream did not answer; the event may have been taken: repeat the request with "
                f'"event_id": "{submission.event_id}" (or the same Idempotency-Key), never without',
            ) from exc
        if existing is None:
            _forget_quietly(submission.event_id)
        raise RequestError(
            503, "ingest_unavailable", "the event was not accepted (the ingest stream did not take it); retry"
        ) from exc
    body = _accepted_body(submission)
    body["sequence_number"] = put["SequenceNumber"]
    body["shard_id"] = put["ShardId"]
    return body


def _refused_for_sure(exc: ClientError | BotoCoreError) -> bool:
    """A 4xx from Kinesis (throttled, not found, too large) means the record was not taken; a connection
    error, a timeout or a 5xx leaves it unknown."""
    if not isinstance(exc, ClientError):
        return False
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return status is None or int(status) < 500


def _accepted_body(submission: Submission) -> dict[str, Any]:
    return {
        "event_id": submission.event_id,
        "aggregate_id": submission.aggregate_id,
        "type": submission.type,
        "status": "pending",
        "links": {
            "status": f"/events/{submission.event_id}",
            "aggregate": f"/aggregates/{submission.aggregate_id}",
            "history": f"/aggregates/{submission.aggregate_id}/events",
        },
    }


def _forget_quietly(event_id: str) -> None:
    try:
        runtime.status_store().forget_pending(event_id)
    except (ClientError, BotoCoreError):
        logger.warning("could not remove pending status", extra={"event_id": event_id})


def _idempotent_request(request: AppendRequest) -> dict[str, Any]:
    # The key is scoped to the aggregate. What a retry must repeat exactly (Powertools compares it): the event,
    # and the event id when the client chose one (a server-chosen id is what the stored answer gives back).
    given_id = request.submission.event_id if request.event_id_given else ""
    return {
        "key": f"{request.submission.aggregate_id}#{request.idempotency_key}",
        "fingerprint": request.fingerprint,
        "retry_must_match": [request.fingerprint, given_id],
        "submission": request.submission.to_dict(),
    }


def _append_from_request(request: dict[str, Any]) -> dict[str, Any]:
    submission = Submission.from_dict(request["submission"])
    return _append(submission, request["fingerprint"])


@runtime.per_container
def _idempotent_append() -> tuple[IdempotencyConfig, Callable[..., dict[str, Any]]]:
    """Built on first use (not at import): the table name and client come from the settings."""
    persistence = DynamoDBPersistenceLayer(
        table_name=runtime.settings().idempotency_table, boto3_client=runtime.dynamodb()
    )
    config = IdempotencyConfig(
        event_key_jmespath="key",
        payload_validation_jmespath="retry_must_match",
        expires_after_seconds=IDEMPOTENCY_TTL_SECONDS,
        raise_on_no_idempotency_key=True,
    )
    append_once = idempotent_function(
        _append_from_request, data_keyword_argument="request", persistence_store=persistence, config=config
    )
    return config, append_once
