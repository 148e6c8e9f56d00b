"""`python -m ops redrive`, end to end on the local stack: a consumer fails on one event (a poison), its mapping
gives up after its retries and dead-letters the batch while the rest of the shard moves on; after the fix is
"deployed", the redrive brings the stuck aggregate up to date, processed as live processing would have, with
nothing applied twice and no external update sent twice.

The stack's pollers run the real handlers with the topology's retry limits (eventlog/topology.py) and send
Lambda's on-failure record to each mapping's SQS queue on the embedded AWS.
"""

from __future__ import annotations

import io
import json
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import orjson
import pytest
from botocore.exceptions import ClientError

import handlers.runtime
import handlers.service
import handlers.write
from devstack.pollers import PollerOptions
from devstack.stack import LocalStack
from eventlog.envelope import Event, new_event_id
from eventlog.projection import Decision
from eventlog.provision import sqs_client
from eventlog.settings import Settings
from eventlog.topology import mapping_spec
from ops.cli import main
from ops.redrive import DeadLetter, Redrives
from tests.devstack.support import FAST

TIMEOUT = 60.0
WRITE_QUEUE = mapping_spec("events-changes-to-write")
SERVICE_QUEUE = mapping_spec("events-changes-to-service")


class Poison:
    """Fails on the events it names while `active`; "deploying the fix" is `active = False`."""

    def __init__(self, *event_ids: str) -> None:
        self.event_ids = set(event_ids)
        self.active = True
        self.hits = 0
        self._lock = threading.Lock()

    def check(self, event: Event) -> None:
        if self.active and event.event_id in self.event_ids:
            with self._lock:
                self.hits += 1
            raise RuntimeError(f"poison event {event.event_id}")


class PoisonedRules:
    """The domain's rules, raising on a poison event (the write function's projector decides with these)."""

    def __init__(self, rules: Any, poison: Poison) -> None:
        self.rules = rules
        self.poison = poison

    def apply(self, state: dict[str, Any] | None, event: Event) -> Decision:
        self.poison.check(event)
        decision: Decision = self.rules.apply(state, event)
        return decision

    def needs_history(self, event: Event) -> bool:
        return bool(self.rules.needs_history(event))

    def fold(self, events: Sequence[Event]) -> list[Decision]:
        for event in events:
            self.poison.check(event)
        folded: list[Decision] = self.rules.fold(events)
        return folded


def http(method: str, url: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def post(
    stack: LocalStack, aggregate: str, type_: str, payload: dict[str, Any], event_id: str | None = None
) -> str:
    body: dict[str, Any] = {"type": type_, "payload": payload, "event_id": event_id or new_event_id()}
    status, answer = http("POST", f"{stack.url}/aggregates/{aggregate}/events", body)
    assert status == 202, answer
    return str(answer["event_id"])


def state(stack: LocalStack, aggregate: str) -> dict[str, Any]:
    status, body = http("GET", f"{stack.url}/aggregates/{aggregate}")
    return dict(body) if status == 200 else {}


def outcome(stack: LocalStack, event_id: str) -> str | None:
    status, body = http("GET", f"{stack.url}/events/{event_id}")
    return body.get("outcome") if status == 200 else None


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def queued(settings: Settings, mapping: Any) -> int:
    sqs = sqs_client(settings)
    url = sqs.get_queue_url(QueueName=mapping.dead_letter_queue(settings.prefix))["QueueUrl"]
    attributes = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


def ops(stack: LocalStack, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), {**os.environ, **stack.environment()}, out, err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def start_stack(settings: Settings) -> Iterator[Callable[[], LocalStack]]:
    stacks: list[LocalStack] = []

    def start() -> LocalStack:
        stack = LocalStack(
            port=0,
            endpoint_url=settings.endpoint_url,
            prefix=settings.prefix,
            poller_options=PollerOptions(**FAST),
        )
        stack.start()
        stacks.append(stack)
        return stack

    yield start
    for stack in stacks:
        stack.stop()


def quiet(count: Callable[[], int], for_s: float = 1.0) -> None:
    """Wait until `count()` has not changed for `for_s` seconds."""
    last, since = -1, time.monotonic()
    deadline = since + TIMEOUT
    while time.monotonic() - since < for_s:
        now = count()
        if now != last:
            last, since = now, time.monotonic()
        if time.monotonic() > deadline:
            raise AssertionError("still changing")
        time.sleep(0.05)


def settle(stack: LocalStack) -> None:
    """Wait until the fake ledger has been quiet for a moment (every live event processed by the service)."""
    assert stack.ledger is not None
    last, quiet_since = -1, time.monotonic()
    while time.monotonic() - quiet_since < 1.0:
        count = stack.ledger.request_count()
        if count != last:
            last, quiet_since = count, time.monotonic()
        time.sleep(0.05)


def test_a_poison_event_is_dead_lettered_by_the_write_function_and_redriven_after_the_fix(
    settings: Settings, start_stack: Callable[[], LocalStack], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the write function's rules fail on one event of acct-a (v2), and nothing else
    poisoned = new_event_id()
    poison = Poison(poisoned)
    real_domain = handlers.write.domain
    monkeypatch.setattr(handlers.write, "domain", lambda: PoisonedRules(real_domain(), poison))
    stack = start_stack()
    a = [post(stack, "acct-a", "AccountOpened", {"owner": "Ada"})]
    a.append(post(stack, "acct-a", "MoneyDeposited", {"amount": 500}, event_id=poisoned))
    b = [post(stack, "acct-b", "AccountOpened", {"owner": "Bo"})]
    b.append(post(stack, "acct-b", "MoneyDeposited", {"amount": 100}))
    a.append(post(stack, "acct-a", "MoneyDeposited", {"amount": 70}))

    # When its retries run out, the batch is dead-lettered and the shard moves on
    wait_for(lambda: queued(settings, WRITE_QUEUE) >= 1, "the write function's dead letter")
    late_b = post(stack, "acct-b", "MoneyDeposited", {"amount": 1})  # after the poison, on the same shard
    wait_for(lambda: state(stack, "acct-b").get("version") == 3, "acct-b's later events projected")
    assert state(stack, "acct-b")["state"]["balance"] == 101
    assert outcome(stack, late_b) == "applied"
    quiet(lambda: poison.hits)  # every batch holding acct-a has been given up on
    assert state(stack, "acct-a").get("version", 0) < 2  # stuck before the poison, in order
    # Each batch that held the poison was tried once and retried the bounded number of times, no more.
    letters = queued(settings, WRITE_QUEUE)
    assert poison.hits == letters * (1 + WRITE_QUEUE.max_retry_attempts)
    # The service (not poisoned) exports every live deposit; quiet alone could mean "not started yet".
    assert stack.ledger is not None
    ledger = stack.ledger
    deposits = {a[1], a[2], b[1], late_b}
    wait_for(lambda: {e["event_id"] for e in ledger.entries()} == deposits, "the service's live exports")
    settle(stack)
    b_before = state(stack, "acct-b")
    ledger_posts = ledger.request_count("POST /entries")

    # And the queue holds the range that names the stuck aggregate
    code, out, err = ops(stack, "redrive", "--peek", "--mapping", WRITE_QUEUE.key, "--json")
    assert code == 0, err
    [peeked] = orjson.loads(out)["redrive"]
    assert peeked["messages"] == letters
    assert {letter["how"] for letter in peeked["letters"]} == {"range"}
    assert all("acct-a" in letter["aggregates"] for letter in peeked["letters"])
    assert queued(settings, WRITE_QUEUE) == letters  # a peek takes nothing

    # When the fix is deployed and the batch redriven
    poison.active = False
    handlers.runtime.reset()
    code, out, err = ops(stack, "redrive", "--timeout", str(TIMEOUT), "--json")

    # Then acct-a is up to date, projected as live (outcomes recorded), and the messages are gone
    assert code == 0, err
    [done] = [r for r in orjson.loads(out)["redrive"] if r["mapping"] == WRITE_QUEUE.key]
    assert (done["messages"], done["redriven"], done["kept"]) == (letters, letters, 0)
    a_state = state(stack, "acct-a")
    assert (a_state["version"], a_state["state"]["balance"]) == (3, 570)
    assert [outcome(stack, e) for e in a] == ["applied", "applied", "applied"]
    assert queued(settings, WRITE_QUEUE) == 0
    # Nothing applied twice: acct-b, replayed too (it was in the range), was already reflected and not rewritten
    assert state(stack, "acct-b") == b_before
    # The redrive was addressed to the write function only: the service sent nothing for it
    settle(stack)
    assert stack.ledger is not None
    assert stack.ledger.request_count("POST /entries") == ledger_posts
    assert stack.ledger.duplicates == 0
    # A second run finds nothing to do
    code, out, err = ops(stack, "redrive")
    assert code == 0, err
    assert f"{WRITE_QUEUE.key}: no dead letters" in out


def test_a_poison_event_of_the_service_is_redriven_live_without_sending_anything_twice(
    settings: Settings, start_stack: Callable[[], LocalStack], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the service function fails on one deposit of acct-c
    poisoned = new_event_id()
    poison = Poison(poisoned)
    real_process = handlers.service.process

    def process(event: Event) -> Any:
        poison.check(event)
        return real_process(event)

    monkeypatch.setattr(handlers.service, "process", process)
    stack = start_stack()
    assert stack.ledger is not None
    assert stack.rates is not None
    c = [post(stack, "acct-c", "AccountOpened", {"owner": "Cy"})]
    c.append(post(stack, "acct-c", "MoneyDeposited", {"amount": 300}))
    ledger = stack.ledger
    wait_for(lambda: bool(ledger.entries("acct-c")), "acct-c's first deposit exported")
    settle(stack)
    assert [e["event_id"] for e in ledger.entries("acct-c")] == [c[1]]  # exported live, once
    c.append(post(stack, "acct-c", "MoneyDeposited", {"amount": 40}, event_id=poisoned))
    d = [post(stack, "acct-d", "AccountOpened", {"owner": "Di"})]
    d.append(post(stack, "acct-d", "MoneyDeposited", {"amount": 10}))

    # When its retries run out the batch is dead-lettered, and later events move on
    wait_for(lambda: queued(settings, SERVICE_QUEUE) >= 1, "the service function's dead letter")
    d.append(post(stack, "acct-d", "MoneyDeposited", {"amount": 5}))
    wait_for(lambda: d[-1] in {e["event_id"] for e in stack.ledger.entries("acct-d")}, "acct-d's later entry")
    settle(stack)
    assert poisoned not in {e["event_id"] for e in stack.ledger.entries()}
    rates_before = stack.rates.request_count("GET /rates")

    # When the fix is deployed and the batch redriven
    poison.active = False
    code, out, err = ops(stack, "redrive", "--mapping", SERVICE_QUEUE.key, "--timeout", str(TIMEOUT))
    assert code == 0, err
    assert "1 redriven and deleted, 0 kept" in out
    settle(stack)

    # Then every deposit is in the ledger exactly once, nothing was sent twice, and the queue is empty
    deposits = {c[1], c[2], d[1], d[2]}
    entries = [e["event_id"] for e in stack.ledger.entries()]
    assert sorted(entries) == sorted(deposits)
    assert stack.ledger.request_count("POST /entries") == len(deposits)  # each sent once, never again
    assert stack.ledger.duplicates == 0
    # Queries already answered were answered from their recordings: only events never processed asked again
    # (the poison, and acct-d's deposit that was in the dead-lettered batch after it, if it was).
    asked = stack.rates.request_count("GET /rates") - rates_before
    assert 1 <= asked <= 2
    assert queued(settings, SERVICE_QUEUE) == 0


class TrimmedStream:
    """A change stream client whose records are gone (past the stream's 24 hours), as DynamoDB Streams says."""

    def get_shard_iterator(self, **kwargs: Any) -> Any:
        raise ClientError(
            {"Error": {"Code": "TrimmedDataAccessException", "Message": "beyond the trim horizon"}},
            "GetShardIterator",
        )


def test_a_dead_letter_whose_range_is_gone_falls_back_to_the_arrival_window(
    settings: Settings, start_stack: Callable[[], LocalStack]
) -> None:
    # Given two events recorded a while apart, and an on-failure record whose range the stream no longer has
    stack = start_stack()
    post(stack, "acct-early", "AccountOpened", {"owner": "Ed"})
    wait_for(lambda: state(stack, "acct-early").get("version") == 1, "acct-early projected")
    time.sleep(1.5)
    post(stack, "acct-w", "AccountOpened", {"owner": "Wu"})
    wait_for(lambda: state(stack, "acct-w").get("version") == 1, "acct-w projected")
    status, history = http("GET", f"{stack.url}/aggregates/acct-w/events")
    assert status == 200, history
    recorded_at = history["events"][0]["recorded_at"]
    letter = DeadLetter(
        mapping=WRITE_QUEUE,
        message_id="m-1",
        receipt_handle="r-1",
        condition="RetryAttemptsExhausted",
        invocations=6,
        timestamp=recorded_at,
        shard_id="shardId-00000001700000000000-0a1b2c3d",
        start="100",
        end="100",
        size=1,
        stream_arn="arn:aws:dynamodb:us-east-1:123456789012:table/es-test-events/stream/2026-01-01T00:00:00.000",
        first_arrival=recorded_at,
        last_arrival=recorded_at,
    )
    # When it is resolved, then the events the log recorded in the arrival window (widened by the margin) are
    # taken, and nothing outside it
    redrives = Redrives(settings, say=lambda line: None, margin_s=1.0, streams=TrimmedStream())
    resolved = redrives.resolve(letter)
    assert resolved.how == "window"
    assert set(resolved.aggregates) == {"acct-w"}
    assert "widened by 1 s" in resolved.note
    # A window with nothing in it is not taken as "nothing to redrive": the message is kept
    empty = Redrives(settings, say=lambda line: None, margin_s=1.0, streams=TrimmedStream())
    far = DeadLetter(
        **{
            **letter.__dict__,
            "first_arrival": "2001-01-01T00:00:00.000Z",
            "last_arrival": "2001-01-01T00:00:00.000Z",
        }
    )
    assert empty.resolve(far).how == "unresolved"


def send(settings: Settings, mapping: Any, body: str) -> None:
    sqs = sqs_client(settings)
    url = sqs.get_queue_url(QueueName=mapping.dead_letter_queue(settings.prefix))["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody=body)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["redrive", "--mapping", "ingest-to-pump"],
            "the pump's dead letters are submissions not yet in the log",
        ),
        (["redrive", "--mapping", "audit-to-write"], "no mapping named 'audit-to-write'"),
        (["redrive", "--list", "--peek"], "not allowed with argument"),
        (["redrive", "--timeout", "0"], "argument --timeout: 0 is not positive"),
    ],
)
def test_bad_redrive_arguments_are_one_line_and_exit_2(argv: list[str], message: str) -> None:
    out, err = io.StringIO(), io.StringIO()
    assert main(argv, dict(os.environ), out, err) == 2
    assert message in err.getvalue()
    assert err.getvalue().count("\n") == 1


def test_list_counts_every_queue_and_what_cannot_be_redriven_is_kept_with_exit_1(
    settings: Settings, start_stack: Callable[[], LocalStack]
) -> None:
    stack = start_stack()
    # Given a message that is not an on-failure record, and one naming a playback range that is not there
    send(settings, WRITE_QUEUE, "not json")
    playback_to_write = mapping_spec("playback-to-write")
    arn = f"arn:aws:kinesis:us-east-1:123456789012:stream/{settings.playback_stream}"
    gone = {
        "requestContext": {"condition": "RetryAttemptsExhausted", "approximateInvokeCount": 6},
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST"},
        "version": "1.0",
        "timestamp": "2026-01-01T00:00:00.000Z",
        "KinesisBatchInfo": {
            "shardId": "shardId-000000000000",
            "startSequenceNumber": "49000000000000000000000000000000000000000000000000000001",
            "endSequenceNumber": "49000000000000000000000000000000000000000000000000000002",
            "batchSize": 2,
            "streamArn": arn,
        },
    }
    send(settings, playback_to_write, json.dumps(gone))

    code, out, err = ops(stack, "redrive", "--list", "--json")
    assert code == 0, err
    counts = {q["mapping"]: q["visible"] for q in orjson.loads(out)["queues"]}
    assert counts == {
        "events-changes-to-write": 1,
        "playback-to-write": 1,
        **dict.fromkeys(["events-changes-to-service", "playback-to-service"], 0),
    }

    # When redriven, then neither is deleted, and the command says why in one line and exits 1
    code, out, err = ops(stack, "redrive")
    assert code == 1
    last = err.strip().splitlines()[-1]  # progress lines come before it on stderr
    assert last.startswith("ops: 2 problem(s), messages kept: ")
    assert "is not an on-failure record of a stream batch; left in the queue" in out
    assert "run the original replay again" in out
    assert queued(settings, WRITE_QUEUE) == 1
    assert queued(settings, playback_to_write) == 1
