"""The pump: properties 1-3 at the log. Every fault is injected: duplicate deliveries, a throttled write in
the middle of a batch, a crash in the middle of a batch, expected_version conflicts, a poison record."""

from __future__ import annotations

import threading
from typing import Any

import orjson
import pytest

import handlers.runtime
from devstack.lambda_runtime import invoke
from eventlog.settings import Settings
from eventlog.store import MAX_TRANSACTION_ACTIONS
from tests.support import (
    FaultyClient,
    Injected,
    KinesisReader,
    Pipeline,
    all_events,
    assert_gapless,
    get_status,
    kinesis_id,
    post_event,
    retry_from_failure,
)


def deposit(amount: int, **extra: Any) -> dict[str, Any]:
    return {"type": "MoneyDeposited", "payload": {"amount": amount}, **extra}


def one_batch(settings: Settings) -> tuple[str, dict[str, Any]]:
    """Everything on the ingest stream, as the one non-empty shard's Lambda event."""
    reader = KinesisReader(settings, settings.ingest_stream)
    batches = [(shard, records) for shard, records in reader.read().items() if records]
    assert len(batches) == 1, "the test wants every record on one shard"
    shard, records = batches[0]
    return shard, reader.event(shard, records)


def amounts_in_log(settings: Settings, aggregate: str) -> list[int]:
    return [e["payload"]["amount"] for e in all_events(settings) if e["aggregate_id"] == aggregate]


def use_faulty_dynamodb(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> FaultyClient:
    from eventlog.aws import dynamodb_client

    faulty = FaultyClient(dynamodb_client(settings))
    handlers.runtime.reset()
    monkeypatch.setattr(handlers.runtime, "dynamodb", lambda: faulty)
    return faulty


def test_a_batch_delivered_twice_commits_each_event_once(settings: Settings) -> None:
    for amount in range(1, 6):
        assert post_event("acc-1", deposit(amount)).status == 202
    _, event = one_batch(settings)

    first = invoke("pump", event, prefix="es-test")
    second = invoke("pump", event, prefix="es-test")

    assert first == second == {"batchItemFailures": []}
    assert amounts_in_log(settings, "acc-1") == [1, 2, 3, 4, 5]
    assert_gapless(all_events(settings))


def test_a_throttled_write_mid_batch_is_retried_from_the_first_uncommitted_record(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given more events than one transaction holds, so the batch is committed in several transactions
    per_transaction = MAX_TRANSACTION_ACTIONS // 2
    total = per_transaction * 2 + 20
    for amount in range(1, total + 1):
        post_event("acc-1", deposit(amount))
    _, event = one_batch(settings)
    faulty = use_faulty_dynamodb(monkeypatch, settings)
    faulty.fail("transact_write_items", on={2})  # the second transaction is throttled

    # when Lambda delivers the batch and honours the reported failure
    responses = retry_from_failure("pump", event, kinesis_id)

    # then the first answer names exactly the first record of the second transaction
    records = event["Records"]
    assert responses[0] == {"batchItemFailures": [{"itemIdentifier": kinesis_id(records[per_transaction])}]}
    assert responses[-1] == {"batchItemFailures": []}
    # and the log holds every event once, in stream order, versions gapless
    assert amounts_in_log(settings, "acc-1") == list(range(1, total + 1))
    assert_gapless(all_events(settings))


def test_a_crash_mid_batch_then_the_whole_batch_again_loses_and_repeats_nothing(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    per_transaction = MAX_TRANSACTION_ACTIONS // 2
    total = per_transaction + 10
    for amount in range(1, total + 1):
        post_event("acc-1" if amount % 3 else "acc-2", deposit(amount))
    reader = KinesisReader(settings, settings.ingest_stream)
    batches = [(s, r) for s, r in reader.read().items() if r]
    faulty = use_faulty_dynamodb(monkeypatch, settings)
    faulty.fail("transact_write_items", on={2}, code=None)  # the function dies after the first transaction

    for shard, records in batches:
        event = reader.event(shard, records)
        try:
            invoke("pump", event, prefix="es-test")
        except Injected:
            # Lambda retries a failed invocation with the whole batch
            assert invoke("pump", event, prefix="es-test") == {"batchItemFailures": []}

    assert faulty.calls["transact_write_items"] >= 3
    expected_1 = [a for a in range(1, total + 1) if a % 3]
    expected_2 = [a for a in range(1, total + 1) if not a % 3]
    assert amounts_in_log(settings, "acc-1") == expected_1
    assert amounts_in_log(settings, "acc-2") == expected_2
    assert_gapless(all_events(settings))


def test_events_of_one_aggregate_in_one_batch_take_versions_in_stream_order(settings: Settings) -> None:
    amounts = [7, 3, 9, 1, 8, 2]
    for amount in amounts:
        post_event("acc-1", deposit(amount))
    Pipeline(settings).pump()
    assert amounts_in_log(settings, "acc-1") == amounts


class HeldStream:
    """The load function's Kinesis client, holding the put of one amount until `others` other puts are done:
    that event is accepted (stamped) first and reaches the stream after them."""

    def __init__(self, client: Any, held_amount: int, others: int) -> None:
        self._client = client
        self._held_amount = held_amount
        self._others = others
        self._done = 0
        self._guard = threading.Lock()
        self.held = threading.Event()
        self.released = threading.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def put_record(self, **kwargs: Any) -> Any:
        if orjson.loads(kwargs["Data"])["payload"]["amount"] == self._held_amount:
            self.held.set()
            assert self.released.wait(10), "the other clients' puts never came"
            return self._client.put_record(**kwargs)
        answer = self._client.put_record(**kwargs)
        with self._guard:
            self._done += 1
            if self._done == self._others:
                self.released.set()
        return answer


def test_concurrent_posts_to_one_aggregate_get_versions_in_stream_order(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given four clients posting to one aggregate at once, and the first event accepted (100) overtaken on
    # its way to the stream by the other three clients' first events (the put that lost the race)
    stream = HeldStream(handlers.runtime.kinesis(), held_amount=100, others=3)
    monkeypatch.setattr(handlers.runtime, "kinesis", lambda: stream)
    statuses: list[int] = []

    def client(start: int) -> None:
        if start != 100:
            assert stream.held.wait(10)
        for amount in range(start, start + 10):
            statuses.append(post_event("acc-1", deposit(amount)).status)

    threads = [threading.Thread(target=client, args=(n * 100,)) for n in range(1, 5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert statuses == [202] * 40
    # the stream's order is the truth; read it before the pump does
    shard_records = KinesisReader(settings, settings.ingest_stream).read()
    on_stream = [orjson.loads(r["Data"]) for records in shard_records.values() for r in records]
    stream_order = [s["payload"]["amount"] for s in on_stream]
    assert stream_order.index(100) > max(stream_order.index(a) for a in (200, 300, 400))
    accepted_order = [s["payload"]["amount"] for s in sorted(on_stream, key=lambda s: s["accepted_at"])]
    assert accepted_order != stream_order
    Pipeline(settings).pump()
    # then versions follow the stream's order exactly (not the order the events were accepted in)
    assert amounts_in_log(settings, "acc-1") == stream_order
    assert_gapless(all_events(settings))


def test_expected_version_conflicts_are_rejected_reported_and_not_written(settings: Settings) -> None:
    opened = post_event(
        "acc-1", {"type": "AccountOpened", "payload": {"owner": "Ada"}, "expected_version": 0}
    )
    racer = post_event("acc-1", {"type": "AccountOpened", "payload": {"owner": "Bob"}, "expected_version": 0})
    after = post_event("acc-1", deposit(5, expected_version=1))
    stale = post_event("acc-1", deposit(6, expected_version=1))
    Pipeline(settings).pump()

    assert [e["event_id"] for e in all_events(settings)] == [opened.body["event_id"], after.body["event_id"]]
    for loser, head in ((racer, 1), (stale, 2)):
        status = get_status(loser.body["event_id"]).body
        assert status["status"] == "rejected"
        assert (
            status["reason"]
            == f"expected_version {1 if head == 2 else 0}, but the aggregate is at version {head}"
        )
        assert "version" not in status


def test_expected_version_on_a_new_aggregate_that_has_no_events(settings: Settings) -> None:
    sent = post_event("acc-9", deposit(5, expected_version=3))
    Pipeline(settings).pump()
    status = get_status(sent.body["event_id"]).body
    assert status["status"] == "rejected"
    assert status["reason"] == "expected_version 3, but the aggregate has no events yet"
    assert all_events(settings) == []


def test_a_record_that_is_not_a_submission_is_skipped_without_stalling_the_shard(
    settings: Settings, kinesis: Any
) -> None:
    post_event("acc-1", deposit(1))
    kinesis.put_record(StreamName=settings.ingest_stream, Data=b"not json at all", PartitionKey="acc-1")
    post_event("acc-1", deposit(2))
    _, event = one_batch(settings)
    assert invoke("pump", event, prefix="es-test") == {"batchItemFailures": []}
    assert amounts_in_log(settings, "acc-1") == [1, 2]


def test_the_same_event_id_in_one_batch_is_committed_once(settings: Settings) -> None:
    event_id = "01890a5d-ac96-774b-bcce-b302099a8057"
    first = post_event("acc-1", deposit(5, event_id=event_id))
    again = post_event("acc-1", deposit(5, event_id=event_id))  # a client retry while still pending
    assert first.status == again.status == 202
    _, event = one_batch(settings)
    assert len(event["Records"]) == 2  # the retry was put again: the pump is the one that dedupes
    invoke("pump", event, prefix="es-test")
    assert [e["event_id"] for e in all_events(settings)] == [event_id]
    assert get_status(event_id).body["status"] == "committed"
