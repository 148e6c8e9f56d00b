"""The optional definition field `state_table`: from a flag, its variable or the playback Lambda's event, stored
in the replay's definition (absent when not given), read back on resume, passed on to Fargate tasks, and
checked before anything is put (a missing shadow table would stall the write function's shard)."""

from __future__ import annotations

import os
from typing import Any

import orjson
import pytest

from devstack.lambda_runtime import invoke
from eventlog.resources import STATE_TABLE
from eventlog.settings import Settings
from handlers import playback
from replayer.cli import build_config, main, parse_options
from replayer.config import ReplayConfig
from replayer.errors import UsageError
from replayer.fargate import container_command
from tests.replayer.helpers import load_events, make_events, read_stream

SHADOW = "es-test-state-rebuild-r1"


def _run(capsys: pytest.CaptureFixture[str], *argv: str, **env: str) -> tuple[int, str, str]:
    code = main(list(argv), {**os.environ, **env})
    out, err = capsys.readouterr()
    return code, out, err


def _definition(dynamodb: Any, settings: Settings, replay_id: str) -> dict[str, Any]:
    item = dynamodb.get_item(
        TableName=settings.replay_checkpoints_table,
        Key={"replay_id": {"S": replay_id}, "part": {"S": "replay"}},
    )["Item"]
    return dict(orjson.loads(item["definition"]["S"]))


@pytest.fixture
def shadow(settings: Settings, dynamodb: Any) -> str:
    dynamodb.create_table(**STATE_TABLE.create_table_kwargs(SHADOW))
    return SHADOW


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--state-table", SHADOW, "--mode", "fix"], "--state-table goes with --mode rebuild"),
        (["--state-table", SHADOW, "--mode", "feature"], "--state-table goes with --mode rebuild"),
        (["--state-table", "no spaces allowed"], "not a DynamoDB table name"),
        (["--state-table", "ab"], "not a DynamoDB table name"),
        (["--resume", "r-1", "--state-table", SHADOW], "drop --state-table"),
    ],
)
def test_a_bad_state_table_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, out, err = _run(capsys, *argv)
    assert (code, out) == (2, "")
    assert message in err
    assert err.count("\n") == 1


def test_a_missing_state_table_stops_the_replay_before_anything_is_put(
    settings: Settings, dynamodb: Any, kinesis: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    load_events(dynamodb, settings.events_table, make_events(2, 2))
    code, _, err = _run(capsys, "--progress", "none", "--state-table", "es-test-state-rebuild-typo")
    assert code == 1
    assert "state table es-test-state-rebuild-typo not found at http://" in err
    assert read_stream(kinesis, settings.playback_stream) == []


def test_the_state_table_is_stored_in_the_definition_and_kept_on_resume(
    settings: Settings, dynamodb: Any, kinesis: Any, shadow: str, capsys: pytest.CaptureFixture[str]
) -> None:
    load_events(dynamodb, settings.events_table, make_events(3, 2))
    code, out, err = _run(capsys, "--progress", "json", "--replay-id", "r-shadow", "--state-table", shadow)
    assert code == 0, err
    assert orjson.loads(out.splitlines()[0])["state_table"] == shadow
    assert _definition(dynamodb, settings, "r-shadow")["state_table"] == shadow
    # A replay without it stores no such field: absent means the live state table.
    assert _run(capsys, "--progress", "none", "--replay-id", "r-live")[0] == 0
    assert "state_table" not in _definition(dynamodb, settings, "r-live")
    # Resuming takes the stored value.
    options = parse_options(["--resume", "r-shadow"], {})
    _, config = build_config(options, settings)
    assert config.with_definition(_definition(dynamodb, settings, "r-shadow")).state_table == shadow
    assert len(read_stream(kinesis, settings.playback_stream)) == 12


def test_the_variable_sets_it_and_the_flag_wins(settings: Settings) -> None:
    _, config = build_config(parse_options([], {"ES_REPLAY_STATE_TABLE": "from-env"}), settings)
    assert config.state_table == "from-env"
    options = parse_options(["--state-table", "from-flag"], {"ES_REPLAY_STATE_TABLE": "from-env"})
    assert build_config(options, settings)[1].state_table == "from-flag"
    # Given in the environment, it belongs to the definition: a resume must not take it.
    with pytest.raises(UsageError, match="drop --state-table"):
        build_config(parse_options(["--resume", "r-1"], {"ES_REPLAY_STATE_TABLE": "x-y-z"}), settings)


def test_fargate_tasks_get_it_as_an_argument(settings: Settings) -> None:
    config = ReplayConfig("events", "playback", "checkpoints", replay_id="r-1", state_table=SHADOW)
    command = container_command(config)
    assert command[command.index("--state-table") + 1] == SHADOW
    _, parsed = build_config(parse_options(command, {}), settings)
    assert parsed.state_table == SHADOW
    assert "--state-table" not in container_command(ReplayConfig("events", "playback", "checkpoints"))


def test_the_playback_lambda_takes_it_from_its_event(
    settings: Settings, dynamodb: Any, kinesis: Any, shadow: str
) -> None:
    load_events(dynamodb, settings.events_table, make_events(2, 3))
    try:
        answer = invoke("playback", {"replay_id": "r-lambda", "state_table": shadow}, prefix="es-test")
        bad = invoke("playback", {"state_table": shadow, "mode": "fix"}, prefix="es-test")
    finally:
        playback.close()
    assert answer["outcome"] == "complete", answer
    assert _definition(dynamodb, settings, "r-lambda")["state_table"] == shadow
    assert bad["outcome"] == "invalid"
    assert "--state-table goes with --mode rebuild" in bad["error"]
