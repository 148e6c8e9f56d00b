"""API Gateway REST proxy plumbing shared by the load and query handlers: errors with reasons, JSON responses,
and case-insensitive access to the request's headers and parameters."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from eventlog.ids import is_aggregate_id, is_uuid

# Deeper than any request this API takes (its bodies are two levels deep); orjson alone would allow 1024.
MAX_JSON_DEPTH = 32


@dataclass
class RequestError(Exception):
    """A request the API refuses: HTTP status, a stable error code, a message, and per-field details."""

    status: int
    code: str
    message: str
    details: Sequence[Mapping[str, str]] = field(default_factory=list)

    def response(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.code, "message": self.message}
        if self.details:
            body["details"] = list(self.details)
        return json_response(self.status, body)


def json_response(status: int, body: Any, headers: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A Lambda proxy integration response with a JSON body (orjson)."""
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json", "Cache-Control": "no-store", **(headers or {})},
        "body": orjson.dumps(body).decode(),
        "isBase64Encoded": False,
    }


def header(event: Mapping[str, Any], name: str) -> str | None:
    """A request header by case-insensitive name (the last value when repeated, as API Gateway gives it)."""
    wanted = name.lower()
    found = None
    for key, value in (event.get("headers") or {}).items():
        if key.lower() == wanted:
            found = value
    return found


def path_parameter(event: Mapping[str, Any], name: str) -> str:
    value = (event.get("pathParameters") or {}).get(name)
    if value is None:
        raise RequestError(400, "missing_path_parameter", f"the path has no {name}")
    return str(value)


def query_parameter(event: Mapping[str, Any], name: str) -> str | None:
    values = (event.get("multiValueQueryStringParameters") or {}).get(name)
    if values and len(values) > 1:
        raise RequestError(400, "invalid_query", f"query parameter {name} is given {len(values)} times")
    return (event.get("queryStringParameters") or {}).get(name)


def raw_body(event: Mapping[str, Any]) -> bytes:
    """The request body's bytes. A body that cannot be what API Gateway sends (bad base64, text holding a lone
    surrogate) is a 400, never an exception."""
    body = event.get("body")
    if body is None:
        return b""
    if event.get("isBase64Encoded"):
        try:
            return base64.b64decode(str(body), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise RequestError(400, "invalid_body", "the request body is marked base64 but is not") from exc
    # surrogatepass: a lone surrogate reaches the JSON parser as bytes it refuses, with its reason.
    return str(body).encode("utf-8", "surrogatepass")


def json_body(body: bytes) -> Any:
    """The request body as JSON (I-JSON, RFC 7493): valid UTF-8, no lone surrogates, numbers a double can hold,
    at most MAX_JSON_DEPTH levels, and no key twice in one object (parsers disagree on which value wins, so
    a repeated "type" could mean one event here and another to a reader of the log). 400 otherwise."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise RequestError(400, "invalid_json", f"the request body is not valid JSON: {exc}") from exc
    if _depth(data) > MAX_JSON_DEPTH:
        raise RequestError(
            400, "invalid_json", f"the request body is nested more than {MAX_JSON_DEPTH} levels deep"
        )
    repeated: list[str] = []

    def refuse_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                repeated.append(key)
            seen.add(key)
        return {}

    # orjson keeps the last of repeated keys without a word; the standard parser can say (orjson has already
    # checked everything else, and the depth bound keeps this pass's recursion shallow).
    json.loads(body, object_pairs_hook=refuse_repeats)
    if repeated:
        raise RequestError(
            400,
            "invalid_json",
            f"the request body repeats the key {repeated[0][:100]!r} in one object; each key may appear once",
        )
    return data


def _depth(data: Any) -> int:
    deepest = 0
    pending = [(data, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, dict | list):
            deepest = max(deepest, depth)
            children = value.values() if isinstance(value, dict) else value
            pending.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return deepest


def check_aggregate_id(aggregate_id: str) -> str:
    """The aggregate id from the path; 400 unless the whole of it is one (see eventlog.ids)."""
    if not is_aggregate_id(aggregate_id):
        raise RequestError(
            400,
            "invalid_aggregate_id",
            "aggregate_id must be 1-128 characters: letters, digits and . _ : @ - , starting with a letter or "
            f"digit (got {aggregate_id[:140]!r})",
        )
    return aggregate_id


def check_event_id(event_id: str, where: str = "event_id") -> str:
    """The event id from the path, lower-cased; 400 unless the whole of it is a UUID."""
    if not is_uuid(event_id):
        raise RequestError(
            400, "invalid_event_id", f"{where} must be a UUID like 01890a5d-ac96-774b-bcce-b302099a8057"
        )
    return event_id.lower()
