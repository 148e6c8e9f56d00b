"""The replay benchmark's data: one set of events, used by every variant, and its canned Scan pages.

Events look like the ledger's with realistic envelopes (metadata, a memo, a reference): an events-table item
is about 770 bytes, as in AWS-LOCAL.md's measurements. Aggregates have 1 to 12 events (mean about 6.5).
"""

from __future__ import annotations

import hashlib
import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from eventlog.codec import event_to_item
from eventlog.envelope import Event, format_timestamp

PAGE_BYTES = 1024 * 1024  # DynamoDB's Scan page limit
_TYPES = ("MoneyDeposited", "MoneyWithdrawn")
_WORDS = (
    "invoice",
    "salary",
    "refund",
    "transfer",
    "groceries",
    "rent",
    "fee",
    "interest",
    "bonus",
    "repair",
)


@dataclass
class Dataset:
    events: list[Event]
    items: list[dict[str, Any]]  # events-table items (DynamoDB wire form), in the events' order

    @property
    def aggregates(self) -> int:
        return len({e.aggregate_id for e in self.events})

    def head(self, events: int) -> Dataset:
        """The first whole aggregates, up to `events` events (all of them if there are fewer)."""
        if events >= len(self.events):
            return self
        end = events
        while end > 0 and self.events[end].aggregate_id == self.events[end - 1].aggregate_id:
            end -= 1
        return Dataset(self.events[:end], self.items[:end])

    @property
    def item_bytes(self) -> int:
        return sum(len(orjson.dumps(i)) for i in self.items)


def make_dataset(events: int, seed: int = 7, per_aggregate: int | None = None) -> Dataset:
    """About `events` events (whole aggregates), reproducible from `seed`; aggregates of 1 to 12 events, or of
    `per_aggregate` each."""
    rng = random.Random(seed)
    out: list[Event] = []
    start = datetime(2026, 1, 1, tzinfo=UTC)
    n = 0
    while len(out) < events:
        aggregate_id = f"acct-{uuid.UUID(int=rng.getrandbits(128))}"
        count = min(per_aggregate or rng.randint(1, 12), events - len(out))
        for version in range(1, count + 1):
            n += 1
            moment = format_timestamp(start + timedelta(milliseconds=37 * n))
            memo = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(20, 50)))
            out.append(
                Event(
                    event_id=str(uuid.UUID(int=rng.getrandbits(128))),
                    aggregate_id=aggregate_id,
                    type="AccountOpened" if version == 1 else rng.choice(_TYPES),
                    version=version,
                    schema_version=1,
                    occurred_at=moment,
                    recorded_at=moment,
                    payload={
                        "amount": rng.randint(100, 1_000_000),
                        "currency": "EUR",
                        "memo": memo,
                        "reference": str(uuid.UUID(int=rng.getrandbits(128))),
                    },
                    metadata={
                        "correlation_id": str(uuid.UUID(int=rng.getrandbits(128))),
                        "causation_id": str(uuid.UUID(int=rng.getrandbits(128))),
                        "actor": f"user-{rng.randint(1, 500)}",
                    },
                )
            )
    return Dataset(out, [event_to_item(e) for e in out])


def segment_of(aggregate_id: str, total: int) -> int:
    """A table segment for a partition key: a stable hash, as DynamoDB (and moto) do."""
    return int.from_bytes(hashlib.md5(aggregate_id.encode()).digest()[:8], "big") * total >> 64


def canned_pages(items: list[dict[str, Any]], segments: int) -> dict[int, list[bytes]]:
    """Raw Scan response bodies per segment: items grouped by segment, in (aggregate, version) order, cut into
    1 MB pages, each page but the last with its LastEvaluatedKey."""
    by_segment: dict[int, list[dict[str, Any]]] = {s: [] for s in range(segments)}
    for item in items:
        by_segment[segment_of(item["aggregate_id"]["S"], segments)].append(item)
    pages: dict[int, list[bytes]] = {}
    for segment, seg_items in by_segment.items():
        seg_items.sort(key=lambda i: (i["aggregate_id"]["S"], int(i["version"]["N"])))
        encoded = [orjson.dumps(i) for i in seg_items]
        bodies: list[bytes] = []
        start = 0
        while start < len(encoded) or not bodies:
            end, size = start, 0
            while end < len(encoded) and size + len(encoded[end]) <= PAGE_BYTES:
                size += len(encoded[end])
                end += 1
            last = seg_items[end - 1] if end < len(encoded) else None
            body = (
                b'{"Items":['
                + b",".join(encoded[start:end])
                + b'],"Count":%d,"ScannedCount":%d'
                % (
                    end - start,
                    end - start,
                )
            )
            if last is not None:
                key = {"aggregate_id": last["aggregate_id"], "version": last["version"]}
                body += b',"LastEvaluatedKey":' + orjson.dumps(key)
            bodies.append(body + b"}")
            start = end
        pages[segment] = bodies
    return pages
