"""What each benchmark measures and how long it takes: the help texts of `python -m benchmarks` and of each
suite's `--help`. Kept apart from the suites so that `python -m benchmarks --help` imports nothing heavy.

The durations are measured: a default run on the 2-core machines this project is developed on, from the
command's start to its exit. 2026-12-01, with other work running (load average about 15): ingest 215 s (7.4
events/s), replay 202 s. Idle, ingest sends its 1,500 events at 20-23 events/s (README), about 75 s in all.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Suite:
    """One benchmark: its module, what it measures, and what a default run costs in time."""

    name: str
    module: str
    measures: str
    duration: str


SUITES = (
    Suite(
        name="ingest",
        module="benchmarks.ingest",
        measures=(
            "events through the local HTTP API to committed state, on a local stack started in this process "
            "(the load, pump and write functions on the embedded AWS): events/s, POST-to-state latency p50 "
            "and p99, and, counted from the calls the handlers make, the AWS requests, DynamoDB write and "
            "read units and Lambda invocations per event, with the cost per million events at list prices. "
            "moto bounds events/s and latency; the per-event counts carry over to AWS."
        ),
        duration=(
            "1,500 events over 150 accounts from 8 clients: about 1.5 minutes on an idle machine, about 3.5 "
            "minutes on a busy one (--events scales it)"
        ),
    ),
    Suite(
        name="replay",
        module="benchmarks.replay",
        measures=(
            "the replayer's throughput on one generated set of events, in parts (--only): ceiling (its own "
            "decode-order-encode path in events per CPU-second, beside the same work through botocore), model "
            "(against a local endpoint that limits and fails like Kinesis: the share of the stream's write "
            "ceiling reached, with lost, repeated and reordered events checked; by aggregate hash and with "
            "--spread-shards), one_aggregate (a long history, one event per round trip) and emulator (on moto, "
            "beside a naive scan-then-put baseline; moto is the bottleneck there)."
        ),
        duration=(
            "40,000 events (5,000 on moto): about 3.5 minutes on a busy machine, less on an idle one "
            "(--only and --events shorten it)"
        ),
    ),
)
BY_NAME = {suite.name: suite for suite in SUITES}


def overview() -> str:
    """`python -m benchmarks --help`."""
    lines = [
        f"usage: python -m benchmarks {{{','.join(BY_NAME)}}} [options]   (each takes --help)",
        "",
        "Each benchmark, what it measures, and how long a default run takes on 2 cores:",
    ]
    for suite in SUITES:
        lines += ["", f"  {suite.name}: {suite.measures}", f"    default run: {suite.duration}."]
    lines += ["", "Add --json to either for one JSON object instead of a table."]
    return "\n".join(_wrap(line) for line in lines)


def epilog(name: str) -> str:
    """The line a suite's own --help ends with."""
    return f"A default run: {BY_NAME[name].duration}."


def _wrap(line: str, width: int = 110) -> str:
    import textwrap

    indent = " " * (len(line) - len(line.lstrip()) + (2 if line.startswith("  ") else 0))
    return textwrap.fill(line, width=width, subsequent_indent=indent) if line else line
