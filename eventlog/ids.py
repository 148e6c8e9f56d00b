"""The grammar of every identifier the stack takes from outside, checked one way everywhere.

Each pattern must match the WHOLE string (`re.fullmatch`) and only ASCII: with `re.match(r"^...$")`, `$` also
matches before a final line break, so `"acc-1\\n"` passed as an aggregate id (and an event id with a trailing
line break became a Location header that no gateway can send). `\\d` and `\\w` are never used: in Python they
match any Unicode digit or letter.

The `*_PATTERN` strings are what api/openapi.yaml states (between `^` and `$`, which in a JSON Schema pattern
mean the ends of the string); a test holds the two equal.
"""

from __future__ import annotations

import re
from typing import Any

# What fits a DynamoDB key, a Kinesis partition key (256 characters) and a URL path segment without surprises:
# letters, digits and ._:@- , starting with a letter or digit, at most 128 characters.
AGGREGATE_ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}"
# An event id: a UUID in its canonical 8-4-4-4-12 hex form (either case; stored lower-case).
UUID_PATTERN = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
# An Idempotency-Key header: 1-255 visible ASCII characters (no spaces).
IDEMPOTENCY_KEY_PATTERN = r"[\x21-\x7E]{1,255}"
# A version in a path: a whole number from 1, without a sign or leading zeros (at most 2^53 - 1 fits 16 digits).
VERSION_PATTERN = r"[1-9][0-9]{0,15}"
# Replay ids appear in checkpoint keys and in ECS's startedBy (letters, digits, hyphens, underscores).
REPLAY_ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_-]{0,99}"
# DynamoDB table names: 3 to 255 letters, digits, '_', '-' and '.'.
TABLE_NAME_PATTERN = r"[A-Za-z0-9_.-]{3,255}"

_AGGREGATE_ID = re.compile(AGGREGATE_ID_PATTERN, re.ASCII)
_UUID = re.compile(UUID_PATTERN, re.ASCII)
_IDEMPOTENCY_KEY = re.compile(IDEMPOTENCY_KEY_PATTERN, re.ASCII)
_VERSION = re.compile(VERSION_PATTERN, re.ASCII)
_REPLAY_ID = re.compile(REPLAY_ID_PATTERN, re.ASCII)
_TABLE_NAME = re.compile(TABLE_NAME_PATTERN, re.ASCII)


def whole_match(pattern: re.Pattern[str], value: Any) -> bool:
    """Whether `value` is a string that `pattern` matches from its first character to its last (no trailing
    line break, nothing after). The one way this code base checks a value against a grammar."""
    return isinstance(value, str) and pattern.fullmatch(value) is not None


def is_aggregate_id(value: Any) -> bool:
    """An aggregate id: 1-128 of letters, digits and . _ : @ - , starting with a letter or digit."""
    return whole_match(_AGGREGATE_ID, value)


def is_uuid(value: Any) -> bool:
    """A UUID in the canonical hyphenated hex form (an event id)."""
    return whole_match(_UUID, value)


def is_idempotency_key(value: Any) -> bool:
    """An Idempotency-Key header value: 1-255 visible ASCII characters."""
    return whole_match(_IDEMPOTENCY_KEY, value)


def is_version_text(value: Any) -> bool:
    """A version as written in a path: 1, 2, ... without sign, spaces or leading zeros."""
    return whole_match(_VERSION, value)


def is_replay_id(value: Any) -> bool:
    """A replay id: 1-100 letters, digits, '-' or '_', starting with a letter or digit."""
    return whole_match(_REPLAY_ID, value)


def is_table_name(value: Any) -> bool:
    """A DynamoDB table name: 3-255 letters, digits, '_', '-' and '.'."""
    return whole_match(_TABLE_NAME, value)
