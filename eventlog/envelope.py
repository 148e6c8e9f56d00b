"""The event envelope: the one shape every event has, in the log, on the streams and at the API.

An `Event` is committed: it has a version (its place in its aggregate's history, 1, 2, 3 ... gapless) and the
time the log recorded it. A `Submission` is what the load handler puts on the ingest stream: an event that is
not in the log yet, plus the checks the pump makes before recording it (`expected_version`).

Consumers identify an event by (aggregate_id, version); a replay may deliver an event more than once (a
PutRecords call whose outcome was unknown is repeated), so consumers must treat a version they have already
seen as a no-op. The write handler does exactly that.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
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


def event_id_for_key(aggregate_id: str, idempotency_key: str) -> str:
    """The event id of a request that carries an Idempotency-Key and no event id: a UUIDv8 (RFC 9562) made
    from the aggregate and the key, so a retry after an unknown outcome (the put went through, its answer
    was lost) names the same event, and the log's dedupe by event id keeps it to one."""
    digest = hashlib.sha256(f"{aggregate_id}\x00{idempotency_key}".encode()).digest()
    value = int.from_bytes(digest[:16], "big")
    value = (value & ~(0xF << 76)) | (0x8 << 76)  # version 8
    value = (value & ~(0b11 << 62)) | (0b10 << 62)  # RFC 9562 variant
    return str(uuid.UUID(int=value))


# The times the log takes, wherever a time comes from (the API's occurred_at, the replayer's and ops' --since and
# --until): from the Unix epoch to the last microsecond of year 9999, in UTC. Below 1970 no event can have been
# recorded; beyond 9999 the fixed-width canonical form (and Python's datetime) cannot go.
EARLIEST_TIME = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_TIME = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
# RFC 3339's date-time (JSON Schema's `format: date-time`), ASCII digits only: a full date, 'T', hh:mm:ss, an
# optional fraction of 1-9 digits (kept to the microsecond, the rest cut off), and 'Z' or an offset +hh:mm.
# No week or ordinal dates, no basic (separator-less) form, no space for 'T', no local time without a zone,
# no leap second. This is what api/openapi.yaml states; the parser below reads a looser grammar only to say
# more precisely what is wrong (a month 13, a missing zone). Within it, the calendar (no 30 February) and the
# bounds in UTC (an offset can move 1970-01-01T00:30+01:00 before 1970) still apply.
TIMESTAMP_PATTERN = (
    r"(19[7-9][0-9]|[2-9][0-9]{3})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[Tt]"
    r"([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,9})?([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])"
)
_TIMESTAMP = re.compile(
    r"(?P<year>[0-9]{4})-(?P<month>[0-9]{2})-(?P<day>[0-9]{2})[Tt]"
    r"(?P<hour>[0-9]{2}):(?P<minute>[0-9]{2}):(?P<second>[0-9]{2})(?:\.(?P<fraction>[0-9]{1,9}))?"
    r"(?:(?P<utc>[Zz])|(?P<sign>[+-])(?P<offset_hours>[0-9]{2}):(?P<offset_minutes>[0-9]{2}))?",
    re.ASCII,
)
_MAX_TIMESTAMP_CHARS = 64
_DAY_ONE = datetime(1, 1, 1)
_EXAMPLE = "2026-11-26T04:26:33Z or 2026-11-26T05:26:33.5+01:00"


def format_timestamp(moment: datetime) -> str:
    """Canonical, fixed-width UTC form (`2026-11-26T04:26:33.123456Z`), so string order is time order."""
    if moment.tzinfo is None:
        raise ValueError("timestamp has no time zone")
    utc = moment.astimezone(UTC)
    if not EARLIEST_TIME <= utc <= LATEST_TIME:
        raise ValueError(f"timestamp {utc.isoformat()} is outside {_bounds()}")
    return utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_timestamp(text: str) -> datetime:
    """Parse an RFC 3339 timestamp with a time zone (`Z` or an offset such as `+01:00`) into an aware UTC
    datetime within EARLIEST_TIME..LATEST_TIME. Raises ValueError, and nothing else, with a message that says
    what is wrong (never OverflowError, whatever the input: the calendar's edges are checked, not hit)."""
    if not isinstance(text, str):
        raise ValueError(f"a timestamp must be a string like {_EXAMPLE}, got {type(text).__name__}")
    shown = repr(text[:_MAX_TIMESTAMP_CHARS]) + ("..." if len(text) > _MAX_TIMESTAMP_CHARS else "")
    found = _TIMESTAMP.fullmatch(text) if len(text) <= _MAX_TIMESTAMP_CHARS else None
    if found is None:
        raise ValueError(f"timestamp {shown} is not an RFC 3339 date-time like {_EXAMPLE}")
    if found["utc"] is None and found["sign"] is None:
        raise ValueError(f"timestamp {shown} has no time zone (add Z or an offset)")
    part = {name: int(value) for name, value in found.groupdict().items() if value and value.isdigit()}
    if part["second"] == 60:
        raise ValueError(f"timestamp {shown}: leap seconds (:60) are not taken; use :59.999999")
    if found["sign"] is not None and not (part["offset_hours"] <= 23 and part["offset_minutes"] <= 59):
        raise ValueError(f"timestamp {shown}: the offset must be between -23:59 and +23:59")
    fraction = (found["fraction"] or "").ljust(6, "0")[:6]  # cut to microseconds: rounding could carry a year
    try:
        local = datetime(
            part["year"],
            part["month"],
            part["day"],
            part["hour"],
            part["minute"],
            part["second"],
            int(fraction),
        )
    except ValueError as exc:
        raise ValueError(f"timestamp {shown} is not a date and time that exists ({exc})") from None
    offset = timedelta(hours=part.get("offset_hours", 0), minutes=part.get("offset_minutes", 0))
    if found["sign"] == "-":
        offset = -offset
    # local - offset can leave datetime's range (years 1 to 9999) at the calendar's edges, where datetime raises
    # OverflowError: do the arithmetic on timedeltas (whose range is far wider) and check before converting back.
    utc = local - _DAY_ONE - offset
    if (
        not EARLIEST_TIME.replace(tzinfo=None) - _DAY_ONE
        <= utc
        <= LATEST_TIME.replace(tzinfo=None) - _DAY_ONE
    ):
        raise ValueError(f"timestamp {shown} is outside {_bounds()}")
    return (_DAY_ONE + utc).replace(tzinfo=UTC)


def canonical_timestamp(text: str) -> str:
    """Normalise any timestamp parse_timestamp takes to the canonical form used in the log (ValueError
    otherwise)."""
    return format_timestamp(parse_timestamp(text))


def _bounds() -> str:
    return (
        f"the times the log takes ({EARLIEST_TIME:%Y-%m-%dT%H:%M:%SZ} to {LATEST_TIME:%Y-%m-%dT%H:%M:%S.%fZ})"
    )


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
