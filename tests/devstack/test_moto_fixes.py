"""The embedded AWS's fixes to moto (devstack/moto_fixes.py): each test fails on stock moto 5.2.5."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from botocore.exceptions import ClientError

from eventlog.settings import Settings
from tests.support import TableStreamReader


def put(table: str, key: str, version: int) -> dict[str, Any]:
    return {
        "Put": {
            "TableName": table,
            "Item": {
                "aggregate_id": {"S": key},
                "version": {"N": str(version)},
                "event_id": {"S": f"{key}-{version}"},
            },
            "ConditionExpression": "attribute_not_exists(version)",
        }
    }


def test_a_cancelled_transaction_leaves_no_items_and_no_stream_records(
    settings: Settings, dynamodb: Any
) -> None:
    table = settings.events_table
    dynamodb.transact_write_items(TransactItems=[put(table, "a", 2)])
    with pytest.raises(ClientError) as cancelled:
        # the first action would succeed, the second fails its condition: neither may happen
        dynamodb.transact_write_items(TransactItems=[put(table, "a", 1), put(table, "a", 2)])
    reasons = [r["Code"] for r in cancelled.value.response["CancellationReasons"]]  # type: ignore[typeddict-item]
    assert reasons == ["None", "ConditionalCheckFailed"]
    items = dynamodb.scan(TableName=table)["Items"]
    assert [int(i["version"]["N"]) for i in items] == [2]
    records = TableStreamReader(settings, table).read()
    assert [r["dynamodb"]["Keys"]["version"]["N"] for r in records] == ["2"]


def test_writes_made_during_other_transactions_are_never_lost(settings: Settings, dynamodb: Any) -> None:
    table = settings.events_table
    dynamodb.transact_write_items(TransactItems=[put(table, "busy", 1)])
    errors: list[BaseException] = []

    def failing_transactions() -> None:
        for _ in range(30):
            try:
                dynamodb.transact_write_items(TransactItems=[put(table, "busy", 2), put(table, "busy", 1)])
            except ClientError:
                pass
            except BaseException as exc:  # pragma: no cover - the failure this test exists to catch
                errors.append(exc)

    def plain_puts() -> None:
        for n in range(60):
            try:
                dynamodb.put_item(
                    TableName=table, Item={"aggregate_id": {"S": f"p-{n}"}, "version": {"N": "1"}}
                )
            except BaseException as exc:  # pragma: no cover
                errors.append(exc)

    threads = [threading.Thread(target=failing_transactions), threading.Thread(target=plain_puts)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    keys = {i["aggregate_id"]["S"] for i in dynamodb.scan(TableName=table)["Items"]}
    assert {f"p-{n}" for n in range(60)} <= keys
    assert (
        dynamodb.get_item(TableName=table, Key={"aggregate_id": {"S": "busy"}, "version": {"N": "2"}}).get(
            "Item"
        )
        is None
    )


def test_a_taken_port_is_a_clear_error_not_a_hang() -> None:
    import socket

    from devstack.embedded_aws import EmbeddedAWS

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{port}"):
            EmbeddedAWS(port=port).start()
