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
    bisect_on_error: bool = False
    parallelization_factor: int = 1
    starting_position: Literal["TRIM_HORIZON", "LATEST"] = "TRIM_HORIZON"


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
        reads_tables=("events", "state", "event_status", "replay_checkpoints"),
        writes_tables=("state", "event_status"),
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
        # stored definition, checked before a correction is sent; gateway_recordings: every external call.
        reads_tables=("events", "gateway_recordings", "replay_checkpoints"),
        writes_tables=("gateway_recordings",),
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

# Bisect on error: a function error (a crash, a timeout) splits the batch and retries each half in order, so a
# record that kills the function is isolated instead of blocking its shard; partial failures the function
# reports itself (batchItemFailures) are retried from the failed record as usual.
MAPPINGS: tuple[MappingSpec, ...] = (
    MappingSpec("kinesis", "ingest", "pump", batch_size=100, batching_window_s=0.2, bisect_on_error=True),
    MappingSpec("dynamodb", "events", "write", batch_size=100, batching_window_s=0.2, bisect_on_error=True),
    # Replayed events reach the write function in the same envelope as live ones.
    MappingSpec("kinesis", "playback", "write", batch_size=100, batching_window_s=0.2, bisect_on_error=True),
    # The service function reads both too (a table's change stream allows two readers per shard: these two),
    # in smaller batches: each event may wait on external systems.
    MappingSpec("dynamodb", "events", "service", batch_size=25, batching_window_s=0.2, bisect_on_error=True),
    MappingSpec("kinesis", "playback", "service", batch_size=25, batching_window_s=0.2, bisect_on_error=True),
)

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
