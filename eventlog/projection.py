"""Projecting committed events into the state table: idempotent, in version order, gaps filled from the log.

The write handler (live events from the table's change stream, replayed ones from the playback stream) hands
each event to `Projector.project`. The projector

- skips an event whose version the state already reflects (a redelivery, or a replay of old events);
- fills a gap (the event is ahead of the state by more than one) by reading the missing events from the
  events table, so the state always advances one version at a time;
- asks the domain's `apply` whether each event is applied or refused; a refused event leaves the state as it
  was but still advances the version the state reflects, and its refusal is recorded with its reason;
- writes the new state conditionally on the version it read, retrying from a fresh read if it lost a race.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from eventlog.envelope import Event, utc_now
from eventlog.errors import ConcurrencyError, EventLogError
from eventlog.state import StateRecord, StateStore
from eventlog.status import StatusStore
from eventlog.store import EventStore


@dataclass(frozen=True, slots=True)
class Decision:
    """The domain's verdict on one event: the state after it, or a refusal with a reason."""

    state: dict[str, Any] | None
    applied: bool
    reason: str | None = None

    @classmethod
    def accept(cls, state: dict[str, Any]) -> Decision:
        return cls(state=state, applied=True)

    @classmethod
    def refuse(cls, state: dict[str, Any] | None, reason: str) -> Decision:
        return cls(state=state, applied=False, reason=reason)


ApplyFn = Callable[[dict[str, Any] | None, Event], Decision]


@dataclass(frozen=True, slots=True)
class Projected:
    """What `project` did with one event."""

    aggregate_id: str
    version: int
    result: Literal["applied", "refused", "already_reflected"]
    filled: int = 0  # events read from the log to close a gap before this one


class GapError(EventLogError):
    """The log does not (yet) hold the versions between the state and the event being projected."""


class Projector:
    """Keeps one state table in step with the log. Holds a per-invocation cache of the states it wrote."""

    def __init__(
        self,
        events: EventStore,
        states: StateStore,
        apply: ApplyFn,
        statuses: StatusStore | None = None,
        clock: Callable[[], str] = utc_now,
        max_conflict_retries: int = 5,
    ) -> None:
        self.events = events
        self.states = states
        self.apply = apply
        self.statuses = statuses
        self._clock = clock
        self._retries = max_conflict_retries
        self._cache: dict[str, StateRecord | None] = {}

    def reset_cache(self) -> None:
        self._cache.clear()

    def project(self, event: Event) -> Projected:
        for _ in range(self._retries):
            try:
                return self._project_once(event)
            except ConcurrencyError:
                self._cache.pop(event.aggregate_id, None)
        raise ConcurrencyError(f"state of {event.aggregate_id} kept changing under version {event.version}")

    def _current(self, aggregate_id: str) -> StateRecord | None:
        if aggregate_id not in self._cache:
            self._cache[aggregate_id] = self.states.get(aggregate_id, consistent=True)
        return self._cache[aggregate_id]

    def _project_once(self, event: Event) -> Projected:
        current = self._current(event.aggregate_id)
        have = current.version if current else 0
        if event.version <= have:
            return Projected(event.aggregate_id, event.version, "already_reflected")
        chain = [event]
        if event.version > have + 1:
            missing = list(self.events.read(event.aggregate_id, have + 1, event.version - 1, consistent=True))
            if [e.version for e in missing] != list(range(have + 1, event.version)):
                raise GapError(
                    f"{event.aggregate_id}: state at {have}, event at {event.version}, "
                    f"log holds {[e.version for e in missing]} in between"
                )
            chain = [*missing, event]
        state = current.state if current else None
        decision = Decision(state=state, applied=False)
        now = self._clock()
        for item in chain:
            decision = self.apply(state, item)
            if decision.applied:
                state = decision.state
            if self.statuses is not None:
                # Outcomes are written before the state: a crash in between replays the same (deterministic)
                # decisions on retry, whereas the other order would lose the outcome for good.
                self.statuses.record_outcome(
                    item.event_id,
                    item.version,
                    "applied" if decision.applied else "refused",
                    decision.reason,
                    now,
                )
        record = StateRecord(event.aggregate_id, event.version, state, now, event.event_id)
        self.states.put(record, expected_version=have)
        self._cache[event.aggregate_id] = record
        return Projected(
            event.aggregate_id,
            event.version,
            "applied" if decision.applied else "refused",
            filled=len(chain) - 1,
        )
