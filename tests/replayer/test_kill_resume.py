"""A replayer process killed (SIGKILL: no cleanup at all) in the middle, then resumed, loses nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from eventlog.settings import Settings
from tests.replayer.helpers import check_delivery, load_events, make_events, read_stream

ROOT = Path(__file__).resolve().parents[2]
RATE = 100  # events/s: slow enough to kill it half way
INTERVAL = 0.2  # seconds between checkpoint saves


def _checkpointed(dynamodb: Any, table: str, replay_id: str) -> int:
    items = dynamodb.query(
        TableName=table,
        KeyConditionExpression="replay_id = :r",
        ExpressionAttributeValues={":r": {"S": replay_id}},
        ConsistentRead=True,
    )["Items"]
    # The run item counts every record put (part items count only those under their watermark).
    return sum(int(i["put"]["N"]) for i in items if i["part"]["S"].startswith("run#"))


COMMAND = [sys.executable, "-m", "replayer", "--progress", "json", "--segments", "2"]


def _start(replay_id: str, stdout: int) -> subprocess.Popen[bytes]:
    """A replayer process putting the log at RATE events/s, saving checkpoints every INTERVAL seconds."""
    return subprocess.Popen(
        [*COMMAND, "--replay-id", replay_id, "--rate", str(RATE), "--checkpoint-interval", str(INTERVAL)],
        cwd=ROOT,
        env=dict(os.environ),
        stdout=stdout,
        stderr=subprocess.PIPE,
    )


def _wait_checkpointed(
    process: subprocess.Popen[bytes], dynamodb: Any, table: str, replay_id: str, at_least: int
) -> None:
    deadline = time.monotonic() + 30
    while _checkpointed(dynamodb, table, replay_id) < at_least:
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        assert time.monotonic() < deadline, "the replay made no checkpointed progress"
        time.sleep(0.05)


def _resume(replay_id: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [*COMMAND[:5], "--resume", replay_id], cwd=ROOT, env=dict(os.environ), capture_output=True, timeout=60
    )


def test_a_killed_replay_resumes_without_losing_an_event(
    settings: Settings, dynamodb: Any, kinesis: Any
) -> None:
    # given 400 events and a replayer process putting them at 100 events/s
    events = make_events(50, 8, seed=9)
    load_events(dynamodb, settings.events_table, events)
    first = _start("r-kill", subprocess.DEVNULL)
    try:
        # when it is killed with SIGKILL once a good share is checkpointed
        _wait_checkpointed(first, dynamodb, settings.replay_checkpoints_table, "r-kill", 100)
        first.send_signal(signal.SIGKILL)
    finally:
        first.wait(10)
    put_before = len(read_stream(kinesis, settings.playback_stream))
    assert put_before < len(events), "the replay finished before it could be killed"
    # and resumed by id alone
    resumed = _resume("r-kill")
    assert resumed.returncode == 0, resumed.stderr
    summary = orjson.loads(resumed.stdout.splitlines()[-1])
    # then every event is on the stream, none reordered, and only the in-flight window was repeated
    result = check_delivery(events, read_stream(kinesis, settings.playback_stream))
    assert result.lost == set()
    assert result.order_violations == []
    assert result.duplicates <= 150
    assert summary["outcome"] == "complete"
    assert summary["put"] <= len(events) - put_before + 150


def test_sigterm_stops_gracefully_and_the_resume_repeats_nothing(
    settings: Settings, dynamodb: Any, kinesis: Any
) -> None:
    # given a replayer process putting 300 events at 100 events/s (as a Fargate task would)
    events = make_events(30, 10, seed=4)
    load_events(dynamodb, settings.events_table, events)
    first = _start("r-term", subprocess.PIPE)
    _wait_checkpointed(first, dynamodb, settings.replay_checkpoints_table, "r-term", 50)
    # when ECS stops the task (SIGTERM)
    first.send_signal(signal.SIGTERM)
    out, err = first.communicate(timeout=30)
    # then it stops with exit code 3, says how to continue, and the resume repeats nothing
    assert first.returncode == 3, err
    assert b"stopped; continue with --resume r-term" in err
    assert orjson.loads(out.splitlines()[-1])["outcome"] == "stopped"
    put_before = len(read_stream(kinesis, settings.playback_stream))
    assert 0 < put_before < len(events)
    resumed = _resume("r-term")
    assert resumed.returncode == 0, resumed.stderr
    result = check_delivery(events, read_stream(kinesis, settings.playback_stream))
    assert (result.lost, result.duplicates, result.order_violations) == (set(), 0, [])
