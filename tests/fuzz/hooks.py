"""Schemathesis hooks for this API (loaded by schemathesis in its own venv: stdlib and schemathesis only).

Every check runs (`--checks all`). One hook narrows one check, `positive_data_acceptance` (ST202: "a
schema-valid request was refused"), for the refusals of schema-valid requests that depend on the clock or on
what the log already holds, which no OpenAPI schema can state, and which api/openapi.yaml documents in words:

- `occurred_at` more than 5 minutes ahead (422 `invalid_event`/`invalid_reversal`, only the field
  `occurred_at`, "is in the future"), or within the schema's 1970-9999 but outside it once the offset is
  applied (1970-01-01T00:30:00+01:00, "outside");
- an Idempotency-Key already used, within 24 hours, for a different request (422 `idempotency_key_reused`);
- a reversal of a version whose type cannot be reversed, e.g. an AccountOpened that the fuzzer itself wrote
  (422 `not_reversible`).

Anything else a 4xx answers to schema-valid data, and every other check's failure, still fails the run. 409s
(a reused event id, a key in flight) and 404s (no such version) are in the check's default allowed statuses.

So that schema-valid requests mostly get past the clock rule and reach the log (the schema's years run to
9999, so most generated times are in the future), `map_case` moves a positive case's future `occurred_at`
back to 2000 or 2001 (a leap year for a leap year, so 29 February stays a date), keeping the rest of it, and
gives its Idempotency-Key fresh characters of the same length (the coverage phase sends "0" with a hundred
different bodies, so most would be refused as a reused key and tell nothing new).
"""

from __future__ import annotations

import calendar
import json
import secrets
import string
from collections.abc import MutableMapping
from datetime import UTC, datetime
from typing import Any

import schemathesis

STATEFUL_REFUSALS = frozenset({"idempotency_key_reused", "not_reversible"})
CLOCK_WORDS = ("is in the future", "is outside")
KEY_CHARACTERS = string.ascii_letters + string.digits


@schemathesis.hook
def filter_failure(context: Any, failure: Any, case: Any, response: Any) -> bool:
    """Keep every failure except a 422 to schema-valid data for one of the reasons above."""
    if getattr(failure, "code", None) != "ST202" or response.status_code != 422:
        return True
    try:
        body = json.loads(response.content)
    except (TypeError, ValueError):
        return True
    if not isinstance(body, dict):
        return True
    if body.get("error") in STATEFUL_REFUSALS:
        return False
    details = body.get("details") or []
    only_clock = bool(details) and all(
        isinstance(d, dict)
        and d.get("field") == "occurred_at"
        and any(words in str(d.get("message")) for words in CLOCK_WORDS)
        for d in details
    )
    return not (body.get("error") in ("invalid_event", "invalid_reversal") and only_clock)


@schemathesis.hook
def map_case(context: Any, case: Any) -> Any:
    """A positive case's occurred_at, when in a future year, moved to the same day in 2000 or 2001; its
    Idempotency-Key redrawn with the same length."""
    meta = getattr(case, "meta", None)
    if meta is None or not meta.generation.mode.is_positive:
        return case
    headers = getattr(case, "headers", None)
    if isinstance(headers, MutableMapping):
        for name, value in list(headers.items()):
            if name.lower() == "idempotency-key" and isinstance(value, str) and value:
                headers[name] = "".join(secrets.choice(KEY_CHARACTERS) for _ in value)
    body = getattr(case, "body", None)
    if not isinstance(body, dict):
        return case
    occurred = body.get("occurred_at")
    if isinstance(occurred, str) and occurred[:4].isdigit() and int(occurred[:4]) >= datetime.now(UTC).year:
        year = 2000 if calendar.isleap(int(occurred[:4])) else 2001
        body["occurred_at"] = f"{year}{occurred[4:]}"
    return case
