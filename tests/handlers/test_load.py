"""The load handler: what a client sees when an event is accepted, and property 2 at the door (retries with an
Idempotency-Key or an event id never make a second event; a reused key or id for a different event is refused)."""

from __future__ import annotations

from typing import Any

import pytest

import handlers.runtime
from devstack.lambda_runtime import invoke
from devstack.shapes import rest_api_event
from eventlog.aws import kinesis_client
from eventlog.settings import Settings
from tests.support import FaultyClient, KinesisReader, Pipeline, all_events, get_status, post_event

OPEN = {"type": "AccountOpened", "payload": {"owner": "Ada"}}


def ingest_records(settings: Settings) -> list[dict[str, Any]]:
    return [r for records in KinesisReader(settings, settings.ingest_stream).read().values() for r in records]


def test_an_accepted_event_answers_202_with_its_id_and_where_to_follow_it(settings: Settings) -> None:
    response = post_event("acc-1", OPEN)
    assert response.status == 202
    body = response.body
    assert body["status"] == "pending"
    assert body["aggregate_id"] == "acc-1"
    assert body["sequence_number"]
    assert body["shard_id"].startswith("shardId-")
    assert response.headers["Location"] == f"/events/{body['event_id']}" == body["links"]["status"]
    assert get_status(body["event_id"]).body["status"] == "pending"
    [record] = ingest_records(settings)
    assert record["PartitionKey"] == "acc-1"


def test_the_same_idempotency_key_twice_gives_the_same_answer_and_one_event(settings: Settings) -> None:
    key = {"Idempotency-Key": "order-42-open"}
    first = post_event("acc-1", OPEN, headers=key)
    second = post_event("acc-1", OPEN, headers=key)
    assert first.status == second.status == 202
    assert first.body == second.body
    assert len(ingest_records(settings)) == 1
    Pipeline(settings).settle()
    assert [e["event_id"] for e in all_events(settings)] == [first.body["event_id"]]


def test_an_idempotency_key_reused_for_a_different_request_is_refused(settings: Settings) -> None:
    key = {"Idempotency-Key": "k-1"}
    assert post_event("acc-1", OPEN, headers=key).status == 202
    other = post_event("acc-1", {"type": "MoneyDeposited", "payload": {"amount": 5}}, headers=key)
    assert other.status == 422
    assert other.body["error"] == "idempotency_key_reused"
    assert len(ingest_records(settings)) == 1


def test_an_idempotency_key_reused_with_another_client_event_id_is_refused(settings: Settings) -> None:
    key = {"Idempotency-Key": "k-2"}
    first = {**OPEN, "event_id": "01890a5d-ac96-774b-bcce-b302099a8057"}
    second = {**OPEN, "event_id": "01890a5d-ac96-774b-bcce-b302099a8058"}
    assert post_event("acc-1", first, headers=key).status == 202
    assert post_event("acc-1", first, headers=key).status == 202
    refused = post_event("acc-1", second, headers=key)
    assert (refused.status, refused.body["error"]) == (422, "idempotency_key_reused")
    assert len(ingest_records(settings)) == 1


def test_idempotency_keys_are_scoped_to_the_aggregate(settings: Settings) -> None:
    key = {"Idempotency-Key": "same"}
    a = post_event("acc-1", OPEN, headers=key)
    b = post_event("acc-2", OPEN, headers=key)
    assert a.body["event_id"] != b.body["event_id"]
    assert len(ingest_records(settings)) == 2


def test_a_retry_of_a_committed_event_id_reports_it_and_puts_nothing_more(settings: Settings) -> None:
    event_id = "01890a5d-ac96-774b-bcce-b302099a8057"
    post_event("acc-1", {**OPEN, "event_id": event_id})
    Pipeline(settings).settle()
    again = post_event("acc-1", {**OPEN, "event_id": event_id.upper()})  # ids are case-insensitive
    assert again.status == 202
    assert again.body["status"] == "committed"
    assert again.body["version"] == 1
    assert len(ingest_records(settings)) == 1


@pytest.mark.parametrize(
    "other",
    [
        ("acc-1", {"type": "AccountOpened", "payload": {"owner": "Eve"}}),
        ("acc-2", {"type": "AccountOpened", "payload": {"owner": "Ada"}}),
    ],
    ids=["different-payload", "different-aggregate"],
)
def test_an_event_id_reused_for_a_different_event_is_a_conflict(
    settings: Settings, other: tuple[str, dict[str, Any]]
) -> None:
    event_id = "01890a5d-ac96-774b-bcce-b302099a8057"
    assert post_event("acc-1", {**OPEN, "event_id": event_id}).status == 202
    aggregate, body = other
    conflict = post_event(aggregate, {**body, "event_id": event_id})
    assert conflict.status == 409
    assert conflict.body["error"] == "event_id_conflict"
    assert len(ingest_records(settings)) == 1


def test_when_the_ingest_stream_refuses_the_client_gets_503_and_nothing_is_left_behind(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, dynamodb: Any
) -> None:
    faulty = FaultyClient(kinesis_client(settings))
    faulty.fail("put_record", on={1})
    handlers.runtime.reset()
    monkeypatch.setattr(handlers.runtime, "kinesis", lambda: faulty)
    key = {"Idempotency-Key": "retry-me"}

    refused = post_event("acc-1", OPEN, headers=key)
    assert refused.status == 503
    assert refused.body["error"] == "ingest_unavailable"
    assert dynamodb.scan(TableName=settings.event_status_table)["Count"] == 0
    assert ingest_records(settings) == []

    # a retry with the same key is not answered from a stored failure: it is tried again, and goes through
    accepted = post_event("acc-1", OPEN, headers=key)
    assert accepted.status == 202
    assert len(ingest_records(settings)) == 1


def test_the_authenticated_caller_is_the_actor(settings: Settings) -> None:
    event = rest_api_event(
        "POST",
        "/aggregates/{aggregate_id}/events",
        "/aggregates/acc-1/events",
        headers=[("Content-Type", "application/json")],
        body=b'{"type": "AccountOpened", "payload": {"owner": "Ada"}, "metadata": {"actor": "mallory"}}',
    )
    event["requestContext"]["identity"]["userArn"] = "arn:aws:iam::123456789012:user/ada"
    assert invoke("load", event, prefix="es-test")["statusCode"] == 202
    [stored] = ingest_records(settings)
    assert b'"actor":"arn:aws:iam::123456789012:user/ada"' in stored["Data"]
