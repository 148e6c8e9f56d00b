"""The checkpoint table's layout: definition (with long aggregate lists in chunks), parts, runs, TTL."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest

from eventlog.batch import Backoff
from eventlog.resources import REPLAY_CHECKPOINTS_TABLE
from eventlog.settings import Settings
from replayer.checkpoints import DynamoCheckpoints, RunState
from replayer.config import Filters, ReplayConfig
from replayer.connect import AwsConnection
from replayer.errors import SetupError
from replayer.parts import PartState
from tests.unprocessed import Unprocessed, write_keys


@pytest.mark.asyncio
async def test_definition_parts_and_runs_round_trip(settings: Settings, dynamodb: Any) -> None:
    aggregates = [f"acct-{i:05d}-{'x' * 100}" for i in range(4500)]  # about 500 KB of ids: chunked
    config = ReplayConfig(
        settings.events_table,
        "target",
        settings.replay_checkpoints_table,
        Filters.build(aggregates=aggregates),
    )
    definition = config.definition(segments=32)
    async with AwsConnection(settings) as connection:
        store = DynamoCheckpoints(connection.dynamodb, settings.replay_checkpoints_table)
        await store.create("r-1", definition)
        with pytest.raises(SetupError, match="already exists"):
            await store.create("r-1", definition)
        parts = [
            PartState("query#0000000", ("acct-00032-x", 7), False, 11, 1234, {"acct-00064-x": 3}),
            PartState("query#0000001", None, True, 0, 0),
        ]
        await store.save(
            "r-1", parts, RunState("0/2", "running", read=5, put=4, started_at="2026-01-01T00:00:00Z")
        )
        loaded = await store.load("r-1")
        assert await store.load("r-2") is None
    assert loaded is not None
    assert loaded.definition == definition
    assert loaded.parts == {p.name: p for p in parts}
    assert loaded.runs["run#0of2"]["state"] == "running"
    items = dynamodb.scan(TableName=settings.replay_checkpoints_table)["Items"]
    assert sorted(i["part"]["S"] for i in items) == [
        "aggregates#0000", "aggregates#0001", "aggregates#0002",
        "query#0000000", "query#0000001", "replay", "run#0of2",
    ]  # fmt: skip
    ttl = [int(i["expires_at"]["N"]) for i in items]
    assert all(abs(t - (time.time() + 30 * 86400)) < 120 for t in ttl)


@pytest.mark.asyncio
@pytest.mark.timeout(30)
async def test_saves_go_through_unprocessed_items_and_fail_clearly_on_endless_ones(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("eventlog.batch.DEFAULT_BACKOFF", Backoff(base=0.001, cap=0.004, max_attempts=5))
    table = settings.replay_checkpoints_table
    parts = [PartState(f"scan#{i:07d}", (f"acct-{i}", i + 1), False, i, 10 * i) for i in range(40)]
    config = ReplayConfig(settings.events_table, "target", table)
    async with AwsConnection(settings) as connection:
        store = DynamoCheckpoints(connection.dynamodb, table)
        await store.create("r-1", config.definition(segments=40))
        with Unprocessed("BatchWriteItem", withhold=8, calls=3).on(connection.dynamodb) as fault:
            await store.save("r-1", parts, RunState("0/1", "running"))
        loaded = await store.load("r-1")
        with (
            Unprocessed("BatchWriteItem", everything=True).on(connection.dynamodb),
            pytest.raises(
                SetupError, match=f"checkpoint table {table} keeps refusing writes: BatchWriteItem"
            ),
        ):
            await store.save("r-1", parts)
    assert fault.held == [8, 7, 6, 0, 0]  # 41 items: 25 (8 held back, then 7 of them, 6 of those), then 16
    assert Counter(write_keys(fault.sent, REPLAY_CHECKPOINTS_TABLE.key_names)) == Counter(
        {("r-1", p.name): 1 for p in parts} | {("r-1", "run#0of1"): 1}
    )
    assert loaded is not None
    assert loaded.parts == {p.name: p for p in parts}
