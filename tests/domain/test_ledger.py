"""The ledger's rules, and invariants over any history (hypothesis)."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import domain
from domain import DOMAIN, Ledger, from_environment
from domain.ledger import EVENT_TYPES, RULES_2026_1
from eventlog.envelope import Event


def ev(
    type_: str,
    payload: dict[str, Any] | None = None,
    version: int = 1,
    at: str = "2026-01-01T00:00:00.000000Z",
) -> Event:
    """An event in its type's current schema."""
    schema = EVENT_TYPES[type_].schema_version
    return Event("e", "acc-1", type_, version, schema, at, at, payload or {})


CLOSE = {"reason": "customer request"}


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
        ev("AccountClosed", CLOSE, at="2026-02-01T00:00:00.000000Z"),
    )
    assert reasons == [None, None, None, None]
    assert state == {
        "status": "closed",
        "owner": "Ada",
        "balance": 0,
        "opened_at": "2026-01-01T00:00:00.000000Z",
        "closed_at": "2026-02-01T00:00:00.000000Z",
        "close_reason": "customer request",
    }


def test_the_rules_refuse_with_reasons_and_leave_state_unchanged() -> None:
    state, reasons = run(
        ev("MoneyDeposited", {"amount": 5}),
        ev("AccountOpened", {"owner": "Ada"}),
        ev("AccountOpened", {"owner": "Eve"}),
        ev("MoneyDeposited", {"amount": 100}),
        ev("MoneyWithdrawn", {"amount": 101}),
        ev("AccountClosed", CLOSE),
        ev("MoneyWithdrawn", {"amount": 100}),
        ev("AccountClosed", CLOSE),
        ev("MoneyDeposited", {"amount": 1}),
        ev("AccountClosed", CLOSE),
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
        st.builds(lambda: ("AccountClosed", CLOSE)),
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


def test_a_withdrawal_is_held_to_the_limit_in_force_when_it_occurred_not_when_it_is_decided() -> None:
    before, after = "2026-06-30T23:59:59.999999Z", "2026-07-01T00:00:00.000000Z"
    opened = ev("AccountOpened", {"owner": "Ada"}, 1, before)
    funded = ev("MoneyDeposited", {"amount": 2_000_000}, 2, before)
    state, reasons = run(
        opened,
        funded,
        ev("MoneyWithdrawn", {"amount": 500_000}, 3, before),  # 5,000.00: under the old 10,000.00 limit
        ev(
            "MoneyWithdrawn", {"amount": 500_000}, 4, after
        ),  # the same amount a microsecond later: over 2,000.00
        ev("MoneyWithdrawn", {"amount": 200_000}, 5, after),  # exactly the new limit
    )
    assert reasons == [
        None,
        None,
        None,
        "over the single-withdrawal limit: at most 200000 since 2026-07-01, withdrawal 500000",
        None,
    ]
    assert state is not None
    assert state["balance"] == 2_000_000 - 500_000 - 200_000


def test_the_2026_1_rules_refuse_a_withdrawal_of_the_whole_balance_and_the_current_ones_apply_it() -> None:
    history = [
        ev("AccountOpened", {"owner": "Ada"}, 1),
        ev("MoneyDeposited", {"amount": 500}, 2),
        ev("MoneyWithdrawn", {"amount": 500}, 3),
    ]
    buggy = Ledger(RULES_2026_1).fold(history)[-1]
    fixed = Ledger().fold(history)[-1]
    assert (buggy.applied, buggy.reason) == (False, "insufficient funds: balance 500, withdrawal 500")
    assert fixed.applied
    assert fixed.state is not None
    assert fixed.state["balance"] == 0


def test_the_rules_release_comes_from_the_setting_and_an_unknown_one_is_an_error() -> None:
    assert from_environment({}) is DOMAIN
    assert from_environment({"ES_LEDGER_RULES": "2026.2"}) is DOMAIN
    chosen = from_environment({"ES_LEDGER_RULES": "2026.1"})
    assert isinstance(chosen, Ledger)
    assert chosen.rules == RULES_2026_1
    with pytest.raises(ValueError, match=r"unknown ledger rules '2025.9' \(known: 2026.1, 2026.2\)"):
        from_environment({"ES_LEDGER_RULES": "2025.9"})


def test_the_rules_never_read_a_clock() -> None:
    # Time-sensitive rules read occurred_at only. The domain's modules do not import a clock at all, so no
    # replay can ever decide by the time it runs at.
    clocks = {"time", "datetime", "calendar"}
    folder = Path(domain.__file__).parent
    for path in [folder / name for name in ("__init__.py", "ledger.py", "schema.py", "upcasting.py")]:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module.split(".")[0]]
            assert not clocks & set(names), f"{path.name} imports {names}"
            if isinstance(node, ast.Attribute):
                assert node.attr not in ("utc_now", "now", "time_ns"), f"{path.name} reads a clock"
            if isinstance(node, ast.Name):
                assert node.id != "utc_now", f"{path.name} reads a clock"


def test_a_payload_written_around_the_api_is_refused_with_a_reason_instead_of_crashing() -> None:
    state, reasons = run(ev("AccountOpened", {"owner": "Ada"}), ev("MoneyDeposited", {"sum": 5}, 2))
    assert reasons[1] == "malformed MoneyDeposited payload (KeyError('amount'))"
    assert state is not None
    assert state["balance"] == 0


def test_the_api_checks_take_only_the_current_shapes() -> None:
    assert DOMAIN.check("AccountClosed", {"reason": "moving abroad"}) == ({"reason": "moving abroad"}, [])
    _, problems = DOMAIN.check("AccountClosed", {})  # the v1 shape
    assert [p.to_dict() for p in problems] == [
        {"field": "payload.reason", "message": "is required for AccountClosed"}
    ]
    assert DOMAIN.check("OwnerChanged", {"owner": "Grace"}) == ({"owner": "Grace"}, [])
    _, problems = DOMAIN.check("EventReversed", {"reversed_version": 1})
    assert problems[0].message.startswith(
        "EventReversed is appended by POST /aggregates/{aggregate_id}/events/"
    )
