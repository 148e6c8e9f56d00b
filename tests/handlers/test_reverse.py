"""POST /aggregates/{aggregate_id}/events/{version}/reverse through the load function, then the pump and the
write function: a reversal is an appended event; what the log checks refuse (4xx) writes nothing; what the rules
refuse is recorded and refused with its reason; GET /events/{id} shows what happened."""

from __future__ import annotations

from typing import Any

import pytest

import handlers.runtime
from eventlog.aws import dynamodb_client
from eventlog.settings import Settings
from tests.support import (
    ApiResponse,
    FaultyClient,
    KinesisReader,
    Pipeline,
    call_api,
    get_history,
    get_state,
    get_status,
    post_events,
)

RESOURCE = "/aggregates/{aggregate_id}/events/{version}/reverse"


def reverse(
    aggregate_id: str,
    version: int | str,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> ApiResponse:
    return call_api(
        "POST", RESOURCE, f"/aggregates/{aggregate_id}/events/{version}/reverse", body=body, headers=headers
    )


def committed(settings: Settings, aggregate_id: str, *bodies: dict[str, Any]) -> list[str]:
    ids = post_events(aggregate_id, *bodies)
    Pipeline(settings).settle()
    return ids


def accepted(answer: ApiResponse) -> str:
    assert answer.status == 202, answer.body
    return str(answer.body["event_id"])


OPEN = {"type": "AccountOpened", "payload": {"owner": "Ada"}}


def money(kind: str, amount: int) -> dict[str, Any]:
    return {"type": f"Money{kind}", "payload": {"amount": amount}}


def ingest_count(settings: Settings) -> int:
    return sum(len(r) for r in KinesisReader(settings, settings.ingest_stream).read().values())


def test_a_deposit_is_reversed_by_an_appended_event_and_both_show_it(settings: Settings) -> None:
    ids = committed(settings, "acc-1", OPEN, money("Deposited", 500), money("Deposited", 70))

    reversal = accepted(reverse("acc-1", 3, {"reason": "deposited twice"}))
    Pipeline(settings).settle()

    assert get_state("acc-1").body["state"]["balance"] == 500
    assert get_state("acc-1").body["version"] == 4
    target = get_status(ids[2]).body
    assert (target["outcome"], target["reversed_by"]) == ("applied", {"version": 4, "event_id": reversal})
    mine = get_status(reversal).body
    assert (mine["type"], mine["status"], mine["version"], mine["outcome"]) == (
        "EventReversed",
        "committed",
        4,
        "applied",
    )
    # Append-only: the deposit is still in the history; the reversal names it.
    events = get_history("acc-1").body["events"]
    assert [e["type"] for e in events] == [
        "AccountOpened",
        "MoneyDeposited",
        "MoneyDeposited",
        "EventReversed",
    ]
    assert events[2]["payload"] == {"amount": 70}
    assert events[3]["payload"] == {
        "reversed_version": 3,
        "reversed_event_id": ids[2],
        "reversed_type": "MoneyDeposited",
        "reason": "deposited twice",
    }


def test_a_final_value_is_reversed_by_replaying_the_history_without_it(settings: Settings) -> None:
    committed(
        settings,
        "acc-1",
        OPEN,
        {"type": "OwnerChanged", "payload": {"owner": "Grace"}},
        money("Deposited", 40),
    )
    accepted(reverse("acc-1", 2))  # no body at all: a reason is optional
    Pipeline(settings).settle()
    state = get_state("acc-1").body["state"]
    assert (state["owner"], state["balance"]) == ("Ada", 40)


def test_reversing_twice_records_the_second_reversal_and_refuses_it_with_the_reason(
    settings: Settings,
) -> None:
    committed(settings, "acc-1", OPEN, money("Deposited", 500))
    first = accepted(reverse("acc-1", 2))
    second = accepted(reverse("acc-1", 2))
    Pipeline(settings).settle()
    assert get_status(first).body["outcome"] == "applied"
    refused = get_status(second).body
    assert (refused["outcome"], refused["outcome_reason"]) == (
        "refused",
        "version 2 is already reversed (by version 3)",
    )
    assert get_state("acc-1").body["state"]["balance"] == 0


def test_reversing_an_event_the_rules_refused_is_recorded_and_refused(settings: Settings) -> None:
    ids = committed(settings, "acc-1", OPEN, money("Withdrawn", 900))
    assert get_status(ids[1]).body["outcome"] == "refused"
    reversal = accepted(reverse("acc-1", 2))
    Pipeline(settings).settle()
    refused = get_status(reversal).body
    assert (refused["outcome"], refused["outcome_reason"]) == (
        "refused",
        "version 2 was refused, so there is nothing to reverse",
    )
    assert "reversed_by" not in get_status(ids[1]).body


@pytest.mark.parametrize(
    ("version", "message"),
    [
        (1, "version 1 of acc-1 (AccountOpened): an account opening cannot be reversed"),
        (
            3,
            "version 3 of acc-1 (EventReversed): a reversal cannot be reversed; to apply the reversed event",
        ),
    ],
)
def test_an_opening_or_a_reversal_cannot_be_reversed_and_nothing_is_written(
    settings: Settings, version: int, message: str
) -> None:
    committed(settings, "acc-1", OPEN, money("Deposited", 5))
    accepted(reverse("acc-1", 2))
    Pipeline(settings).settle()
    before = ingest_count(settings)
    answer = reverse("acc-1", version)
    assert (answer.status, answer.body["error"]) == (422, "not_reversible")
    assert answer.body["message"].startswith(message)
    assert ingest_count(settings) == before


@pytest.mark.parametrize(
    ("aggregate", "version", "message"),
    [
        ("acc-1", 9, "aggregate acc-1 has no version 9 (its latest is 2)"),
        ("nobody", 1, "aggregate nobody has no events"),
    ],
)
def test_a_version_that_is_not_in_the_log_is_404_and_nothing_is_written(
    settings: Settings, aggregate: str, version: int, message: str
) -> None:
    committed(settings, "acc-1", OPEN, money("Deposited", 5))
    before = ingest_count(settings)
    answer = reverse(aggregate, version, {"event_id": "01890a5d-ac96-774b-bcce-b302099a8057"})
    assert (answer.status, answer.body) == (404, {"error": "version_not_found", "message": message})
    assert ingest_count(settings) == before
    assert get_status("01890a5d-ac96-774b-bcce-b302099a8057").status == 404  # no pending status either


@pytest.mark.parametrize("version", ["0", "-1", "abc", "1.5", "99999999999999999"])
def test_a_version_that_is_not_a_whole_number_from_1_is_400(settings: Settings, version: str) -> None:
    answer = reverse("acc-1", version)
    assert (answer.status, answer.body["error"]) == (400, "invalid_version")


@pytest.mark.parametrize(
    ("body", "headers", "status", "error"),
    [
        ({"reason": "x", "amount": 5}, None, 422, "invalid_reversal"),
        ({"reason": "x" * 501}, None, 422, "invalid_reversal"),
        ({"reason": 7}, None, 422, "invalid_reversal"),
        ({"event_id": "not-a-uuid"}, None, 422, "invalid_reversal"),
        ({"expected_version": -1}, None, 422, "invalid_reversal"),
        ([1, 2], None, 422, "invalid_reversal"),
        ('{"reason": ', None, 400, "invalid_json"),
        ("reason=x", {"Content-Type": "text/plain"}, 415, "unsupported_media_type"),
        ({}, {"Idempotency-Key": "has space"}, 400, "invalid_idempotency_key"),
    ],
)
def test_a_bad_request_is_refused_with_its_reason_before_the_log_is_read(
    settings: Settings, body: Any, headers: dict[str, str] | None, status: int, error: str
) -> None:
    if isinstance(body, list):
        import orjson

        body = orjson.dumps(body).decode()
    answer = reverse("acc-1", 1, body, headers)  # acc-1 has no events: a 404 would mean the log was read
    assert (answer.status, answer.body["error"]) == (status, error)


def test_a_retry_with_the_same_idempotency_key_gets_the_same_answer_and_appends_once(
    settings: Settings,
) -> None:
    committed(settings, "acc-1", OPEN, money("Deposited", 500))
    key = {"Idempotency-Key": "undo-2"}
    first = reverse("acc-1", 2, {"reason": "typo"}, key)
    again = reverse("acc-1", 2, {"reason": "typo"}, key)
    assert accepted(first) == accepted(again)
    other = reverse("acc-1", 2, {"reason": "another reason"}, key)
    assert (other.status, other.body["error"]) == (422, "idempotency_key_reused")
    Pipeline(settings).settle()
    assert [e["type"] for e in get_history("acc-1").body["events"]].count("EventReversed") == 1


def test_a_retry_with_the_same_client_event_id_is_one_event_and_another_reversal_under_it_is_409(
    settings: Settings,
) -> None:
    committed(settings, "acc-1", OPEN, money("Deposited", 500), money("Deposited", 1))
    body = {"event_id": "01890a5d-ac96-774b-bcce-b302099a8057"}
    assert accepted(reverse("acc-1", 2, body)) == accepted(reverse("acc-1", 2, body))
    conflict = reverse("acc-1", 3, body)
    assert (conflict.status, conflict.body["error"]) == (409, "event_id_conflict")
    Pipeline(settings).settle()
    assert len(get_history("acc-1").body["events"]) == 4


def test_a_log_that_cannot_be_read_is_503_and_nothing_is_written(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    committed(settings, "acc-1", OPEN, money("Deposited", 500))
    faulty = FaultyClient(dynamodb_client(settings))
    faulty.fail("get_item", on={1})
    handlers.runtime.reset()
    monkeypatch.setattr(handlers.runtime, "dynamodb", lambda: faulty)
    before = ingest_count(settings)
    answer = reverse("acc-1", 2)
    assert (answer.status, answer.body["error"]) == (503, "unavailable")
    assert ingest_count(settings) == before
