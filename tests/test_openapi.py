"""The OpenAPI document and the topology describe the same routes, and the limits it states are the code's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from domain.ledger import EVENT_TYPES
from domain.schema import MAX_AMOUNT
from eventlog.topology import ROUTES
from handlers.append_request import ALLOWED_FIELDS, MAX_BODY_BYTES, MAX_EXPECTED_VERSION
from handlers.query import DEFAULT_PAGE, MAX_PAGE
from handlers.reverse_request import MAX_REASON_CHARS, MAX_VERSION

DOCUMENT = yaml.safe_load((Path(__file__).parent.parent / "api" / "openapi.yaml").read_text())


def test_every_route_is_documented_and_every_documented_operation_is_served() -> None:
    documented = {
        (method.upper(), path, operation["operationId"])
        for path, item in DOCUMENT["paths"].items()
        for method, operation in item.items()
        if method in ("get", "post", "put", "delete")
    }
    served = {(r.method, r.resource, r.operation_id) for r in ROUTES}
    assert documented == served


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = DOCUMENT["components"]["schemas"][node["$ref"].rsplit("/", 1)[1]]
    if "allOf" in node:
        return _resolve(node["allOf"][0])
    return node


def test_documented_event_types_and_body_limit_match_the_code() -> None:
    schema = DOCUMENT["components"]["schemas"]["AppendRequest"]
    branches = [_resolve(branch) for branch in schema["oneOf"]]
    documented = {b["properties"]["type"]["enum"][0]: b for b in branches}
    assert sorted(documented) == sorted(EVENT_TYPES)
    assert sorted(schema["discriminator"]["mapping"]) == sorted(EVENT_TYPES)
    assert str(MAX_BODY_BYTES) in DOCUMENT["info"]["description"]
    # each type's payload: exactly its declared fields, with the limits the domain checks
    for name, spec in EVENT_TYPES.items():
        payload = documented[name]["properties"]["payload"]
        assert payload["additionalProperties"] is False
        assert (
            sorted(payload["required"])
            == sorted(payload["properties"])
            == sorted(f.name for f in spec.fields)
        )
        for field in spec.fields:
            described = _resolve(payload["properties"][field.name])
            if field.kind == "amount":
                assert (described["type"], described["minimum"], described["maximum"]) == (
                    "integer",
                    1,
                    MAX_AMOUNT,
                )
            else:
                assert (described["type"], described["maxLength"]) == ("string", field.max_length)
        # and the envelope fields the load function takes, no others
        assert sorted(documented[name]["properties"]) == sorted(ALLOWED_FIELDS)


def test_documented_numeric_limits_are_the_codes() -> None:
    expected = _resolve(DOCUMENT["components"]["schemas"]["ExpectedVersion"])
    assert expected["maximum"] == MAX_EXPECTED_VERSION
    reverse = DOCUMENT["paths"]["/aggregates/{aggregate_id}/events/{version}/reverse"]["parameters"][1]
    assert reverse["schema"]["maximum"] == MAX_VERSION
    history = DOCUMENT["paths"]["/aggregates/{aggregate_id}/events"]["get"]["parameters"]
    limits = {p["name"]: p["schema"] for p in history}
    assert limits["limit"]["maximum"] == MAX_PAGE
    assert limits["limit"]["default"] == DEFAULT_PAGE
    reason = DOCUMENT["components"]["schemas"]["ReverseRequest"]["properties"]["reason"]
    assert reason["maxLength"] == MAX_REASON_CHARS


def test_every_operation_documents_the_gateways_own_answers() -> None:
    for path, item in DOCUMENT["paths"].items():
        for method, operation in item.items():
            if method in ("get", "post"):
                assert {"400", "404", "408", "413", "502"} <= set(operation["responses"]), (method, path)
