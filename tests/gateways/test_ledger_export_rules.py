"""The example service's pure rules for its external interactions (domain/ledger_export.py)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from domain.ledger_export import (
    conversion_version,
    correction,
    entry_for,
    rate_needed,
    to_reporting,
)
from eventlog.envelope import Event
from eventlog.projection import Decision


def event(type_: str = "MoneyDeposited", payload: dict | None = None, version: int = 2) -> Event:
    return Event(
        event_id=f"e-{version}",
        aggregate_id="acct-1",
        type=type_,
        version=version,
        schema_version=1,
        occurred_at="2026-01-01T00:00:00.000000Z",
        recorded_at="2026-01-01T00:00:00.000000Z",
        payload=payload if payload is not None else {"amount": 10000},
    )


OPEN = {"status": "open", "owner": "A", "balance": 5000}


def test_release_1_inverts_the_rate_and_release_2_multiplies_rounding_half_to_even() -> None:
    rate = Decimal("1.1000")
    assert to_reporting(10000, rate, conversion=1) == 9091  # the bug: 10000 / 1.1
    assert to_reporting(10000, rate, conversion=2) == 11000
    assert to_reporting(-2500, rate, conversion=2) == -2750
    assert to_reporting(5, Decimal("0.5"), conversion=2) == 2  # 2.5 -> 2 (half to even)
    assert to_reporting(7, Decimal("0.5"), conversion=2) == 4  # 3.5 -> 4


def test_an_entry_carries_what_the_decision_moved_in_both_currencies() -> None:
    deposit = event()
    decision = Decision.accept({**OPEN, "balance": 15000})

    entry = entry_for(deposit, OPEN, decision, Decimal("1.1000"), conversion=2)

    assert entry is not None
    assert (entry["amount"], entry["reporting_amount"], entry["rate"], entry["kind"]) == (
        10000,
        11000,
        "1.1000",
        "entry",
    )
    assert (entry["account_id"], entry["event_id"], entry["version"]) == ("acct-1", "e-2", 2)


def test_a_withdrawal_is_negative_and_a_refused_event_moves_nothing() -> None:
    withdrawal = event("MoneyWithdrawn", {"amount": 2000})
    applied = entry_for(withdrawal, OPEN, Decision.accept({**OPEN, "balance": 3000}), Decimal("2"))
    assert applied is not None
    assert (applied["amount"], applied["reporting_amount"]) == (-2000, -4000)
    assert entry_for(withdrawal, OPEN, Decision.refuse(OPEN, "insufficient funds"), Decimal("2")) is None
    with pytest.raises(ValueError, match="no rate"):
        entry_for(withdrawal, OPEN, Decision.accept({**OPEN, "balance": 3000}), None)


def test_the_rate_is_asked_for_anything_that_might_move_money_whatever_the_verdict() -> None:
    assert rate_needed(event("MoneyDeposited"))
    assert rate_needed(event("MoneyWithdrawn"))
    assert rate_needed(event("SomethingNew", {}))  # unknown: on the safe side
    assert not rate_needed(event("AccountOpened", {"owner": "A"}))
    assert not rate_needed(event("AccountClosed", {}))
    assert not rate_needed(event("OwnerChanged", {"owner": "B"}))
    assert rate_needed(event("EventReversed", {"reversed_version": 2}))  # it undoes what it reverses


def test_a_correction_is_the_difference_from_everything_the_ledger_took() -> None:
    wrong = {**_entry(10000, 9091), "conversion": 1}
    right = _entry(10000, 11000)

    first = correction([wrong], right)
    assert first is not None
    assert (first["kind"], first["amount"], first["reporting_amount"]) == ("correction", 0, 1909)
    assert first["corrects"] == {"amount": 10000, "reporting_amount": 9091, "entries": 1}
    assert correction([wrong, first], right) is None
    assert correction([right], right) is None
    assert correction([], None) is None


def test_a_correction_adds_what_was_never_sent_and_takes_back_what_should_not_have_been() -> None:
    added = correction([], _entry(2500, 2750))
    assert added is not None
    assert (added["amount"], added["reporting_amount"]) == (2500, 2750)
    taken_back = correction([_entry(2500, 2750)], None)
    assert taken_back is not None
    assert (taken_back["amount"], taken_back["reporting_amount"], taken_back["conversion"]) == (
        -2500,
        -2750,
        None,
    )


@pytest.mark.parametrize("text", ["", None])
def test_no_setting_is_the_current_release(text: str | None) -> None:
    assert conversion_version(text) == 2


@pytest.mark.parametrize("text", ["3", "x", "0"])
def test_an_unknown_release_is_a_clear_error(text: str) -> None:
    with pytest.raises(ValueError, match="ES_LEDGER_EXPORT_VERSION"):
        conversion_version(text)


def _entry(amount: int, reporting: int) -> dict:
    return {
        "kind": "entry",
        "account_id": "acct-1",
        "event_id": "e-2",
        "version": 2,
        "type": "MoneyDeposited",
        "occurred_at": "2026-01-01T00:00:00.000000Z",
        "amount": amount,
        "reporting_amount": reporting,
        "rate": "1.1000",
        "conversion": 2,
    }
