"""`python -m benchmarks replay` runs end to end on a small data set and reports every figure the issue asks
for (the figures themselves are for the benchmark to measure, not for a test to assert)."""

from __future__ import annotations

import orjson
import pytest

from benchmarks import replay
from benchmarks._replay_data import make_dataset
from benchmarks._replay_model import check_taken


def test_the_benchmark_reports_every_figure(capsys: pytest.CaptureFixture[str]) -> None:
    code = replay.main(["--events", "400", "--repeats", "1", "--emulator-events", "200", "--json"])
    out = capsys.readouterr().out
    assert code == 0
    result = orjson.loads(out)
    for key in ("replayer_events_per_s_per_core", "botocore_events_per_s_per_core"):
        assert result["ceiling"][key] > 0
    for model in ("model", "model_spread"):
        for key in ("share_of_ceiling", "order_violations", "lost", "duplicates", "busiest_shard_share"):
            assert key in result[model]
        assert (result[model]["order_violations"], result[model]["lost"]) == (0, 0)
        assert result[model]["injected"] > 0
    assert (result["model"]["spread_shards"], result["model_spread"]["spread_shards"]) == (False, True)
    one = result["one_aggregate"]
    assert (one["events"], one["order_violations"], one["lost"]) == (300, 0, 0)
    assert one["events_per_s"] > 0
    for key in ("replayer_events_per_s", "baseline_events_per_s"):
        assert result["emulator"][key] > 0
    assert (
        result["emulator"]["replayer_delivered"]
        == result["emulator"]["baseline_delivered"]
        == result["emulator"]["events"]
    )
    assert set(result["goals"]) >= {
        "ceiling_at_least_40k_per_core",
        "model_nothing_lost",
        "model_spread_nothing_lost",
    }


def test_the_model_check_finds_lost_repeated_and_reordered_events() -> None:
    expected = [("a", 1), ("a", 2), ("a", 3), ("b", 1)]
    taken = {"0": [["a", 1, 0.0], ["a", 3, 0.1], ["a", 2, 0.2], ["a", 3, 0.3]], "1": []}
    assert check_taken(expected, taken) == {
        "lost": 1,
        "unexpected": 0,
        "duplicates": 1,
        "order_violations": 1,
    }


def test_the_data_is_the_same_for_the_same_seed_and_head_keeps_whole_aggregates() -> None:
    first, second = make_dataset(500, seed=3), make_dataset(500, seed=3)
    assert first.items == second.items
    head = first.head(100)
    assert len(head.events) <= 100
    last = head.events[-1].aggregate_id
    assert all(e.aggregate_id != last for e in first.events[len(head.events) :])


def test_bad_options_are_refused() -> None:
    with pytest.raises(SystemExit):
        replay.main(["--only", "nothing"])
