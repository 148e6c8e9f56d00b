"""Test environments: a name prefix of their own, a log that is a gapless prefix of each chosen aggregate's
history (by ids, a time range, or everything up to a time), their own state, and their own running stack."""

from __future__ import annotations

import io
import json
import os
import shlex
import threading
import time
import urllib.request
from typing import Any

import orjson
import pytest

from eventlog.aws import dynamodb_client
from eventlog.batch import Backoff
from eventlog.envelope import Event, utc_now
from eventlog.settings import Settings
from ops.cli import build_parser, main, settings_for
from ops.errors import OpsError, OpsUsageError
from ops.testenv import Selection, TestEnvironments, serve
from tests.ops.support import live_history
from tests.replayer.helpers import load_events
from tests.support import all_events
from tests.unprocessed import Unprocessed

PREFIX = "es-test-env"


def env_events(settings: Settings) -> list[dict[str, Any]]:
    return all_events(settings.with_prefix(PREFIX))


def item(dynamodb: Any, table: str, key: dict[str, Any]) -> dict[str, Any] | None:
    found: dict[str, Any] | None = dynamodb.get_item(TableName=table, Key=key, ConsistentRead=True).get(
        "Item"
    )
    return found


def state_of(dynamodb: Any, table: str, aggregate_id: str) -> tuple[int, Any] | None:
    found = item(dynamodb, table, {"aggregate_id": {"S": aggregate_id}})
    return (int(found["version"]["N"]), orjson.loads(found["state"]["S"])) if found else None


@pytest.fixture
def two_periods(settings: Settings) -> str:
    """alice and bob before the returned time; alice again, and carol, after it."""
    live_history(
        settings,
        [
            ("alice", "AccountOpened", {"owner": "Alice"}),
            ("alice", "MoneyDeposited", {"amount": 100}),
            ("bob", "AccountOpened", {"owner": "Bob"}),
        ],
    )
    time.sleep(0.002)
    between = utc_now()
    time.sleep(0.002)
    live_history(
        settings, [("alice", "MoneyWithdrawn", {"amount": 30}), ("carol", "AccountOpened", {"owner": "C"})]
    )
    return between


def test_chosen_aggregates_get_their_whole_history_their_own_state_and_statuses(
    settings: Settings, dynamodb: Any, two_periods: str
) -> None:
    env = TestEnvironments(settings).create(PREFIX, Selection.build(["alice", "nobody"]))
    target = settings.with_prefix(PREFIX)
    assert (env.aggregates, env.events, env.copied, env.states) == (1, 3, 3, 1)
    assert "es-test-env-events" in env.created
    source = [e for e in all_events(settings) if e["aggregate_id"] == "alice"]
    assert env_events(settings) == source  # same ids, versions 1..3, payloads
    assert state_of(dynamodb, target.state_table, "alice") == state_of(
        dynamodb, settings.state_table, "alice"
    )
    status = item(dynamodb, target.event_status_table, {"event_id": {"S": source[2]["event_id"]}})
    assert status is not None
    assert (status["status"]["S"], status["version"]["N"], status["outcome"]["S"]) == (
        "committed",
        "3",
        "applied",
    )
    # Running it again copies nothing twice.
    again = TestEnvironments(settings).create(PREFIX, Selection.build(["alice"]))
    assert (again.copied, again.events, again.created) == (0, 3, [])
    assert len(env_events(settings)) == 3


def test_everything_up_to_a_time(settings: Settings, dynamodb: Any, two_periods: str) -> None:
    env = TestEnvironments(settings).create(PREFIX, Selection.build(until=two_periods))
    assert env.versions == {"alice": 2, "bob": 1}
    balance = state_of(dynamodb, settings.with_prefix(PREFIX).state_table, "alice")
    assert balance is not None
    assert (balance[0], balance[1]["balance"]) == (2, 100)  # before the withdrawal


def test_a_time_range_picks_the_aggregates_active_then_with_their_history_from_version_1(
    settings: Settings, two_periods: str
) -> None:
    env = TestEnvironments(settings).create(PREFIX, Selection.build(since=two_periods))
    assert env.versions == {"alice": 3, "carol": 1}  # not bob: nothing of his after that time
    assert [e["version"] for e in env_events(settings) if e["aggregate_id"] == "alice"] == [1, 2, 3]


def test_a_history_is_cut_at_its_first_event_at_or_after_the_time_so_no_gap_can_appear(
    settings: Settings, dynamodb: Any
) -> None:
    # given a log whose v3 was recorded a moment BEFORE v2 (a container's clock behind another's)
    times = ["2026-01-01T00:00:01.000000Z", "2026-01-01T00:00:05.000000Z", "2026-01-01T00:00:02.000000Z"]
    types = [
        ("AccountOpened", {"owner": "A"}),
        ("MoneyDeposited", {"amount": 1}),
        ("MoneyDeposited", {"amount": 2}),
    ]
    load_events(
        dynamodb,
        settings.events_table,
        [
            Event(f"e{v}", "skewed", t, v, 1, at, at, p)
            for v, ((t, p), at) in enumerate(zip(types, times, strict=True), start=1)
        ],
    )
    selected = TestEnvironments(settings).select(Selection.build(until="2026-01-01T00:00:03Z"))
    # then v3 (recorded before the time) is not taken without v2 (recorded after it)
    assert [int(i["version"]["N"]) for i in selected["skewed"]] == [1]


def test_no_state_leaves_it_to_the_environments_write_function(
    settings: Settings, dynamodb: Any, two_periods: str
) -> None:
    env = TestEnvironments(settings).create(PREFIX, Selection.build(["bob"]), build_state=False)
    assert (env.events, env.states) == (1, 0)
    assert state_of(dynamodb, settings.with_prefix(PREFIX).state_table, "bob") is None


def test_gateway_recordings_of_the_copied_events_come_along(
    settings: Settings, dynamodb: Any, two_periods: str
) -> None:
    [opened] = [e for e in all_events(settings) if e["aggregate_id"] == "bob"]
    recording = {
        "event_id": {"S": opened["event_id"]},
        "call": {"S": "ledger-export"},
        "status": {"S": "done"},
    }
    dynamodb.put_item(TableName=settings.table("gateway_recordings"), Item=recording)
    # a call whose outcome the source does not know yet stays behind: the copy's service would send it again
    in_doubt = {**recording, "call": {"S": "ledger-export@other"}, "status": {"S": "pending"}}
    dynamodb.put_item(TableName=settings.table("gateway_recordings"), Item=in_doubt)
    env = TestEnvironments(settings).create(PREFIX, Selection.build(["bob", "alice"]))
    assert env.recordings == 1
    key = {"event_id": recording["event_id"], "call": recording["call"]}
    assert item(dynamodb, settings.with_prefix(PREFIX).table("gateway_recordings"), key) == recording


@pytest.mark.timeout(60)
def test_recordings_the_target_keeps_leaving_unprocessed_end_in_one_clear_error(
    settings: Settings, dynamodb: Any, two_periods: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("eventlog.batch.DEFAULT_BACKOFF", Backoff(base=0.001, cap=0.004, max_attempts=4))
    [opened] = [e for e in all_events(settings) if e["aggregate_id"] == "bob"]
    recording = {
        "event_id": {"S": opened["event_id"]},
        "call": {"S": "ledger-export"},
        "status": {"S": "done"},
    }
    dynamodb.put_item(TableName=settings.table("gateway_recordings"), Item=recording)
    client = dynamodb_client(settings)
    target = settings.with_prefix(PREFIX).table("gateway_recordings")
    with (
        Unprocessed("BatchWriteItem", everything=True).on(client) as fault,
        pytest.raises(
            OpsError, match=f"copying gateway recordings: BatchWriteItem on table {target}: 1 of 1"
        ),
    ):
        TestEnvironments(settings, client).create(PREFIX, Selection.build(["bob"]))
    assert fault.calls == 4


def test_a_prefix_whose_slots_hold_other_events_is_refused(
    settings: Settings, dynamodb: Any, two_periods: str
) -> None:
    TestEnvironments(settings).create(PREFIX, Selection.build(["alice"]))
    target = settings.with_prefix(PREFIX)
    stranger = dynamodb.get_item(
        TableName=target.events_table, Key={"aggregate_id": {"S": "alice"}, "version": {"N": "2"}}
    )["Item"]
    dynamodb.put_item(TableName=target.events_table, Item={**stranger, "event_id": {"S": "someone-else"}})
    with pytest.raises(OpsError, match="already holds another event at alice v2; use a new --prefix"):
        TestEnvironments(settings).create(PREFIX, Selection.build(["alice"]))


def test_on_aws_it_fills_a_deployed_environment_and_creates_nothing(settings: Settings) -> None:
    with pytest.raises(
        OpsError, match=r"es-test-env-events, .* not found; deploy the test environment's stack"
    ):
        TestEnvironments(settings).create(PREFIX, Selection.build(["alice"]), create=False)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "choose a subset"),
        ({"since": "2026-02-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, "is not before --until"),
        ({"until": "tomorrow"}, "--until 'tomorrow': not an ISO 8601 time"),
    ],
)
def test_a_selection_must_say_what(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(OpsUsageError, match=message):
        Selection.build(**kwargs)


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    return main(list(argv), dict(os.environ), out, err), out.getvalue(), err.getvalue()


def test_the_command(settings: Settings, two_periods: str) -> None:
    code, out, err = run("test-env", "--prefix", PREFIX, "--aggregate", "bob", "--json")
    assert code == 0, err
    report = orjson.loads(out)
    assert (report["events"], report["versions"], report["tables"]["events"]) == (
        1,
        {"bob": 1},
        "es-test-env-events",
    )
    for argv, message in (
        (["test-env", "--prefix", "es-test", "--aggregate", "x"], "would be the source stack's own"),
        (["test-env", "--prefix", "bad prefix!", "--aggregate", "x"], "--prefix 'bad prefix!'"),
        (["test-env", "--prefix", PREFIX], "choose a subset"),
        (
            ["test-env", "--prefix", PREFIX, "--aggregate", "x", "--serve", "0", "--no-state"],
            "needs the state built",
        ),
    ):
        code, _, err = run(*argv)
        assert code == 2, argv
        assert message in err, err


def test_served_it_answers_with_its_own_state_and_continues_its_own_log(
    settings: Settings, two_periods: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a shell that sourced the source stack's exports (every table and stream named)
    for name, value in settings.environment().items():
        monkeypatch.setenv(name, value)
    env = TestEnvironments(settings).create(PREFIX, Selection.build(["alice"]))
    stop, urls = threading.Event(), []
    thread = threading.Thread(
        target=serve, args=(env.settings, 0, stop, lambda line: None), kwargs={"ready": urls.append}
    )
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not urls and time.monotonic() < deadline:
            time.sleep(0.05)
        [url] = urls
        with urllib.request.urlopen(f"{url}/aggregates/alice", timeout=5) as answer:
            body = json.loads(answer.read())
        assert (body["version"], body["state"]["balance"]) == (3, 70)
        request = urllib.request.Request(
            f"{url}/aggregates/alice/events",
            data=json.dumps({"type": "MoneyDeposited", "payload": {"amount": 5}}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=5) as answer:
            assert answer.status == 202
        # A deadline of its own: on a loaded machine the start above can take most of the first one.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with urllib.request.urlopen(f"{url}/aggregates/alice", timeout=5) as answer:
                body = json.loads(answer.read())
            if body["version"] == 4:
                break
            time.sleep(0.05)
        assert (body["version"], body["state"]["balance"]) == (4, 75)
    finally:
        stop.set()
        thread.join(10)
    # The source log did not move, and the source's names are back.
    assert [e["version"] for e in all_events(settings) if e["aggregate_id"] == "alice"] == [1, 2, 3]
    assert os.environ["ES_EVENTS_TABLE"] == settings.events_table


def test_in_a_shell_with_the_source_stacks_exports_a_bare_prefix_is_refused_and_the_hint_works(
    settings: Settings, dynamodb: Any, two_periods: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a shell that sourced the source stack's exports (every table and stream named)
    for name, value in settings.environment().items():
        monkeypatch.setenv(name, value)
    code, out, err = run("test-env", "--prefix", PREFIX, "--aggregate", "bob")
    assert code == 0, err
    [hint] = [line for line in out.splitlines() if "use it" in line]

    # what docs/replays.md used to say: the exported names won over the prefix, and it rebuilt the source stack
    prefixed = {**os.environ, "ES_NAME_PREFIX": PREFIX}
    out, err_io = io.StringIO(), io.StringIO()
    code = main(["rebuild", "--id", "t1", "--progress", "none", "--timeout", "2"], prefixed, out, err_io)
    err = err_io.getvalue()
    assert code == 2, err
    assert err.count("\n") == 1
    assert f"ES_NAME_PREFIX={PREFIX} disagree" in err
    assert "ES_EVENTS_TABLE=es-test-events" in err
    # nothing done anywhere: no shadow table, no rebuild record
    assert [t for t in dynamodb.list_tables()["TableNames"] if "rebuild" in t] == []
    for stack in (settings, settings.with_prefix(PREFIX)):
        records = dynamodb.scan(TableName=stack.replay_checkpoints_table, ConsistentRead=True)["Items"]
        assert [r for r in records if r["part"]["S"] == "rebuild"] == []

    # the line the command printed points every command at the test environment, in that same shell
    exports = dict(word.split("=", 1) for word in shlex.split(hint.split("export ", 1)[1]))
    assert exports["ES_NAME_PREFIX"] == PREFIX
    hinted = {**os.environ, **exports}
    args = build_parser().parse_args(["list"])
    target = settings_for(args, hinted)
    assert target == settings.with_prefix(PREFIX)
    out, err_io = io.StringIO(), io.StringIO()
    assert main(["list"], hinted, out, err_io) == 0, err_io.getvalue()
