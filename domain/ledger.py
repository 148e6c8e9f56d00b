"""The example microservice: an account ledger. Pure functions over the event envelope; no AWS, no clock.

Event types (payload amounts are positive integers in cents; the schema version is the current one):

    AccountOpened    v1 {owner}      opens an account with balance 0
    MoneyDeposited   v1 {amount}     adds to the balance                      (a diff: reversed by its inverse)
    MoneyWithdrawn   v1 {amount}     takes from the balance; refused if it would overdraw or is over the
                                     single-withdrawal limit in force when it occurred     (a diff: inverse)
    AccountClosed    v2 {reason}     closes an account; refused unless the balance is 0
                                     (v1 had no payload; read as v2 with reason "not recorded ...")
    OwnerChanged     v1 {owner}      the account's owner from now on    (a final value: reversed by replay)
    EventReversed    v1 {reversed_version, reversed_event_id, reversed_type, reason?}
                                     appended by POST /aggregates/{id}/events/{version}/reverse, never posted

As in the article, every well-formed request is recorded; these rules decide, where state is computed,
whether an event is applied or refused. A refused event stays in the log and leaves the state unchanged, so
a replay after a rule change can change the outcome.

Time: the rules read time only from the event (`occurred_at`), never from a clock, so a replay years later
decides exactly as the first run did. The single-withdrawal limit changed on 2026-07-01 (`WITHDRAWAL_LIMITS`):
a withdrawal is held to the limit in force when it occurred.

Reversal (docs/domain.md has the whole story): a reversal is decided with the aggregate's history (`fold`), at
its own place in the log, like any other event:
- a diff (deposit, withdrawal) is reversed by applying its inverse to the state as it is then; a deposit can be
  taken back only while the balance covers it. Later events keep their outcomes.
- a final value (OwnerChanged) is reversed by recomputing the state from the history without the reversed
  event: the owner becomes whatever the other events make it.
- refused: reversing a version that is already reversed, one the rules had refused (nothing to undo), a type
  that cannot be reversed, or on a closed account. A refused reversal stays in the log and changes nothing.

Releases: `Ledger(rules=...)` selects the rules of a release. "2026.1" is the previous release, kept to show a
bug-fix replay: it refused a withdrawal of exactly the whole balance (`>=` where `>` was meant). The current
release is "2026.2". The functions choose by the setting `ES_LEDGER_RULES` (see domain.from_environment).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from domain.schema import EventTypeSpec, FieldSpec, HistoryRequired, NotReversible, Problem, check_payload
from domain.upcasting import Upcasters
from eventlog.envelope import Event
from eventlog.projection import Decision

ACCOUNT_OPENED = "AccountOpened"
MONEY_DEPOSITED = "MoneyDeposited"
MONEY_WITHDRAWN = "MoneyWithdrawn"
ACCOUNT_CLOSED = "AccountClosed"
OWNER_CHANGED = "OwnerChanged"
EVENT_REVERSED = "EventReversed"

RULES_2026_1 = "2026.1"
RULES_2026_2 = "2026.2"
CURRENT_RULES = RULES_2026_2
RULES_RELEASES: Mapping[str, str] = {
    RULES_2026_1: "previous release: refused a withdrawal of exactly the whole balance (the bug)",
    RULES_2026_2: "current release: a withdrawal may take the whole balance",
}

# The single-withdrawal limit in cents, by the time it came into force (canonical timestamps, so string order
# is time order). A withdrawal is held to the limit in force at its occurred_at.
WITHDRAWAL_LIMITS: tuple[tuple[str, int], ...] = (
    ("1970-01-01T00:00:00.000000Z", 1_000_000),  # 10,000.00
    ("2026-07-01T00:00:00.000000Z", 200_000),  # 2,000.00 from 1 July 2026
)

# What an AccountClosed recorded in schema v1 (no payload) reads as in v2.
CLOSE_REASON_NOT_RECORDED = "not recorded (closed before reasons were required)"

EVENT_TYPES: dict[str, EventTypeSpec] = {
    spec.name: spec
    for spec in (
        EventTypeSpec(ACCOUNT_OPENED, 1, (FieldSpec("owner", "text", max_length=200),), "Open an account."),
        EventTypeSpec(MONEY_DEPOSITED, 1, (FieldSpec("amount", "amount"),), "Deposit cents.", "inverse"),
        EventTypeSpec(MONEY_WITHDRAWN, 1, (FieldSpec("amount", "amount"),), "Withdraw cents.", "inverse"),
        EventTypeSpec(
            ACCOUNT_CLOSED,
            2,
            (FieldSpec("reason", "text", max_length=200),),
            "Close an account whose balance is zero, saying why.",
        ),
        EventTypeSpec(
            OWNER_CHANGED,
            1,
            (FieldSpec("owner", "text", max_length=200),),
            "Change the account's owner (the new owner's name: a final value).",
            "replay",
        ),
    )
}
# Not in EVENT_TYPES: a client cannot post it; the reverse route builds it from the log.
REVERSAL_TYPE = EventTypeSpec(EVENT_REVERSED, 1, (), "Reverse an earlier event of the same aggregate.")
ALL_EVENT_TYPES: dict[str, EventTypeSpec] = {**EVENT_TYPES, EVENT_REVERSED: REVERSAL_TYPE}

UPCASTERS = Upcasters({name: spec.schema_version for name, spec in ALL_EVENT_TYPES.items()})


@UPCASTERS.register(ACCOUNT_CLOSED, 1)
def _account_closed_v1_to_v2(payload: dict[str, Any]) -> dict[str, Any]:
    # v1 closed without a reason; v2 requires one. History keeps its v1 payload; readers see this.
    return {**payload, "reason": CLOSE_REASON_NOT_RECORDED}


_NOT_REVERSIBLE = {
    ACCOUNT_OPENED: "an account opening cannot be reversed (close the account instead)",
    ACCOUNT_CLOSED: "an account closing cannot be reversed",
    EVENT_REVERSED: "a reversal cannot be reversed; to apply the reversed event again, append it anew",
}


def withdrawal_limit(occurred_at: str) -> tuple[str, int]:
    """The single-withdrawal limit in force at `occurred_at` (canonical timestamp): (since, cents)."""
    since, limit = WITHDRAWAL_LIMITS[0]
    for start, cents in WITHDRAWAL_LIMITS:
        if occurred_at >= start:
            since, limit = start, cents
    return since, limit


class Ledger:
    """The ledger domain (see the module docstring). `rules` selects a release's rules."""

    name = "ledger"
    event_types: Mapping[str, EventTypeSpec] = EVENT_TYPES

    def __init__(self, rules: str = CURRENT_RULES) -> None:
        if rules not in RULES_RELEASES:
            raise ValueError(f"unknown ledger rules {rules!r} (known: {', '.join(RULES_RELEASES)})")
        self.rules = rules

    def check(self, type_: str, payload: Any) -> tuple[dict[str, Any], list[Problem]]:
        """The payload normalised, and every problem with it (see domain.schema.Domain.check)."""
        if type_ == EVENT_REVERSED:
            return {}, [
                Problem(
                    "type",
                    "EventReversed is appended by POST /aggregates/{aggregate_id}/events/{version}/reverse",
                )
            ]
        spec = self.event_types.get(type_)
        if spec is None:
            known = ", ".join(sorted(self.event_types))
            return {}, [Problem("type", f"unknown event type {type_!r} (known: {known})")]
        return check_payload(spec, payload)

    def upcast(self, event: Event) -> Event:
        """The event in its type's current schema."""
        return UPCASTERS.upcast(event)

    def needs_history(self, event: Event) -> bool:
        """Reversals are decided with the aggregate's history."""
        return event.type == EVENT_REVERSED

    def apply(self, state: dict[str, Any] | None, event: Event) -> Decision:
        """The state after one event, or a refusal with its reason (see the module docstring)."""
        event = self.upcast(event)
        if self.needs_history(event):
            raise HistoryRequired(
                f"{event.type} v{event.version} of {event.aggregate_id} is decided with the aggregate's history: "
                "use fold(events)"
            )
        return self._decide(state, event)

    def fold(self, events: Sequence[Event]) -> list[Decision]:
        """Decide an aggregate's events from version 1, in order; one decision per event."""
        fold = _Fold(self)
        return [fold.step(event) for event in events]

    def schema_version(self, type_: str) -> int:
        """The current schema version of a type (KeyError for a type the ledger does not know)."""
        return ALL_EVENT_TYPES[type_].schema_version

    def reversal_for(self, target: Event, reason: str | None) -> tuple[str, dict[str, Any]]:
        """The EventReversed payload that reverses `target`; NotReversible for a type that cannot be."""
        spec = ALL_EVENT_TYPES.get(target.type)
        if spec is None or spec.reversal is None:
            raise NotReversible(_NOT_REVERSIBLE.get(target.type, f"{target.type} events cannot be reversed"))
        payload: dict[str, Any] = {
            "reversed_version": target.version,
            "reversed_event_id": target.event_id,
            "reversed_type": target.type,
        }
        if reason:
            payload["reason"] = reason
        return EVENT_REVERSED, payload

    # -- the rules -------------------------------------------------------------------------------------------

    def _decide(self, state: dict[str, Any] | None, event: Event) -> Decision:
        try:
            return self._rules(state, event)
        except (KeyError, TypeError) as exc:
            # Only a payload written around the API's checks gets here; refusing beats a stuck stream.
            return Decision.refuse(state, f"malformed {event.type} payload ({exc!r})")

    def _rules(self, state: dict[str, Any] | None, event: Event) -> Decision:
        payload = event.payload
        if event.type == ACCOUNT_OPENED:
            if state is not None:
                return Decision.refuse(state, "account is already opened")
            return Decision.accept(
                {
                    "status": "open",
                    "owner": payload["owner"],
                    "balance": 0,
                    "opened_at": event.occurred_at,
                    "closed_at": None,
                }
            )
        if event.type not in ALL_EVENT_TYPES:
            return Decision.refuse(state, f"unknown event type {event.type!r}")
        if state is None:
            return Decision.refuse(state, "account has not been opened")
        if state["status"] == "closed":
            return Decision.refuse(state, "account is closed")
        balance = state["balance"]
        if event.type == MONEY_DEPOSITED:
            return Decision.accept({**state, "balance": balance + payload["amount"]})
        if event.type == MONEY_WITHDRAWN:
            amount = payload["amount"]
            since, limit = withdrawal_limit(event.occurred_at)
            if amount > limit:
                return Decision.refuse(
                    state,
                    f"over the single-withdrawal limit: at most {limit} since {since[:10]}, withdrawal {amount}",
                )
            if self._overdraws(balance, amount):
                return Decision.refuse(state, f"insufficient funds: balance {balance}, withdrawal {amount}")
            return Decision.accept({**state, "balance": balance - amount})
        if event.type == ACCOUNT_CLOSED:
            if balance != 0:
                return Decision.refuse(state, f"balance must be 0 to close the account (it is {balance})")
            return Decision.accept(
                {
                    **state,
                    "status": "closed",
                    "closed_at": event.occurred_at,
                    "close_reason": payload["reason"],
                }
            )
        if event.type == OWNER_CHANGED:
            return Decision.accept({**state, "owner": payload["owner"]})
        return Decision.refuse(state, f"{event.type} is not decided on its own")

    def _overdraws(self, balance: int, amount: int) -> bool:
        if self.rules == RULES_2026_1:
            return amount >= balance  # the 2026.1 bug: the whole balance could not be withdrawn
        return amount > balance


class _Fold:
    """One pass over an aggregate's history: the state, and which versions are in effect (applied, not
    reversed), which a reversal needs to know."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.state: dict[str, Any] | None = None
        self.history: list[Event] = []
        self.by_id: dict[str, Event] = {}
        self.by_version: dict[int, Event] = {}
        self.in_effect: set[int] = set()
        self.reversed_by: dict[int, int] = {}

    def step(self, event: Event) -> Decision:
        event = self.ledger.upcast(event)
        if event.type == EVENT_REVERSED:
            decision = self._reverse(event)
        else:
            decision = self.ledger._decide(self.state, event)
            if decision.applied:
                self.in_effect.add(event.version)
        if decision.applied:
            self.state = decision.state
        self.history.append(event)
        self.by_id[event.event_id] = event
        self.by_version[event.version] = event
        return decision

    def _reverse(self, reversal: Event) -> Decision:
        state = self.state
        payload = reversal.payload
        # The target is named by event id first: a test environment's log numbers versions afresh.
        wanted_id = payload.get("reversed_event_id")
        wanted_version = payload.get("reversed_version")
        target = self.by_id.get(wanted_id) if wanted_id else self.by_version.get(wanted_version)  # type: ignore[arg-type]
        if target is None:
            return Decision.refuse(
                state, f"the reversed event (version {wanted_version}, {wanted_id}) is not in this history"
            )
        version = target.version
        spec = ALL_EVENT_TYPES.get(target.type)
        if spec is None or spec.reversal is None:
            reason = _NOT_REVERSIBLE.get(target.type, f"{target.type} events cannot be reversed")
            return Decision.refuse(state, reason)
        if version in self.reversed_by:
            return Decision.refuse(
                state, f"version {version} is already reversed (by version {self.reversed_by[version]})"
            )
        if version not in self.in_effect:
            return Decision.refuse(state, f"version {version} was refused, so there is nothing to reverse")
        if state is None or state["status"] == "closed":
            return Decision.refuse(state, "account is closed")
        if spec.reversal == "inverse":
            amount = target.payload["amount"]
            balance = state["balance"]
            if target.type == MONEY_DEPOSITED:
                if amount > balance:
                    return Decision.refuse(
                        state,
                        f"cannot take back the deposit of version {version}: balance {balance}, deposit {amount}",
                    )
                after: dict[str, Any] | None = {**state, "balance": balance - amount}
            else:
                after = {**state, "balance": balance + amount}
        else:
            # A final value carries nothing to undo it with: replay the history as if it had never happened.
            # (No rule of this ledger reads the owner, so no other event's outcome can change here.)
            without = _Fold(self.ledger)
            for event in self.history:
                if event.version != version:
                    without.step(event)
            after = without.state
        self.in_effect.discard(version)
        self.reversed_by[version] = reversal.version
        return Decision.accept(after, reverses=version)
