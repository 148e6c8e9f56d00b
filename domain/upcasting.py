"""Upcasting: reading an event recorded in an older schema in the shape the current code expects (pure).

The log is immutable, so an event keeps the `schema_version` and payload it was recorded with for ever. When an
event type's payload changes shape, its spec's `schema_version` goes up by one and the domain registers an
upcaster from the previous version: a pure function from a payload of version n to one of version n + 1.
Every consumer reads events through `upcast` (the domain's `apply` and `fold` do it themselves), so rules only
ever see the current shape, in a live projection, a replay of any mode, or a fold for a reversal.

An event whose schema_version is newer than this code knows is an error, not a guess: it was written by a newer
release (a deploy in progress), and the consumer fails and is retried until the new code runs, rather than
deciding with rules that do not understand it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from eventlog.envelope import Event

PayloadUpcaster = Callable[[dict[str, Any]], dict[str, Any]]


class UnknownSchemaVersion(ValueError):
    """An event's schema_version that this code cannot read (newer than it knows, or no upcaster chain)."""


class Upcasters:
    """The upcasters of one domain, keyed by (event type, the version they read)."""

    def __init__(self, current_versions: Mapping[str, int]) -> None:
        self._current = dict(current_versions)
        self._steps: dict[tuple[str, int], PayloadUpcaster] = {}

    def register(self, type_: str, from_version: int) -> Callable[[PayloadUpcaster], PayloadUpcaster]:
        """Decorator: `fn` turns a `type_` payload of `from_version` into one of `from_version + 1`."""

        def add(fn: PayloadUpcaster) -> PayloadUpcaster:
            current = self._current.get(type_)
            if current is None or not 1 <= from_version < current:
                raise ValueError(f"{type_}: no upcaster from version {from_version} (current is {current})")
            if (type_, from_version) in self._steps:
                raise ValueError(f"{type_}: an upcaster from version {from_version} is already registered")
            self._steps[(type_, from_version)] = fn
            return fn

        return add

    def missing(self) -> list[str]:
        """Steps a complete chain from version 1 to the current one lacks (empty when every type is readable)."""
        return [
            f"{type_} v{version} -> v{version + 1}"
            for type_, current in sorted(self._current.items())
            for version in range(1, current)
            if (type_, version) not in self._steps
        ]

    def upcast(self, event: Event) -> Event:
        """The event in its type's current shape (the same object when it already is). Types the domain does
        not know are passed through unchanged: the rules refuse them with a reason."""
        current = self._current.get(event.type)
        if current is None or event.schema_version == current:
            return event
        if not 1 <= event.schema_version < current:
            raise UnknownSchemaVersion(
                f"{event.type} v{event.version} of {event.aggregate_id} has schema_version "
                f"{event.schema_version}; this code reads 1 to {current}"
            )
        payload = dict(event.payload)
        for version in range(event.schema_version, current):
            step = self._steps.get((event.type, version))
            if step is None:
                raise UnknownSchemaVersion(f"{event.type}: no upcaster from schema_version {version}")
            payload = step(payload)
        return dataclasses.replace(event, schema_version=current, payload=payload)
