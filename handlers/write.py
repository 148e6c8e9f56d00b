"""The write Lambda: committed events -> the state table (the article's data store).

Fed by two event source mappings, in the same envelope: the events table's change stream (live events, as the
pump commits them) and the playback stream (replayed events). A batch goes to `Projector.project_batch`:
idempotent (a version the state already reflects is skipped), in version order per aggregate (a gap is filled
from the log), business rules applied by the domain (a refused event leaves the state unchanged and its refusal
is recorded with its reason for `GET /events/{event_id}`), one state read and one state write per aggregate per
batch, and different aggregates in parallel.

If an aggregate fails, the answer names its first record (ReportBatchItemFailures), and Lambda retries the
batch from there. Records of other aggregates after it may have been done already; they are skipped as
already reflected when they come again. Powertools' BatchProcessor is not used here: it works record by
record, and this handler's unit of work is an aggregate's share of the batch.

A record that is not an event at all is logged, counted and skipped, as in the pump: it can never succeed, and
retrying it would stall its shard.

Replayed events are projected by their mode (docs/domain.md, "Replays"):
- rebuild: into the state table the replay's definition names (`state_table`, a shadow), else the live one;
  outcomes are not recorded (the live ones stand);
- fix and feature: the aggregate is recomputed from version 1 with the current rules, once per replay and
  aggregate, into the live state table, conditionally on the live state's version; changed outcomes are
  recorded with the replay id.
- redrive: exactly as live: incrementally into the live state table, outcomes recorded.
A replay whose definition names another consumer (`consumer: service`) is skipped (counted as
ReplayedEventsForOtherConsumers); one that names this function is acknowledged, per aggregate, once projected
(eventlog.replays.ConsumerAcks), which is how `python -m ops redrive` knows the state has it.
A replay's definition is read from the replay_checkpoints table (eventlog.replays), cached per container. The
rules are the domain's current ones, or the release `ES_LEDGER_RULES` names (domain.from_environment).
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import ClientError

from domain import Domain, from_environment
from eventlog.envelope import Event
from eventlog.projection import BatchProjection, Projected, Projector, Target
from eventlog.replays import ConsumerAcks, ReplayDefinition, ReplayDefinitionError, ReplayDirectory
from eventlog.state import StateStore
from handlers import runtime
from handlers.committed import decode, sequence_number
from handlers.observability import Instrumentation

instrumentation = Instrumentation(service="write")
logger = instrumentation.logger

CONSUMER = "write"  # this function's key: what a replay's definition names to address it

_METRIC = {
    "applied": "EventsApplied",
    "refused": "EventsRefused",
    "already_reflected": "EventsAlreadyReflected",
    "recomputed": "AggregatesRecomputed",
}


@runtime.per_container
def domain() -> Domain:
    """The rules this container decides with (read once per container; a deploy starts a new one)."""
    return from_environment(os.environ)


@runtime.per_container
def projector() -> Projector:
    return Projector(
        events=runtime.event_store(),
        states=runtime.state_store(),
        rules=domain(),
        statuses=runtime.status_store(),
    )


@runtime.per_container
def replays() -> ReplayDirectory:
    return ReplayDirectory(runtime.dynamodb(), runtime.settings().replay_checkpoints_table)


@runtime.per_container
def acks() -> ConsumerAcks:
    return ConsumerAcks(runtime.dynamodb(), runtime.settings().replay_checkpoints_table)


def definition_of(event: Event) -> ReplayDefinition | None:
    """The stored definition of the replay that delivered `event` (None: live, or none stored). A redrive
    without one cannot say which consumer it is for: an error (its record fails, and is retried)."""
    if event.replay is None:
        return None
    definition = replays().get(event.replay.replay_id)
    if definition is None and event.replay.mode == "redrive":
        raise ReplayDefinitionError(
            f"redrive {event.replay.replay_id} has no stored definition: which consumer it is for is unknown"
        )
    return definition


def addressed_here(event: Event) -> bool:
    """Whether this function processes `event`: live, or a replay not addressed to another consumer."""
    definition = definition_of(event)
    return definition is None or definition.addressed_to(CONSUMER)


@runtime.per_container
def _rebuild_targets() -> dict[str, Target | None]:
    """Rebuild targets by state table; None for a shadow table found gone (its rebuild was dropped)."""
    return {}


def target_for(event: Event) -> Target | None:
    """Where and how to project an event: live, a rebuild's state table, or a fix/feature recomputation.
    None: the event belongs to a rebuild whose shadow table is gone, and there is nothing to project into."""
    live = projector().live
    if event.replay is None or event.replay.mode == "redrive":
        return live  # a redrive is processed exactly as live processing would have
    if event.replay.mode == "rebuild":
        definition = replays().get(event.replay.replay_id)
        table = (definition.state_table if definition else None) or runtime.settings().state_table
        targets = _rebuild_targets()
        if table not in targets:
            targets[table] = Target(StateStore(runtime.dynamodb(), table), record_outcomes=False)
        return targets[table]
    return Target(live.states, record_outcomes=True, recompute=event.replay.replay_id)


def project(events: list[Event]) -> BatchProjection:
    """Project a batch, each event to its target. An event whose target cannot be found (its replay's
    definition cannot be read) fails there: the events before it are projected, it and the rest retried.

    A rebuild's shadow table that has been dropped (`ops drop`) while its events were still on the playback
    stream would fail those events until they expire, stalling the mapping; its events are skipped instead
    (logged and counted), once the table is found missing."""
    for _ in range(3):
        batch, gone = _project_once(events)
        if gone is None:
            return batch
        logger.warning(
            "a rebuild's state table is gone (dropped); skipping its events", extra={"table": gone}
        )
        _rebuild_targets()[gone] = None
    return batch


def _project_once(events: list[Event]) -> tuple[BatchProjection, str | None]:
    """Project; also returns the name of a shadow table that turned out to be missing, if that is why the
    batch failed."""
    targets: list[Target | None] = []
    error: BaseException | None = None
    elsewhere = 0
    for event in events:
        try:
            if not addressed_here(event):
                targets.append(None)
                elsewhere += 1
                continue
            targets.append(target_for(event))
        except Exception as exc:  # reported as this record's failure; Lambda retries from it
            error = exc
            break
    chosen = [i for i, t in enumerate(targets) if t is not None]
    if elsewhere:
        instrumentation.count("ReplayedEventsForOtherConsumers", elsewhere)
    skipped = len(targets) - len(chosen) - elsewhere
    if skipped:
        instrumentation.count("EventsOfDroppedRebuilds", skipped)
    inner = projector().project_batch([events[i] for i in chosen], [t for t in targets if t is not None])
    results: list[Projected | None] = [None] * len(events)
    for position, index in enumerate(chosen):
        results[index] = inner.results[position]
    if inner.first_failed is not None:
        failed_index = chosen[inner.first_failed]
        failed_target = targets[failed_index]
        assert failed_target is not None
        table = failed_target.states.table
        if _is_missing_table(inner.error) and table != runtime.settings().state_table:
            return BatchProjection(results, failed_index, inner.error), table
        return BatchProjection(results, failed_index, inner.error), None
    if error is not None:
        return BatchProjection(results, len(targets), error), None
    return BatchProjection(results, None, None), None


def acknowledge(events: list[Event], batch: BatchProjection) -> None:
    """Acknowledge, per replay and aggregate, the events of replays addressed to this function that were
    projected. A failure to write one raises: the batch is retried, and projecting again is a no-op."""
    done: dict[str, dict[str, int]] = {}
    for event, result in zip(events, batch.results, strict=True):
        if result is None or event.replay is None:
            continue
        definition = replays().get(event.replay.replay_id)
        if definition is None or definition.consumer != CONSUMER:
            continue
        versions = done.setdefault(event.replay.replay_id, {})
        versions[event.aggregate_id] = max(versions.get(event.aggregate_id, 0), event.version)
    for replay_id, versions in done.items():
        acks().acknowledge(replay_id, CONSUMER, versions)


def _is_missing_table(error: BaseException | None) -> bool:
    return isinstance(error, ClientError) and error.response["Error"]["Code"] == "ResourceNotFoundException"


@instrumentation.handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    events: list[Event] = []
    sequence_numbers: list[str] = []
    for record in event.get("Records") or []:
        decoded = decode(record, instrumentation)
        if decoded is not None:
            events.append(decoded)
            sequence_numbers.append(sequence_number(record))
    if not events:
        return {"batchItemFailures": []}
    batch = project(events)
    acknowledge(events, batch)
    counts = Counter(r.result for r in batch.results if r is not None)
    for result, count in counts.items():
        instrumentation.count(_METRIC[result], count)
    filled = sum(r.filled for r in batch.results if r is not None and r.result != "recomputed")
    if filled:
        logger.info("filled gaps from the log", extra={"events_read": filled})
    recomputed = [r for r in batch.results if r is not None and r.result == "recomputed"]
    if recomputed:
        logger.info(
            "recomputed aggregates from version 1 for a replay",
            extra={"aggregates": len(recomputed), "events_read": sum(r.filled for r in recomputed)},
        )
    if batch.first_failed is None:
        return {"batchItemFailures": []}
    failed = events[batch.first_failed]
    logger.warning(
        "projection failed; Lambda retries from this record",
        extra={"aggregate_id": failed.aggregate_id, "version": failed.version, "error": repr(batch.error)},
    )
    return {"batchItemFailures": [{"itemIdentifier": sequence_numbers[batch.first_failed]}]}
