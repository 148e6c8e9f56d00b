"""`python -m ops`: one clear line and an exit code for every error; rebuild, diff, swap, drop and list against a
running local stack (its pollers feed the write function, as on AWS: no tick here)."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from devstack.stack import LocalStack
from eventlog.settings import NO_REGION, Settings
from ops.cli import main
from tests.ops.support import live_history


def run(*argv: str, **env: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), {**os.environ, **env}, out, err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def stack(settings: Settings) -> Iterator[LocalStack]:
    with LocalStack(port=0, endpoint_url=settings.endpoint_url, prefix=settings.prefix) as s:
        yield s


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "the following arguments are required: COMMAND"),
        (["rebuild", "--id", "has space"], "--id 'has space': use letters, digits"),
        (["rebuild", "--timeout", "0"], "argument --timeout: 0 is not positive"),
        (["rebuild", "--resume", "rebuild-x", "--id", "y"], "--resume continues a rebuild as it was started"),
        (["rebuild", "--aggregates-file", "/nonexistent"], "--aggregates-file /nonexistent: No such file"),
        (["swap"], "the following arguments are required: REBUILD_ID"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
    ],
)
def test_bad_arguments_are_one_line_and_exit_2(argv: list[str], message: str) -> None:
    code, out, err = run(*argv)
    assert (code, out) == (2, "")
    assert err.startswith("ops: error: ")
    assert message in err
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["swap", "rebuild-none"], "ops: no rebuild rebuild-none in es-test-replay-checkpoints"),
        (["diff", "rebuild-none"], "ops: no rebuild rebuild-none"),
        (["list", "--endpoint-url", "http://127.0.0.1:9"], "ops: cannot reach http://127.0.0.1:9"),
        (["list"], "ops: checkpoint table nope not found at http://"),
    ],
)
def test_setup_problems_are_one_line_and_exit_1(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, argv: list[str], message: str
) -> None:
    env = {}
    if argv == ["list"]:
        monkeypatch.delenv("ES_NAME_PREFIX")  # which would name another checkpoint table
        env = {"ES_REPLAY_CHECKPOINTS_TABLE": "nope"}
    if "--endpoint-url" in argv:
        monkeypatch.delenv("AWS_ENDPOINT_URL")  # which would name another endpoint
    code, _, err = run(*argv, **env)
    assert code == 1
    assert err.startswith(message), err
    assert err.count("\n") == 1
    assert "Traceback" not in err


def test_rebuild_diff_swap_and_list_against_a_running_stack(
    settings: Settings, dynamodb: Any, stack: LocalStack
) -> None:
    live_history(
        settings, [("acct-1", "AccountOpened", {"owner": "A"}), ("acct-1", "MoneyDeposited", {"amount": 5})]
    )
    item = dynamodb.get_item(TableName=settings.state_table, Key={"aggregate_id": {"S": "acct-1"}})["Item"]
    item["state"] = {"S": item["state"]["S"].replace('"balance":5', '"balance":50')}
    dynamodb.put_item(TableName=settings.state_table, Item=item)

    code, out, err = run("rebuild", "--id", "cli", "--progress", "none", "--exit-code", "--timeout", "30")
    assert code == 4, err
    assert "rebuild cli: creating shadow table es-test-state-rebuild-cli" in err
    assert "compared 1 aggregate(s): 0 same, 1 differ" in out
    assert "state.balance: live 50, rebuilt 5" in out
    assert "next: python -m ops swap cli" in out

    # the id given is the id typed afterwards
    code, out, err = run("diff", "cli", "--json")
    report = orjson.loads(out)
    assert (code, report["rebuild"]["rebuild_id"], report["rebuild"]["status"]) == (0, "cli", "ready"), err
    assert report["diff"]["differ"] == 1

    code, out, err = run("swap", "cli")
    assert code == 0, err
    assert "1 item(s) written to es-test-state" in out
    assert "deleted the shadow table es-test-state-rebuild-cli" in out

    code, out, _ = run("list")
    assert code == 0
    assert out.split()[:3] == ["cli", "swapped", "es-test-state-rebuild-cli"]
    code, _, err = run("swap", "cli")
    assert code == 1
    assert "rebuild cli is swapped, not ready to swap" in err


@pytest.mark.parametrize(
    "argv",
    [
        ["rebuild", "--id", "no good"],
        ["rebuild", "--id", "-x"],
        ["rebuild", "--id", "x" * 81],
        ["rebuild", "--resume", "bad/id"],
        ["diff", "bad/id"],
        ["swap", "nope!"],
        ["drop", "a b"],
    ],
)
def test_an_invalid_rebuild_id_is_one_line_and_exit_2(settings: Settings, argv: list[str]) -> None:
    code, out, err = run(*argv)
    assert (code, out) == (2, ""), err
    assert err.startswith("ops: error: ")
    assert err.count("\n") == 1


def test_a_given_id_whose_shadow_name_is_taken_is_refused_before_anything_is_recorded(
    settings: Settings, dynamodb: Any
) -> None:
    # `x` and `rebuild-x` name the same shadow (the write function may only write `<state>-rebuild-*`)
    from ops import tables

    tables.create_shadow(dynamodb, settings.state_table, "es-test-state-rebuild-x")
    code, _, err = run("rebuild", "--id", "x", "--progress", "none", "--timeout", "1")
    assert code == 1
    assert (
        err
        == "ops: the shadow table es-test-state-rebuild-x exists already (another rebuild's); choose another --id\n"
    )
    records = dynamodb.scan(TableName=settings.replay_checkpoints_table, ConsistentRead=True)["Items"]
    assert records == []


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["list", "--region", "eu-west-1"], {}, "--region eu-west-1 and AWS_REGION=us-east-1 disagree"),
        (["list", "--endpoint-url", "http://127.0.0.1:9"], {}, "--endpoint-url http://127.0.0.1:9 and "),
        (
            ["list"],
            {"AWS_DEFAULT_REGION": "eu-west-1"},
            "AWS_REGION=us-east-1 and AWS_DEFAULT_REGION=eu-west-1",
        ),
        (
            ["swap", "x"],
            {"ES_STATE_TABLE": "es-local-state"},
            "ES_STATE_TABLE=es-local-state and ES_NAME_PREFIX=",
        ),
    ],
)
def test_settings_that_disagree_stop_the_command_with_one_line_naming_both(
    settings: Settings, argv: list[str], env: dict[str, str], message: str
) -> None:
    code, out, err = run(*argv, **env)
    assert (code, out) == (2, ""), err
    assert err.startswith("ops: error: ")
    assert message in err
    assert "disagree" in err
    assert err.count("\n") == 1


def test_no_region_anywhere_is_one_line_saying_how_to_set_it(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_REGION")  # and the config files are empty (tests/conftest.py)
    code, out, err = run("list")
    assert (code, out) == (2, "")
    assert err == f"ops: error: {NO_REGION}\n"
