"""`python -m benchmarks {ingest,replay} [options]`: throughput measured side by side in one run.

`python -m benchmarks --help` says what each measures and how long a default run takes (benchmarks/suites.py).
"""

from __future__ import annotations

import importlib
import sys

from benchmarks.suites import BY_NAME, overview


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark the first argument names; without one (or with --help), say what each does."""
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help") or args[0] not in BY_NAME:
        asked = bool(args) and args[0] in ("-h", "--help")
        if args and not asked:
            print(f"python -m benchmarks: no benchmark {args[0]!r}", file=sys.stderr)
        print(overview(), file=sys.stdout if asked else sys.stderr)
        return 0 if asked else 2
    module = importlib.import_module(BY_NAME[args[0]].module)
    return int(module.main(args[1:]))


if __name__ == "__main__":
    sys.exit(main())
