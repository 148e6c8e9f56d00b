"""ops.tables: whole-table reads go through the scan paginator, by-id reads through eventlog.batch (bounded)."""

from __future__ import annotations

from typing import Any

import pytest

from eventlog.aws import dynamodb_client
from eventlog.batch import Backoff, put_items
from eventlog.resources import STATE_TABLE
from eventlog.settings import Settings
from ops import tables
from ops.errors import OpsError
from tests.unprocessed import Unprocessed


def state_items(n: int) -> list[dict[str, Any]]:
    return [
        {"aggregate_id": {"S": f"acct-{i:04d}"}, "version": {"N": str(i + 1)}, "state": {"S": "x" * 2000}}
        for i in range(n)
    ]


@pytest.fixture
def client(settings: Settings) -> Any:
    return dynamodb_client(settings)


@pytest.mark.timeout(30)
def test_get_items_reads_through_unprocessed_keys_and_fails_in_one_line_on_endless_ones(
    settings: Settings, client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("eventlog.batch.DEFAULT_BACKOFF", Backoff(base=0.001, cap=0.004, max_attempts=5))
    given = state_items(250)
    put_items(client, settings.state_table, given, key=STATE_TABLE.key_names)
    ids = [i["aggregate_id"]["S"] for i in given] + ["nobody"]
    with Unprocessed("BatchGetItem", withhold=20, calls=3).on(client) as fault:
        versions = tables.versions(client, settings.state_table, ids)
    assert versions == {f"acct-{i:04d}": i + 1 for i in range(250)}
    assert sum(fault.held) > 0
    with (
        Unprocessed("BatchGetItem", everything=True).on(client),
        pytest.raises(OpsError, match=f"BatchGetItem on table {settings.state_table}: .* still unprocessed"),
    ):
        tables.get_items(client, settings.state_table, ids)


def test_scan_items_reads_every_page_of_every_segment(settings: Settings, client: Any) -> None:
    given = state_items(1200)  # about 2.4 MB: several 1 MB pages
    put_items(client, settings.state_table, given, key=STATE_TABLE.key_names)
    scans: list[dict[str, Any]] = []
    client.meta.events.register(
        "provide-client-params.dynamodb.Scan", lambda params, **_: scans.append(params)
    )
    found = tables.scan_items(client, settings.state_table, segments=2)
    assert sorted(found) == sorted(i["aggregate_id"]["S"] for i in given)
    assert sum("ExclusiveStartKey" in s for s in scans) >= 2  # it did go on past a page's end
