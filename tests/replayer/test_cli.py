"""`python -m replayer`: clear one-line errors and exit codes, environment variables, JSON lines."""

from __future__ import annotations

import os
from typing import Any

import orjson
import pytest

from eventlog.settings import Settings
from replayer.cli import main, parse_options
from tests.replayer.helpers import load_events, make_events, read_stream


def _run(capsys: pytest.CaptureFixture[str], *argv: str, **env: str) -> tuple[int, str, str]:
    environ = {**os.environ, **env}
    code = main(list(argv), environ)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--worker", "3/3"], "--worker 3/3: i must be 0..2"),
        (["--worker", "two"], "expected i/n"),
        (["--since", "yesterday"], "--since 'yesterday': not an ISO 8601 time"),
        (["--until", "2026-01-01T00:00:00"], "has no time zone"),
        (["--since", "2026-02-01T00:00:00Z", "--until", "2026-01-01T00:00:00Z"], "is not before --until"),
        (["--from-version", "0"], "versions start at 1"),
        (["--from-version", "x"], "not a whole number"),
        (["--from-version", "5", "--to-version", "2"], "greater than --to-version"),
        (["--segments", "0"], "--segments 0: expected 1..1000000"),
        (["--segments", "2", "--worker", "0/3"], "fewer than the 3 workers"),
        (["--rate", "-5"], "--rate -5.0: expected a positive number"),
        (["--rate", "fast"], "--rate 'fast': not a number"),
        (["--mode", "replay"], "argument --mode: invalid choice"),
        (
            ["--aggregates-file", "/nonexistent/ids.txt"],
            "--aggregates-file /nonexistent/ids.txt: No such file",
        ),
        (["--aggregate", " "], "--aggregate: empty value"),
        (["--resume", "r-1", "--type", "X"], "--resume r-1 replays its stored definition; drop --type"),
        (["--resume", "r-1", "--replay-id", "r-2"], "name different replays"),
        (["--replay-id", "has space"], "replay id 'has space'"),
        (["--dry-run", "--resume", "r-1"], "--dry-run and --resume do not go together"),
        (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    ],
)
def test_bad_arguments_give_one_clear_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, out, err = _run(capsys, *argv)
    assert code == 2
    assert err.startswith("replayer: error: ")
    assert message in err
    assert err.count("\n") == 1
    assert "Traceback" not in err
    assert out == ""


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        ([], {"ES_EVENTS_TABLE": "nope"}, "events table nope not found at http://"),
        (["--stream", "nope"], {}, "stream nope not found at http://"),
        (["--checkpoint-table", "nope"], {}, "checkpoint table nope not found"),
        (["--resume", "r-unknown"], {}, "no replay r-unknown in the checkpoint table"),
        (["--endpoint-url", "http://127.0.0.1:9"], {}, "cannot reach http://127.0.0.1:9"),
    ],
)
def test_setup_problems_give_one_clear_line_and_exit_1(
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    env: dict[str, str],
    message: str,
) -> None:
    if env or "--checkpoint-table" in argv:
        # A name given by hand: the test stack's other names, and no prefix that would contradict it.
        monkeypatch.delenv("ES_NAME_PREFIX")
        names = {
            k: v for k, v in settings.environment().items() if k.startswith("ES_") and k != "ES_NAME_PREFIX"
        }
        if "--checkpoint-table" in argv:
            del names["ES_REPLAY_CHECKPOINTS_TABLE"]
        env = {**names, **env}
    if "--endpoint-url" in argv:
        monkeypatch.delenv("AWS_ENDPOINT_URL")  # which would name another endpoint
    code, _, err = _run(capsys, "--progress", "none", *argv, **env)
    assert code == 1
    assert message in err
    assert err.count("\n") == 1
    assert "Traceback" not in err


def test_no_credentials_is_one_clear_line(
    settings: Settings, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    code, _, err = _run(capsys, "--progress", "none")
    assert code == 1
    assert err == (
        "replayer: no AWS credentials found (set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
        "or run with an IAM role)\n"
    )


def test_a_replay_id_cannot_be_used_twice(
    settings: Settings, dynamodb: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    load_events(dynamodb, settings.events_table, make_events(2, 2))
    assert _run(capsys, "--replay-id", "r-twice", "--progress", "none")[0] == 0
    code, _, err = _run(capsys, "--replay-id", "r-twice", "--progress", "none")
    assert code == 1
    assert "replay r-twice already exists; continue it with --resume r-twice" in err


def test_json_lines_report_start_and_summary(
    settings: Settings, dynamodb: Any, kinesis: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    events = make_events(5, 4)
    load_events(dynamodb, settings.events_table, events)
    code, out, err = _run(capsys, "--progress", "json", "--mode", "feature", "--segments", "2")
    lines = [orjson.loads(line) for line in out.splitlines()]
    assert code == 0, err
    assert lines[0]["event"] == "start"
    assert lines[0]["rate_limit"] == {"events_per_s": 2000.0, "bytes_per_s": 2 * 1024 * 1024.0}
    summary = lines[-1]
    assert summary["event"] == "summary"
    assert (summary["outcome"], summary["read"], summary["put"], summary["mode"]) == (
        "complete",
        20,
        20,
        "feature",
    )
    for key in ("retried", "throttled", "duration_s", "events_per_s"):
        assert key in summary
    assert len(read_stream(kinesis, settings.playback_stream)) == 20


def test_options_come_from_the_environment_when_not_flags(
    settings: Settings, dynamodb: Any, kinesis: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    load_events(dynamodb, settings.events_table, make_events(4, 4))
    code, out, _ = _run(
        capsys,
        "--progress",
        "json",
        ES_REPLAY_DRY_RUN="1",
        ES_REPLAY_TYPES="AccountOpened,MoneyWithdrawn",
        ES_REPLAY_AGGREGATES="acct-0001,acct-0002",
    )
    summary = orjson.loads(out.splitlines()[-1])
    assert code == 0
    assert (summary["outcome"], summary["events"], summary["aggregates"], summary["plan"]) == (
        "dry-run",
        4,
        2,
        "query",
    )
    assert read_stream(kinesis, settings.playback_stream) == []


def test_a_flag_wins_over_its_environment_variable() -> None:
    options = parse_options(
        ["--type", "A", "--rate", "50"], {"ES_REPLAY_TYPES": "B,C", "ES_REPLAY_RATE": "9"}
    )
    assert options["type"] == ["A"]
    assert options["rate"] == "50"
    options = parse_options([], {"ES_REPLAY_TYPES": "B,C", "ES_REPLAY_WORKER": "1/2"})
    assert (options["type"], options["worker"]) == (["B", "C"], "1/2")


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--table", "es-local-events"], {}, "--table es-local-events and ES_NAME_PREFIX=es-test disagree"),
        (["--checkpoint-table", "x"], {}, "--checkpoint-table x and ES_NAME_PREFIX=es-test disagree"),
        (["--region", "eu-west-1"], {}, "--region eu-west-1 and AWS_REGION=us-east-1 disagree"),
        (
            [],
            {"ES_EVENTS_TABLE": "es-local-events"},
            "ES_EVENTS_TABLE=es-local-events and ES_NAME_PREFIX=es-test",
        ),
    ],
)
def test_settings_that_disagree_are_one_line_naming_both_and_exit_2(
    settings: Settings, capsys: pytest.CaptureFixture[str], argv: list[str], env: dict[str, str], message: str
) -> None:
    code, out, err = _run(capsys, "--progress", "none", "--dry-run", *argv, **env)
    assert (code, out) == (2, "")
    assert err.startswith("replayer: error: ")
    assert message in err
    assert err.count("\n") == 1


def test_the_target_stream_is_where_the_replay_goes_not_a_setting_to_agree_with(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    # docs/replayer.md: `--stream es-test-playback` puts a replay on a test environment's stream
    code, _, err = _run(capsys, "--progress", "none", "--dry-run", "--stream", settings.ingest_stream)
    assert code == 0, err


@pytest.mark.parametrize("progress", ["none", "json"])
def test_a_dry_run_always_says_what_it_found(
    settings: Settings, dynamodb: Any, kinesis: Any, capsys: pytest.CaptureFixture[str], progress: str
) -> None:
    load_events(dynamodb, settings.events_table, make_events(4, 4))
    code, out, err = _run(
        capsys, "--progress", progress, "--dry-run", "--replay-id", "look", "--type", "AccountOpened"
    )
    assert code == 0, err
    if progress == "json":
        summary = orjson.loads(out.splitlines()[-1])
        assert (summary["outcome"], summary["events"], summary["aggregates"]) == ("dry-run", 4, 4)
    else:
        first, *rest = out.splitlines()
        assert first.startswith("dry run look (rebuild): would put 4 event(s) of 4 aggregate(s), ")
        assert first.endswith(f"on {settings.playback_stream}")
        assert "nothing was put" in rest[0]
        assert rest[1].startswith("  time: about ")
        assert rest[2].startswith("  estimated cost: $")
    assert read_stream(kinesis, settings.playback_stream) == []


def test_a_dry_run_that_matches_nothing_says_so(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _run(capsys, "--progress", "none", "--dry-run", "--replay-id", "empty")
    assert code == 0, err
    assert "would put 0 event(s) of 0 aggregate(s)" in out
    assert "(nothing matches the filters)" in out


def test_a_replay_with_progress_none_prints_nothing_on_stdout(
    settings: Settings, dynamodb: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    load_events(dynamodb, settings.events_table, make_events(2, 2))
    code, out, err = _run(capsys, "--progress", "none")
    assert (code, out) == (0, ""), err
