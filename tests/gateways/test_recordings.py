"""The recordings port's contract, run against the table (on the embedded AWS) and the in-memory store."""

from __future__ import annotations

from typing import Any

import pytest

from eventlog.settings import Settings
from gateways.recordings import DynamoRecordings, MemoryRecordings, RecordingConflict, RecordingStore
from gateways.types import Recording


def recording(call: str = "ledger-export", status: str = "pending", **changes: Any) -> Recording:
    base: dict[str, Any] = {
        "event_id": "e-1",
        "call": call,
        "kind": "update",
        "status": status,
        "mode": "live",
        "request": {"amount": 1, "rate": "1.1000", "f": 0.1},
        "idempotency_key": f"e-1:{call}",
        "aggregate_id": "acct-1",
        "version": 3,
        "recorded_at": "2026-11-26T00:00:00.000000Z",
        "attempts": 1,
    }
    base.update(changes)
    return Recording(**base)


class RecordingStoreContract:
    """Subclasses provide a `store` fixture."""

    def test_a_recording_reads_back_exactly_as_written(self, store: RecordingStore) -> None:
        written = recording(
            response={"entry_id": "x", "nested": {"a": [1, 2.5, None]}},
            replay_id="r-1",
            call="ledger-export@r-1",
            note="a note",
            wanted={"amount": 2},
            expires_at=1_900_000_000,
            updated_at="2026-11-26T00:00:01.000000Z",
        )
        assert store.create(written)
        assert store.get("e-1", "ledger-export@r-1") == written
        assert store.get("e-1", "nothing-here") is None

    def test_create_never_overwrites(self, store: RecordingStore) -> None:
        assert store.create(recording())
        assert not store.create(recording(status="sent", response={"x": 1}))
        stored = store.get("e-1", "ledger-export")
        assert stored is not None
        assert stored.status == "pending"

    def test_replace_pending_moves_a_pending_recording_once(self, store: RecordingStore) -> None:
        store.create(recording())
        store.replace_pending(recording(status="sent", response={"ok": True}))
        with pytest.raises(RecordingConflict):
            store.replace_pending(recording(status="sent", response={"ok": "again"}))
        with pytest.raises(RecordingConflict):
            store.replace_pending(recording(call="never-created"))
        stored = store.get("e-1", "ledger-export")
        assert stored is not None
        assert stored.response == {"ok": True}

    def test_calls_gives_the_original_first_then_the_replays_in_order_and_no_other_call(
        self, store: RecordingStore
    ) -> None:
        store.create(recording(call="ledger-export@r-2", recorded_at="2026-11-26T00:00:02.000000Z"))
        store.create(recording(call="ledger-export@r-1", recorded_at="2026-11-26T00:00:01.000000Z"))
        store.create(recording(call="ledger-export", recorded_at="2026-11-26T00:00:03.000000Z"))
        store.create(recording(call="ledger-exports"))  # a longer name that begins the same
        store.create(recording(call="ledger-export", event_id="e-2"))

        assert [r.call for r in store.calls("e-1", "ledger-export")] == [
            "ledger-export",
            "ledger-export@r-1",
            "ledger-export@r-2",
        ]

    def test_put_overwrites(self, store: RecordingStore) -> None:
        store.put(recording(call="ledger-export@r-1", status="suppressed"))
        store.put(recording(call="ledger-export@r-1", status="suppressed", request={"amount": 9}))
        stored = store.get("e-1", "ledger-export@r-1")
        assert stored is not None
        assert stored.request == {"amount": 9}


class TestMemoryRecordings(RecordingStoreContract):
    @pytest.fixture
    def store(self) -> RecordingStore:
        return MemoryRecordings()


class TestDynamoRecordings(RecordingStoreContract):
    @pytest.fixture
    def store(self, settings: Settings, dynamodb: Any) -> RecordingStore:
        return DynamoRecordings(dynamodb, settings.table("gateway_recordings"))

    def test_the_table_is_keyed_by_event_and_call_and_expires_replay_items(
        self, settings: Settings, dynamodb: Any
    ) -> None:
        name = settings.table("gateway_recordings")
        assert name == "es-test-gateway-recordings"
        keys = dynamodb.describe_table(TableName=name)["Table"]["KeySchema"]
        assert keys == [
            {"AttributeName": "event_id", "KeyType": "HASH"},
            {"AttributeName": "call", "KeyType": "RANGE"},
        ]
        ttl = dynamodb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
        assert ttl["AttributeName"] == "expires_at"
