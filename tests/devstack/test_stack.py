"""The whole local stack in-process: real handlers behind the HTTP API and the pollers, end to end.

Given a LocalStack on the test session's embedded AWS, when a client talks HTTP to it, then events go through
load -> ingest stream -> pump -> events table -> change stream -> write -> state, and read back through query.
"""

from __future__ import annotations

import io
import json
import os
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from devstack.demo import run_demo
from devstack.stack import LocalStack, StackError
from eventlog.settings import Settings

TIMEOUT = 20.0


def http(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def wait_settled(url: str, event_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + TIMEOUT
    while True:
        status, body = http("GET", f"{url}/events/{event_id}")
        if status == 200 and (
            body["status"] == "rejected" or (body["status"] == "committed" and body["outcome"] != "pending")
        ):
            return dict(body)
        if time.monotonic() > deadline:
            raise AssertionError(f"event {event_id} not settled: {status} {body}")
        time.sleep(0.05)


@pytest.fixture
def stack(settings: Settings) -> Iterator[LocalStack]:
    local = LocalStack(port=0, endpoint_url=settings.endpoint_url, prefix=settings.prefix)
    local.start()
    yield local
    local.stop()


def test_a_posted_event_is_committed_and_readable_through_the_api(stack: LocalStack) -> None:
    status, accepted = http(
        "POST",
        f"{stack.url}/aggregates/acct-e2e/events",
        {"type": "AccountOpened", "payload": {"owner": "Ada"}},
    )
    assert status == 202, accepted

    settled = wait_settled(stack.url, accepted["event_id"])
    assert (settled["status"], settled["version"], settled["outcome"]) == ("committed", 1, "applied")
    status, state = http("GET", f"{stack.url}/aggregates/acct-e2e")
    assert status == 200
    assert state["version"] == 1
    assert state["state"]["owner"] == "Ada"
    assert state["state"]["balance"] == 0
    status, history = http("GET", f"{stack.url}/aggregates/acct-e2e/events")
    assert [e["event_id"] for e in history["events"]] == [accepted["event_id"]]


def test_many_posts_to_one_aggregate_commit_gapless_in_order(stack: LocalStack) -> None:
    http(
        "POST",
        f"{stack.url}/aggregates/acct-many/events",
        {"type": "AccountOpened", "payload": {"owner": "A"}},
    )
    ids, statuses = [], []

    def deposit(amount: int) -> None:
        status, body = http(
            "POST",
            f"{stack.url}/aggregates/acct-many/events",
            {"type": "MoneyDeposited", "payload": {"amount": amount}},
        )
        # an assert here would fail only this thread, not the test: the main thread checks
        statuses.append(status)
        ids.append(body["event_id"])

    threads = [threading.Thread(target=deposit, args=(amount,)) for amount in range(1, 11)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [202] * 10
    for event_id in ids:
        wait_settled(stack.url, event_id)

    _, history = http("GET", f"{stack.url}/aggregates/acct-many/events")
    assert [e["version"] for e in history["events"]] == list(range(1, 12))
    _, state = http("GET", f"{stack.url}/aggregates/acct-many")
    assert state["version"] == 11
    assert state["state"]["balance"] == sum(range(1, 11))


def test_a_pump_crash_after_committing_is_retried_without_a_second_event(settings: Settings) -> None:
    from handlers.pump import handler as pump

    calls = []

    def crash_once_after_commit(event: dict[str, Any], context: Any) -> Any:
        calls.append(len(event["Records"]))
        result = pump(event, context)
        if len(calls) == 1:
            raise TimeoutError("injected: the invocation dies after the commit")
        return result

    with LocalStack(
        port=0,
        endpoint_url=settings.endpoint_url,
        prefix=settings.prefix,
        handlers={"pump": crash_once_after_commit},
    ) as stack:
        _, accepted = http(
            "POST",
            f"{stack.url}/aggregates/acct-crash/events",
            {"type": "AccountOpened", "payload": {"owner": "C"}},
        )
        settled = wait_settled(stack.url, accepted["event_id"])
        _, history = http("GET", f"{stack.url}/aggregates/acct-crash/events")

    assert len(calls) >= 2  # the batch was delivered again
    assert settled["version"] == 1
    assert [e["event_id"] for e in history["events"]] == [accepted["event_id"]]


def test_the_demo_runs_against_an_in_process_stack(stack: LocalStack) -> None:
    out = io.StringIO()

    code = run_demo(stack.url, timeout=TIMEOUT, out=out)

    text = out.getvalue()
    assert code == 0, text
    assert "Refused, and why: insufficient funds" in text
    assert "Same event id both times" in text
    assert "Rejected before recording" in text


def test_the_demo_says_so_when_the_stack_misbehaves(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    def write_that_applies_nothing(event: dict[str, Any], context: Any) -> Any:
        return None  # "done", but no state and no outcome: the demo must not wait for ever or claim success

    with LocalStack(
        port=0,
        endpoint_url=settings.endpoint_url,
        prefix=settings.prefix,
        handlers={"write": write_that_applies_nothing},
    ) as stack:
        code = run_demo(stack.url, timeout=1.0, out=io.StringIO())

    assert code == 1
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0
    assert "still committed" in error


def test_the_demo_without_a_stack_is_one_clear_line(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there

    code = run_demo(f"http://127.0.0.1:{port}", out=io.StringIO())

    error = capsys.readouterr().err.strip()
    assert code == 1
    assert error.count("\n") == 0
    assert "no stack answers" in error
    assert "python -m devstack" in error


def test_the_environment_points_at_the_stack_while_it_runs_and_is_put_back(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SESSION_TOKEN", "a-real-looking-token")
    monkeypatch.delenv("ES_NAME_PREFIX")  # a name chosen by hand, with no prefix to contradict it
    monkeypatch.setenv("ES_EVENTS_TABLE", "from-the-shell")
    before = dict(os.environ)

    # no prefix given to the stack: the names the environment chooses win
    with LocalStack(port=0, endpoint_url=settings.endpoint_url) as stack:
        during = dict(os.environ)
        exports = "\n".join(stack.export_lines())

    assert "AWS_SESSION_TOKEN" not in during
    assert during["AWS_ENDPOINT_URL"] == settings.endpoint_url
    assert during["AWS_ACCESS_KEY_ID"] == "devstack"
    assert during["ES_EVENTS_TABLE"] == "from-the-shell"  # a name chosen in the environment is kept
    assert stack.settings.events_table == "from-the-shell"
    assert f"export AWS_ENDPOINT_URL={settings.endpoint_url}" in exports
    assert "unset AWS_SESSION_TOKEN" in exports
    # the prefix would contradict the hand-chosen name: it is unset, not exported
    assert "export ES_NAME_PREFIX" not in exports
    assert " ES_NAME_PREFIX" in exports.splitlines()[0]
    assert "export ES_EVENTS_TABLE=from-the-shell" in exports
    assert dict(os.environ) == before


def test_a_prefix_and_a_name_that_disagree_stop_the_stack_with_one_line_naming_both(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ES_NAME_PREFIX", "es-local-t1")
    monkeypatch.setenv("ES_EVENTS_TABLE", "es-local-events")  # stale, from another stack's exports
    before = dict(os.environ)
    with pytest.raises(StackError) as refused:
        LocalStack(port=0, endpoint_url=settings.endpoint_url).start()
    message = str(refused.value)
    assert "\n" not in message
    assert "ES_EVENTS_TABLE=es-local-events and ES_NAME_PREFIX=es-local-t1 disagree" in message
    assert dict(os.environ) == before


def test_a_taken_api_port_is_a_stack_error_and_leaves_nothing_behind(settings: Settings) -> None:
    before = dict(os.environ)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(StackError, match=f"port {port} .* already in use"):
            LocalStack(port=port, endpoint_url=settings.endpoint_url).start()
    assert dict(os.environ) == before


def test_a_taken_aws_port_is_a_stack_error_not_a_hang() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(StackError, match="--aws-port"):
            LocalStack(port=0, aws_port=port).start()


def test_a_stack_of_its_own_starts_its_own_embedded_aws_and_stops_it() -> None:
    with LocalStack(port=0, prefix="es-own") as stack:
        endpoint = stack.endpoint_url
        assert endpoint.startswith("http://127.0.0.1:")
        assert stack.resource_names()["table events"] == "es-own-events"
        status, _ = http("GET", f"{stack.url}/aggregates/nobody")
        assert status == 404
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2)


def test_a_stand_in_for_a_function_the_stack_does_not_run_is_refused(settings: Settings) -> None:
    with pytest.raises(ValueError, match="pumpp"):
        LocalStack(port=0, endpoint_url=settings.endpoint_url, handlers={"pumpp": lambda e, c: None}).start()


def test_a_given_prefix_names_every_table_and_stream_whatever_the_environment_says(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a shell that sourced another stack's exports names that stack's tables
    monkeypatch.setenv("ES_EVENTS_TABLE", "es-other-events")
    monkeypatch.setenv("ES_INGEST_STREAM", "es-other-ingest")
    with LocalStack(port=0, endpoint_url=settings.endpoint_url, prefix="es-mine") as stack:
        assert stack.settings.events_table == "es-mine-events"
        assert stack.settings.ingest_stream == "es-mine-ingest"
        assert os.environ["ES_EVENTS_TABLE"] == "es-mine-events"
