"""The event envelope: the one shape every event has, in the log, on the streams and at the API.

An `Event` is committed: it has a version (its place in its aggregate's history, 1, 2, 3 ... gapless) and the
time the log recorded it. A `Submission` is what the load handler puts on the ingest stream: an event that is
not in the log yet, plus the checks the pump makes before recording it (`expected_version`).

Consumers identify an event by (aggregate_id, version); a replay may deliver an event more than once (a
PutRecords call whose outcome was unknown is repeated), so consumers must treat a version they have already
seen as a no-op. The write handler does exactly that.
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

# rebuild, fix, feature: docs/replays.md. redrive: the events are processed exactly as live processing would
# have, by the one consumer the replay's stored definition names (`consumer`); `python -m ops redrive` starts
# them for the batches a consumer dead-lettered.
ReplayMode = Literal["rebuild", "fix", "feature", "redrive"]
REPLAY_MODES: tuple[ReplayMode, ...] = ("rebuild", "fix", "feature", "redrive")

METADATA_KEYS = ("correlation_id", "causation_id", "actor")


def new_event_id() -> str:
    """A UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then random bits, so ids sort by creation time."""
    millis = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (millis & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76  # version 7
    value |= ((rand >> 62) & 0xFFF) << 64  # rand_a, 12 bits
    value |= 0b10 << 62  # RFC 4122 variant
    value |= rand & ((1 << 62) - 1)  # rand_b, 62 bits
    return str(uuid.UUID(int=value))


def format_timestamp(moment: datetime) -> str:
    """Canonical, fixed-width UTC form (`2026-11-26T04:26:33.123456Z`), so string order is time order."""
    if moment.tzinfo is None:
        raise ValueError("timestamp has no time zone")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_timestamp(text: str) -> datetime:
    """Parse an ISO 8601 timestamp that carries a time zone (`Z` or an offset); raise ValueError otherwise."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"timestamp {text!r} has no time zone (add Z or an offset)")
    return moment.astimezone(UTC)


def canonical_timestamp(text: str) -> str:
    """Normalise any zoned ISO 8601 timestamp to the canonical form used in the log."""
    return format_timestamp(parse_timestamp(text))


def utc_now() -> str:
    """The current time in the canonical form."""
    return format_timestamp(datetime.now(UTC))


@dataclass(frozen=True, slots=True)
class ReplayInfo:
    """Marks an event delivered by a replay rather than live: which replay, and in which mode."""

    replay_id: str
    mode: ReplayMode

    def to_dict(self) -> dict[str, str]:
        return {"replay_id": self.replay_id, "mode": self.mode}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReplayInfo:
        mode = data["mode"]
        if mode not in REPLAY_MODES:
            raise ValueError(f"unknown replay mode {mode!r}")
        return cls(replay_id=str(data["replay_id"]), mode=mode)


@dataclass(frozen=True, slots=True)
class Event:
    """A committed event, as stored in the events table and delivered to consumers."""

    event_id: str
    aggregate_id: str
    type: str
    version: int
    schema_version: int
    occurred_at: str
    recorded_at: str
    payload: dict[str, Any]
    metadata: dict[str, str] = field(default_factory=dict)
    replay: ReplayInfo | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON envelope (the data contract in docs/architecture.md)."""
        data: dict[str, Any] = {
            "event_id": self.event_id,
            "aggregate_id": self.aggregate_id,
            "type": self.type,
            "version": self.version,
            "schema_version": self.schema_version,
            "occurred_at": self.occurred_at,
            "recorded_at": self.recorded_at,
            "payload": self.payload,
            "metadata": self.metadata,
        }
        if self.replay is not None:
            data["replay"] = self.replay.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Event:
        replay = data.get("replay")
        return cls(
            event_id=data["event_id"],
            aggregate_id=data["aggregate_id"],
            type=data["type"],
            version=int(data["version"]),
            schema_version=int(data["schema_version"]),
            occurred_at=data["occurred_at"],
            recorded_at=data["recorded_at"],
            payload=data["payload"],
            metadata=data.get("metadata") or {},
            replay=ReplayInfo.from_dict(replay) if replay else None,
        )


@dataclass(frozen=True, slots=True)
class Submission:
    """An event accepted at the API and on its way to the log (the ingest stream's record)."""

    event_id: str
    aggregate_id: str
    type: str
    schema_version: int
    occurred_at: str
    accepted_at: str
    payload: dict[str, Any]
    metadata: dict[str, str] = field(default_factory=dict)
    expected_version: int | None = None

    def to_event(self, version: int, recorded_at: str) -> Event:
        return Event(
            event_id=self.event_id,
            aggregate_id=self.aggregate_id,
            type=self.type,
            version=version,
            schema_version=self.schema_version,
            occurred_at=self.occurred_at,
            recorded_at=recorded_at,
            payload=self.payload,
            metadata=self.metadata,
        )

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "event_id": self.event_id,
            "aggregate_id": self.aggregate_id,
            "type": self.type,
            "schema_version": self.schema_version,
            "occurred_at": self.occurred_at,
            "accepted_at": self.accepted_at,
            "payload": self.payload,
            "metadata": self.metadata,
        }
        if self.expected_version is not None:
            data["expected_version"] = self.expected_version
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Submission:
        expected = data.get("expected_version")
        return cls(
            event_id=data["event_id"],
            aggregate_id=data["aggregate_id"],
            type=data["type"],
            schema_version=int(data["schema_version"]),
            occurred_at=data["occurred_at"],
            accepted_at=data["accepted_at"],
            payload=data["payload"],
            metadata=data.get("metadata") or {},
            expected_version=None if expected is None else int(expected),
        )
