"""Helpers for the devstack tests: handlers that record what they were given, a scripted stream, waiting."""

from __future__ import annotations

import base64
import io
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from devstack.demo import Client, Demo
from devstack.lambda_runtime import Handler, LocalFunction
from devstack.pollers import Page, Record, Shard
from devstack.shapes import kinesis_event
from devstack.stack import LocalStack
from eventlog.settings import Settings
from eventlog.topology import function_spec

# Fast pacing for tests: the pollers' logic is what is under test, not their patience.
FAST = {"poll_interval_s": 0.005, "backoff_base_s": 0.001, "backoff_cap_s": 0.005}


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)


def kinesis_payloads(event: dict[str, Any]) -> list[str]:
    return [base64.b64decode(r["kinesis"]["data"]).decode() for r in event["Records"]]


def kinesis_sequence_numbers(event: dict[str, Any]) -> list[str]:
    return [r["kinesis"]["sequenceNumber"] for r in event["Records"]]


class Recorder:
    """A handler that records every batch it gets, then answers what `respond` says (or raises)."""

    def __init__(self, respond: Callable[[int, dict[str, Any]], Any] | None = None) -> None:
        self.events: list[dict[str, Any]] = []
        self.contexts: list[Any] = []
        self._respond = respond
        self._lock = threading.Lock()

    def __call__(self, event: dict[str, Any], context: Any) -> Any:
        with self._lock:
            self.events.append(event)
            self.contexts.append(context)
            call = len(self.events)
        if self._respond is None:
            return None
        return self._respond(call, event)

    @property
    def batches(self) -> list[list[str]]:
        """The Kinesis payloads of each invocation, in order."""
        with self._lock:
            return [kinesis_payloads(e) for e in self.events]

    @property
    def calls(self) -> int:
        with self._lock:
            return len(self.events)


class Contention:
    """Makes several callers of one function contend for it, and counts how many run its handler at once.

    The first invocation is held inside the handler until `callers` calls have reached the function's
    `invoke` (counted there, before its one-at-a-time lock), so that at that moment the others are all
    waiting to get in. Then it waits `grace` seconds more for a second invocation to come inside: let in,
    each would be inside within microseconds of arriving. So `most` is 1 only if the function really keeps
    them out. Every invocation then runs `handler` (the stand-in's own answer).
    """

    def __init__(self, callers: int, handler: Handler, grace: float = 0.3) -> None:
        self.callers = callers
        self.grace = grace
        self._handler = handler
        self._guard = threading.Lock()
        self._arrived = 0
        self._active = 0
        self.most = 0
        self._all_arrived = threading.Event()
        self._second_inside = threading.Event()

    def function(self, key: str) -> LocalFunction:
        """The function `key`, as the devstack runs it, with this contention's handler and arrival count."""
        contention = self

        class Contended(LocalFunction):
            def invoke(self, event: dict[str, Any]) -> Any:
                contention._arrive()
                return super().invoke(event)

        return Contended(function_spec(key), self._handle, "es-test", "us-east-1")

    def _arrive(self) -> None:
        with self._guard:
            self._arrived += 1
            if self._arrived >= self.callers:
                self._all_arrived.set()

    def _handle(self, event: dict[str, Any], context: Any) -> Any:
        with self._guard:
            self._active += 1
            self.most = max(self.most, self._active)
            if self._active > 1:
                self._second_inside.set()
        try:
            if not self._all_arrived.wait(10):
                raise AssertionError(f"{self.callers} calls never reached the function together")
            self._second_inside.wait(self.grace)
        finally:
            with self._guard:
                self._active -= 1
        return self._handler(event, context)


def failure(*sequence_numbers: str) -> dict[str, Any]:
    return {"batchItemFailures": [{"itemIdentifier": s} for s in sequence_numbers]}


class ScriptedSource:
    """One shard whose GetRecords answers are scripted, each at a given time on a fake clock.

    Each step is (time, payloads): the read that returns those records happens at that time. When the script
    runs out, reads return nothing and the clock jumps far ahead so every batching window closes.
    """

    name = "scripted"
    arn = "arn:aws:kinesis:us-east-1:123456789012:stream/scripted"

    def __init__(self, steps: Sequence[tuple[float, Sequence[str | bytes]]]) -> None:
        self._steps = list(steps)
        self._now = 0.0
        self._seq = 0
        self.reads = 0

    def now(self) -> float:
        return self._now

    def shards(self) -> list[Shard]:
        return [Shard("shardId-000000000000")]

    def iterator(self, shard_id: str, position: str, after_sequence_number: str | None = None) -> str:
        return "iterator"

    def read(self, iterator: str, limit: int) -> Page:
        self.reads += 1
        if not self._steps:
            self._now += 1000.0
            return Page([], iterator, caught_up=True)
        at, payloads = self._steps.pop(0)
        self._now = at
        records: list[Record] = []
        for payload in payloads:
            self._seq += 1
            data = payload.encode() if isinstance(payload, str) else payload
            records.append(
                {
                    "SequenceNumber": str(self._seq),
                    "Data": data,
                    "PartitionKey": "k",
                    "ApproximateArrivalTimestamp": 0.0,
                }
            )
        return Page(records, iterator, caught_up=True)

    def sequence_number(self, record: Record) -> str:
        return str(record["SequenceNumber"])

    def record_size(self, record: Record) -> int:
        return (len(record["Data"]) + 2) // 3 * 4 + 600

    def event(self, shard_id: str, records: Sequence[Record]) -> dict[str, Any]:
        return kinesis_event(records, shard_id=shard_id, stream_arn=self.arn, region="us-east-1")


def run_demo_section(settings: Settings, timeout: float, part: Callable[[Demo], None]) -> str:
    """Run one demo section (or any function of a Demo) against an in-process stack; what it printed."""
    out = io.StringIO()
    with LocalStack(port=0, endpoint_url=settings.endpoint_url, prefix=settings.prefix) as stack:
        part(Demo(Client(stack.url, out), timeout=timeout, environment=dict(os.environ)))
    return out.getvalue()
