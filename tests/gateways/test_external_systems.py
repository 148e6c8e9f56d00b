"""The fake external systems (devstack/fakes.py) and the gateways' HTTP side against them: what a request that
surely failed, and one that may have arrived, look like to the gateway."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from decimal import Decimal

import pytest

from devstack.fakes import ExchangeRateService, LedgerExportService
from gateways.base import Gateway
from gateways.exceptions import ExternalSystemError
from gateways.exchange_rates import ExchangeRates
from gateways.http import JsonHttp
from gateways.ledger_export import LedgerExport
from gateways.recordings import MemoryRecordings
from gateways.types import CallContext

LIVE = CallContext("e-1", "acct-1", 2, "live")
REPLAY = CallContext("e-1", "acct-1", 2, "replay", "r-1")


@pytest.fixture
def rates() -> Iterator[ExchangeRateService]:
    with ExchangeRateService(rate="1.1000", step="0.0100") as service:
        yield service


@pytest.fixture
def ledger() -> Iterator[LedgerExportService]:
    with LedgerExportService() as service:
        yield service


def entry(amount: int = 100) -> dict:
    return {"kind": "entry", "account_id": "acct-1", "amount": amount, "reporting_amount": amount * 2}


def test_the_rate_service_moves_after_every_answer_and_ignores_the_time_asked_for(
    rates: ExchangeRateService,
) -> None:
    http = JsonHttp(rates.url)
    first = http.get("/rates/EUR/USD", {"at": "2020-01-01T00:00:00Z"})
    second = http.get("/rates/EUR/USD", {"at": "2020-01-01T00:00:00Z"})

    assert (first["rate"], second["rate"]) == ("1.1000", "1.1100")
    assert rates.request_count("GET /rates") == 2
    assert http.get("/_stats")["requests"]["GET /rates"] == 2


def test_the_ledger_takes_an_entry_once_per_entry_id_and_reads_them_back(ledger: LedgerExportService) -> None:
    http = JsonHttp(ledger.url)
    first = http.post("/entries", {**entry(), "entry_id": "k-1"})
    again = http.post("/entries", {**entry(), "entry_id": "k-1"})
    http.post("/entries", {**entry(7), "account_id": "acct-2"}, {"Idempotency-Key": "k-2"})

    assert again == {**first, "duplicate": True}
    assert ledger.duplicates == 1
    assert [e["entry_id"] for e in ledger.entries()] == ["k-1", "k-2"]
    assert [e["entry_id"] for e in http.get("/entries", {"account_id": "acct-2"})["entries"]] == ["k-2"]
    with pytest.raises(ExternalSystemError, match="400") as refused:
        http.post("/entries", {"amount": 1})
    assert refused.value.maybe_sent is False


def test_a_5xx_may_have_been_applied_and_a_4xx_was_not(ledger: LedgerExportService) -> None:
    http = JsonHttp(ledger.url, name="ledger")
    ledger.fail_next(1, status=503)
    with pytest.raises(ExternalSystemError, match=r"ledger \(POST /entries\) answered 503") as failed:
        http.post("/entries", {**entry(), "entry_id": "k-1"})
    assert (failed.value.maybe_sent, failed.value.status) == (True, 503)
    assert ledger.entries() == []


def test_a_dropped_answer_is_in_doubt_though_the_entry_arrived(ledger: LedgerExportService) -> None:
    http = JsonHttp(ledger.url)
    ledger.drop_next(1)

    with pytest.raises(ExternalSystemError) as dropped:
        http.post("/entries", {**entry(), "entry_id": "k-1"})

    assert dropped.value.maybe_sent is True
    assert [e["entry_id"] for e in ledger.entries()] == ["k-1"]


def test_nothing_listening_surely_did_not_arrive() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ExternalSystemError, match="unreachable") as refused:
        JsonHttp(f"http://127.0.0.1:{port}").get("/rates/EUR/USD")
    assert refused.value.maybe_sent is False


def test_a_url_that_is_not_http_is_refused_at_once() -> None:
    with pytest.raises(ValueError, match="not an http"):
        JsonHttp("ftp://example.com", name="ledger")


def test_the_rates_gateway_records_live_and_answers_a_replay_from_the_recording(
    rates: ExchangeRateService,
) -> None:
    gateway = ExchangeRates(Gateway(MemoryRecordings()), JsonHttp(rates.url))

    live = gateway.rate(LIVE, "EUR", "USD", "2026-01-01T00:00:00.000000Z")
    replayed = gateway.rate(REPLAY, "EUR", "USD", "2026-01-01T00:00:00.000000Z")

    assert (live.rate, live.source) == (Decimal("1.1000"), "live")
    assert (replayed.rate, replayed.source) == (Decimal("1.1000"), "recorded")
    assert rates.current("EUR", "USD") == Decimal("1.1100")  # what a live replay would have been told
    assert rates.request_count() == 1


def test_an_unusable_rate_is_never_recorded(rates: ExchangeRateService) -> None:
    store = MemoryRecordings()
    gateway = ExchangeRates(Gateway(store), JsonHttp(rates.url))
    rates.set_rate("EUR", "USD", "0")

    with pytest.raises(ExternalSystemError, match="rate"):
        gateway.rate(LIVE, "EUR", "USD", "2026-01-01T00:00:00.000000Z")
    assert store.all() == []


def test_the_ledger_gateway_sends_the_idempotency_key_as_the_entry_id(ledger: LedgerExportService) -> None:
    export = LedgerExport(Gateway(MemoryRecordings()), JsonHttp(ledger.url))

    result = export.export(LIVE, entry(), lambda taken, wanted: None)

    assert result.action == "sent"
    (taken,) = ledger.entries()
    assert taken["entry_id"] == "e-1:ledger-export"
    assert result.recording is not None
    assert result.recording.response is not None
    assert result.recording.response["entry_id"] == "e-1:ledger-export"
