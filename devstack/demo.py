"""`python -m devstack demo`: a short scripted session against a running stack, for a newcomer to read.

It opens two accounts, moves money, overdraws one (accepted, recorded, then refused by the domain), retries a
POST with the same Idempotency-Key (one event), loses an expected_version race (rejected before recording),
and reads state and history back. Every request and the gist of its answer are printed. It checks what it
shows, so it also exits non-zero when the stack misbehaves.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, TextIO

DEFAULT_URL = "http://127.0.0.1:8080"


class DemoError(Exception):
    """The stack answered something the demo did not expect."""


class Unreachable(DemoError):
    """Nothing answers at the URL."""


@dataclass
class Answer:
    status: int
    body: Any
    headers: dict[str, str]


class Client:
    """A tiny JSON client over urllib that prints what it sends and the gist of what comes back."""

    def __init__(self, base_url: str, out: TextIO) -> None:
        self.base_url = base_url.rstrip("/")
        self.out = out

    def call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        show: bool = True,
    ) -> Answer:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base_url + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        if show:
            extra = "".join(f" [{n}: {v}]" for n, v in (headers or {}).items())
            self.say(f"  -> {method} {path}{extra}" + (f" {json.dumps(body)}" if body is not None else ""))
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                answer = Answer(response.status, _json(response.read()), dict(response.headers.items()))
        except urllib.error.HTTPError as error:
            answer = Answer(error.code, _json(error.read()), dict(error.headers.items()))
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            reason = getattr(exc, "reason", exc)
            raise Unreachable(
                f"no stack answers at {self.base_url} ({reason}); start one with `python -m devstack` "
                "(or `make run`) in another terminal, or pass --url"
            ) from exc
        if show:
            self.say(f"  <- {answer.status} {gist(answer.body)}")
        return answer

    def say(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return raw.decode("utf-8", "replace")


def gist(body: Any) -> str:
    """The interesting part of an answer, on one line."""
    if not isinstance(body, dict):
        return json.dumps(body)
    keep = (
        "error",
        "message",
        "event_id",
        "status",
        "version",
        "outcome",
        "outcome_reason",
        "reason",
        "state",
    )
    return json.dumps({k: body[k] for k in keep if k in body} or body, ensure_ascii=False)


def money(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


class Demo:
    def __init__(self, client: Client, timeout: float) -> None:
        self.client = client
        self.timeout = timeout
        suffix = secrets.token_hex(3)
        self.alice = f"alice-{suffix}"
        self.bob = f"bob-{suffix}"
        self.suffix = suffix

    def say(self, text: str = "") -> None:
        self.client.say(text)

    def step(self, title: str) -> None:
        self.say()
        self.say(f"== {title}")

    def post(
        self,
        aggregate_id: str,
        type_: str,
        payload: dict[str, Any],
        *,
        expected_version: int | None = None,
        idempotency_key: str | None = None,
    ) -> Answer:
        body: dict[str, Any] = {"type": type_, "payload": payload}
        if expected_version is not None:
            body["expected_version"] = expected_version
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return self.client.call("POST", f"/aggregates/{aggregate_id}/events", body, headers)

    def accepted(self, answer: Answer) -> str:
        if answer.status != 202 or not isinstance(answer.body, dict) or "event_id" not in answer.body:
            raise DemoError(f"expected 202 with an event_id, got {answer.status} {gist(answer.body)}")
        return str(answer.body["event_id"])

    def settle(self, event_id: str) -> dict[str, Any]:
        """Poll GET /events/{id} until the event is rejected, or committed with the domain's outcome."""
        deadline = time.monotonic() + self.timeout
        while True:
            answer = self.client.call("GET", f"/events/{event_id}", show=False)
            body = answer.body if isinstance(answer.body, dict) else {}
            if answer.status == 200 and (
                body.get("status") == "rejected"
                or (body.get("status") == "committed" and body.get("outcome") not in (None, "pending"))
            ):
                shown = {k: v for k, v in body.items() if k != "event_id"}
                self.say(f"     GET /events/{event_id[:8]}... -> {gist(shown)}")
                return body
            if answer.status not in (200, 404):
                raise DemoError(f"GET /events/{event_id} answered {answer.status} {gist(answer.body)}")
            if time.monotonic() > deadline:
                raise DemoError(
                    f"event {event_id} is still {body.get('status', 'unknown')} after {self.timeout:.0f}s: "
                    "are the stack's pollers running? (see its log)"
                )
            time.sleep(0.1)

    def commit(
        self, aggregate_id: str, type_: str, payload: dict[str, Any], outcome: str = "applied"
    ) -> None:
        status = self.settle(self.accepted(self.post(aggregate_id, type_, payload)))
        if status.get("status") != "committed" or status.get("outcome") != outcome:
            raise DemoError(f"expected the {type_} to be committed and {outcome}, got {gist(status)}")

    def state(self, aggregate_id: str) -> dict[str, Any]:
        answer = self.client.call("GET", f"/aggregates/{aggregate_id}")
        if answer.status != 200 or not isinstance(answer.body, dict):
            raise DemoError(f"GET /aggregates/{aggregate_id} answered {answer.status} {gist(answer.body)}")
        return answer.body

    def run(self) -> None:
        self.say(f"Demo against {self.client.base_url}: two accounts, {self.alice} and {self.bob}.")
        self.say(
            "Amounts are integer cents. A POST answers 202 (accepted); the event is committed to the log"
        )
        self.say("a moment later, so the demo polls GET /events/{id} until it is.")
        self.client.call("GET", f"/aggregates/{self.alice}", show=False)  # is anyone there?

        self.step("1. Open two accounts")
        self.commit(self.alice, "AccountOpened", {"owner": "Alice"})
        self.commit(self.bob, "AccountOpened", {"owner": "Bob"})

        self.step(f"2. Alice deposits {money(10000)} and withdraws {money(2500)}")
        self.commit(self.alice, "MoneyDeposited", {"amount": 10000})
        self.commit(self.alice, "MoneyWithdrawn", {"amount": 2500})

        self.step(f"3. Bob (balance 0.00) tries to withdraw {money(5000)}")
        self.say("   The API accepts it and the log records it; the domain refuses it when computing state.")
        refused = self.settle(self.accepted(self.post(self.bob, "MoneyWithdrawn", {"amount": 5000})))
        if refused.get("status") != "committed" or refused.get("outcome") != "refused":
            raise DemoError(f"expected the overdraft to be committed and refused, got {gist(refused)}")
        self.say(f"   Refused, and why: {refused.get('outcome_reason')}")

        self.step("4. A client retries a deposit with the same Idempotency-Key")
        key = f"demo-deposit-{self.suffix}"
        first = self.accepted(self.post(self.bob, "MoneyDeposited", {"amount": 2000}, idempotency_key=key))
        again = self.accepted(self.post(self.bob, "MoneyDeposited", {"amount": 2000}, idempotency_key=key))
        if first != again:
            raise DemoError(f"the retry got a new event id ({again}) instead of the first answer ({first})")
        self.say("   Same event id both times: one event, not two.")
        self.settle(first)

        self.step("5. A writer that read Alice at version 1 appends with expected_version 1 (she is at 3)")
        answer = self.post(self.alice, "MoneyWithdrawn", {"amount": 100}, expected_version=1)
        if answer.status == 409:
            self.say("   Rejected at once.")
        else:
            rejected = self.settle(self.accepted(answer))
            if rejected.get("status") != "rejected":
                raise DemoError(f"expected an expected_version conflict to be rejected, got {gist(rejected)}")
            self.say(f"   Rejected before recording, and why: {rejected.get('reason')}")

        self.step("6. Read state back")
        alice, bob = self.state(self.alice), self.state(self.bob)
        for name, record, balance in (("Alice", alice, 7500), ("Bob", bob, 2000)):
            got = (record.get("state") or {}).get("balance")
            if got != balance:
                raise DemoError(f"expected {name}'s balance to be {balance}, got {got}")

        self.step("7. Bob's history: every event recorded, the refused one too, the retried deposit once")
        self.say(f"  -> GET /aggregates/{self.bob}/events")
        history = self.client.call("GET", f"/aggregates/{self.bob}/events", show=False)
        events = history.body.get("events", []) if isinstance(history.body, dict) else []
        self.say(f"  <- {history.status} {len(events)} events (envelopes; version, type and payload shown)")
        for event in events:
            self.say(
                f"     v{event['version']} {event['type']} {json.dumps(event['payload'], ensure_ascii=False)}"
            )
        types = [e["type"] for e in events]
        if types != ["AccountOpened", "MoneyWithdrawn", "MoneyDeposited"]:
            raise DemoError(
                f"expected Bob's history to be opened, withdrawn (refused), deposited; got {types}"
            )
        self.say()
        self.say(
            f"Done. Alice holds {money(7500)}, Bob {money(2000)}. "
            f"Look around: curl {self.client.base_url}/aggregates/{self.alice}/events"
        )


def run_demo(url: str | None = None, *, timeout: float = 15.0, out: TextIO | None = None) -> int:
    """Run the scripted session against the stack at `url` ($ES_API_URL, else the default port). Returns the
    exit code: 0 when everything went as shown, 1 otherwise (with one line saying what)."""
    base = url or os.environ.get("ES_API_URL") or DEFAULT_URL
    stream = out if out is not None else sys.stdout
    try:
        Demo(Client(base, stream), timeout).run()
    except Unreachable as exc:
        print(f"devstack demo: {exc}", file=sys.stderr)
        return 1
    except DemoError as exc:
        print(f"devstack demo: unexpected answer: {exc}", file=sys.stderr)
        return 1
    return 0
