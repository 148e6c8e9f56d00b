"""`python -m devstack`: run the whole stack on this machine, no AWS account needed.

    python -m devstack [--host 127.0.0.1] [--port 8080] [--aws-port 0] [--env-file .devstack/env]
    python -m devstack demo [--url http://127.0.0.1:8080] [--section NAME ...] [--env-file .devstack/env]

The first starts the embedded AWS, creates every table and stream, starts the stream pollers and the API, and
prints the API's URL, the `export` lines that point other commands at the embedded AWS, and the resource names;
it also writes those lines to the env file (removed when it stops). Ctrl-C (or SIGTERM) stops it; a second
Ctrl-C stops it without waiting. The second runs a scripted session against a running stack, reading the env
file when there is one (so it can replay and read tables as well as call the API).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from devstack.demo import SECTIONS, section_name
from devstack.envfile import DEFAULT_ENV_FILE, EnvFileError, remove_env_file, write_env_file
from devstack.stack import LocalStack, StackError


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not between 0 and 65535")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m devstack",
        description="Run the event sourcing stack locally: embedded AWS, stream pollers and the HTTP API.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address the API listens on (default 127.0.0.1)")
    parser.add_argument(
        "--port", type=_port, default=8080, help="the API's port (default 8080; 0 = any free)"
    )
    parser.add_argument(
        "--aws-port", type=_port, default=0, help="the embedded AWS endpoint's port (default 0 = any free)"
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="the devstack's own log on stderr (handlers log per POWERTOOLS_LOG_LEVEL, default WARNING)",
    )
    parser.add_argument(
        "--env-file",
        type=Path,
        default=DEFAULT_ENV_FILE,
        help=f"where to write the stack's export lines (default {DEFAULT_ENV_FILE}; removed on stop)",
    )
    commands = parser.add_subparsers(dest="command", metavar="{demo}")
    demo = commands.add_parser("demo", help="run a scripted session against a running stack")
    demo.add_argument(
        "--url",
        default=None,
        help="the API's URL (default ES_API_URL from the env file or the environment, else http://127.0.0.1:8080)",
    )
    demo.add_argument(
        "--timeout", type=float, default=15.0, help="seconds to wait for each commit (default 15)"
    )
    demo.add_argument(
        "--section",
        action="append",
        choices=[section_name(m) for m in SECTIONS],
        help="run only this part (repeatable; default all, in order)",
    )
    demo.add_argument(
        "--env-file",
        type=Path,
        default=DEFAULT_ENV_FILE,
        help=f"the running stack's environment, read when it exists (default {DEFAULT_ENV_FILE})",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the stack (or the demo); returns the exit code."""
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        from devstack.demo import run_demo

        return run_demo(args.url, timeout=args.timeout, sections=args.section, env_file=args.env_file)
    logging.basicConfig(
        level=args.log_level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # botocore says "Found credentials in environment variables" for every client it makes.
    logging.getLogger("botocore").setLevel(max(logging.WARNING, logging.getLogger().level))
    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if stopping.is_set():
            # A second Ctrl-C while stopping: the user is not waiting for a stuck handler to finish.
            print("devstack: stopped without waiting", file=sys.stderr, flush=True)
            os._exit(130)
        stopping.set()

    # Ctrl-C and SIGTERM both mean "stop cleanly"; the main thread notices and takes the stack down.
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    stack = LocalStack(host=args.host, port=args.port, aws_port=args.aws_port)
    try:
        stack.start()
    except StackError as exc:
        print(f"devstack: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        # Whatever else stops the start is one line too (the traceback at --log-level DEBUG), and exit 1.
        logging.getLogger("devstack").debug("the stack could not start", exc_info=True)
        first_line = (str(exc).strip().splitlines() or [""])[0]
        print(f"devstack: the stack could not start: {type(exc).__name__}: {first_line}", file=sys.stderr)
        return 1
    written: str | None = None
    try:
        try:
            written = write_env_file(args.env_file, stack.export_lines())
        except EnvFileError as exc:
            # The stack works without it; only `demo`'s replay sections need it.
            print(f"devstack: {exc} (the demo then needs the export lines below)", file=sys.stderr)
        print(banner(stack, args.env_file if written is not None else None), flush=True)
        while not stopping.wait(0.5):
            pass
        print("devstack: stopping ...", file=sys.stderr, flush=True)
    finally:
        if written is not None:
            remove_env_file(args.env_file, written)
        stack.stop()
    print("devstack: stopped", file=sys.stderr, flush=True)
    return 0


def banner(stack: LocalStack, env_file: Path | None = None) -> str:
    """What a user needs to use the running stack: the API, the environment for other commands, the names."""
    width = max(len(k) for k in stack.resource_names())
    # `make demo` runs the demo with the project's .venv whatever the shell's python is; outside the repository
    # there is no Makefile, and the user's own python is the one that runs this stack.
    demo = (
        f'make demo ARGS="--url {stack.url} --section basics"'
        if Path("Makefile").exists()
        else f"python -m devstack demo --url {stack.url} --section basics"
    )
    opened = '{"type": "AccountOpened", "payload": {"owner": "Ada"}}'
    lines = [
        f"API: {stack.url}",
        "  try, from another terminal in this folder:",
        f"    {demo}",
        f"    curl -s -X POST {stack.url}/aggregates/acct-1/events -H 'Content-Type: application/json' -d '{opened}'",
        "  (python -m replayer, python -m ops and the other commands need the project's virtualenv first:",
        "   . .venv/bin/activate)",
        "",
        "Point other commands (replayer, benchmarks, aws cli) at this stack"
        + (f" (or: source {env_file}):" if env_file is not None else ":"),
        *(f"  {line}" for line in stack.export_lines()),
        "",
        "Resources:",
        *(f"  {key.ljust(width)}  {name}" for key, name in stack.resource_names().items()),
        "",
        "External systems the service function calls (fakes unless the environment named them):",
        *(f"  {name.ljust(width)}  {url}" for name, url in stack.external_systems().items()),
        "",
        "Ctrl-C stops the stack (and forgets its data).",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
