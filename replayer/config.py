"""What a replay is asked to do: filters, mode, target, limits. Validated once, here, for the CLI and the Lambda.

`Filters` select events; `ReplayConfig` adds the rest. Both turn into plain dicts (`to_dict`) so a replay's
definition can be stored with its checkpoints and a resumed or parallel worker replays exactly the same set.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from eventlog.envelope import REPLAY_MODES, Event, ReplayMode, canonical_timestamp, new_event_id
from eventlog.ids import is_replay_id, is_table_name
from eventlog.topology import PLAYBACK_CONSUMERS
from replayer.errors import UsageError

# Kinesis takes partition keys of 1 to 256 characters; the aggregate id is the partition key.
MAX_PARTITION_KEY_CHARS = 256
# A DynamoDB expression's IN takes at most 100 operands.
MAX_TYPES = 100
# Scan takes 1 to 1,000,000 segments.
MAX_SEGMENTS = 1_000_000


@dataclass(frozen=True, slots=True)
class Filters:
    """Which events a replay puts. Every given filter must hold (they combine with AND).

    - `aggregates`: only these aggregates (then the plan queries each one; it never scans the table);
    - `types`: only these event types;
    - `since` / `until`: recorded time, `since <= recorded_at < until` (canonical UTC timestamps);
    - `from_version` / `to_version`: versions within each aggregate, both inclusive.
    """

    aggregates: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    since: str | None = None
    until: str | None = None
    from_version: int | None = None
    to_version: int | None = None

    @classmethod
    def build(
        cls,
        aggregates: Iterable[str] = (),
        types: Iterable[str] = (),
        since: str | None = None,
        until: str | None = None,
        from_version: int | str | None = None,
        to_version: int | str | None = None,
    ) -> Filters:
        """Validate and normalise filter values (raise UsageError with the flag's name on a bad one)."""
        aggs = _unique(aggregates, "--aggregate")
        for agg in aggs:
            if len(agg) > MAX_PARTITION_KEY_CHARS:
                raise UsageError(
                    f"--aggregate {agg[:40]!r}...: longer than {MAX_PARTITION_KEY_CHARS} characters"
                )
        kinds = _unique(types, "--type")
        if len(kinds) > MAX_TYPES:
            raise UsageError(f"--type given {len(kinds)} times; at most {MAX_TYPES} types")
        since_c = _timestamp(since, "--since")
        until_c = _timestamp(until, "--until")
        if since_c is not None and until_c is not None and since_c >= until_c:
            raise UsageError(f"--since {since} is not before --until {until}")
        lo = _version(from_version, "--from-version")
        hi = _version(to_version, "--to-version")
        if lo is not None and hi is not None and lo > hi:
            raise UsageError(f"--from-version {lo} is greater than --to-version {hi}")
        return cls(tuple(sorted(aggs)), tuple(sorted(kinds)), since_c, until_c, lo, hi)

    @property
    def uses_query(self) -> bool:
        """With aggregate ids the plan queries each aggregate instead of scanning the table."""
        return bool(self.aggregates)

    def matches(self, event: Event) -> bool:
        """Whether an event passes every filter (the same test the DynamoDB expressions make)."""
        return (
            (not self.aggregates or event.aggregate_id in self.aggregates)
            and (not self.types or event.type in self.types)
            and (self.since is None or event.recorded_at >= self.since)
            and (self.until is None or event.recorded_at < self.until)
            and (self.from_version is None or event.version >= self.from_version)
            and (self.to_version is None or event.version <= self.to_version)
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "aggregates": list(self.aggregates),
            "types": list(self.types),
            "since": self.since,
            "until": self.until,
            "from_version": self.from_version,
            "to_version": self.to_version,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Filters:
        return cls.build(
            aggregates=data.get("aggregates") or (),
            types=data.get("types") or (),
            since=data.get("since"),
            until=data.get("until"),
            from_version=data.get("from_version"),
            to_version=data.get("to_version"),
        )

    def describe(self) -> str:
        """A short human summary (`3 aggregates, types A,B, since ...`)."""
        parts: list[str] = []
        if self.aggregates:
            parts.append(f"{len(self.aggregates)} aggregate{'s' if len(self.aggregates) != 1 else ''}")
        if self.types:
            parts.append("types " + ",".join(self.types))
        if self.since:
            parts.append(f"since {self.since}")
        if self.until:
            parts.append(f"until {self.until}")
        if self.from_version is not None or self.to_version is not None:
            parts.append(f"versions {self.from_version or 1}..{self.to_version or ''}")
        return ", ".join(parts) or "every event"


@dataclass(frozen=True, slots=True)
class Worker:
    """`--worker i/n`: this process is worker `index` (0-based) of `count`, and takes every count-th part."""

    index: int = 0
    count: int = 1

    @classmethod
    def parse(cls, text: str) -> Worker:
        """Parse `i/n` (0 <= i < n)."""
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")
        if not match:
            raise UsageError(f"--worker {text!r}: expected i/n, for example 0/4 (worker 0 of 4)")
        index, count = int(match[1]), int(match[2])
        if count < 1 or index >= count:
            raise UsageError(f"--worker {text}: i must be 0..{count - 1} and n at least 1")
        return cls(index, count)

    def owns(self, part_index: int) -> bool:
        return part_index % self.count == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


@dataclass(frozen=True, slots=True)
class Limits:
    """Rate and size limits. None means: derived from the target stream's open shards."""

    rate: float | None = None  # events/s
    max_bytes_per_s: float | None = None


@dataclass(frozen=True)
class ReplayConfig:
    """Everything one replayer process needs to know, already validated."""

    events_table: str
    stream: str
    checkpoint_table: str
    filters: Filters = field(default_factory=Filters)
    mode: ReplayMode = "rebuild"
    replay_id: str = ""
    resume: bool = False
    segments: int | None = None
    worker: Worker = field(default_factory=Worker)
    limits: Limits = field(default_factory=Limits)
    dry_run: bool = False
    # PutRecords calls in flight at once; the HTTP pool is sized from this.
    concurrency: int = 16
    # Parts (scan segments, aggregate groups) read at once.
    read_concurrency: int = 8
    # Seconds between checkpoint saves; a kill repeats at most what was put in the last interval.
    checkpoint_interval: float = 2.0
    checkpoints: bool = True
    # The state table the write function projects this replay into (a rebuild's shadow table); None: the
    # live state table. Stored in the definition, where consumers look it up by replay id.
    state_table: str | None = None
    # Spread aggregates evenly over the target's shards (ExplicitHashKey) instead of hashing their ids: the
    # replay is no longer bounded by its busiest shard, but two replays of one aggregate may land on
    # different shards (see replayer/sender.py). Stored in the definition: a resume keeps the lanes.
    spread_shards: bool = False
    # The one consumer (a function key the playback stream feeds) the replay is addressed to; None: every
    # consumer. Stored in the definition, where consumers look it up; a redrive replay must name one
    # (`python -m ops redrive` starts them).
    consumer: str | None = None

    def __post_init__(self) -> None:
        if not self.replay_id:
            object.__setattr__(self, "replay_id", new_replay_id())
        check_replay_id(self.replay_id)
        if self.mode not in REPLAY_MODES:
            raise UsageError(f"--mode {self.mode!r}: expected one of {', '.join(REPLAY_MODES)}")
        if self.segments is not None and not 1 <= self.segments <= MAX_SEGMENTS:
            raise UsageError(f"--segments {self.segments}: expected 1..{MAX_SEGMENTS}")
        if self.segments is not None and self.segments < self.worker.count:
            raise UsageError(
                f"--segments {self.segments} is fewer than the {self.worker.count} workers; "
                "each worker needs at least one segment"
            )
        for name, value in (("--rate", self.limits.rate), ("--max-bytes-per-s", self.limits.max_bytes_per_s)):
            if value is not None and not value > 0:
                raise UsageError(f"{name} {value}: expected a positive number")
        if self.concurrency < 1 or self.read_concurrency < 1:
            raise UsageError("--concurrency: expected at least 1")
        if not self.checkpoint_interval > 0:
            raise UsageError(f"--checkpoint-interval {self.checkpoint_interval}: expected a positive number")
        if self.dry_run and self.resume:
            raise UsageError("--dry-run and --resume do not go together")
        if self.state_table is not None:
            if not is_table_name(self.state_table):
                raise UsageError(
                    f"--state-table {self.state_table!r}: not a DynamoDB table name "
                    "(3-255 letters, digits, '_', '-', '.')"
                )
            if self.mode != "rebuild":
                raise UsageError(
                    f"--state-table goes with --mode rebuild; a {self.mode} replay recomputes the live state"
                )
        if self.consumer is not None and self.consumer not in PLAYBACK_CONSUMERS:
            raise UsageError(
                f"consumer {self.consumer!r}: expected one of {', '.join(PLAYBACK_CONSUMERS)} (the functions the "
                "playback stream feeds)"
            )
        if self.mode == "redrive" and self.consumer is None:
            raise UsageError(
                "--mode redrive is addressed to one consumer and started by `python -m ops redrive` "
                "(docs/replays.md, 'Redrive')"
            )

    def with_definition(self, definition: Mapping[str, Any]) -> ReplayConfig:
        """This config with the stored definition of the replay it resumes (filters, mode, target, segments)."""
        return replace(
            self,
            filters=Filters.from_dict(definition["filters"]),
            mode=definition["mode"],
            stream=definition["stream"],
            events_table=definition["events_table"],
            segments=int(definition["segments"]),
            state_table=definition.get("state_table"),
            spread_shards=bool(definition.get("spread_shards", False)),
            consumer=definition.get("consumer") or None,
        )

    def definition(self, segments: int) -> dict[str, Any]:
        """What defines the replay's event set and target (stored with its checkpoints). Optional fields
        (`state_table`, `spread_shards`, `consumer`) are left out when they have their default, as consumers
        read absent as default."""
        definition: dict[str, Any] = {
            "filters": self.filters.to_dict(),
            "mode": self.mode,
            "stream": self.stream,
            "events_table": self.events_table,
            "segments": segments,
            "plan": "query" if self.filters.uses_query else "scan",
        }
        if self.state_table is not None:
            definition["state_table"] = self.state_table
        if self.spread_shards:
            definition["spread_shards"] = True
        if self.consumer is not None:
            definition["consumer"] = self.consumer
        return definition


def new_replay_id() -> str:
    """A fresh replay id: `replay-` and a UUIDv7, so ids sort by start time."""
    return "replay-" + new_event_id()


def check_replay_id(replay_id: str) -> str:
    """The replay id, if the whole of it is one (eventlog.ids); UsageError otherwise."""
    if not is_replay_id(replay_id):
        raise UsageError(
            f"replay id {replay_id!r}: use 1-100 letters, digits, '-' or '_' (starting with a letter or digit)"
        )
    return replay_id


def read_aggregates_file(path: str) -> list[str]:
    """Aggregate ids, one a line; blank lines and lines starting with # are skipped."""
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except OSError as exc:
        raise UsageError(f"--aggregates-file {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise UsageError(f"--aggregates-file {path}: not UTF-8 text") from exc
    ids = [line.strip() for line in lines]
    ids = [i for i in ids if i and not i.startswith("#")]
    if not ids:
        raise UsageError(f"--aggregates-file {path}: no aggregate ids in it")
    return ids


def _unique(values: Iterable[str], flag: str) -> list[str]:
    out: list[str] = []
    for value in values:
        if not isinstance(value, str) or not value.strip():
            raise UsageError(f"{flag}: empty value")
        out.append(value.strip())
    return list(dict.fromkeys(out))


def _timestamp(text: str | None, flag: str) -> str | None:
    if text is None or text == "":
        return None
    try:
        return canonical_timestamp(str(text))
    except ValueError as exc:
        raise UsageError(f"{flag} {text!r}: not an ISO 8601 time with a zone ({exc})") from exc


def _version(value: int | str | None, flag: str) -> int | None:
    if value is None or value == "":
        return None
    try:
        number = int(value)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"{flag} {value!r}: not a whole number") from exc
    if number < 1:
        raise UsageError(f"{flag} {number}: versions start at 1")
    return number
