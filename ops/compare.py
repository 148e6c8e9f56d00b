"""Comparing two state tables item by item: what a rebuild's shadow says against what the live table holds.

Pure functions over state items in DynamoDB's wire form (`{"aggregate_id": {"S": ...}, "version": {"N": ...},
"state": {"S": "<json>"}, ...}`, as eventlog/state.py writes them). Per aggregate id, one of:

- same:    both tables hold it, and it is equal in every compared attribute;
- differ:  both hold it at the same version (or the live one is OLDER than the shadow) and it is not equal;
           each differing field is listed (`state.balance`, `version`, `last_event_id`, ...);
- behind:  both hold it, but the live table is at a LATER version than the shadow: the live state moved on
           after the replay read the aggregate, so the two are not comparable (a catch-up replay fixes that);
- missing: the live table holds it and the shadow does not (nothing in the log explains that live item);
- extra:   the shadow holds it and the live table does not (the live table lost, or never got, its state).

Bookkeeping attributes that differ by nature are not compared: `updated_at` (when the item was written) and
anything in `IGNORED_ATTRIBUTES`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

Item = Mapping[str, Any]

# Written differently by every writer and meaningless for equality: when the item was written, and which fix
# replay last recomputed it (the write function's marker, so a fix replay recomputes an aggregate once).
IGNORED_ATTRIBUTES = frozenset({"updated_at", "replays"})


@dataclass(frozen=True, slots=True)
class FieldDifference:
    """One field that differs: its name (`state.balance`, `version`, ...) and both values (None: absent)."""

    name: str
    live: Any
    shadow: Any

    def to_dict(self) -> dict[str, Any]:
        return {"field": self.name, "live": self.live, "shadow": self.shadow}


@dataclass(frozen=True, slots=True)
class Difference:
    """An aggregate whose live state is not what the rebuild computed."""

    aggregate_id: str
    live_version: int
    shadow_version: int
    fields: tuple[FieldDifference, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "aggregate_id": self.aggregate_id,
            "live_version": self.live_version,
            "shadow_version": self.shadow_version,
            "fields": [f.to_dict() for f in self.fields],
        }


@dataclass(frozen=True, slots=True)
class Behind:
    """An aggregate the live table holds at a later version than the shadow (not comparable yet)."""

    aggregate_id: str
    live_version: int
    shadow_version: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "aggregate_id": self.aggregate_id,
            "live_version": self.live_version,
            "shadow_version": self.shadow_version,
        }


@dataclass
class StateDiff:
    """The comparison of a live state table with a shadow (see the module docstring). Lists are sorted."""

    same: int = 0
    differ: list[Difference] = field(default_factory=list)
    behind: list[Behind] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)

    @property
    def compared(self) -> int:
        return self.same + len(self.differ) + len(self.behind) + len(self.missing) + len(self.extra)

    @property
    def equal(self) -> bool:
        """The shadow equals the live table (nothing differs, is missing, extra or behind)."""
        return not (self.differ or self.behind or self.missing or self.extra)

    def counts(self) -> dict[str, int]:
        return {
            "compared": self.compared,
            "same": self.same,
            "differ": len(self.differ),
            "missing": len(self.missing),
            "extra": len(self.extra),
            "behind": len(self.behind),
        }

    def to_dict(self, limit: int | None = None) -> dict[str, Any]:
        """The counts and (up to `limit` of) each list."""
        cut = slice(None) if limit is None else slice(0, limit)
        return {
            **self.counts(),
            "differences": [d.to_dict() for d in self.differ[cut]],
            "missing_ids": self.missing[cut],
            "extra_ids": self.extra[cut],
            "behind_ids": [b.to_dict() for b in self.behind[cut]],
        }

    def restricted(self, ids: set[str]) -> StateDiff:
        """The entries of just these aggregates (`same` is not kept per id, so it is 0)."""
        return StateDiff(
            same=0,
            differ=[d for d in self.differ if d.aggregate_id in ids],
            behind=[b for b in self.behind if b.aggregate_id in ids],
            missing=[m for m in self.missing if m in ids],
            extra=[e for e in self.extra if e in ids],
        )

    def replace(self, other: StateDiff, ids: Iterable[str]) -> StateDiff:
        """This diff with the entries of `ids` taken from `other` (a fresh comparison of just those ids)."""
        drop = set(ids)
        return StateDiff(
            same=self.same + other.same,
            differ=sorted(
                [d for d in self.differ if d.aggregate_id not in drop] + other.differ,
                key=lambda d: d.aggregate_id,
            ),
            behind=sorted(
                [b for b in self.behind if b.aggregate_id not in drop] + other.behind,
                key=lambda b: b.aggregate_id,
            ),
            missing=sorted([m for m in self.missing if m not in drop] + other.missing),
            extra=sorted([e for e in self.extra if e not in drop] + other.extra),
        )


def version_of(item: Item) -> int:
    return int(item["version"]["N"])


def compare_items(
    live: Mapping[str, Item], shadow: Mapping[str, Item], ids: Iterable[str] | None = None
) -> StateDiff:
    """Compare two tables' items (aggregate id -> item); only `ids` when given, else every id in either."""
    keys = sorted(set(live) | set(shadow)) if ids is None else sorted(set(ids))
    diff = StateDiff()
    for aggregate_id in keys:
        mine, theirs = live.get(aggregate_id), shadow.get(aggregate_id)
        if mine is None and theirs is None:
            continue  # asked about an aggregate neither table holds: nothing to say
        if theirs is None:
            diff.missing.append(aggregate_id)
            continue
        if mine is None:
            diff.extra.append(aggregate_id)
            continue
        live_version, shadow_version = version_of(mine), version_of(theirs)
        if live_version > shadow_version:
            diff.behind.append(Behind(aggregate_id, live_version, shadow_version))
            continue
        fields = item_differences(mine, theirs)
        if fields:
            diff.differ.append(Difference(aggregate_id, live_version, shadow_version, tuple(fields)))
        else:
            diff.same += 1
    return diff


def item_differences(live: Item, shadow: Item) -> list[FieldDifference]:
    """The fields in which two state items differ: `version`, each top-level key of `state` that differs
    (`state.balance`), or `state` as a whole when either side is not an object, then any other attribute."""
    out: list[FieldDifference] = []
    names = sorted((set(live) | set(shadow)) - IGNORED_ATTRIBUTES - {"aggregate_id"})
    for name in names:
        mine, theirs = _value(live.get(name)), _value(shadow.get(name))
        if name == "state":
            out.extend(_state_differences(mine, theirs))
        elif mine != theirs:
            out.append(FieldDifference(name, mine, theirs))
    return out


def _state_differences(live: Any, shadow: Any) -> list[FieldDifference]:
    if not isinstance(live, dict) or not isinstance(shadow, dict):
        return [] if live == shadow else [FieldDifference("state", live, shadow)]
    return [
        FieldDifference(f"state.{key}", live.get(key), shadow.get(key))
        for key in sorted(set(live) | set(shadow))
        if live.get(key) != shadow.get(key) or (key in live) != (key in shadow)
    ]


def _value(attribute: Mapping[str, Any] | None) -> Any:
    """A wire-form attribute as a plain value: numbers as int (or float), JSON strings (state) decoded."""
    if attribute is None:
        return None
    kind, raw = next(iter(attribute.items()))
    if kind == "N":
        number = float(raw)
        return int(number) if number.is_integer() else number
    if kind == "S":
        if raw[:1] in ("{", "[") or raw == "null":
            try:
                return orjson.loads(raw)
            except orjson.JSONDecodeError:
                return raw
        return raw
    if kind == "NULL":
        return None
    return raw
