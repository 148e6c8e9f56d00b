"""Reversal in the domain: diffs by their inverse, final values by replaying the history without them, and the
edge cases defined in docs/domain.md (twice, a reversal, a refused event, a type that cannot be reversed)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain import DOMAIN, HistoryRequired, Ledger, NotReversible
from domain.ledger import EVENT_TYPES, REVERSAL_TYPE, RULES_2026_1
from eventlog.envelope import Event
from eventlog.projection import Decision

AT = "2026-03-01T00:00:00.000000Z"


class History:
    """Builds one aggregate's log: each call appends the next version."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def add(self, type_: str, payload: dict[str, Any] | None = None) -> Event:
        version = len(self.events) + 1
        spec = EVENT_TYPES.get(type_, REVERSAL_TYPE)
        event = Event(f"id-{version}", "acc-1", type_, version, spec.schema_version, AT, AT, payload or {})
        self.events.append(event)
        return event

    def reverse(self, version: int, reason: str | None = None) -> Event:
        type_, payload = DOMAIN.reversal_for(self.events[version - 1], reason)
        return self.add(type_, payload)

    def fold(self, ledger: Ledger | None = None) -> list[Decision]:
        return (ledger or Ledger()).fold(self.events)


def opened_with(*deposits: int) -> History:
    history = History()
    history.add("AccountOpened", {"owner": "Ada"})
    for amount in deposits:
        history.add("MoneyDeposited", {"amount": amount})
    return history


def test_a_deposit_is_reversed_by_its_inverse_and_later_events_keep_their_outcomes() -> None:
    history = opened_with(500, 300)  # v2, v3
    history.add("MoneyWithdrawn", {"amount": 600})  # v4: applied only thanks to v3
    history.add("MoneyDeposited", {"amount": 200})  # v5
    history.reverse(3, "deposited twice")  # v6: takes the 300 back
    decisions = history.fold()
    assert [d.applied for d in decisions] == [True] * 6
    assert decisions[-1].reverses == 3
    assert decisions[-1].state is not None
    # The inverse is applied to the state as it is now; v4 is not decided again (it stays applied).
    assert decisions[-1].state["balance"] == 500 + 300 - 600 + 200 - 300


def test_a_deposit_that_was_spent_cannot_be_taken_back() -> None:
    history = opened_with(500)
    history.add("MoneyWithdrawn", {"amount": 400})
    history.reverse(2)
    last = history.fold()[-1]
    assert (last.applied, last.reason) == (
        False,
        "cannot take back the deposit of version 2: balance 100, deposit 500",
    )
    assert last.state is not None
    assert last.state["balance"] == 100


def test_a_withdrawal_is_reversed_by_paying_it_back() -> None:
    history = opened_with(500)
    history.add("MoneyWithdrawn", {"amount": 200})
    history.reverse(3)
    last = history.fold()[-1]
    assert last.applied
    assert last.state is not None
    assert last.state["balance"] == 500


def test_a_final_value_is_reversed_by_replaying_the_history_without_it() -> None:
    history = opened_with(100)
    history.add("OwnerChanged", {"owner": "Grace"})  # v3
    history.add("MoneyDeposited", {"amount": 50})  # v4
    history.reverse(3)  # v5: the owner is Ada again; v4 still counts
    last = history.fold()[-1]
    assert last.applied
    assert last.reverses == 3
    assert last.state is not None
    assert (last.state["owner"], last.state["balance"]) == ("Ada", 150)
    without = [e for e in history.events[:-1] if e.version != 3]
    assert last.state == DOMAIN.fold(without)[-1].state  # exactly the history without the reversed event


def test_reversing_a_final_value_that_a_later_one_replaced_keeps_the_later_one() -> None:
    history = opened_with()
    history.add("OwnerChanged", {"owner": "Grace"})  # v2
    history.add("OwnerChanged", {"owner": "Hedy"})  # v3
    history.reverse(2)
    last = history.fold()[-1]
    assert last.state is not None
    assert last.state["owner"] == "Hedy"


def test_reversing_twice_the_second_reversal_is_refused_and_changes_nothing() -> None:
    history = opened_with(500)
    history.reverse(2)  # v3
    history.reverse(2)  # v4
    decisions = history.fold()
    assert decisions[2].applied
    assert (decisions[3].applied, decisions[3].reason) == (
        False,
        "version 2 is already reversed (by version 3)",
    )
    assert decisions[3].state is not None
    assert decisions[3].state["balance"] == 0


def test_reversing_a_refused_event_is_refused_there_is_nothing_to_undo() -> None:
    history = opened_with()
    history.add("MoneyWithdrawn", {"amount": 5})  # v2: refused, no funds
    history.reverse(2)
    last = history.fold()[-1]
    assert (last.applied, last.reason) == (False, "version 2 was refused, so there is nothing to reverse")


def test_a_reversal_is_decided_anew_when_the_rules_that_refused_its_target_are_fixed() -> None:
    history = opened_with(500)
    history.add("MoneyWithdrawn", {"amount": 500})  # v3: refused by the 2026.1 bug
    history.reverse(3)  # v4
    buggy = history.fold(Ledger(RULES_2026_1))
    fixed = history.fold()
    assert (buggy[2].applied, buggy[3].applied) == (False, False)
    assert (fixed[2].applied, fixed[3].applied) == (True, True)
    assert fixed[3].state is not None
    assert fixed[3].state["balance"] == 500  # withdrawn, then paid back


def test_a_reversal_cannot_be_reversed_nor_can_an_opening_or_a_closing() -> None:
    history = opened_with(500)
    history.reverse(2)  # v3
    with pytest.raises(NotReversible, match="a reversal cannot be reversed"):
        DOMAIN.reversal_for(history.events[2], None)
    with pytest.raises(NotReversible, match="an account opening cannot be reversed"):
        DOMAIN.reversal_for(history.events[0], None)
    closing = Event("c", "acc-1", "AccountClosed", 9, 2, AT, AT, {"reason": "x"})
    with pytest.raises(NotReversible, match="an account closing cannot be reversed"):
        DOMAIN.reversal_for(closing, None)


def test_a_reversal_in_the_log_that_names_a_reversal_is_refused_even_if_it_got_past_the_api() -> None:
    history = opened_with(500)
    history.reverse(2)  # v3
    history.add(
        "EventReversed",
        {"reversed_version": 3, "reversed_event_id": "id-3", "reversed_type": "EventReversed"},
    )
    last = history.fold()[-1]
    assert (last.applied, last.reason) == (
        False,
        "a reversal cannot be reversed; to apply the reversed event again, append it anew",
    )


def test_the_target_is_found_by_event_id_so_a_renumbered_log_still_reverses_the_right_event() -> None:
    history = opened_with(500, 70)
    history.reverse(3)  # names id-3, version 3
    # A test environment's log holding only some of the events numbers them afresh: version 3 is gone.
    kept = [history.events[0], history.events[2], history.events[3]]
    renumbered = [
        Event(e.event_id, e.aggregate_id, e.type, i, e.schema_version, AT, AT, e.payload)
        for i, e in enumerate(kept, 1)
    ]
    last = DOMAIN.fold(renumbered)[-1]
    assert last.applied
    assert last.reverses == 2
    assert last.state is not None
    assert last.state["balance"] == 0
    missing = DOMAIN.fold([history.events[0], history.events[3]])[-1]
    assert (missing.applied, missing.reason) == (
        False,
        "the reversed event (version 3, id-3) is not in this history",
    )


def test_a_reversal_on_a_closed_account_is_refused() -> None:
    history = opened_with(500)
    history.add("MoneyWithdrawn", {"amount": 500})
    history.add("AccountClosed", {"reason": "moving"})
    history.reverse(3)
    assert history.fold()[-1].reason == "account is closed"


def test_apply_alone_cannot_decide_a_reversal() -> None:
    history = opened_with(500)
    reversal = history.reverse(2)
    with pytest.raises(HistoryRequired, match="use fold"):
        DOMAIN.apply(history.fold()[1].state, reversal)


steps = st.lists(
    st.one_of(
        st.tuples(st.just("MoneyDeposited"), st.integers(1, 500)),
        st.tuples(st.just("MoneyWithdrawn"), st.integers(1, 500)),
        st.tuples(st.just("OwnerChanged"), st.sampled_from(["Grace", "Hedy", "Ada"])),
        st.tuples(st.just("reverse"), st.integers(1, 40)),
    ),
    max_size=40,
)


@given(steps)
def test_any_history_balance_is_the_sum_of_the_diffs_in_effect_and_folding_is_prefix_consistent(
    plan: list[tuple[str, Any]],
) -> None:
    history = opened_with()
    for kind, value in plan:
        if kind == "reverse":
            target = history.events[(value - 1) % len(history.events)]
            if target.type in ("MoneyDeposited", "MoneyWithdrawn", "OwnerChanged"):
                history.reverse(target.version)
        elif kind == "OwnerChanged":
            history.add(kind, {"owner": value})
        else:
            history.add(kind, {"amount": value})
    decisions = history.fold()
    reversed_versions = {d.reverses for d in decisions if d.applied and d.reverses is not None}
    balance = 0
    for event, decision in zip(history.events, decisions, strict=True):
        if decision.applied and event.version not in reversed_versions:
            if event.type == "MoneyDeposited":
                balance += event.payload["amount"]
            elif event.type == "MoneyWithdrawn":
                balance -= event.payload["amount"]
        assert decision.state is not None
        assert decision.state["balance"] >= 0
    assert decisions[-1].state is not None
    assert decisions[-1].state["balance"] == balance
    # What a projection computes step by step is what a fold of the whole prefix computes (rebuild = live).
    cut = len(history.events) // 2 or 1
    assert DOMAIN.fold(history.events[:cut])[-1] == decisions[cut - 1]
