"""The demo's first section: the basics of the live path (issues 1-3).

It opens two accounts, moves money, overdraws one (accepted, recorded, then refused by the domain), retries a
POST with the same Idempotency-Key (one event), loses an expected_version race (rejected before recording),
and reads state and history back.
"""

from __future__ import annotations

import json

from devstack.demo import Demo, DemoError, gist, money

TITLE = "The live path: accept, record, apply or refuse, read back"


def section(demo: Demo) -> None:
    """Run the section against the stack `demo` talks to; raises DemoError when the stack misbehaves."""
    alice, bob = f"alice-{demo.suffix}", f"bob-{demo.suffix}"
    demo.say(f"Two accounts, {alice} and {bob}.")
    demo.say("Amounts are integer cents. A POST answers 202 (accepted); the event is committed to the log")
    demo.say("a moment later, so the demo polls GET /events/{id} until it is.")

    demo.step("1. Open two accounts")
    demo.commit(alice, "AccountOpened", {"owner": "Alice"})
    demo.commit(bob, "AccountOpened", {"owner": "Bob"})

    demo.step(f"2. Alice deposits {money(10000)} and withdraws {money(2500)}")
    demo.commit(alice, "MoneyDeposited", {"amount": 10000})
    demo.commit(alice, "MoneyWithdrawn", {"amount": 2500})

    demo.step(f"3. Bob (balance 0.00) tries to withdraw {money(5000)}")
    demo.say("   The API accepts it and the log records it; the domain refuses it when computing state.")
    refused = demo.settle(demo.accepted(demo.post(bob, "MoneyWithdrawn", {"amount": 5000})))
    if refused.get("status") != "committed" or refused.get("outcome") != "refused":
        raise DemoError(f"expected the overdraft to be committed and refused, got {gist(refused)}")
    demo.say(f"   Refused, and why: {refused.get('outcome_reason')}")

    demo.step("4. A client retries a deposit with the same Idempotency-Key")
    key = f"demo-deposit-{demo.suffix}"
    first = demo.accepted(demo.post(bob, "MoneyDeposited", {"amount": 2000}, idempotency_key=key))
    again = demo.accepted(demo.post(bob, "MoneyDeposited", {"amount": 2000}, idempotency_key=key))
    if first != again:
        raise DemoError(f"the retry got a new event id ({again}) instead of the first answer ({first})")
    demo.say("   Same event id both times: one event, not two.")
    demo.settle(first)

    demo.step("5. A writer that read Alice at version 1 appends with expected_version 1 (she is at 3)")
    answer = demo.post(alice, "MoneyWithdrawn", {"amount": 100}, expected_version=1)
    if answer.status == 409:
        demo.say("   Rejected at once.")
    else:
        rejected = demo.settle(demo.accepted(answer))
        if rejected.get("status") != "rejected":
            raise DemoError(f"expected an expected_version conflict to be rejected, got {gist(rejected)}")
        demo.say(f"   Rejected before recording, and why: {rejected.get('reason')}")

    demo.step("6. Read state back")
    alice_state, bob_state = demo.state(alice), demo.state(bob)
    for name, record, balance in (("Alice", alice_state, 7500), ("Bob", bob_state, 2000)):
        got = (record.get("state") or {}).get("balance")
        if got != balance:
            raise DemoError(f"expected {name}'s balance to be {balance}, got {got}")

    demo.step("7. Bob's history: every event recorded, the refused one too, the retried deposit once")
    demo.say(f"  -> GET /aggregates/{bob}/events")
    history = demo.client.call("GET", f"/aggregates/{bob}/events", show=False)
    events = history.body.get("events", []) if isinstance(history.body, dict) else []
    demo.say(f"  <- {history.status} {len(events)} events (envelopes; version, type and payload shown)")
    for event in events:
        demo.say(
            f"     v{event['version']} {event['type']} {json.dumps(event['payload'], ensure_ascii=False)}"
        )
    types = [e["type"] for e in events]
    if types != ["AccountOpened", "MoneyWithdrawn", "MoneyDeposited"]:
        raise DemoError(f"expected Bob's history to be opened, withdrawn (refused), deposited; got {types}")
    demo.say()
    demo.say(
        f"Done. Alice holds {money(7500)}, Bob {money(2000)}. "
        f"Look around: curl {demo.client.base_url}/aggregates/{alice}/events"
    )
