"""The event store's contract, written once and run against every backend.

- `TestEventStoreOnEmbeddedAWS`: moto's server (always).
- `TestEventStoreOnAWS`: a real account, when these are set (skipped otherwise):
      ES_CONTRACT_EVENTS_TABLE, ES_CONTRACT_STATUS_TABLE   existing tables with the keys of eventlog.resources
      AWS_REGION and credentials (AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)
  It writes events under fresh random aggregate ids and never deletes anything.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import boto3
import pytest

from eventlog.aws import client_config
from eventlog.envelope import Submission, new_event_id, utc_now
from eventlog.errors import CommitInterrupted
from eventlog.settings import Settings
from eventlog.store import MAX_TRANSACTION_ACTIONS, EventStore
from tests.support import FaultyClient

Namer = Callable[[str], str]


def submission(
    aggregate_id: str,
    amount: int = 1,
    expected: int | None = None,
    event_id: str | None = None,
    payload: dict[str, Any] | None = None,
) -> Submission:
    now = utc_now()
    return Submission(
        event_id=event_id or new_event_id(),
        aggregate_id=aggregate_id,
        type="MoneyDeposited",
        schema_version=1,
        occurred_at=now,
        accepted_at=now,
        payload=payload if payload is not None else {"amount": amount},
        metadata={"correlation_id": "c-1"},
        expected_version=expected,
    )


class EventStoreContract:
    """Subclasses provide `client` (a DynamoDB client) and `tables` ((events, status)) fixtures."""

    @pytest.fixture
    def name(self) -> Namer:
        run = uuid.uuid4().hex[:8]
        return lambda short: f"contract-{run}-{short}"

    @pytest.fixture
    def store(self, client: Any, tables: tuple[str, str]) -> EventStore:
        return EventStore(client, *tables)

    def test_versions_are_gapless_per_aggregate_in_submission_order(
        self, store: EventStore, name: Namer
    ) -> None:
        a, b = name("a"), name("b")
        results = store.commit([submission(a, 1), submission(b, 2), submission(a, 3), submission(a, 4)])
        assert [(r.aggregate_id, r.result, r.version) for r in results] == [
            (a, "committed", 1),
            (b, "committed", 1),
            (a, "committed", 2),
            (a, "committed", 3),
        ]
        assert [e.payload["amount"] for e in store.read(a)] == [1, 3, 4]
        assert store.head_version(a) == 3
        assert store.head_version(name("never")) == 0

    def test_events_read_back_exactly_as_written(self, store: EventStore, name: Namer) -> None:
        payload = {
            "amount": 1,
            "f": 0.1,
            "big": 2**62,
            "text": "zoë ✓ 🐍",
            "nested": {"list": [1.5e-7, None, True]},
        }
        sub = submission(name("a"), payload=payload)
        store.commit([sub])
        event = store.get(sub.aggregate_id, 1)
        assert event is not None
        assert event.payload == payload
        assert event.metadata == {"correlation_id": "c-1"}
        assert (event.event_id, event.occurred_at, event.type) == (sub.event_id, sub.occurred_at, sub.type)

    def test_a_second_commit_of_the_same_event_is_a_duplicate_and_writes_nothing(
        self, store: EventStore, name: Namer
    ) -> None:
        a = name("a")
        first = submission(a, 1)
        store.commit([first, submission(a, 2)])
        results = store.commit([first, submission(a, 3)])
        assert [(r.result, r.version) for r in results] == [("duplicate", 1), ("committed", 3)]
        assert [e.payload["amount"] for e in store.read(a)] == [1, 2, 3]

    def test_the_same_event_twice_in_one_batch_is_committed_once(
        self, store: EventStore, name: Namer
    ) -> None:
        a = name("a")
        sub = submission(a, 1)
        results = store.commit([sub, submission(a, 2), sub])
        assert [r.result for r in results] == ["committed", "committed", "duplicate"]
        assert store.head_version(a) == 2

    def test_expected_version_is_enforced_and_the_rejection_recorded(
        self, store: EventStore, name: Namer
    ) -> None:
        a = name("a")
        results = store.commit(
            [submission(a, 1, expected=0), submission(a, 2, expected=0), submission(a, 3, expected=1)]
        )
        assert [r.result for r in results] == ["committed", "rejected", "committed"]
        assert results[1].reason == "expected_version 0, but the aggregate is at version 1"
        status = store.statuses.get(results[1].event_id, consistent=True)
        assert status is not None
        assert (status.status, status.reason) == ("rejected", results[1].reason)
        # a rejected event delivered again stays rejected: final states never move
        again = store.commit([submission(a, 2, expected=0, event_id=results[1].event_id)])
        assert again[0].result == "duplicate"
        assert [e.payload["amount"] for e in store.read(a)] == [1, 3]

    def test_a_batch_larger_than_one_transaction_is_committed_whole_and_in_order(
        self, store: EventStore, name: Namer
    ) -> None:
        a = name("a")
        count = MAX_TRANSACTION_ACTIONS + 7  # events, so three transactions
        results = store.commit([submission(a, n) for n in range(count)])
        assert [r.version for r in results] == list(range(1, count + 1))
        assert [e.payload["amount"] for e in store.read(a)] == list(range(count))

    def test_large_payloads_are_split_across_transactions_by_size(
        self, store: EventStore, name: Namer
    ) -> None:
        a = name("a")
        big = "x" * 120_000  # 30 of these are over the 4 MB transaction limit
        results = store.commit([submission(a, payload={"blob": big, "n": n}) for n in range(30)])
        assert [r.version for r in results] == list(range(1, 31))

    def test_a_head_moved_by_another_writer_is_noticed_and_nothing_is_overwritten(
        self, client: Any, tables: tuple[str, str], name: Namer
    ) -> None:
        a = name("a")
        ours, theirs = EventStore(client, *tables), EventStore(client, *tables)
        ours.commit([submission(a, 1)])
        racing = submission(a, 2)

        # another writer commits between our head lookup and our transaction
        class Racer(FaultyClient):
            def __getattr__(self, op: str) -> Any:
                if op == "transact_write_items" and not self.calls.get("raced"):
                    self.calls["raced"] = 1
                    theirs.commit([racing])
                return super().__getattr__(op)

        store = EventStore(Racer(client), *tables)
        results = store.commit([submission(a, 3)])
        assert [(r.result, r.version) for r in results] == [("committed", 3)]
        assert [e.payload["amount"] for e in store.read(a)] == [1, 2, 3]

    def test_a_failed_write_interrupts_at_the_first_uncommitted_submission(
        self, client: Any, tables: tuple[str, str], name: Namer
    ) -> None:
        a = name("a")
        faulty = FaultyClient(client)
        faulty.fail("transact_write_items", on={2}, code="ThrottlingException")
        per_transaction = MAX_TRANSACTION_ACTIONS // 2
        batch = [submission(a, n) for n in range(per_transaction + 5)]
        with pytest.raises(CommitInterrupted) as interrupted:
            EventStore(faulty, *tables).commit(batch)
        assert interrupted.value.index == per_transaction
        store = EventStore(client, *tables)
        assert store.head_version(a) == per_transaction
        # retrying from the interruption completes the batch with nothing repeated
        store.commit(batch[interrupted.value.index :])
        assert [e.payload["amount"] for e in store.read(a)] == list(range(per_transaction + 5))

    def test_read_page_gives_limit_events_and_where_to_continue(self, store: EventStore, name: Namer) -> None:
        a = name("a")
        store.commit([submission(a, n) for n in range(5)])
        page = store.read_page(a, from_version=2, limit=2)
        assert ([e.version for e in page.events], page.next_from_version) == ([2, 3], 4)
        last = store.read_page(a, from_version=4, limit=2)
        assert [e.version for e in last.events] == [4, 5]
        assert store.read_page(a, from_version=6, limit=2).next_from_version is None
        assert [e.version for e in store.read(a, 2, 4)] == [2, 3, 4]


class TestEventStoreOnEmbeddedAWS(EventStoreContract):
    @pytest.fixture
    def client(self, dynamodb: Any) -> Any:
        return dynamodb

    @pytest.fixture
    def tables(self, settings: Settings) -> tuple[str, str]:
        return settings.events_table, settings.event_status_table


@pytest.mark.aws
class TestEventStoreOnAWS(EventStoreContract):
    @pytest.fixture
    def client(self, real_environment: dict[str, str]) -> Any:
        env = real_environment
        if not (env.get("ES_CONTRACT_EVENTS_TABLE") and env.get("ES_CONTRACT_STATUS_TABLE")):
            pytest.skip("set ES_CONTRACT_EVENTS_TABLE and ES_CONTRACT_STATUS_TABLE to run against AWS")
        session = boto3.session.Session(
            profile_name=env.get("AWS_PROFILE"),
            aws_access_key_id=env.get("AWS_ACCESS_KEY_ID"),
            aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY"),
            aws_session_token=env.get("AWS_SESSION_TOKEN"),
            region_name=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION"),
        )
        if session.get_credentials() is None:
            pytest.skip("no AWS credentials")
        return session.client("dynamodb", config=client_config())

    @pytest.fixture
    def tables(self, real_environment: dict[str, str]) -> tuple[str, str]:
        return real_environment["ES_CONTRACT_EVENTS_TABLE"], real_environment["ES_CONTRACT_STATUS_TABLE"]
