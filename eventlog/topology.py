"""The one definition of the functions, what feeds them, and the API routes they serve.

infra/ deploys exactly this (one Lambda function per entry of FUNCTIONS, one event source mapping per entry of
MAPPINGS, one API method per entry of ROUTES), and devstack/ runs exactly this in-process (pollers standing in
for the event source mappings, an HTTP server standing in for API Gateway). The OpenAPI document
(api/openapi.yaml) lists the same routes; a test keeps the two in step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

SourceKind = Literal["kinesis", "dynamodb"]

# -- what a failing batch may cost, and what it protects (docs/deploy.md, "Failed batches" explains each) -----
#
# The consumers of committed events (write, service) never wait long on a poison record: a batch that still
# fails after CONSUMER_RETRY_ATTEMPTS retries goes to its mapping's dead-letter queue, the shard moves on, and
# `python -m ops redrive` replays the aggregates it names from the log to that consumer once the fault is fixed.
# Five retries ride out a blip the SDK's own retries did not (a throttled burst, a redeploy) and stop a record
# that fails every time within seconds.
CONSUMER_RETRY_ATTEMPTS = 5
# A record older than this is not handed to a consumer at all: it goes to the dead-letter queue. It is a bound on
# a backlog, not on a poison record (retries bound that): six hours rides out any outage this stack should see
# and still leaves 18 of the 24 hours a table's change stream (and, by default, the playback stream) keeps a
# record, so `ops redrive` can read the dead-lettered range back exactly.
CONSUMER_MAX_RECORD_AGE_S = 6 * 3600
# The pump keeps retrying: on the ingest stream, stream order is version order, and a batch skipped would commit
# later events of an aggregate before earlier ones. Only a record still failing after six days goes to the
# dead-letter queue, one day before the ingest stream (7 days by default, eventlog.resources) would drop it, so
# that an accepted event is never lost unseen: its submission can still be read back and posted again.
PUMP_RETRY_ATTEMPTS = -1
PUMP_MAX_RECORD_AGE_S = 6 * 24 * 3600
# SQS keeps a message at most 14 days: the longest time an operator has to act on a dead-lettered batch.
DEAD_LETTER_RETENTION_S = 14 * 24 * 3600


@dataclass(frozen=True, slots=True)
class FunctionSpec:
    """A Lambda function: its name suffix, handler entry point and what it may touch (for least privilege)."""

    key: str
    handler: str  # module:function, as Lambda's handler setting spells it with a dot
    description: str
    reads_tables: tuple[str, ...] = ()
    writes_tables: tuple[str, ...] = ()
    puts_streams: tuple[str, ...] = ()
    memory_mb: int = 512
    timeout_s: int = 30

    @property
    def module(self) -> str:
        return self.handler.rsplit(".", 1)[0]


@dataclass(frozen=True, slots=True)
class MappingSpec:
    """An event source mapping: a stream (Kinesis stream key, or a table key for its change stream) feeding a
    function, with Lambda's batching and retry settings (ReportBatchItemFailures always on)."""

    source_kind: SourceKind
    source: str
    function: str
    batch_size: int = 100
    batching_window_s: float = 0.5
    max_retry_attempts: int = -1  # -1: retry until the record expires, as Lambda does by default
    # A record older than this (seconds since it reached the stream) goes to the dead-letter queue without
    # being handed to the function; -1: no limit but the stream's retention, as Lambda does by default.
    max_record_age_s: int = -1
    bisect_on_error: bool = False
    parallelization_factor: int = 1
    starting_position: Literal["TRIM_HORIZON", "LATEST"] = "TRIM_HORIZON"

    @property
    def key(self) -> str:
        """A stable, readable name for the mapping: `ingest-to-pump`, `events-changes-to-write`."""
        source = self.source if self.source_kind == "kinesis" else f"{self.source}-changes"
        return f"{source}-to-{self.function}"

    def dead_letter_queue(self, prefix: str) -> str:
        """The name of the SQS queue that takes this mapping's failed batches (its on-failure destination)."""
        return f"{prefix}-{self.key}-failures"


@dataclass(frozen=True, slots=True)
class RouteSpec:
    """An API Gateway REST route (resource path with {placeholders}) and the function that serves it."""

    method: Literal["GET", "POST", "PUT", "DELETE"]
    resource: str
    function: str
    operation_id: str


FUNCTIONS: tuple[FunctionSpec, ...] = (
    FunctionSpec(
        key="load",
        handler="handlers.load.handler",
        description="API -> ingest stream: validates a request and puts it on the ingest stream.",
        # events: a reversal request is checked against the log (the version it names must be there).
        reads_tables=("events", "event_status", "idempotency"),
        writes_tables=("event_status", "idempotency"),
        puts_streams=("ingest",),
        memory_mb=512,
        timeout_s=10,
    ),
    FunctionSpec(
        key="pump",
        handler="handlers.pump.handler",
        description="Ingest stream -> events table: the only writer of the log.",
        reads_tables=("events", "event_status"),
        writes_tables=("events", "event_status"),
        memory_mb=1024,
        timeout_s=60,
    ),
    FunctionSpec(
        key="write",
        handler="handlers.write.handler",
        description="Committed events (table change stream, playback stream) -> state table.",
        # replay_checkpoints: a replayed event's definition says which state table a rebuild projects into.
        # replay_checkpoints also takes its acknowledgements of replays addressed to it (`ops redrive` waits
        # for them).
        reads_tables=("events", "state", "event_status", "replay_checkpoints"),
        writes_tables=("state", "event_status", "replay_checkpoints"),
        memory_mb=1024,
        timeout_s=60,
    ),
    FunctionSpec(
        key="playback",
        handler="handlers.playback.handler",
        description="Invoked by hand: replays a small part of the log onto the playback stream (the replayer).",
        reads_tables=("events", "replay_checkpoints"),
        writes_tables=("replay_checkpoints",),
        puts_streams=("playback",),
        memory_mb=1024,
        timeout_s=900,
    ),
    FunctionSpec(
        key="service",
        handler="handlers.service.handler",
        description="Committed events (table change stream, playback stream) -> external systems, via gateways.",
        # events: folds an aggregate to know what the domain decided; replay_checkpoints: a fix replay's
        # stored definition, checked before a correction is sent, and the acknowledgements of replays addressed
        # to it; gateway_recordings: every external call.
        reads_tables=("events", "gateway_recordings", "replay_checkpoints"),
        writes_tables=("gateway_recordings", "replay_checkpoints"),
        memory_mb=512,
        # Two external calls an event, each up to ES_GATEWAY_TIMEOUT_S (5 s): room for a slow system in a batch
        # of 25 (its mappings' batch size); a timeout bisects the batch.
        timeout_s=180,
    ),
    FunctionSpec(
        key="query",
        handler="handlers.query.handler",
        description="The GET routes: state, history and event status.",
        reads_tables=("events", "state", "event_status"),
        memory_mb=512,
        timeout_s=10,
    ),
)


def _consumer(source_kind: SourceKind, source: str, function: str, batch_size: int) -> MappingSpec:
    """A mapping feeding committed events to a consumer: bounded retries and record age, bisect on error."""
    return MappingSpec(
        source_kind,
        source,
        function,
        batch_size=batch_size,
        batching_window_s=0.2,
        max_retry_attempts=CONSUMER_RETRY_ATTEMPTS,
        max_record_age_s=CONSUMER_MAX_RECORD_AGE_S,
        bisect_on_error=True,
    )


# Bisect on error: a function error (a crash, a timeout) splits the batch and retries each half in order, so a
# record that kills the function is isolated instead of blocking its shard; partial failures the function
# reports itself (batchItemFailures) are retried from the failed record as usual.
MAPPINGS: tuple[MappingSpec, ...] = (
    MappingSpec(
        "kinesis",
        "ingest",
        "pump",
        batch_size=100,
        batching_window_s=0.2,
        max_retry_attempts=PUMP_RETRY_ATTEMPTS,
        max_record_age_s=PUMP_MAX_RECORD_AGE_S,
        bisect_on_error=True,
    ),
    _consumer("dynamodb", "events", "write", batch_size=100),
    # Replayed events reach the write function in the same envelope as live ones.
    _consumer("kinesis", "playback", "write", batch_size=100),
    # The service function reads both too (a table's change stream allows two readers per shard: these two),
    # in smaller batches: each event may wait on external systems.
    _consumer("dynamodb", "events", "service", batch_size=25),
    _consumer("kinesis", "playback", "service", batch_size=25),
)

# The functions a replay can be addressed to (ReplayDefinition.consumer): those the playback stream feeds.
PLAYBACK_CONSUMERS: tuple[str, ...] = tuple(sorted({m.function for m in MAPPINGS if m.source == "playback"}))

ROUTES: tuple[RouteSpec, ...] = (
    RouteSpec("POST", "/aggregates/{aggregate_id}/events", "load", "appendEvent"),
    RouteSpec("POST", "/aggregates/{aggregate_id}/events/{version}/reverse", "load", "reverseEvent"),
    RouteSpec("GET", "/aggregates/{aggregate_id}", "query", "getAggregate"),
    RouteSpec("GET", "/aggregates/{aggregate_id}/events", "query", "listAggregateEvents"),
    RouteSpec("GET", "/events/{event_id}", "query", "getEventStatus"),
)


def function_spec(key: str) -> FunctionSpec:
    for spec in FUNCTIONS:
        if spec.key == key:
            return spec
    raise KeyError(f"no function named {key!r}")


def mapping_spec(key: str) -> MappingSpec:
    """The mapping named `key` (`events-changes-to-write`, ...)."""
    for spec in MAPPINGS:
        if spec.key == key:
            return spec
    raise KeyError(f"no mapping named {key!r}; known: {', '.join(m.key for m in MAPPINGS)}")
