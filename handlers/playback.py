"""The playback Lambda: invoked by hand with filters, it replays a small part of the log onto the playback stream
itself, and hands a large replay to the replayer's Fargate task (docs/replayer.md, "The playback Lambda").

The event holds the CLI's filters and options (every key optional):

    {"aggregates": ["acct-1", ...], "types": ["MoneyDeposited"], "since": "2026-01-01T00:00:00Z",
     "until": "...", "from_version": 1, "to_version": 10, "mode": "rebuild" | "fix" | "feature",
     "replay_id": "...", "resume": "replay-...", "stream": "...", "segments": 8, "rate": 500,
     "max_bytes_per_s": 1048576, "concurrency": 16, "dry_run": false, "state_table": null,
     "spread_shards": false,
     "run_on": "auto" | "lambda" | "fargate", "workers": 1}

`run_on: auto` (the default) runs here when the replay is small: at most SMALL_AGGREGATES aggregate ids, or a
scan whose table (its item count, an upper bound of what matches) can be put at the stream's pace in half the
time this invocation has left. Otherwise, or with `workers` > 1, it starts Fargate tasks. A replay that runs
here and is about to run out of time stops gracefully (watermarks saved) and continues on Fargate with
`--resume` when Fargate is configured; else the answer says how to resume.

The handler is synchronous and owns one event loop for the container's life (never asyncio.run per
invocation), in which the replayer's connection (clients, HTTP pool) lives from one invocation to the next.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

import boto3

from eventlog.settings import Settings
from handlers import runtime
from handlers.observability import Instrumentation
from replayer.checkpoints import DynamoCheckpoints
from replayer.cli import DEFINITION_OPTIONS, build_config
from replayer.config import ReplayConfig, Worker
from replayer.connect import AwsConnection
from replayer.engine import run_replay
from replayer.errors import ReplayError, UsageError
from replayer.fargate import FargateTarget, command_fits, container_command, run_tasks
from replayer.plan import default_query_parts, default_segments
from replayer.report import JsonLinesReporter, Summary

instrumentation = Instrumentation(service="playback")
logger = instrumentation.logger

SMALL_AGGREGATES = 1000
# Stop this long before the Lambda's timeout: the calls in flight finish and the watermarks are saved.
STOP_MARGIN_S = 20.0

RunOn = Literal["auto", "lambda", "fargate"]
_EVENT_KEYS = {
    "aggregates": "aggregate",
    "types": "type",
    "since": "since",
    "until": "until",
    "from_version": "from_version",
    "to_version": "to_version",
    "mode": "mode",
    "replay_id": "replay_id",
    "resume": "resume",
    "stream": "stream",
    "segments": "segments",
    "rate": "rate",
    "max_bytes_per_s": "max_bytes_per_s",
    "concurrency": "concurrency",
    "dry_run": "dry_run",
    "state_table": "state_table",
    "spread_shards": "spread_shards",
}
_OWN_KEYS = ("run_on", "workers")


@dataclass(frozen=True)
class PlaybackRequest:
    """An invocation's event, validated."""

    settings: Settings
    config: ReplayConfig
    run_on: RunOn = "auto"
    workers: int = 1

    @classmethod
    def from_event(cls, event: Any, settings: Settings) -> PlaybackRequest:
        """Validate the event (raise UsageError naming the bad key)."""
        if not isinstance(event, Mapping):
            raise UsageError("the event must be a JSON object of filters (see docs/replayer.md)")
        unknown = sorted(set(event) - set(_EVENT_KEYS) - set(_OWN_KEYS))
        if unknown:
            raise UsageError(
                f"unknown key(s) {', '.join(unknown)}; known: {', '.join([*_EVENT_KEYS, *_OWN_KEYS])}"
            )
        options: dict[str, Any] = {}
        for key, option in _EVENT_KEYS.items():
            value = event.get(key)
            if value is None:
                continue
            if key in ("aggregates", "types"):
                if isinstance(value, str):
                    value = [value]
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    raise UsageError(f"{key}: expected a list of strings")
            elif key in ("dry_run", "spread_shards"):
                if not isinstance(value, bool):
                    raise UsageError(f"{key}: expected true or false")
            elif isinstance(value, (dict, list)):
                raise UsageError(f"{key}: expected a single value")
            options[option] = value
        options["_given"] = set(options) & set(DEFINITION_OPTIONS)
        run_on = event.get("run_on", "auto")
        if run_on not in ("auto", "lambda", "fargate"):
            raise UsageError(f"run_on {run_on!r}: expected auto, lambda or fargate")
        workers = event.get("workers", 1)
        if not isinstance(workers, int) or isinstance(workers, bool) or not 1 <= workers <= 100:
            raise UsageError(f"workers {workers!r}: expected a whole number from 1 to 100")
        if workers > 1 and run_on == "lambda":
            raise UsageError("workers > 1 run on Fargate; drop run_on: lambda")
        resolved, config = build_config(options, settings)
        # Explicit segments must leave every worker at least one (ReplayConfig checks its own worker count).
        if config.segments is not None and config.segments < workers:
            raise UsageError(f"segments {config.segments} is fewer than the {workers} workers")
        return cls(resolved, config, run_on, workers)


# -- the container's one event loop and connection ----------------------------------------------------------

_loop: asyncio.AbstractEventLoop | None = None
_connection: AwsConnection | None = None


def _event_loop() -> asyncio.AbstractEventLoop:
    global _loop
    if _loop is None or _loop.is_closed():
        _loop = asyncio.new_event_loop()
    return _loop


async def _connection_for(settings: Settings) -> AwsConnection:
    """The container's connection, reopened only if the settings changed (tests, the devstack)."""
    global _connection
    if _connection is not None and _connection.settings != settings:
        await _connection.close()
        _connection = None
    if _connection is None:
        _connection = await AwsConnection(settings, pool_size=48).open()
    return _connection


def close() -> None:
    """Close the container's connection and event loop (for tests and the devstack; Lambda never calls it)."""
    global _connection, _loop
    if _loop is not None and not _loop.is_closed():
        if _connection is not None:
            _loop.run_until_complete(_connection.close())
        _loop.close()
    _connection = None
    _loop = None


@runtime.per_container
def ecs_client() -> Any:
    """The ECS client that starts replayer tasks (made on first use, kept for the container's life)."""
    settings = runtime.settings()
    return boto3.session.Session(region_name=settings.region).client(
        "ecs", endpoint_url=settings.endpoint_url
    )


# -- the handler --------------------------------------------------------------------------------------------


@instrumentation.handler
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Replay what the event selects, here or on Fargate; answer with what was done (see the module doc)."""
    try:
        request = PlaybackRequest.from_event(event, runtime.settings())
    except (UsageError, ValueError) as exc:
        logger.warning("invalid playback request", extra={"error": str(exc)})
        return {"outcome": "invalid", "error": str(exc)}
    try:
        target = FargateTarget.from_env(os.environ)
        result = _event_loop().run_until_complete(_play(request, target, context))
    except ReplayError as exc:
        logger.error("playback failed", extra={"error": str(exc), "replay_id": request.config.replay_id})
        return {"outcome": "failed", "error": str(exc), "replay_id": request.config.replay_id}
    logger.info("playback done", extra={"result": result})
    return result


async def _play(request: PlaybackRequest, target: FargateTarget | None, context: Any) -> dict[str, Any]:
    connection = await _connection_for(request.settings)
    config = request.config
    where = request.run_on
    if where == "auto":
        where = await _choose(request, connection, target, context)
    if where == "fargate":
        if target is None:
            raise UsageError("this replay needs Fargate, but ES_REPLAYER_CLUSTER and friends are not set")
        return await _start_fargate(request, connection, target)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    remaining_s = context.get_remaining_time_in_millis() / 1000
    timer = loop.call_later(max(0.0, remaining_s - STOP_MARGIN_S), stop.set)
    try:
        summary = await run_replay(config, connection, JsonLinesReporter(interval=30.0), stop)
    finally:
        timer.cancel()
    instrumentation.count("EventsReplayed", summary.put)
    result: dict[str, Any] = {
        "ran_on": "lambda",
        "replay_id": summary.replay_id,
        "outcome": summary.outcome,
        "summary": summary.to_dict(),
    }
    if summary.outcome == "stopped":
        result.update(await _hand_over(summary, request, connection, target))
    return result


async def _choose(
    request: PlaybackRequest, connection: AwsConnection, target: FargateTarget | None, context: Any
) -> Literal["lambda", "fargate"]:
    """Small enough for this invocation? (See the module docstring.) Without Fargate, always here."""
    config = request.config
    if target is None:
        return "lambda"
    if request.workers > 1:
        return "fargate"
    if config.resume:
        return "fargate"  # a replay being resumed was large enough to outlive an invocation before
    if config.filters.uses_query and config.dry_run:
        return "lambda"  # counting aggregates by Query is quick, and a long id list cannot go as arguments
    if config.filters.uses_query:
        return "lambda" if len(config.filters.aggregates) <= SMALL_AGGREGATES else "fargate"
    table = await connection.describe_table(config.events_table, "events table")
    stream = await connection.describe_stream(config.stream)
    pace = len(stream.shard_map) * 1000.0
    if config.limits.rate:
        pace = min(pace, config.limits.rate)
    budget = (context.get_remaining_time_in_millis() / 1000 - STOP_MARGIN_S) / 2
    return "lambda" if table.item_count / pace <= budget else "fargate"


async def _start_fargate(
    request: PlaybackRequest, connection: AwsConnection, target: FargateTarget, resume: bool = False
) -> dict[str, Any]:
    config = request.config
    workers = request.workers
    if not resume and not config.resume and config.segments is None:
        # Every worker must plan the same segments: decide them once, here.
        if config.filters.uses_query:
            segments = default_query_parts(len(config.filters.aggregates), workers)
        else:
            size = (await connection.describe_table(config.events_table, "events table")).size_bytes
            segments = default_segments(size, workers)
        config = replace(config, segments=segments)
    commands = [container_command(config, Worker(i, workers), resume) for i in range(workers)]
    if not resume and not config.resume and not all(command_fits(c) for c in commands):
        # Too long for an ECS override (a long aggregate list): store the definition, resume from it.
        assert config.segments is not None
        await connection.describe_table(config.checkpoint_table, "checkpoint table")
        async with connection.explained(f"checkpoint table {config.checkpoint_table}"):
            await DynamoCheckpoints(connection.dynamodb, config.checkpoint_table).create(
                config.replay_id, config.definition(config.segments)
            )
        commands = [container_command(config, Worker(i, workers), resume=True) for i in range(workers)]
    tasks = await asyncio.to_thread(run_tasks, ecs_client(), target, commands, config.replay_id)
    return {
        "ran_on": "fargate",
        "replay_id": config.replay_id,
        "outcome": "started",
        "workers": workers,
        "tasks": tasks,
        "command": commands[0],
    }


async def _hand_over(
    summary: Summary, request: PlaybackRequest, connection: AwsConnection, target: FargateTarget | None
) -> dict[str, Any]:
    """Out of time here: continue on Fargate, or say how to continue."""
    if target is None:
        return {"resume": {"resume": summary.replay_id}}
    resumed = replace(request, config=replace(request.config, resume=True), workers=1)
    started = await _start_fargate(resumed, connection, target, resume=True)
    return {"continued_on": "fargate", "tasks": started["tasks"]}
