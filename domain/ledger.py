"""The example microservice: an account ledger. Pure functions over the event envelope; no AWS.

Event types (payload amounts are positive integers in cents):

    AccountOpened    {owner}     opens an account with balance 0
    MoneyDeposited   {amount}    adds to the balance
    MoneyWithdrawn   {amount}    takes from the balance; refused if it would overdraw
    AccountClosed    {}          closes an account; refused unless the balance is 0

As in the article, every well-formed request is recorded; these rules decide, where state is computed,
whether an event is applied or refused. A refused event stays in the log and leaves the state unchanged, so
a replay after a rule change can change the outcome.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from domain.schema import EventTypeSpec, FieldSpec, Problem, check_payload
from eventlog.envelope import Event
from eventlog.projection import Decision

ACCOUNT_OPENED = "AccountOpened"
MONEY_DEPOSITED = "MoneyDeposited"
MONEY_WITHDRAWN = "MoneyWithdrawn"
ACCOUNT_CLOSED = "AccountClosed"

EVENT_TYPES: dict[str, EventTypeSpec] = {
    spec.name: spec
    for spec in (
        EventTypeSpec(ACCOUNT_OPENED, 1, (FieldSpec("owner", "text", max_length=200),), "Open an account."),
        EventTypeSpec(MONEY_DEPOSITED, 1, (FieldSpec("amount", "amount"),), "Deposit cents."),
        EventTypeSpec(MONEY_WITHDRAWN, 1, (FieldSpec("amount", "amount"),), "Withdraw cents."),
        EventTypeSpec(ACCOUNT_CLOSED, 1, (), "Close an account whose balance is zero."),
    )
}


class Ledger:
    """The ledger domain (see the module docstring)."""

    name = "ledger"
    event_types: Mapping[str, EventTypeSpec] = EVENT_TYPES

    def check(self, type_: str, payload: Any) -> tuple[dict[str, Any], list[Problem]]:
        spec = self.event_types.get(type_)
        if spec is None:
            known = ", ".join(sorted(self.event_types))
            return {}, [Problem("type", f"unknown event type {type_!r} (known: {known})")]
        return check_payload(spec, payload)

    def apply(self, state: dict[str, Any] | None, event: Event) -> Decision:
        if event.type == ACCOUNT_OPENED:
            if state is not None:
                return Decision.refuse(state, "account is already opened")
            return Decision.accept(
                {
                    "status": "open",
                    "owner": event.payload["owner"],
                    "balance": 0,
                    "opened_at": event.occurred_at,
                    "closed_at": None,
                }
            )
        if state is None:
            return Decision.refuse(state, "account has not been opened")
        if state["status"] == "closed":
            return Decision.refuse(state, "account is closed")
        if event.type == MONEY_DEPOSITED:
            return Decision.accept({**state, "balance": state["balance"] + event.payload["amount"]})
        if event.type == MONEY_WITHDRAWN:
            amount = event.payload["amount"]
            if amount > state["balance"]:
                return Decision.refuse(
                    state, f"insufficient funds: balance {state['balance']}, withdrawal {amount}"
                )
            return Decision.accept({**state, "balance": state["balance"] - amount})
        if event.type == ACCOUNT_CLOSED:
            if state["balance"] != 0:
                return Decision.refuse(
                    state, f"balance must be 0 to close the account (it is {state['balance']})"
                )
            return Decision.accept({**state, "status": "closed", "closed_at": event.occurred_at})
        return Decision.refuse(state, f"unknown event type {event.type!r}")
