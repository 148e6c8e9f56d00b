"""A part being replayed: what it has read, what the stream has taken, and how far that is safe to resume from.

Records are put in parallel and finish out of order, so a part keeps a watermark: the last position in its
reading order up to which every record has been put. Page ends go into the same order as markers (a Scan
page's LastEvaluatedKey, the end of an aggregate in a query part, the end of the part), so the watermark also
passes items the filters dropped. The checkpoint stores the watermark; a resumed replay reads on from just
after it, so it repeats only what was put beyond the watermark (the in-flight window), and loses nothing.

Beyond the watermark, records of many aggregates have been put already (the sender works on many aggregates
at once, and an aggregate's events are contiguous in a part, so the watermark waits for one aggregate while
the next ones progress). Because each aggregate's events are put strictly in version order, "what of
aggregate A beyond the watermark is on the stream" is one number: the highest version put. The checkpoint
stores these (`ahead`); a resumed part skips what they cover. So a resume repeats only what was put after the
last checkpoint save plus the calls in flight at a crash, and nothing after a graceful stop.

The distance between what was read and the watermark is the part's read-ahead, which is bounded: the part's
reader waits when it is `limit` records ahead (this bounds memory and the size of `ahead`).

When the sender spreads aggregates over shards (ExplicitHashKey, see `sender`), an aggregate must keep its
shard across a resume too. The aggregates a resume can meet again with some of their events already put
are those of `ahead` and the one the watermark is in (an aggregate's events are contiguous in a part), so
the checkpoint keeps their lanes (`lanes`: aggregate id -> ExplicitHashKey) and the resumed run reuses them.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from replayer.plan import PartSpec
from replayer.records import Record


class Marker:
    """A point in a part's reading order that is not a record: the position moves to `key`, or the part is
    finished (`final`)."""

    __slots__ = ("aggregate_id", "final", "seq", "version")

    def __init__(self, key: tuple[str, int] | None, final: bool) -> None:
        self.aggregate_id = key[0] if key else ""
        self.version = key[1] if key else 0
        self.final = final
        self.seq = 0


@dataclass(frozen=True, slots=True)
class PartState:
    """What a checkpoint holds for a part."""

    name: str
    position: tuple[str, int] | None = None
    done: bool = False
    put: int = 0
    bytes: int = 0
    # aggregate id -> highest version put beyond `position` (every lower one of the part is put too)
    ahead: dict[str, int] = field(default_factory=dict)
    # when spreading: aggregate id -> ExplicitHashKey, for the aggregates of `ahead` and that of `position`
    lanes: dict[str, str] = field(default_factory=dict)


class Part:
    """A part in a running replay (see the module docstring)."""

    def __init__(self, spec: PartSpec, state: PartState | None = None, limit: int = 5000) -> None:
        self.spec = spec
        self.name = spec.name
        state = state or PartState(spec.name)
        self.position = state.position
        self.done = state.done
        self.put = state.put
        self.bytes = state.bytes
        self.limit = limit
        # Put by an earlier run beyond the watermark: skipped when read again.
        self.skip = dict(state.ahead)
        # When spreading: the lanes an earlier run gave aggregates it had part put (kept), and the lane of
        # the last aggregate the sender placed from this part (its next events may come after a page end).
        self.lanes = dict(state.lanes)
        self.tail_lane: tuple[str, str] | None = None
        self._position_lane = state.lanes.get(state.position[0]) if state.position else None
        self.skipped = 0
        self.read = 0
        self.dirty = False
        self._next_seq = 0  # the seq the next record or marker read gets
        self._confirm_seq = 0  # the seq the watermark waits for
        self._early: dict[int, Record | Marker] = {}
        self._room: asyncio.Event | None = None

    # -- reading side ----------------------------------------------------------------------------------

    def add(self, records: list[Record]) -> None:
        """Records just read, in reading order."""
        seq = self._next_seq
        for record in records:
            record.part = self
            record.seq = seq
            seq += 1
        self._next_seq = seq
        self.read += len(records)

    def fresh(self, records: list[Record]) -> list[Record]:
        """Of records just added, those not put by an earlier run (the others are confirmed right away)."""
        skip = self.skip
        if not skip:
            return records
        out: list[Record] = []
        for record in records:
            if record.version <= skip.get(record.aggregate_id, 0):
                self.skipped += 1
                self.confirm(record)
            else:
                out.append(record)
        return out

    def add_marker(self, key: tuple[str, int] | None, final: bool = False) -> None:
        """A page end (position `key`) or the end of the part, after the records read so far."""
        marker = Marker(key, final)
        marker.seq = self._next_seq
        self._next_seq += 1
        self.confirm(marker)

    @property
    def ahead(self) -> int:
        """Records and markers read but not yet under the watermark."""
        return self._next_seq - self._confirm_seq

    async def room(self) -> None:
        """Wait until the part is less than `limit` ahead of its watermark."""
        while self.ahead > self.limit:
            self._room = asyncio.Event()
            await self._room.wait()

    # -- putting side ----------------------------------------------------------------------------------

    def confirm(self, entry: Record | Marker) -> None:
        """`entry` is on the stream (a record) or needs nothing put (a marker): move the watermark on."""
        seq = entry.seq
        if seq != self._confirm_seq:
            self._early[seq] = entry
            return
        # Walk the watermark over this entry and every following one confirmed earlier (a hot path: inlined).
        early = self._early
        position = self.position
        lane = self._position_lane
        put = size = 0
        next_entry: Record | Marker | None = entry
        while next_entry is not None:
            seq += 1
            if type(next_entry) is Record:
                position = (next_entry.aggregate_id, next_entry.version)
                lane = next_entry.hash_key
                put += 1
                size += next_entry.size
            elif next_entry.final:  # type: ignore[union-attr]
                self.done = True
            else:
                if position is None or position[0] != next_entry.aggregate_id:
                    lane = None
                position = (next_entry.aggregate_id, next_entry.version)
            next_entry = early.pop(seq, None) if early else None
        self._confirm_seq = seq
        self.position = position
        self._position_lane = lane
        self.put += put
        self.bytes += size
        self.dirty = True
        room = self._room
        if room is not None and self.ahead <= self.limit // 2:
            self._room = None
            room.set()

    def ahead_of_watermark(self) -> dict[str, int]:
        """Aggregate id -> highest version put beyond the watermark (see the module docstring)."""
        ahead: dict[str, int] = {}
        for entry in self._early.values():
            if isinstance(entry, Record) and entry.version > ahead.get(entry.aggregate_id, 0):
                ahead[entry.aggregate_id] = entry.version
        return ahead

    def lanes_to_keep(self) -> dict[str, str]:
        """Aggregate id -> ExplicitHashKey for those of `ahead_of_watermark` and the watermark's aggregate
        (empty unless the sender spreads)."""
        lanes: dict[str, str] = {}
        for entry in self._early.values():
            if isinstance(entry, Record) and entry.hash_key is not None:
                lanes[entry.aggregate_id] = entry.hash_key
        if self.position is not None and self._position_lane is not None:
            lanes[self.position[0]] = self._position_lane
        return lanes

    def state(self) -> PartState:
        if self.done:
            return PartState(self.name, self.position, True, self.put, self.bytes)
        return PartState(
            self.name,
            self.position,
            False,
            self.put,
            self.bytes,
            self.ahead_of_watermark(),
            self.lanes_to_keep(),
        )
