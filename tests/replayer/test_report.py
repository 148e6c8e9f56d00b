"""Progress: JSON lines for machines, a live bar and a summary table for people."""

from __future__ import annotations

import io

import orjson
from rich.console import Console

from replayer.report import JsonLinesReporter, RichReporter, Snapshot, Summary, make_reporter

INFO = {
    "replay_id": "r-1",
    "mode": "fix",
    "filters": "2 aggregates",
    "stream": "s",
    "plan": "query",
    "parts": 2,
    "total": 100,
    "rate_limit": {"events_per_s": 2000.0, "bytes_per_s": 2097152.0},
}
SNAPSHOT = Snapshot(2.0, 60, 50, 5000, 3, 1, 10, 1, 2, total=100)
SUMMARY = Summary("r-1", "fix", "query", "s", "0/1", 2, 2, outcome="failed", read=100, put=90, error="boom")


def test_json_lines_are_one_object_a_line() -> None:
    out = io.StringIO()
    reporter = JsonLinesReporter(out)
    reporter.start(INFO)
    reporter.update(SNAPSHOT)
    reporter.finish(SUMMARY)
    lines = [orjson.loads(line) for line in out.getvalue().splitlines()]
    assert [line["event"] for line in lines] == ["start", "progress", "summary"]
    assert lines[1]["put"] == 50
    assert "eta_s" in lines[1]
    assert (lines[2]["outcome"], lines[2]["error"], SUMMARY.exit_code) == ("failed", "boom", 1)
    assert "events" not in lines[2]  # dry-run fields only in a dry run's summary


def test_the_live_bar_and_the_summary_table_render() -> None:
    out = io.StringIO()
    reporter = RichReporter(Console(file=out, force_terminal=True, width=120))
    reporter.start(INFO)
    reporter.update(SNAPSHOT)
    reporter.finish(SUMMARY)
    text = out.getvalue()
    assert "replay r-1" in text
    assert "boom" in text
    assert "put" in text


def test_auto_picks_json_lines_off_a_terminal() -> None:
    assert isinstance(make_reporter("auto", io.StringIO()), JsonLinesReporter)
