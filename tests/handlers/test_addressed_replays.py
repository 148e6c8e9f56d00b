"""Replays addressed to one consumer (`consumer` in the stored definition), and the `redrive` mode.

Given a live history and a replay definition the replayer stored, when the write and service handlers get the
replay's records as the playback stream's mappings deliver them, then only the consumer the definition names
processes them (a redrive exactly as live), the other skips them, and the named one acknowledges each aggregate.
"""

from __future__ import annotations

from typing import Any

import pytest

import handlers.service
from devstack.lambda_runtime import invoke
from devstack.shapes import kinesis_event, kinesis_stream_arn
from eventlog.codec import event_to_data, with_replay
from eventlog.envelope import Event, ReplayInfo
from eventlog.replays import ConsumerAcks, ReplayDefinitionError
from eventlog.settings import Settings
from eventlog.state import StateStore
from eventlog.store import EventStore
from replayer.config import Filters, ReplayConfig
from replayer.errors import UsageError
from tests.eventlog.test_replays import store_definition
from tests.support import Pipeline, get_state, get_status, post_event


def history(settings: Settings, dynamodb: Any) -> list[Event]:
    """acct-1 opened and credited 5.00, processed live (pump and write)."""
    for body in (
        {"type": "AccountOpened", "payload": {"owner": "Ada"}},
        {"type": "MoneyDeposited", "payload": {"amount": 500}},
    ):
        assert post_event("acct-1", body).status == 202
    Pipeline(settings).settle()
    store = EventStore(dynamodb, settings.events_table, settings.event_status_table)
    return list(store.read("acct-1", 1, None, consistent=True))


async def define(settings: Settings, replay_id: str, mode: Any, consumer: str | None) -> None:
    config = ReplayConfig(
        settings.events_table,
        settings.playback_stream,
        settings.replay_checkpoints_table,
        filters=Filters.build(aggregates=["acct-1"]),
        mode=mode,
        replay_id=replay_id,
        consumer=consumer,
    )
    await store_definition(settings, replay_id, config.definition(1))


def playback_event(settings: Settings, events: list[Event], replay: ReplayInfo) -> dict[str, Any]:
    records = [
        {
            "SequenceNumber": str(100 + i),
            "PartitionKey": e.aggregate_id,
            "Data": event_to_data(with_replay(e, replay)),
        }
        for i, e in enumerate(events)
    ]
    arn = kinesis_stream_arn(settings.region, settings.playback_stream)
    return kinesis_event(records, shard_id="shardId-000000000000", stream_arn=arn, region=settings.region)


def wipe_state(settings: Settings, dynamodb: Any) -> None:
    dynamodb.delete_item(TableName=settings.state_table, Key={"aggregate_id": {"S": "acct-1"}})


@pytest.mark.asyncio
async def test_a_redrive_for_the_write_function_projects_as_live_and_is_acknowledged(
    settings: Settings, dynamodb: Any
) -> None:
    events = history(settings, dynamodb)
    wipe_state(settings, dynamodb)  # as if the live projection had never happened
    await define(settings, "redrive-w", "redrive", "write")

    answer = invoke(
        "write", playback_event(settings, events, ReplayInfo("redrive-w", "redrive")), prefix="es-test"
    )

    assert answer == {"batchItemFailures": []}
    record = StateStore(dynamodb, settings.state_table).get("acct-1", consistent=True)
    assert record is not None
    assert (record.version, record.state["balance"], record.replays) == (2, 500, ())  # live: no replay mark
    assert get_status(events[1].event_id).body["outcome"] == "applied"
    assert ConsumerAcks(dynamodb, settings.replay_checkpoints_table).acknowledged("redrive-w", "write") == {
        "acct-1": 2
    }


@pytest.mark.asyncio
async def test_a_replay_addressed_to_the_service_is_skipped_by_the_write_function(
    settings: Settings, dynamodb: Any
) -> None:
    events = history(settings, dynamodb)
    wipe_state(settings, dynamodb)
    await define(settings, "redrive-s", "redrive", "service")

    answer = invoke(
        "write", playback_event(settings, events, ReplayInfo("redrive-s", "redrive")), prefix="es-test"
    )

    assert answer == {"batchItemFailures": []}
    state = get_state("acct-1")  # the log holds its events; the state table has not projected any
    assert (state.status, state.body["version"], state.body["state"]) == (200, 0, None)
    assert ConsumerAcks(dynamodb, settings.replay_checkpoints_table).acknowledged("redrive-s", "write") == {}


@pytest.mark.asyncio
async def test_a_replay_addressed_to_the_write_function_is_skipped_by_the_service(
    settings: Settings, dynamodb: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = history(settings, dynamodb)
    seen: list[Event] = []
    monkeypatch.setattr(handlers.service, "process", seen.append)
    await define(settings, "fix-w", "fix", "write")  # any mode: the address is what counts

    answer = invoke("service", playback_event(settings, events, ReplayInfo("fix-w", "fix")), prefix="es-test")

    assert answer == {"batchItemFailures": []}
    assert seen == []
    assert ConsumerAcks(dynamodb, settings.replay_checkpoints_table).acknowledged("fix-w", "service") == {}


@pytest.mark.asyncio
async def test_a_redrive_for_the_service_is_processed_as_the_live_event(
    settings: Settings, dynamodb: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = history(settings, dynamodb)
    seen: list[Event] = []

    def process(event: Event) -> handlers.service.Processed:
        seen.append(event)
        return handlers.service.Processed(event.event_id)

    monkeypatch.setattr(handlers.service, "process", process)
    await define(settings, "redrive-s2", "redrive", "service")

    answer = invoke(
        "service", playback_event(settings, events, ReplayInfo("redrive-s2", "redrive")), prefix="es-test"
    )

    assert answer == {"batchItemFailures": []}
    assert seen == events  # the committed events themselves: no replay mark, so the gateways act live
    assert ConsumerAcks(dynamodb, settings.replay_checkpoints_table).acknowledged(
        "redrive-s2", "service"
    ) == {"acct-1": 2}


def test_a_redrive_without_a_stored_definition_fails_its_record_in_both_consumers(
    settings: Settings, dynamodb: Any
) -> None:
    # Which consumer it is for cannot be known: neither may guess.
    events = history(settings, dynamodb)
    event = playback_event(settings, events, ReplayInfo("redrive-unknown", "redrive"))
    first = event["Records"][0]["kinesis"]["sequenceNumber"]
    assert invoke("write", event, prefix="es-test") == {"batchItemFailures": [{"itemIdentifier": first}]}
    assert invoke("service", event, prefix="es-test") == {"batchItemFailures": [{"itemIdentifier": first}]}


def test_a_redrive_names_one_consumer_the_playback_stream_feeds() -> None:
    with pytest.raises(UsageError, match="--mode redrive is addressed to one consumer"):
        ReplayConfig("t", "s", "c", mode="redrive")
    with pytest.raises(UsageError, match="consumer 'pump': expected one of service, write"):
        ReplayConfig("t", "s", "c", mode="redrive", consumer="pump")
    config = ReplayConfig("t", "s", "c", mode="redrive", consumer="service")
    definition = config.definition(1)
    assert definition["consumer"] == "service"
    assert ReplayConfig("t", "s", "c").with_definition(definition).consumer == "service"
    assert "consumer" not in ReplayConfig("t", "s", "c").definition(1)  # absent means every consumer


def test_a_stored_definition_with_a_bad_consumer_is_refused() -> None:
    from eventlog.replays import ReplayDefinition

    with pytest.raises(ReplayDefinitionError, match="consumer 'audit'"):
        ReplayDefinition.from_dict("r", {"mode": "fix", "consumer": "audit"})
    with pytest.raises(ReplayDefinitionError, match="a redrive names its consumer"):
        ReplayDefinition.from_dict("r", {"mode": "redrive"})
    found = ReplayDefinition.from_dict("r", {"mode": "rebuild"})
    assert found.addressed_to("write")
    assert found.addressed_to("service")
    assert not ReplayDefinition.from_dict("r", {"mode": "fix", "consumer": "write"}).addressed_to("service")


@pytest.mark.asyncio
async def test_acknowledgements_only_go_up(settings: Settings, dynamodb: Any) -> None:
    acks = ConsumerAcks(dynamodb, settings.replay_checkpoints_table)
    acks.acknowledge("r-ack", "write", {"a": 3, "b": 1})
    acks.acknowledge("r-ack", "write", {"a": 2, "b": 4})  # a redelivered older batch changes nothing for a
    acks.acknowledge("r-ack", "service", {"a": 9})
    assert acks.acknowledged("r-ack", "write") == {"a": 3, "b": 4}
    assert acks.acknowledged("r-ack", "service") == {"a": 9}
