"""Planning: default segments, parts and worker shares, request bodies; segments disjoint and complete."""

from __future__ import annotations

from collections import Counter
from typing import Any

import orjson
import pytest

from eventlog.settings import Settings
from replayer.config import Filters, ReplayConfig, Worker
from replayer.connect import AwsConnection
from replayer.engine import PartReader
from replayer.parts import Part
from replayer.plan import (
    Expressions,
    PartSpec,
    default_query_parts,
    default_segments,
    plan_parts,
    worker_parts,
)
from replayer.records import Record
from tests.replayer.helpers import load_events, make_events

GIB = 1024**3


def test_default_segments_follow_the_table_size_and_the_workers() -> None:
    assert default_segments(0) == 1
    assert default_segments(3 * 1024**2) == 1
    assert default_segments(200 * 1024**2) == 4
    assert default_segments(10 * GIB) == 10
    assert default_segments(1000 * GIB) == 1000
    assert default_segments(0, workers=3) == 3
    assert default_segments(10 * GIB, workers=4) == 12  # rounded up to a multiple of the workers
    assert default_query_parts(5) == 5
    assert default_query_parts(10_000) == 32
    assert default_query_parts(2, workers=4) == 4


def test_query_parts_deal_sorted_aggregates_round_robin() -> None:
    filters = Filters.build(aggregates=[f"a{i:02d}" for i in range(10)][::-1])
    parts = plan_parts(filters, 3)
    assert [p.kind for p in parts] == ["query"] * 3
    assert parts[0].aggregates == ("a00", "a03", "a06", "a09")
    assert sorted(a for p in parts for a in p.aggregates) == sorted(filters.aggregates)
    assert all(list(p.aggregates) == sorted(p.aggregates) for p in parts)


@pytest.mark.parametrize(("parts", "workers"), [(1, 1), (7, 3), (16, 4), (5, 5), (100, 7)])
def test_worker_shares_cover_every_part_exactly_once(parts: int, workers: int) -> None:
    all_parts = plan_parts(Filters(), parts)
    owned = Counter(p.name for w in range(workers) for p in worker_parts(all_parts, Worker(w, workers)))
    assert set(owned) == {p.name for p in all_parts}
    assert set(owned.values()) == {1}


def test_scan_body_carries_segment_start_and_every_filter() -> None:
    filters = Filters.build(
        types=["B", "A"],
        since="2026-01-01T00:00:00Z",
        until="2026-02-01T00:00:00Z",
        from_version=2,
        to_version=9,
    )
    body = orjson.loads(Expressions(filters).scan_body("events", 3, 8, ("acct-1", 5)))
    assert (body["Segment"], body["TotalSegments"]) == (3, 8)
    assert body["ExclusiveStartKey"] == {"aggregate_id": {"S": "acct-1"}, "version": {"N": "5"}}
    assert body["FilterExpression"] == (
        "#type IN (:type0, :type1) AND #recorded >= :since AND #recorded < :until AND #version >= :from "
        "AND #version <= :to"
    )
    assert body["ExpressionAttributeValues"][":since"] == {"S": "2026-01-01T00:00:00.000000Z"}
    assert "Segment" not in orjson.loads(Expressions(Filters()).scan_body("events", 0, 1, None))


def test_query_body_puts_versions_in_the_key_condition() -> None:
    expressions = Expressions(Filters.build(aggregates=["a"], from_version=3, to_version=7, types=["T"]))
    body = orjson.loads(expressions.query_body("events", "a", 4, None))
    assert body["KeyConditionExpression"] == "#agg = :agg AND #version BETWEEN :from AND :to"
    assert body["ExpressionAttributeValues"][":from"] == {"N": "5"}  # after the watermark's version 4
    assert body["FilterExpression"] == "#type IN (:type0)"
    assert expressions.query_range_empty(7)
    assert not expressions.query_range_empty(6)


@pytest.mark.asyncio
async def test_segments_are_disjoint_and_complete(settings: Settings, dynamodb: Any) -> None:
    # given a log of 60 aggregates x 3 events
    events = make_events(60, 3)
    load_events(dynamodb, settings.events_table, events)
    config = ReplayConfig(settings.events_table, settings.playback_stream, settings.replay_checkpoints_table)
    segments = 7
    seen: dict[int, list[Record]] = {}
    async with AwsConnection(settings) as connection:
        for segment in range(segments):
            got: list[Record] = []
            part = Part(PartSpec("scan", segment, segments))
            reader = PartReader(connection.transport, config, got.extend)
            await reader.read(part)
            for record in got:
                part.confirm(record)
            assert part.done
            seen[segment] = got
    # then every event was read by exactly one segment, and each aggregate lives in one segment
    keys = Counter((r.aggregate_id, r.version) for got in seen.values() for r in got)
    assert set(keys) == {(e.aggregate_id, e.version) for e in events}
    assert set(keys.values()) == {1}
    homes = {r.aggregate_id: s for s, got in seen.items() for r in got}
    for segment, got in seen.items():
        assert all(homes[r.aggregate_id] == segment for r in got)
    assert sum(1 for got in seen.values() if got) > 1
