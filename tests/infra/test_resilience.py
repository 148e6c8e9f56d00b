"""What a failing batch may cost and what a lost table would lose, held to what docs/deploy.md promises.

Under Pulumi's mocks: each mapping's retries, maximum record age, bisect and dead-letter queue are the ones the
deploy guide's "Failed batches" table lists (the table is read from the guide, so the two cannot drift apart);
a poison record cannot stall a consumer for long, while the pump may wait for as long as the ingest stream
keeps its records; the iterator-age alarms fire within minutes; and every table whose loss the log cannot
repair is backed up and kept on destroy, table by table.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from eventlog.resources import STREAMS, TABLES, stream_spec
from eventlog.settings import default_name
from eventlog.topology import MAPPINGS, MappingSpec
from infra.config import ConfigError, StackArgs
from tests.infra.harness import PREFIX, Deployed, deploy, stack_args
from tests.infra.mocks import AwsMocks, Recorded

TABLE = "aws:dynamodb/table:Table"
STREAM = "aws:kinesis/stream:Stream"
FUNCTION = "aws:lambda/function:Function"
MAPPING = "aws:lambda/eventSourceMapping:EventSourceMapping"
QUEUE = "aws:sqs/queue:Queue"
ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
GUIDE = Path(__file__).resolve().parents[2] / "docs" / "deploy.md"
# What the issue asks of a consumer's mapping: a poison record holds its shard for minutes, not hours.
MAX_CONSUMER_RETRIES = 10
# Tables whose loss loses what the log cannot give back (docs/deploy.md, "Tearing down", says why for each).
BACKED_UP = {"events", "event_status", "idempotency", "gateway_recordings"}


@pytest.fixture(scope="module")
def default() -> Deployed:
    return deploy()


def guide_table(heading: str) -> dict[str, list[str]]:
    """The rows of the first table under `heading` in the deploy guide: first cell (without backticks) ->
    the other cells."""
    text = GUIDE.read_text(encoding="utf-8")
    assert heading in text, f"docs/deploy.md has no {heading!r}"
    section = text.split(heading, 1)[1]
    rows: dict[str, list[str]] = {}
    for line in section.splitlines():
        if not line.startswith("|"):
            if rows:
                break
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if set(cells[0]) <= {"-", ":", " "} or cells[0] in ("mapping", "stream", "table"):
            continue
        rows[cells[0].strip("`")] = cells[1:]
    return rows


def first_int(cell: str) -> int:
    match = re.search(r"-?\d+", cell.replace(",", ""))
    assert match, f"no number in {cell!r}"
    return int(match.group())


def mapping_of(mocks: AwsMocks, spec: MappingSpec) -> Recorded:
    fn = mocks.named(FUNCTION, f"{PREFIX}-{spec.function}").arn
    if spec.source_kind == "kinesis":
        source = mocks.named(STREAM, default_name(PREFIX, spec.source)).arn
    else:
        source = mocks.named(TABLE, default_name(PREFIX, spec.source)).outputs["streamArn"]
    [m] = [
        m
        for m in mocks.of_type(MAPPING)
        if m.inputs["functionName"] == fn and m.inputs["eventSourceArn"] == source
    ]
    return m


# -- failed batches -------------------------------------------------------------------------------------------


def test_the_guide_lists_every_mapping_and_nothing_else() -> None:
    assert set(guide_table("### Failed batches")) == {m.key for m in MAPPINGS}


@pytest.mark.parametrize("spec", MAPPINGS, ids=lambda m: m.key)
def test_each_mapping_is_deployed_with_the_documented_limits(default: Deployed, spec: MappingSpec) -> None:
    retries, age, bisect, dead_letters, *_ = guide_table("### Failed batches")[spec.key]
    m = mapping_of(default.mocks, spec).inputs
    assert m["maximumRetryAttempts"] == first_int(retries)
    assert m["maximumRecordAgeInSeconds"] == first_int(age)
    assert m["bisectBatchOnFunctionError"] is (bisect == "yes")
    queue = default.mocks.named(QUEUE, spec.dead_letter_queue(PREFIX))
    assert m["destinationConfig"] == {"onFailure": {"destinationArn": queue.arn}}
    assert queue.inputs["messageRetentionSeconds"] == first_int(dead_letters) * 24 * 3600


@pytest.mark.parametrize("spec", [m for m in MAPPINGS if m.function != "pump"], ids=lambda m: m.key)
def test_a_consumer_gives_up_on_a_poison_batch_while_its_range_is_still_in_the_stream(
    default: Deployed, spec: MappingSpec
) -> None:
    m = mapping_of(default.mocks, spec).inputs
    assert 0 <= m["maximumRetryAttempts"] <= MAX_CONSUMER_RETRIES
    assert m["bisectBatchOnFunctionError"] is True
    # A table's change stream keeps records 24 h; a Kinesis stream its retention. The dead letter must come
    # while the range it names can still be read back (ops redrive reads it), with hours to spare.
    retention_s = 24 * 3600
    if spec.source_kind == "kinesis":
        retention_s = (
            default.mocks.named(STREAM, default_name(PREFIX, spec.source)).inputs["retentionPeriod"] * 3600
        )
    assert 60 <= m["maximumRecordAgeInSeconds"] <= retention_s - 12 * 3600


def test_the_pump_waits_until_a_day_before_the_ingest_stream_drops_a_record(default: Deployed) -> None:
    [pump] = [m for m in MAPPINGS if m.function == "pump"]
    m = mapping_of(default.mocks, pump).inputs
    ingest = default.mocks.named(STREAM, default_name(PREFIX, "ingest")).inputs
    assert m["maximumRetryAttempts"] == -1  # stream order is version order: never skip a batch early
    assert ingest["retentionPeriod"] >= 7 * 24  # outlasts a realistic outage
    assert m["maximumRecordAgeInSeconds"] == ingest["retentionPeriod"] * 3600 - 24 * 3600


@pytest.mark.parametrize("spec", STREAMS, ids=lambda s: s.key)
def test_each_stream_keeps_records_as_documented(default: Deployed, spec: Any) -> None:
    hours = guide_table("### Stream retention")[spec.key][0]
    deployed = default.mocks.named(STREAM, default_name(PREFIX, spec.key)).inputs["retentionPeriod"]
    assert deployed == first_int(hours) == stream_spec(spec.key).retention_hours


def test_a_record_age_the_stream_would_outlive_is_refused() -> None:
    # 24 h of retention and the pump's 6 days of patience: the record would be dropped, unseen, first.
    with pytest.raises(
        ConfigError, match=r"maxRecordAgeSeconds for pump \(518400\) must be less than the ingest"
    ):
        StackArgs(prefix="es-unit", stream_retention_hours={"ingest": 24})
    # Both changed together is fine.
    StackArgs(
        prefix="es-unit", stream_retention_hours={"ingest": 24}, max_record_age_seconds={"pump": 20 * 3600}
    )
    with pytest.raises(ConfigError, match="maxRetryAttempts names 'query', which no stream feeds"):
        StackArgs(prefix="es-unit", max_retry_attempts={"query": 1})


# -- alarms ---------------------------------------------------------------------------------------------------


def minutes_to_fire(alarm: dict[str, Any]) -> float:
    """For a consumer that stops moving at t=0: the age passes the threshold at threshold/60000 minutes, then
    `datapointsToAlarm` one-period maxima over it fire the alarm."""
    return alarm["threshold"] / 60_000 + alarm["datapointsToAlarm"] * alarm["period"] / 60


def test_iterator_age_alarms_fire_within_five_minutes_of_a_stall(default: Deployed) -> None:
    alarms = {a.inputs["name"]: a.inputs for a in default.mocks.of_type(ALARM)}
    lagging = [alarms[f"{PREFIX}-{f}-iterator-age"] for f in sorted({m.function for m in MAPPINGS})]
    lagging.append(alarms[f"{PREFIX}-ingest-read-age"])
    for alarm in lagging:
        assert minutes_to_fire(alarm) <= 5, alarm["name"]
        assert alarm["evaluationPeriods"] >= alarm["datapointsToAlarm"]
    stream = alarms[f"{PREFIX}-ingest-read-age"]
    assert (stream["namespace"], stream["metricName"]) == (
        "AWS/Kinesis",
        "GetRecords.IteratorAgeMilliseconds",
    )
    assert stream["dimensions"] == {"StreamName": f"{PREFIX}-ingest"}
    # Nobody reading the ingest stream at all is the worst stall: no data counts as breaching.
    assert stream["treatMissingData"] == "breaching"


# -- backups --------------------------------------------------------------------------------------------------


def test_the_guide_names_the_same_tables_as_backed_up() -> None:
    documented = guide_table("### What is kept")
    assert {key for key, cells in documented.items() if cells[0].startswith("yes")} == BACKED_UP
    assert set(documented) == {t.key for t in TABLES}


@pytest.mark.parametrize("spec", TABLES, ids=lambda t: t.key)
def test_each_table_is_backed_up_and_kept_exactly_when_the_log_cannot_rebuild_it(
    default: Deployed, spec: Any
) -> None:
    t = default.mocks.named(TABLE, default_name(PREFIX, spec.key))
    wanted = spec.key in BACKED_UP
    assert spec.backed_up is wanted
    assert t.inputs["pointInTimeRecovery"] == {"enabled": wanted}
    assert t.inputs["deletionProtectionEnabled"] is wanted
    assert t.options["retainOnDelete"] is wanted


def test_a_throwaway_stack_keeps_nothing_but_still_backs_up() -> None:
    mocks = deploy(stack_args(keep_event_log=False)).mocks
    for spec in TABLES:
        t = mocks.named(TABLE, default_name(PREFIX, spec.key))
        assert t.options["retainOnDelete"] is False, spec.key
        assert t.inputs["deletionProtectionEnabled"] is False, spec.key
        assert t.inputs["pointInTimeRecovery"] == {"enabled": spec.key in BACKED_UP}, spec.key
