"""Progress and the final summary: a live bar on a terminal, JSON lines otherwise (Fargate, CloudWatch).

JSON lines (one object a line on stdout):

    {"event": "start", "replay_id": ..., "plan": "scan", "parts": 16, "stream": ..., "rate_limit": ...}
    {"event": "progress", "elapsed_s": 10.0, "read": 41000, "put": 40000, "events_per_s": 3990.1, ...}
    {"event": "summary", "outcome": "complete", "read": ..., "put": ..., "retried": ..., ...}
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol, TextIO

import orjson

Outcome = Literal["complete", "failed", "stopped", "dry-run"]
EXIT_CODES: dict[str, int] = {"complete": 0, "dry-run": 0, "failed": 1, "stopped": 3}


@dataclass(slots=True)
class Snapshot:
    """Where a running replay stands."""

    elapsed_s: float
    read: int
    put: int
    put_bytes: int
    retried: int
    throttled: int
    waiting: int
    parts_done: int
    parts: int
    total: int | None = None  # an estimate of what this worker will put, when known


@dataclass(slots=True)
class Summary:
    """What a replay did (or, for a dry run, would do)."""

    replay_id: str
    mode: str
    plan: str
    stream: str
    worker: str
    parts: int
    segments: int
    outcome: Outcome = "complete"
    read: int = 0
    put: int = 0
    put_bytes: int = 0
    retried: int = 0
    throttled: int = 0
    failed_records: int = 0
    maybe_repeated: int = 0
    read_retries: int = 0  # Scan/Query calls retried (throttled or failed reads)
    duration_s: float = 0.0
    error: str | None = None
    # dry run only
    events: int | None = None
    bytes: int | None = None
    aggregates: int | None = None
    seconds_at_rate: float | None = None
    rate_limit: dict[str, float] = field(default_factory=dict)
    estimated_cost_usd: dict[str, float] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.outcome]

    @property
    def events_per_s(self) -> float:
        return self.put / self.duration_s if self.duration_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["events_per_s"] = round(self.events_per_s, 1)
        data["duration_s"] = round(self.duration_s, 3)
        if self.outcome != "dry-run":
            for key in ("events", "bytes", "aggregates", "seconds_at_rate", "estimated_cost_usd"):
                data.pop(key)
        return data


class Reporter(Protocol):
    interval: float

    def start(self, info: dict[str, Any]) -> None: ...

    def update(self, snapshot: Snapshot) -> None: ...

    def finish(self, summary: Summary) -> None: ...


class SilentReporter:
    """Reports nothing (tests, the playback Lambda when it returns the summary itself)."""

    interval = 3600.0

    def start(self, info: dict[str, Any]) -> None:
        pass

    def update(self, snapshot: Snapshot) -> None:
        pass

    def finish(self, summary: Summary) -> None:
        pass


class JsonLinesReporter:
    """One JSON object a line: start, progress every `interval` seconds, summary."""

    def __init__(self, out: TextIO | None = None, interval: float = 10.0) -> None:
        self._out = out
        self.interval = interval
        self._last: tuple[float, int] | None = None

    def _write(self, data: dict[str, Any]) -> None:
        out = self._out or sys.stdout
        out.write(orjson.dumps(data).decode() + "\n")
        out.flush()

    def start(self, info: dict[str, Any]) -> None:
        self._write({"event": "start", **info})
        self._last = (time.monotonic(), 0)

    def update(self, snapshot: Snapshot) -> None:
        now = time.monotonic()
        last_time, last_put = self._last or (now, 0)
        rate = (snapshot.put - last_put) / (now - last_time) if now > last_time else 0.0
        self._last = (now, snapshot.put)
        data: dict[str, Any] = {"event": "progress", **asdict(snapshot), "events_per_s": round(rate, 1)}
        data["elapsed_s"] = round(snapshot.elapsed_s, 1)
        if snapshot.total and rate > 0:
            data["eta_s"] = round(max(0, snapshot.total - snapshot.put) / rate, 1)
        self._write(data)

    def finish(self, summary: Summary) -> None:
        self._write({"event": "summary", **summary.to_dict()})


class RichReporter:
    """A live bar with rate and ETA, then a summary table (for a terminal)."""

    interval = 0.25

    def __init__(self, console: Any = None) -> None:
        from rich.console import Console

        self._console = console or Console(stderr=False)
        self._progress: Any = None
        self._task: Any = None

    def start(self, info: dict[str, Any]) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._console.print(
            f"[bold]replay {info['replay_id']}[/] ({info['mode']}): {info['filters']} -> stream "
            f"[bold]{info['stream']}[/], {info['plan']} in {info['parts']} part(s), "
            f"limit {info['rate_limit']['events_per_s']:,.0f} events/s"
        )
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self._console,
        )
        self._progress.start()
        self._task = self._progress.add_task("put", total=info.get("total"), rate="")

    def update(self, snapshot: Snapshot) -> None:
        if self._progress is None:
            return
        rate = snapshot.put / snapshot.elapsed_s if snapshot.elapsed_s > 0 else 0.0
        self._progress.update(
            self._task,
            completed=snapshot.put,
            total=max(snapshot.total, snapshot.put) if snapshot.total else None,
            rate=f"{rate:,.0f} ev/s  retried {snapshot.retried:,}  throttled {snapshot.throttled:,}",
        )

    def finish(self, summary: Summary) -> None:
        from rich.table import Table

        if self._progress is not None:
            self._progress.stop()
        table = Table(title=f"replay {summary.replay_id}: {summary.outcome}", show_header=False)
        for key, value in summary.to_dict().items():
            if value in (None, {}, []) or key == "replay_id":
                continue
            table.add_row(key, f"{value:,}" if isinstance(value, int) else str(value))
        self._console.print(table)


class QuietReporter(SilentReporter):
    """`--progress none`: no progress and no summary of a replay (its exit code and error line say how it
    ended), but a dry run's findings, which are its whole answer, as a few plain lines."""

    def __init__(self, out: TextIO | None = None) -> None:
        self._out = out

    def finish(self, summary: Summary) -> None:
        if summary.outcome == "dry-run":
            out = self._out or sys.stdout
            out.write(dry_run_text(summary) + "\n")
            out.flush()


def dry_run_text(summary: Summary) -> str:
    """What a dry run found, for people: what would be put where, how long at the pace, what it would cost."""
    events, aggregates = summary.events or 0, summary.aggregates or 0
    lines = [
        f"dry run {summary.replay_id} ({summary.mode}): would put {events:,} event(s) of {aggregates:,} "
        f"aggregate(s), {summary.bytes or 0:,} bytes, on {summary.stream}"
        + ("" if events else " (nothing matches the filters)"),
        f"  plan: {summary.plan} in {summary.parts} part(s)"
        + (f", worker {summary.worker}" if summary.worker != "0/1" else "")
        + "; nothing was put",
    ]
    limit = summary.rate_limit.get("events_per_s")
    pace = f" at {limit:,.0f} events/s" if limit else ""
    lines.append(f"  time: about {summary.seconds_at_rate or 0:,.1f} s{pace}")
    cost = summary.estimated_cost_usd
    if cost:
        lines.append(
            f"  estimated cost: ${cost.get('total', 0):.6f} (DynamoDB reads ${cost.get('dynamodb_reads', 0):.6f},"
            f" Kinesis ${cost.get('kinesis_puts', 0):.6f}; us-east-1 list prices)"
        )
    return "\n".join(lines)


def make_reporter(kind: str, out: TextIO | None = None) -> Reporter:
    """`auto` (rich on a terminal, else JSON lines), `rich`, `json` or `none` (nothing but a dry run's
    findings)."""
    stream = out or sys.stdout
    if kind == "auto":
        kind = "rich" if stream.isatty() else "json"
    if kind == "rich":
        return RichReporter()
    if kind == "json":
        return JsonLinesReporter(out)
    return QuietReporter(out)
