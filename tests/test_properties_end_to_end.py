"""Properties 1-4 end to end under random faults (hypothesis).

For a random history of requests over a few aggregates, the records are delivered to the pump and then to the
write handler in random batch sizes, some batches twice, and some invocations crash at a random AWS call and are
redelivered whole, as Lambda does. Afterwards:

1. every accepted event is in the log exactly once (nothing lost, no duplicates);
2. per aggregate, versions are gapless and follow the order the requests were accepted in;
3. the state table equals what the domain computes by folding each aggregate's log from version 1.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import handlers.runtime
from devstack.embedded_aws import EmbeddedAWS
from devstack.lambda_runtime import invoke
from domain import DOMAIN
from eventlog.aws import dynamodb_client, kinesis_client
from eventlog.provision import create_resources
from eventlog.settings import Settings
from eventlog.state import StateStore
from eventlog.store import EventStore
from tests.support import FaultyClient, Injected, KinesisReader, TableStreamReader, all_events, post_event

AGGREGATES = ["acc-a", "acc-b", "acc-c"]
requests = st.lists(
    st.tuples(
        st.sampled_from(AGGREGATES),
        st.one_of(
            st.just(("AccountOpened", {"owner": "Ada"})),
            st.builds(lambda a: ("MoneyDeposited", {"amount": a}), st.integers(1, 500)),
            st.builds(lambda a: ("MoneyWithdrawn", {"amount": a}), st.integers(1, 500)),
            st.just(("AccountClosed", {"reason": "customer request"})),
        ),
    ),
    min_size=1,
    max_size=25,
)


def deliver(
    data: st.DataObject,
    function: str,
    records: list[dict[str, Any]],
    make_event: Any,
    monkeypatch: pytest.MonkeyPatch,
    settings_: Settings,
    crash_call: str,
) -> None:
    """Deliver records in random batches; some twice; some crash at a random call and are redelivered whole."""
    position = 0
    while position < len(records):
        size = data.draw(st.integers(1, len(records) - position), label=f"{function} batch size")
        batch = records[position : position + size]
        crash_at = data.draw(st.none() | st.integers(1, 3), label=f"{function} crash at call")
        repeats = data.draw(st.integers(1, 2), label=f"{function} deliveries")
        for _ in range(repeats):
            faulty = FaultyClient(dynamodb_client(settings_))
            if crash_at is not None:
                faulty.fail(crash_call, on={crash_at}, code=None)
            handlers.runtime.reset()
            monkeypatch.setattr(handlers.runtime, "dynamodb", lambda f=faulty: f)
            pending = batch
            for _attempt in range(10):
                try:
                    response = invoke(function, make_event(pending), prefix="es-test")
                except Injected:
                    faulty = FaultyClient(dynamodb_client(settings_))
                    handlers.runtime.reset()
                    monkeypatch.setattr(handlers.runtime, "dynamodb", lambda f=faulty: f)
                    continue  # Lambda redelivers the whole batch
                failures = response["batchItemFailures"]
                if not failures:
                    break
                ids = [_id(r) for r in pending]
                pending = pending[min(ids.index(f["itemIdentifier"]) for f in failures) :]
            else:
                raise AssertionError("batch never succeeded")
        position += size


def _id(record: dict[str, Any]) -> str:
    if "kinesis" in record:
        return str(record["kinesis"]["sequenceNumber"])
    return str(record["dynamodb"]["SequenceNumber"])


# 12 examples, each a whole pipeline on a fresh embedded AWS: 130 s alone on this 2-core machine at a load
# average of 9, past the suite's 180 s hang timeout under a busier one (a seed-3 run of the suite).
@pytest.mark.timeout(600)
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(history=requests, data=st.data())
def test_random_faults_never_lose_repeat_or_reorder_and_state_equals_the_folded_log(
    embedded_aws: EmbeddedAWS, history: list[Any], data: st.DataObject
) -> None:
    # pytest's monkeypatch lives for the whole test, not one example: each example patches in its own context.
    with pytest.MonkeyPatch.context() as patch:
        run_example(embedded_aws, patch, history, data)


def run_example(
    embedded_aws: EmbeddedAWS, monkeypatch: pytest.MonkeyPatch, history: list[Any], data: st.DataObject
) -> None:
    embedded_aws.reset()
    settings_ = Settings.from_env()
    create_resources(settings_, dynamodb_client(settings_), kinesis_client(settings_))
    handlers.runtime.reset()

    accepted: dict[str, list[str]] = {a: [] for a in AGGREGATES}
    for aggregate, (type_, payload) in history:
        response = post_event(aggregate, {"type": type_, "payload": payload})
        assert response.status == 202
        accepted[aggregate].append(response.body["event_id"])

    ingest = KinesisReader(settings_, settings_.ingest_stream)
    for shard, records in ingest.read().items():
        deliver(
            data,
            "pump",
            records,
            lambda rs, s=shard: ingest.event(s, rs),
            monkeypatch,
            settings_,
            "transact_write_items",
        )
    changes = TableStreamReader(settings_, settings_.events_table)
    deliver(data, "write", changes.read(), changes.event, monkeypatch, settings_, "put_item")

    log = all_events(settings_)
    for aggregate in AGGREGATES:
        mine = [e for e in log if e["aggregate_id"] == aggregate]
        assert [e["event_id"] for e in mine] == accepted[aggregate]  # 1 and 2: each once, in accepted order
        assert [e["version"] for e in mine] == list(range(1, len(mine) + 1))  # gapless

    client = dynamodb_client(settings_)
    store = EventStore(client, settings_.events_table, settings_.event_status_table)
    states = {r.aggregate_id: r for r in StateStore(client, settings_.state_table).scan()}
    for aggregate in AGGREGATES:
        folded = None
        events = list(store.read(aggregate))
        for event in events:
            decision = DOMAIN.apply(folded, event)
            if decision.applied:
                folded = decision.state
        if not events:
            assert aggregate not in states
            continue
        assert states[aggregate].version == len(events)
        assert states[aggregate].state == folded
