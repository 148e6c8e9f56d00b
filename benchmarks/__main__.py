"""`python -m benchmarks {ingest,replay} [options]`: throughput measured side by side in one run."""

from __future__ import annotations

import importlib
import sys

SUITES = {
    "ingest": "benchmarks.ingest",
    "replay": "benchmarks.replay",
}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help") or args[0] not in SUITES:
        print("usage: python -m benchmarks {" + ",".join(SUITES) + "} [options]   (each takes --help)")
        return 0 if args and args[0] in ("-h", "--help") else 2
    module = importlib.import_module(SUITES[args[0]])
    return int(module.main(args[1:]))


if __name__ == "__main__":
    sys.exit(main())
