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
from eventlog.settings import Settings
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
def test_setup_problems_are_one_line_and_exit_1(settings: Settings, argv: list[str], message: str) -> None:
    env = {"ES_REPLAY_CHECKPOINTS_TABLE": "nope"} if argv == ["list"] else {}
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
    assert "rebuild rebuild-cli: creating shadow table es-test-state-rebuild-cli" in err
    assert "compared 1 aggregate(s): 0 same, 1 differ" in out
    assert "state.balance: live 50, rebuilt 5" in out
    assert "next: python -m ops swap rebuild-cli" in out

    code, out, _ = run("diff", "rebuild-cli", "--json")
    report = orjson.loads(out)
    assert (code, report["rebuild"]["status"], report["diff"]["differ"]) == (0, "ready", 1)

    code, out, err = run("swap", "rebuild-cli")
    assert code == 0, err
    assert "1 item(s) written to es-test-state" in out
    assert "deleted the shadow table es-test-state-rebuild-cli" in out

    code, out, _ = run("list")
    assert code == 0
    assert out.startswith("rebuild-cli  swapped")
    code, _, err = run("swap", "rebuild-cli")
    assert code == 1
    assert "rebuild rebuild-cli is swapped, not ready to swap" in err
