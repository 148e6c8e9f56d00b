"""The example microservice's external interactions, as pure functions (no I/O; the service function and its
gateways do the calling).

Every event that changes an account's balance is exported to the bank's general ledger (the ledger-export
service), converted from the account's currency (EUR) into the reporting currency (USD) at the exchange rate
of the event's time, as the exchange-rate service answered when the event was first processed:

    entry = {"kind": "entry", "account_id", "event_id", "version", "type", "occurred_at",
             "currency": "EUR", "amount": <signed cents>, "reporting_currency": "USD",
             "reporting_amount": <signed cents>, "rate": "1.1000", "conversion": 2}

What an event moves is the difference the domain's decision makes to the balance (a deposit +, a withdrawal -,
a refused event 0, a reversal the opposite of what it reverses), so new event types and rules are exported
without a change here.

The rate is asked for every event that might move money (`rate_needed`), whatever the verdict: a later release
may apply an event this one refused, and a fix replay can then only answer that release's question from a
recording that was made at the time.

Releases of the conversion (`ES_LEDGER_EXPORT_VERSION`): 1 had a bug, it divided by the rate instead of
multiplying (100.00 EUR at 1.10 went out as 90.91 USD instead of 110.00); 2 multiplies and rounds half to even.
A fix replay after deploying 2 sends the ledger only the difference (`correction`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from domain.ledger import ACCOUNT_CLOSED, ACCOUNT_OPENED, OWNER_CHANGED
from eventlog.envelope import Event
from eventlog.projection import Decision

ACCOUNT_CURRENCY = "EUR"
REPORTING_CURRENCY = "USD"
# Stable call names: a fix replay finds the original processing's recordings by them.
EXPORT_CALL = "ledger-export"
RATE_CALL = f"exchange-rate:{ACCOUNT_CURRENCY}/{REPORTING_CURRENCY}"

CONVERSIONS: Mapping[int, str] = {
    1: "release 1: amount / rate (the bug: the rate inverted)",
    2: "release 2: amount x rate, rounded half to even",
}
CURRENT_CONVERSION = 2
VERSION_SETTING = "ES_LEDGER_EXPORT_VERSION"

# Types that never move money: no rate is asked for them. (A reversal does: it undoes what it reverses.)
NO_MONEY_TYPES = frozenset({ACCOUNT_OPENED, ACCOUNT_CLOSED, OWNER_CHANGED})
_CENT = Decimal(1)


def conversion_version(setting: str | None) -> int:
    """The conversion release a setting names (None or empty: the current one); ValueError otherwise."""
    if not setting:
        return CURRENT_CONVERSION
    try:
        version = int(setting)
    except ValueError:
        version = 0
    if version not in CONVERSIONS:
        known = ", ".join(str(v) for v in CONVERSIONS)
        raise ValueError(f"{VERSION_SETTING}={setting!r} is not a release of the conversion ({known})")
    return version


def rate_needed(event: Event) -> bool:
    """Whether the service asks the exchange rate for this event: every event that might move money, whatever
    the domain decides. Types not known to leave balances alone count as might (a new type, a reversal): an
    answer recorded and never used costs a little; one missing when a later release needs it stops a fix."""
    return event.type not in NO_MONEY_TYPES


def balance_change(before: Mapping[str, Any] | None, decision: Decision) -> int:
    """How many cents the event moved: the balance after the decision less the balance before it."""
    if not decision.applied:
        return 0
    was = int((before or {}).get("balance", 0))
    now = int((decision.state or {}).get("balance", 0))
    return now - was


def to_reporting(amount: int, rate: Decimal, conversion: int = CURRENT_CONVERSION) -> int:
    """Cents in the account's currency -> cents in the reporting currency, as release `conversion` does it."""
    if conversion == 1:
        converted = Decimal(amount) / rate  # the bug release 1 shipped with
    else:
        converted = Decimal(amount) * rate
    return int(converted.quantize(_CENT, rounding=ROUND_HALF_EVEN))


def entry_for(
    event: Event,
    before: Mapping[str, Any] | None,
    decision: Decision,
    rate: Decimal | None,
    conversion: int = CURRENT_CONVERSION,
) -> dict[str, Any] | None:
    """The ledger entry for an event (None when it moved no money). `rate` is required when it did."""
    amount = balance_change(before, decision)
    if amount == 0:
        return None
    if rate is None:
        raise ValueError(f"{event.type} v{event.version} of {event.aggregate_id} moved money but has no rate")
    return {
        "kind": "entry",
        "account_id": event.aggregate_id,
        "event_id": event.event_id,
        "version": event.version,
        "type": event.type,
        "occurred_at": event.occurred_at,
        "currency": ACCOUNT_CURRENCY,
        "amount": amount,
        "reporting_currency": REPORTING_CURRENCY,
        "reporting_amount": to_reporting(amount, rate, conversion),
        "rate": f"{rate}",
        "conversion": conversion,
    }


def correction(taken: Sequence[Mapping[str, Any]], wanted: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The entry that brings the ledger from what it took for an event (`taken`: the original entry and any
    corrections since) to what the current code would have sent (`wanted`; None: nothing). The ledger sums an
    event's entries, so the correction carries the differences of both amounts. None when there is none.

    When the original sent nothing (the event was refused then, or moved no money), the correction is the whole
    entry; when the current code would send nothing, it takes back everything the ledger holds."""
    held_amount = sum(int(e["amount"]) for e in taken)
    held_reporting = sum(int(e["reporting_amount"]) for e in taken)
    want_amount = int(wanted["amount"]) if wanted else 0
    want_reporting = int(wanted["reporting_amount"]) if wanted else 0
    if (want_amount, want_reporting) == (held_amount, held_reporting):
        return None
    basis = wanted if wanted is not None else taken[-1]
    return {
        "kind": "correction",
        "account_id": basis["account_id"],
        "event_id": basis["event_id"],
        "version": basis["version"],
        "type": basis["type"],
        "occurred_at": basis["occurred_at"],
        "currency": ACCOUNT_CURRENCY,
        "amount": want_amount - held_amount,
        "reporting_currency": REPORTING_CURRENCY,
        "reporting_amount": want_reporting - held_reporting,
        "rate": basis["rate"],
        "conversion": wanted["conversion"] if wanted else None,
        "corrects": {"amount": held_amount, "reporting_amount": held_reporting, "entries": len(taken)},
    }
