"""The one way to call DynamoDB's batch operations: BatchWriteItem and BatchGetItem.

DynamoDB answers a batch call with the part it did not do (`UnprocessedItems`, `UnprocessedKeys`) when a
partition is throttled or a BatchGetItem answer passes 16 MB; that is normal and the caller must send the rest
again, with backoff. Done by hand in every module, that loop was written differently each time and never gave
up. Here, for both operations, in a synchronous and an asynchronous (aiobotocore) flavour:

- requests are cut to DynamoDB's limits (25 write requests, 100 keys a call);
- keys are de-duplicated, as DynamoDB requires within one call ("Provided list of item keys contains
  duplicates"): of several writes to one key, the last one given is sent (what writing them in order would
  have left), and a key read twice is read once;
- what comes back unprocessed is sent again after an exponential backoff with full jitter, at most
  `Backoff.max_attempts` calls for each chunk; then `BatchIncomplete` names the operation, the table and how
  many items were left (the ones already written stay written: a batch is not a transaction).

The SDK's own retries (throttling errors, 5xx) happen inside each call, with the client's retry config; this
module only deals with the answers that succeeded in part. Clients are handed in; nothing is made here.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from eventlog.errors import EventLogError

MAX_WRITE_REQUESTS = 25  # BatchWriteItem: requests a call
MAX_GET_KEYS = 100  # BatchGetItem: keys a call

Item = dict[str, Any]
WriteRequest = dict[str, Any]  # {"PutRequest": {"Item": ...}} or {"DeleteRequest": {"Key": ...}}
Sleep = Callable[[float], None]
AsyncSleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with full jitter: the wait before retry n (1, 2, ...) is a random time in
    [0, min(cap, base * 2**n)). `max_attempts` counts every call for one chunk, the first included.

    With the defaults a chunk that stays refused is given up on after 10 calls and at most about 11 s of
    waiting (half that on average): long enough to ride out a burst of throttling, short enough that a caller
    (a Lambda, an operator command) hears about a table that is under-provisioned."""

    base: float = 0.05
    cap: float = 2.0
    max_attempts: int = 10

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, not {self.max_attempts}")
        if self.base < 0 or self.cap < 0:
            raise ValueError("backoff base and cap must not be negative")

    def ceiling(self, retry: int) -> float:
        """The longest wait before retry `retry` (1 for the first retry)."""
        return min(self.cap, self.base * 2 ** min(retry, 30))

    def delay(self, retry: int, rng: random.Random | None = None) -> float:
        """A wait before retry `retry`, drawn uniformly from [0, ceiling(retry))."""
        return (rng or random).uniform(0, self.ceiling(retry))


# What every batch call uses unless handed another; looked up at call time, so a test can swap it.
DEFAULT_BACKOFF = Backoff()


class BatchIncomplete(EventLogError):
    """A batch call kept answering with unprocessed items until its attempts ran out."""

    def __init__(self, operation: str, table: str, left: int, total: int, attempts: int) -> None:
        done = total - left
        what = "written" if operation == "BatchWriteItem" else "read"
        super().__init__(
            f"{operation} on table {table}: {left} of {total} item(s) still unprocessed after {attempts} "
            f"attempt(s) with backoff ({done} {what}); the table is throttling (raise its capacity or retry "
            "later)"
        )
        self.operation = operation
        self.table = table
        self.left = left
        self.total = total
        self.attempts = attempts


class BatchClient(Protocol):
    """The two calls this module makes on a boto3 DynamoDB client."""

    def batch_write_item(self, *, RequestItems: Any) -> Any: ...

    def batch_get_item(self, *, RequestItems: Any) -> Any: ...


class AsyncBatchClient(Protocol):
    """The two calls this module makes on an aiobotocore DynamoDB client."""

    async def batch_write_item(self, *, RequestItems: Any) -> Any: ...

    async def batch_get_item(self, *, RequestItems: Any) -> Any: ...


# -- planning (shared by both flavours) -----------------------------------------------------------------------


def _key_of(value: Mapping[str, Any]) -> bytes:
    """A key's identity: its attribute values, whatever order the dict holds them in."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def _write_key(request: Mapping[str, Any], key: Sequence[str]) -> bytes:
    if "PutRequest" in request:
        item = request["PutRequest"]["Item"]
        try:
            return _key_of({name: item[name] for name in key})
        except KeyError as exc:
            raise ValueError(f"a PutRequest's item has no key attribute {exc.args[0]!r}") from exc
    if "DeleteRequest" in request:
        return _key_of(request["DeleteRequest"]["Key"])
    raise ValueError(f"not a write request (PutRequest or DeleteRequest): {sorted(request)}")


def write_chunks(requests: Iterable[WriteRequest], key: Sequence[str]) -> list[list[WriteRequest]]:
    """The requests de-duplicated by key (the last one for a key wins) and cut into BatchWriteItem calls."""
    by_key: dict[bytes, WriteRequest] = {}
    for request in requests:
        name = _write_key(request, key)
        by_key.pop(name, None)  # the later request takes the later place
        by_key[name] = request
    unique = list(by_key.values())
    return [unique[i : i + MAX_WRITE_REQUESTS] for i in range(0, len(unique), MAX_WRITE_REQUESTS)]


def get_chunks(keys: Iterable[Mapping[str, Any]]) -> list[list[Mapping[str, Any]]]:
    """The keys de-duplicated and cut into BatchGetItem calls."""
    unique = list({_key_of(k): k for k in keys}.values())
    return [unique[i : i + MAX_GET_KEYS] for i in range(0, len(unique), MAX_GET_KEYS)]


def _get_request(
    table: str, keys: Sequence[Mapping[str, Any]], consistent: bool, projection: Mapping[str, Any] | None
) -> dict[str, Any]:
    wanted: dict[str, Any] = {"Keys": list(keys), "ConsistentRead": consistent}
    if projection:
        wanted.update(projection)
    return {table: wanted}


def _unprocessed_writes(response: Mapping[str, Any], table: str) -> list[WriteRequest]:
    return list((response.get("UnprocessedItems") or {}).get(table) or [])


def _unprocessed_keys(response: Mapping[str, Any], table: str) -> list[Mapping[str, Any]]:
    return list(((response.get("UnprocessedKeys") or {}).get(table) or {}).get("Keys") or [])


def _found(response: Mapping[str, Any], table: str) -> list[Item]:
    return list((response.get("Responses") or {}).get(table) or [])


def _remaining(chunks: Sequence[Sequence[Any]], after: int) -> int:
    return sum(len(chunk) for chunk in chunks[after + 1 :])


# Both flavours run the same plan: a generator that yields a float (sleep that long) or a request (call the
# operation with these RequestItems and send the answer back), and returns the result. So the chunking, the
# backoff and the error cannot drift apart between the boto3 and the aiobotocore code.
Step = float | dict[str, Any]
Plan = Generator[Step, Any, Any]


def _write_plan(table: str, requests: Iterable[WriteRequest], key: Sequence[str], policy: Backoff) -> Plan:
    chunks = write_chunks(requests, key)
    total = sum(len(chunk) for chunk in chunks)
    for index, chunk in enumerate(chunks):
        pending = chunk
        for attempt in range(policy.max_attempts):
            if attempt:
                yield policy.delay(attempt)
            pending = _unprocessed_writes((yield {table: pending}), table)
            if not pending:
                break
        if pending:
            left = len(pending) + _remaining(chunks, index)
            raise BatchIncomplete("BatchWriteItem", table, left, total, policy.max_attempts)
    return total


def _get_plan(
    table: str,
    keys: Iterable[Mapping[str, Any]],
    consistent: bool,
    projection: Mapping[str, Any] | None,
    policy: Backoff,
) -> Plan:
    chunks = get_chunks(keys)
    total = sum(len(chunk) for chunk in chunks)
    found: list[Item] = []
    for index, chunk in enumerate(chunks):
        pending: Sequence[Mapping[str, Any]] = chunk
        for attempt in range(policy.max_attempts):
            if attempt:
                yield policy.delay(attempt)
            response = yield _get_request(table, pending, consistent, projection)
            found.extend(_found(response, table))
            pending = _unprocessed_keys(response, table)
            if not pending:
                break
        if pending:
            left = len(pending) + _remaining(chunks, index)
            raise BatchIncomplete("BatchGetItem", table, left, total, policy.max_attempts)
    return found


def _run(plan: Plan, call: Callable[..., Any], sleep: Sleep) -> Any:
    answer: Any = None
    try:
        while True:
            step = plan.send(answer)
            if isinstance(step, float):
                sleep(step)
                answer = None
            else:
                answer = call(RequestItems=step)
    except StopIteration as end:
        return end.value


async def _run_async(plan: Plan, call: Callable[..., Awaitable[Any]], sleep: AsyncSleep) -> Any:
    answer: Any = None
    try:
        while True:
            step = plan.send(answer)
            if isinstance(step, float):
                await sleep(step)
                answer = None
            else:
                answer = await call(RequestItems=step)
    except StopIteration as end:
        return end.value


# -- synchronous (boto3) -------------------------------------------------------------------------------------


def batch_write(
    dynamodb: BatchClient,
    table: str,
    requests: Iterable[WriteRequest],
    *,
    key: Sequence[str],
    backoff: Backoff | None = None,
    sleep: Sleep = time.sleep,
) -> int:
    """Write these requests (PutRequest / DeleteRequest) to `table` with BatchWriteItem, 25 a call, sending
    unprocessed items again with backoff. `key` names the table's key attributes (`TableSpec.key_names`),
    which de-duplication needs. Returns how many requests were written (after de-duplication).

    Raises BatchIncomplete when a call keeps leaving items unprocessed for `backoff.max_attempts` calls."""
    plan = _write_plan(table, requests, key, backoff or DEFAULT_BACKOFF)
    return int(_run(plan, dynamodb.batch_write_item, sleep))


def put_items(
    dynamodb: BatchClient,
    table: str,
    items: Iterable[Item],
    *,
    key: Sequence[str],
    backoff: Backoff | None = None,
    sleep: Sleep = time.sleep,
) -> int:
    """Put these items into `table` (see `batch_write`); returns how many were written."""
    requests = ({"PutRequest": {"Item": item}} for item in items)
    return batch_write(dynamodb, table, requests, key=key, backoff=backoff, sleep=sleep)


def batch_get(
    dynamodb: BatchClient,
    table: str,
    keys: Iterable[Mapping[str, Any]],
    *,
    consistent: bool = False,
    projection: Mapping[str, Any] | None = None,
    backoff: Backoff | None = None,
    sleep: Sleep = time.sleep,
) -> list[Item]:
    """The items of `table` with these keys that exist (in no particular order), read with BatchGetItem,
    100 keys a call, unprocessed keys asked again with backoff. `projection`: extra KeysAndAttributes fields
    (ProjectionExpression, ExpressionAttributeNames).

    Raises BatchIncomplete when a call keeps leaving keys unprocessed for `backoff.max_attempts` calls."""
    plan = _get_plan(table, keys, consistent, projection, backoff or DEFAULT_BACKOFF)
    return list(_run(plan, dynamodb.batch_get_item, sleep))


# -- asynchronous (aiobotocore) ------------------------------------------------------------------------------


async def batch_write_async(
    dynamodb: AsyncBatchClient,
    table: str,
    requests: Iterable[WriteRequest],
    *,
    key: Sequence[str],
    backoff: Backoff | None = None,
    sleep: AsyncSleep = asyncio.sleep,
) -> int:
    """`batch_write` for an aiobotocore client: same chunks, same backoff, same BatchIncomplete."""
    plan = _write_plan(table, requests, key, backoff or DEFAULT_BACKOFF)
    return int(await _run_async(plan, dynamodb.batch_write_item, sleep))


async def put_items_async(
    dynamodb: AsyncBatchClient,
    table: str,
    items: Iterable[Item],
    *,
    key: Sequence[str],
    backoff: Backoff | None = None,
    sleep: AsyncSleep = asyncio.sleep,
) -> int:
    """`put_items` for an aiobotocore client."""
    requests = ({"PutRequest": {"Item": item}} for item in items)
    return await batch_write_async(dynamodb, table, requests, key=key, backoff=backoff, sleep=sleep)


async def batch_get_async(
    dynamodb: AsyncBatchClient,
    table: str,
    keys: Iterable[Mapping[str, Any]],
    *,
    consistent: bool = False,
    projection: Mapping[str, Any] | None = None,
    backoff: Backoff | None = None,
    sleep: AsyncSleep = asyncio.sleep,
) -> list[Item]:
    """`batch_get` for an aiobotocore client: same chunks, same backoff, same BatchIncomplete."""
    plan = _get_plan(table, keys, consistent, projection, backoff or DEFAULT_BACKOFF)
    return list(await _run_async(plan, dynamodb.batch_get_item, sleep))
