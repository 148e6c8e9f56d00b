"""`python -m benchmarks ingest` runs end to end and its counts are the calls the handlers really make."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from benchmarks import ingest
from benchmarks.meter import CallMeter, item_size, write_units


def test_a_small_run_commits_every_event_and_counts_requests_per_event(
    settings: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # `settings` resets the emulator first: moto's state is per process, and the benchmark's stack shares it.
    assert ingest.main(["--events", "40", "--aggregates", "8", "--clients", "4", "--json"]) == 0
    result = orjson.loads(capsys.readouterr().out)
    assert result["events"] == 40
    assert result["events_per_s"] > 0
    assert 0 < result["latency_ms"]["p50"] <= result["latency_ms"]["p99"]
    per_op = result["requests_by_operation_per_event"]
    # every event is put on the ingest stream once and noted as pending once
    assert per_op["kinesis:PutRecord"] == 1.0
    # every event: pending status (1), a transaction with its status (2 items x 2 units), its outcome (1); and
    # at most one state write (an account with several events in one write batch is written once)
    assert 6.0 < result["per_event"]["dynamodb_write_units"] <= 7.0
    assert (
        result["cost_per_million_events_usd"]["total"] > result["cost_per_million_events_usd"]["api_gateway"]
    )


def test_bad_arguments_are_refused_with_a_message(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        ingest.main(["--events", "5", "--aggregates", "9"])
    assert exit_.value.code == 2
    assert "--aggregates must not exceed --events" in capsys.readouterr().err


def test_the_meter_counts_write_units_by_dynamodb_rules(dynamodb: Any, settings: Any) -> None:
    meter = CallMeter()
    meter.attach(dynamodb)
    small = {"aggregate_id": {"S": "a"}, "version": {"N": "1"}}
    big = {"aggregate_id": {"S": "b"}, "version": {"N": "1"}, "blob": {"S": "x" * 2500}}
    dynamodb.put_item(TableName=settings.state_table, Item={"aggregate_id": {"S": "a"}})
    dynamodb.transact_write_items(
        TransactItems=[{"Put": {"TableName": settings.events_table, "Item": item}} for item in (small, big)]
    )
    assert item_size(big) > 2048
    assert write_units(item_size(big)) == 3
    assert meter.write_units == 1 + 2 * (1 + 3)
    assert meter.calls == {"dynamodb:PutItem": 1, "dynamodb:TransactWriteItems": 1}
