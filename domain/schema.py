"""Declaring event types and checking payloads against them (pure; no AWS).

A domain declares each event type once: its stable name (never a class path), its current schema version and
its payload fields. The load handler checks every request against these declarations before anything is
recorded, so the log only holds payloads of known shapes.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from eventlog.envelope import Event
from eventlog.projection import Decision

FieldKind = Literal["text", "amount"]
# How an event of a type is reversed: "inverse", the domain applies its opposite (an event recorded as a diff);
# "replay", the state is recomputed from the aggregate's history without it (an event that carries only a
# final value). A type without one cannot be reversed.
ReversalKind = Literal["inverse", "replay"]

MAX_AMOUNT = 10**13  # cents: 100 billion in the currency's main unit
# Bidirectional overrides and isolates: legal Unicode, but they make a name display as something else.
_BIDI_CONTROLS = frozenset(chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A)))


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a request: where (a dotted path) and what."""

    field: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


@dataclass(frozen=True, slots=True)
class FieldSpec:
    name: str
    kind: FieldKind
    max_length: int = 200


@dataclass(frozen=True, slots=True)
class EventTypeSpec:
    name: str
    schema_version: int  # the current one: what the API records and what the rules read (see upcasting)
    fields: tuple[FieldSpec, ...]
    description: str = ""
    reversal: ReversalKind | None = None


class HistoryRequired(ValueError):
    """`apply` was given an event that can only be decided with the aggregate's history (use `fold`)."""


class NotReversible(ValueError):
    """The event named for reversal is of a type that cannot be reversed (a check about the log: its type)."""


class Domain(Protocol):
    """What the handlers need from a domain."""

    name: str
    event_types: Mapping[str, EventTypeSpec]

    def check(self, type_: str, payload: Any) -> tuple[dict[str, Any], list[Problem]]:
        """The payload normalised (text in NFC), and every problem with it (empty when it is valid)."""
        ...

    def upcast(self, event: Event) -> Event:
        """The event in its type's current schema (see domain.upcasting)."""
        ...

    def apply(self, state: dict[str, Any] | None, event: Event) -> Decision:
        """The state after `event`, or a refusal with a reason. Pure: reads time only from the event.
        Raises HistoryRequired for an event that `needs_history` (a reversal)."""
        ...

    def needs_history(self, event: Event) -> bool:
        """Whether deciding `event` needs the aggregate's earlier events (then use `fold`)."""
        ...

    def fold(self, events: Sequence[Event]) -> list[Decision]:
        """Decide an aggregate's events from version 1 in order: one decision per event, each holding the
        state after it. The reference: a projection equals the last decision's state."""
        ...

    def schema_version(self, type_: str) -> int:
        """The current schema version of a type (what a new event of it is recorded with)."""
        ...

    def reversal_for(self, target: Event, reason: str | None) -> tuple[str, dict[str, Any]]:
        """The type and payload of the event that reverses `target`; raises NotReversible when its type
        cannot be reversed."""
        ...


def check_payload(spec: EventTypeSpec, payload: Any) -> tuple[dict[str, Any], list[Problem]]:
    """Check a payload against its type's declared fields: all present, no others, each of its kind."""
    if not isinstance(payload, dict):
        return {}, [Problem("payload", f"must be a JSON object, got {_json_type(payload)}")]
    problems: list[Problem] = []
    normalised: dict[str, Any] = {}
    declared = {f.name for f in spec.fields}
    for name in payload:
        if name not in declared:
            allowed = ", ".join(sorted(declared)) or "none"
            problems.append(Problem(f"payload.{name}", f"unknown field for {spec.name} (allowed: {allowed})"))
    for field in spec.fields:
        path = f"payload.{field.name}"
        if field.name not in payload:
            problems.append(Problem(path, f"is required for {spec.name}"))
            continue
        value = payload[field.name]
        if field.kind == "amount":
            if isinstance(value, float) and value.is_integer() and abs(value) > MAX_AMOUNT:
                # JSON integers beyond 64 bits arrive as floats; the client wrote a whole number, too large.
                problems.append(Problem(path, f"must be between 1 and {MAX_AMOUNT} cents, got {value:.0f}"))
            elif type(value) is not int:
                problems.append(Problem(path, f"must be a whole number of cents, got {_json_type(value)}"))
            elif not 0 < value <= MAX_AMOUNT:
                problems.append(Problem(path, f"must be between 1 and {MAX_AMOUNT} cents, got {value}"))
            else:
                normalised[field.name] = value
        elif field.kind == "text":
            text, problem = check_text(value, field.max_length)
            if problem:
                problems.append(Problem(path, problem))
            else:
                normalised[field.name] = text
    return normalised, problems


def check_text(value: Any, max_length: int) -> tuple[str, str | None]:
    """Text must be a non-blank string of at most `max_length` characters (after NFC normalisation), with no
    control characters and no bidirectional overrides. Returns the normalised text and a problem or None."""
    if not isinstance(value, str):
        return "", f"must be a string, got {_json_type(value)}"
    text = unicodedata.normalize("NFC", value)
    if not text.strip():
        return "", "must not be blank"
    if len(text) > max_length:
        return "", f"must be at most {max_length} characters, got {len(text)}"
    for ch in text:
        if unicodedata.category(ch) == "Cc":
            return "", f"must not contain control characters (found U+{ord(ch):04X})"
        if ch in _BIDI_CONTROLS:
            return "", f"must not contain bidirectional override characters (found U+{ord(ch):04X})"
    return text, None


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number with a fraction" if not value.is_integer() else "a decimal number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
