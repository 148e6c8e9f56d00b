"""Where each record lands and how fast each shard takes it.

Kinesis hashes a partition key with MD5 into a 128-bit number and the open shard whose hash key range holds
it takes the record. Each shard takes 1,000 records/s and 1 MiB/s; beyond that it refuses records with
ProvisionedThroughputExceeded. So the replayer paces every shard on its own (a token bucket for records and
one for bytes), and lowers a shard's pace when the shard still refuses (another producer shares it, or the
shard map changed): multiplicative decrease on a throttled call, additive increase on clean ones.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

SHARD_RECORDS_PER_S = 1000.0
SHARD_BYTES_PER_S = 1024.0 * 1024.0
# Seconds of pace a bucket may bank: a short burst after an idle spell, small enough that a stream which
# counts strictly per second refuses little of it.
BURST_S = 0.2


@dataclass(frozen=True, slots=True)
class Shard:
    shard_id: str
    start: int
    end: int


class ShardMap:
    """The open shards of a stream and which one takes a partition key."""

    def __init__(self, shards: Iterable[Shard]) -> None:
        self.shards = sorted(shards, key=lambda s: s.start)
        if not self.shards:
            raise ValueError("a stream needs at least one open shard")
        self._starts = [s.start for s in self.shards]

    @classmethod
    def from_list_shards(cls, shards: Iterable[Mapping[str, Any]]) -> ShardMap:
        """From ListShards' `Shards`: the open ones (no ending sequence number), by hash key range."""
        return cls(
            Shard(
                s["ShardId"],
                int(s["HashKeyRange"]["StartingHashKey"]),
                int(s["HashKeyRange"]["EndingHashKey"]),
            )
            for s in shards
            if "EndingSequenceNumber" not in s.get("SequenceNumberRange", {})
        )

    @classmethod
    def uniform(cls, count: int) -> ShardMap:
        """`count` shards splitting the hash key space evenly (what CreateStream makes)."""
        top = 2**128
        return cls(
            Shard(f"shardId-{i:012d}", top * i // count, top * (i + 1) // count - 1) for i in range(count)
        )

    def __len__(self) -> int:
        return len(self.shards)

    def shard_of(self, partition_key: str) -> int:
        """Index (into `shards`) of the shard that takes records with this partition key."""
        point = int.from_bytes(hashlib.md5(partition_key.encode("utf-8")).digest(), "big")
        return bisect.bisect_right(self._starts, point) - 1

    def shard_of_hash_key(self, hash_key: str) -> int:
        """Index of the shard that takes records sent with this ExplicitHashKey (a decimal 128-bit number)."""
        return bisect.bisect_right(self._starts, int(hash_key)) - 1

    def hash_key(self, index: int) -> str:
        """An ExplicitHashKey that lands on shard `index`: the start of its hash key range."""
        return str(self.shards[index].start)


class TokenBucket:
    """`rate` tokens a second, at most `capacity` banked. A take may overdraw; then the next waits longer."""

    __slots__ = ("capacity", "rate", "stamp", "tokens")

    def __init__(self, rate: float, capacity: float, now: float) -> None:
        self.rate = rate
        self.capacity = capacity
        self.tokens = capacity
        self.stamp = now

    def refill(self, now: float, factor: float = 1.0) -> None:
        elapsed = now - self.stamp
        if elapsed > 0:
            self.tokens = min(self.capacity, self.tokens + elapsed * self.rate * factor)
            self.stamp = now

    def wait_time(self, factor: float = 1.0) -> float:
        """Seconds until the bucket holds a positive amount again (0 when it does now)."""
        if self.tokens > 0:
            return 0.0
        return (1e-9 - self.tokens) / (self.rate * factor)


class ShardLimiter:
    """Paces one shard: records/s and bytes/s, scaled by `factor` (0 < factor <= 1) that throttling lowers.

    Refusals are judged over windows of at least WINDOW records sent: a stream refuses a few records now and
    then without being over its limit, and a single small call says little. Over THROTTLED_SHARE refused:
    the pace drops (multiplicative decrease) and the shard pauses until its bucket refills; under
    CLEAN_SHARE: the pace climbs back (additive increase); in between it holds.
    """

    __slots__ = ("bytes", "factor", "records", "slowdowns", "window_refused", "window_sent")

    WINDOW = 100
    THROTTLED_SHARE = 0.1
    CLEAN_SHARE = 0.02
    DECREASE = 0.7
    INCREASE = 0.05
    MIN_FACTOR = 0.05

    def __init__(
        self,
        now: float,
        records_per_s: float = SHARD_RECORDS_PER_S,
        bytes_per_s: float = SHARD_BYTES_PER_S,
        burst_s: float = BURST_S,
    ) -> None:
        self.records = TokenBucket(records_per_s, max(1.0, records_per_s * burst_s), now)
        self.bytes = TokenBucket(bytes_per_s, max(float(1024 * 1024), bytes_per_s * burst_s), now)
        self.factor = 1.0
        self.slowdowns = 0
        self.window_sent = 0
        self.window_refused = 0

    def refill(self, now: float) -> None:
        self.records.refill(now, self.factor)
        self.bytes.refill(now, self.factor)

    def open(self) -> bool:
        return self.records.tokens > 0 and self.bytes.tokens > 0

    def take(self, size: int) -> None:
        self.records.tokens -= 1
        self.bytes.tokens -= size

    def refund(self, count: int, size: int) -> None:
        """Records the shard did not take (they failed) did not use its throughput."""
        self.records.tokens = min(self.records.capacity, self.records.tokens + count)
        self.bytes.tokens = min(self.bytes.capacity, self.bytes.tokens + size)

    def wait_time(self) -> float:
        return max(self.records.wait_time(self.factor), self.bytes.wait_time(self.factor))

    def feedback(self, sent: int, throttled: int) -> None:
        """After a call: `sent` records went to this shard, `throttled` of them were refused as over its limit."""
        self.window_sent += sent
        self.window_refused += throttled
        if self.window_sent < self.WINDOW:
            return
        share = self.window_refused / self.window_sent
        self.window_sent = self.window_refused = 0
        if share > self.THROTTLED_SHARE:
            self.slowdowns += 1
            self.factor = max(self.MIN_FACTOR, self.factor * self.DECREASE)
            # Stop sending to this shard until its (now slower) bucket refills.
            self.records.tokens = min(self.records.tokens, 0.0)
        elif share < self.CLEAN_SHARE and self.factor < 1.0:
            self.factor = min(1.0, self.factor + self.INCREASE)


class RateLimiter:
    """All the pacing of one replay: a limiter per shard and, when asked for, an overall one."""

    def __init__(
        self,
        shard_map: ShardMap,
        now: float,
        rate: float | None = None,
        max_bytes_per_s: float | None = None,
        shard_records_per_s: float = SHARD_RECORDS_PER_S,
        shard_bytes_per_s: float = SHARD_BYTES_PER_S,
    ) -> None:
        self.shard_map = shard_map
        self.shards = [ShardLimiter(now, shard_records_per_s, shard_bytes_per_s) for _ in shard_map.shards]
        self.records = TokenBucket(rate, max(1.0, rate * BURST_S), now) if rate else None
        self.bytes = (
            TokenBucket(max_bytes_per_s, max(1024.0 * 1024, max_bytes_per_s * BURST_S), now)
            if max_bytes_per_s
            else None
        )
        self.stream_records_per_s = shard_records_per_s * len(shard_map)
        self.stream_bytes_per_s = shard_bytes_per_s * len(shard_map)

    @property
    def records_per_s(self) -> float:
        """The effective ceiling in records/s: the stream's, or the asked-for rate if lower."""
        return (
            min(self.stream_records_per_s, self.records.rate) if self.records else self.stream_records_per_s
        )

    @property
    def bytes_per_s(self) -> float:
        return min(self.stream_bytes_per_s, self.bytes.rate) if self.bytes else self.stream_bytes_per_s

    def refill(self, now: float) -> None:
        for shard in self.shards:
            shard.refill(now)
        if self.records is not None:
            self.records.refill(now)
        if self.bytes is not None:
            self.bytes.refill(now)

    def overall_open(self) -> bool:
        return (self.records is None or self.records.tokens > 0) and (
            self.bytes is None or self.bytes.tokens > 0
        )

    def take_overall(self, count: int, size: int) -> None:
        if self.records is not None:
            self.records.tokens -= count
        if self.bytes is not None:
            self.bytes.tokens -= size

    def refund_overall(self, count: int, size: int) -> None:
        if self.records is not None:
            self.records.tokens = min(self.records.capacity, self.records.tokens + count)
        if self.bytes is not None:
            self.bytes.tokens = min(self.bytes.capacity, self.bytes.tokens + size)

    def overall_wait(self) -> float:
        waits = [0.0]
        if self.records is not None:
            waits.append(self.records.wait_time())
        if self.bytes is not None:
            waits.append(self.bytes.wait_time())
        return max(waits)

    def estimate_seconds(self, per_shard_records: list[int], per_shard_bytes: list[int]) -> float:
        """How long putting this many records and bytes per shard takes at full pace."""
        rec_rate = self.shards[0].records.rate if self.shards else SHARD_RECORDS_PER_S
        byte_rate = self.shards[0].bytes.rate if self.shards else SHARD_BYTES_PER_S
        by_shard = max(
            (
                max(r / rec_rate, b / byte_rate)
                for r, b in zip(per_shard_records, per_shard_bytes, strict=True)
            ),
            default=0.0,
        )
        total_r, total_b = sum(per_shard_records), sum(per_shard_bytes)
        overall = max(
            total_r / self.records.rate if self.records else 0.0,
            total_b / self.bytes.rate if self.bytes else 0.0,
        )
        return max(by_shard, overall)
