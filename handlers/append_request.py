"""Checking `POST /aggregates/{aggregate_id}/events` before anything is written.

Every check about the request and the log happens here (content type, size, JSON, fields, types, known event
type, payload schema, ids, times); business rules do not (they apply when state is computed). A request that
fails any check gets a 4xx with every problem found, and nothing is written anywhere.

Status codes: 415 wrong content type; 413 body too large; 400 malformed (empty body, bad JSON, bad path id,
bad header); 422 well-formed JSON that does not describe a valid event.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from domain.schema import Domain, Problem, check_text
from eventlog.envelope import (
    METADATA_KEYS,
    Submission,
    event_id_for_key,
    format_timestamp,
    new_event_id,
    parse_timestamp,
)
from eventlog.ids import is_idempotency_key, is_uuid
from eventlog.status import request_fingerprint
from handlers.http import RequestError, check_aggregate_id, header, json_body, path_parameter, raw_body

# A request body fits comfortably in one Kinesis record (1 MiB), one DynamoDB item (400 KB) with its
# envelope, and a pump transaction (4 MB) with many others.
MAX_BODY_BYTES = 128 * 1024
MAX_EXPECTED_VERSION = 2**53 - 1
MAX_CLOCK_SKEW = timedelta(minutes=5)
ALLOWED_FIELDS = ("type", "payload", "event_id", "expected_version", "occurred_at", "metadata")
IDEMPOTENCY_KEY_MAX = 255


@dataclass(frozen=True, slots=True)
class AppendRequest:
    submission: Submission
    idempotency_key: str | None
    fingerprint: str
    event_id_given: bool


def parse_append_request(
    event: Mapping[str, Any], domain: Domain, now: datetime | None = None
) -> AppendRequest:
    """The submission a valid request describes; raises RequestError saying what is wrong otherwise."""
    moment = now or datetime.now(UTC)
    aggregate_id = check_aggregate_id(path_parameter(event, "aggregate_id"))
    idempotency_key = idempotency_key_header(event)
    check_content_type(header(event, "content-type"))
    body = raw_body(event)
    if len(body) > MAX_BODY_BYTES:
        raise RequestError(
            413,
            "body_too_large",
            f"the request body is {len(body)} bytes; the limit is {MAX_BODY_BYTES} bytes",
        )
    if not body.strip():
        raise RequestError(400, "empty_body", "the request body is empty; send a JSON object")
    data = json_body(body)
    if not isinstance(data, dict):
        raise RequestError(422, "invalid_event", "the request body must be a JSON object")

    problems = unknown_fields(data, ALLOWED_FIELDS)
    type_ = data.get("type")
    payload: dict[str, Any] = {}
    if not isinstance(type_, str) or not type_:
        problems.append(Problem("type", "is required and must be a non-empty string"))
    elif "payload" not in data:
        problems.append(Problem("payload", "is required (use {} for an event without fields)"))
    else:
        payload, payload_problems = domain.check(type_, data["payload"])
        problems.extend(payload_problems)
    fields = parse_envelope_fields(data, event, moment, problems)
    raise_problems(problems, "invalid_event")
    assert isinstance(type_, str)
    schema_version = domain.event_types[type_].schema_version
    return append_request(aggregate_id, type_, schema_version, payload, fields, moment, idempotency_key)


@dataclass(frozen=True, slots=True)
class EnvelopeFields:
    """The body fields an append and a reversal share, checked."""

    event_id: str | None
    expected_version: int | None
    occurred_at: str
    metadata: dict[str, str]


def unknown_fields(data: Mapping[str, Any], allowed: tuple[str, ...]) -> list[Problem]:
    return [
        Problem(name, f"unknown field (allowed: {', '.join(allowed)})")
        for name in data
        if name not in allowed
    ]


def parse_envelope_fields(
    data: Mapping[str, Any], event: Mapping[str, Any], moment: datetime, problems: list[Problem]
) -> EnvelopeFields:
    """event_id, expected_version, occurred_at and metadata (with the authenticated actor); a problem for each
    bad one."""
    refuse_nulls(data, ("event_id", "expected_version", "occurred_at", "metadata"), problems)
    event_id = data.get("event_id")
    if event_id is not None and not is_uuid(event_id):
        problems.append(
            Problem("event_id", "must be a UUID string like 01890a5d-ac96-774b-bcce-b302099a8057")
        )
    expected = data.get("expected_version")
    if expected is not None and (type(expected) is not int or not 0 <= expected <= MAX_EXPECTED_VERSION):
        problems.append(
            Problem("expected_version", "must be a whole number >= 0 (0: the aggregate has no events)")
        )
    occurred_at = parse_occurred_at(data.get("occurred_at"), moment, problems)
    metadata = parse_metadata(data.get("metadata"), problems)
    actor = authenticated_actor(event)
    if actor:
        metadata["actor"] = actor
    return EnvelopeFields(
        event_id if is_uuid(event_id) else None,
        expected if type(expected) is int else None,
        occurred_at,
        metadata,
    )


def refuse_nulls(data: Mapping[str, Any], optional: tuple[str, ...], problems: list[Problem]) -> None:
    """An optional field is given or left out; `null` is neither (and would let two different bodies be the
    same request), so it is a problem of its own."""
    for name in optional:
        if name in data and data[name] is None:
            problems.append(Problem(name, "must not be null (leave the field out instead)"))


def raise_problems(problems: list[Problem], code: str) -> None:
    """A 422 naming the first problems (all of them in `details`), if there are any."""
    if problems:
        raise RequestError(
            422,
            code,
            "; ".join(f"{p.field}: {p.message}" for p in problems[:3])
            + ("; ..." if len(problems) > 3 else ""),
            [p.to_dict() for p in problems],
        )


def append_request(
    aggregate_id: str,
    type_: str,
    schema_version: int,
    payload: dict[str, Any],
    fields: EnvelopeFields,
    moment: datetime,
    idempotency_key: str | None,
) -> AppendRequest:
    """The checked request as a submission, with what the load function dedupes on."""
    if fields.event_id is not None:
        event_id = fields.event_id.lower()
    elif idempotency_key is not None:
        # Not a fresh UUIDv7: a retry of this request must name the same event (see event_id_for_key).
        event_id = event_id_for_key(aggregate_id, idempotency_key)
    else:
        event_id = new_event_id()
    submission = Submission(
        event_id=event_id,
        aggregate_id=aggregate_id,
        type=type_,
        schema_version=schema_version,
        occurred_at=fields.occurred_at,
        accepted_at=format_timestamp(moment),
        payload=payload,
        metadata=fields.metadata,
        expected_version=fields.expected_version,
    )
    return AppendRequest(
        submission=submission,
        idempotency_key=idempotency_key,
        fingerprint=request_fingerprint(aggregate_id, type_, payload, fields.expected_version),
        event_id_given=fields.event_id is not None,
    )


def check_content_type(content_type: str | None) -> None:
    """415 unless the body is declared application/json (utf-8)."""
    if content_type is None:
        raise RequestError(415, "unsupported_media_type", "send Content-Type: application/json")
    media, _, params = content_type.partition(";")
    if media.strip().lower() != "application/json":
        raise RequestError(
            415,
            "unsupported_media_type",
            f"Content-Type must be application/json, got {media.strip()[:100]!r}",
        )
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            raise RequestError(415, "unsupported_media_type", "the only charset accepted is utf-8")


def idempotency_key_header(event: Mapping[str, Any]) -> str | None:
    """The Idempotency-Key header (None when absent); 400 when it is not 1-255 visible ASCII characters."""
    key = header(event, "idempotency-key")
    if key is None:
        return None
    if not is_idempotency_key(key):
        raise RequestError(
            400,
            "invalid_idempotency_key",
            f"Idempotency-Key must be 1-{IDEMPOTENCY_KEY_MAX} visible ASCII characters without spaces",
        )
    return key


def parse_occurred_at(value: Any, now: datetime, problems: list[Problem]) -> str:
    """The canonical occurred_at (`now` when absent); a problem for a bad one (eventlog.envelope's one parser
    says why: no zone, not RFC 3339, outside 1970-9999, a leap second ...) or one in the future."""
    if value is None:
        return format_timestamp(now)
    if not isinstance(value, str):
        problems.append(Problem("occurred_at", "must be an ISO 8601 timestamp string with a time zone"))
        return ""
    try:
        moment = parse_timestamp(value)
    except ValueError as exc:
        problems.append(
            Problem("occurred_at", f"must be an ISO 8601 (RFC 3339) timestamp with a time zone: {exc}")
        )
        return ""
    if moment > now + MAX_CLOCK_SKEW:
        problems.append(
            Problem(
                "occurred_at", f"is in the future (more than {MAX_CLOCK_SKEW.seconds // 60} minutes ahead)"
            )
        )
    return format_timestamp(moment)


def parse_metadata(value: Any, problems: list[Problem]) -> dict[str, str]:
    """The metadata object's known fields as normalised text; a problem for each bad or unknown one."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        problems.append(Problem("metadata", "must be an object"))
        return {}
    metadata: dict[str, str] = {}
    for name, item in value.items():
        if name not in METADATA_KEYS:
            problems.append(
                Problem(f"metadata.{name}", f"unknown field (allowed: {', '.join(METADATA_KEYS)})")
            )
            continue
        text, problem = check_text(item, 256)
        if problem:
            problems.append(Problem(f"metadata.{name}", problem))
        else:
            metadata[name] = text
    return metadata


def authenticated_actor(event: Mapping[str, Any]) -> str | None:
    """The caller API Gateway authenticated (IAM user/role ARN, or an authorizer's principal), if any.
    When present it is the event's actor: who did something is not the client's to claim."""
    context = event.get("requestContext") or {}
    identity = context.get("identity") or {}
    authorizer = context.get("authorizer") or {}
    actor = identity.get("userArn") or authorizer.get("principalId")
    claims = authorizer.get("claims") or {}
    if not actor and isinstance(claims, dict):
        actor = claims.get("sub")
    return str(actor) if actor else None
