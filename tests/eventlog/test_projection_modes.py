"""The projector's modes: rebuild into another table without touching outcomes; fix/feature recomputation from
version 1, once per replay and aggregate, conditional on the live state; reversals decided with the history;
genuine schema-v1 events read in the current shape; decisions that never depend on the clock."""

from __future__ import annotations

import time
from typing import Any

import pytest

import eventlog.envelope
from domain import DOMAIN, Ledger
from domain.ledger import RULES_2026_1
from eventlog.codec import event_to_item
from eventlog.envelope import Event
from eventlog.projection import Projector, Target
from eventlog.resources import STATE_TABLE
from eventlog.settings import Settings
from eventlog.state import StateStore
from eventlog.status import StatusStore, committed_item
from eventlog.store import EventStore
from tests.support import FaultyClient, Pipeline, post_event, post_events

SHADOW = "es-test-state-shadow"


def projector(settings: Settings, client: Any, rules: Any = DOMAIN, clock: Any = None) -> Projector:
    kwargs = {"clock": clock} if clock else {}
    return Projector(
        EventStore(client, settings.events_table, settings.event_status_table),
        StateStore(client, settings.state_table),
        rules,
        StatusStore(client, settings.event_status_table),
        **kwargs,
    )


def commit(settings: Settings, aggregate_id: str, *bodies: dict[str, Any]) -> list[str]:
    ids = post_events(aggregate_id, *bodies)
    Pipeline(settings).pump()
    return ids


def log(settings: Settings, client: Any, aggregate_id: str) -> list[Event]:
    return list(EventStore(client, settings.events_table, settings.event_status_table).read(aggregate_id))


def statuses(settings: Settings, client: Any) -> StatusStore:
    return StatusStore(client, settings.event_status_table)


OPEN = {"type": "AccountOpened", "payload": {"owner": "Ada"}}


def money(kind: str, amount: int) -> dict[str, Any]:
    return {"type": f"Money{kind}", "payload": {"amount": amount}}


def whole_balance_history(settings: Settings, dynamodb: Any) -> list[str]:
    """acc-1: opened, 500 in, 500 out (the 2026.1 rules refuse that), 100 in; projected live by 2026.1."""
    ids = commit(
        settings, "acc-1", OPEN, money("Deposited", 500), money("Withdrawn", 500), money("Deposited", 100)
    )
    live = projector(settings, dynamodb, Ledger(RULES_2026_1))
    live.project_batch(log(settings, dynamodb, "acc-1"))
    assert statuses(settings, dynamodb).get(ids[2]).outcome == "refused"  # type: ignore[union-attr]
    return ids


def test_a_rebuild_projects_into_its_own_table_and_leaves_the_live_state_and_outcomes_alone(
    settings: Settings, dynamodb: Any
) -> None:
    ids = whole_balance_history(settings, dynamodb)
    dynamodb.create_table(**STATE_TABLE.create_table_kwargs(SHADOW))
    counting = FaultyClient(dynamodb)
    fixed = projector(settings, counting)
    shadow = Target(StateStore(counting, SHADOW), record_outcomes=False)

    events = log(settings, dynamodb, "acc-1")
    batch = fixed.project_batch(events, [shadow] * len(events))

    assert batch.first_failed is None
    rebuilt = StateStore(dynamodb, SHADOW).get("acc-1")
    live = StateStore(dynamodb, settings.state_table).get("acc-1")
    assert rebuilt is not None
    assert live is not None
    assert (rebuilt.version, rebuilt.state["balance"]) == (4, 100)  # type: ignore[index]
    assert live.state["balance"] == 600  # type: ignore[index]
    assert statuses(settings, dynamodb).get(ids[2]).outcome == "refused"  # type: ignore[union-attr]
    assert counting.calls.get("update_item", 0) == 0  # not one outcome written


def test_a_fix_recomputes_an_aggregate_once_per_replay_and_records_only_the_outcomes_that_changed(
    settings: Settings, dynamodb: Any
) -> None:
    ids = whole_balance_history(settings, dynamodb)
    counting = FaultyClient(dynamodb)
    fixed = projector(settings, counting)
    target = Target(fixed.states, recompute="fix-1")
    events = log(settings, dynamodb, "acc-1")

    first = fixed.project_batch(events[:2], [target] * 2)
    second = fixed.project_batch(events[2:], [target] * 2)

    assert [r.result for r in first.results if r] == ["recomputed", "already_reflected"]
    assert [r.result for r in second.results if r] == ["already_reflected", "already_reflected"]
    assert counting.calls["query"] == 1  # the log read once, for the first event only
    assert counting.calls["update_item"] == 1  # v3's outcome changed; the three others did not
    state = fixed.states.get("acc-1")
    assert state is not None
    assert (state.version, state.state["balance"], state.replays) == (4, 100, ("fix-1",))  # type: ignore[index]
    status = statuses(settings, dynamodb).get(ids[2])
    assert status is not None
    assert status.to_dict() | {"decided_at": "-"} == {
        "event_id": ids[2],
        "status": "committed",
        "aggregate_id": "acc-1",
        "type": "MoneyWithdrawn",
        "accepted_at": status.accepted_at,
        "version": 3,
        "recorded_at": status.recorded_at,
        "outcome": "applied",
        "decided_at": "-",
        "outcome_replay_id": "fix-1",
    }
    # Another replay recomputes again (nothing changes now) and adds its mark.
    again = fixed.project_batch(events[:1], [Target(fixed.states, recompute="fix-2")])
    assert again.results[0].result == "recomputed"  # type: ignore[union-attr]
    assert fixed.states.get("acc-1").replays == ("fix-1", "fix-2")  # type: ignore[union-attr]
    assert counting.calls["update_item"] == 1


def test_live_events_after_a_fix_keep_its_mark_so_the_replays_later_events_are_still_skipped(
    settings: Settings, dynamodb: Any
) -> None:
    whole_balance_history(settings, dynamodb)
    fixed = projector(settings, dynamodb)
    target = Target(fixed.states, recompute="fix-1")
    events = log(settings, dynamodb, "acc-1")
    fixed.project_batch(events[:1], [target])
    commit(settings, "acc-1", money("Deposited", 1))
    fixed.project_batch(log(settings, dynamodb, "acc-1")[4:])  # live: v5
    state = fixed.states.get("acc-1")
    assert state is not None
    assert (state.version, state.replays) == (5, ("fix-1",))
    late = fixed.project_batch(events[3:], [target])  # the replay's v4 arrives after the live v5
    assert late.results[0].result == "already_reflected"  # type: ignore[union-attr]


class StaleLog(EventStore):
    """The log as a reader saw it before versions after `head` were committed."""

    def __init__(self, inner: EventStore, head: int) -> None:
        super().__init__(inner._db, inner.events_table, inner.statuses.table)
        self.head = head

    def read(
        self,
        aggregate_id: str,
        from_version: int = 1,
        to_version: int | None = None,
        consistent: bool = False,
    ) -> Any:
        last = self.head if to_version is None else min(to_version, self.head)
        return super().read(aggregate_id, from_version, last, consistent)


class RaceBeforePut(StateStore):
    """A state store whose first put lets another writer go first (the interleaving of two Lambdas)."""

    def __init__(self, inner: StateStore, other: Any) -> None:
        super().__init__(inner._db, inner.table)
        self.other = other
        self.puts = 0

    def put(self, record: Any, expected_version: int, expected_replays: Any = None) -> None:
        self.puts += 1
        if self.puts == 1:
            self.other()
        super().put(record, expected_version, expected_replays)


def test_a_live_writer_that_read_the_state_before_a_fix_rewrote_it_retries_instead_of_undoing_the_fix(
    settings: Settings, dynamodb: Any
) -> None:
    ids = whole_balance_history(settings, dynamodb)
    commit(settings, "acc-1", money("Deposited", 1))  # v5, not projected yet
    fixed = projector(settings, dynamodb)
    events = log(settings, dynamodb, "acc-1")
    # The fix read the log just before v5 was committed, so it rewrites the state at version 4, the version
    # the live writer read, between the live writer's read and its put.
    fixing = Projector(StaleLog(fixed.events, 4), fixed.states, DOMAIN, fixed.statuses)
    racing = RaceBeforePut(
        fixed.states, lambda: fixing.project_batch(events[:1], [Target(fixed.states, recompute="fix-1")])
    )
    live = Projector(fixed.events, racing, Ledger(RULES_2026_1), fixed.statuses)

    live.project_batch(events[4:])

    state = fixed.states.get("acc-1")
    assert state is not None
    assert racing.puts == 2  # the first put lost (the fix had moved the marks), the retry read afresh
    assert (state.version, state.state["balance"], state.replays) == (5, 101, ("fix-1",))  # type: ignore[index]
    assert statuses(settings, dynamodb).get(ids[2]).outcome == "applied"  # type: ignore[union-attr]


def test_a_fix_that_read_the_state_before_a_live_write_recomputes_from_the_newer_state(
    settings: Settings, dynamodb: Any
) -> None:
    whole_balance_history(settings, dynamodb)
    commit(settings, "acc-1", money("Deposited", 1))
    fixed = projector(settings, dynamodb)
    events = log(settings, dynamodb, "acc-1")
    racing = RaceBeforePut(fixed.states, lambda: fixed.project_batch(events[4:]))  # live v5 lands first
    fixing = Projector(fixed.events, racing, DOMAIN, fixed.statuses)

    result = fixing.project_batch(events[:1], [Target(racing, recompute="fix-1")])

    assert result.first_failed is None
    state = fixed.states.get("acc-1")
    assert state is not None
    assert racing.puts == 2
    assert (state.version, state.state["balance"], state.replays) == (5, 101, ("fix-1",))  # type: ignore[index]


def test_a_live_reversal_is_decided_with_the_history_and_marks_the_reversed_event(
    settings: Settings, dynamodb: Any
) -> None:
    ids = commit(settings, "acc-1", OPEN, money("Deposited", 500), money("Deposited", 70))
    live = projector(settings, dynamodb)
    live.project_batch(log(settings, dynamodb, "acc-1"))
    target = live.events.get("acc-1", 3)
    assert target is not None
    # Reversing twice, the way the reverse route appends (tests/handlers/test_reverse.py goes through the API).
    first = append_directly(settings, dynamodb, *DOMAIN.reversal_for(target, "typo"))
    commit(settings, "acc-1", money("Deposited", 1))
    second = append_directly(settings, dynamodb, *DOMAIN.reversal_for(target, "again"))

    live.project_batch(log(settings, dynamodb, "acc-1")[3:])

    state = live.states.get("acc-1")
    assert state is not None
    assert (state.version, state.state["balance"]) == (6, 501)  # type: ignore[index]
    reversed_status = statuses(settings, dynamodb).get(ids[2])
    assert reversed_status is not None
    assert reversed_status.outcome == "applied"
    assert reversed_status.to_dict()["reversed_by"] == {"version": 4, "event_id": first}
    applied = statuses(settings, dynamodb).get(first)
    refused = statuses(settings, dynamodb).get(second)
    assert applied is not None
    assert refused is not None
    assert applied.outcome == "applied"
    assert (refused.outcome, refused.outcome_reason) == (
        "refused",
        "version 3 is already reversed (by version 4)",
    )


def append_directly(
    settings: Settings, dynamodb: Any, type_: str, payload: dict[str, Any], schema: int = 1
) -> str:
    """Append an event at the aggregate's next version with its committed status, as the pump would."""
    store = EventStore(dynamodb, settings.events_table, settings.event_status_table)
    version = store.head_version("acc-1") + 1
    at = eventlog.envelope.utc_now()
    event_id = f"0190000{version}-0000-7000-8000-0000000000{version:02d}"
    event = Event(event_id, "acc-1", type_, version, schema, at, at, payload)
    dynamodb.put_item(TableName=settings.events_table, Item=event_to_item(event))
    item = committed_item(event.event_id, "acc-1", type_, at, "f", version, at)
    dynamodb.put_item(TableName=settings.event_status_table, Item=item)
    return event.event_id


def put_v1_closing(settings: Settings, dynamodb: Any) -> str:
    """A genuine schema-v1 AccountClosed (no payload), as the previous release recorded it, with its status."""
    return append_directly(settings, dynamodb, "AccountClosed", {}, schema=1)


@pytest.mark.parametrize("mode", ["live", "rebuild", "fix"])
def test_a_genuine_v1_event_in_the_log_is_read_in_the_current_shape_in_every_mode(
    settings: Settings, dynamodb: Any, mode: str
) -> None:
    commit(settings, "acc-1", OPEN)
    closing = put_v1_closing(settings, dynamodb)
    assert dynamodb.get_item(
        TableName=settings.events_table, Key={"aggregate_id": {"S": "acc-1"}, "version": {"N": "2"}}
    )["Item"]["payload"] == {"S": "{}"}
    live = projector(settings, dynamodb)
    events = log(settings, dynamodb, "acc-1")
    if mode == "live":
        live.project_batch(events)
        states = live.states
    elif mode == "rebuild":
        dynamodb.create_table(**STATE_TABLE.create_table_kwargs(SHADOW))
        states = StateStore(dynamodb, SHADOW)
        live.project_batch(events, [Target(states, record_outcomes=False)] * 2)
    else:
        live.project_batch(events, [Target(live.states, recompute="fix-v1")] * 2)
        states = live.states
    state = states.get("acc-1")
    assert state is not None
    assert state.state["status"] == "closed"  # type: ignore[index]
    assert state.state["close_reason"] == "not recorded (closed before reasons were required)"  # type: ignore[index]
    if mode != "rebuild":
        assert statuses(settings, dynamodb).get(closing).outcome == "applied"  # type: ignore[union-attr]


def test_a_replay_years_later_decides_time_sensitive_rules_as_the_first_run_did(
    settings: Settings, dynamodb: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 5,000.00 withdrawn in June 2026, under the old 10,000.00 limit; from July 2026 the limit is 2,000.00.
    june = "2026-06-15T10:00:00+00:00"
    ids = [
        post_event("acc-1", {**body, "occurred_at": june}).body["event_id"]
        for body in (OPEN, money("Deposited", 900_000), money("Withdrawn", 500_000))
    ]
    Pipeline(settings).pump()
    live = projector(settings, dynamodb)
    live.project_batch(log(settings, dynamodb, "acc-1"))
    before = statuses(settings, dynamodb).get(ids[2])
    assert before is not None
    assert before.outcome == "applied"

    # Every clock the process has says 2031 now; the replay must not care.
    later = time.time() + 5 * 365 * 86400
    monkeypatch.setattr(time, "time", lambda: later)
    monkeypatch.setattr(eventlog.envelope, "utc_now", lambda: "2031-01-01T00:00:00.000000Z")
    replaying = projector(settings, dynamodb, clock=lambda: "2031-01-01T00:00:00.000000Z")
    replaying.project_batch(
        log(settings, dynamodb, "acc-1")[:1], [Target(replaying.states, recompute="fix-2031")]
    )

    after = statuses(settings, dynamodb).get(ids[2])
    assert after is not None
    assert (after.outcome, after.outcome_replay_id) == ("applied", None)  # decided the same: not rewritten
    state = replaying.states.get("acc-1")
    assert state is not None
    assert (state.state["balance"], state.updated_at) == (400_000, "2031-01-01T00:00:00.000000Z")  # type: ignore[index]
