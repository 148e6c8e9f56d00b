"""Where moto 5.2.5 behaves unlike DynamoDB in ways this project depends on, and the embedded AWS's fixes.

1. moto's server is threaded, but its backends are not thread-safe: a Scan or a transaction that iterates a
   table while another request writes to it fails with "dictionary changed size during iteration" (seen under
   the ingest benchmark). Fix: `SerialisedApp` runs one request at a time in the process (moto's state is
   per process, not per server). moto is CPU-bound Python under the GIL, so little throughput is lost.

2. moto's TransactWriteItems applies each action as it goes, and on a failed condition rolls back by swapping
   in deep copies of the whole tables taken before the transaction (one copy per action). So:
   - a cancelled transaction leaves DynamoDB stream INSERT records behind for puts that were rolled back
     (the write handler would project an event that was never committed);
   - writes other requests made to those tables in the meantime are lost with the rollback;
   - every transaction costs O(actions x table size): the local stack slows down as its log grows.
   DynamoDB checks every condition first and then applies all actions or none. `transact_write_items` below
   does exactly that (under the lock of fix 1, so nothing changes between the check and the writes).

Both are installed by `EmbeddedAWS`; tests in tests/devstack/test_moto_fixes.py pin the behaviour.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

import moto
from moto.dynamodb.comparisons import get_filter_expression
from moto.dynamodb.exceptions import (
    MultipleTransactionsException,
    TooManyTransactionsException,
    TransactionCanceledException,
    TransactWriteSingleOpException,
)
from moto.dynamodb.models import DynamoDBBackend

FIXED_FOR = "5.2.5"
_OPERATIONS = frozenset({"ConditionCheck", "Put", "Delete", "Update"})


# moto's backends are module globals: one state per process, whichever server a request comes through. So the
# lock is per process too (tests run a session server and an in-process stack's server side by side).
_BACKEND_LOCK = threading.Lock()


class SerialisedApp:
    """A WSGI middleware that lets one request at a time (per process) into the wrapped app."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self._app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        with _BACKEND_LOCK:
            return list(self._app(environ, start_response))


def transact_write_items(self: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
    """All-or-nothing, as DynamoDB: check every action's condition first, then apply them all, or none."""
    if len(transact_items) > 100:
        raise TooManyTransactionsException()
    seen: set[tuple[str, str]] = set()
    planned: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
    reasons: list[tuple[str | None, str | None, dict[str, Any] | None]] = []
    for action in transact_items:
        if len(action) > 1:
            raise TransactWriteSingleOpException
        op_type, op = next(iter(action.items()))
        if op_type not in _OPERATIONS:
            raise ValueError("Unsupported transaction operation")
        table_name = op["TableName"]
        table = self.get_table(table_name)
        if op_type == "Put":
            key = {table.hash_key_attr: op["Item"][table.hash_key_attr]}
            if table.range_key_attr is not None:
                key[table.range_key_attr] = op["Item"][table.range_key_attr]
        else:
            key = op["Key"]
        marker = (table_name, str(dict(sorted(key.items()))))
        if marker in seen:
            raise MultipleTransactionsException()
        seen.add(marker)
        current = self.get_item(table_name, key)
        condition = op.get("ConditionExpression")
        if condition is not None and not get_filter_expression(
            condition, op.get("ExpressionAttributeNames"), op.get("ExpressionAttributeValues")
        ).expr(current):
            old = None
            if op.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD" and current:
                old = current.to_json()["Attributes"]
            reasons.append(("ConditionalCheckFailed", "The conditional request failed", old))
        else:
            reasons.append((None, None, None))
        planned.append((op_type, op, key))
    if any(code is not None for code, _, _ in reasons):
        raise TransactionCanceledException(reasons)
    for op_type, op, key in planned:
        if op_type == "Put":
            self.put_item(op["TableName"], op["Item"])
        elif op_type == "Delete":
            self.delete_item(op["TableName"], key)
        elif op_type == "Update":
            self.update_item(
                op["TableName"],
                key,
                update_expression=op["UpdateExpression"],
                expression_attribute_names=op.get("ExpressionAttributeNames") or {},
                expression_attribute_values=op.get("ExpressionAttributeValues") or {},
            )


def install() -> None:
    """Put fix 2 in place (fix 1 is applied by wrapping the server's app). Idempotent."""
    if moto.__version__ != FIXED_FOR:
        raise RuntimeError(
            f"moto {moto.__version__} is installed; the embedded AWS's fixes were written for {FIXED_FOR} "
            "(see devstack/moto_fixes.py): install from requirements.lock"
        )
    DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]
