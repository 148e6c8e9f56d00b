"""eventlog.batch: BatchWriteItem and BatchGetItem, chunked, de-duplicated, unprocessed items retried a bounded
number of times with backoff, then a clear error. Against moto through real clients (boto3 and aiobotocore),
with the unprocessed answers injected by botocore event handlers (tests/unprocessed.py)."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest

from eventlog.aws import dynamodb_client
from eventlog.batch import (
    DEFAULT_BACKOFF,
    MAX_GET_KEYS,
    MAX_WRITE_REQUESTS,
    Backoff,
    BatchIncomplete,
    batch_get,
    batch_get_async,
    batch_write,
    put_items,
    put_items_async,
)
from eventlog.envelope import Submission, new_event_id, utc_now
from eventlog.errors import CommitInterrupted, EventLogError
from eventlog.resources import REPLAY_CHECKPOINTS_TABLE
from eventlog.settings import Settings
from eventlog.store import EventStore
from replayer.connect import AwsConnection
from tests.unprocessed import Unprocessed, write_keys

KEY = REPLAY_CHECKPOINTS_TABLE.key_names  # (replay_id, part): a table with a sort key
FAST = Backoff(base=0.001, cap=0.004, max_attempts=6)


def items(n: int, replay: str = "r") -> list[dict[str, Any]]:
    return [{"replay_id": {"S": replay}, "part": {"S": f"p{i:04d}"}, "n": {"N": str(i)}} for i in range(n)]


def keys_of(found: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return sorted((i["replay_id"]["S"], i["part"]["S"]) for i in found)


def table_items(client: Any, table: str) -> list[dict[str, Any]]:
    pages = client.get_paginator("scan").paginate(TableName=table, ConsistentRead=True)
    return [item for page in pages for item in page["Items"]]


class Sleeps:
    """An injected sleep that only records how long it was asked to wait."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)

    async def asleep(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
def client(settings: Settings) -> Any:
    """A client of its own, so the handlers a test registers never reach another test's."""
    return dynamodb_client(settings)


@pytest.fixture
def table(settings: Settings) -> str:
    return settings.replay_checkpoints_table


# -- writes -------------------------------------------------------------------------------------------------


@pytest.mark.timeout(20)
def test_write_unprocessed_forever_gives_a_clear_error_in_bounded_time(client: Any, table: str) -> None:
    sleeps = Sleeps()
    started = time.monotonic()
    with (
        Unprocessed("BatchWriteItem", everything=True).on(client) as fault,
        pytest.raises(BatchIncomplete) as caught,
    ):
        batch_write(
            client,
            table,
            ({"PutRequest": {"Item": item}} for item in items(60)),
            key=KEY,
            backoff=FAST,
            sleep=sleeps,
        )
    error = caught.value
    assert isinstance(error, EventLogError)
    assert str(error).startswith(
        f"BatchWriteItem on table {table}: 60 of 60 item(s) still unprocessed after 6"
    )
    assert (error.table, error.left, error.total, error.attempts) == (table, 60, 60, 6)
    assert fault.calls == FAST.max_attempts  # the first chunk, then it gave up
    assert len(sleeps.waits) == FAST.max_attempts - 1
    assert time.monotonic() - started < 10


@pytest.mark.timeout(20)
def test_write_unprocessed_for_a_while_writes_everything_exactly_once(client: Any, table: str) -> None:
    given = items(60)
    sleeps = Sleeps()
    with Unprocessed("BatchWriteItem", withhold=10, calls=4).on(client) as fault:
        written = put_items(client, table, given, key=KEY, backoff=FAST, sleep=sleeps)
    assert written == 60
    assert fault.held == [10, 9, 8, 7, 0, 0, 0]  # each retry carried only what was left unprocessed
    assert fault.sizes == [25, 10, 9, 8, 7, 25, 10]
    assert len(sleeps.waits) == 4  # one backoff per call that left something unprocessed
    assert max(fault.sizes) <= MAX_WRITE_REQUESTS
    sent = Counter(write_keys(fault.sent, KEY))
    assert set(sent.values()) == {1}, "an item reached the table more than once"
    assert len(sent) == 60
    assert keys_of(table_items(client, table)) == keys_of(given)


def test_write_cuts_calls_to_25_and_keeps_the_last_write_of_a_key(client: Any, table: str) -> None:
    given = items(55)
    again = {"replay_id": {"S": "r"}, "part": {"S": "p0003"}, "n": {"N": "333"}}
    with Unprocessed("BatchWriteItem").on(client) as fault:
        written = put_items(client, table, [*given, again], key=KEY)
    assert written == 55
    assert fault.sizes == [25, 25, 5]  # moto would take more; DynamoDB refuses more than 25
    stored = {i["part"]["S"]: i["n"]["N"] for i in table_items(client, table)}
    assert stored["p0003"] == "333"
    assert len(stored) == 55


def test_write_sends_deletes_and_refuses_a_request_it_cannot_key(client: Any, table: str) -> None:
    put_items(client, table, items(3), key=KEY)
    delete = {"DeleteRequest": {"Key": {"replay_id": {"S": "r"}, "part": {"S": "p0001"}}}}
    batch_write(client, table, [delete], key=KEY)
    assert [i["part"]["S"] for i in sorted(table_items(client, table), key=lambda i: i["part"]["S"])] == [
        "p0000",
        "p0002",
    ]
    with pytest.raises(ValueError, match="no key attribute 'part'"):
        batch_write(client, table, [{"PutRequest": {"Item": {"replay_id": {"S": "r"}}}}], key=KEY)


# -- reads --------------------------------------------------------------------------------------------------


@pytest.mark.timeout(20)
def test_get_unprocessed_forever_gives_a_clear_error_in_bounded_time(client: Any, table: str) -> None:
    put_items(client, table, items(150), key=KEY)
    keys = [{"replay_id": i["replay_id"], "part": i["part"]} for i in items(150)]
    sleeps = Sleeps()
    with (
        Unprocessed("BatchGetItem", everything=True).on(client) as fault,
        pytest.raises(BatchIncomplete) as caught,
    ):
        batch_get(client, table, keys, consistent=True, backoff=FAST, sleep=sleeps)
    assert str(caught.value).startswith(
        f"BatchGetItem on table {table}: 150 of 150 item(s) still unprocessed"
    )
    assert fault.calls == FAST.max_attempts
    assert len(sleeps.waits) == FAST.max_attempts - 1


@pytest.mark.timeout(20)
def test_get_unprocessed_for_a_while_reads_every_key_once(client: Any, table: str) -> None:
    given = items(150)
    put_items(client, table, given, key=KEY)
    keys = [{"replay_id": i["replay_id"], "part": i["part"]} for i in given]
    keys += [{"part": k["part"], "replay_id": k["replay_id"]} for k in keys[:30]]  # repeats, reordered
    keys.append({"replay_id": {"S": "r"}, "part": {"S": "absent"}})
    sleeps = Sleeps()
    with Unprocessed("BatchGetItem", withhold=40, calls=3).on(client) as fault:
        found = batch_get(
            client,
            table,
            keys,
            consistent=True,
            projection={"ProjectionExpression": "replay_id, part"},
            backoff=FAST,
            sleep=sleeps,
        )
    assert keys_of(found) == keys_of(given)  # each once; the absent key is simply not there
    assert all("n" not in item for item in found)
    assert max(fault.sizes) <= MAX_GET_KEYS
    assert fault.held == [40, 39, 38, 0, 0]
    assert fault.sizes == [100, 40, 39, 38, 51]
    sent = Counter((k["replay_id"]["S"], k["part"]["S"]) for k in fault.sent)
    assert set(sent.values()) == {1}, "a key was asked for twice"
    assert len(sent) == 151
    assert len(sleeps.waits) == 3


# -- the backoff ----------------------------------------------------------------------------------------------


def test_backoff_is_exponential_with_full_jitter_and_a_cap() -> None:
    policy = Backoff(base=0.1, cap=1.0, max_attempts=8)
    assert [policy.ceiling(n) for n in range(1, 6)] == [0.2, 0.4, 0.8, 1.0, 1.0]
    import random

    rng = random.Random(5)
    draws = [policy.delay(3, rng) for _ in range(2000)]
    assert all(0 <= d < 0.8 for d in draws)
    # Full jitter: the whole range, not a fixed wait.
    assert min(draws) < 0.05
    assert max(draws) > 0.75
    with pytest.raises(ValueError, match="at least 1"):
        Backoff(max_attempts=0)


def test_the_default_backoff_gives_up_within_a_bounded_wait() -> None:
    worst = sum(DEFAULT_BACKOFF.ceiling(n) for n in range(1, DEFAULT_BACKOFF.max_attempts))
    assert DEFAULT_BACKOFF.max_attempts == 10
    assert worst < 12


# -- the async twin -------------------------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.timeout(30)
async def test_async_write_unprocessed_forever_gives_the_same_clear_error(
    settings: Settings, table: str
) -> None:
    sleeps = Sleeps()
    async with AwsConnection(settings) as connection:
        with (
            Unprocessed("BatchWriteItem", everything=True).on(connection.dynamodb) as fault,
            pytest.raises(BatchIncomplete, match=f"BatchWriteItem on table {table}: 30 of 30 item"),
        ):
            await put_items_async(
                connection.dynamodb, table, items(30), key=KEY, backoff=FAST, sleep=sleeps.asleep
            )
    assert fault.calls == FAST.max_attempts
    assert len(sleeps.waits) == FAST.max_attempts - 1


@pytest.mark.asyncio
@pytest.mark.timeout(30)
async def test_async_unprocessed_for_a_while_writes_and_reads_everything_once(
    settings: Settings, table: str, client: Any
) -> None:
    given = items(60)
    sleeps = Sleeps()
    async with AwsConnection(settings) as connection:
        db = connection.dynamodb
        with Unprocessed("BatchWriteItem", withhold=7, calls=3).on(db) as writes:
            assert await put_items_async(db, table, given, key=KEY, backoff=FAST, sleep=sleeps.asleep) == 60
        keys = [{"replay_id": i["replay_id"], "part": i["part"]} for i in given]
        with Unprocessed("BatchGetItem", withhold=9, calls=2).on(db) as reads:
            found = await batch_get_async(db, table, keys, consistent=True, backoff=FAST, sleep=sleeps.asleep)
        with (
            Unprocessed("BatchGetItem", everything=True).on(db),
            pytest.raises(BatchIncomplete, match=f"BatchGetItem on table {table}: 60 of 60"),
        ):
            await batch_get_async(db, table, keys, backoff=FAST, sleep=sleeps.asleep)
    assert Counter(write_keys(writes.sent, KEY)) == Counter(
        write_keys([{"PutRequest": {"Item": i}} for i in given], KEY)
    )
    assert writes.held == [7, 6, 5, 0, 0, 0]
    assert keys_of(found) == keys_of(given)
    assert reads.held == [9, 8, 0]
    assert keys_of(table_items(client, table)) == keys_of(given)


# -- the call sites in eventlog -----------------------------------------------------------------------------


@pytest.fixture
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> Backoff:
    """The default policy every call site uses, made quick (the call sites take no backoff of their own)."""
    monkeypatch.setattr("eventlog.batch.DEFAULT_BACKOFF", FAST)
    return FAST


def deposit(aggregate_id: str, event_id: str | None = None) -> Submission:
    now = utc_now()
    return Submission(
        event_id or new_event_id(), aggregate_id, "MoneyDeposited", 1, now, now, {"amount": 1}, {}
    )


@pytest.mark.timeout(20)
def test_status_get_many_reads_through_unprocessed_keys_and_gives_up_on_endless_ones(
    settings: Settings, client: Any, fast_backoff: Backoff
) -> None:
    store = EventStore(client, settings.events_table, settings.event_status_table)
    submissions = [deposit(f"acct-{i % 7}") for i in range(120)]
    store.commit(submissions)
    ids = [s.event_id for s in submissions]
    with Unprocessed("BatchGetItem", withhold=30, calls=2).on(client) as fault:
        statuses = store.statuses.get_many([*ids, *ids[:10]])
    assert sorted(statuses) == sorted(ids)
    assert {s.status for s in statuses.values()} == {"committed"}
    # 120 ids (the repeats asked once): 100 with 30 held back, those 30 with 29 held back, those 29, then 20.
    assert fault.held == [30, 29, 0, 0]
    assert fault.sizes == [100, 30, 29, 20]
    with (
        Unprocessed("BatchGetItem", everything=True).on(client),
        pytest.raises(BatchIncomplete, match=f"BatchGetItem on table {settings.event_status_table}: 120 of"),
    ):
        store.statuses.get_many(ids)


@pytest.mark.timeout(20)
def test_a_commit_whose_duplicate_check_stays_unprocessed_is_interrupted_not_hung(
    settings: Settings, client: Any, fast_backoff: Backoff
) -> None:
    store = EventStore(client, settings.events_table, settings.event_status_table)
    [first] = store.commit([deposit("acct-1", "e-1")])
    assert first.result == "committed"
    # The same event again: its transaction is cancelled, and the store reads the statuses to settle it.
    with (
        Unprocessed("BatchGetItem", everything=True).on(client),
        pytest.raises(CommitInterrupted) as caught,
    ):
        store.commit([deposit("acct-1", "e-1")])
    assert caught.value.index == 0
    assert isinstance(caught.value.cause, BatchIncomplete)
    [again] = store.commit([deposit("acct-1", "e-1")])
    assert again.result == "duplicate"
