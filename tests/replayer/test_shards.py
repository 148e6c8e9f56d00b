"""The shard map must send each partition key where Kinesis does."""

from __future__ import annotations

from typing import Any

from eventlog.settings import Settings
from replayer.shards import ShardMap


def test_shard_map_agrees_with_kinesis_routing(settings: Settings, kinesis: Any) -> None:
    # given a stream of 5 shards (uneven split of the key space)
    kinesis.create_stream(StreamName="es-test-routing", ShardCount=5)
    shard_map = ShardMap.from_list_shards(kinesis.list_shards(StreamName="es-test-routing")["Shards"])
    assert len(shard_map) == 5
    # when records go in under many keys, then each lands on the shard the map names
    for i in range(60):
        key = f"acct-{i}-é"
        landed = kinesis.put_record(StreamName="es-test-routing", Data=b"x", PartitionKey=key)["ShardId"]
        assert shard_map.shards[shard_map.shard_of(key)].shard_id == landed, key


def test_closed_shards_are_left_out() -> None:
    shards = [
        {"ShardId": "old", "HashKeyRange": {"StartingHashKey": "0", "EndingHashKey": str(2**128 - 1)},
         "SequenceNumberRange": {"StartingSequenceNumber": "1", "EndingSequenceNumber": "9"}},
        {"ShardId": "a", "HashKeyRange": {"StartingHashKey": "0", "EndingHashKey": str(2**127 - 1)},
         "SequenceNumberRange": {"StartingSequenceNumber": "10"}},
        {"ShardId": "b", "HashKeyRange": {"StartingHashKey": str(2**127), "EndingHashKey": str(2**128 - 1)},
         "SequenceNumberRange": {"StartingSequenceNumber": "11"}},
    ]  # fmt: skip
    shard_map = ShardMap.from_list_shards(shards)
    assert [s.shard_id for s in shard_map.shards] == ["a", "b"]
    assert {shard_map.shard_of(f"k{i}") for i in range(50)} == {0, 1}
