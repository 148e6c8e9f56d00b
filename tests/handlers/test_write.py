"""The write handler: state follows the log in version order, whatever order and however often the records
arrive; refusals are recorded with their reasons; replayed events in the playback envelope are consumed too."""

from __future__ import annotations

from typing import Any

import pytest

import handlers.runtime
from devstack.lambda_runtime import invoke
from eventlog.aws import dynamodb_client
from eventlog.codec import event_from_stream_record, event_to_data, with_replay
from eventlog.envelope import ReplayInfo
from eventlog.settings import Settings
from tests.support import (
    FaultyClient,
    KinesisReader,
    Pipeline,
    TableStreamReader,
    get_state,
    get_status,
    post_event,
)


def ledger(settings: Settings, *events: tuple[str, dict[str, Any]]) -> list[str]:
    """Post events and run the pump only; return their event ids."""
    ids = [post_event(aggregate, body).body["event_id"] for aggregate, body in events]
    Pipeline(settings).pump()
    return ids


def opened(owner: str = "Ada") -> dict[str, Any]:
    return {"type": "AccountOpened", "payload": {"owner": owner}}


def money(kind: str, amount: int) -> dict[str, Any]:
    return {"type": f"Money{kind}", "payload": {"amount": amount}}


def test_state_reflects_the_log_and_refusals_leave_it_unchanged(settings: Settings) -> None:
    ids = ledger(
        settings,
        ("acc-1", opened()),
        ("acc-1", money("Deposited", 500)),
        ("acc-1", money("Withdrawn", 900)),  # overdraft: recorded, refused
        ("acc-1", money("Withdrawn", 200)),
    )
    Pipeline(settings).write()
    state = get_state("acc-1").body
    assert state["version"] == 4
    assert state["state"]["balance"] == 300
    refused = get_status(ids[2]).body
    assert (refused["status"], refused["version"], refused["outcome"]) == ("committed", 3, "refused")
    assert refused["outcome_reason"] == "insufficient funds: balance 500, withdrawal 900"
    assert get_status(ids[3]).body["outcome"] == "applied"


def test_a_record_delivered_twice_is_applied_once(settings: Settings) -> None:
    ledger(settings, ("acc-1", opened()), ("acc-1", money("Deposited", 500)))
    changes = TableStreamReader(settings, settings.events_table)
    event = changes.event(changes.read())
    assert invoke("write", event, prefix="es-test") == {"batchItemFailures": []}
    assert invoke("write", event, prefix="es-test") == {"batchItemFailures": []}
    assert get_state("acc-1").body["state"]["balance"] == 500


def test_records_out_of_order_still_give_the_state_in_version_order(settings: Settings) -> None:
    ledger(
        settings,
        ("acc-1", opened()),
        ("acc-1", money("Deposited", 500)),
        ("acc-1", money("Withdrawn", 300)),
    )
    changes = TableStreamReader(settings, settings.events_table)
    records = changes.read()
    # the last event arrives first: the gap (versions 1 and 2) is filled from the log
    invoke("write", changes.event([records[2]]), prefix="es-test")
    assert get_state("acc-1").body["version"] == 3
    assert get_state("acc-1").body["state"]["balance"] == 200
    # the earlier ones arrive late and change nothing
    invoke("write", changes.event(records[:2]), prefix="es-test")
    assert get_state("acc-1").body["state"]["balance"] == 200
    assert get_state("acc-1").body["version"] == 3


class FailStateWriteOf(FaultyClient):
    """Fails the first state write of one aggregate, whatever thread or order it comes in."""

    def __init__(self, client: Any, aggregate_id: str) -> None:
        super().__init__(client)
        self.aggregate_id = aggregate_id
        self.failed = False

    def put_item(self, **kwargs: Any) -> Any:
        if not self.failed and kwargs["Item"]["aggregate_id"]["S"] == self.aggregate_id:
            self.failed = True
            from botocore.exceptions import ClientError

            raise ClientError(
                {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "x"}}, "PutItem"
            )
        return self._client.put_item(**kwargs)


def test_a_failed_aggregate_names_its_first_record_and_the_retry_completes_the_batch(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger(
        settings,
        ("acc-1", opened()),
        ("acc-2", opened("Bob")),
        ("acc-1", money("Deposited", 100)),
        ("acc-2", money("Deposited", 7)),
    )
    changes = TableStreamReader(settings, settings.events_table)
    records = changes.read()
    faulty = FailStateWriteOf(dynamodb_client(settings), "acc-2")
    handlers.runtime.reset()
    monkeypatch.setattr(handlers.runtime, "dynamodb", lambda: faulty)

    response = invoke("write", changes.event(records), prefix="es-test")

    # the answer names acc-2's first record; acc-1 was done meanwhile, acc-2 not at all
    assert response == {"batchItemFailures": [{"itemIdentifier": records[1]["dynamodb"]["SequenceNumber"]}]}
    assert get_state("acc-1").body["state"]["balance"] == 100
    # (its event is in the log, nothing of it projected: version 0)
    assert (get_state("acc-2").status, get_state("acc-2").body["version"]) == (200, 0)
    # Lambda retries from that record: acc-1's deposit comes again and is skipped, acc-2 is done
    assert invoke("write", changes.event(records[1:]), prefix="es-test") == {"batchItemFailures": []}
    assert get_state("acc-1").body["state"]["balance"] == 100
    assert (get_state("acc-2").body["version"], get_state("acc-2").body["state"]["balance"]) == (2, 7)


def test_a_batch_reads_and_writes_each_aggregate_state_once(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger(settings, ("acc-1", opened()), *[("acc-1", money("Deposited", n)) for n in range(1, 10)])
    changes = TableStreamReader(settings, settings.events_table)
    counting = FaultyClient(dynamodb_client(settings))
    handlers.runtime.reset()
    monkeypatch.setattr(handlers.runtime, "dynamodb", lambda: counting)
    assert invoke("write", changes.event(changes.read()), prefix="es-test") == {"batchItemFailures": []}
    assert (counting.calls["get_item"], counting.calls["put_item"]) == (1, 1)
    assert counting.calls["update_item"] == 10  # one outcome per event
    assert get_state("acc-1").body["state"]["balance"] == sum(range(1, 10))


def test_replayed_events_from_the_playback_stream_rebuild_a_wiped_state(
    settings: Settings, kinesis: Any
) -> None:
    ledger(settings, ("acc-1", opened()), ("acc-1", money("Deposited", 250)))
    Pipeline(settings).write()
    live = get_state("acc-1").body
    # wipe the data store: it is not the system of record
    dynamodb_client(settings).delete_item(
        TableName=settings.state_table, Key={"aggregate_id": {"S": "acc-1"}}
    )
    # replay the log onto the playback stream, as the replayer does
    replay = ReplayInfo(replay_id="r-1", mode="rebuild")
    for record in TableStreamReader(settings, settings.events_table).read():
        event = with_replay(event_from_stream_record(record), replay)
        kinesis.put_record(
            StreamName=settings.playback_stream, Data=event_to_data(event), PartitionKey="acc-1"
        )
    playback = KinesisReader(settings, settings.playback_stream)
    for shard, records in playback.read().items():
        if records:
            assert invoke("write", playback.event(shard, records), prefix="es-test") == {
                "batchItemFailures": []
            }
    rebuilt = get_state("acc-1").body
    assert (rebuilt["version"], rebuilt["state"]) == (live["version"], live["state"])


def test_an_event_of_an_account_never_opened_is_refused_and_state_is_null(settings: Settings) -> None:
    [event_id] = ledger(settings, ("acc-9", money("Deposited", 5)))
    Pipeline(settings).write()
    state = get_state("acc-9").body
    assert (state["version"], state["state"]) == (1, None)
    assert get_status(event_id).body["outcome_reason"] == "account has not been opened"


def test_a_record_that_is_not_an_event_is_skipped_without_stalling_the_shard(
    settings: Settings, dynamodb: Any
) -> None:
    dynamodb.put_item(
        TableName=settings.events_table, Item={"aggregate_id": {"S": "junk"}, "version": {"N": "1"}}
    )
    ledger(settings, ("acc-1", opened()))
    changes = TableStreamReader(settings, settings.events_table)
    assert invoke("write", changes.event(changes.read()), prefix="es-test") == {"batchItemFailures": []}
    assert get_state("acc-1").body["state"]["owner"] == "Ada"
    assert get_state("junk").body["version"] == 0  # nothing projected for it (its item is in the log)
