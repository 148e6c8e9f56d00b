"""`python -m benchmarks ingest`: events through the local HTTP API to committed state.

Starts the local stack in this process (the same handlers, pollers and API stand-in as `python -m devstack`),
drives `--events` events over `--aggregates` accounts from `--clients` concurrent HTTP clients (each aggregate's
events from one client, in order), and measures:

- events/s from the first POST to the last event's state being written;
- latency from each POST to the write handler having written the state that includes it (p50, p99);
- the AWS requests, DynamoDB write and read units and Lambda invocations per event, counted from the calls the
  handlers actually made (benchmarks.meter), and the estimated cost per million events at list prices.

The path measured is the ingest path (load, pump, write). The example service function, which exports events
to (here fake) external systems, is left out: what it costs depends on those systems, not on the log.

On the embedded AWS, moto is the bottleneck (AWS-LOCAL.md): events/s and latency here say how the local stack
behaves, not how AWS would. The per-event request and capacity counts do carry over to AWS.
"""

from __future__ import annotations

import argparse
import http.client
import random
import statistics
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import orjson

import handlers.runtime
from benchmarks import prices
from benchmarks.meter import CallMeter
from benchmarks.suites import BY_NAME, epilog
from devstack.lambda_runtime import load_handler
from devstack.stack import LocalStack
from eventlog.topology import FUNCTIONS, MAPPINGS, ROUTES, function_spec

# Consumers outside the ingest path (see the module docstring).
NOT_MEASURED = frozenset({"service"})
DEFAULT_EVENTS = 1500
DEFAULT_AGGREGATES = 150
DEFAULT_CLIENTS = 8


@dataclass
class Invocations:
    """Per function: how many invocations and how long they took (wall clock, in this process)."""

    count: Counter[str] = field(default_factory=Counter)
    seconds: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def timed(
        self, key: str, handler: Callable[[dict[str, Any], Any], Any]
    ) -> Callable[[dict[str, Any], Any], Any]:
        def call(event: dict[str, Any], context: Any) -> Any:
            start = time.perf_counter()
            try:
                return handler(event, context)
            finally:
                with self.lock:
                    self.count[key] += 1
                    self.seconds[key] += time.perf_counter() - start

        return call


def plan_events(events: int, aggregates: int, seed: int) -> dict[str, list[dict[str, Any]]]:
    """Each account is opened, then takes deposits and withdrawals (some overdraw and are refused)."""
    rng = random.Random(seed)
    plan: dict[str, list[dict[str, Any]]] = {f"bench-{n:05d}": [] for n in range(aggregates)}
    names = list(plan)
    for n in range(events):
        aggregate = names[n % aggregates]
        if not plan[aggregate]:
            body: dict[str, Any] = {"type": "AccountOpened", "payload": {"owner": f"owner {aggregate}"}}
        elif rng.random() < 0.7:
            body = {"type": "MoneyDeposited", "payload": {"amount": rng.randint(100, 10_000)}}
        else:
            body = {"type": "MoneyWithdrawn", "payload": {"amount": rng.randint(100, 12_000)}}
        plan[aggregate].append(body)
    return plan


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def run(events: int, aggregates: int, clients: int, seed: int = 7, timeout: float = 600.0) -> dict[str, Any]:
    """Run the benchmark and return its figures (the `--json` object)."""
    meter = CallMeter()
    invocations = Invocations()
    committed_at: dict[str, float] = {}
    committed_lock = threading.Lock()
    write_handler = load_handler(function_spec("write"))

    def write_and_note(event: dict[str, Any], context: Any) -> Any:
        response = write_handler(event, context)
        failed = {f["itemIdentifier"] for f in (response or {}).get("batchItemFailures", [])}
        now = time.perf_counter()
        with committed_lock:
            for record in event["Records"]:
                ddb = record.get("dynamodb")
                event_id = ((ddb or {}).get("NewImage") or {}).get("event_id", {}).get("S")
                if event_id and ddb["SequenceNumber"] not in failed:
                    committed_at.setdefault(event_id, now)
        return response

    # Every function the ingest path invokes (the playback function is only ever invoked by hand).
    mappings = tuple(m for m in MAPPINGS if m.function not in NOT_MEASURED)
    used = {m.function for m in mappings} | {r.function for r in ROUTES}
    stand_ins = {key: invocations.timed(key, load_handler(function_spec(key))) for key in used}
    stand_ins["write"] = invocations.timed("write", write_and_note)

    # Meter every client the handlers build (handlers.runtime makes them on first use).
    original = (handlers.runtime.dynamodb_client, handlers.runtime.kinesis_client)
    handlers.runtime.dynamodb_client = lambda *a, **k: meter.attach(original[0](*a, **k))
    handlers.runtime.kinesis_client = lambda *a, **k: meter.attach(original[1](*a, **k))
    handlers.runtime.reset()
    try:
        with LocalStack(port=0, aws_port=0, handlers=stand_ins, mappings=mappings, fakes=False) as stack:
            _warm_up(stack.url, committed_at, timeout)
            meter.__init__()  # type: ignore[misc]
            invocations.count.clear()
            invocations.seconds.clear()
            committed_at.clear()
            posted_at, started = _drive(stack.url, plan_events(events, aggregates, seed), clients)
            deadline = time.perf_counter() + timeout
            while len(committed_at.keys() & posted_at.keys()) < len(posted_at):
                if time.perf_counter() > deadline:
                    raise TimeoutError(f"only {len(committed_at)} of {len(posted_at)} events reached state")
                time.sleep(0.02)
            finished = max(committed_at[e] for e in posted_at)
    finally:
        handlers.runtime.dynamodb_client, handlers.runtime.kinesis_client = original
        handlers.runtime.reset()

    latencies = [committed_at[e] - posted_at[e] for e in posted_at]
    n = len(posted_at)
    return _figures(n, aggregates, clients, finished - started, latencies, meter, invocations)


def _warm_up(url: str, committed_at: dict[str, float], timeout: float) -> None:
    """One event through every handler first, so the figures leave out client creation and imports."""
    status, body = _post(
        _connect(url), "/aggregates/warm-up/events", {"type": "AccountOpened", "payload": {"owner": "w"}}
    )
    if status != 202:
        raise RuntimeError(f"warm-up POST answered {status}: {body}")
    deadline = time.perf_counter() + timeout
    while body["event_id"] not in committed_at:
        if time.perf_counter() > deadline:
            raise TimeoutError("the warm-up event never reached state")
        time.sleep(0.01)


def _connect(url: str) -> http.client.HTTPConnection:
    parts = urlsplit(url)
    return http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=60)


def _post(conn: http.client.HTTPConnection, path: str, body: dict[str, Any]) -> tuple[int, Any]:
    conn.request("POST", path, body=orjson.dumps(body), headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    return response.status, orjson.loads(response.read())


def _drive(url: str, plan: dict[str, list[dict[str, Any]]], clients: int) -> tuple[dict[str, float], float]:
    """POST the plan from `clients` threads; an aggregate belongs to one thread, so its order is kept."""
    posted_at: dict[str, float] = {}
    lock = threading.Lock()
    errors: list[str] = []
    shares: list[list[str]] = [[] for _ in range(clients)]
    for n, aggregate in enumerate(plan):
        shares[n % clients].append(aggregate)

    def client(mine: list[str]) -> None:
        conn = _connect(url)
        # interleave this client's aggregates, as real traffic would
        queues = {a: list(plan[a]) for a in mine}
        while queues:
            for aggregate in list(queues):
                body = queues[aggregate].pop(0)
                if not queues[aggregate]:
                    del queues[aggregate]
                sent = time.perf_counter()
                status, answer = _post(conn, f"/aggregates/{aggregate}/events", body)
                if status != 202:
                    errors.append(f"{status} {answer}")
                    continue
                with lock:
                    posted_at[answer["event_id"]] = sent

    threads = [threading.Thread(target=client, args=(share,)) for share in shares if share]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise RuntimeError(f"{len(errors)} POSTs failed, first: {errors[0]}")
    return posted_at, started


def _figures(
    n: int,
    aggregates: int,
    clients: int,
    seconds: float,
    latencies: list[float],
    meter: CallMeter,
    invocations: Invocations,
) -> dict[str, Any]:
    memory = {spec.key: spec.memory_mb for spec in FUNCTIONS}
    gb_seconds = sum(invocations.seconds[k] * memory[k] / 1024 for k in invocations.seconds)
    lambda_requests = sum(invocations.count.values())
    kinesis_puts = sum(
        c for op, c in meter.calls.items() if op in ("kinesis:PutRecord", "kinesis:PutRecords")
    )
    per_event = {
        "aws_requests": meter.total_calls / n,
        "dynamodb_write_units": meter.write_units / n,
        "dynamodb_read_units": meter.read_units / n,
        "lambda_invocations": lambda_requests / n,
        "lambda_gb_seconds_local": gb_seconds / n,
    }
    cost = {
        "api_gateway": prices.API_GATEWAY_REST_PER_MILLION_REQUESTS,
        "lambda_requests": per_event["lambda_invocations"] * prices.LAMBDA_PER_MILLION_REQUESTS,
        "lambda_duration": per_event["lambda_gb_seconds_local"] * 1e6 * prices.LAMBDA_ARM64_PER_GB_SECOND,
        "kinesis_put_payload_units": kinesis_puts
        / n
        * prices.KINESIS_PROVISIONED_PER_MILLION_PUT_PAYLOAD_UNITS,
        "dynamodb_writes": per_event["dynamodb_write_units"]
        * prices.DYNAMODB_ON_DEMAND_PER_MILLION_WRITE_UNITS,
        "dynamodb_reads": per_event["dynamodb_read_units"] * prices.DYNAMODB_ON_DEMAND_PER_MILLION_READ_UNITS,
    }
    cost["total"] = sum(cost.values())
    return {
        "events": n,
        "aggregates": aggregates,
        "clients": clients,
        "seconds": round(seconds, 3),
        "events_per_s": round(n / seconds, 1),
        "latency_ms": {
            "p50": round(percentile(latencies, 50) * 1000, 1),
            "p99": round(percentile(latencies, 99) * 1000, 1),
            "mean": round(statistics.fmean(latencies) * 1000, 1),
        },
        "per_event": {k: round(v, 4) for k, v in per_event.items()},
        "requests_by_operation_per_event": {op: round(c / n, 4) for op, c in sorted(meter.calls.items())},
        "invocations": dict(invocations.count),
        "cost_per_million_events_usd": {k: round(v, 4) for k, v in cost.items()},
        "backend": "embedded moto (the emulator bounds events/s and latency; per-event counts carry over to AWS)",
    }


def _print_table(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(
        title=f"ingest: {result['events']} events, {result['aggregates']} aggregates, {result['clients']} clients"
    )
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("events/s (POST -> state)", f"{result['events_per_s']:.1f}")
    table.add_row(
        "latency p50 / p99 (ms)", f"{result['latency_ms']['p50']:.1f} / {result['latency_ms']['p99']:.1f}"
    )
    for name, value in result["per_event"].items():
        table.add_row(f"{name.replace('_', ' ')} per event", f"{value:.3f}")
    for op, value in result["requests_by_operation_per_event"].items():
        table.add_row(f"  {op} per event", f"{value:.3f}")
    for name, value in result["cost_per_million_events_usd"].items():
        table.add_row(f"cost per million: {name.replace('_', ' ')} (USD)", f"{value:.2f}")
    console.print(table)
    console.print(f"[dim]{result['backend']}[/dim]")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks ingest",
        description=f"Measures {BY_NAME['ingest'].measures}",
        epilog=epilog("ingest"),
    )
    parser.add_argument(
        "--events", type=int, default=DEFAULT_EVENTS, help=f"events to send (default {DEFAULT_EVENTS})"
    )
    parser.add_argument(
        "--aggregates", type=int, default=DEFAULT_AGGREGATES, help="accounts to spread them over"
    )
    parser.add_argument("--clients", type=int, default=DEFAULT_CLIENTS, help="concurrent HTTP clients")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for state to catch up")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args(argv)
    for name in ("events", "aggregates", "clients"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if args.aggregates > args.events:
        parser.error("--aggregates must not exceed --events")
    try:
        result = run(args.events, args.aggregates, args.clients, args.seed, args.timeout)
    except (RuntimeError, TimeoutError) as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    if args.json:
        sys.stdout.write(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        _print_table(result)
    return 0
