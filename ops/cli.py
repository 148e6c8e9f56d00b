"""`python -m ops`: rebuild state into a shadow table, compare, swap or drop it; make a test environment.

    python -m ops rebuild [--id NAME] [--aggregate ID ...] [--resume REBUILD_ID] [options]
    python -m ops diff REBUILD_ID
    python -m ops swap REBUILD_ID [--include-behind] [--delete-missing] [--keep-shadow]
    python -m ops drop REBUILD_ID
    python -m ops list
    python -m ops test-env --prefix PREFIX (--aggregate ID ... | --since TIME | --until TIME) [options]
    python -m ops redrive [--mapping KEY ...] [--list | --peek] [options]

Where the stack is comes from the project's settings (ES_NAME_PREFIX, ES_STATE_TABLE, ..., AWS_REGION,
AWS_ENDPOINT_URL) and --region/--endpoint-url, as for the replayer; two that disagree stop the command with one
line (eventlog/settings.py). docs/replays.md is the user's guide.

Exit codes: 0 done, 1 failed (one line says why), 2 bad arguments, 3 a replay was stopped (a signal) before
its end, 4 (with --exit-code) the rebuild differs from the live state.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NoReturn, TextIO

from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError, NoCredentialsError

from eventlog.settings import Flag, Settings
from ops import report
from ops.errors import OpsError, OpsUsageError
from ops.rebuild import Rebuilds, check_rebuild_id, rebuild_id_from
from ops.redrive import DEFAULT_MARGIN_S, Redrives, choose_mappings, queues_text, redrive_text
from ops.replay import Pace, Say
from ops.testenv import Selection, TestEnvironments, serve, target_settings
from replayer.config import read_aggregates_file
from replayer.errors import UsageError

DIFFERS_EXIT_CODE = 4


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, no usage dump, exit 2
        raise OpsUsageError(message)


def _positive(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"{text} is not positive")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m ops",
        description="Rebuild state into a shadow table and swap it in; make test environments from the log.",
        epilog="docs/replays.md explains each command with an example.",
    )
    where = _Parser(add_help=False)
    where.add_argument(
        "--endpoint-url", metavar="URL", help="AWS endpoint (default: AWS_ENDPOINT_URL or AWS)"
    )
    where.add_argument("--region", metavar="REGION", help="AWS region (default: AWS_REGION)")
    where.add_argument("--json", action="store_true", help="print the report as one JSON object")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    rebuild = commands.add_parser(
        "rebuild",
        parents=[where],
        help="rebuild state from the log into a new shadow table and compare it with the live state",
    )
    rebuild.add_argument(
        "--id",
        metavar="NAME",
        help="name the rebuild: the id to diff, swap or drop it by (default rebuild-<time>-<random>)",
    )
    rebuild.add_argument(
        "--aggregate", action="append", metavar="ID", help="only this aggregate (repeatable)"
    )
    rebuild.add_argument("--aggregates-file", metavar="PATH", help="only the aggregate ids in this file")
    rebuild.add_argument("--resume", metavar="REBUILD_ID", help="continue a rebuild whose replay stopped")
    _wait_options(rebuild)
    rebuild.add_argument("--segments", type=_positive(int), metavar="N", help="the replay's scan segments")
    rebuild.add_argument(
        "--rate", type=_positive(float), metavar="EVENTS_PER_S", help="cap the replay's rate"
    )
    rebuild.add_argument(
        "--concurrency", type=_positive(int), default=16, metavar="N", help="PutRecords calls in flight"
    )
    rebuild.add_argument(
        "--spread-shards",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="spread aggregates evenly over the stream's shards (default: yes; see docs/replayer.md)",
    )
    rebuild.add_argument(
        "--progress",
        choices=("auto", "rich", "json", "none"),
        default="auto",
        help="the replay's progress on stderr (auto: a bar on a terminal)",
    )
    _report_options(rebuild)

    diff = commands.add_parser(
        "diff", parents=[where], help="compare a rebuild's shadow with the live state again"
    )
    diff.add_argument("rebuild_id", metavar="REBUILD_ID")
    _wait_options(diff)
    _report_options(diff)

    swap = commands.add_parser(
        "swap", parents=[where], help="apply a rebuild's shadow to the live state table, then delete it"
    )
    swap.add_argument("rebuild_id", metavar="REBUILD_ID")
    swap.add_argument(
        "--include-behind",
        action="store_true",
        help="also write aggregates the live table holds at an older version or not at all",
    )
    swap.add_argument(
        "--delete-missing", action="store_true", help="delete live items the rebuild does not have"
    )
    swap.add_argument("--keep-shadow", action="store_true", help="keep the shadow table after the swap")
    _wait_options(swap)
    swap.add_argument("--limit", type=_positive(int), default=report.DEFAULT_LIMIT, help=argparse.SUPPRESS)

    drop = commands.add_parser(
        "drop", parents=[where], help="delete a rebuild's shadow table without swapping"
    )
    drop.add_argument("rebuild_id", metavar="REBUILD_ID")
    drop.add_argument(
        "--force",
        action="store_true",
        help="drop a rebuild whose replay did not finish (see docs/replays.md)",
    )

    commands.add_parser("list", parents=[where], help="the rebuilds the checkpoint table remembers")

    env = commands.add_parser(
        "test-env",
        parents=[where],
        help="create a test environment (its own tables and streams) from a subset of the log",
    )
    env.add_argument("--prefix", required=True, help="the test environment's name prefix (es-test-1, ...)")
    env.add_argument(
        "--aggregate", action="append", metavar="ID", help="this aggregate's history (repeatable)"
    )
    env.add_argument(
        "--aggregates-file", metavar="PATH", help="the histories of the aggregate ids in this file"
    )
    env.add_argument(
        "--since",
        metavar="TIME",
        help="the aggregates with an event recorded at or after TIME, from version 1",
    )
    env.add_argument("--until", metavar="TIME", help="each history up to its last event recorded before TIME")
    env.add_argument(
        "--create",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="create missing tables and streams (default: yes on an emulator endpoint, no on AWS)",
    )
    env.add_argument(
        "--no-state",
        action="store_true",
        help="copy the log only; the test environment's write function builds the state",
    )
    env.add_argument(
        "--serve",
        type=int,
        metavar="PORT",
        help="then run the test environment locally (its handlers and API on PORT) until Ctrl-C",
    )

    redrive = commands.add_parser(
        "redrive",
        parents=[where],
        help="replay the aggregates a consumer's dead-lettered batches name, to that consumer, as live",
    )
    redrive.add_argument(
        "--mapping",
        action="append",
        metavar="KEY",
        help="only this mapping's queue (repeatable; default: every consumer's, e.g. events-changes-to-write)",
    )
    look = redrive.add_mutually_exclusive_group()
    look.add_argument(
        "--list", action="store_true", help="how many messages each queue holds; change nothing"
    )
    look.add_argument(
        "--peek", action="store_true", help="show each message and the aggregates it names; change nothing"
    )
    redrive.add_argument(
        "--timeout",
        type=_positive(float),
        default=300.0,
        metavar="SECONDS",
        help="how long to wait for the consumer to confirm a redrive (default 300)",
    )
    redrive.add_argument(
        "--margin",
        type=_positive(float),
        default=DEFAULT_MARGIN_S,
        metavar="SECONDS",
        help="when a range is gone from the stream, widen the batch's arrival window by this much (default 300)",
    )
    redrive.add_argument(
        "--max-messages", type=_positive(int), default=1000, metavar="N", help="at most N messages a queue"
    )
    redrive.add_argument(
        "--progress",
        choices=("auto", "rich", "json", "none"),
        default="none",
        help="the replays' progress on stderr",
    )
    return parser


def _wait_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--timeout",
        type=_positive(float),
        default=300.0,
        metavar="SECONDS",
        help="how long to wait for the write function to project a replay (default 300)",
    )
    parser.add_argument(
        "--catchup-rounds",
        type=int,
        default=3,
        metavar="N",
        help="catch-up replays for aggregates the live state moved on with (default 3)",
    )


def _report_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--limit",
        type=_positive(int),
        default=report.DEFAULT_LIMIT,
        metavar="N",
        help=f"list at most N aggregates per kind (default {report.DEFAULT_LIMIT}; --json lists all)",
    )
    parser.add_argument(
        "--exit-code",
        action="store_true",
        help=f"exit {DIFFERS_EXIT_CODE} when the rebuild differs from the live state",
    )


def settings_for(args: argparse.Namespace, environ: Mapping[str, str]) -> Settings:
    """The stack the command acts on: the environment's settings with --region and --endpoint-url, which must
    agree with the variables that name the same thing (one line naming both when they do not)."""
    try:
        return Settings.from_env(
            environ,
            region=Flag("--region", args.region),
            endpoint_url=Flag("--endpoint-url", args.endpoint_url),
        )
    except ValueError as exc:
        raise OpsUsageError(str(exc)) from exc


def _aggregates(args: argparse.Namespace) -> list[str]:
    ids = list(args.aggregate or [])
    if getattr(args, "aggregates_file", None):
        try:
            ids.extend(read_aggregates_file(args.aggregates_file))
        except UsageError as exc:
            raise OpsUsageError(str(exc)) from exc
    return ids


def preflight(settings: Settings) -> None:
    """Fail fast, with one line, when the endpoint does not answer or the stack is not there (the commands'
    own client retries for a long while, as it should for throttling)."""
    import boto3
    from botocore.config import Config

    probe = boto3.session.Session(region_name=settings.region).client(
        "dynamodb",
        endpoint_url=settings.endpoint_url,
        config=Config(retries={"mode": "standard", "max_attempts": 1}, connect_timeout=3, read_timeout=10),
    )
    where = settings.endpoint_url or f"AWS ({settings.region})"
    try:
        probe.describe_table(TableName=settings.replay_checkpoints_table)
    except EndpointConnectionError as exc:
        raise OpsError(f"cannot reach {where}") from exc
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            raise OpsError(
                f"checkpoint table {settings.replay_checkpoints_table} not found at {where} "
                "(is ES_NAME_PREFIX the stack's?)"
            ) from exc
        raise


def create_test_env(
    args: argparse.Namespace, settings: Settings, say: Say, emit: Callable[[str], None]
) -> int:
    """`python -m ops test-env`: create (or fill again) a test environment, then maybe serve it."""
    environments = TestEnvironments(settings, say=say)
    env = environments.create(
        args.prefix, selection_from(args), create=args.create, build_state=not args.no_state
    )
    if args.json:
        emit(report.as_json(env.to_dict()))
    else:
        emit(report.environment_text(env))
    if args.serve is not None:
        stop = threading.Event()
        try:
            serve(env.settings, args.serve, stop, say)
        except KeyboardInterrupt:
            stop.set()
    return 0


def redrive_command(
    args: argparse.Namespace,
    settings: Settings,
    mappings: Sequence[Any],
    say: Say,
    emit: Callable[[str], None],
) -> int:
    """`python -m ops redrive`: list, peek or redrive the dead-letter queues; exit 1 if a message is kept."""
    redrives = Redrives(
        settings,
        say=say,
        wait_timeout_s=args.timeout,
        margin_s=args.margin,
        max_messages=args.max_messages,
        progress=args.progress,
    )
    if args.list:
        queues = redrives.queues(mappings)
        emit(report.as_json({"queues": [q.to_dict() for q in queues]}) if args.json else queues_text(queues))
        return 0
    results = redrives.peek(mappings) if args.peek else redrives.redrive(mappings)
    emit(
        report.as_json({"redrive": [r.to_dict() for r in results]})
        if args.json
        else redrive_text(results, peek=args.peek)
    )
    kept = [p for r in results for p in r.problems]
    if kept and not args.peek:
        raise OpsError(f"{len(kept)} problem(s), messages kept: {kept[0]}")
    return 0


def selection_from(args: argparse.Namespace) -> Selection:
    if args.serve is not None and args.no_state:
        raise OpsUsageError(
            "--serve reads the change stream from LATEST; it needs the state built (drop --no-state)"
        )
    return Selection.build(_aggregates(args), args.since, args.until)


def run(args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO) -> int:
    """Run one parsed command; returns the exit code (errors are raised)."""
    # Arguments first: a bad one is exit 2 whatever the state of the stack.
    aggregates: list[str] = []
    mappings: Sequence[Any] = ()
    rebuild_id = getattr(args, "rebuild_id", "")
    if rebuild_id:
        check_rebuild_id(rebuild_id)
    if args.command == "rebuild":
        if args.resume:
            if args.id or args.aggregate or args.aggregates_file:
                raise OpsUsageError(
                    "--resume continues a rebuild as it was started; drop --id and --aggregate"
                )
            rebuild_id = check_rebuild_id(args.resume, "--resume")
        else:
            rebuild_id = rebuild_id_from(args.id)
            aggregates = _aggregates(args)
    if args.command == "redrive":
        mappings = choose_mappings(args.mapping or [], redriving=not (args.list or args.peek))
    if args.command == "test-env":
        target_settings(settings, args.prefix)
        selection_from(args)
        if args.serve is not None and not settings.endpoint_url:
            raise OpsUsageError(
                "--serve runs a test environment on a local endpoint (AWS_ENDPOINT_URL); on AWS, deploy its stack"
            )
    preflight(settings)

    def say(line: str) -> None:
        print(line, file=err, flush=True)

    def emit(text: str) -> None:
        print(text, file=out, flush=True)

    rebuilds = Rebuilds(
        settings,
        say=say,
        progress=getattr(args, "progress", "none"),
        pace=Pace(
            segments=getattr(args, "segments", None),
            rate=getattr(args, "rate", None),
            concurrency=getattr(args, "concurrency", 16),
            spread_shards=getattr(args, "spread_shards", True),
        ),
        wait_timeout_s=getattr(args, "timeout", 300.0),
        catchup_rounds=max(0, getattr(args, "catchup_rounds", 3)),
    )
    if args.command in ("rebuild", "diff"):
        if args.command == "diff":
            comparison = rebuilds.compare(rebuild_id)
        elif args.resume:
            comparison = rebuilds.resume(rebuild_id)
        else:
            comparison = rebuilds.rebuild(rebuild_id, aggregates)
        record = rebuilds.store.get(rebuild_id)
        assert record is not None
        if args.json:
            emit(report.diff_json(record, comparison.diff))
        else:
            emit(report.diff_text(record, comparison.diff, args.limit))
        return DIFFERS_EXIT_CODE if args.exit_code and not comparison.diff.equal else 0
    if args.command == "swap":
        result = rebuilds.swap(
            args.rebuild_id,
            include_behind=args.include_behind,
            delete_missing=args.delete_missing,
            keep_shadow=args.keep_shadow,
        )
        emit(report.swap_json(result) if args.json else report.swap_text(result, args.limit))
        return 0 if result.complete else 1
    if args.command == "drop":
        record = rebuilds.drop(args.rebuild_id, force=args.force)
        emit(report.as_json({"rebuild": record.to_dict()}) if args.json else f"{record.rebuild_id} dropped")
        return 0
    if args.command == "test-env":
        return create_test_env(args, settings, say, emit)
    if args.command == "redrive":
        return redrive_command(args, settings, mappings, say, emit)
    if args.command == "list":
        records = rebuilds.records()
        emit(
            report.as_json({"rebuilds": [r.to_dict() for r in records]})
            if args.json
            else report.records_text(records)
        )
        return 0
    raise OpsUsageError(f"unknown command {args.command}")


def main(
    argv: Sequence[str] | None = None,
    environ: Mapping[str, str] | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """The CLI: parse, run, one clear line on an error; returns the exit code."""
    env = os.environ if environ is None else environ
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
        settings = settings_for(args, env)
        return run(args, settings, out, err)
    except OpsError as exc:
        prefix = "error: " if isinstance(exc, OpsUsageError) else ""
        print(f"ops: {prefix}{exc}", file=err)
        return exc.exit_code
    except NoCredentialsError:
        print(
            "ops: no AWS credentials found (set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)",
            file=err,
        )
        return 1
    except EndpointConnectionError as exc:
        print(f"ops: cannot reach {exc.kwargs.get('endpoint_url', 'the AWS endpoint')}", file=err)
        return 1
    except ClientError as exc:
        error = exc.response.get("Error", {})
        print(f"ops: {exc.operation_name}: {error.get('Code', '')}: {error.get('Message', '')}", file=err)
        return 1
    except BotoCoreError as exc:
        print(f"ops: {exc}", file=err)
        return 1
    except KeyboardInterrupt:
        print("ops: interrupted", file=err)
        return 130
