"""The demo's domain part (issue 4, items 3, 6, 8, 9): reversals, a bug-fix replay that changes an outcome,
an old-schema event read in the current shape, and a rule that reads time from the event only.

Dana's account shows reversal: a deposit (recorded as a diff) is undone by its inverse, an owner change (a
final value) by replaying her history without it; reversing twice, reversing a reversal and reversing a version
that is not there are shown too. Erin's account runs under the previous release of the ledger's rules, which
refused a withdrawal of the whole balance; the fix is deployed and a fix replay of her account turns that
refusal into an application. Frank's account holds an AccountClosed as the previous schema recorded it (no
payload); the functions read it with the reason the upcaster gives it. Gina's withdrawals are held to the
single-withdrawal limit in force when they occurred, and a replay today decides them the same way.
"""

from __future__ import annotations

import json
from typing import Any

from devstack.demo import Demo, DemoError, gist, money
from eventlog.codec import event_to_item
from eventlog.envelope import Event, new_event_id, utc_now
from eventlog.state import StateStore
from eventlog.status import committed_item
from eventlog.store import EventStore

TITLE = "The domain: reversals, a bug-fix replay, an old schema, and time from the event"


def section(demo: Demo) -> None:
    """Run the part (see the module docstring); raises DemoError when the stack does something else."""
    reversals(demo, f"dana-{demo.suffix}")
    fix_replay(demo, f"erin-{demo.suffix}")
    upcasting(demo, f"frank-{demo.suffix}")
    time_from_the_event(demo, f"gina-{demo.suffix}")


# -- reversal ----------------------------------------------------------------------------------------------------


def reverse(demo: Demo, aggregate_id: str, version: int, reason: str | None = None) -> Any:
    body = {"reason": reason} if reason else None
    return demo.client.call("POST", f"/aggregates/{aggregate_id}/events/{version}/reverse", body)


def status(demo: Demo, event_id: str) -> dict[str, Any]:
    answer = demo.client.call("GET", f"/events/{event_id}", show=False)
    return answer.body if isinstance(answer.body, dict) else {}


def expect(condition: bool, what: str) -> None:
    if not condition:
        raise DemoError(what)


def reversals(demo: Demo, dana: str) -> None:
    demo.step("1. Reverse a deposit: the log gets a reversal event; the deposit stays in it")
    demo.commit(dana, "AccountOpened", {"owner": "Dana"})
    demo.commit(dana, "MoneyDeposited", {"amount": 10000})
    mistake = demo.commit(dana, "MoneyDeposited", {"amount": 2500})
    reversal = demo.settle(demo.accepted(reverse(demo, dana, 3, "deposited twice by mistake")))
    expect(reversal.get("outcome") == "applied", f"expected the reversal to be applied, got {gist(reversal)}")
    target = status(demo, str(mistake["event_id"]))
    demo.say(f"   the reversed deposit: GET /events/{str(mistake['event_id'])[:8]}... -> reversed_by "
             f"{json.dumps(target.get('reversed_by'))}")  # fmt: skip
    balance = demo.state(dana)["state"]["balance"]
    expect(balance == 10000, f"expected Dana's balance to be back to 100.00, got {money(balance)}")
    demo.say(f"   A deposit is a diff: its inverse took {money(2500)} back. Balance {money(balance)}.")

    demo.step("2. Reverse a final value: an owner change carries only the new name")
    demo.commit(dana, "OwnerChanged", {"owner": "Dana Smiht"})
    demo.settle(demo.accepted(reverse(demo, dana, 5, "misspelt")))
    owner = demo.state(dana)["state"]["owner"]
    expect(owner == "Dana", f"expected the owner to be Dana again, got {owner!r}")
    demo.say(
        f"   Nothing to invert: the state was recomputed from her history without version 5: owner {owner!r}."
    )

    demo.step("3. What cannot be reversed, or not twice")
    again = demo.settle(demo.accepted(reverse(demo, dana, 3)))
    expect(
        again.get("outcome") == "refused" and "already reversed" in str(again.get("outcome_reason")),
        f"expected a second reversal of version 3 to be refused, got {gist(again)}",
    )
    demo.say(f"   Reversing twice: recorded, and refused: {again.get('outcome_reason')}")
    answer = reverse(demo, dana, 4)
    expect(answer.status == 422, f"expected reversing a reversal to be refused (422), got {answer.status}")
    demo.say("   Reversing a reversal: refused before recording; to apply version 3 again, append it anew.")
    answer = reverse(demo, dana, 99)
    expect(
        answer.status == 404, f"expected reversing a version that is not there to be 404, got {answer.status}"
    )
    events = demo.client.call("GET", f"/aggregates/{dana}/events", show=False).body["events"]
    demo.say(f"   Dana's log, append-only ({len(events)} events):")
    for event in events:
        demo.say(
            f"     v{event['version']} {event['type']} {json.dumps(event['payload'], ensure_ascii=False)}"
        )


# -- a bug-fix replay ----------------------------------------------------------------------------------------------


def fix_replay(demo: Demo, erin: str) -> None:
    demo.step("4. A bug in the previous release: it refused a withdrawal of the whole balance")
    demo.deploy({"ES_LEDGER_RULES": "2026.1"}, "the previous release of the ledger's rules")
    try:
        demo.commit(erin, "AccountOpened", {"owner": "Erin"})
        demo.commit(erin, "MoneyDeposited", {"amount": 5000})
        refused = demo.commit(erin, "MoneyWithdrawn", {"amount": 5000}, outcome="refused")
    finally:
        demo.deploy({"ES_LEDGER_RULES": None}, "the current release: the fix")
    demo.say(f"   Refused then: {refused.get('outcome_reason')}")

    demo.step("5. With the fix deployed, a fix replay of Erin's account recomputes it from version 1")
    replay_id = f"fix-rules-{demo.suffix}"
    demo.replay("--mode", "fix", "--aggregate", erin, "--replay-id", replay_id)
    _wait_recomputed(demo, erin, replay_id)
    fixed = status(demo, str(refused["event_id"]))
    shown = str(refused["event_id"])[:8]
    demo.say(f"     GET /events/{shown}... -> {gist(fixed)}, decided by {fixed.get('outcome_replay_id')}")
    balance = demo.state(erin)["state"]["balance"]
    expect(
        fixed.get("outcome") == "applied" and balance == 0,
        f"expected the withdrawal applied and a balance of 0.00, got {gist(fixed)}, {money(balance)}",
    )
    demo.say(f"   The refusal became an application; Erin's balance is {money(balance)}.")


# -- upcasting -----------------------------------------------------------------------------------------------------


def upcasting(demo: Demo, frank: str) -> None:
    demo.step("6. An AccountClosed in the old schema (v1, no payload) is read as v2 (with a reason)")
    demo.commit(frank, "AccountOpened", {"owner": "Frank"})
    events = EventStore(demo.dynamodb(), demo.settings.events_table, demo.settings.event_status_table)
    old_id = _append_as_the_previous_release(demo, events, frank)
    demo.say(f"   In the log as the previous release wrote it: {_describe(events, frank, old_id)}")
    closed = demo.settle(old_id)
    expect(closed.get("outcome") == "applied", f"expected the old closing to be applied, got {gist(closed)}")
    state = demo.state(frank)["state"]
    demo.say(f"   Frank's state: status {state['status']!r}, close_reason {state['close_reason']!r}")
    expect(
        state.get("close_reason", "").startswith("not recorded"), f"expected the upcast reason, got {state}"
    )
    answer = demo.post(f"other-{demo.suffix}", "AccountClosed", {})
    expect(answer.status == 422, f"expected the API to refuse the old shape, got {answer.status}")
    demo.say("   The API takes only the current shape: AccountClosed needs a reason now.")


def _describe(events: EventStore, aggregate_id: str, event_id: str) -> str:
    for event in events.read(aggregate_id, consistent=True):
        if event.event_id == event_id:
            payload = json.dumps(event.payload)
            return f"v{event.version} {event.type} schema_version {event.schema_version} payload {payload}"
    raise DemoError(f"event {event_id} is not in {aggregate_id}'s log")


def _append_as_the_previous_release(demo: Demo, events: EventStore, aggregate_id: str) -> str:
    """Append a schema-v1 AccountClosed the way that release's pump did: its status entry, then the event."""
    version = events.head_version(aggregate_id) + 1
    now = utc_now()
    event = Event(new_event_id(), aggregate_id, "AccountClosed", version, 1, now, now, {})
    item = committed_item(event.event_id, aggregate_id, event.type, now, "previous-release", version, now)
    demo.dynamodb().put_item(TableName=demo.settings.event_status_table, Item=item)
    demo.dynamodb().put_item(
        TableName=demo.settings.events_table,
        Item=event_to_item(event),
        ConditionExpression="attribute_not_exists(version)",
    )
    return event.event_id


# -- time ----------------------------------------------------------------------------------------------------------


def time_from_the_event(demo: Demo, gina: str) -> None:
    demo.step("7. The single-withdrawal limit fell from 10,000.00 to 2,000.00 on 2026-07-01")
    demo.commit(gina, "AccountOpened", {"owner": "Gina"})
    demo.commit(gina, "MoneyDeposited", {"amount": 2_000_000})
    june = _commit_at(demo, gina, 500_000, "2026-06-30T12:00:00Z", "applied")
    july = _commit_at(demo, gina, 500_000, "2026-07-01T12:00:00Z", "refused")
    demo.say(f"   5,000.00 on 30 June: {june['outcome']}; the same on 1 July: {july['outcome']} "
             f"({july.get('outcome_reason')})")  # fmt: skip
    replay_id = f"fix-time-{demo.suffix}"
    demo.replay("--mode", "fix", "--aggregate", gina, "--replay-id", replay_id)
    _wait_recomputed(demo, gina, replay_id)
    after = [status(demo, str(s["event_id"])) for s in (june, july)]
    expect(
        [s.get("outcome") for s in after] == ["applied", "refused"]
        and not any("outcome_replay_id" in s for s in after),
        f"expected the replay to decide as the first run did, got {[gist(s) for s in after]}",
    )
    demo.say(
        "   A fix replay today recomputed Gina's account: the same outcomes (the rules read occurred_at,"
    )
    demo.say("   never the clock), so nothing was re-recorded.")


def _wait_recomputed(demo: Demo, aggregate_id: str, replay_id: str) -> None:
    """Until the write function has recomputed the aggregate for the replay (its state item carries the mark)."""
    states = StateStore(demo.dynamodb(), demo.settings.state_table)
    demo.wait_for(
        lambda: (record := states.get(aggregate_id)) is not None and replay_id in record.replays,
        f"the write function to recompute {aggregate_id} for {replay_id}",
    )


def _commit_at(demo: Demo, aggregate_id: str, amount: int, occurred_at: str, outcome: str) -> dict[str, Any]:
    body = {"type": "MoneyWithdrawn", "payload": {"amount": amount}, "occurred_at": occurred_at}
    answer = demo.client.call("POST", f"/aggregates/{aggregate_id}/events", body)
    settled = demo.settle(demo.accepted(answer))
    expect(settled.get("outcome") == outcome, f"expected the withdrawal to be {outcome}, got {gist(settled)}")
    return settled
