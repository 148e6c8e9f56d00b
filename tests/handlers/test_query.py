"""The GET routes: state, paginated history, event status; bad parameters get a 400 with a reason."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from eventlog.settings import Settings
from tests.support import Pipeline, call_api, get_history, get_state, get_status, post_event

OPENAPI = yaml.safe_load((Path(__file__).resolve().parents[2] / "api" / "openapi.yaml").read_text())


def test_unknown_aggregate_and_unknown_event_are_404(settings: Settings) -> None:
    unknown = get_status("01890a5d-ac96-774b-bcce-b302099a8057")
    assert (unknown.status, unknown.body["error"]) == (404, "not_found")
    # an aggregate exists once its log holds an event: both routes say the same for one that has none
    for missing in (
        get_state("acc-404"),
        get_history("acc-404"),
        get_history("acc-404", [("from_version", "3")]),
    ):
        assert (missing.status, missing.body["error"]) == (404, "not_found")
        assert "no aggregate acc-404: its log holds no event" in missing.body["message"]


def test_an_accepted_event_not_committed_yet_is_no_aggregate_yet(settings: Settings) -> None:
    assert post_event("acc-new", {"type": "AccountOpened", "payload": {"owner": "Ada"}}).status == 202
    # on the ingest stream, not in the log: the reason says how to know when it is
    for missing in (get_state("acc-new"), get_history("acc-new")):
        assert missing.status == 404
        assert "GET /events/{event_id} says committed" in missing.body["message"]


def test_committed_but_not_projected_yet_exists_with_a_null_state_at_version_0(settings: Settings) -> None:
    post_event("acc-2", {"type": "AccountOpened", "payload": {"owner": "Ada"}})
    Pipeline(settings).pump()  # committed to the log; the write function has not run
    state = get_state("acc-2")
    assert (state.status, state.body["version"], state.body["state"]) == (200, 0, None)
    # the answer is the documented State: every required field, null only where the document allows it
    schema = OPENAPI["components"]["schemas"]["State"]
    assert set(state.body) == set(schema["required"])
    assert {k for k, v in state.body.items() if v is None} == {
        k for k, p in schema["properties"].items() if p.get("nullable")
    }
    history = get_history("acc-2")
    assert (history.status, [e["version"] for e in history.body["events"]]) == (200, [1])


def test_the_document_gives_both_aggregate_routes_the_same_404() -> None:
    paths = OPENAPI["paths"]
    for path in ("/aggregates/{aggregate_id}", "/aggregates/{aggregate_id}/events"):
        assert paths[path]["get"]["responses"]["404"] == {"$ref": "#/components/responses/NoSuchAggregate"}


def test_past_the_end_of_an_existing_history_is_an_empty_page(settings: Settings) -> None:
    post_event("acc-3", {"type": "AccountOpened", "payload": {"owner": "Ada"}})
    Pipeline(settings).settle()
    page = get_history("acc-3", [("from_version", "5")])
    assert (page.status, page.body["events"], page.body["next_from_version"]) == (200, [], None)


def test_history_pages_through_every_event_in_version_order(settings: Settings) -> None:
    post_event("acc-1", {"type": "AccountOpened", "payload": {"owner": "Ada"}})
    for amount in range(1, 8):
        post_event("acc-1", {"type": "MoneyDeposited", "payload": {"amount": amount}})
    Pipeline(settings).settle()

    seen: list[int] = []
    query = [("limit", "3")]
    pages = 0
    while True:
        page = get_history("acc-1", query)
        assert page.status == 200
        seen.extend(e["version"] for e in page.body["events"])
        pages += 1
        if page.body["next_from_version"] is None:
            assert "Link" not in page.headers
            break
        assert page.headers["Link"].endswith('rel="next"')
        query = [("limit", "3"), ("from_version", str(page.body["next_from_version"]))]
    assert seen == list(range(1, 9))
    assert pages == 3

    middle = get_history("acc-1", [("from_version", "4"), ("limit", "2")]).body
    assert [e["version"] for e in middle["events"]] == [4, 5]
    first = get_history("acc-1", [("limit", "1")]).body["events"][0]
    assert first["type"] == "AccountOpened"
    assert first["payload"] == {"owner": "Ada"}
    assert set(first) == {
        "event_id",
        "aggregate_id",
        "type",
        "version",
        "schema_version",
        "occurred_at",
        "recorded_at",
        "payload",
        "metadata",
    }


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ([("limit", "0")], "limit must be between 1 and 1000"),
        ([("limit", "1001")], "limit must be between 1 and 1000"),
        ([("limit", "ten")], "limit must be a whole number"),
        ([("limit", "-1")], "limit must be a whole number"),
        ([("from_version", "0")], "from_version must be between 1"),
        ([("from_version", "1.5")], "from_version must be a whole number"),
        ([("from_version", "٣")], "from_version must be a whole number"),  # a non-ASCII digit
        ([("limit", "5"), ("limit", "6")], "given 2 times"),
    ],
)
def test_bad_history_parameters_are_400_with_a_reason(
    settings: Settings, query: list[tuple[str, str]], words: str
) -> None:
    response = get_history("acc-1", query)
    assert response.status == 400
    assert words in response.body["message"]


def test_bad_ids_in_the_path_are_400(settings: Settings) -> None:
    assert get_status("not-a-uuid").status == 400
    bad = call_api("GET", "/aggregates/{aggregate_id}", "/aggregates/%20x")
    assert (bad.status, bad.body["error"]) == (400, "invalid_aggregate_id")


def test_an_outcome_shows_only_once_the_state_that_applies_it_is_written(
    settings: Settings, dynamodb: Any
) -> None:
    # given an event the domain refused, whose state has not been written yet: the write function records the
    # outcome just before the state (as when a GET comes between the two writes)
    post_event("acc-1", {"type": "AccountOpened", "payload": {"owner": "Ada"}})
    refused = post_event("acc-1", {"type": "MoneyWithdrawn", "payload": {"amount": 5}}).body["event_id"]
    Pipeline(settings).settle()
    key = {"aggregate_id": {"S": "acc-1"}}
    dynamodb.update_item(
        TableName=settings.state_table, Key=key, UpdateExpression="SET version = :v",
        ExpressionAttributeValues={":v": {"N": "1"}},
    )  # fmt: skip
    # then GET /events/{id} holds the outcome back
    held = get_status(refused).body
    assert (held["status"], held["version"], held["outcome"]) == ("committed", 2, "pending")
    assert "outcome_reason" not in held
    # and shows it, with its reason, once the state reflects the event
    dynamodb.update_item(
        TableName=settings.state_table, Key=key, UpdateExpression="SET version = :v",
        ExpressionAttributeValues={":v": {"N": "2"}},
    )  # fmt: skip
    shown = get_status(refused).body
    assert (shown["outcome"], shown["outcome_reason"]) == (
        "refused",
        "insufficient funds: balance 0, withdrawal 5",
    )
    assert get_state("acc-1").body["version"] == 2


def test_an_event_refused_for_an_account_never_opened_still_shows_its_outcome(settings: Settings) -> None:
    # (its state item holds no state, only the version: the check above must not hold the outcome back for ever)
    refused = post_event("acc-9", {"type": "MoneyDeposited", "payload": {"amount": 5}}).body["event_id"]
    Pipeline(settings).settle()
    body = get_status(refused).body
    assert (body["outcome"], body["outcome_reason"]) == ("refused", "account has not been opened")
    # the deposit is in the log, so the aggregate exists; a null state: events, none applied
    state = get_state("acc-9")
    assert (state.status, state.body["version"], state.body["state"]) == (200, 1, None)
    history = get_history("acc-9")
    assert (history.status, [e["type"] for e in history.body["events"]]) == (200, ["MoneyDeposited"])
