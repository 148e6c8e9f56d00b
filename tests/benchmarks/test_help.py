"""`python -m benchmarks --help` says what each benchmark measures and how long a default run takes."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.__main__ import main
from benchmarks.suites import SUITES

ROOT = Path(__file__).resolve().parents[2]
A_DURATION = re.compile(r"about \d[\d.]* (to \d[\d.]* )?minutes?")


def test_the_overview_names_each_benchmark_what_it_measures_and_how_long_it_takes() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())  # unwrapped
    for words in (
        "ingest: events through the local HTTP API to committed state",
        "POST-to-state latency",
        "cost per million events",
        "replay: the replayer's throughput",
        "ceiling",
        "share of the stream's write ceiling",
        "emulator",
    ):
        assert words in text
    runs = text.split("default run:")[1:]
    assert len(runs) == len(SUITES)  # one default run per benchmark, each with how long it takes
    assert all(A_DURATION.search(run) for run in runs)


@pytest.mark.parametrize("suite", [s.name for s in SUITES])
def test_each_benchmarks_own_help_says_what_it_measures_and_how_long(
    suite: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as done:
        main([suite, "--help"])
    assert done.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "Measures " in text
    assert A_DURATION.search(text.split("A default run:", 1)[1])


def test_an_unknown_benchmark_is_exit_2_with_the_overview_on_stderr(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["ingestt"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("python -m benchmarks: no benchmark 'ingestt'\n")
    assert "default run:" in err
