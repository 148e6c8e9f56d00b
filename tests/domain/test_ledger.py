"""The ledger's rules, and invariants over any history (hypothesis)."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from domain import DOMAIN
from eventlog.envelope import Event


def ev(
    type_: str,
    payload: dict[str, Any] | None = None,
    version: int = 1,
    at: str = "2026-01-01T00:00:00.000000Z",
) -> Event:
    return Event("e", "acc-1", type_, version, 1, at, at, payload or {})


def run(*events: Event) -> tuple[dict[str, Any] | None, list[str | None]]:
    state = None
    reasons = []
    for e in events:
        decision = DOMAIN.apply(state, e)
        if decision.applied:
            state = decision.state
        reasons.append(decision.reason)
    return state, reasons


def test_an_account_opens_takes_deposits_and_withdrawals_and_closes_at_zero() -> None:
    state, reasons = run(
        ev("AccountOpened", {"owner": "Ada"}, at="2026-01-01T00:00:00.000000Z"),
        ev("MoneyDeposited", {"amount": 500}),
        ev("MoneyWithdrawn", {"amount": 500}),
        ev("AccountClosed", at="2026-02-01T00:00:00.000000Z"),
    )
    assert reasons == [None, None, None, None]
    assert state == {
        "status": "closed",
        "owner": "Ada",
        "balance": 0,
        "opened_at": "2026-01-01T00:00:00.000000Z",
        "closed_at": "2026-02-01T00:00:00.000000Z",
    }


def test_the_rules_refuse_with_reasons_and_leave_state_unchanged() -> None:
    state, reasons = run(
        ev("MoneyDeposited", {"amount": 5}),
        ev("AccountOpened", {"owner": "Ada"}),
        ev("AccountOpened", {"owner": "Eve"}),
        ev("MoneyDeposited", {"amount": 100}),
        ev("MoneyWithdrawn", {"amount": 101}),
        ev("AccountClosed"),
        ev("MoneyWithdrawn", {"amount": 100}),
        ev("AccountClosed"),
        ev("MoneyDeposited", {"amount": 1}),
        ev("AccountClosed"),
    )
    assert reasons == [
        "account has not been opened",
        None,
        "account is already opened",
        None,
        "insufficient funds: balance 100, withdrawal 101",
        "balance must be 0 to close the account (it is 100)",
        None,
        None,
        "account is closed",
        "account is closed",
    ]
    assert state is not None
    assert (state["owner"], state["balance"], state["status"]) == ("Ada", 0, "closed")


commands = st.lists(
    st.one_of(
        st.builds(lambda: ("AccountOpened", {"owner": "Ada"})),
        st.builds(lambda a: ("MoneyDeposited", {"amount": a}), st.integers(1, 1000)),
        st.builds(lambda a: ("MoneyWithdrawn", {"amount": a}), st.integers(1, 1000)),
        st.builds(lambda: ("AccountClosed", {})),
    ),
    max_size=30,
)


@given(commands)
def test_the_balance_is_never_negative_and_equals_applied_deposits_minus_withdrawals(cmds: list) -> None:  # type: ignore[type-arg]
    state = None
    applied_total = 0
    for version, (type_, payload) in enumerate(cmds, start=1):
        decision = DOMAIN.apply(state, ev(type_, payload, version))
        if decision.applied:
            state = decision.state
            if type_ == "MoneyDeposited":
                applied_total += payload["amount"]
            elif type_ == "MoneyWithdrawn":
                applied_total -= payload["amount"]
        else:
            assert decision.reason
            assert decision.state == state
        if state is not None:
            assert state["balance"] >= 0
            assert state["balance"] == applied_total


def test_apply_is_pure_it_does_not_change_the_state_it_is_given() -> None:
    state, _ = run(ev("AccountOpened", {"owner": "Ada"}), ev("MoneyDeposited", {"amount": 7}))
    assert state is not None
    before = dict(state)
    DOMAIN.apply(state, ev("MoneyWithdrawn", {"amount": 3}))
    assert state == before


def test_payload_checks_normalise_text_to_nfc() -> None:
    payload, problems = DOMAIN.check("AccountOpened", {"owner": "Zoe\u0301"})
    assert problems == []
    assert payload == {"owner": "Zo\u00e9"}
