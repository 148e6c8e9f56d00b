"""API Gateway REST proxy plumbing shared by the load and query handlers: errors with reasons, JSON responses,
and case-insensitive access to the request's headers and parameters."""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

# Aggregate ids: what fits a DynamoDB key, a Kinesis partition key (256 chars) and a URL path segment without
# surprises. Letters, digits and ._:@- ; starting with a letter or digit; at most 128 characters.
AGGREGATE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$")
UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


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
    body = event.get("body")
    if body is None:
        return b""
    if event.get("isBase64Encoded"):
        return base64.b64decode(body)
    return str(body).encode("utf-8")


def check_aggregate_id(aggregate_id: str) -> str:
    if not AGGREGATE_ID_RE.match(aggregate_id):
        raise RequestError(
            400,
            "invalid_aggregate_id",
            "aggregate_id must be 1-128 characters: letters, digits and . _ : @ - , starting with a letter or "
            f"digit (got {aggregate_id[:140]!r})",
        )
    return aggregate_id


def check_event_id(event_id: str, where: str = "event_id") -> str:
    if not UUID_RE.match(event_id):
        raise RequestError(
            400, "invalid_event_id", f"{where} must be a UUID like 01890a5d-ac96-774b-bcce-b302099a8057"
        )
    return event_id.lower()
