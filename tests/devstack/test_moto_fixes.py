"""The embedded AWS's fixes to moto (devstack/moto_fixes.py): each test fails on stock moto 5.2.5."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from botocore.exceptions import ClientError
from moto.dynamodb.models import DynamoDBBackend

from devstack.moto_fixes import SerialisedApp
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


def test_writes_made_during_other_transactions_are_never_lost(
    settings: Settings, dynamodb: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a transaction that will be cancelled (its second put fails its condition), and a plain put from
    # another client sent while the transaction is in the emulator: stock moto applies the first put, then
    # rolls back to a copy of the table taken before, losing whatever was written meanwhile. To make sure
    # something is written meanwhile, the transaction's first put waits (up to 1 s) for the plain put to be
    # answered; an emulator that keeps the plain put out until the transaction is over just costs the wait.
    table = settings.events_table
    dynamodb.transact_write_items(TransactItems=[put(table, "busy", 1)])
    started, put_answered = threading.Event(), threading.Event()
    transact, put_item = DynamoDBBackend.transact_write_items, DynamoDBBackend.put_item

    def noted_transaction(self: DynamoDBBackend, *args: Any, **kwargs: Any) -> Any:
        started.set()
        return transact(self, *args, **kwargs)

    def held_put_item(
        self: DynamoDBBackend, table_name: str, item: dict[str, Any], *args: Any, **kw: Any
    ) -> Any:
        if item.get("event_id") == {"S": "busy-2"}:
            put_answered.wait(1.0)
        return put_item(self, table_name, item, *args, **kw)

    monkeypatch.setattr(DynamoDBBackend, "transact_write_items", noted_transaction)
    monkeypatch.setattr(DynamoDBBackend, "put_item", held_put_item)
    errors: list[BaseException] = []

    def cancelled_transaction() -> None:
        try:
            dynamodb.transact_write_items(TransactItems=[put(table, "busy", 2), put(table, "busy", 1)])
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "TransactionCanceledException":
                errors.append(exc)
        except BaseException as exc:  # pragma: no cover - the failure this test exists to catch
            errors.append(exc)

    def plain_put() -> None:
        try:
            assert started.wait(10), "the transaction never reached the emulator"
            dynamodb.put_item(
                TableName=table, Item={"aggregate_id": {"S": "meanwhile"}, "version": {"N": "1"}}
            )
            put_answered.set()
        except BaseException as exc:  # pragma: no cover
            errors.append(exc)

    threads = [threading.Thread(target=cancelled_transaction), threading.Thread(target=plain_put)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert errors == []
    keys = {(i["aggregate_id"]["S"], i["version"]["N"]) for i in dynamodb.scan(TableName=table)["Items"]}
    assert keys == {("busy", "1"), ("meanwhile", "1")}


def test_one_request_at_a_time_reaches_moto() -> None:
    # moto's backends are not thread-safe: two requests reach the emulator's app at once, and the first is
    # held inside moto (here, a stand-in app) until the second has arrived at the middleware, then a little
    # longer for it to come in too, which it would at once if let.
    guard = threading.Lock()
    arrived, inside, most = 0, 0, 0
    both_arrived, second_inside = threading.Event(), threading.Event()

    class Counted(SerialisedApp):
        def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
            nonlocal arrived
            with guard:
                arrived += 1
                if arrived == 2:
                    both_arrived.set()
            return super().__call__(environ, start_response)

    def moto_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        nonlocal inside, most
        with guard:
            inside += 1
            most = max(most, inside)
            if inside > 1:
                second_inside.set()
        both_arrived.wait(10)
        second_inside.wait(0.3)
        with guard:
            inside -= 1
        return [b"{}"]

    app = Counted(moto_app)
    threads = [threading.Thread(target=app, args=({}, lambda *a: None)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert both_arrived.is_set()
    assert most == 1


def test_a_taken_port_is_a_clear_error_not_a_hang() -> None:
    import socket

    from devstack.embedded_aws import EmbeddedAWS

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{port}"):
            EmbeddedAWS(port=port).start()
