"""ReplayDirectory reads what the replayer stores (its own writer, not a copy of the layout), and caches it."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from eventlog.replays import ReplayDefinitionError, ReplayDirectory
from eventlog.settings import Settings
from replayer.checkpoints import DynamoCheckpoints
from replayer.config import Filters, ReplayConfig
from replayer.connect import AwsConnection
from tests.support import FaultyClient


async def store_definition(settings: Settings, replay_id: str, definition: dict[str, Any]) -> None:
    async with AwsConnection(settings) as connection:
        await DynamoCheckpoints(connection.dynamodb, settings.replay_checkpoints_table).create(
            replay_id, definition
        )


def config(settings: Settings, **kwargs: Any) -> ReplayConfig:
    return ReplayConfig(
        settings.events_table, settings.playback_stream, settings.replay_checkpoints_table, **kwargs
    )


@pytest.mark.asyncio
async def test_a_definition_the_replayer_stored_is_read_with_its_mode_filters_and_state_table(
    settings: Settings, dynamodb: Any
) -> None:
    aggregates = [f"acct-{i:05d}-{'x' * 100}" for i in range(2500)]  # more than one chunk item
    definition = config(settings, filters=Filters.build(aggregates=aggregates), mode="fix").definition(4)
    definition["state_table"] = "es-test-state-shadow-1"  # the optional field a rebuild adds
    await store_definition(settings, "r-1", definition)

    found = ReplayDirectory(dynamodb, settings.replay_checkpoints_table).get("r-1")

    assert found is not None
    assert (found.replay_id, found.mode, found.state_table) == ("r-1", "fix", "es-test-state-shadow-1")
    assert list(found.filters["aggregates"]) == sorted(aggregates)
    assert found.raw["stream"] == settings.playback_stream


@pytest.mark.asyncio
async def test_absent_optional_fields_take_their_defaults(settings: Settings, dynamodb: Any) -> None:
    await store_definition(settings, "r-2", config(settings, mode="rebuild").definition(1))
    found = ReplayDirectory(dynamodb, settings.replay_checkpoints_table).get("r-2")
    assert found is not None
    assert (found.mode, found.state_table, found.filters["aggregates"]) == ("rebuild", None, [])


@pytest.mark.asyncio
async def test_a_found_definition_is_read_once_and_a_missing_one_is_asked_again_after_a_while(
    settings: Settings, dynamodb: Any
) -> None:
    counting = FaultyClient(dynamodb)
    now = [0.0]
    directory = ReplayDirectory(
        counting, settings.replay_checkpoints_table, miss_ttl_s=5, clock=lambda: now[0]
    )

    assert directory.get("r-3") is None
    assert directory.get("r-3") is None
    assert counting.calls["get_item"] == 1  # the miss is remembered ...
    await store_definition(settings, "r-3", config(settings, mode="feature").definition(1))
    now[0] = 6.0
    found = directory.get("r-3")  # ... for a while: the definition written since is found
    assert found is not None
    assert found.mode == "feature"
    for _ in range(5):
        directory.get("r-3")
    assert counting.calls["get_item"] == 2  # definitions never change: one read for the container's life


def put_raw_definition(settings: Settings, dynamodb: Any, replay_id: str, text: str) -> None:
    dynamodb.put_item(
        TableName=settings.replay_checkpoints_table,
        Item={"replay_id": {"S": replay_id}, "part": {"S": "replay"}, "definition": {"S": text}},
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not json", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        (orjson.dumps({"mode": "sideways"}).decode(), "unknown mode"),
        (orjson.dumps({"mode": "rebuild", "state_table": "x y"}).decode(), "not a table name"),
        (orjson.dumps({"mode": "rebuild", "filters": [1]}).decode(), "filters"),
    ],
)
def test_a_definition_that_cannot_be_read_is_an_error_not_a_default(
    settings: Settings, dynamodb: Any, text: str, message: str
) -> None:
    put_raw_definition(settings, dynamodb, "r-bad", text)
    with pytest.raises(ReplayDefinitionError, match=message):
        ReplayDirectory(dynamodb, settings.replay_checkpoints_table).get("r-bad")


def test_a_missing_aggregate_chunk_is_an_error(settings: Settings, dynamodb: Any) -> None:
    put_raw_definition(settings, dynamodb, "r-4", orjson.dumps({"mode": "fix", "filters": {}}).decode())
    dynamodb.update_item(
        TableName=settings.replay_checkpoints_table,
        Key={"replay_id": {"S": "r-4"}, "part": {"S": "replay"}},
        UpdateExpression="SET aggregate_chunks = :n",
        ExpressionAttributeValues={":n": {"N": "1"}},
    )
    with pytest.raises(ReplayDefinitionError, match="aggregates#0000 is missing"):
        ReplayDirectory(dynamodb, settings.replay_checkpoints_table).get("r-4")
