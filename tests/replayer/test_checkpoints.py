"""The checkpoint table's layout: definition (with long aggregate lists in chunks), parts, runs, TTL."""

from __future__ import annotations

import time
from typing import Any

import pytest

from eventlog.settings import Settings
from replayer.checkpoints import DynamoCheckpoints, RunState
from replayer.config import Filters, ReplayConfig
from replayer.connect import AwsConnection
from replayer.errors import SetupError
from replayer.parts import PartState


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
