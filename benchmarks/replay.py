"""`python -m benchmarks replay`: the replayer's throughput, three ways, on one set of events.

- ceiling: decode -> order -> encode with the network taken out (canned Scan pages in, PutRecords bodies
  discarded), in events per CPU-second (per core): the replayer's own path beside the same work through
  plain boto3/botocore parsing and serialisation (benchmarks/_replay_ceiling.py);
- model: the replayer against a local endpoint that behaves like AWS where throughput is concerned (per-shard
  1,000 records/s and 1 MiB/s, ProvisionedThroughputExceeded beyond, `--latency-ms` per call, `--fail-rate`
  of records refused at random), as a share of the stream's write ceiling, with what reached the stream
  checked for lost, repeated and reordered events (benchmarks/_replay_model.py); run twice, as `model` with
  the replayer's defaults (partition key = aggregate id, so the busiest shard bounds the run) and as
  `model_spread` with --spread-shards (aggregates spread evenly over the shards with ExplicitHashKey);
- emulator: on the embedded moto, the replayer beside a naive baseline (one sequential Scan, then PutRecords
  in 500s, with boto3) over the same events. moto is the bottleneck here (AWS-LOCAL.md).

Goals (issue 3): ceiling >= 40,000 events/s per core and >= 4x the botocore path; model >= 0.95 of the ceiling
with 5 % injected failures, 0 order violations, 0 lost.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import multiprocessing
import os
import sys
import time
from typing import Any

import orjson

from benchmarks._replay_ceiling import botocore_path, replayer_path
from benchmarks._replay_data import Dataset, make_dataset
from benchmarks._replay_model import ModelServer, ModelSettings, check_taken, shard_ceiling
from benchmarks.suites import BY_NAME, epilog
from devstack.embedded_aws import EMULATOR_CREDENTIALS
from eventlog.batch import DEFAULT_BACKOFF, put_items
from eventlog.codec import event_from_data, event_to_data, item_to_event, with_replay
from eventlog.envelope import ReplayInfo
from eventlog.resources import EVENTS_TABLE
from eventlog.settings import Settings
from replayer.config import ReplayConfig
from replayer.connect import AwsConnection
from replayer.engine import run_replay
from replayer.report import SilentReporter, Summary
from replayer.shards import BURST_S

DEFAULT_EVENTS = 40_000
# moto scans about 1,600 items/s and loads about 2,000/s: the emulator part takes the first whole aggregates
# of the same data, up to this many events.
DEFAULT_EMULATOR_EVENTS = 5_000
# The one-aggregate run: a long history replays one event per round trip (the order rule); this measures it.
ONE_AGGREGATE_EVENTS = 300
PARTS = ("ceiling", "model", "one_aggregate", "emulator")


# -- ceiling --------------------------------------------------------------------------------------------------


def run_ceiling(dataset: Dataset, repeats: int) -> dict[str, Any]:
    """Best of `repeats` runs of each path, in events per CPU-second."""
    replayer = [n / s for n, s in (replayer_path(dataset.items) for _ in range(repeats))]
    botocore = [n / s for n, s in (botocore_path(dataset.items) for _ in range(repeats))]
    # For transparency: the botocore path with the collector tuned as the replayer tunes it while it runs.
    previous = gc.get_threshold()
    gc.set_threshold(50_000, 20, 20)
    try:
        botocore_tuned = [n / s for n, s in (botocore_path(dataset.items) for _ in range(repeats))]
    finally:
        gc.set_threshold(*previous)
    best_replayer, best_botocore = max(replayer), max(botocore)
    return {
        "replayer_events_per_s_per_core": round(best_replayer),
        "botocore_events_per_s_per_core": round(best_botocore),
        "speedup": round(best_replayer / best_botocore, 2),
        "botocore_gc_tuned_events_per_s_per_core": round(max(botocore_tuned)),
        "replayer_runs": [round(r) for r in replayer],
        "botocore_runs": [round(b) for b in botocore],
    }


# -- model ----------------------------------------------------------------------------------------------------


def run_model(dataset: Dataset, settings: ModelSettings, *, spread: bool = False) -> dict[str, Any]:
    """The replayer against the model endpoint (in its own process), checked record by record; `spread`:
    with --spread-shards (aggregates spread evenly over the shards instead of hashed)."""
    server = ModelServer(settings, dataset.items)
    url = server.start()
    try:
        target = Settings(
            region="us-east-1",
            endpoint_url=url,
            table_names={"events": settings.events_table, "replay_checkpoints": settings.checkpoint_table},
            stream_names={"playback": settings.stream},
        )
        config = ReplayConfig(
            settings.events_table,
            settings.stream,
            settings.checkpoint_table,
            replay_id="bench-model",
            spread_shards=spread,
        )
        summary = asyncio.run(_replay(target, config))
        taken = server.results()
    finally:
        server.stop()
    if summary.outcome != "complete":
        raise RuntimeError(f"model replay {summary.outcome}: {summary.error}")
    expected = [(e.aggregate_id, e.version) for e in dataset.events]
    sizes = [len(event_to_data(with_replay(e, ReplayInfo("bench-model", "rebuild")))) for e in dataset.events]
    sizes = [size + len(e.aggregate_id) for size, e in zip(sizes, dataset.events, strict=True)]
    nominal, data_ceiling = shard_ceiling(expected, sizes, settings.shards)
    checks = check_taken(expected, taken["taken"])
    events = len(expected)
    # The replayer may start with a burst of its own pace (ShardLimiter's burst): credit the stream with it, so
    # that a short run does not read as more than the stream could sustain.
    burst_s = BURST_S
    events_per_s = events / summary.duration_s
    first = min(t for records in taken["taken"].values() for *_, t in records)
    last = max(t for records in taken["taken"].values() for *_, t in records)
    per_shard = [len(records) for records in taken["taken"].values()]
    busiest = max(per_shard) / max(1, sum(per_shard))
    return {
        # Conservative: the run is charged for the burst the replayer banked before it started.
        "share_of_ceiling": round(events / ((summary.duration_s + burst_s) * nominal), 3),
        "order_violations": checks["order_violations"],
        "lost": checks["lost"],
        "duplicates": checks["duplicates"],
        "unexpected": checks["unexpected"],
        "events_per_s": round(events_per_s),
        "ceiling_events_per_s": round(nominal),
        "share_of_ceiling_raw": round(events_per_s / nominal, 3),
        "spread_shards": spread,
        # What the busiest shard took: it bounds the replay (hashed ids spread a few thousand aggregates
        # unevenly; spreading evens the shards out to within an aggregate).
        "busiest_shard_share": round(busiest, 4),
        # With hashed ids the busiest shard bounds any replay of this data: a perfect one reaches this share.
        "hashed_best_possible_share": round(data_ceiling / nominal, 3),
        "hashed_data_ceiling_events_per_s": round(data_ceiling),
        "duration_s": round(summary.duration_s, 3),
        "stream_busy_s": round(last - first, 3),
        "shards": settings.shards,
        "fail_rate": settings.fail_rate,
        "fail_kind": settings.fail_kind,
        "latency_ms": settings.latency_ms,
        "injected": taken["counts"].get("injected", 0),
        "throttled_by_stream": taken["counts"].get("throttled", 0),
        "retried": summary.retried,
        "put_calls": taken["counts"].get("calls.PutRecords", 0),
    }


def run_one_aggregate(seed: int, settings: ModelSettings) -> dict[str, Any]:
    """One aggregate's long history against the same model endpoint: the order rule allows one record in
    flight per aggregate, so this runs at one event per round trip whatever the shards (a known limit)."""
    dataset = make_dataset(ONE_AGGREGATE_EVENTS, seed, per_aggregate=ONE_AGGREGATE_EVENTS)
    model = run_model(dataset, settings)
    return {
        "events": len(dataset.events),
        "events_per_s": model["events_per_s"],
        "ms_per_event": round(1000 / model["events_per_s"], 2) if model["events_per_s"] else None,
        "latency_ms": settings.latency_ms,
        "order_violations": model["order_violations"],
        "lost": model["lost"],
        "retried": model["retried"],
        "put_calls": model["put_calls"],
    }


async def _replay(settings: Settings, config: ReplayConfig) -> Summary:
    async with AwsConnection(
        settings, pool_size=config.concurrency + config.read_concurrency + 4
    ) as connection:
        return await run_replay(config, connection, SilentReporter())


# -- emulator -------------------------------------------------------------------------------------------------


def _moto(ready: Any) -> None:
    import threading

    from devstack.embedded_aws import EmbeddedAWS

    aws = EmbeddedAWS()
    aws.start()
    ready.send(aws.endpoint_url)
    threading.Event().wait()


def run_emulator(dataset: Dataset, shards: int) -> dict[str, Any]:
    """moto in its own process; the same events replayed by the replayer and by the naive baseline."""
    from eventlog.aws import dynamodb_client, kinesis_client
    from eventlog.provision import create_resources

    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=_moto, args=(child,), daemon=True)
    process.start()
    try:
        if not parent.poll(60):
            raise RuntimeError("moto did not start")
        settings = Settings(region="us-east-1", endpoint_url=parent.recv(), prefix="bench")
        dynamodb, kinesis = dynamodb_client(settings, 8), kinesis_client(settings, 8)
        create_resources(settings, dynamodb, kinesis, shard_counts={"playback": shards})
        kinesis.create_stream(StreamName="bench-baseline", ShardCount=shards)
        started = time.perf_counter()
        put_items(dynamodb, settings.events_table, dataset.items, key=EVENTS_TABLE.key_names)
        load_s = time.perf_counter() - started
        kinesis.get_waiter("stream_exists").wait(
            StreamName="bench-baseline", WaiterConfig={"Delay": 1, "MaxAttempts": 60}
        )
        config = ReplayConfig(
            settings.events_table,
            settings.playback_stream,
            settings.replay_checkpoints_table,
            replay_id="bench-emulator",
        )
        summary = asyncio.run(_replay(settings, config))
        if summary.outcome != "complete":
            raise RuntimeError(f"emulator replay {summary.outcome}: {summary.error}")
        baseline_s = _baseline(dynamodb, kinesis, settings.events_table, "bench-baseline")
        delivered = _count_stream(kinesis, settings.playback_stream)
        baseline_delivered = _count_stream(kinesis, "bench-baseline")
    finally:
        process.terminate()
        process.join(10)
    events = len(dataset.events)
    return {
        "events": events,
        "replayer_events_per_s": round(events / summary.duration_s),
        "baseline_events_per_s": round(events / baseline_s),
        "replayer_s": round(summary.duration_s, 2),
        "baseline_s": round(baseline_s, 2),
        "load_events_per_s": round(events / load_s),
        "replayer_delivered": delivered,
        "baseline_delivered": baseline_delivered,
        "shards": shards,
    }


def _baseline(dynamodb: Any, kinesis: Any, table: str, stream: str) -> float:
    """One sequential Scan, then PutRecords in 500s (failed records retried), with boto3."""
    replay = ReplayInfo("bench-baseline", "rebuild")
    started = time.perf_counter()
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"TableName": table}
    while True:
        page = dynamodb.scan(**kwargs)
        items.extend(page["Items"])
        if "LastEvaluatedKey" not in page:
            break
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    records = []
    for item in items:
        event = item_to_event(item)
        records.append(
            {"Data": event_to_data(with_replay(event, replay)), "PartitionKey": event.aggregate_id}
        )
    for i in range(0, len(records), 500):
        batch = records[i : i + 500]
        for attempt in range(DEFAULT_BACKOFF.max_attempts):
            if attempt:
                time.sleep(DEFAULT_BACKOFF.delay(attempt))
            response = kinesis.put_records(StreamName=stream, Records=batch)
            batch = [r for r, res in zip(batch, response["Records"], strict=True) if "ErrorCode" in res]
            if not batch:
                break
        if batch:
            raise RuntimeError(
                f"baseline: stream {stream} still refused {len(batch)} record(s) after retries"
            )
    return time.perf_counter() - started


def _count_stream(kinesis: Any, stream: str) -> int:
    count = 0
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        iterator = kinesis.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            response = kinesis.get_records(ShardIterator=iterator, Limit=10_000)
            count += len([event_from_data(r["Data"]) for r in response["Records"]])
            if not response["Records"]:
                break
            iterator = response["NextShardIterator"]
    return count


# -- the command ----------------------------------------------------------------------------------------------


def goals(result: dict[str, Any]) -> dict[str, bool]:
    out: dict[str, bool] = {}
    ceiling = result.get("ceiling")
    if ceiling:
        out["ceiling_at_least_40k_per_core"] = ceiling["replayer_events_per_s_per_core"] >= 40_000
        out["ceiling_at_least_4x_botocore"] = ceiling["speedup"] >= 4.0
    for name in ("model", "model_spread"):
        model = result.get(name)
        if model:
            out[f"{name}_at_least_0.95_of_ceiling"] = model["share_of_ceiling"] >= 0.95
            out[f"{name}_no_order_violations"] = model["order_violations"] == 0
            out[f"{name}_nothing_lost"] = model["lost"] == 0
    return out


def _print_table(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    data = result["data"]
    console.print(
        f"[bold]replay benchmark[/]: {data['events']:,} events over {data['aggregates']:,} aggregates, "
        f"items of {data['item_bytes']} B on average"
    )
    table = Table(show_header=True)
    table.add_column("part")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for part in ("ceiling", "model", "model_spread", "one_aggregate", "emulator"):
        for key, value in (result.get(part) or {}).items():
            if isinstance(value, bool):
                shown = "yes" if value else "no"
            else:
                shown = f"{value:,}" if isinstance(value, int) else str(value)
            table.add_row(part, key, shown)
    console.print(table)
    for goal, met in result["goals"].items():
        console.print(f"  {'met   ' if met else 'NOT met'}  {goal}")


def settings_from(args: argparse.Namespace) -> ModelSettings:
    return ModelSettings(
        shards=args.shards, fail_rate=args.fail_rate, fail_kind=args.fail_kind, latency_ms=args.latency_ms
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks replay",
        description=f"Measures {BY_NAME['replay'].measures}",
        epilog=epilog("replay"),
    )
    parser.add_argument(
        "--events", type=int, default=DEFAULT_EVENTS, help=f"events (default {DEFAULT_EVENTS:,})"
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--only", default=",".join(PARTS), help=f"comma-separated parts: {','.join(PARTS)}")
    parser.add_argument("--repeats", type=int, default=3, help="ceiling runs per path; the best counts")
    parser.add_argument("--shards", type=int, default=4, help="target stream shards (model; default 4)")
    parser.add_argument("--fail-rate", type=float, default=0.05, help="records refused at random (model)")
    parser.add_argument(
        "--fail-kind", choices=("internal", "throttle", "mixed"), default="mixed", help="how they are refused"
    )
    parser.add_argument("--latency-ms", type=float, default=5.0, help="per call (model; default 5)")
    parser.add_argument("--emulator-shards", type=int, default=2, help="playback stream shards on moto")
    parser.add_argument(
        "--emulator-events",
        type=int,
        default=DEFAULT_EMULATOR_EVENTS,
        help=f"events for the moto part: the first whole aggregates of the data (default {DEFAULT_EMULATOR_EVENTS:,})",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args(argv)
    parts = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = set(parts) - set(PARTS)
    if unknown or not parts:
        parser.error(f"--only: unknown part(s) {', '.join(sorted(unknown))}; choose from {', '.join(PARTS)}")
    if args.events < 100 or args.repeats < 1 or args.shards < 1 or not 0 <= args.fail_rate < 1:
        parser.error("--events >= 100, --repeats >= 1, --shards >= 1 and 0 <= --fail-rate < 1")
    # Dummy credentials: every endpoint here is local (the model, moto); nothing goes to AWS.
    os.environ.update(EMULATOR_CREDENTIALS)
    dataset = make_dataset(args.events, args.seed)
    result: dict[str, Any] = {
        "data": {
            "events": len(dataset.events),
            "aggregates": dataset.aggregates,
            "item_bytes": round(dataset.item_bytes / len(dataset.items)),
            "seed": args.seed,
        }
    }
    try:
        if "ceiling" in parts:
            result["ceiling"] = run_ceiling(dataset, args.repeats)
        if "model" in parts:
            settings = settings_from(args)
            result["model"] = run_model(dataset, settings)
            result["model_spread"] = run_model(dataset, settings, spread=True)
        if "one_aggregate" in parts:
            result["one_aggregate"] = run_one_aggregate(args.seed, settings_from(args))
        if "emulator" in parts:
            result["emulator"] = run_emulator(dataset.head(args.emulator_events), args.emulator_shards)
    except RuntimeError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    result["goals"] = goals(result)
    result["machine"] = {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
    if args.json:
        sys.stdout.write(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        _print_table(result)
    return 0
