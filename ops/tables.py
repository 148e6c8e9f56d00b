"""Table plumbing for the operator commands: shadow tables (made like the live state table), whole-table and
by-id reads of state items, deletes. Synchronous boto3; reads go in parallel (scan segments, 100-key batches).

A shadow table gets the state table's key schema from `eventlog.resources.STATE_TABLE` (the one definition),
on-demand billing as infra deploys it, and the live table's encryption (its KMS key, when it has one), so the
rebuilt copy of the state is protected as the live one is.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from eventlog.batch import MAX_GET_KEYS, BatchIncomplete, batch_get
from eventlog.resources import STATE_TABLE
from ops.errors import OpsError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

Item = dict[str, Any]
# Reading only what a version check needs (`version` is a DynamoDB reserved word, hence the name).
VERSION_PROJECTION = {
    "ProjectionExpression": "aggregate_id, #v",
    "ExpressionAttributeNames": {"#v": "version"},
}
# A tag on every shadow table naming the live table it rebuilds, so a forgotten one can be found.
REBUILD_TAG = "eventsourcing:rebuild-of"


def describe(dynamodb: DynamoDBClient, name: str) -> dict[str, Any] | None:
    """The table's description, or None when there is no such table."""
    try:
        return dict(dynamodb.describe_table(TableName=name)["Table"])
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "ResourceNotFoundException":
            return None
        raise


def create_shadow(dynamodb: DynamoDBClient, live_table: str, name: str, timeout_s: float = 300.0) -> None:
    """Create the shadow table `name` like `live_table` (key schema, billing, encryption) and wait until it is
    active. Raises OpsError when the live table does not exist or the shadow already does."""
    live = describe(dynamodb, live_table)
    if live is None:
        raise OpsError(f"state table {live_table} not found")
    kwargs = STATE_TABLE.create_table_kwargs(name)
    sse = live.get("SSEDescription") or {}
    if sse.get("SSEType") == "KMS" and sse.get("KMSMasterKeyArn"):
        kwargs["SSESpecification"] = {
            "Enabled": True,
            "SSEType": "KMS",
            "KMSMasterKeyId": sse["KMSMasterKeyArn"],
        }
    kwargs["Tags"] = [{"Key": REBUILD_TAG, "Value": live_table}]
    try:
        dynamodb.create_table(**kwargs)
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "ResourceInUseException":
            raise OpsError(f"table {name} already exists") from exc
        raise
    dynamodb.get_waiter("table_exists").wait(
        TableName=name,
        WaiterConfig={"Delay": 1, "MaxAttempts": max(1, int(timeout_s))},
    )


def delete_table(dynamodb: DynamoDBClient, name: str) -> bool:
    """Delete a table; False when it was already gone."""
    try:
        dynamodb.delete_table(TableName=name)
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "ResourceNotFoundException":
            return False
        raise
    return True


def scan_items(
    dynamodb: DynamoDBClient, table: str, segments: int = 4, versions_only: bool = False
) -> dict[str, Item]:
    """Every item of a state table, by aggregate id (a parallel, strongly consistent scan)."""

    def segment(index: int) -> list[Item]:
        return list(_scan_segment(dynamodb, table, index, segments, versions_only))

    out: dict[str, Item] = {}
    with ThreadPoolExecutor(max_workers=segments) as pool:
        for items in pool.map(segment, range(segments)):
            for item in items:
                out[item["aggregate_id"]["S"]] = item
    return out


def _scan_segment(
    dynamodb: DynamoDBClient, table: str, index: int, total: int, versions_only: bool
) -> Iterator[Item]:
    kwargs: dict[str, Any] = {
        "TableName": table,
        "Segment": index,
        "TotalSegments": total,
        "ConsistentRead": True,
    }
    if versions_only:
        kwargs.update(VERSION_PROJECTION)
    for page in dynamodb.get_paginator("scan").paginate(**kwargs):
        yield from page.get("Items", [])


def get_items(
    dynamodb: DynamoDBClient,
    table: str,
    aggregate_ids: Iterable[str],
    versions_only: bool = False,
    threads: int = 8,
) -> dict[str, Item]:
    """The items of these aggregates that the table holds, by aggregate id (BatchGetItem through
    eventlog.batch, strongly consistent, unprocessed keys asked again with backoff, chunks in parallel)."""
    ids = list(dict.fromkeys(aggregate_ids))
    chunks = [ids[i : i + MAX_GET_KEYS] for i in range(0, len(ids), MAX_GET_KEYS)]
    out: dict[str, Item] = {}
    if not chunks:
        return out
    projection = VERSION_PROJECTION if versions_only else None

    def fetch(chunk: Sequence[str]) -> list[Item]:
        keys = [{"aggregate_id": {"S": a}} for a in chunk]
        return batch_get(dynamodb, table, keys, consistent=True, projection=projection)

    try:
        with ThreadPoolExecutor(max_workers=max(1, min(threads, len(chunks)))) as pool:
            for items in pool.map(fetch, chunks):
                for item in items:
                    out[item["aggregate_id"]["S"]] = item
    except BatchIncomplete as exc:
        raise OpsError(str(exc)) from exc  # the CLI's one line
    return out


def load_items(
    dynamodb: DynamoDBClient, table: str, aggregate_ids: Sequence[str] | None, segments: int = 4
) -> dict[str, Item]:
    """The whole table (`aggregate_ids` None) or just these aggregates' items."""
    if aggregate_ids is None:
        return scan_items(dynamodb, table, segments)
    return get_items(dynamodb, table, aggregate_ids)


def versions(
    dynamodb: DynamoDBClient, table: str, aggregate_ids: Sequence[str], scan_above: int = 5000
) -> dict[str, int]:
    """The version each of these aggregates has in a state table (absent: no item). Many ids: one scan of the
    table's keys and versions is cheaper than many batch reads."""
    if len(aggregate_ids) > scan_above:
        items = scan_items(dynamodb, table, versions_only=True)
    else:
        items = get_items(dynamodb, table, aggregate_ids, versions_only=True)
    return {a: int(item["version"]["N"]) for a, item in items.items()}
