"""Projecting committed events into a state table: idempotent, in version order, gaps filled from the log.

The write handler (live events from the table's change stream, replayed ones from the playback stream) hands
each batch to `Projector.project_batch`, with a `Target` per event saying where and how to project it. It
groups the events by target and aggregate, keeping each aggregate's order, and works on different groups
concurrently (their state items are independent). For each group it reads the state once, works out the new
state, and writes it once.

Incremental (`Target.recompute` is None: live events, rebuild replays):
- an event whose version the state already reflects is skipped (a redelivery, or a replay of old events);
- a gap (the event is ahead of the state by more than one) is filled by reading the missing events from the
  events table, so the state always advances one version at a time;
- the rules decide each event (`apply`); a refused event leaves the state as it was but still advances the
  version the state reflects, and its outcome is recorded with its reason when the target records outcomes;
- an event that is decided with the aggregate's history (a reversal, `needs_history`) is decided by folding
  the log from version 1 through it (`fold`); outcomes that fold changes are recorded too (which event an
  applied reversal reverses, and any outcome the current rules decide differently).

Recompute (`Target.recompute` is a fix or feature replay's id): the first event of an aggregate in that replay
recomputes the aggregate's state from version 1 with the current rules (a fold of the whole log), records every
outcome that changed (marked with the replay id), and writes the state marked with the replay id; every later
event of the aggregate in the same replay finds the mark and is skipped.

Every state write is conditional on the version (and the replay marks) read, so two writers, live and replay,
never interleave an aggregate's versions; a lost race is retried from a fresh read. Outcomes are recorded
before the state is written: a crash in between replays the same (deterministic) decisions on retry; the other
order would lose the outcome for good.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal, Protocol, cast

from eventlog.envelope import Event, utc_now
from eventlog.errors import ConcurrencyError, EventLogError
from eventlog.state import StateRecord, StateStore
from eventlog.status import Outcome, StatusStore
from eventlog.store import EventStore

# How many fix/feature replay ids a state item keeps (most recent last): enough for the replays running at once.
MAX_REPLAY_MARKS = 16


@dataclass(frozen=True, slots=True)
class Decision:
    """The domain's verdict on one event: the state after it, or a refusal with a reason (and the state
    unchanged). An applied reversal names the version it reverses (`reverses`)."""

    state: dict[str, Any] | None
    applied: bool
    reason: str | None = None
    reverses: int | None = None

    @classmethod
    def accept(cls, state: dict[str, Any] | None, reverses: int | None = None) -> Decision:
        return cls(state=state, applied=True, reverses=reverses)

    @classmethod
    def refuse(cls, state: dict[str, Any] | None, reason: str) -> Decision:
        return cls(state=state, applied=False, reason=reason)


ApplyFn = Callable[[dict[str, Any] | None, Event], Decision]


class Rules(Protocol):
    """What the projector needs from a domain (domain.schema.Domain has it)."""

    def apply(self, state: dict[str, Any] | None, event: Event) -> Decision:
        """The decision on one event given the state before it."""
        ...

    def needs_history(self, event: Event) -> bool:
        """Whether the event is decided with the aggregate's history (then `fold` decides it)."""
        ...

    def fold(self, events: Sequence[Event]) -> list[Decision]:
        """Decisions on an aggregate's events from version 1, in order."""
        ...


class StepRules:
    """Rules from an `apply` function alone: every event is decided on its own."""

    def __init__(self, apply: ApplyFn) -> None:
        self.apply = apply

    def needs_history(self, event: Event) -> bool:
        return False

    def fold(self, events: Sequence[Event]) -> list[Decision]:
        state: dict[str, Any] | None = None
        decisions = []
        for event in events:
            decision = self.apply(state, event)
            if decision.applied:
                state = decision.state
            decisions.append(decision)
        return decisions


@dataclass(frozen=True, slots=True)
class Target:
    """Where and how events are projected: the state table, whether outcomes are recorded (not for a
    rebuild), and for a fix or feature replay its id (recompute each aggregate once for it)."""

    states: StateStore
    record_outcomes: bool = True
    recompute: str | None = None

    @property
    def key(self) -> tuple[str, bool, str | None]:
        return (self.states.table, self.record_outcomes, self.recompute)


@dataclass(frozen=True, slots=True)
class Projected:
    """What `project` did with one event."""

    aggregate_id: str
    version: int
    result: Literal["applied", "refused", "already_reflected", "recomputed"]
    filled: int = 0  # events read from the log to decide this one (a gap before it, or a recomputation)


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
    """Keeps state tables in step with the log. `states` (with `statuses`, when given) is the live target."""

    def __init__(
        self,
        events: EventStore,
        states: StateStore,
        rules: Rules | ApplyFn,
        statuses: StatusStore | None = None,
        clock: Callable[[], str] = utc_now,
        max_conflict_retries: int = 5,
        workers: int = 8,
    ) -> None:
        self.events = events
        self.states = states
        # A bare apply function (decides every event on its own) is still accepted.
        self.rules: Rules = cast(Rules, rules) if hasattr(rules, "fold") else StepRules(rules)
        self.statuses = statuses
        self.live = Target(states, record_outcomes=statuses is not None)
        self._clock = clock
        self._retries = max_conflict_retries
        self._workers = workers
        self._pool: ThreadPoolExecutor | None = None

    def project(self, event: Event, target: Target | None = None) -> Projected:
        """Project one event (see `project_aggregate`)."""
        return self.project_aggregate([event], target)[0]

    def project_batch(
        self, events: Sequence[Event], targets: Sequence[Target] | None = None
    ) -> BatchProjection:
        """Project a batch (`targets[i]` for `events[i]`; the live target for all when None): each aggregate's
        events in version order, different aggregates and targets concurrently.

        If a group fails, its events are not done, and `first_failed` is the index of its first event in
        `events` (the lowest such index over all failed groups). Events of other groups after it may already
        be done; delivering them again is harmless, since projecting is idempotent."""
        chosen = list(targets) if targets is not None else [self.live] * len(events)
        groups: dict[tuple[tuple[str, bool, str | None], str], list[int]] = {}
        for index, event in enumerate(events):
            groups.setdefault((chosen[index].key, event.aggregate_id), []).append(index)
        results: list[Projected | None] = [None] * len(events)
        failures: list[tuple[int, BaseException]] = []

        def run(indexes: list[int]) -> None:
            try:
                done = self.project_aggregate([events[i] for i in indexes], chosen[indexes[0]])
                for index, projected in zip(indexes, done, strict=True):
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

    def project_aggregate(self, events: Sequence[Event], target: Target | None = None) -> list[Projected]:
        """Project events of one aggregate (in any order, repeats allowed) into `target` (default: live):
        read its state once, work out the new state (module docstring), write it once. Retries from a fresh
        read if another writer moved the state meanwhile."""
        chosen = target or self.live
        for _ in range(self._retries):
            try:
                if chosen.recompute is not None:
                    return self._recompute_once(events, chosen)
                return self._project_once(events, chosen)
            except ConcurrencyError:
                continue
        raise ConcurrencyError(f"state of {events[0].aggregate_id} kept changing under this batch")

    # -- incremental -----------------------------------------------------------------------------------------

    def _project_once(self, events: Sequence[Event], target: Target) -> list[Projected]:
        aggregate_id = events[0].aggregate_id
        statuses = self.statuses if target.record_outcomes else None
        current = target.states.get(aggregate_id, consistent=True)
        have = current.version if current else 0
        delivered = {e.version: e for e in sorted(events, key=lambda e: e.version) if e.version > have}
        if not delivered:
            return [Projected(aggregate_id, e.version, "already_reflected") for e in events]
        top = max(delivered)
        chain, filled = self._chain(aggregate_id, have, top, delivered)
        now = self._clock()
        decisions: dict[int, Decision] = {}
        state = current.state if current else None
        rest = chain
        decided_with_history = [e.version for e in chain if self.rules.needs_history(e)]
        if decided_with_history:
            through = decided_with_history[-1]
            history = [*self._read_all(aggregate_id, 1, have), *(e for e in chain if e.version <= through)]
            folded = self.rules.fold(history)
            if statuses is not None:
                self._record_changes(statuses, history, folded, now, replay_id=None)
            decisions.update((e.version, d) for e, d in zip(history, folded, strict=True) if e.version > have)
            state = folded[-1].state
            rest = [e for e in chain if e.version > through]
        for item in rest:
            decision = self.rules.apply(state, item)
            if decision.applied:
                state = decision.state
            if statuses is not None:
                outcome: Outcome = "applied" if decision.applied else "refused"
                statuses.record_outcome(item.event_id, item.version, outcome, decision.reason, now)
            decisions[item.version] = decision
        replays = current.replays if current else ()
        target.states.put(
            StateRecord(aggregate_id, top, state, now, chain[-1].event_id, replays),
            expected_version=have,
            expected_replays=replays,
        )
        return [
            Projected(aggregate_id, e.version, "already_reflected")
            if e.version <= have
            else Projected(
                aggregate_id,
                e.version,
                "applied" if decisions[e.version].applied else "refused",
                filled=filled.get(e.version, 0),
            )
            for e in events
        ]

    def _chain(
        self, aggregate_id: str, have: int, top: int, delivered: dict[int, Event]
    ) -> tuple[list[Event], dict[int, int]]:
        """Versions have+1..top: the delivered events, and the missing ones read from the log. Also, per
        delivered version, how many were read to close the gap before it."""
        missing = [v for v in range(have + 1, top + 1) if v not in delivered]
        found: dict[int, Event] = {}
        if missing:
            found = {
                e.version: e for e in self.events.read(aggregate_id, missing[0], missing[-1], consistent=True)
            }
            absent = [v for v in missing if v not in found]
            if absent:
                raise GapError(
                    f"{aggregate_id}: state at {have}, event at {top}, the log lacks versions {absent[:10]}"
                )
        chain: list[Event] = []
        filled: dict[int, int] = {}
        gap = 0
        for version in range(have + 1, top + 1):
            if version in delivered:
                chain.append(delivered[version])
                filled[version] = gap
                gap = 0
            else:
                chain.append(found[version])
                gap += 1
        return chain, filled

    # -- recompute (fix and feature replays) -----------------------------------------------------------------

    def _recompute_once(self, events: Sequence[Event], target: Target) -> list[Projected]:
        aggregate_id = events[0].aggregate_id
        replay_id = target.recompute
        assert replay_id is not None
        current = target.states.get(aggregate_id, consistent=True)
        marks = current.replays if current else ()
        if replay_id in marks:
            return [Projected(aggregate_id, e.version, "already_reflected") for e in events]
        history = self._read_all(aggregate_id, 1, None)
        if not history or history[-1].version < max(e.version for e in events):
            raise GapError(
                f"{aggregate_id}: the log does not hold version {max(e.version for e in events)} yet"
            )
        folded = self.rules.fold(history)
        now = self._clock()
        if target.record_outcomes and self.statuses is not None:
            self._record_changes(self.statuses, history, folded, now, replay_id=replay_id)
        target.states.put(
            StateRecord(
                aggregate_id,
                history[-1].version,
                folded[-1].state,
                now,
                history[-1].event_id,
                (*marks, replay_id)[-MAX_REPLAY_MARKS:],
            ),
            expected_version=current.version if current else 0,
            expected_replays=marks,
        )
        first = events[0]
        return [
            Projected(aggregate_id, e.version, "recomputed", filled=len(history))
            if e is first
            else Projected(aggregate_id, e.version, "already_reflected")
            for e in events
        ]

    # -- shared ----------------------------------------------------------------------------------------------

    def _read_all(self, aggregate_id: str, first: int, last: int | None) -> list[Event]:
        """Versions first..last (to the head when None) from the log, checked to be gapless."""
        if last is not None and last < first:
            return []
        history = list(self.events.read(aggregate_id, first, last, consistent=True))
        versions = [e.version for e in history]
        expected = list(range(first, first + len(history)))
        if versions != expected or (last is not None and len(history) != last - first + 1):
            raise GapError(f"{aggregate_id}: the log holds versions {versions[:10]}... for {first}..{last}")
        return history

    def _record_changes(
        self,
        statuses: StatusStore,
        history: Sequence[Event],
        decisions: Sequence[Decision],
        decided_at: str,
        replay_id: str | None,
    ) -> None:
        """Record what a fold decided where it differs from what the status table holds: the outcome and its
        reason, and which applied reversal reverses each event. Reads the statuses first (cheaper than
        writing every one), writes only the differences."""
        reversed_by: dict[int, tuple[int, str]] = {}
        for event, decision in zip(history, decisions, strict=True):
            if decision.applied and decision.reverses is not None:
                reversed_by[decision.reverses] = (event.version, event.event_id)
        stored = statuses.get_many([e.event_id for e in history], consistent=True)
        for event, decision in zip(history, decisions, strict=True):
            status = stored.get(event.event_id)
            if status is None or status.status != "committed" or status.version != event.version:
                continue  # written to the log by other means (a test environment): nothing to update
            outcome: Outcome = "applied" if decision.applied else "refused"
            wanted_reversal = reversed_by.get(event.version)
            stored_reversal = (
                (status.reversed_by_version, status.reversed_by_event_id or "")
                if status.reversed_by_version is not None
                else None
            )
            if (status.outcome, status.outcome_reason, stored_reversal) == (
                outcome,
                decision.reason,
                wanted_reversal,
            ):
                continue
            statuses.record_decision(
                event.event_id,
                event.version,
                outcome,
                decision.reason,
                decided_at,
                reversed_by=wanted_reversal,
                replay_id=replay_id,
            )
