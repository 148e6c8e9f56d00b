"""The playback Lambda: small replays run in the invocation, large ones start Fargate tasks (RunTask checked
against ECS's own request model with botocore's Stubber), a replay about to time out continues on Fargate."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.stub import ANY, Stubber

from devstack.lambda_runtime import LambdaContext, invoke
from eventlog.settings import Settings
from handlers import playback
from replayer.cli import build_config, parse_options
from tests.replayer.helpers import check_delivery, load_events, make_events, read_stream

FARGATE_ENV = {
    "ES_REPLAYER_CLUSTER": "arn:aws:ecs:us-east-1:123456789012:cluster/replayer",
    "ES_REPLAYER_TASK_DEFINITION": "es-replayer:3",
    "ES_REPLAYER_CONTAINER": "replayer",
    "ES_REPLAYER_SUBNETS": "subnet-1, subnet-2",
    "ES_REPLAYER_SECURITY_GROUPS": "sg-1",
}


@pytest.fixture(autouse=True, scope="module")
def _close_playback_container() -> Iterator[None]:
    yield
    playback.close()


@pytest.fixture
def fargate(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stubber]:
    for name, value in FARGATE_ENV.items():
        monkeypatch.setenv(name, value)
    with Stubber(playback.ecs_client()) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


class _HeldAfterFirstPut:
    """The replay's data path: the first PutRecords call goes through, later ones wait until the replay is
    told to stop (here: the invocation's deadline). Each aggregate has one record in flight at most, so once
    the second call waits nothing more can go: the deadline always finds the replay part put."""

    def __init__(self, inner: Any, stop: asyncio.Event) -> None:
        self._inner = inner
        self._stop = stop
        self.puts_answered = 0
        self.gave_up = False

    async def call(self, service: str, operation: str, body: bytes) -> bytes:
        if operation == "PutRecords" and self.puts_answered and not self.gave_up:
            # bounded: a replay that no deadline stops goes on after this, and completes (the tests say so)
            try:
                await asyncio.wait_for(self._stop.wait(), 15)
            except TimeoutError:
                self.gave_up = True
        answer: bytes = await self._inner.call(service, operation, body)
        if operation == "PutRecords":
            self.puts_answered += 1
        return answer


@pytest.fixture
def held_after_first_put(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Hold the playback function's replays after their first put while the returned flag is [True]."""
    armed = [True]
    run_replay = playback.run_replay

    async def held(config: Any, connection: Any, reporter: Any, stop: Any = None, **kwargs: Any) -> Any:
        if armed[0] and stop is not None:
            kwargs["transport"] = _HeldAfterFirstPut(kwargs.get("transport") or connection.transport, stop)
        return await run_replay(config, connection, reporter, stop, **kwargs)

    monkeypatch.setattr(playback, "run_replay", held)
    return armed


def _expect_run_task(stubber: Stubber, task: str, command: Any = ANY) -> None:
    stubber.add_response(
        "run_task",
        {"tasks": [{"taskArn": f"arn:aws:ecs:us-east-1:123456789012:task/replayer/{task}"}], "failures": []},
        {
            "cluster": FARGATE_ENV["ES_REPLAYER_CLUSTER"],
            "taskDefinition": "es-replayer:3",
            "launchType": "FARGATE",
            "count": 1,
            "startedBy": ANY,
            "networkConfiguration": {
                "awsvpcConfiguration": {
                    "subnets": ["subnet-1", "subnet-2"],
                    "securityGroups": ["sg-1"],
                    "assignPublicIp": "DISABLED",
                }
            },
            "overrides": {"containerOverrides": [{"name": "replayer", "command": command}]},
        },
    )


def _context(timeout_s: int = 900) -> LambdaContext:
    return LambdaContext(
        "es-test-playback", "arn:aws:lambda:us-east-1:123456789012:function:x", 1024, timeout_s
    )


class _LateContext(LambdaContext):
    """An invocation `window_s` seconds short of its stop margin, counted from when the handler first asks
    how long it has left (right before it starts the replay), not from the call: opening the container's
    connection took over 3 s once under load (seed 3), which left the replay no time at all."""

    def get_remaining_time_in_millis(self) -> int:
        if not getattr(self, "_asked", False):
            self._asked = True
            self._started = time.monotonic()
        return super().get_remaining_time_in_millis()


def _late_context(window_s: int = 3) -> LambdaContext:
    return _LateContext(
        "es-test-playback",
        "arn:aws:lambda:us-east-1:123456789012:function:x",
        1024,
        int(playback.STOP_MARGIN_S) + window_s,
    )


def test_a_small_replay_runs_in_the_invocation(settings: Settings, dynamodb: Any, kinesis: Any) -> None:
    events = make_events(6, 3)
    load_events(dynamodb, settings.events_table, events)
    # given two invocations in one container (the loop and the connection live on)
    first = invoke("playback", {"aggregates": ["acct-0001", "acct-0004"], "mode": "fix"}, prefix="es-test")
    loop = playback._loop
    second = invoke("playback", {"types": ["AccountOpened"], "replay_id": "r-opened"}, prefix="es-test")
    assert playback._loop is loop
    assert loop is not None
    assert not loop.is_closed()
    # then both ran here, completely
    assert (first["ran_on"], first["outcome"], first["summary"]["put"], first["summary"]["mode"]) == (
        "lambda", "complete", 6, "fix",
    )  # fmt: skip
    assert (second["replay_id"], second["outcome"], second["summary"]["put"]) == ("r-opened", "complete", 6)
    expected = [e for e in events if e.aggregate_id in ("acct-0001", "acct-0004") or e.version == 1]
    result = check_delivery(expected, read_stream(kinesis, settings.playback_stream))
    assert (result.lost, result.order_violations) == (set(), [])


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ({"aggregate": ["a"]}, "unknown key(s) aggregate"),
        ({"aggregates": "a", "types": [1]}, "types: expected a list of strings"),
        ({"since": "monday"}, "--since 'monday'"),
        ({"run_on": "ec2"}, "run_on 'ec2'"),
        ({"workers": 0}, "workers 0"),
        ({"workers": 2, "run_on": "lambda"}, "workers > 1 run on Fargate"),
        ({"segments": 2, "workers": 3}, "segments 2 is fewer than the 3 workers"),
        ({"resume": "r-1", "types": ["A"]}, "drop --type"),
        ({"dry_run": "yes"}, "dry_run: expected true or false"),
        ({"spread_shards": 1}, "spread_shards: expected true or false"),
        ({"resume": "r-1", "spread_shards": True}, "drop --spread-shards"),
    ],
)
def test_a_bad_event_is_answered_with_the_reason(
    settings: Settings, event: dict[str, Any], message: str
) -> None:
    answer = invoke("playback", event, prefix="es-test")
    assert answer["outcome"] == "invalid"
    assert message in answer["error"]


def test_a_large_replay_starts_fargate_workers_with_the_filters_as_arguments(
    settings: Settings, dynamodb: Any, kinesis: Any, fargate: Stubber
) -> None:
    load_events(dynamodb, settings.events_table, make_events(3, 2))
    for i in range(3):
        _expect_run_task(fargate, f"t{i}")
    event = {
        "types": ["MoneyDeposited"],
        "since": "2026-01-01T00:00:00Z",
        "workers": 3,
        "replay_id": "r-big",
        "spread_shards": True,
    }
    answer = invoke("playback", event, prefix="es-test")
    assert answer["ran_on"] == "fargate"
    assert answer["outcome"] == "started"
    assert [t.rsplit("/", 1)[1] for t in answer["tasks"]] == ["t0", "t1", "t2"]
    # and the container's arguments, parsed by the replayer's own CLI, are the same replay
    _, config = build_config(parse_options(answer["command"], {}), settings)
    assert config.replay_id == "r-big"
    assert config.filters.types == ("MoneyDeposited",)
    assert config.filters.since == "2026-01-01T00:00:00.000000Z"
    assert config.segments == 3  # decided once for all workers
    assert config.spread_shards is True
    assert str(config.worker) == "0/3"
    assert config.stream == settings.playback_stream
    assert read_stream(kinesis, settings.playback_stream) == []


def test_auto_sends_a_replay_too_slow_for_the_invocation_to_fargate(
    settings: Settings, dynamodb: Any, fargate: Stubber
) -> None:
    load_events(dynamodb, settings.events_table, make_events(20, 5))
    _expect_run_task(fargate, "slow")
    # 100 events at 10 events/s take 10 s; a 30 s invocation has (30 - 20) / 2 = 5 s to spare
    answer = playback.handler({"rate": 10}, _context(timeout_s=30))
    assert answer["ran_on"] == "fargate"
    assert "--rate" in answer["command"]


def test_a_large_dry_run_goes_to_fargate_too(settings: Settings, dynamodb: Any, fargate: Stubber) -> None:
    load_events(dynamodb, settings.events_table, make_events(20, 5))
    _expect_run_task(fargate, "dry")
    answer = playback.handler({"rate": 10, "dry_run": True, "replay_id": "r-dry"}, _context(timeout_s=30))
    assert answer["ran_on"] == "fargate"
    _, config = build_config(parse_options(answer["command"], {}), settings)
    assert config.dry_run
    assert config.replay_id == "r-dry"


def test_a_long_aggregate_list_goes_to_fargate_through_the_checkpoint_table(
    settings: Settings, dynamodb: Any, fargate: Stubber
) -> None:
    aggregates = [f"acct-{i:05d}" for i in range(1500)]
    _expect_run_task(fargate, "long", ["--progress", "json", "--resume", "r-long", "--checkpoint-table", ANY])
    answer = invoke("playback", {"aggregates": aggregates, "replay_id": "r-long"}, prefix="es-test")
    assert answer["ran_on"] == "fargate"
    definition = dynamodb.get_item(
        TableName=settings.replay_checkpoints_table,
        Key={"replay_id": {"S": "r-long"}, "part": {"S": "replay"}},
    )
    assert "Item" in definition


def test_a_replay_running_out_of_time_continues_on_fargate(
    settings: Settings, dynamodb: Any, kinesis: Any, fargate: Stubber, held_after_first_put: list[bool]
) -> None:
    events = make_events(20, 10)
    load_events(dynamodb, settings.events_table, events)
    resume = ["--progress", "json", "--resume", "r-late", "--checkpoint-table", ANY, "--rate", "100.0"]
    _expect_run_task(fargate, "cont", resume)
    # given an invocation 3 s short of its stop margin and 200 events, held after their first put
    answer = playback.handler({"rate": 100, "replay_id": "r-late", "run_on": "lambda"}, _late_context())
    # then it stopped gracefully, with part put, and a task continues from the checkpoint
    assert answer["outcome"] == "stopped"
    assert 0 < answer["summary"]["put"] < len(events)
    assert answer["continued_on"] == "fargate"
    assert len(read_stream(kinesis, settings.playback_stream)) == answer["summary"]["put"]


def test_without_fargate_a_late_replay_says_how_to_resume(
    settings: Settings, dynamodb: Any, held_after_first_put: list[bool]
) -> None:
    load_events(dynamodb, settings.events_table, make_events(20, 10))
    answer = playback.handler({"rate": 100, "replay_id": "r-late2"}, _late_context())
    assert answer["outcome"] == "stopped"
    assert 0 < answer["summary"]["put"] < 200
    assert answer["resume"] == {"resume": "r-late2"}
    held_after_first_put[0] = False
    done = playback.handler({"resume": "r-late2"}, _context())
    assert done["outcome"] == "complete"
    assert answer["summary"]["put"] + done["summary"]["put"] == 200


def test_half_a_fargate_configuration_is_a_clear_failure(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ES_REPLAYER_CLUSTER", "replayer")
    answer = invoke("playback", {}, prefix="es-test")
    assert answer["outcome"] == "failed"
    assert "Fargate replays need ES_REPLAYER_TASK_DEFINITION" in answer["error"]
