"""What consumers know about a replay beyond its envelope: its stored definition, looked up by replay id.

A replayed event carries only `replay: {replay_id, mode}`. The replayer stores the replay's definition in the
replay_checkpoints table before it puts a single event (item `replay_id`, part `"replay"`, attribute
`definition`, JSON; a query plan's aggregate ids in `aggregates#NNNN` items; see docs/replayer.md
"Checkpoints"). A consumer that needs more than the mode (the write function needs `state_table`, the state
table a rebuild projects into) asks a `ReplayDirectory`:

    directory = ReplayDirectory(dynamodb, settings.replay_checkpoints_table)
    definition = directory.get(event.replay.replay_id)   # ReplayDefinition, or None if none is stored

Definitions never change once written, so a found one is cached for the life of the container. A missing one
is cached briefly (`miss_ttl_s`): a replay started without stored checkpoints (in-memory, in tests) has none,
and asking again for every event would cost a read each; but a definition written a moment later (another
worker of the same replay) is still found soon.

Fields the replayer may add later are read here with their defaults when absent:
- `state_table`: where the write function projects this replay's events; None means the live state table.
- `consumer`: the one function the replay is addressed to (`write`, `service`); None means every consumer.
  A consumer that is not the one named skips the replay's events. A `redrive` replay always names one, and
  is processed by it exactly as live processing would have (`python -m ops redrive`).

A consumer acknowledges each aggregate of a replay addressed to it, once done, with the highest version it
processed (`ConsumerAcks`: items `ack#<consumer>#<aggregate id>` beside the definition), so an operator
command can tell that the consumer, and not only the stream, has the replay.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from eventlog.envelope import REPLAY_MODES, ReplayMode
from eventlog.errors import EventLogError
from eventlog.ids import is_table_name
from eventlog.topology import PLAYBACK_CONSUMERS

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

DEFINITION_PART = "replay"
AGGREGATE_CHUNK_PREFIX = "aggregates#"
ACK_PREFIX = "ack#"
# Acknowledgements are bookkeeping of a replay in progress, like its checkpoints: they age out.
ACK_TTL_S = 30 * 24 * 3600


class ReplayDefinitionError(EventLogError):
    """A stored replay definition that cannot be read (not JSON, an unknown mode, a bad table name)."""


@dataclass(frozen=True, slots=True)
class ReplayDefinition:
    """A replay as its definition describes it (the fields consumers use; `raw` holds all of them)."""

    replay_id: str
    mode: ReplayMode
    state_table: str | None = None
    filters: Mapping[str, Any] = field(default_factory=dict)
    consumer: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict)

    def addressed_to(self, consumer: str) -> bool:
        """Whether `consumer` (a function key) processes this replay's events."""
        return self.consumer is None or self.consumer == consumer

    @classmethod
    def from_dict(cls, replay_id: str, data: Mapping[str, Any]) -> ReplayDefinition:
        """Read a stored definition; raise ReplayDefinitionError when it is not one."""
        mode = data.get("mode", "rebuild")
        if mode not in REPLAY_MODES:
            raise ReplayDefinitionError(f"replay {replay_id}: unknown mode {mode!r} in its definition")
        state_table = data.get("state_table") or None
        if state_table is not None and (not is_table_name(state_table)):
            raise ReplayDefinitionError(
                f"replay {replay_id}: state_table {state_table!r} is not a table name"
            )
        filters = data.get("filters") or {}
        if not isinstance(filters, Mapping):
            raise ReplayDefinitionError(f"replay {replay_id}: filters in its definition are not an object")
        consumer = data.get("consumer") or None
        if consumer is not None and consumer not in PLAYBACK_CONSUMERS:
            raise ReplayDefinitionError(
                f"replay {replay_id}: consumer {consumer!r} is not one of {', '.join(PLAYBACK_CONSUMERS)}"
            )
        if mode == "redrive" and consumer is None:
            raise ReplayDefinitionError(
                f"replay {replay_id}: a redrive names its consumer, this one does not"
            )
        return cls(
            replay_id=replay_id,
            mode=mode,
            state_table=state_table,
            filters=filters,
            consumer=consumer,
            raw=data,
        )


class ReplayDirectory:
    """Looks up replay definitions in the replay_checkpoints table, cached (see the module docstring).

    Safe to share between threads (the write function projects aggregates concurrently)."""

    def __init__(
        self,
        dynamodb: DynamoDBClient,
        table: str,
        *,
        max_cached: int = 256,
        miss_ttl_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._db = dynamodb
        self.table = table
        self._max = max_cached
        self._miss_ttl = miss_ttl_s
        self._clock = clock
        self._found: OrderedDict[str, ReplayDefinition] = OrderedDict()
        self._missing: dict[str, float] = {}
        self._lock = threading.Lock()

    def get(self, replay_id: str) -> ReplayDefinition | None:
        """The replay's definition, or None when none is stored. Raises ReplayDefinitionError for one that
        cannot be read (better a failed batch, retried and then dead-lettered, than projecting wrongly)."""
        with self._lock:
            found = self._found.get(replay_id)
            if found is not None:
                self._found.move_to_end(replay_id)
                return found
            missed_at = self._missing.get(replay_id)
            if missed_at is not None and self._clock() - missed_at < self._miss_ttl:
                return None
        definition = self._load(replay_id)
        with self._lock:
            if definition is None:
                self._missing[replay_id] = self._clock()
                if len(self._missing) > self._max:
                    self._missing.pop(next(iter(self._missing)))
            else:
                self._missing.pop(replay_id, None)
                self._found[replay_id] = definition
                if len(self._found) > self._max:
                    self._found.popitem(last=False)
        return definition

    def _load(self, replay_id: str) -> ReplayDefinition | None:
        response = self._db.get_item(
            TableName=self.table,
            Key={"replay_id": {"S": replay_id}, "part": {"S": DEFINITION_PART}},
            ConsistentRead=True,
        )
        item: Any = response.get("Item")
        if not item or "definition" not in item:
            return None
        try:
            data = orjson.loads(item["definition"]["S"])
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise ReplayDefinitionError(f"replay {replay_id}: its definition is not JSON ({exc})") from exc
        if not isinstance(data, dict):
            raise ReplayDefinitionError(f"replay {replay_id}: its definition is not a JSON object")
        chunks = int(item.get("aggregate_chunks", {}).get("N", "0"))
        if chunks:
            # The replayer keeps a long aggregate list in chunk items so the definition fits in 400 KB.
            filters = dict(data.get("filters") or {})
            filters["aggregates"] = self._aggregates(replay_id, chunks)
            data["filters"] = filters
        return ReplayDefinition.from_dict(replay_id, data)

    def _aggregates(self, replay_id: str, chunks: int) -> list[str]:
        parts: dict[str, list[str]] = {}
        pages = self._db.get_paginator("query").paginate(
            TableName=self.table,
            KeyConditionExpression="replay_id = :r AND begins_with(part, :p)",
            ExpressionAttributeValues={":r": {"S": replay_id}, ":p": {"S": AGGREGATE_CHUNK_PREFIX}},
            ConsistentRead=True,
        )
        for page in pages:
            for chunk in page.get("Items", []):
                parts[chunk["part"]["S"]] = orjson.loads(chunk["aggregates"]["S"])
        aggregates: list[str] = []
        for i in range(chunks):
            name = f"{AGGREGATE_CHUNK_PREFIX}{i:04d}"
            if name not in parts:
                raise ReplayDefinitionError(f"replay {replay_id}: checkpoint item {name} is missing")
            aggregates.extend(parts[name])
        return aggregates


def ack_part(consumer: str, aggregate_id: str) -> str:
    """The sort key of a consumer's acknowledgement of one aggregate of a replay."""
    return f"{ACK_PREFIX}{consumer}#{aggregate_id}"


class ConsumerAcks:
    """A consumer's acknowledgements of the replays addressed to it, in the replay_checkpoints table.

    `acknowledge` raises the stored version of each aggregate (never lowers it: a redelivered older batch
    changes nothing); `acknowledged` reads them back for a replay."""

    def __init__(
        self, dynamodb: DynamoDBClient, table: str, *, epoch: Callable[[], float] = time.time
    ) -> None:
        self._db = dynamodb
        self.table = table
        self._epoch = epoch

    def acknowledge(self, replay_id: str, consumer: str, versions: Mapping[str, int]) -> None:
        """Record that `consumer` has processed each aggregate of the replay through the version given."""
        expires = str(int(self._epoch()) + ACK_TTL_S)
        for aggregate_id, version in versions.items():
            # A failed condition: already acknowledged at this version or a later one.
            with contextlib.suppress(self._db.exceptions.ConditionalCheckFailedException):
                self._db.update_item(
                    TableName=self.table,
                    Key={"replay_id": {"S": replay_id}, "part": {"S": ack_part(consumer, aggregate_id)}},
                    UpdateExpression="SET #v = :v, expires_at = :e",
                    ConditionExpression="attribute_not_exists(#v) OR #v < :v",
                    ExpressionAttributeNames={"#v": "version"},
                    ExpressionAttributeValues={":v": {"N": str(version)}, ":e": {"N": expires}},
                )

    def acknowledged(self, replay_id: str, consumer: str) -> dict[str, int]:
        """Aggregate id -> the highest version `consumer` acknowledged for the replay."""
        prefix = f"{ACK_PREFIX}{consumer}#"
        paginator = self._db.get_paginator("query")
        out: dict[str, int] = {}
        for page in paginator.paginate(
            TableName=self.table,
            KeyConditionExpression="replay_id = :r AND begins_with(part, :p)",
            ExpressionAttributeValues={":r": {"S": replay_id}, ":p": {"S": prefix}},
            ConsistentRead=True,
        ):
            for item in page.get("Items", []):
                out[item["part"]["S"][len(prefix) :]] = int(item["version"]["N"])
        return out
