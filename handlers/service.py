"""The service Lambda: the example microservice's business logic that reaches external systems, through gateways.

Fed like the write function, in the same envelope: the events table's change stream (live events) and the
playback stream (replayed ones). For each event that might move money it

1. decides, with the domain, whether the event was applied and what it did to the balance: by folding the
   aggregate from the log (cached per container), as any event-sourced consumer may; never by reading the write
   function's outcome, which may not be written yet (the two functions read the same stream independently);
2. asks the exchange rate at the event's time (a gateway query: live it asks the service and records the
   answer; in a replay it is answered from that recording);
3. exports the ledger entry (domain/ledger_export.py) to the ledger-export service (a gateway update: sent once
   live, suppressed in a rebuild or feature replay, corrected by the difference in a fix replay).

Records are processed in order and the first failure stops the batch (ReportBatchItemFailures names it, Lambda
retries from it, and after the mapping's retries it goes to the dead-letter queue), so an aggregate's external
calls keep their order. A missing recording under ES_GATEWAY_MISSING=skip skips the event (counted, logged).

A replay whose stored definition names another consumer (`consumer: write`) is skipped. A redrive addressed to
this function (`python -m ops redrive`, after a dead-lettered batch) is processed exactly as live: live gateway
semantics, so an update already sent is never sent again and a query already answered is answered from its
recording. Every replay addressed to this function is acknowledged per aggregate once processed
(eventlog.replays.ConsumerAcks).

Settings: ES_EXCHANGE_RATES_URL, ES_LEDGER_EXPORT_URL, ES_GATEWAY_MISSING, ES_GATEWAY_TIMEOUT_S (gateways.config),
ES_LEDGER_EXPORT_VERSION (the conversion's release), ES_LEDGER_RULES (the domain's rules; domain.from_environment).
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from aws_lambda_powertools.utilities.typing import LambdaContext

from domain import from_environment
from domain.ledger_export import (
    ACCOUNT_CURRENCY,
    REPORTING_CURRENCY,
    conversion_version,
    correction,
    entry_for,
    rate_needed,
)
from eventlog.envelope import Event
from eventlog.errors import EventLogError
from eventlog.projection import Decision
from eventlog.replays import ConsumerAcks, ReplayDefinitionError, ReplayDirectory
from eventlog.store import EventStore
from gateways import CallContext, DynamoRecordings, Gateway, GatewaySettings, SkipEvent, UpdateResult
from gateways.exchange_rates import ExchangeRates
from gateways.http import HttpClient, JsonHttp, NotConfigured
from gateways.ledger_export import LedgerExport
from handlers import runtime
from handlers.committed import decode, sequence_number
from handlers.observability import Instrumentation

instrumentation = Instrumentation(service="service")
logger = instrumentation.logger

CONSUMER = "service"  # this function's key: what a replay's definition names to address it

_UPDATE_METRIC = {
    "refused": "LedgerEntriesRefused",
    "sent": "LedgerEntriesSent",
    "resent": "LedgerEntriesResent",
    "already_done": "LedgerEntriesAlreadySent",
    "nothing": "LedgerEntriesNotNeeded",
    "suppressed": "LedgerEntriesSuppressed",
    "corrected": "LedgerCorrectionsSent",
    "no_difference": "LedgerCorrectionsNotNeeded",
}


class Rules(Protocol):
    """What the service needs of the domain to know what an event did."""

    def apply(self, state: dict[str, Any] | None, event: Event) -> Decision: ...

    def needs_history(self, event: Event) -> bool: ...

    def fold(self, events: Sequence[Event]) -> list[Decision]: ...


class HistoryGap(EventLogError):
    """The log does not (yet) hold every version before the event: retried."""


class AggregateFolds:
    """What the domain decided for an event, computed from the log: the state before it and the decision.

    Keeps each aggregate's latest folded (version, state), so a live stream costs no read per event: the next
    version is applied to the cached state. Anything else (a cold container, a replay going back to version 1,
    an event the domain decides with the whole history) folds the aggregate from version 1."""

    def __init__(self, events: EventStore, rules: Rules, max_aggregates: int = 10_000) -> None:
        self.events = events
        self.rules = rules
        self._max = max_aggregates
        self._cache: OrderedDict[str, tuple[int, dict[str, Any] | None]] = OrderedDict()
        self._lock = threading.Lock()
        self.reads = 0  # aggregates folded from the log (for tests and logs)

    def decide(self, event: Event) -> tuple[dict[str, Any] | None, Decision]:
        """(the state before `event`, the domain's decision on it)."""
        with self._lock:
            cached = self._cache.get(event.aggregate_id)
        if cached is not None and cached[0] == event.version - 1 and not self.rules.needs_history(event):
            before = cached[1]
            decision = self.rules.apply(before, event)
        else:
            history = list(self.events.read(event.aggregate_id, 1, event.version - 1, consistent=True))
            self.reads += 1
            if [e.version for e in history] != list(range(1, event.version)):
                raise HistoryGap(
                    f"{event.aggregate_id}: the log holds {len(history)} of the {event.version - 1} versions "
                    f"before v{event.version}"
                )
            decisions = self.rules.fold([*history, event])
            before = decisions[-2].state if len(decisions) > 1 else None
            decision = decisions[-1]
        with self._lock:
            self._cache[event.aggregate_id] = (event.version, decision.state)
            self._cache.move_to_end(event.aggregate_id)
            if len(self._cache) > self._max:
                self._cache.popitem(last=False)
        return before, decision


@dataclass(frozen=True, slots=True)
class Processed:
    """What the service did with one event."""

    event_id: str
    rate_source: str | None = None  # live, recorded, live_fallback; None when no rate was needed
    export: UpdateResult | None = None


# -- per container ---------------------------------------------------------------------------------------------


@runtime.per_container
def gateway_settings() -> GatewaySettings:
    return GatewaySettings.from_env()


@runtime.per_container
def conversion() -> int:
    """The conversion release this container runs (ES_LEDGER_EXPORT_VERSION; a deploy starts a new one)."""
    return conversion_version(os.environ.get("ES_LEDGER_EXPORT_VERSION"))


@runtime.per_container
def folds() -> AggregateFolds:
    return AggregateFolds(runtime.event_store(), from_environment(os.environ))


@runtime.per_container
def replays() -> ReplayDirectory:
    return ReplayDirectory(runtime.dynamodb(), runtime.settings().replay_checkpoints_table)


@runtime.per_container
def acks() -> ConsumerAcks:
    return ConsumerAcks(runtime.dynamodb(), runtime.settings().replay_checkpoints_table)


def addressing(event: Event) -> tuple[Event | None, bool]:
    """(the event as this function processes it, or None when the replay is addressed to another consumer;
    whether the replay is addressed to this function by name, so is acknowledged). A redrive is the live
    event again: its replay mark is taken off, and the gateways treat it as the original processing."""
    if event.replay is None:
        return event, False
    definition = replays().get(event.replay.replay_id)
    if definition is None:
        if event.replay.mode == "redrive":
            raise ReplayDefinitionError(
                f"redrive {event.replay.replay_id} has no stored definition: which consumer it is for is unknown"
            )
        return event, False
    if not definition.addressed_to(CONSUMER):
        return None, False
    named = definition.consumer == CONSUMER
    if event.replay.mode == "redrive":
        return dataclasses.replace(event, replay=None), named
    return event, named


def _replay_mode(replay_id: str) -> str | None:
    definition = replays().get(replay_id)
    return None if definition is None else definition.mode


@runtime.per_container
def gateway() -> Gateway:
    s = gateway_settings()
    recordings = DynamoRecordings(runtime.dynamodb(), runtime.settings().table("gateway_recordings"))
    return Gateway(recordings, missing=s.missing, replay_modes=_replay_mode)


def _http(url: str | None, name: str, variable: str) -> HttpClient:
    return (
        JsonHttp(url, timeout=gateway_settings().timeout_s, name=name)
        if url
        else NotConfigured(name, variable)
    )


@runtime.per_container
def exchange_rates() -> ExchangeRates:
    s = gateway_settings()
    return ExchangeRates(
        gateway(), _http(s.exchange_rates_url, "exchange-rate service", "ES_EXCHANGE_RATES_URL")
    )


@runtime.per_container
def ledger_export() -> LedgerExport:
    s = gateway_settings()
    return LedgerExport(
        gateway(), _http(s.ledger_export_url, "ledger-export service", "ES_LEDGER_EXPORT_URL")
    )


# -- the work --------------------------------------------------------------------------------------------------


def process(event: Event) -> Processed:
    """The service's work for one committed event (live or replayed); see the module docstring."""
    if not rate_needed(event):
        return Processed(event.event_id)
    ctx = CallContext.for_event(event)
    before, decision = folds().decide(event)
    # Asked whatever the verdict: a later release may apply what this one refused, and its fix replay can only
    # answer that from a recording made now.
    rate = exchange_rates().rate(ctx, ACCOUNT_CURRENCY, REPORTING_CURRENCY, at=event.occurred_at)
    entry = entry_for(event, before, decision, rate.rate, conversion())
    result = ledger_export().export(ctx, entry, correction)
    return Processed(event.event_id, rate.source, result)


@instrumentation.handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    done: dict[str, dict[str, int]] = {}  # replays addressed to this function: replay -> aggregate -> version
    try:
        return _handle(event.get("Records") or [], done)
    finally:
        # What was processed is acknowledged even when a later record failed. A failure to write an
        # acknowledgement fails the invocation: the batch is retried, and processing again sends nothing.
        for replay_id, versions in done.items():
            acks().acknowledge(replay_id, CONSUMER, versions)


def _handle(records: list[dict[str, Any]], done: dict[str, dict[str, int]]) -> dict[str, Any]:
    elsewhere = 0
    try:
        for record in records:
            decoded = decode(record, instrumentation)
            if decoded is None:
                continue
            named = False
            try:
                work, named = addressing(decoded)
                if work is None:
                    elsewhere += 1
                    continue
                processed = process(work)
            except SkipEvent as skipped:
                logger.warning("skipped an event's external work", extra={"reason": str(skipped)})
                instrumentation.count("EventsSkipped", 1)
                processed = None
            except Exception as exc:  # reported as this record's failure; Lambda retries from it, in order
                logger.warning(
                    "service failed; Lambda retries from this record",
                    extra={
                        "aggregate_id": decoded.aggregate_id,
                        "version": decoded.version,
                        "replay": decoded.replay.to_dict() if decoded.replay else None,
                        "error": repr(exc),
                    },
                )
                return {"batchItemFailures": [{"itemIdentifier": sequence_number(record)}]}
            if named and decoded.replay is not None:
                versions = done.setdefault(decoded.replay.replay_id, {})
                versions[decoded.aggregate_id] = max(versions.get(decoded.aggregate_id, 0), decoded.version)
            if processed is not None:
                _observe(decoded, processed)
    finally:
        if elsewhere:
            instrumentation.count("ReplayedEventsForOtherConsumers", elsewhere)
    return {"batchItemFailures": []}


def _observe(event: Event, processed: Processed) -> None:
    if processed.rate_source is not None:
        instrumentation.count(f"RatesAnswered{processed.rate_source.title().replace('_', '')}", 1)
    result = processed.export
    if result is None:
        return
    instrumentation.count(_UPDATE_METRIC[result.action], 1)
    if result.action == "refused":
        logger.warning(
            "the ledger refused an entry for good; recorded as refused (a fix replay after a code fix sends it)",
            extra={
                "aggregate_id": event.aggregate_id,
                "version": event.version,
                "reason": result.recording.note if result.recording else None,
            },
        )
    if result.sent is not None:
        logger.info(
            "ledger entry sent",
            extra={
                "aggregate_id": event.aggregate_id,
                "version": event.version,
                "action": result.action,
                "reporting_amount": result.sent.get("reporting_amount"),
            },
        )
