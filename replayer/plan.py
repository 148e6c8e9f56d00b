"""Planning: which parts a replay reads, which of them this worker owns, and the DynamoDB requests for them.

A part is read by one coroutine, in an order that never changes, so that "how far it got" is one key:

- with aggregate ids (`--aggregate`, `--aggregates-file`) the plan never scans: the sorted ids are dealt
  round-robin into parts, and a part queries its aggregates one after another, each in version order;
- otherwise a parallel Scan: part i is segment i of N. DynamoDB puts all items of one partition key
  (aggregate) in the same segment and returns them in sort-key (version) order, so each aggregate's events
  come from exactly one part, in order.

`--worker i/n` takes the parts whose index is i modulo n, so n processes share a replay with no part (and so
no aggregate) read twice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from replayer.config import MAX_SEGMENTS, Filters, Worker
from replayer.records import key_item

PartKind = Literal["scan", "query"]

# Above this many aggregates a query plan still uses this many parts (each part works through its share).
MAX_QUERY_PARTS = 32
# A position's version that means "this aggregate is finished" in a query part.
AGGREGATE_DONE = 2**62
_GIB = 1024**3
_SMALL_TABLE = 4 * 1024**2


@dataclass(frozen=True, slots=True)
class PartSpec:
    """One part of a plan: a scan segment, or a group of aggregates to query."""

    kind: PartKind
    index: int
    total: int
    aggregates: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """The part's checkpoint key (sorts in index order)."""
        return f"{self.kind}#{self.index:07d}"


def default_segments(table_bytes: int, workers: int = 1) -> int:
    """Segments for a scan: one for a table of a few pages, else one per GiB (AWS's advice is one per 2 GB;
    more keeps each segment's part of a kill's repeat small), at least 4, and a multiple of the workers."""
    if table_bytes <= _SMALL_TABLE:
        wanted = 1
    else:
        wanted = max(4, math.ceil(table_bytes / _GIB))
    wanted = max(wanted, workers)
    wanted = math.ceil(wanted / workers) * workers
    return min(wanted, MAX_SEGMENTS - MAX_SEGMENTS % workers)


def default_query_parts(aggregates: int, workers: int = 1) -> int:
    return max(workers, min(aggregates, MAX_QUERY_PARTS), 1)


def plan_parts(filters: Filters, segments: int) -> list[PartSpec]:
    """Every part of a replay (all workers'), in index order."""
    if filters.uses_query:
        groups: list[list[str]] = [[] for _ in range(segments)]
        for i, aggregate in enumerate(filters.aggregates):  # sorted, so each group is sorted too
            groups[i % segments].append(aggregate)
        return [PartSpec("query", i, segments, tuple(g)) for i, g in enumerate(groups)]
    return [PartSpec("scan", i, segments) for i in range(segments)]


def worker_parts(parts: list[PartSpec], worker: Worker) -> list[PartSpec]:
    """The parts `worker` reads."""
    return [p for p in parts if worker.owns(p.index)]


class Expressions:
    """The DynamoDB expressions for a set of filters (names always through placeholders)."""

    def __init__(self, filters: Filters) -> None:
        self.filters = filters
        names: dict[str, str] = {}
        values: dict[str, Any] = {}
        clauses: list[str] = []
        if filters.types:
            names["#type"] = "type"
            marks = []
            for i, kind in enumerate(filters.types):
                values[f":type{i}"] = {"S": kind}
                marks.append(f":type{i}")
            clauses.append(f"#type IN ({', '.join(marks)})")
        if filters.since is not None:
            names["#recorded"] = "recorded_at"
            values[":since"] = {"S": filters.since}
            clauses.append("#recorded >= :since")
        if filters.until is not None:
            names["#recorded"] = "recorded_at"
            values[":until"] = {"S": filters.until}
            clauses.append("#recorded < :until")
        self._names = names
        self._values = values
        self._clauses = clauses

    def scan_body(self, table: str, segment: int, total: int, start: tuple[str, int] | None) -> bytes:
        """A Scan request for one segment, from just after `start` (an events-table key) if given."""
        names = dict(self._names)
        values = dict(self._values)
        clauses = list(self._clauses)
        lo, hi = self.filters.from_version, self.filters.to_version
        if lo is not None or hi is not None:
            names["#version"] = "version"
            if lo is not None:
                values[":from"] = {"N": str(lo)}
                clauses.append("#version >= :from")
            if hi is not None:
                values[":to"] = {"N": str(hi)}
                clauses.append("#version <= :to")
        request: dict[str, Any] = {"TableName": table}
        if total > 1:
            request["Segment"] = segment
            request["TotalSegments"] = total
        if clauses:
            request["FilterExpression"] = " AND ".join(clauses)
            request["ExpressionAttributeNames"] = names
            request["ExpressionAttributeValues"] = values
        if start is not None:
            request["ExclusiveStartKey"] = key_item(*start)
        return orjson.dumps(request)

    def query_body(
        self, table: str, aggregate_id: str, after_version: int, start: tuple[str, int] | None
    ) -> bytes:
        """A Query for one aggregate's events after `after_version`, within the version filters."""
        names = {**self._names, "#agg": "aggregate_id", "#version": "version"}
        values = {**self._values, ":agg": {"S": aggregate_id}}
        lo = max(after_version + 1, self.filters.from_version or 1)
        values[":from"] = {"N": str(lo)}
        if self.filters.to_version is not None:
            values[":to"] = {"N": str(self.filters.to_version)}
            condition = "#agg = :agg AND #version BETWEEN :from AND :to"
        else:
            condition = "#agg = :agg AND #version >= :from"
        request: dict[str, Any] = {
            "TableName": table,
            "KeyConditionExpression": condition,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }
        if self._clauses:
            request["FilterExpression"] = " AND ".join(self._clauses)
        if start is not None:
            request["ExclusiveStartKey"] = key_item(*start)
        return orjson.dumps(request)

    def query_range_empty(self, after_version: int) -> bool:
        """Whether nothing of an aggregate is left after `after_version` within the version filters."""
        lo = max(after_version + 1, self.filters.from_version or 1)
        return self.filters.to_version is not None and lo > self.filters.to_version
