"""The query Lambda: the GET routes, read straight from the tables.

    GET /aggregates/{aggregate_id}            latest state and the version it reflects (state table)
    GET /aggregates/{aggregate_id}/events     the aggregate's history, paginated (events table)
    GET /events/{event_id}                    where an event stands (event status table)

An aggregate exists once its log holds an event: both aggregate routes answer 404 (with the reason) for one
whose log is empty, and 200 otherwise. A state of null means the log has events but none is applied yet:
every one so far was refused (a deposit to an account never opened), or none is projected yet (`version` 0).

Reads are strongly consistent. The write function records an event's outcome just before it writes the state
that applies it (the other order would lose the outcome on a crash), so GET /events/{id} shows the outcome only
once the state reflects the event: a client that saw an outcome reads state that includes it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from handlers import runtime
from handlers.http import (
    RequestError,
    check_aggregate_id,
    check_event_id,
    json_response,
    path_parameter,
    query_parameter,
)
from handlers.observability import Instrumentation

instrumentation = Instrumentation(service="query")

DEFAULT_PAGE = 100
MAX_PAGE = 1000


def get_aggregate(event: dict[str, Any]) -> dict[str, Any]:
    aggregate_id = check_aggregate_id(path_parameter(event, "aggregate_id"))
    record = runtime.state_store().get(aggregate_id, consistent=True)
    if record is not None:
        return json_response(200, record.to_dict())
    # No state yet: the aggregate exists if its log has an event (committed, not projected yet).
    if runtime.event_store().head_version(aggregate_id) == 0:
        raise _no_such_aggregate(aggregate_id)
    return json_response(
        200,
        {
            "aggregate_id": aggregate_id,
            "version": 0,
            "state": None,
            "updated_at": None,
            "last_event_id": None,
        },
    )


def list_events(event: dict[str, Any]) -> dict[str, Any]:
    aggregate_id = check_aggregate_id(path_parameter(event, "aggregate_id"))
    from_version = _int_parameter(event, "from_version", default=1, low=1, high=2**53 - 1)
    limit = _int_parameter(event, "limit", default=DEFAULT_PAGE, low=1, high=MAX_PAGE)
    store = runtime.event_store()
    page = store.read_page(aggregate_id, from_version, limit, consistent=True)
    # An empty page past the end of a history is a page; an aggregate with no history at all is not there.
    if not page.events and (from_version == 1 or store.head_version(aggregate_id) == 0):
        raise _no_such_aggregate(aggregate_id)
    body: dict[str, Any] = {
        "aggregate_id": aggregate_id,
        "events": [e.to_dict() for e in page.events],
        "next_from_version": page.next_from_version,
    }
    headers = {}
    if page.next_from_version is not None:
        headers["Link"] = (
            f'</aggregates/{aggregate_id}/events?from_version={page.next_from_version}&limit={limit}>; rel="next"'
        )
    return json_response(200, body, headers)


def get_event_status(event: dict[str, Any]) -> dict[str, Any]:
    event_id = check_event_id(path_parameter(event, "event_id"))
    status = runtime.status_store().get(event_id, consistent=True)
    if status is None:
        raise RequestError(
            404, "not_found", f"no event {event_id} was accepted (or its pending entry expired)"
        )
    body = status.to_dict()
    # Decided, but is the state that applies it written yet? (one more consistent read, of a number)
    decided = status.outcome is not None and status.version is not None
    if decided and runtime.state_store().version(status.aggregate_id) < (status.version or 0):
        body["outcome"] = "pending"
        for held_back in ("outcome_reason", "decided_at", "outcome_replay_id"):
            body.pop(held_back, None)
    return json_response(200, body)


ROUTES: dict[tuple[str, str], Callable[[dict[str, Any]], dict[str, Any]]] = {
    ("GET", "/aggregates/{aggregate_id}"): get_aggregate,
    ("GET", "/aggregates/{aggregate_id}/events"): list_events,
    ("GET", "/events/{event_id}"): get_event_status,
}


@instrumentation.handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # API Gateway tells which resource matched; dispatch on it rather than re-parsing the path.
    route = ROUTES.get((event.get("httpMethod", ""), event.get("resource", "")))
    try:
        if route is None:
            raise RequestError(
                404, "no_route", f"no route for {event.get('httpMethod')} {event.get('resource')}"
            )
        return route(event)
    except RequestError as error:
        return error.response()


def _no_such_aggregate(aggregate_id: str) -> RequestError:
    # An aggregate exists once its log holds an event; an accepted one is there once GET /events/{id} says
    # committed.
    return RequestError(
        404,
        "not_found",
        f"no aggregate {aggregate_id}: its log holds no event (an event just accepted is there once "
        "GET /events/{event_id} says committed)",
    )


def _int_parameter(event: dict[str, Any], name: str, default: int, low: int, high: int) -> int:
    text = query_parameter(event, name)
    if text is None or text == "":
        return default
    # ASCII digits only (isdigit alone takes any Unicode digit), and few enough that int() cannot refuse them
    # (Python refuses more than 4300 digits with a ValueError); more than high's digits cannot be in range.
    if not text.isascii() or not text.isdigit() or len(text) > len(str(high)):
        raise RequestError(
            400, "invalid_query", f"{name} must be a whole number between {low} and {high}, got {text[:40]!r}"
        )
    value = int(text)
    if not low <= value <= high:
        raise RequestError(400, "invalid_query", f"{name} must be between {low} and {high}, got {value}")
    return value
