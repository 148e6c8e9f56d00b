"""The write function per replay mode, end to end: the real replayer puts the log on the playback stream, the
write handler consumes it as Lambda would. Live processing ran with the 2026.1 rules (the whole-balance bug);
the fixed rules are "deployed" by changing ES_LEDGER_RULES and starting a new container."""

from __future__ import annotations

import os
from typing import Any

import pytest

import handlers.runtime
from devstack.lambda_runtime import invoke
from eventlog.codec import event_to_data, event_to_item, with_replay
from eventlog.envelope import Event, ReplayInfo
from eventlog.resources import STATE_TABLE
from eventlog.settings import Settings
from eventlog.state import StateStore
from eventlog.status import committed_item
from eventlog.store import EventStore
from replayer.cli import main as replayer_main
from tests.support import (
    FaultyClient,
    KinesisReader,
    Pipeline,
    call_api,
    get_history,
    get_state,
    get_status,
    kinesis_id,
    post_event,
    retry_from_failure,
)

SHADOW = "es-test-state-shadow-r1"


def deploy(monkeypatch: pytest.MonkeyPatch, rules: str | None) -> None:
    """Change the write function's rules setting; the next invocation is a new container."""
    if rules is None:
        monkeypatch.delenv("ES_LEDGER_RULES", raising=False)
    else:
        monkeypatch.setenv("ES_LEDGER_RULES", rules)
    handlers.runtime.reset()


def live_history(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """Two accounts processed live by the 2026.1 rules: each withdraws its whole balance (refused)."""
    deploy(monkeypatch, "2026.1")
    ids: dict[str, list[str]] = {}
    for account in ("acc-1", "acc-2"):
        ids[account] = [
            post_event(account, body).body["event_id"]
            for body in (
                {"type": "AccountOpened", "payload": {"owner": "Ada"}},
                {"type": "MoneyDeposited", "payload": {"amount": 500}},
                {"type": "MoneyWithdrawn", "payload": {"amount": 500}},
            )
        ]
    Pipeline(settings).settle()
    for account in ids:
        assert get_status(ids[account][2]).body["outcome"] == "refused"
        assert get_state(account).body["state"]["balance"] == 500
    return ids


def replay(*argv: str) -> None:
    assert replayer_main([*argv, "--progress", "none"], dict(os.environ)) == 0


def deliver_playback(settings: Settings, reader: KinesisReader | None = None) -> KinesisReader:
    """Everything new on the playback stream to the write function, shard by shard, as its mapping would."""
    playback = reader or KinesisReader(settings, settings.playback_stream)
    for shard, records in playback.read().items():
        if records:
            retry_from_failure("write", playback.event(shard, records), kinesis_id)
    return playback


def test_a_rebuild_goes_to_the_state_table_its_definition_names_and_records_no_outcome(
    settings: Settings, dynamodb: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = live_history(settings, monkeypatch)
    dynamodb.create_table(**STATE_TABLE.create_table_kwargs(SHADOW))
    deploy(monkeypatch, None)

    replay("--mode", "rebuild", "--replay-id", "rebuild-1", "--state-table", SHADOW)
    deliver_playback(settings)

    shadow = {r.aggregate_id: r for r in StateStore(dynamodb, SHADOW).scan()}
    assert {a: (r.version, r.state["balance"]) for a, r in shadow.items()} == {
        "acc-1": (3, 0),
        "acc-2": (3, 0),
    }  # type: ignore[index]
    for account in ids:
        assert get_state(account).body["state"]["balance"] == 500  # live state untouched
        assert get_status(ids[account][2]).body["outcome"] == "refused"  # live outcomes untouched


def test_events_of_a_rebuild_whose_shadow_was_dropped_are_skipped_without_stalling_the_stream(
    settings: Settings, dynamodb: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    live_history(settings, monkeypatch)
    dynamodb.create_table(**STATE_TABLE.create_table_kwargs(SHADOW))
    deploy(monkeypatch, None)
    replay("--mode", "rebuild", "--replay-id", "rebuild-dropped", "--state-table", SHADOW)
    # the operator drops the rebuild while its events are still on the playback stream
    dynamodb.delete_table(TableName=SHADOW)
    # and a live change lands on the same stream after them (a fix replay of acc-1)
    replay("--mode", "fix", "--replay-id", "fix-after-drop", "--aggregate", "acc-1")

    playback = KinesisReader(settings, settings.playback_stream)
    for shard, records in playback.read().items():
        if records:
            responses = retry_from_failure(
                "write", playback.event(shard, records), kinesis_id, max_attempts=1
            )
            assert responses == [{"batchItemFailures": []}]  # nothing retried: the dropped rebuild is skipped
    assert get_state("acc-1").body["state"]["balance"] == 0  # the fix after it was applied (fixed rules)
    assert get_state("acc-2").body["state"]["balance"] == 500  # not part of the fix, live state untouched


def test_a_rebuild_without_a_state_table_projects_into_the_live_one(
    settings: Settings, dynamodb: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    live_history(settings, monkeypatch)
    for account in ("acc-1", "acc-2"):  # the data store is wiped; the log is the system of record
        dynamodb.delete_item(TableName=settings.state_table, Key={"aggregate_id": {"S": account}})
    replay("--mode", "rebuild", "--replay-id", "rebuild-2")
    deliver_playback(settings)
    assert (
        get_state("acc-1").body["state"]["balance"] == 500
    )  # still the 2026.1 rules: rebuilt as they decide


def test_a_fix_replay_recomputes_the_chosen_aggregates_with_the_fixed_rules_and_records_the_new_outcome(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = live_history(settings, monkeypatch)
    deploy(monkeypatch, None)  # the fix is deployed

    replay("--mode", "fix", "--replay-id", "fix-1", "--aggregate", "acc-1")
    reader = deliver_playback(settings)

    fixed = get_status(ids["acc-1"][2]).body
    assert (fixed["outcome"], fixed["outcome_replay_id"]) == ("applied", "fix-1")
    assert "outcome_reason" not in fixed
    assert (get_state("acc-1").body["version"], get_state("acc-1").body["state"]["balance"]) == (3, 0)
    # acc-2 was not in the replay: it keeps the outcome the old rules gave it until it is replayed too
    assert get_status(ids["acc-2"][2]).body["outcome"] == "refused"

    # Delivered again (a retried batch, a resumed replay): nothing more happens.
    counting = FaultyClient(handlers.runtime.dynamodb())
    monkeypatch.setattr(handlers.runtime, "dynamodb", lambda: counting)
    for shard, records in KinesisReader(settings, settings.playback_stream).read().items():
        if records:
            assert invoke("write", reader.event(shard, records), prefix="es-test") == {
                "batchItemFailures": []
            }
    assert counting.calls.get("query", 0) == 0
    assert counting.calls.get("put_item", 0) == counting.calls.get("update_item", 0) == 0


def test_a_feature_replay_recomputes_like_a_fix(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = live_history(settings, monkeypatch)
    deploy(monkeypatch, None)
    replay("--mode", "feature", "--replay-id", "feature-1")
    deliver_playback(settings)
    for account in ids:
        assert get_status(ids[account][2]).body["outcome_replay_id"] == "feature-1"
        assert get_state(account).body["state"]["balance"] == 0


def test_a_replay_whose_definition_cannot_be_read_fails_at_its_first_record_and_the_rest_is_retried(
    settings: Settings, dynamodb: Any, kinesis: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = live_history(settings, monkeypatch)
    deploy(monkeypatch, None)
    dynamodb.put_item(
        TableName=settings.replay_checkpoints_table,
        Item={"replay_id": {"S": "bad"}, "part": {"S": "replay"}, "definition": {"S": "{not json"}},
    )
    store = EventStore(dynamodb, settings.events_table, settings.event_status_table)
    good, bad = ReplayInfo("good", "fix"), ReplayInfo("bad", "rebuild")
    for event in [with_replay(e, good) for e in store.read("acc-1")] + [
        with_replay(e, bad) for e in store.read("acc-1")
    ]:
        kinesis.put_record(
            StreamName=settings.playback_stream, Data=event_to_data(event), PartitionKey="acc-1"
        )
    playback = KinesisReader(settings, settings.playback_stream)
    [(shard, records)] = [(s, r) for s, r in playback.read().items() if r]

    event = playback.event(shard, records)
    response = invoke("write", event, prefix="es-test")

    assert response == {"batchItemFailures": [{"itemIdentifier": kinesis_id(event["Records"][3])}]}
    assert get_status(ids["acc-1"][2]).body["outcome_replay_id"] == "good"  # the records before it were done


def test_a_rules_release_that_does_not_exist_fails_the_invocation_with_a_clear_error(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    post_event("acc-1", {"type": "AccountOpened", "payload": {"owner": "Ada"}})
    Pipeline(settings).pump()
    deploy(monkeypatch, "1999.1")
    with pytest.raises(ValueError, match=r"unknown ledger rules '1999.1'"):
        Pipeline(settings).write()


def test_a_playback_record_of_a_reversal_decides_it_with_the_history(
    settings: Settings, kinesis: Any, dynamodb: Any
) -> None:
    for body in (
        {"type": "AccountOpened", "payload": {"owner": "Ada"}},
        {"type": "OwnerChanged", "payload": {"owner": "Grace"}},
    ):
        post_event("acc-1", body)
    Pipeline(settings).settle()
    reversed_ = call_api(
        "POST",
        "/aggregates/{aggregate_id}/events/{version}/reverse",
        "/aggregates/acc-1/events/2/reverse",
        body={"reason": "wrong person"},
    )
    assert reversed_.status == 202, reversed_.body
    Pipeline(settings).settle()
    assert get_state("acc-1").body["state"]["owner"] == "Ada"
    dynamodb.create_table(**STATE_TABLE.create_table_kwargs(SHADOW))
    replay("--mode", "rebuild", "--replay-id", "rebuild-3", "--state-table", SHADOW)
    deliver_playback(settings)
    rebuilt = StateStore(dynamodb, SHADOW).get("acc-1")
    assert rebuilt is not None
    assert (rebuilt.version, rebuilt.state) == (3, get_state("acc-1").body["state"])
    assert rebuilt.state["owner"] == "Ada"  # type: ignore[index]


def test_a_genuine_v1_event_in_the_log_is_replayed_in_the_current_shape(
    settings: Settings, dynamodb: Any
) -> None:
    post_event("acc-1", {"type": "AccountOpened", "payload": {"owner": "Ada"}})
    Pipeline(settings).pump()
    # An AccountClosed as the previous schema recorded it (no payload), with its status, as that pump wrote it.
    at = "2026-01-05T00:00:00.000000Z"
    old = Event("01900000-0000-7000-8000-00000000c105", "acc-1", "AccountClosed", 2, 1, at, at, {})
    dynamodb.put_item(
        TableName=settings.event_status_table,
        Item=committed_item(old.event_id, "acc-1", old.type, at, "f", 2, at),
    )
    dynamodb.put_item(TableName=settings.events_table, Item=event_to_item(old))
    Pipeline(settings).write()
    live = get_state("acc-1").body["state"]
    assert live["close_reason"] == "not recorded (closed before reasons were required)"

    dynamodb.create_table(**STATE_TABLE.create_table_kwargs(SHADOW))
    replay("--mode", "rebuild", "--replay-id", "rebuild-v1", "--state-table", SHADOW)
    deliver_playback(settings)

    rebuilt = StateStore(dynamodb, SHADOW).get("acc-1")
    assert rebuilt is not None
    assert rebuilt.state == live
    assert get_history("acc-1").body["events"][1]["schema_version"] == 1  # the log keeps what was recorded
