"""`make fuzz`: Schemathesis, every check, against the whole local stack; 0 server errors and 0 hangs.

    python -m tests.fuzz.run_schemathesis [--schemathesis .venv-fuzz/bin/schemathesis] [--max-examples 25]
                                          [--seed N] [--request-timeout 20] [-- extra schemathesis args]

It starts the stack in this process (devstack.stack.LocalStack: embedded AWS, pollers, fakes, the API Gateway
stand-in, on free ports), runs `schemathesis run api/openapi.yaml --checks all` against it (Schemathesis lives
in a venv of its own, made by `make fuzz` from requirements-fuzz.lock), and then counts, on the server's side,
every request the gateway answered. It fails (exit 1) when Schemathesis fails, when any answer was a 5xx,
when a function raised, or when the run does not finish within its time bound (a hang).
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

from devstack.stack import LocalStack

ROOT = Path(__file__).resolve().parents[2]
DOCUMENT = ROOT / "api" / "openapi.yaml"
CONFIG = Path(__file__).with_name("schemathesis.toml")


class Served(logging.Handler):
    """Counts the gateway's answers by status (from its one log line per request) and keeps its errors."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.statuses: Counter[int] = Counter()
        self.errors: list[str] = []
        self._lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        with self._lock:
            if record.levelno >= logging.ERROR:
                self.errors.append(record.getMessage().splitlines()[0])
            args = record.args if isinstance(record.args, tuple) else ()
            status = next((a for a in args if isinstance(a, int) and 100 <= a <= 599), None)
            if status is not None and "->" in str(record.msg):
                self.statuses[status] += 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz.run_schemathesis", description=__doc__)
    parser.add_argument("--schemathesis", default=str(ROOT / ".venv-fuzz" / "bin" / "schemathesis"))
    parser.add_argument("--max-examples", type=int, default=25, help="per operation and phase (default 25)")
    parser.add_argument("--seed", type=int, default=None, help="default: a random one, printed")
    parser.add_argument("--request-timeout", type=float, default=20.0, help="a request slower is a hang")
    parser.add_argument("--time-limit", type=float, default=600.0, help="the whole run, seconds")
    parser.add_argument("extra", nargs="*", help="more schemathesis arguments (after --)")
    args = parser.parse_args(argv)
    if not Path(args.schemathesis).exists():
        print(f"fuzz: {args.schemathesis} not found; `make fuzz` builds it", file=sys.stderr)
        return 2
    seed = args.seed if args.seed is not None else random.randrange(2**31)

    served = Served()
    gateway_log = logging.getLogger("devstack.http")
    gateway_log.addHandler(served)
    gateway_log.setLevel(logging.INFO)
    # A function that raised is logged by the gateway (502) and, with its traceback, by the function.
    logging.getLogger().addHandler(_ErrorsOnly(served))
    started = time.monotonic()
    with LocalStack(port=0, aws_port=0) as stack:
        command = [
            args.schemathesis,
            "--config-file",
            str(CONFIG),
            "--no-color",
            "run",
            str(DOCUMENT),
            "--url",
            stack.url,
            "--checks",
            "all",
            "--max-examples",
            str(args.max_examples),
            "--seed",
            str(seed),
            "--request-timeout",
            str(args.request_timeout),
            "--generation-database",
            "none",
            "--workers",
            "2",
            *args.extra,
        ]
        print(f"fuzz: {' '.join(command)}", flush=True)
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        try:
            result = subprocess.run(command, cwd=ROOT, env=env, timeout=args.time_limit, check=False)
            code = result.returncode
        except subprocess.TimeoutExpired:
            print(
                f"fuzz: schemathesis did not finish within {args.time_limit:.0f} s (a hang?)", file=sys.stderr
            )
            code = 1
    elapsed = time.monotonic() - started
    server_errors = sum(n for status, n in served.statuses.items() if status >= 500)
    histogram = ", ".join(f"{status}: {n}" for status, n in sorted(served.statuses.items()))
    print(
        f"fuzz: seed {seed}; {sum(served.statuses.values())} requests answered in {elapsed:.0f} s ({histogram}); "
        f"{server_errors} server errors; {len(served.errors)} errors logged",
        flush=True,
    )
    for error in served.errors[:20]:
        print(f"fuzz: logged: {error}", file=sys.stderr)
    if code != 0:
        print(f"fuzz: schemathesis failed (exit {code}); reproduce with --seed {seed}", file=sys.stderr)
        return 1
    if server_errors or served.errors:
        print("fuzz: the stack answered 5xx or logged errors (see above)", file=sys.stderr)
        return 1
    if not served.statuses:
        print("fuzz: the stack answered no request", file=sys.stderr)
        return 1
    return 0


class _ErrorsOnly(logging.Handler):
    def __init__(self, served: Served) -> None:
        super().__init__(logging.ERROR)
        self._served = served

    def emit(self, record: logging.LogRecord) -> None:
        if record.name != "devstack.http":  # those are counted by Served already
            self._served.emit(record)


if __name__ == "__main__":
    sys.exit(main())
