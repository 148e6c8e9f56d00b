"""Checking `POST /aggregates/{aggregate_id}/events/{version}/reverse` before anything is written.

A reversal is an event like any other (`EventReversed`), appended to the same aggregate's log: the log stays
append-only, and the reversed event stays in it. The load function serves the route with the same machinery as
an append (pending status, ingest stream, Idempotency-Key, client event ids); this module turns the request
into that same `AppendRequest`.

What is checked here is about the request and the log itself, never a business rule:
- the path: an aggregate id, a version that is a whole number >= 1 (400);
- the body, optional: a JSON object with `reason`, `event_id`, `expected_version`, `occurred_at`,
  `metadata` (415, 413, 400, 422 as for an append);
- the log: the aggregate holds that version (404 `version_not_found` otherwise), and the event there is of a
  type that can be reversed at all (422 `not_reversible`: an opening, a closing, a reversal itself).

Whether the reversal takes effect is decided where state is computed, like any event: reversing an event the
rules had refused, or one already reversed, is recorded and refused with its reason (docs/domain.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from domain.schema import Domain, NotReversible, Problem, check_text
from eventlog.ids import is_version_text
from eventlog.store import EventStore
from handlers.append_request import (
    MAX_BODY_BYTES,
    AppendRequest,
    append_request,
    check_content_type,
    idempotency_key_header,
    parse_envelope_fields,
    raise_problems,
    refuse_nulls,
    unknown_fields,
)
from handlers.http import RequestError, check_aggregate_id, header, json_body, path_parameter, raw_body

RESOURCE = "/aggregates/{aggregate_id}/events/{version}/reverse"
ALLOWED_FIELDS = ("reason", "event_id", "expected_version", "occurred_at", "metadata")
MAX_REASON_CHARS = 500
# Versions are DynamoDB numbers read into JSON by any client: at most 2^53 - 1, as expected_version.
MAX_VERSION = 2**53 - 1


def parse_reverse_request(
    event: Mapping[str, Any], domain: Domain, events: EventStore, now: datetime | None = None
) -> AppendRequest:
    """The EventReversed submission a valid request describes; raises RequestError saying what is wrong."""
    moment = now or datetime.now(UTC)
    aggregate_id = check_aggregate_id(path_parameter(event, "aggregate_id"))
    version = _version(path_parameter(event, "version"))
    idempotency_key = idempotency_key_header(event)
    data = _body(event)

    problems = unknown_fields(data, ALLOWED_FIELDS)
    reason: str | None = None
    refuse_nulls(data, ("reason",), problems)
    if data.get("reason") is not None:
        reason, problem = check_text(data["reason"], MAX_REASON_CHARS)
        if problem:
            problems.append(Problem("reason", problem))
    fields = parse_envelope_fields(data, event, moment, problems)
    raise_problems(problems, "invalid_reversal")
    type_, payload = _reversal(domain, events, aggregate_id, version, reason)
    schema_version = domain.schema_version(type_)
    return append_request(aggregate_id, type_, schema_version, payload, fields, moment, idempotency_key)


def _version(text: str) -> int:
    if not is_version_text(text) or int(text) > MAX_VERSION:
        raise RequestError(
            400,
            "invalid_version",
            f"version must be a whole number from 1 to {MAX_VERSION} (got {text[:40]!r})",
        )
    return int(text)


def _body(event: Mapping[str, Any]) -> dict[str, Any]:
    """The optional JSON body ({} when there is none)."""
    body = raw_body(event)
    if not body.strip():
        return {}
    check_content_type(header(event, "content-type"))
    if len(body) > MAX_BODY_BYTES:
        raise RequestError(
            413,
            "body_too_large",
            f"the request body is {len(body)} bytes; the limit is {MAX_BODY_BYTES} bytes",
        )
    data = json_body(body)
    if not isinstance(data, dict):
        raise RequestError(422, "invalid_reversal", "the request body must be a JSON object (or empty)")
    return data


def _reversal(
    domain: Domain, events: EventStore, aggregate_id: str, version: int, reason: str | None
) -> tuple[str, dict[str, Any]]:
    """Read the named event from the log and ask the domain for its reversal."""
    try:
        target = events.get(aggregate_id, version)
        head = events.head_version(aggregate_id) if target is None else version
    except (ClientError, BotoCoreError) as exc:
        raise RequestError(
            503, "unavailable", "the log could not be read; nothing was recorded; retry"
        ) from exc
    if target is None:
        if head == 0:
            message = f"aggregate {aggregate_id} has no events"
        else:
            message = f"aggregate {aggregate_id} has no version {version} (its latest is {head})"
        raise RequestError(404, "version_not_found", message)
    try:
        return domain.reversal_for(target, reason)
    except NotReversible as exc:
        raise RequestError(
            422, "not_reversible", f"version {version} of {aggregate_id} ({target.type}): {exc}"
        ) from exc
