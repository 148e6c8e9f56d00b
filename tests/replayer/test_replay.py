"""The replayer end to end against the embedded AWS (moto): what reaches the stream, in what order."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from eventlog.envelope import ReplayInfo
from eventlog.settings import Settings
from replayer.checkpoints import DynamoCheckpoints
from replayer.config import Filters, Limits, ReplayConfig, Worker
from replayer.connect import AwsConnection
from replayer.errors import AwsError
from replayer.wire import Transport
from tests.replayer.helpers import (
    FaultyTransport,
    StopAfterPuts,
    check_delivery,
    load_events,
    make_events,
    read_stream,
)
from tests.replayer.helpers import replay as _replay

MakeConfig = Callable[..., ReplayConfig]


@pytest.mark.asyncio
async def test_replays_every_event_in_order_with_the_replay_mark(
    settings: Settings, dynamodb: Any, kinesis: Any, make_config: MakeConfig
) -> None:
    # given a log of 40 aggregates x 6 events
    events = make_events(40, 6)
    load_events(dynamodb, settings.events_table, events)
    # when it is replayed in "fix" mode over 4 segments
    summary = await _replay(settings, make_config(mode="fix", segments=4, replay_id="r-all"))
    # then every event is on the stream once, in version order per aggregate, marked with the replay
    delivered = read_stream(kinesis, settings.playback_stream)
    result = check_delivery(events, delivered)
    assert summary.outcome == "complete", summary.error
    assert summary.exit_code == 0
    assert (result.order_violations, result.lost, result.unexpected, result.duplicates) == (
        [],
        set(),
        set(),
        0,
    )
    assert summary.put == len(events) == summary.read
    assert {e.replay for e in delivered} == {ReplayInfo("r-all", "fix")}
    # and the envelope is the original event plus the mark
    original = {(e.aggregate_id, e.version): e for e in events}
    for event in delivered[:20]:
        assert event.to_dict() == {
            **original[(event.aggregate_id, event.version)].to_dict(),
            "replay": event.replay.to_dict(),
        }  # type: ignore[union-attr]


@pytest.mark.asyncio
async def test_an_empty_log_is_a_complete_replay_of_nothing(
    settings: Settings, kinesis: Any, make_config: MakeConfig
) -> None:
    summary = await _replay(settings, make_config(segments=3))
    assert (summary.outcome, summary.read, summary.put) == ("complete", 0, 0)
    assert read_stream(kinesis, settings.playback_stream) == []


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("faults", "expect_repeats"),
    [
        pytest.param({"throttle_rate": 0.15}, False, id="throttled"),
        pytest.param({"fail_rate": 0.15}, False, id="internal-failure"),
        pytest.param({"throttle_rate": 0.1, "fail_rate": 0.1, "error_rate": 0.1}, False, id="mixed-and-503"),
        pytest.param({"unknown_rate": 0.25}, True, id="outcome-unknown"),
    ],
)
async def test_order_per_aggregate_holds_under_partial_failures(
    settings: Settings,
    dynamodb: Any,
    kinesis: Any,
    make_config: MakeConfig,
    faults: dict[str, float],
    expect_repeats: bool,
) -> None:
    # given aggregates with many events each, so retried records have later events waiting behind them
    events = make_events(12, 15, seed=3)
    load_events(dynamodb, settings.events_table, events)
    faulty: list[FaultyTransport] = []

    def wrap(inner: Transport) -> Transport:
        faulty.append(FaultyTransport(inner, seed=11, **faults))
        return faulty[0]

    # when PutRecords fails in part (or its outcome is lost) on a seeded schedule
    summary = await _replay(settings, make_config(segments=2), wrap)
    # then nothing is lost or reordered; only an unknown outcome may repeat a record
    result = check_delivery(events, read_stream(kinesis, settings.playback_stream))
    assert summary.outcome == "complete", summary.error
    assert result.order_violations == []
    assert result.lost == set()
    assert faulty[0].refused + faulty[0].unknown > 0, "the schedule injected nothing"
    assert summary.retried > 0
    if expect_repeats:
        assert 0 < result.duplicates <= summary.maybe_repeated
    else:
        assert result.duplicates == 0


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "filters",
    [
        pytest.param({"types": ["MoneyDeposited", "AccountClosed"]}, id="types"),
        pytest.param({"since": "2026-01-01T00:00:03Z"}, id="since"),
        pytest.param({"until": "2026-01-01T00:00:03Z"}, id="until"),
        pytest.param(
            {"since": "2026-01-01T00:00:02Z", "until": "2026-01-01T00:00:05.005+00:00"}, id="window"
        ),
        pytest.param({"from_version": 3}, id="from-version"),
        pytest.param({"to_version": 2}, id="to-version"),
        pytest.param(
            {"from_version": 2, "to_version": 4, "types": ["MoneyWithdrawn"]}, id="versions-and-type"
        ),
        pytest.param({"aggregates": ["acct-0003", "acct-0007", "nobody"]}, id="aggregates"),
        pytest.param({"aggregates": ["acct-0001", "acct-0002"], "from_version": 5}, id="aggregates-versions"),
        pytest.param({"aggregates": ["acct-0004"], "since": "2026-01-01T00:00:04Z"}, id="aggregates-since"),
    ],
)
async def test_each_filter_puts_exactly_the_matching_events(
    settings: Settings,
    dynamodb: Any,
    kinesis: Any,
    make_config: MakeConfig,
    filters: dict[str, Any],
) -> None:
    # given 10 aggregates x 6 events (recorded one second apart per version, types cycling)
    events = make_events(10, 6)
    load_events(dynamodb, settings.events_table, events)
    chosen = Filters.build(**filters)
    expected = [e for e in events if chosen.matches(e)]
    assert 0 < len(expected) < len(events)
    # when replayed with the filter
    summary = await _replay(settings, make_config(filters=chosen, segments=3))
    # then exactly the matching events arrive, in order
    result = check_delivery(expected, read_stream(kinesis, settings.playback_stream))
    assert summary.outcome == "complete", summary.error
    assert (result.lost, result.unexpected, result.order_violations) == (set(), set(), [])
    assert summary.put == len(expected)


@pytest.mark.asyncio
async def test_aggregate_ids_are_queried_never_scanned(
    settings: Settings, dynamodb: Any, kinesis: Any, make_config: MakeConfig
) -> None:
    load_events(dynamodb, settings.events_table, make_events(8, 3))
    calls: list[FaultyTransport] = []

    def wrap(inner: Transport) -> Transport:
        calls.append(FaultyTransport(inner))
        return calls[0]

    summary = await _replay(
        settings, make_config(filters=Filters.build(aggregates=["acct-0001", "acct-0005"])), wrap
    )
    operations = {op for _, op in calls[0].calls}
    assert summary.put == 6
    assert "Query" in operations
    assert "Scan" not in operations
    # and without aggregate ids the plan scans
    calls.clear()
    await _replay(settings, make_config(filters=Filters.build(types=["AccountOpened"])), wrap)
    operations = {op for _, op in calls[0].calls}
    assert "Scan" in operations
    assert "Query" not in operations


@pytest.mark.asyncio
async def test_workers_share_a_replay_and_cover_every_event_exactly_once(
    settings: Settings, dynamodb: Any, kinesis: Any, make_config: MakeConfig
) -> None:
    # given a log, and three workers of one replay started together with the same id
    events = make_events(30, 4)
    load_events(dynamodb, settings.events_table, events)
    configs = [make_config(replay_id="r-shared", segments=7, worker=Worker(i, 3)) for i in range(3)]
    # when they run at once
    summaries = await asyncio.gather(*(_replay(settings, c) for c in configs))
    # then together they put every event exactly once, in order, and no two read the same part
    result = check_delivery(events, read_stream(kinesis, settings.playback_stream))
    assert [s.outcome for s in summaries] == ["complete"] * 3
    assert (result.lost, result.duplicates, result.order_violations) == (set(), 0, [])
    assert sum(s.put for s in summaries) == len(events)
    assert sorted(s.parts for s in summaries) == [2, 2, 3]


@pytest.mark.asyncio
async def test_a_worker_with_another_definition_cannot_join(
    settings: Settings, dynamodb: Any, make_config: MakeConfig
) -> None:
    load_events(dynamodb, settings.events_table, make_events(3, 2))
    first = await _replay(settings, make_config(replay_id="r-join", segments=2, worker=Worker(0, 2)))
    assert first.outcome == "complete"
    with pytest.raises(Exception, match="already exists"):
        await _replay(settings, make_config(replay_id="r-join", segments=4, worker=Worker(1, 2)))


@pytest.mark.asyncio
async def test_a_stopped_replay_resumes_without_losing_or_repeating(
    settings: Settings, dynamodb: Any, kinesis: Any, make_config: MakeConfig
) -> None:
    # given a replay that is stopped (as SIGTERM or the Lambda's deadline does) after a few calls
    events = make_events(30, 8, seed=5)
    load_events(dynamodb, settings.events_table, events)
    stop = asyncio.Event()

    config = make_config(replay_id="r-stop", segments=3, concurrency=2, limits=Limits(rate=4000))
    first = await _replay(settings, config, lambda inner: StopAfterPuts(inner, stop), stop)
    assert first.outcome == "stopped"
    assert first.exit_code == 3
    assert 0 < first.put < len(events)
    # when it is resumed
    resumed = await _replay(settings, make_config(replay_id="r-stop", resume=True))
    # then every event is there exactly once: a graceful stop saves exact watermarks
    result = check_delivery(events, read_stream(kinesis, settings.playback_stream))
    assert resumed.outcome == "complete", resumed.error
    assert (result.lost, result.duplicates, result.order_violations) == (set(), 0, [])
    assert first.put + resumed.put == len(events)


@pytest.mark.asyncio
async def test_resume_takes_the_stored_definition(
    settings: Settings, dynamodb: Any, kinesis: Any, make_config: MakeConfig
) -> None:
    events = make_events(6, 3)
    load_events(dynamodb, settings.events_table, events)
    chosen = Filters.build(aggregates=["acct-0002", "acct-0004"], to_version=2)
    first = await _replay(settings, make_config(replay_id="r-def", filters=chosen, mode="feature"))
    assert first.put == 4
    # a resume of a finished replay has nothing left to do, whatever the flags would say
    again = await _replay(settings, make_config(replay_id="r-def", resume=True))
    assert (again.outcome, again.put, again.mode) == ("complete", 0, "feature")
    async with AwsConnection(settings) as connection:
        stored = await DynamoCheckpoints(connection.dynamodb, settings.replay_checkpoints_table).load("r-def")
    assert stored is not None
    assert stored.definition["filters"]["aggregates"] == ["acct-0002", "acct-0004"]
    assert all(p.done for p in stored.parts.values())


@pytest.mark.asyncio
async def test_dry_run_counts_and_puts_nothing(
    settings: Settings, dynamodb: Any, kinesis: Any, make_config: MakeConfig
) -> None:
    events = make_events(9, 5)
    load_events(dynamodb, settings.events_table, events)
    summary = await _replay(settings, make_config(dry_run=True, filters=Filters.build(from_version=2)))
    assert summary.outcome == "dry-run"
    assert summary.exit_code == 0
    assert summary.events == 36
    assert summary.aggregates == 9
    assert summary.bytes is not None
    assert summary.bytes > 36 * 200
    assert summary.seconds_at_rate is not None
    assert summary.seconds_at_rate > 0
    assert summary.estimated_cost_usd["total"] > 0
    assert read_stream(kinesis, settings.playback_stream) == []
    # and no checkpoint was written
    assert dynamodb.scan(TableName=settings.replay_checkpoints_table)["Count"] == 0


@pytest.mark.asyncio
async def test_a_record_that_keeps_failing_fails_the_replay_and_blocks_its_aggregate(
    settings: Settings, dynamodb: Any, kinesis: Any, make_config: MakeConfig
) -> None:
    events = make_events(3, 4)
    load_events(dynamodb, settings.events_table, events)

    class Refuse(FaultyTransport):
        """Refuses acct-0001 v2 for ever with a non-retryable call error after a few tries."""

        async def call(self, service: str, operation: str, body: bytes) -> bytes:
            if operation == "PutRecords" and b"acct-0001-e2" in _decoded(body):
                raise AwsError("AccessDeniedException", "not allowed", status=400)
            return await super().call(service, operation, body)

    summary = await _replay(settings, make_config(segments=1), lambda inner: Refuse(inner))
    delivered = read_stream(kinesis, settings.playback_stream)
    assert summary.outcome == "failed"
    assert summary.exit_code == 1
    assert summary.error is not None
    assert "AccessDeniedException" in summary.error
    # acct-0001 stops before v2 (never v3 without v2)
    assert [e.version for e in delivered if e.aggregate_id == "acct-0001"] == [1]


def _decoded(body: bytes) -> bytes:
    import base64

    import orjson

    return b"".join(base64.b64decode(r["Data"]) for r in orjson.loads(body)["Records"])


@pytest.mark.asyncio
async def test_a_read_refused_for_good_fails_the_replay_naming_the_table(
    settings: Settings, dynamodb: Any, make_config: MakeConfig
) -> None:
    load_events(dynamodb, settings.events_table, make_events(2, 2))

    class DenyScan(FaultyTransport):
        async def call(self, service: str, operation: str, body: bytes) -> bytes:
            if operation == "Scan":
                raise AwsError("AccessDeniedException", "no scan for you", status=400)
            return await super().call(service, operation, body)

    summary = await _replay(settings, make_config(), lambda inner: DenyScan(inner))
    assert summary.outcome == "failed"
    assert (
        summary.error
        == f"Scan on table {settings.events_table} failed: AccessDeniedException: no scan for you"
    )
