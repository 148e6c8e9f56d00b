"""The one definition of every table and stream: logical key, key schema, stream settings, setting name.

infra/ turns these into Pulumi resources, devstack/ and the tests create them on the embedded AWS with
`create_all`, and `Settings` resolves their physical names. Nothing else spells a key schema.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

AttributeType = Literal["S", "N", "B"]


@dataclass(frozen=True, slots=True)
class KeyAttribute:
    name: str
    type: AttributeType


@dataclass(frozen=True, slots=True)
class TableSpec:
    """A DynamoDB table: its logical key (`events`), the setting that names it, its keys and streams."""

    key: str
    setting: str
    partition_key: KeyAttribute
    sort_key: KeyAttribute | None = None
    stream_view_type: Literal["NEW_IMAGE", "NEW_AND_OLD_IMAGES"] | None = None
    ttl_attribute: str | None = None
    # The log itself (the events table): the one table every other one is derived from or checked against.
    system_of_record: bool = False
    # Its loss would lose what the log cannot give back: point-in-time recovery, deletion protection, and kept
    # on `pulumi destroy` (with keepEventLog, the default). A table a replay rebuilds (state) or recreates as
    # it runs (replay checkpoints) is not backed up. docs/deploy.md, "Tearing down", says why for each.
    backed_up: bool = False
    description: str = ""

    @property
    def key_names(self) -> tuple[str, ...]:
        if self.sort_key is None:
            return (self.partition_key.name,)
        return (self.partition_key.name, self.sort_key.name)

    def create_table_kwargs(self, name: str) -> dict[str, Any]:
        """boto3 `create_table` arguments for this table (on-demand billing, as infra deploys it)."""
        keys = [self.partition_key] if self.sort_key is None else [self.partition_key, self.sort_key]
        kwargs: dict[str, Any] = {
            "TableName": name,
            "AttributeDefinitions": [{"AttributeName": k.name, "AttributeType": k.type} for k in keys],
            "KeySchema": [
                {"AttributeName": k.name, "KeyType": "HASH" if i == 0 else "RANGE"}
                for i, k in enumerate(keys)
            ],
            "BillingMode": "PAY_PER_REQUEST",
        }
        if self.stream_view_type is not None:
            kwargs["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": self.stream_view_type}
        return kwargs


@dataclass(frozen=True, slots=True)
class StreamSpec:
    """A Kinesis data stream. Partition key is always the aggregate id (per-aggregate order)."""

    key: str
    setting: str
    local_shard_count: int
    # How long the stream keeps a record on AWS (24-8760 hours; beyond 24 costs extra). The config key
    # streamRetentionHours changes it per stream.
    retention_hours: int = 24
    description: str = ""


EVENTS_TABLE = TableSpec(
    key="events",
    setting="ES_EVENTS_TABLE",
    partition_key=KeyAttribute("aggregate_id", "S"),
    sort_key=KeyAttribute("version", "N"),
    stream_view_type="NEW_IMAGE",
    system_of_record=True,
    backed_up=True,
    description="The immutable log: one item per event, keyed (aggregate_id, version). Only events live here.",
)

STATE_TABLE = TableSpec(
    key="state",
    setting="ES_STATE_TABLE",
    partition_key=KeyAttribute("aggregate_id", "S"),
    description="The data store: each aggregate's latest state and the version it reflects. Rebuildable.",
)

EVENT_STATUS_TABLE = TableSpec(
    key="event_status",
    setting="ES_EVENT_STATUS_TABLE",
    partition_key=KeyAttribute("event_id", "S"),
    ttl_attribute="expires_at",
    # The rejections (an expected_version conflict is never in the log) and the dedupe claims (event id ->
    # version, with the request's fingerprint): without them a client's retry of a committed event would be
    # committed a second time.
    backed_up=True,
    description="Where each event stands: pending, committed (version, applied or refused) or rejected.",
)

IDEMPOTENCY_TABLE = TableSpec(
    key="idempotency",
    setting="ES_IDEMPOTENCY_TABLE",
    partition_key=KeyAttribute("id", "S"),
    ttl_attribute="expiration",
    # Which Idempotency-Key produced which event is in no other table: lost, a client's retry within the key's
    # 24 hours (without an event id) would become a second event. Its items expire within a day, so keeping
    # it costs nothing.
    backed_up=True,
    description="Powertools idempotency records for the load handler's Idempotency-Key header.",
)

REPLAY_CHECKPOINTS_TABLE = TableSpec(
    key="replay_checkpoints",
    setting="ES_REPLAY_CHECKPOINTS_TABLE",
    partition_key=KeyAttribute("replay_id", "S"),
    sort_key=KeyAttribute("part", "S"),
    ttl_attribute="expires_at",
    # Not backed up: every item describes a replay, a rebuild or a redrive in progress (its items expire after
    # 30 days), and running it again recreates it from the log.
    description="The replayer's progress: one item per replay and part (a scan segment, an aggregate), to resume.",
)

GATEWAY_RECORDINGS_TABLE = TableSpec(
    key="gateway_recordings",
    setting="ES_GATEWAY_RECORDINGS_TABLE",
    partition_key=KeyAttribute("event_id", "S"),
    sort_key=KeyAttribute("call", "S"),
    ttl_attribute="expires_at",
    # What external systems were told and answered cannot be rebuilt from the log (a live answer cannot be
    # asked again), and a fix replay needs it to correct them: kept like the log. Only a replay's look-only
    # recordings carry expires_at.
    backed_up=True,
    description="Gateway calls per event: what was sent to external systems and what they answered.",
)

INGEST_STREAM = StreamSpec(
    key="ingest",
    setting="ES_INGEST_STREAM",
    local_shard_count=2,
    # Accepted submissions live only here until the pump commits them: the stream must outlast any outage of
    # the pump (the pump's mapping gives up a day before, eventlog.topology.PUMP_MAX_RECORD_AGE_S).
    retention_hours=7 * 24,
    description="Accepted submissions on their way to the pump (the article's event stream).",
)

PLAYBACK_STREAM = StreamSpec(
    key="playback",
    setting="ES_PLAYBACK_STREAM",
    local_shard_count=2,
    # Everything on it can be replayed again from the log.
    retention_hours=24,
    description="Committed events replayed from the log for the write and service handlers.",
)

TABLES: tuple[TableSpec, ...] = (
    EVENTS_TABLE,
    STATE_TABLE,
    EVENT_STATUS_TABLE,
    IDEMPOTENCY_TABLE,
    REPLAY_CHECKPOINTS_TABLE,
    GATEWAY_RECORDINGS_TABLE,
)
STREAMS: tuple[StreamSpec, ...] = (INGEST_STREAM, PLAYBACK_STREAM)


def table_spec(key: str) -> TableSpec:
    for spec in TABLES:
        if spec.key == key:
            return spec
    raise KeyError(f"no table named {key!r}; known: {', '.join(t.key for t in TABLES)}")


def stream_spec(key: str) -> StreamSpec:
    for spec in STREAMS:
        if spec.key == key:
            return spec
    raise KeyError(f"no stream named {key!r}; known: {', '.join(s.key for s in STREAMS)}")
