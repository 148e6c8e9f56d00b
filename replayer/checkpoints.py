"""Checkpoints: a replay's definition and each part's watermark, in the replay_checkpoints table.

Item layout (partition key `replay_id`, sort key `part`; every item has `expires_at`, epoch seconds, the
table's TTL attribute, `RETENTION_DAYS` after its last write):

    part = "replay"            definition (S, JSON: filters, mode, stream, events_table, segments, plan),
                               aggregate_chunks (N), created_at (S)
    part = "aggregates#0000"   aggregates (S, JSON list): a query plan's aggregate ids, in chunks, so that a
                               long --aggregates-file fits DynamoDB's 400 KB item limit
    part = "scan#0000003"      one per part (scan segment 3, or "query#..." for a group of aggregates):
    part = "query#0000003"       after_aggregate_id (S) + after_version (N): the watermark (every record of
                               the part up to this key is on the stream; absent: nothing yet),
                               ahead (S, JSON {aggregate id: version}): per aggregate, the highest
                               version put beyond the watermark (a resume skips those; see parts.py),
                               lanes (S, JSON {aggregate id: ExplicitHashKey}): with --spread-shards,
                               the shard lanes of the aggregates in `ahead` and of the watermark's one,
                               done (BOOL), put (N), bytes (N): records and bytes under the watermark,
                               updated_at (S)
    part = "run#0of4"          one per worker: state (running|complete|failed|stopped), read, put, retried,
                               throttled (N), started_at, updated_at (S), error (S, when failed)

The definition is written once, conditionally, by whichever worker starts first; every later worker and
every resume reads it and replays exactly that set. Part items are overwritten with each save.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import orjson
from botocore.exceptions import ClientError

from eventlog.batch import BatchIncomplete, put_items_async
from eventlog.envelope import utc_now
from eventlog.resources import REPLAY_CHECKPOINTS_TABLE
from replayer.errors import SetupError
from replayer.parts import PartState

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

RETENTION_DAYS = 30
DEFINITION_PART = "replay"
_AGGREGATES_PER_CHUNK = 2000  # ids are at most 256 characters: a chunk stays well under 400 KB
# An item holds 400 KB; beyond this the `ahead` map (and `lanes` with it) is cut: the aggregates left out
# are repeated on resume, from their first event beyond the watermark, so on whichever lane they then get.
_MAX_AHEAD_BYTES = 300_000


@dataclass(slots=True)
class RunState:
    """A worker's own progress line in the checkpoint table."""

    worker: str
    state: str
    read: int = 0
    put: int = 0
    retried: int = 0
    throttled: int = 0
    started_at: str = ""
    error: str = ""

    @property
    def part_name(self) -> str:
        index, count = self.worker.split("/")
        return f"run#{index}of{count}"


@dataclass(slots=True)
class StoredReplay:
    """A replay as the checkpoint table knows it."""

    definition: dict[str, Any]
    parts: dict[str, PartState] = field(default_factory=dict)
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)


class CheckpointStore(Protocol):
    async def create(self, replay_id: str, definition: Mapping[str, Any]) -> None:
        """Store a new replay's definition; raise SetupError if the replay id is taken."""
        ...

    async def load(self, replay_id: str) -> StoredReplay | None:
        """The replay's definition and part states, or None if there is no such replay."""
        ...

    async def save(self, replay_id: str, parts: Sequence[PartState], run: RunState | None = None) -> None:
        """Store these part states (and this worker's run state)."""
        ...


class MemoryCheckpoints:
    """Checkpoints kept in memory (tests, benchmarks)."""

    def __init__(self) -> None:
        self.replays: dict[str, StoredReplay] = {}
        self.saves = 0

    async def create(self, replay_id: str, definition: Mapping[str, Any]) -> None:
        if replay_id in self.replays:
            raise SetupError(f"replay {replay_id} already exists; continue it with --resume {replay_id}")
        self.replays[replay_id] = StoredReplay(orjson.loads(orjson.dumps(definition)))

    async def load(self, replay_id: str) -> StoredReplay | None:
        stored = self.replays.get(replay_id)
        if stored is None:
            return None
        return StoredReplay(dict(stored.definition), dict(stored.parts), dict(stored.runs))

    async def save(self, replay_id: str, parts: Sequence[PartState], run: RunState | None = None) -> None:
        stored = self.replays[replay_id]
        for part in parts:
            stored.parts[part.name] = part
        if run is not None:
            stored.runs[run.part_name] = {"state": run.state, "put": run.put, "read": run.read}
        self.saves += 1


class DynamoCheckpoints:
    """Checkpoints in the replay_checkpoints table (layout in the module docstring)."""

    def __init__(self, dynamodb: DynamoDBClient, table: str, clock: Any = time.time) -> None:
        self._db = dynamodb
        self.table = table
        self._clock = clock

    def _expires(self) -> dict[str, str]:
        return {"N": str(int(self._clock()) + RETENTION_DAYS * 86400)}

    async def create(self, replay_id: str, definition: Mapping[str, Any]) -> None:
        definition = dict(definition)
        filters = dict(definition["filters"])
        aggregates = list(filters.get("aggregates") or [])
        filters["aggregates"] = []
        definition["filters"] = filters
        chunks = [
            aggregates[i : i + _AGGREGATES_PER_CHUNK]
            for i in range(0, len(aggregates), _AGGREGATES_PER_CHUNK)
        ]
        # Chunks first: a definition item whose chunks are missing would be a replay that cannot be resumed.
        await self._write_items(
            [
                {
                    "replay_id": {"S": replay_id},
                    "part": {"S": f"aggregates#{i:04d}"},
                    "aggregates": {"S": orjson.dumps(chunk).decode()},
                    "expires_at": self._expires(),
                }
                for i, chunk in enumerate(chunks)
            ]
        )
        try:
            await self._db.put_item(
                TableName=self.table,
                Item={
                    "replay_id": {"S": replay_id},
                    "part": {"S": DEFINITION_PART},
                    "definition": {"S": orjson.dumps(definition).decode()},
                    "aggregate_chunks": {"N": str(len(chunks))},
                    "created_at": {"S": utc_now()},
                    "expires_at": self._expires(),
                },
                ConditionExpression="attribute_not_exists(replay_id)",
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                raise SetupError(
                    f"replay {replay_id} already exists; continue it with --resume {replay_id}"
                ) from exc
            raise

    async def load(self, replay_id: str) -> StoredReplay | None:
        items: list[dict[str, Any]] = []
        pages = self._db.get_paginator("query").paginate(
            TableName=self.table,
            KeyConditionExpression="replay_id = :r",
            ExpressionAttributeValues={":r": {"S": replay_id}},
            ConsistentRead=True,
        )
        async for page in pages:
            items.extend(page.get("Items", []))
        by_part = {item["part"]["S"]: item for item in items}
        head = by_part.get(DEFINITION_PART)
        if head is None:
            return None
        definition = orjson.loads(head["definition"]["S"])
        chunk_count = int(head.get("aggregate_chunks", {}).get("N", "0"))
        aggregates: list[str] = []
        for i in range(chunk_count):
            chunk = by_part.get(f"aggregates#{i:04d}")
            if chunk is None:
                raise SetupError(f"replay {replay_id}: checkpoint item aggregates#{i:04d} is missing")
            aggregates.extend(orjson.loads(chunk["aggregates"]["S"]))
        if aggregates:
            definition["filters"]["aggregates"] = aggregates
        stored = StoredReplay(definition)
        for name, item in by_part.items():
            if name.startswith(("scan#", "query#")):
                stored.parts[name] = _part_from_item(name, item)
            elif name.startswith("run#"):
                stored.runs[name] = {k: next(iter(v.values())) for k, v in item.items()}
        return stored

    async def save(self, replay_id: str, parts: Sequence[PartState], run: RunState | None = None) -> None:
        now = utc_now()
        items = [_part_item(replay_id, part, now, self._expires()) for part in parts]
        if run is not None:
            item: dict[str, Any] = {
                "replay_id": {"S": replay_id},
                "part": {"S": run.part_name},
                "state": {"S": run.state},
                "read": {"N": str(run.read)},
                "put": {"N": str(run.put)},
                "retried": {"N": str(run.retried)},
                "throttled": {"N": str(run.throttled)},
                "started_at": {"S": run.started_at or now},
                "updated_at": {"S": now},
                "expires_at": self._expires(),
            }
            if run.error:
                item["error"] = {"S": run.error[:1000]}
            items.append(item)
        await self._write_items(items)

    async def _write_items(self, items: list[dict[str, Any]]) -> None:
        """BatchWriteItem through eventlog.batch (25 a call, unprocessed items sent again with backoff; the
        client retries errors). A checkpoint the table keeps refusing is a SetupError naming the table."""
        try:
            await put_items_async(self._db, self.table, items, key=REPLAY_CHECKPOINTS_TABLE.key_names)
        except BatchIncomplete as exc:
            raise SetupError(f"checkpoint table {self.table} keeps refusing writes: {exc}") from exc


def _part_item(replay_id: str, part: PartState, now: str, expires: dict[str, str]) -> dict[str, Any]:
    item: dict[str, Any] = {
        "replay_id": {"S": replay_id},
        "part": {"S": part.name},
        "done": {"BOOL": part.done},
        "put": {"N": str(part.put)},
        "bytes": {"N": str(part.bytes)},
        "updated_at": {"S": now},
        "expires_at": expires,
    }
    if part.position is not None:
        item["after_aggregate_id"] = {"S": part.position[0]}
        item["after_version"] = {"N": str(part.position[1])}
    ahead, lanes = _cut(part)
    if ahead:
        item["ahead"] = {"S": orjson.dumps(ahead).decode()}
    if lanes:
        item["lanes"] = {"S": orjson.dumps(lanes).decode()}
    return item


def _cut(part: PartState) -> tuple[Mapping[str, int], Mapping[str, str]]:
    """`ahead` and `lanes` within the item's room. The watermark's lane is always kept (its aggregate's
    earlier events are under the watermark and never repeated); a lane is kept with its `ahead` entry."""
    ahead, lanes = part.ahead, part.lanes
    if len(orjson.dumps(ahead)) + len(orjson.dumps(lanes)) <= _MAX_AHEAD_BYTES:
        return ahead, lanes
    kept_lanes: dict[str, str] = {}
    size = 4
    if part.position is not None and part.position[0] in lanes:
        kept_lanes[part.position[0]] = lanes[part.position[0]]
        size += len(part.position[0].encode()) + 50
    kept: dict[str, int] = {}
    for aggregate_id, version in ahead.items():
        size += len(aggregate_id.encode()) + 24
        lane = lanes.get(aggregate_id)
        if lane is not None:
            size += len(aggregate_id.encode()) + 50
        if size > _MAX_AHEAD_BYTES:
            break
        kept[aggregate_id] = version
        if lane is not None:
            kept_lanes[aggregate_id] = lane
    return kept, kept_lanes


def _part_from_item(name: str, item: Mapping[str, Any]) -> PartState:
    position = None
    if "after_aggregate_id" in item:
        position = (item["after_aggregate_id"]["S"], int(item["after_version"]["N"]))
    return PartState(
        name=name,
        position=position,
        done=bool(item.get("done", {}).get("BOOL", False)),
        put=int(item.get("put", {}).get("N", "0")),
        bytes=int(item.get("bytes", {}).get("N", "0")),
        ahead=orjson.loads(item["ahead"]["S"]) if "ahead" in item else {},
        lanes=orjson.loads(item["lanes"]["S"]) if "lanes" in item else {},
    )
