"""The one id grammar and the one time parser: whole strings only, ASCII only, and only ValueError.

Each case is one a fuzzer found or one of its kind: a trailing line break after a valid id, the calendar's
edges with an offset that pushes them out of datetime's range, leap seconds, odd offsets, long fractions,
non-ASCII digits, ISO 8601 forms that are not RFC 3339.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from hypothesis import example, given
from hypothesis import strategies as st

from domain.schema import check_text
from eventlog import ids
from eventlog.envelope import (
    EARLIEST_TIME,
    LATEST_TIME,
    TIMESTAMP_PATTERN,
    canonical_timestamp,
    event_id_for_key,
    format_timestamp,
    parse_timestamp,
)
from ops.errors import OpsUsageError
from ops.testenv import Selection
from replayer.config import Filters
from replayer.errors import UsageError

UUID = "01890a5d-ac96-774b-bcce-b302099a8057"


@pytest.mark.parametrize(
    ("check", "good"),
    [
        (ids.is_aggregate_id, "acc-1"),
        (ids.is_uuid, UUID),
        (ids.is_idempotency_key, "key-1"),
        (ids.is_version_text, "12"),
        (ids.is_replay_id, "replay-1"),
        (ids.is_table_name, "es-local-state"),
    ],
)
@pytest.mark.parametrize("tail", ["\n", "\r\n", "\r", " ", "\x00", "\u2028", "\t", "\u0085"])
def test_a_valid_id_with_anything_after_it_is_refused(check: object, good: str, tail: str) -> None:
    assert callable(check)
    assert check(good)
    assert not check(good + tail)
    assert not check(tail + good)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "-acc",
        "a" * 129,
        "acc/1",
        "acc 1",
        "\uff41cc",  # a fullwidth letter
        "acc\u0661",  # an Arabic-Indic digit: \\d and str.isdigit would take it
        "acc\u00e9",
        None,
        42,
    ],
)
def test_aggregate_ids_are_ascii_and_whole(bad: object) -> None:
    assert not ids.is_aggregate_id(bad)


def test_aggregate_ids_at_the_length_limit() -> None:
    assert ids.is_aggregate_id("a" * 128)
    assert ids.is_aggregate_id("A.b_c:d@e-9")


@pytest.mark.parametrize("bad", ["0" * 16, "01", "+1", " 1", "1 ", "\u0661", "1e3", "0"])
def test_path_versions_are_plain_numbers(bad: str) -> None:
    assert not ids.is_version_text(bad)


def test_the_api_document_states_the_same_grammars() -> None:
    document = yaml.safe_load((Path(__file__).parents[2] / "api" / "openapi.yaml").read_text())
    parameter = document["components"]["parameters"]["AggregateId"]["schema"]["pattern"]
    assert parameter == f"^{ids.AGGREGATE_ID_PATTERN}$"
    key = document["components"]["parameters"]["IdempotencyKey"]["schema"]["pattern"]
    assert key == f"^{ids.IDEMPOTENCY_KEY_PATTERN}$"
    occurred = document["components"]["schemas"]["Timestamp"]["pattern"]
    assert occurred == f"^{TIMESTAMP_PATTERN}$"


# -- times -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("2026-01-02T03:04:05Z", "2026-01-02T03:04:05.000000Z"),
        ("2026-01-02t03:04:05z", "2026-01-02T03:04:05.000000Z"),
        ("2026-01-02T03:04:05+02:00", "2026-01-02T01:04:05.000000Z"),
        ("2026-01-02T03:04:05-00:00", "2026-01-02T03:04:05.000000Z"),
        ("2026-01-01T00:00:00+23:59", "2025-12-31T00:01:00.000000Z"),
        ("2026-01-01T00:00:00-23:59", "2026-01-01T23:59:00.000000Z"),
        ("2026-01-02T03:04:05.5Z", "2026-01-02T03:04:05.500000Z"),
        # cut to microseconds, never rounded: rounding .9999999 would carry into the next second (or year)
        ("2026-01-02T03:04:05.123456789Z", "2026-01-02T03:04:05.123456Z"),
        ("9999-12-31T23:59:59.999999999Z", "9999-12-31T23:59:59.999999Z"),
        ("9999-12-31T23:59:59+01:00", "9999-12-31T22:59:59.000000Z"),
        ("9999-12-31T23:59:59+23:59", "9999-12-31T00:00:59.000000Z"),
        ("1970-01-01T00:00:00Z", "1970-01-01T00:00:00.000000Z"),
        ("1969-12-31T23:00:00-01:00", "1970-01-01T00:00:00.000000Z"),
        ("2024-02-29T12:00:00Z", "2024-02-29T12:00:00.000000Z"),
    ],
)
def test_rfc_3339_timestamps_become_canonical_utc(text: str, canonical: str) -> None:
    assert canonical_timestamp(text) == canonical


@pytest.mark.parametrize(
    ("text", "words"),
    [
        # the calendar's edges, pushed past datetime's range by the offset (OverflowError before)
        ("9999-12-31T23:59:59-01:00", "outside"),
        ("9999-12-31T23:59:59.999999-00:01", "outside"),
        ("0001-01-01T00:00:00+01:00", "outside"),
        ("0001-01-01T00:00:00-23:59", "outside"),
        ("0001-01-01T00:00:00Z", "outside"),
        ("1969-12-31T23:59:59.999999Z", "outside"),
        ("1970-01-01T00:00:00+00:01", "outside"),
        ("0000-01-01T00:00:00Z", "exists"),
        ("2026-02-30T00:00:00Z", "exists"),
        ("2025-02-29T00:00:00Z", "exists"),
        ("2026-13-01T00:00:00Z", "exists"),
        ("2026-01-01T24:00:00Z", "exists"),
        ("2026-01-01T23:60:00Z", "exists"),
        ("2026-12-31T23:59:60Z", "leap second"),
        ("2016-12-31T23:59:60Z", "leap second"),
        ("2026-01-01T00:00:00+24:00", "offset"),
        ("2026-01-01T00:00:00-00:60", "offset"),
        ("2026-01-01T00:00:00", "time zone"),
        ("2026-01-01T00:00:00.5", "time zone"),
        ("2026-01-01T00:00:00.1234567890Z", "RFC 3339"),  # more than 9 fraction digits
        ("2026-01-01T00:00:00.Z", "RFC 3339"),
        ("2026-01-01T00:00:00,5Z", "RFC 3339"),
        ("2026-01-01 00:00:00Z", "RFC 3339"),
        ("2026-01-01T00:00Z", "RFC 3339"),
        ("2026-01-01T00Z", "RFC 3339"),
        ("2026-01-01", "RFC 3339"),
        ("20260101T000000Z", "RFC 3339"),  # ISO 8601 basic format: fromisoformat takes it
        ("2026-W01-1T00:00:00Z", "RFC 3339"),  # a week date: fromisoformat takes it
        ("2026-001T00:00:00Z", "RFC 3339"),  # an ordinal date
        ("2026-01-01T00:00:00+0100", "RFC 3339"),
        ("2026-01-01T00:00:00+01", "RFC 3339"),
        ("2026-01-01T00:00:00+01:00:30", "RFC 3339"),
        ("2026-01-01T00:00:00Z\n", "RFC 3339"),
        (" 2026-01-01T00:00:00Z", "RFC 3339"),
        ("+2026-01-01T00:00:00Z", "RFC 3339"),
        ("12026-01-01T00:00:00Z", "RFC 3339"),
        ("\uff12\uff10\uff12\uff16-01-01T00:00:00Z", "RFC 3339"),  # fullwidth digits
        ("\u0662\u0660\u0662\u0666-01-01T00:00:00Z", "RFC 3339"),  # Arabic-Indic digits
        ("2026-01-01T00:00:00\u2212" + "01:00", "RFC 3339"),  # a minus sign that is not '-'
        ("2026-01-01T00:00:00" + "9" * 10_000 + "Z", "RFC 3339"),
        ("", "RFC 3339"),
        ("yesterday", "RFC 3339"),
    ],
)
def test_anything_else_is_a_value_error_that_says_why(text: str, words: str) -> None:
    with pytest.raises(ValueError, match=re.escape(words)):
        parse_timestamp(text)


@pytest.mark.parametrize("value", [None, 20260101, 1.5, b"2026-01-01T00:00:00Z", ["2026-01-01T00:00:00Z"]])
def test_a_timestamp_that_is_not_a_string_is_a_value_error(value: object) -> None:
    with pytest.raises(ValueError, match="must be a string"):
        parse_timestamp(value)  # type: ignore[arg-type]


@given(st.text(max_size=40))
def test_no_text_makes_the_parser_raise_anything_but_value_error(text: str) -> None:
    try:
        moment = parse_timestamp(text)
    except ValueError:
        return
    assert EARLIEST_TIME <= moment <= LATEST_TIME


@given(
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)).map(
        lambda d: d.replace(microsecond=0)
    ),
    st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59),
    st.sampled_from(["", ".5", ".123456", ".123456789"]),
)
def test_any_offset_at_any_date_is_parsed_or_refused_as_out_of_range(
    local: datetime, offset_minutes: int, fraction: str
) -> None:
    sign = "-" if offset_minutes < 0 else "+"
    hours, minutes = divmod(abs(offset_minutes), 60)
    text = f"{local.year:04d}-{local:%m-%dT%H:%M:%S}{fraction}{sign}{hours:02d}:{minutes:02d}"
    utc_minutes = (local - datetime(1970, 1, 1)).total_seconds() / 60 - offset_minutes
    if (
        not 0
        <= utc_minutes
        <= (datetime(9999, 12, 31, 23, 59, 59) - datetime(1970, 1, 1)).total_seconds() / 60
    ):
        with pytest.raises(ValueError, match="outside"):
            parse_timestamp(text)
        return
    moment = parse_timestamp(text)
    assert moment.tzinfo is UTC
    assert moment == (local.replace(microsecond=0) - timedelta(minutes=offset_minutes)).replace(
        tzinfo=UTC, microsecond=int((fraction[1:] or "0").ljust(6, "0")[:6])
    )
    assert format_timestamp(moment) == canonical_timestamp(text)


def test_canonical_form_stays_fixed_width_at_both_ends() -> None:
    assert len(format_timestamp(EARLIEST_TIME)) == len(format_timestamp(LATEST_TIME)) == 27
    with pytest.raises(ValueError, match="outside"):
        format_timestamp(datetime(1969, 12, 31, tzinfo=UTC))


@pytest.mark.parametrize(
    "text", ["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00", "2026-01-01T23:59:60Z"]
)
def test_the_replayer_and_ops_refuse_the_same_times_with_a_usage_error(text: str) -> None:
    with pytest.raises(UsageError, match="--since"):
        Filters.build(since=text)
    with pytest.raises(UsageError, match="--until"):
        Filters.build(until=text)
    with pytest.raises(OpsUsageError, match="--since"):
        Selection.build([], text, None)


# -- the document's grammars are the code's ------------------------------------------------------------------

DOCUMENT = yaml.safe_load((Path(__file__).parents[2] / "api" / "openapi.yaml").read_text())


@given(st.from_regex(TIMESTAMP_PATTERN, fullmatch=True))
def test_every_timestamp_the_document_allows_is_taken_unless_the_calendar_or_range_says_no(text: str) -> None:
    try:
        parse_timestamp(text)
    except ValueError as exc:
        assert "exists" in str(exc) or "outside" in str(exc), exc  # noqa: PT017 (the reason is the point)


# Near misses: the shape of a timestamp with every part free (any digits, separators, fraction, zone or none).
LOOSE = (
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{0,12})?([Zz]|[+-][0-9]{2}:?[0-9]{2})?"
)


@given(st.text(alphabet=st.characters(codec="ascii"), max_size=40) | st.from_regex(LOOSE, fullmatch=True))
def test_every_timestamp_the_parser_takes_is_one_the_document_allows(text: str) -> None:
    try:
        parse_timestamp(text)
    except ValueError:
        return
    assert re.fullmatch(TIMESTAMP_PATTERN, text)


@given(st.text(max_size=30))
@example("a\n")
@example(" ")
@example("\u00a0")
@example("\ufeff")
@example("a\u202eb")
@example("a\x85")
@example("\u2028")
def test_the_documented_text_pattern_is_the_domains_text_rule(text: str) -> None:
    pattern = DOCUMENT["components"]["schemas"]["Text200"]["pattern"]
    # In a JSON Schema pattern `$` is the end of the string; in Python it also matches before a final "\n".
    assert pattern.endswith("$")
    _, problem = check_text(text, 200)
    assert (re.search(pattern[:-1] + r"\Z", text) is not None) == (problem is None), (text, problem)


def test_an_event_id_for_an_idempotency_key_is_a_fixed_uuid_of_the_aggregate_and_key() -> None:
    first = event_id_for_key("acc-1", "open-1")
    assert first == event_id_for_key("acc-1", "open-1")
    assert ids.is_uuid(first)
    assert uuid.UUID(first).version == 8
    assert uuid.UUID(first).variant == uuid.RFC_4122
    others = {event_id_for_key("acc-2", "open-1"), event_id_for_key("acc-1", "open-2")}
    assert first not in others
    assert len(others) == 2
    # the separator keeps ("a", "bc") and ("ab", "c") apart
    assert event_id_for_key("a", "bc") != event_id_for_key("ab", "c")
