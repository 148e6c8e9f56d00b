"""Counting the AWS requests and DynamoDB capacity units that code actually spends, from its own calls.

Attach a `CallMeter` to boto3 clients (`meter.attach(client)`): every API call is counted by service and
operation, and DynamoDB read/write units are computed from the items written (request) and read (response)
with DynamoDB's sizing rules: a write unit per 1 KB written (twice for transactional writes), a read unit per
4 KB read strongly consistently (half for eventually consistent reads). UpdateItem and DeleteItem are counted
from the request's size, which for this project's small status items is the item's size.
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from typing import Any

import orjson


def attribute_size(value: dict[str, Any]) -> int:
    """Approximate stored size of one DynamoDB attribute value (wire form)."""
    ((kind, inner),) = value.items()
    if kind == "S":
        return len(inner.encode())
    if kind == "N":
        return (len(inner.lstrip("-").replace(".", "")) + 1) // 2 + 1
    if kind == "B":
        return len(inner) if isinstance(inner, bytes | bytearray) else len(inner) * 3 // 4
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "M":
        return 3 + sum(len(k.encode()) + attribute_size(v) for k, v in inner.items())
    if kind == "L":
        return 3 + sum(attribute_size(v) + 1 for v in inner)
    return len(orjson.dumps(inner))


def item_size(item: dict[str, Any]) -> int:
    return sum(len(name.encode()) + attribute_size(value) for name, value in item.items())


def write_units(size: int) -> int:
    return max(1, math.ceil(size / 1024))


def read_units(size: int, consistent: bool) -> float:
    units = max(1, math.ceil(size / 4096))
    return float(units) if consistent else units / 2


class CallMeter:
    """Thread-safe counts of API calls and DynamoDB capacity units."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.write_units = 0.0
        self.read_units = 0.0
        self._lock = threading.Lock()

    def attach(self, client: Any) -> Any:
        client.meta.events.register("before-parameter-build", self._before_call)
        client.meta.events.register("after-call", self._after_call)
        return client

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())

    def _before_call(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        service = model.service_model.service_name
        name = model.name
        units = 0.0
        if service == "dynamodb":
            if name == "PutItem":
                units = write_units(item_size(params["Item"]))
            elif name in ("UpdateItem", "DeleteItem"):
                size = item_size(params["Key"]) + sum(
                    attribute_size(v) for v in params.get("ExpressionAttributeValues", {}).values()
                )
                units = write_units(size)
            elif name == "TransactWriteItems":
                for action in params["TransactItems"]:
                    ((kind, body),) = action.items()
                    size = item_size(body["Item"]) if kind == "Put" else item_size(body["Key"])
                    units += 2 * write_units(size)
            elif name == "BatchWriteItem":
                for requests in params["RequestItems"].values():
                    for request in requests:
                        put = request.get("PutRequest")
                        units += write_units(item_size(put["Item"])) if put else 1
        with self._lock:
            self.calls[f"{service}:{name}"] += 1
            self.write_units += units

    def _after_call(self, model: Any, parsed: dict[str, Any], **_: Any) -> None:
        if model.service_model.service_name != "dynamodb" or "Error" in parsed:
            return
        name = model.name
        units = 0.0
        consistent = True  # this project reads strongly consistently everywhere it matters
        if name == "GetItem":
            units = read_units(item_size(parsed.get("Item") or {}), consistent)
        elif name in ("Query", "Scan"):
            units = read_units(sum(item_size(i) for i in parsed.get("Items", [])), consistent)
        elif name == "BatchGetItem":
            for items in parsed.get("Responses", {}).values():
                units += sum(read_units(item_size(i), consistent) for i in items)
        if units:
            with self._lock:
                self.read_units += units
