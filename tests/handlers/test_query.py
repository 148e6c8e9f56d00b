"""The GET routes: state, paginated history, event status; bad parameters get a 400 with a reason."""

from __future__ import annotations

from typing import Any

import pytest

from eventlog.settings import Settings
from tests.support import Pipeline, call_api, get_history, get_state, get_status, post_event


def test_unknown_aggregate_and_unknown_event_are_404(settings: Settings) -> None:
    missing = get_state("acc-404")
    assert (missing.status, missing.body["error"]) == (404, "not_found")
    unknown = get_status("01890a5d-ac96-774b-bcce-b302099a8057")
    assert (unknown.status, unknown.body["error"]) == (404, "not_found")
    assert get_history("acc-404").body == {"aggregate_id": "acc-404", "events": [], "next_from_version": None}


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
    assert get_state("acc-9").body["state"] is None
