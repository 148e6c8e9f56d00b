"""--spread-shards: aggregates spread evenly over the target's shards with ExplicitHashKey, each aggregate kept on
one shard for the whole replay: across page ends, partial failures, and a stop and resume."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
from collections import Counter
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from eventlog.codec import event_from_data, event_to_item
from eventlog.envelope import Event, ReplayInfo
from eventlog.settings import Settings
from replayer.checkpoints import DynamoCheckpoints, _cut
from replayer.cli import build_config, parse_options
from replayer.config import Filters, Limits, ReplayConfig
from replayer.connect import AwsConnection
from replayer.fargate import container_command
from replayer.parts import Part, PartState
from replayer.plan import PartSpec
from replayer.records import Record, RecordEncoder
from replayer.sender import Sender
from replayer.shards import ShardMap
from replayer.wire import Transport
from tests.replayer.helpers import (
    FaultyTransport,
    RecordingTransport,
    StopAfterPuts,
    check_delivery,
    load_events,
    make_events,
    read_shards,
)
from tests.replayer.helpers import replay as _replay

MakeConfig = Callable[..., ReplayConfig]
ENCODER = RecordEncoder(ReplayInfo("r", "rebuild"))
STREAM = "spread-target"
SHARDS = ShardMap.uniform(4)


def _ids_on_shard_zero(count: int) -> list[str]:
    """Aggregate ids whose MD5 puts them all on shard 0 of 4: the worst case for hashing."""
    out: list[str] = []
    n = 0
    while len(out) < count:
        candidate = f"hot-{n:06d}"
        if SHARDS.shard_of(candidate) == 0:
            out.append(candidate)
        n += 1
    return out


def _record(aggregate_id: str, version: int) -> Record:
    event = Event(f"{aggregate_id}-e{version}", aggregate_id, "T", version, 1, "2026-01-01T00:00:00.000000Z",
                  "2026-01-01T00:00:00.000000Z", {"memo": "x"})  # fmt: skip
    return ENCODER.encode(orjson.loads(orjson.dumps(event_to_item(event))))


def _lanes_of(calls: list[list[dict[str, Any]]]) -> dict[str, set[str]]:
    lanes: dict[str, set[str]] = {}
    for call in calls:
        for entry in call:
            lanes.setdefault(entry["PartitionKey"], set()).add(entry["ExplicitHashKey"])
    return lanes


async def _send(sender: Sender, part: Part, batches: list[list[Record]]) -> None:
    async def feed() -> None:
        for records in batches:
            part.add(records)
            sender.put(records)
            await asyncio.sleep(0.05)  # the sender drains the queue between two pages
        sender.finish()

    await asyncio.wait_for(asyncio.gather(sender.run(), feed()), 30)


# -- the sender ---------------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_aggregates_that_all_hash_to_one_shard_are_spread_evenly() -> None:
    # given 40 aggregates of 5 events whose ids all hash to shard 0
    ids = _ids_on_shard_zero(40)
    records = [_record(a, v) for a in ids for v in range(1, 6)]
    transport = RecordingTransport()
    sender = Sender(transport, STREAM, SHARDS, spread=True)
    # when they are sent with spreading
    await _send(sender, Part(PartSpec("scan", 0, 1), limit=10**9), [records])
    # then every record carries an ExplicitHashKey, each aggregate one only, and each shard gets a quarter
    lanes = _lanes_of(transport.calls)
    assert set(lanes) == set(ids)
    assert all(len(keys) == 1 for keys in lanes.values())
    per_shard = Counter(SHARDS.shard_of_hash_key(next(iter(keys))) for keys in lanes.values())
    assert per_shard == {0: 10, 1: 10, 2: 10, 3: 10}
    # and the data and partition key are the record's own
    entry = transport.calls[0][0]
    assert event_from_data(base64.b64decode(entry["Data"])).aggregate_id == entry["PartitionKey"]


@pytest.mark.asyncio
async def test_without_spreading_no_hash_key_is_sent() -> None:
    transport = RecordingTransport()
    sender = Sender(transport, STREAM, SHARDS)
    await _send(sender, Part(PartSpec("scan", 0, 1), limit=10**9), [[_record("a-1", 1), _record("a-2", 1)]])
    assert all("ExplicitHashKey" not in entry for call in transport.calls for entry in call)


class _GatedTransport(RecordingTransport):
    """Records calls; while the gate is closed, calls wait (their records stay queued in the sender)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.gate.set()

    async def call(self, service: str, operation: str, body: bytes) -> bytes:
        await self.gate.wait()
        return await super().call(service, operation, body)


async def _until(condition: Callable[[], bool]) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("timed out")


@pytest.mark.asyncio
async def test_an_aggregate_keeps_its_lane_across_a_page_end() -> None:
    transport = _GatedTransport()
    sender = Sender(transport, STREAM, SHARDS, spread=True)
    running = asyncio.get_running_loop().create_task(sender.run())
    reading, other = Part(PartSpec("scan", 0, 2), limit=10**9), Part(PartSpec("scan", 1, 2), limit=10**9)
    # given an aggregate whose first events end a page and are all on the stream before the next page comes
    first = [_record("split", 1), _record("split", 2)]
    reading.add(first)
    sender.put(first)
    await _until(lambda: sender.waiting == 0)
    # and meanwhile work queued elsewhere, after which a fresh choice would avoid shard 0
    transport.gate.clear()
    backlog = [_record(f"other-{i}", 1) for i in range(5)]
    other.add(backlog)
    sender.put(backlog)
    # when the next page brings its later events
    second = [_record("split", 3), _record("split", 4)]
    reading.add(second)
    sender.put(second)
    transport.gate.set()
    sender.finish()
    await asyncio.wait_for(running, 30)
    # then they go with the hash key of its first events
    lanes = _lanes_of(transport.calls)
    assert lanes["split"] == {SHARDS.hash_key(0)}
    # (the others took turns: queues empty, the shard given least first; then the least queued)
    assert Counter(SHARDS.shard_of_hash_key(next(iter(k))) for a, k in lanes.items() if a != "split") == {
        0: 1, 1: 2, 2: 1, 3: 1,
    }  # fmt: skip


@pytest.mark.asyncio
async def test_a_resumed_part_puts_its_aggregates_back_on_their_lanes() -> None:
    # given a checkpoint that says aggregates "a" (the watermark's) and "b" (ahead) went to shard 3
    lane = SHARDS.hash_key(3)
    state = PartState("scan#0000000", ("a", 2), ahead={"b": 1}, lanes={"a": lane, "b": lane})
    part = Part(PartSpec("scan", 0, 1), state, limit=10**9)
    transport = RecordingTransport()
    sender = Sender(transport, STREAM, SHARDS, spread=True)
    records = [_record("a", 3), _record("b", 2), _record("c", 1)]
    part.add(records)
    # when the rest of their events are sent
    await _send(sender, part, [part.fresh(records)])
    # then they take the stored lane; a new aggregate takes the least loaded shard
    lanes = _lanes_of(transport.calls)
    assert lanes["a"] == lanes["b"] == {lane}
    assert lanes["c"] == {SHARDS.hash_key(0)}


# -- the watermark's lanes and the checkpoint --------------------------------------------------------------


def test_the_part_state_keeps_the_lanes_of_what_a_resume_meets_again() -> None:
    part = Part(PartSpec("scan", 0, 1), limit=10**9)
    records = [_record("a", 1), _record("a", 2), _record("b", 1), _record("b", 2), _record("c", 1)]
    for record, key in zip(records, ("10", "10", "20", "20", "30"), strict=True):
        record.hash_key = key
    part.add(records)
    # a's first event is under the watermark (a straddles it), b's first is ahead of it, c is not put
    part.confirm(records[0])
    part.confirm(records[2])
    state = part.state()
    assert state.position == ("a", 1)
    assert state.ahead == {"b": 1}
    assert state.lanes == {"a": "10", "b": "20"}
    # a page end on another aggregate moves the watermark off a's lane
    part.confirm(records[1])
    part.confirm(records[3])
    part.confirm(records[4])
    part.add_marker(("d", 7))
    assert part.state().lanes == {}


@pytest.mark.asyncio
async def test_lanes_survive_the_checkpoint_table(settings: Settings) -> None:
    state = PartState("scan#0000001", ("a", 4), put=4, ahead={"b": 2}, lanes={"a": "1", "b": "2"})
    async with AwsConnection(settings) as connection:
        store = DynamoCheckpoints(connection.dynamodb, settings.replay_checkpoints_table)
        await store.create("r-lanes", {"filters": {}})
        await store.save("r-lanes", [state])
        stored = await store.load("r-lanes")
    assert stored is not None
    assert stored.parts["scan#0000001"].lanes == {"a": "1", "b": "2"}


def test_a_cut_checkpoint_keeps_the_watermark_lane_and_a_lane_with_each_kept_ahead_entry() -> None:
    ahead = {f"agg-{i:06d}-{'x' * 200}": i for i in range(3000)}
    lanes = {key: str(2**127 + i) for i, key in enumerate(ahead)}
    lanes["watermark"] = "5"
    kept_ahead, kept_lanes = _cut(PartState("scan#0", ("watermark", 3), ahead=ahead, lanes=lanes))
    assert 0 < len(kept_ahead) < len(ahead)
    assert kept_lanes["watermark"] == "5"
    assert set(kept_lanes) == set(kept_ahead) | {"watermark"}
    size = len(orjson.dumps(kept_ahead)) + len(orjson.dumps(kept_lanes))
    assert size < 390_000


# -- end to end on the embedded AWS ----------------------------------------------------------------------


def _one_shard_each(shards: dict[str, list[Event]]) -> dict[str, set[str]]:
    """Aggregate id -> the shards its events are on (each must be on one)."""
    where: dict[str, set[str]] = {}
    for shard_id, events in shards.items():
        for event in events:
            where.setdefault(event.aggregate_id, set()).add(shard_id)
    return where


def _skewed_events(aggregates: int, per_aggregate: int) -> list[Event]:
    """Events of aggregates whose ids hash to shard 0 of a 4-shard stream."""
    ids = _ids_on_shard_zero(aggregates)
    renamed = []
    for event in make_events(aggregates, per_aggregate, seed=5):
        index = int(event.aggregate_id.rsplit("-", 1)[1])
        renamed.append(
            dataclasses.replace(event, aggregate_id=ids[index], event_id=f"{ids[index]}-e{event.version}")
        )
    return renamed


@pytest.mark.asyncio
@pytest.mark.parametrize("plan", ["scan", "query"])
async def test_a_spread_replay_under_partial_failures_is_ordered_and_even(
    settings: Settings, dynamodb: Any, kinesis: Any, make_config: MakeConfig, plan: str
) -> None:
    # given 24 aggregates x 10 events whose ids all hash to one shard of a 4-shard stream
    kinesis.create_stream(StreamName=STREAM, ShardCount=4)
    events = _skewed_events(24, 10)
    load_events(dynamodb, settings.events_table, events)
    ids = sorted({e.aggregate_id for e in events})
    filters = Filters.build(aggregates=ids) if plan == "query" else Filters()
    faulty: list[FaultyTransport] = []

    def wrap(inner: Transport) -> Transport:
        faulty.append(FaultyTransport(inner, seed=3, throttle_rate=0.1, fail_rate=0.1, error_rate=0.05))
        return faulty[0]

    # when it is replayed with spreading while PutRecords fails in part
    config = make_config(stream=STREAM, segments=2, spread_shards=True, replay_id="r-spread", filters=filters)
    summary = await _replay(settings, config, wrap)
    assert summary.plan == plan
    # then nothing is lost or reordered, each aggregate is on one shard, and the shards share the load (hashing
    # would put all 240 events on one; the choice follows queues, which move with the injected failures)
    shards = read_shards(kinesis, STREAM)
    result = check_delivery(events, [e for evs in shards.values() for e in evs])
    assert summary.outcome == "complete", summary.error
    assert faulty[0].refused > 0
    assert (result.lost, result.order_violations, result.duplicates) == (set(), [], 0)
    assert all(len(on) == 1 for on in _one_shard_each(shards).values())
    assert all(40 <= len(evs) <= 80 for evs in shards.values()), [len(evs) for evs in shards.values()]


@pytest.mark.asyncio
async def test_a_stopped_spread_replay_resumes_on_the_same_lanes(
    settings: Settings, dynamodb: Any, kinesis: Any, make_config: MakeConfig
) -> None:
    # given a spread replay stopped after a few calls, with aggregates part put
    kinesis.create_stream(StreamName=STREAM, ShardCount=4)
    # (histories of 2 to 12 events: a fresh choice on resume, with other work queued, would differ)
    events = [e for e in make_events(30, 12, seed=6) if e.version <= 2 + int(e.aggregate_id[-4:]) * 7 % 11]
    load_events(dynamodb, settings.events_table, events)
    stop = asyncio.Event()

    config = make_config(
        stream=STREAM, replay_id="r-spread-stop", segments=3, concurrency=2, limits=Limits(rate=4000),
        spread_shards=True,
    )  # fmt: skip
    first = await _replay(settings, config, lambda inner: StopAfterPuts(inner, stop), stop)
    assert first.outcome == "stopped"
    assert 0 < first.put < len(events)
    async with AwsConnection(settings) as connection:
        stored = await DynamoCheckpoints(connection.dynamodb, settings.replay_checkpoints_table).load(
            "r-spread-stop"
        )
    assert stored is not None
    assert stored.definition["spread_shards"] is True
    assert any(p.lanes for p in stored.parts.values()), "no aggregate was part put: the test proves nothing"
    # when it is resumed by id alone
    resumed = await _replay(settings, make_config(replay_id="r-spread-stop", resume=True))
    # then every event is there once, in order, and each aggregate's events are on one shard
    shards = read_shards(kinesis, STREAM)
    result = check_delivery(events, [e for evs in shards.values() for e in evs])
    assert resumed.outcome == "complete", resumed.error
    assert (result.lost, result.duplicates, result.order_violations) == (set(), 0, [])
    split = {a: on for a, on in _one_shard_each(shards).items() if len(on) > 1}
    assert split == {}


# -- how it is asked for -----------------------------------------------------------------------------------


def test_the_flag_and_the_environment_variable_turn_it_on_and_the_task_passes_it_on() -> None:
    base = Settings.from_env({"AWS_REGION": "us-east-1"})
    _, config = build_config(parse_options(["--spread-shards"], {}), base)
    assert config.spread_shards is True
    assert config.definition(4)["spread_shards"] is True
    _, from_env = build_config(parse_options([], {"ES_REPLAY_SPREAD_SHARDS": "true"}), base)
    assert from_env.spread_shards is True
    _, default = build_config(parse_options([], {}), base)
    assert default.spread_shards is False
    assert "spread_shards" not in default.definition(4)
    assert "--spread-shards" in container_command(config)
    assert "--spread-shards" not in container_command(default)


def test_a_resume_cannot_change_it() -> None:
    from replayer.errors import UsageError

    with pytest.raises(UsageError, match="drop --spread-shards"):
        build_config(
            parse_options(["--resume", "r-1", "--spread-shards"], {}),
            Settings.from_env({"AWS_REGION": "us-east-1"}),
        )


def test_md5_of_the_hot_ids_is_what_kinesis_uses() -> None:
    # the skew the tests above rely on is Kinesis's own hashing (MD5 of the partition key, big-endian)
    ids = _ids_on_shard_zero(3)
    assert all(int.from_bytes(hashlib.md5(i.encode()).digest(), "big") < 2**126 for i in ids)


@pytest.mark.asyncio
async def test_the_dry_run_estimates_the_time_with_the_shards_spread(
    settings: Settings, dynamodb: Any, kinesis: Any, make_config: MakeConfig
) -> None:
    # given 2,000 events of aggregates that all hash to one shard of a 4-shard stream
    kinesis.create_stream(StreamName=STREAM, ShardCount=4)
    load_events(dynamodb, settings.events_table, _skewed_events(200, 10))
    # when both kinds of replay are planned
    hashed = await _replay(settings, make_config(stream=STREAM, dry_run=True))
    spread = await _replay(settings, make_config(stream=STREAM, dry_run=True, spread_shards=True))
    # then hashing puts them all through one shard (2 s at 1,000/s) and spreading through four (0.5 s)
    assert (hashed.events, spread.events) == (2000, 2000)
    assert hashed.seconds_at_rate == pytest.approx(2.0, rel=0.01)
    assert spread.seconds_at_rate == pytest.approx(0.5, rel=0.01)
    assert (hashed.put, spread.put) == (0, 0)
