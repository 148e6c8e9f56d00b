"""`python -m replayer`: replay events from the events table onto a Kinesis stream (see docs/replayer.md).

Every option can also come from an environment variable (the container's way): the flag wins. Names of
tables and streams, the region and the endpoint come from the project's settings (ES_EVENTS_TABLE,
ES_PLAYBACK_STREAM, ES_REPLAY_CHECKPOINTS_TABLE, AWS_REGION, AWS_ENDPOINT_URL, ...) or a flag, which must agree
with them: --table, --checkpoint-table, --region or --endpoint-url that disagrees with the setting naming the
same thing is an error (eventlog/settings.py). --stream and --state-table say where this replay goes.

Exit codes: 0 every matched event was put (or the dry run worked), 1 the replay failed or could not start
(missing table or stream, no credentials, unreachable endpoint), 2 bad arguments, 3 stopped (a signal) before
the end: `--resume REPLAY_ID` continues it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from eventlog.envelope import REPLAY_MODES
from eventlog.settings import Flag, Settings
from replayer.config import Filters, Limits, ReplayConfig, Worker, check_replay_id, read_aggregates_file
from replayer.connect import AwsConnection
from replayer.engine import run_replay
from replayer.errors import ReplayError, UsageError
from replayer.records import Record
from replayer.report import Reporter, Summary, make_reporter

# Option -> environment variable (used when the flag is not given). Lists are comma-separated.
ENVIRONMENT = {
    "aggregate": "ES_REPLAY_AGGREGATES",
    "aggregates_file": "ES_REPLAY_AGGREGATES_FILE",
    "type": "ES_REPLAY_TYPES",
    "since": "ES_REPLAY_SINCE",
    "until": "ES_REPLAY_UNTIL",
    "from_version": "ES_REPLAY_FROM_VERSION",
    "to_version": "ES_REPLAY_TO_VERSION",
    "mode": "ES_REPLAY_MODE",
    "replay_id": "ES_REPLAY_ID",
    "resume": "ES_REPLAY_RESUME",
    "dry_run": "ES_REPLAY_DRY_RUN",
    "segments": "ES_REPLAY_SEGMENTS",
    "worker": "ES_REPLAY_WORKER",
    "rate": "ES_REPLAY_RATE",
    "max_bytes_per_s": "ES_REPLAY_MAX_BYTES_PER_S",
    "concurrency": "ES_REPLAY_CONCURRENCY",
    "checkpoint_interval": "ES_REPLAY_CHECKPOINT_INTERVAL",
    "progress": "ES_REPLAY_PROGRESS",
    "state_table": "ES_REPLAY_STATE_TABLE",
    "spread_shards": "ES_REPLAY_SPREAD_SHARDS",
}
# What a resumed replay takes from its stored definition; giving them again is a mistake.
DEFINITION_OPTIONS = (
    "aggregate",
    "aggregates_file",
    "type",
    "since",
    "until",
    "from_version",
    "to_version",
    "mode",
    "segments",
    "stream",
    "table",
    "state_table",
    "spread_shards",
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one line, no usage dump, exit 2 via UsageError
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m replayer",
        description="Replay events from the events table onto a Kinesis stream, in order per aggregate.",
        epilog="Every option also reads an environment variable (see docs/replayer.md).",
    )
    select = parser.add_argument_group("which events")
    select.add_argument("--aggregate", action="append", metavar="ID", help="only this aggregate (repeatable)")
    select.add_argument(
        "--aggregates-file", metavar="PATH", help="only the aggregate ids in this file, one a line"
    )
    select.add_argument("--type", action="append", metavar="TYPE", help="only this event type (repeatable)")
    select.add_argument(
        "--since", metavar="TIME", help="recorded at or after this ISO 8601 time (with a zone)"
    )
    select.add_argument("--until", metavar="TIME", help="recorded before this ISO 8601 time (with a zone)")
    select.add_argument("--from-version", metavar="N", help="versions from N (inclusive)")
    select.add_argument("--to-version", metavar="N", help="versions up to N (inclusive)")
    run = parser.add_argument_group("the replay")
    run.add_argument(
        "--mode", choices=REPLAY_MODES, help="marked on every event: rebuild (default), fix, feature"
    )
    run.add_argument("--replay-id", metavar="ID", help="name this replay (default: replay-<uuid7>)")
    run.add_argument("--resume", metavar="REPLAY_ID", help="continue a stopped or crashed replay")
    run.add_argument("--dry-run", action="store_true", default=None, help="plan and count; put nothing")
    run.add_argument(
        "--state-table",
        metavar="NAME",
        help="with --mode rebuild: the state table the write function projects into (a shadow table)",
    )
    pace = parser.add_argument_group("plan and pace")
    pace.add_argument(
        "--segments", metavar="N", help="parallel scan segments (default: from the table's size)"
    )
    pace.add_argument("--worker", metavar="i/n", help="be worker i (0-based) of n sharing this replay")
    pace.add_argument(
        "--spread-shards",
        action="store_true",
        default=None,
        help="spread aggregates evenly over the stream's shards (ExplicitHashKey), not by their ids' hash",
    )
    pace.add_argument(
        "--rate", metavar="EVENTS_PER_S", help="at most this many events/s (default: the stream's)"
    )
    pace.add_argument(
        "--max-bytes-per-s", metavar="BYTES", help="at most this many bytes/s (default: the stream's)"
    )
    pace.add_argument("--concurrency", metavar="N", help="PutRecords calls in flight (default 16)")
    pace.add_argument(
        "--checkpoint-interval", metavar="SECONDS", help="seconds between checkpoint saves (default 2)"
    )
    where = parser.add_argument_group("where")
    where.add_argument(
        "--table", metavar="NAME", help="events table (default: ES_EVENTS_TABLE or the prefix's)"
    )
    where.add_argument("--stream", metavar="NAME", help="target stream (default: the playback stream)")
    where.add_argument("--checkpoint-table", metavar="NAME", help="checkpoint table (default: the prefix's)")
    where.add_argument(
        "--endpoint-url", metavar="URL", help="AWS endpoint (default: AWS_ENDPOINT_URL or AWS)"
    )
    where.add_argument("--region", metavar="REGION", help="AWS region (default: AWS_REGION)")
    out = parser.add_argument_group("output")
    out.add_argument(
        "--progress",
        choices=("auto", "rich", "json", "none"),
        help="a live bar on a terminal, JSON lines otherwise (auto, the default)",
    )
    return parser


def parse_options(argv: Sequence[str], environ: Mapping[str, str]) -> dict[str, Any]:
    """Flags, with environment variables filling what was not given."""
    given = vars(build_parser().parse_args(list(argv)))
    options: dict[str, Any] = dict(given)
    for name, variable in ENVIRONMENT.items():
        if options.get(name) not in (None, []) or not environ.get(variable):
            continue
        value = environ[variable]
        if name in ("aggregate", "type"):
            options[name] = [v for v in value.split(",") if v.strip()]
        elif name in ("dry_run", "spread_shards"):
            options[name] = value.strip().lower() in ("1", "true", "yes")
        else:
            options[name] = value
    options["_given"] = {k for k, v in given.items() if v not in (None, [])}
    options["_given"] |= {k for k, var in ENVIRONMENT.items() if environ.get(var) and k in DEFINITION_OPTIONS}
    return options


def build_config(options: Mapping[str, Any], base: Settings) -> tuple[Settings, ReplayConfig]:
    """Settings and a validated ReplayConfig from options (CLI flags or the playback Lambda's event)."""
    settings = base
    if options.get("region"):
        settings = replace(settings, region=str(options["region"]))
    if options.get("endpoint_url"):
        settings = replace(settings, endpoint_url=str(options["endpoint_url"]))
    given = set(options.get("_given") or ())
    resume = options.get("resume")
    if resume:
        check_replay_id(str(resume))
        clash = sorted(given & set(DEFINITION_OPTIONS))
        if clash:
            flags = ", ".join("--" + c.replace("_", "-") for c in clash)
            raise UsageError(f"--resume {resume} replays its stored definition; drop {flags}")
        if options.get("replay_id") and options["replay_id"] != resume:
            raise UsageError(
                f"--replay-id {options['replay_id']} and --resume {resume} name different replays"
            )
    aggregates = list(options.get("aggregate") or [])
    if options.get("aggregates_file"):
        aggregates.extend(read_aggregates_file(str(options["aggregates_file"])))
    filters = Filters.build(
        aggregates=aggregates,
        types=options.get("type") or [],
        since=options.get("since"),
        until=options.get("until"),
        from_version=options.get("from_version"),
        to_version=options.get("to_version"),
    )
    config = ReplayConfig(
        events_table=str(options.get("table") or settings.events_table),
        stream=str(options.get("stream") or settings.playback_stream),
        checkpoint_table=str(options.get("checkpoint_table") or settings.replay_checkpoints_table),
        filters=filters,
        mode=options.get("mode") or "rebuild",
        replay_id=str(resume or options.get("replay_id") or ""),
        resume=bool(resume),
        segments=_number(options.get("segments"), "--segments", int),
        worker=Worker.parse(str(options["worker"])) if options.get("worker") else Worker(),
        limits=Limits(
            rate=_number(options.get("rate"), "--rate", float),
            max_bytes_per_s=_number(options.get("max_bytes_per_s"), "--max-bytes-per-s", float),
        ),
        dry_run=bool(options.get("dry_run")),
        concurrency=_number(options.get("concurrency"), "--concurrency", int) or 16,
        checkpoint_interval=_number(options.get("checkpoint_interval"), "--checkpoint-interval", float)
        or 2.0,
        state_table=str(options["state_table"]) if options.get("state_table") else None,
        spread_shards=bool(options.get("spread_shards")),
    )
    return settings, config


def settings_for(options: Mapping[str, Any], environ: Mapping[str, str]) -> Settings:
    """The environment's settings, with the flags that name the same things (--region, --endpoint-url, --table,
    --checkpoint-table), which must agree with them: UsageError naming both when they do not. `--stream` and
    `--state-table` are not settings of the stack but where this replay goes (another stack's playback stream,
    a rebuild's shadow table), so any name is theirs."""
    try:
        return Settings.from_env(
            environ,
            region=Flag("--region", options.get("region")),
            endpoint_url=Flag("--endpoint-url", options.get("endpoint_url")),
            names={
                "events": Flag("--table", options.get("table")),
                "replay_checkpoints": Flag("--checkpoint-table", options.get("checkpoint_table")),
            },
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


def _number(value: Any, flag: str, kind: type[int] | type[float]) -> Any:
    if value is None or value == "":
        return None
    try:
        return kind(value)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"{flag} {value!r}: not a number") from exc


async def run(
    settings: Settings,
    config: ReplayConfig,
    reporter: Reporter,
    on_put: Callable[[Record], None] | None = None,
) -> Summary:
    """Open the connection, run the replay, stop gracefully on SIGTERM/SIGINT (a second one aborts).
    `on_put` sees every record the stream took (see `replayer.engine.run_replay`)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    main_task = asyncio.current_task()

    def on_signal() -> None:
        if stop.is_set() and main_task is not None:
            main_task.cancel()
        stop.set()

    installed: list[signal.Signals] = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(signum, on_signal)
            installed.append(signum)
        except (NotImplementedError, RuntimeError):  # not the main thread, or no signals here
            pass
    try:
        pool = config.concurrency + config.read_concurrency + 4
        async with AwsConnection(settings, pool_size=pool) as connection:
            return await run_replay(config, connection, reporter, stop, on_put=on_put)
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """The CLI: parse, run, print one clear line on an error, return the exit code."""
    env = os.environ if environ is None else environ
    try:
        options = parse_options(sys.argv[1:] if argv is None else argv, env)
        settings, config = build_config(options, settings_for(options, env))
        reporter = make_reporter(options.get("progress") or "auto")
    except UsageError as exc:
        print(f"replayer: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except ValueError as exc:  # a bad ES_* setting
        print(f"replayer: error: {exc}", file=sys.stderr)
        return 2
    try:
        summary = asyncio.run(run(settings, config, reporter))
    except ReplayError as exc:
        print(f"replayer: {exc}", file=sys.stderr)
        return exc.exit_code
    except (KeyboardInterrupt, asyncio.CancelledError):
        print(f"replayer: aborted; continue with --resume {config.replay_id}", file=sys.stderr)
        return 130
    if summary.error:
        print(f"replayer: replay {summary.replay_id} {summary.outcome}: {summary.error}", file=sys.stderr)
    if summary.outcome == "stopped":
        print(f"replayer: stopped; continue with --resume {summary.replay_id}", file=sys.stderr)
    return summary.exit_code
