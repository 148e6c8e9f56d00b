"""Running a replay from an operator command, and waiting until the write function has projected it.

`run_replay` runs the replayer in this process (as `python -m replayer` would) and records, per aggregate, the
last version the stream took (`PutLedger`). `wait_caught_up` then polls the target state table until every one
of those aggregates has reached that version: that is what "caught up" means for a replay. The write function
projects in version order and fills gaps from the log, so a state item at version v reflects every event
through v; and an aggregate's repeated record (the replayer may put one twice when a call's outcome was
unknown) is a version it already reflects.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, TextIO

from eventlog.settings import Settings
from ops import tables
from ops.errors import OpsError, Stopped
from replayer.cli import run as run_replayer
from replayer.config import ReplayConfig
from replayer.errors import ReplayError
from replayer.records import Record
from replayer.report import JsonLinesReporter, Reporter, RichReporter, SilentReporter, Summary

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

Say = Callable[[str], None]


class PutLedger:
    """Per aggregate, the highest version a replay put (the `on_put` hook of the replayer)."""

    def __init__(self) -> None:
        self.versions: dict[str, int] = {}

    def __call__(self, record: Record) -> None:
        if record.version > self.versions.get(record.aggregate_id, 0):
            self.versions[record.aggregate_id] = record.version

    def __len__(self) -> int:
        return len(self.versions)


@dataclass(frozen=True)
class Pace:
    """Replay options an operator command passes on to the replayer."""

    segments: int | None = None
    rate: float | None = None
    concurrency: int = 16
    # A rebuild's replay goes to its own shadow table, and its catch-up replays start only once the shadow has
    # caught up: nothing relies on two replays of an aggregate being ordered on the stream, so it spreads
    # aggregates evenly over the shards (replayer --spread-shards) unless told not to.
    spread_shards: bool = True


def make_reporter(kind: str, out: TextIO | None = None) -> Reporter:
    """The replayer's progress on stderr (stdout holds the command's own report): `rich`, `json` or `none`;
    `auto` is rich on a terminal, nothing otherwise (the command says what it does in its own lines)."""
    stream = out or sys.stderr
    if kind == "auto":
        kind = "rich" if stream.isatty() else "none"
    if kind == "rich":
        from rich.console import Console

        return RichReporter(Console(file=stream))
    if kind == "json":
        return JsonLinesReporter(stream)
    return SilentReporter()


def run_replay(
    settings: Settings, config: ReplayConfig, reporter: Reporter, ledger: PutLedger | None = None
) -> Summary:
    """Run one replay to its end in this process. Raises OpsError if it failed (Stopped if a signal stopped
    it; the message says how to continue)."""
    try:
        summary = asyncio.run(run_replayer(settings, config, reporter, on_put=ledger))
    except ReplayError as exc:
        raise OpsError(f"replay {config.replay_id}: {exc}") from exc
    if summary.outcome == "stopped":
        raise Stopped(f"replay {config.replay_id} stopped before its end")
    if summary.outcome != "complete":
        raise OpsError(f"replay {config.replay_id} {summary.outcome}: {summary.error}")
    return summary


class NotCaughtUp(OpsError):
    """The state table did not reach the replayed versions in time."""

    def __init__(
        self, table: str, lagging: Mapping[str, tuple[int, int]], timeout_s: float, hint: str = ""
    ) -> None:
        examples = ", ".join(f"{a} at v{have} of v{want}" for a, (have, want) in sorted(lagging.items())[:3])
        super().__init__(
            f"{table} has not caught up after {timeout_s:.0f}s: {len(lagging):,} aggregate(s) behind "
            f"({examples}); is the write function consuming the playback stream?{hint}"
        )
        self.table = table
        self.lagging = dict(lagging)
        self.timeout_s = timeout_s


def wait_caught_up(
    dynamodb: DynamoDBClient,
    table: str,
    targets: Mapping[str, int],
    *,
    timeout_s: float = 300.0,
    interval_s: float = 0.2,
    tick: Callable[[], None] | None = None,
    say: Say | None = None,
) -> None:
    """Wait until `table` holds every aggregate of `targets` at (at least) its target version.

    `tick`, when given, is called before each look (tests deliver the stream to the write handler there)."""
    pending = dict(targets)
    deadline = time.monotonic() + timeout_s
    delay = interval_s
    last_said = time.monotonic()
    while pending:
        if tick is not None:
            tick()
        have = tables.versions(dynamodb, table, list(pending))
        pending = {a: v for a, v in pending.items() if have.get(a, 0) < v}
        if not pending:
            return
        now = time.monotonic()
        if now > deadline:
            raise NotCaughtUp(table, {a: (have.get(a, 0), v) for a, v in pending.items()}, timeout_s)
        if say is not None and now - last_said > 5:
            say(f"  waiting for {len(pending):,} aggregate(s) to reach their replayed version in {table}")
            last_said = now
        time.sleep(delay)
        delay = min(delay * 1.5, 2.0)
