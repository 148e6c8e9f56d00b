"""Projecting committed events into the state table: idempotent, in version order, gaps filled from the log.

The write handler (live events from the table's change stream, replayed ones from the playback stream) hands
each batch to `Projector.project_batch`. It groups the events by aggregate, keeping each aggregate's order,
and works on different aggregates concurrently (their state items are independent). For each aggregate it
reads the state once, applies what the state does not reflect yet, and writes the state once. It

- skips an event whose version the state already reflects (a redelivery, or a replay of old events);
- fills a gap (the event is ahead of the state by more than one) by reading the missing events from the
  events table, so the state always advances one version at a time;
- asks the domain's `apply` whether each event is applied or refused; a refused event leaves the state as it
  was but still advances the version the state reflects, and its refusal is recorded with its reason;
- writes the new state conditionally on the version it read, retrying from a fresh read if it lost a race.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

from eventlog.envelope import Event, utc_now
from eventlog.errors import ConcurrencyError, EventLogError
from eventlog.state import StateRecord, StateStore
from eventlog.status import Outcome, StatusStore
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


@dataclass(frozen=True, slots=True)
class BatchProjection:
    """What `project_batch` did: a result per event (None where its aggregate failed), and the index of the
    first event not done, with the error, if any."""

    results: list[Projected | None]
    first_failed: int | None
    error: BaseException | None


class Projector:
    """Keeps one state table in step with the log."""

    def __init__(
        self,
        events: EventStore,
        states: StateStore,
        apply: ApplyFn,
        statuses: StatusStore | None = None,
        clock: Callable[[], str] = utc_now,
        max_conflict_retries: int = 5,
        workers: int = 8,
    ) -> None:
        self.events = events
        self.states = states
        self.apply = apply
        self.statuses = statuses
        self._clock = clock
        self._retries = max_conflict_retries
        self._workers = workers
        self._pool: ThreadPoolExecutor | None = None

    def project(self, event: Event) -> Projected:
        """Project one event (see `project_aggregate`)."""
        return self.project_aggregate([event])[0]

    def project_batch(self, events: Sequence[Event]) -> BatchProjection:
        """Project a batch: each aggregate's events in version order, different aggregates concurrently.

        If an aggregate fails, its events are not done, and `first_failed` is the index of its first event in
        `events` (the lowest such index over all failed aggregates). Events of other aggregates after it may
        already be done; delivering them again is harmless, since projecting is idempotent."""
        groups: dict[str, list[int]] = {}
        for index, event in enumerate(events):
            groups.setdefault(event.aggregate_id, []).append(index)
        results: list[Projected | None] = [None] * len(events)
        failures: list[tuple[int, BaseException]] = []

        def run(indexes: list[int]) -> None:
            try:
                for index, projected in zip(
                    indexes, self.project_aggregate([events[i] for i in indexes]), strict=True
                ):
                    results[index] = projected
            except Exception as exc:  # reported through first_failed; the caller decides what to retry
                failures.append((indexes[0], exc))

        if len(groups) == 1 or self._workers <= 1:
            for indexes in groups.values():
                run(indexes)
        else:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="projector")
            list(self._pool.map(run, groups.values()))
        if not failures:
            return BatchProjection(results, None, None)
        first, error = min(failures, key=lambda failure: failure[0])
        return BatchProjection(results, first, error)

    def project_aggregate(self, events: Sequence[Event]) -> list[Projected]:
        """Project events of one aggregate (in any order, repeats allowed): read its state once, apply in
        version order what it does not reflect yet (filling gaps from the log), write the state once.
        Retries from a fresh read if another writer moved the state meanwhile."""
        for _ in range(self._retries):
            try:
                return self._project_aggregate_once(events)
            except ConcurrencyError:
                continue
        raise ConcurrencyError(f"state of {events[0].aggregate_id} kept changing under this batch")

    def _project_aggregate_once(self, events: Sequence[Event]) -> list[Projected]:
        aggregate_id = events[0].aggregate_id
        current = self.states.get(aggregate_id, consistent=True)
        have = current.version if current else 0
        state = current.state if current else None
        last, last_event_id = have, current.last_event_id if current else ""
        now = self._clock()
        done: dict[int, Projected] = {}
        for event in sorted(events, key=lambda e: e.version):
            if event.version <= last:
                done.setdefault(event.version, Projected(aggregate_id, event.version, "already_reflected"))
                continue
            chain = [event]
            if event.version > last + 1:
                missing = list(self.events.read(aggregate_id, last + 1, event.version - 1, consistent=True))
                if [e.version for e in missing] != list(range(last + 1, event.version)):
                    raise GapError(
                        f"{aggregate_id}: state at {last}, event at {event.version}, "
                        f"log holds {[e.version for e in missing]} in between"
                    )
                chain = [*missing, event]
            decision = Decision(state=state, applied=False)
            for item in chain:
                decision = self.apply(state, item)
                if decision.applied:
                    state = decision.state
                if self.statuses is not None:
                    # Outcomes are written before the state: a crash in between replays the same
                    # (deterministic) decisions on retry; the other order would lose the outcome for good.
                    outcome: Outcome = "applied" if decision.applied else "refused"
                    self.statuses.record_outcome(item.event_id, item.version, outcome, decision.reason, now)
            done[event.version] = Projected(
                aggregate_id,
                event.version,
                "applied" if decision.applied else "refused",
                filled=len(chain) - 1,
            )
            last, last_event_id = event.version, event.event_id
        if last > have:
            self.states.put(StateRecord(aggregate_id, last, state, now, last_event_id), expected_version=have)
        return [done[e.version] for e in events]
