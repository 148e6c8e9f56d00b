"""Run every test module on its own, in a pytest process of its own, and report the ones that fail alone.

A module that passes in the whole suite but fails alone leans on something another module set up (an import,
an environment variable, a loop, moto state, a cache). `make test-modules` runs this; see the Makefile.

    python -m tests.each_module [--jobs 2] [MODULE ...] [-- PYTEST_ARGS ...]

Each run keeps pytest-randomly on (a random order within the module); a failing module's seed is printed so
that the run can be repeated with `python -m pytest MODULE --randomly-seed=N`.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOGS = ROOT / "build" / "test-modules"
SEED = re.compile(r"Using --randomly-seed=(\d+)")


@dataclass
class Outcome:
    module: str
    returncode: int
    seconds: float
    summary: str
    seed: str | None
    output: str


def modules() -> list[str]:
    """Every test module under tests/, as a path relative to the repository root."""
    return sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").rglob("test_*.py"))


def run_alone(module: str, pytest_args: list[str]) -> Outcome:
    """One pytest process for this module and nothing else."""
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", module, *pytest_args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    lines = done.stdout.strip().splitlines()
    seed = SEED.search(done.stdout)
    return Outcome(
        module,
        done.returncode,
        time.monotonic() - start,
        lines[-1] if lines else done.stderr.strip()[-200:],
        seed.group(1) if seed else None,
        done.stdout + done.stderr,
    )


def main(argv: list[str] | None = None) -> int:
    """Run the modules (all by default) two at a time; exit 1 if any failed alone."""
    argv = list(sys.argv[1:] if argv is None else argv)
    pytest_args: list[str] = []
    if "--" in argv:
        at = argv.index("--")
        argv, pytest_args = argv[:at], argv[at + 1 :]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2, help="modules run at the same time (default 2)")
    parser.add_argument("--verbose", action="store_true", help="print each failing module's whole output")
    parser.add_argument("module", nargs="*", help="test modules (default: every tests/**/test_*.py)")
    options = parser.parse_args(argv)
    chosen = options.module or modules()
    # pytest exits 5 when it collects no test at all (say, every test deselected by -k): not a failure here.
    ok = {0, 5}
    start = time.monotonic()
    failed: list[Outcome] = []
    with ThreadPoolExecutor(max_workers=max(1, options.jobs)) as pool:
        futures = [pool.submit(run_alone, module, pytest_args) for module in chosen]
        for future in as_completed(futures):
            outcome = future.result()
            mark = "ok  " if outcome.returncode in ok else "FAIL"
            print(f"{mark} {outcome.seconds:6.1f}s  {outcome.module}  {outcome.summary}", flush=True)
            if outcome.returncode not in ok:
                failed.append(outcome)
    print(f"{len(chosen)} modules alone in {time.monotonic() - start:.0f}s, {options.jobs} at a time")
    for outcome in sorted(failed, key=lambda o: o.module):
        print(
            f"\nFAILED alone: {outcome.module} (re-run: python -m pytest {outcome.module} "
            f"--randomly-seed={outcome.seed or 'N'})"
        )
        log = LOGS / (outcome.module.replace("/", ".") + ".log")
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(outcome.output, encoding="utf-8")
        tail = outcome.output if options.verbose else "\n".join(outcome.output.splitlines()[-25:])
        print(tail)
        print(f"(whole output: {log.relative_to(ROOT)})")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
