"""The service handler: the example microservice's external calls, live and in every replay mode (property 5).

Given accounts in the log and the fake external systems on loopback (devstack/fakes.py), when the service
function gets committed events from the table's change stream (live) or replayed ones from the playback stream
(put there by the real replayer), then the fakes see exactly what the mode allows: their request counters are
the proof that a replay touched nothing, and the ledger's entries what a fix corrected.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

import handlers.runtime
import tests.support
from devstack.fakes import ExchangeRateService, LedgerExportService
from devstack.lambda_runtime import invoke
from eventlog.settings import Settings
from gateways.recordings import DynamoRecordings
from replayer.cli import main as replayer_main
from tests.support import KinesisReader, Pipeline, TableStreamReader, post_event

RATE_CALL = "exchange-rate:EUR/USD"


@dataclass
class External:
    rates: ExchangeRateService
    ledger: LedgerExportService


_STREAMS_CLIENTS: dict[str, Any] = {}


@pytest.fixture(autouse=True)
def shared_clients(settings: Settings, dynamodb: Any, kinesis: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """One set of clients for the handlers and the readers: building a client costs about 0.15 s, and each
    test would otherwise build a dozen (the handlers' containers are new in every test)."""
    if settings.endpoint_url not in _STREAMS_CLIENTS:
        _STREAMS_CLIENTS[settings.endpoint_url or ""] = tests.support.dynamodbstreams_client(settings)
    streams = _STREAMS_CLIENTS[settings.endpoint_url or ""]
    for module in (handlers.runtime, tests.support):
        monkeypatch.setattr(module, "dynamodb_client", lambda *a, **k: dynamodb)
        monkeypatch.setattr(module, "kinesis_client", lambda *a, **k: kinesis)
    monkeypatch.setattr(tests.support, "dynamodbstreams_client", lambda *a, **k: streams)
    handlers.runtime.reset()


@pytest.fixture
def external(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[External]:
    with ExchangeRateService(rate="1.1000", step="0.0100") as rates, LedgerExportService() as ledger:
        monkeypatch.setenv("ES_EXCHANGE_RATES_URL", rates.url)
        monkeypatch.setenv("ES_LEDGER_EXPORT_URL", ledger.url)
        handlers.runtime.reset()
        yield External(rates, ledger)


class Service:
    """Feeds the service function as its two event source mappings do, one step at a time."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.changes = TableStreamReader(settings, settings.events_table)
        self.playback = KinesisReader(settings, settings.playback_stream)
        self.responses: list[dict[str, Any]] = []

    def live(self) -> list[dict[str, Any]]:
        """Deliver every new change-stream record (one batch); return the failures it reported."""
        records = self.changes.read()
        if not records:
            return []
        return self._invoke(self.changes.event(records))

    def replayed(self) -> list[dict[str, Any]]:
        """Deliver every new playback record, shard by shard; return the failures reported."""
        failures: list[dict[str, Any]] = []
        for shard_id, records in self.playback.read().items():
            if records:
                failures += self._invoke(self.playback.event(shard_id, records))
        return failures

    def _invoke(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        response = invoke("service", event, prefix="es-test")
        self.responses.append(response)
        return list(response["batchItemFailures"])


def commit(settings: Settings, *events: tuple[str, str, dict[str, Any]]) -> list[str]:
    """Post (aggregate, type, payload) events and pump them into the log; their event ids."""
    ids = [post_event(a, {"type": t, "payload": p}).body["event_id"] for a, t, p in events]
    Pipeline(settings).pump()
    return ids


def replay(settings: Settings, mode: str, *aggregates: str, replay_id: str) -> None:
    args = ["--mode", mode, "--replay-id", replay_id, "--progress", "none"]
    for aggregate in aggregates:
        args += ["--aggregate", aggregate]
    assert replayer_main(args, environ=dict(os.environ)) == 0


def recordings(settings: Settings, dynamodb: Any) -> DynamoRecordings:
    return DynamoRecordings(dynamodb, settings.table("gateway_recordings"))


def deploy(monkeypatch: pytest.MonkeyPatch, **variables: str) -> None:
    """A new release: new settings, new containers."""
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    handlers.runtime.reset()


def test_a_live_deposit_asks_the_rate_once_and_exports_one_entry(
    settings: Settings, external: External, dynamodb: Any
) -> None:
    _, deposit = commit(
        settings,
        ("acct-1", "AccountOpened", {"owner": "Ada"}),
        ("acct-1", "MoneyDeposited", {"amount": 10000}),
    )
    service = Service(settings)

    assert service.live() == []

    assert external.rates.request_count("GET /rates") == 1  # the opening needs no rate
    (entry,) = external.ledger.entries("acct-1")
    assert (entry["amount"], entry["reporting_amount"], entry["rate"]) == (10000, 11000, "1.1000")
    assert entry["entry_id"] == f"{deposit}:ledger-export"
    store = recordings(settings, dynamodb)
    rate = store.get(deposit, RATE_CALL)
    assert rate is not None
    assert (rate.status, rate.response["rate"] if rate.response else None) == ("answered", "1.1000")
    export = store.get(deposit, "ledger-export")
    assert export is not None
    assert (export.status, export.idempotency_key) == ("sent", f"{deposit}:ledger-export")


def test_a_redelivered_batch_sends_nothing_twice(settings: Settings, external: External) -> None:
    commit(
        settings, ("acct-1", "AccountOpened", {"owner": "Ada"}), ("acct-1", "MoneyDeposited", {"amount": 500})
    )
    service = Service(settings)
    records = service.changes.read()

    for _ in range(2):  # Lambda retries a batch whose outcome it did not get
        service._invoke(service.changes.event(records))

    assert external.rates.request_count("GET /rates") == 1
    assert external.ledger.request_count("POST /entries") == 1
    assert len(external.ledger.entries()) == 1


def test_a_reversed_deposit_is_taken_back_in_the_ledger(settings: Settings, external: External) -> None:
    from eventlog.envelope import Submission, utc_now
    from eventlog.store import EventStore

    _, deposit = commit(
        settings,
        ("acct-1", "AccountOpened", {"owner": "Ada"}),
        ("acct-1", "MoneyDeposited", {"amount": 10000}),
    )
    # The reverse route appends this (handlers/load.py); here it goes straight into the log.
    now = utc_now()
    reversal = Submission(
        event_id="reversal-1",
        aggregate_id="acct-1",
        type="EventReversed",
        schema_version=1,
        occurred_at=now,
        accepted_at=now,
        payload={"reversed_version": 2, "reversed_event_id": deposit, "reversed_type": "MoneyDeposited"},
    )
    EventStore(handlers.runtime.dynamodb(), settings.events_table, settings.event_status_table).commit(
        [reversal]
    )

    assert Service(settings).live() == []

    assert [(e["type"], e["amount"], e["reporting_amount"]) for e in external.ledger.entries()] == [
        ("MoneyDeposited", 10000, 11000),
        ("EventReversed", -10000, -11100),  # at the rate asked for the reversal's own time
    ]


def test_a_refused_withdrawal_asks_the_rate_and_records_that_nothing_went_out(
    settings: Settings, external: External, dynamodb: Any
) -> None:
    _, overdraft = commit(
        settings, ("acct-1", "AccountOpened", {"owner": "Ada"}), ("acct-1", "MoneyWithdrawn", {"amount": 700})
    )

    assert Service(settings).live() == []

    assert external.ledger.entries() == []
    assert external.rates.request_count("GET /rates") == 1  # a later release might apply it: keep the answer
    export = recordings(settings, dynamodb).get(overdraft, "ledger-export")
    assert export is not None
    assert export.status == "nothing"


@pytest.mark.parametrize("mode", ["feature", "rebuild"])
def test_a_feature_or_rebuild_replay_touches_no_external_system(
    settings: Settings, external: External, dynamodb: Any, mode: str
) -> None:
    _, deposit = commit(
        settings,
        ("acct-1", "AccountOpened", {"owner": "Ada"}),
        ("acct-1", "MoneyDeposited", {"amount": 10000}),
    )
    service = Service(settings)
    service.live()
    rates_before = external.rates.request_count()
    ledger_before = external.ledger.request_count()

    replay(settings, mode, "acct-1", replay_id=f"r-{mode}")
    assert service.replayed() == []

    assert external.rates.request_count() == rates_before  # not asked: the recording answered
    assert external.ledger.request_count() == ledger_before  # nothing sent
    suppressed = recordings(settings, dynamodb).get(deposit, f"ledger-export@r-{mode}")
    assert suppressed is not None
    assert suppressed.status == "suppressed"
    # It used the recorded 1.1000, not the 1.1100 the market says now.
    assert suppressed.request is not None
    assert (suppressed.request["rate"], suppressed.request["reporting_amount"]) == ("1.1000", 11000)


def test_a_fix_replay_after_the_bug_fix_sends_only_the_correction(
    settings: Settings, external: External, dynamodb: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    deploy(monkeypatch, ES_LEDGER_EXPORT_VERSION="1")  # release 1: the inverted rate
    _, deposit, withdrawal = commit(
        settings,
        ("acct-1", "AccountOpened", {"owner": "Ada"}),
        ("acct-1", "MoneyDeposited", {"amount": 10000}),
        ("acct-1", "MoneyWithdrawn", {"amount": 2500}),
    )
    service = Service(settings)
    service.live()
    assert [e["reporting_amount"] for e in external.ledger.entries()] == [
        9091,
        -2252,
    ]  # 10000/1.10, 2500/1.11

    deploy(monkeypatch, ES_LEDGER_EXPORT_VERSION="2")
    replay(settings, "fix", "acct-1", replay_id="r-fix")
    assert service.replayed() == []

    entries = external.ledger.entries()
    corrections = [e for e in entries if e["kind"] == "correction"]
    assert [(c["event_id"], c["amount"], c["reporting_amount"]) for c in corrections] == [
        (deposit, 0, 11000 - 9091),
        (withdrawal, 0, -2775 + 2252),  # 2500 x 1.11 recorded for it, not today's rate
    ]
    assert [c["entry_id"] for c in corrections] == [
        f"{deposit}:ledger-export@r-fix",
        f"{withdrawal}:ledger-export@r-fix",
    ]
    assert sum(e["reporting_amount"] for e in entries) == 11000 - 2775
    assert external.rates.request_count() == 2  # the two live questions; the fix asked nothing

    # The same fix delivered again, and another fix with the same code: nothing more goes out.
    service.playback = KinesisReader(settings, settings.playback_stream)
    service.replayed()
    replay(settings, "fix", "acct-1", replay_id="r-fix-again")
    service.replayed()
    assert len(external.ledger.entries()) == 4
    again = recordings(settings, dynamodb).get(deposit, "ledger-export@r-fix-again")
    assert again is not None
    assert again.status == "nothing"


def test_a_fix_replay_that_finds_nothing_to_correct_sends_nothing(
    settings: Settings, external: External
) -> None:
    commit(
        settings, ("acct-1", "AccountOpened", {"owner": "Ada"}), ("acct-1", "MoneyDeposited", {"amount": 300})
    )
    service = Service(settings)
    service.live()

    replay(settings, "fix", "acct-1", replay_id="r-fix")
    assert service.replayed() == []

    assert external.ledger.request_count("POST /entries") == 1
    assert external.rates.request_count() == 1


def test_a_missing_recording_fails_the_record_and_calls_nothing(
    settings: Settings, external: External, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given events whose live processing left no recording (they predate the service, say) ...
    commit(
        settings, ("acct-1", "AccountOpened", {"owner": "Ada"}), ("acct-1", "MoneyDeposited", {"amount": 300})
    )
    service = Service(settings)
    service.changes.read()  # ... and were never delivered to it

    replay(settings, "feature", "acct-1", replay_id="r-feature")
    failures = service.replayed()

    # The deposit fails (retried, then dead-lettered), explicitly; nothing was asked live.
    assert len(failures) == 1
    assert external.rates.request_count() == 0
    assert external.ledger.request_count() == 0


def test_the_skip_and_live_policies_are_explicit_choices(
    settings: Settings, external: External, monkeypatch: pytest.MonkeyPatch, dynamodb: Any
) -> None:
    _, deposit = commit(
        settings, ("acct-1", "AccountOpened", {"owner": "Ada"}), ("acct-1", "MoneyDeposited", {"amount": 300})
    )
    service = Service(settings)
    service.changes.read()

    deploy(monkeypatch, ES_GATEWAY_MISSING="skip")
    replay(settings, "feature", "acct-1", replay_id="r-skip")
    assert service.replayed() == []
    assert external.rates.request_count() == 0

    deploy(monkeypatch, ES_GATEWAY_MISSING="live")
    replay(settings, "feature", "acct-1", replay_id="r-live")
    assert service.replayed() == []
    assert external.rates.request_count() == 1  # asked, because the setting says so
    assert external.ledger.request_count() == 0  # a feature replay still sends nothing
    fallback = recordings(settings, dynamodb).get(deposit, f"{RATE_CALL}@r-live")
    assert fallback is not None
    assert fallback.note is not None
    assert "ES_GATEWAY_MISSING=live" in fallback.note


def test_a_crash_after_the_ledger_took_the_entry_resends_it_once_with_the_same_id(
    settings: Settings, external: External
) -> None:
    commit(
        settings, ("acct-1", "AccountOpened", {"owner": "Ada"}), ("acct-1", "MoneyDeposited", {"amount": 500})
    )
    service = Service(settings)
    records = service.changes.read()
    external.ledger.drop_next(1)  # the ledger stores the entry; its answer never arrives

    first = service._invoke(service.changes.event(records))
    assert len(first) == 1  # reported: Lambda retries from the deposit
    retry = [r for r in records if r["dynamodb"]["SequenceNumber"] >= first[0]["itemIdentifier"]]
    assert service._invoke(service.changes.event(retry)) == []

    assert external.ledger.request_count("POST /entries") == 2
    assert external.ledger.duplicates == 1
    assert len(external.ledger.entries()) == 1


def test_a_forged_fix_record_without_the_replayers_definition_sends_no_correction(
    settings: Settings, external: External, monkeypatch: pytest.MonkeyPatch, kinesis: Any
) -> None:
    from eventlog.codec import event_to_data, with_replay
    from eventlog.envelope import ReplayInfo
    from eventlog.store import EventStore

    deploy(monkeypatch, ES_LEDGER_EXPORT_VERSION="1")
    commit(
        settings, ("acct-1", "AccountOpened", {"owner": "Ada"}), ("acct-1", "MoneyDeposited", {"amount": 500})
    )
    service = Service(settings)
    service.live()
    deploy(monkeypatch, ES_LEDGER_EXPORT_VERSION="2")
    store = EventStore(handlers.runtime.dynamodb(), settings.events_table, settings.event_status_table)
    deposit = store.get("acct-1", 2)
    assert deposit is not None
    kinesis.put_record(
        StreamName=settings.playback_stream,
        Data=event_to_data(with_replay(deposit, ReplayInfo("made-up", "fix"))),
        PartitionKey="acct-1",
    )

    assert len(service.replayed()) == 1
    assert external.ledger.request_count("POST /entries") == 1  # the live entry only


def test_records_after_a_failure_wait_for_it(settings: Settings, external: External) -> None:
    commit(
        settings,
        ("acct-1", "AccountOpened", {"owner": "Ada"}),
        ("acct-1", "MoneyDeposited", {"amount": 100}),
        ("acct-1", "MoneyDeposited", {"amount": 200}),
    )
    external.ledger.fail_next(1, status=503)

    failures = Service(settings).live()

    assert len(failures) == 1
    assert external.ledger.entries() == []  # the second deposit was not exported past the first
    assert external.ledger.request_count("POST /entries") == 1


def test_an_entry_the_ledger_refuses_for_good_is_recorded_and_does_not_hold_up_the_next(
    settings: Settings, external: External, dynamodb: Any
) -> None:
    _, first, _ = commit(
        settings,
        ("acct-1", "AccountOpened", {"owner": "Ada"}),
        ("acct-1", "MoneyDeposited", {"amount": 100}),
        ("acct-1", "MoneyDeposited", {"amount": 200}),
    )
    external.ledger.fail_next(1, status=422)

    assert Service(settings).live() == []

    assert [e["amount"] for e in external.ledger.entries()] == [200]
    refused = recordings(settings, dynamodb).get(first, "ledger-export")
    assert refused is not None
    assert refused.status == "refused"
    assert refused.note is not None
    assert "422" in refused.note


def test_no_url_configured_fails_a_live_event_with_the_variable_to_set(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from handlers import service as service_module

    monkeypatch.delenv("ES_EXCHANGE_RATES_URL", raising=False)
    commit(
        settings, ("acct-1", "AccountOpened", {"owner": "Ada"}), ("acct-1", "MoneyDeposited", {"amount": 100})
    )
    events = list(service_module.runtime.event_store().read("acct-1"))

    with pytest.raises(Exception, match="ES_EXCHANGE_RATES_URL is not set"):
        service_module.process(events[1])


def test_a_record_that_is_not_an_event_is_skipped(settings: Settings) -> None:
    response = invoke(
        "service",
        {
            "Records": [
                {"eventSource": "aws:kinesis", "kinesis": {"data": "bm90IGpzb24=", "sequenceNumber": "1"}}
            ]
        },
        prefix="es-test",
    )
    assert response == {"batchItemFailures": []}
