"""The gateway's modes, on the in-memory recordings (the table is held to the same contract).

Given an event in a mode, when the service queries or updates through the gateway, then the external system
(a counting stand-in here; the fake HTTP services in test_service_end_to_end) sees exactly what the mode allows.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from domain.ledger_export import correction
from gateways.base import Gateway
from gateways.exceptions import (
    ExternalSystemError,
    MissingRecording,
    ReplayNotAuthorised,
    SkipEvent,
)
from gateways.recordings import MemoryRecordings
from gateways.types import JSON, CallContext, MissingPolicy, Recording

LIVE = CallContext("e-1", "acct-1", 2, "live")
FEATURE = CallContext("e-1", "acct-1", 2, "replay", "r-feature")
FIX = CallContext("e-1", "acct-1", 2, "fix", "r-fix")
RATE = {"base": "EUR", "quote": "USD", "at": "2026-01-01T00:00:00.000000Z"}


def entry(amount: int, reporting: int, conversion: int = 2) -> JSON:
    return {
        "kind": "entry",
        "account_id": "acct-1",
        "event_id": "e-1",
        "version": 2,
        "type": "MoneyDeposited",
        "occurred_at": "2026-01-01T00:00:00.000000Z",
        "currency": "EUR",
        "amount": amount,
        "reporting_currency": "USD",
        "reporting_amount": reporting,
        "rate": "1.1000",
        "conversion": conversion,
    }


class Market:
    """An external query whose answer changes every time it is asked."""

    def __init__(self) -> None:
        self.asked = 0

    def __call__(self, request: JSON) -> JSON:
        self.asked += 1
        return {"rate": f"{1 + self.asked / 10:.4f}"}


class Ledger:
    """An external update that dedupes on the idempotency key, as the ledger-export service does."""

    def __init__(self) -> None:
        self.calls: list[tuple[JSON, str]] = []
        self.taken: dict[str, JSON] = {}
        self.fail_with: ExternalSystemError | None = None

    def __call__(self, request: JSON, key: str) -> JSON:
        self.calls.append((request, key))
        if self.fail_with is not None:
            error, self.fail_with = self.fail_with, None
            raise error
        self.taken.setdefault(key, request)
        return {"entry_id": key}

    def total(self) -> int:
        return sum(e["reporting_amount"] for e in self.taken.values())


def gateway(
    store: MemoryRecordings | None = None, missing: MissingPolicy = "error", fix_ok: bool = True
) -> Gateway:
    return Gateway(
        store if store is not None else MemoryRecordings(),
        missing=missing,
        replay_modes=lambda replay_id: "fix" if fix_ok and replay_id.startswith("r-fix") else None,
        epoch=lambda: 1_000_000.0,
    )


def no_difference(taken: Sequence[JSON], wanted: JSON | None) -> JSON | None:
    raise AssertionError("only a fix computes a difference")


# -- queries ----------------------------------------------------------------------------------------------------


def test_a_live_query_is_asked_once_and_a_redelivery_gets_the_recorded_answer() -> None:
    g, market = gateway(), Market()

    first = g.query(LIVE, "exchange-rate:EUR/USD", RATE, market)
    again = g.query(LIVE, "exchange-rate:EUR/USD", RATE, market)

    assert (first.answer, first.source) == ({"rate": "1.1000"}, "live")
    assert (again.answer, again.source) == ({"rate": "1.1000"}, "recorded")
    assert market.asked == 1


@pytest.mark.parametrize("ctx", [FEATURE, FIX], ids=["feature/rebuild", "fix"])
def test_a_replay_is_answered_from_the_recording_and_never_asks(ctx: CallContext) -> None:
    g, market = gateway(), Market()
    g.query(LIVE, "exchange-rate:EUR/USD", RATE, market)
    market(RATE)  # the market has moved on since

    answered = g.query(ctx, "exchange-rate:EUR/USD", RATE, market)

    assert (answered.answer, answered.source) == ({"rate": "1.1000"}, "recorded")
    assert market.asked == 2  # the live call and the move above; none from the replay


@pytest.mark.parametrize("ctx", [FEATURE, FIX], ids=["feature/rebuild", "fix"])
def test_a_missing_recording_is_an_error_by_default_never_a_live_call(ctx: CallContext) -> None:
    g, market = gateway(), Market()

    with pytest.raises(MissingRecording, match=r"no recording of call 'exchange-rate:EUR/USD'"):
        g.query(ctx, "exchange-rate:EUR/USD", RATE, market)

    assert market.asked == 0


def test_a_recording_of_another_question_is_not_an_answer() -> None:
    g, market = gateway(), Market()
    g.query(LIVE, "exchange-rate:EUR/USD", RATE, market)

    with pytest.raises(MissingRecording, match="another request"):
        g.query(FEATURE, "exchange-rate:EUR/USD", {**RATE, "at": "2030-01-01T00:00:00.000000Z"}, market)
    assert market.asked == 1


def test_the_skip_policy_skips_the_event_without_asking() -> None:
    g, market = gateway(missing="skip"), Market()

    with pytest.raises(SkipEvent):
        g.query(FEATURE, "exchange-rate:EUR/USD", RATE, market)
    assert market.asked == 0


def test_the_live_policy_asks_once_per_replay_and_keeps_the_original_slot_free() -> None:
    store = MemoryRecordings()
    g, market = gateway(store, missing="live"), Market()

    first = g.query(FEATURE, "exchange-rate:EUR/USD", RATE, market)
    again = g.query(FEATURE, "exchange-rate:EUR/USD", RATE, market)  # a redelivery within the replay

    assert (first.source, again.source) == ("live_fallback", "live_fallback")
    assert again.answer == first.answer
    assert market.asked == 1
    assert store.get("e-1", "exchange-rate:EUR/USD") is None  # not passed off as the original's
    own = store.get("e-1", "exchange-rate:EUR/USD@r-feature")
    assert own is not None
    assert own.note is not None
    assert "live fallback" in own.note
    assert own.expires_at == 1_000_000 + 30 * 24 * 3600


# -- live updates -----------------------------------------------------------------------------------------------


def test_a_live_update_is_sent_once_with_a_stable_key_and_a_redelivery_sends_nothing() -> None:
    store = MemoryRecordings()
    g, ledger = gateway(store), Ledger()

    sent = g.update(LIVE, "ledger-export", entry(10000, 9091), ledger, no_difference)
    again = g.update(LIVE, "ledger-export", entry(10000, 9091), ledger, no_difference)

    assert (sent.action, again.action) == ("sent", "already_done")
    assert ledger.calls == [(entry(10000, 9091), "e-1:ledger-export")]
    recorded = store.get("e-1", "ledger-export")
    assert recorded is not None
    assert (recorded.status, recorded.response, recorded.expires_at) == (
        "sent",
        {"entry_id": "e-1:ledger-export"},
        None,
    )


def test_a_live_update_of_nothing_is_recorded_so_a_fix_knows_nothing_went_out() -> None:
    store = MemoryRecordings()
    g, ledger = gateway(store), Ledger()

    result = g.update(LIVE, "ledger-export", None, ledger, no_difference)

    assert result.action == "nothing"
    assert ledger.calls == []
    recorded = store.get("e-1", "ledger-export")
    assert recorded is not None
    assert recorded.status == "nothing"


class CrashAfterSend(MemoryRecordings):
    """The process dies after the external system took the call, before its outcome is recorded."""

    def __init__(self) -> None:
        super().__init__()
        self.crash = True

    def replace_pending(self, recording: Recording) -> None:
        if self.crash and recording.status == "sent":
            self.crash = False
            raise RuntimeError("injected: the invocation dies after the external call")
        super().replace_pending(recording)


def test_a_crash_between_the_call_and_its_recording_resends_the_same_request_with_the_same_key() -> None:
    store = CrashAfterSend()
    g, ledger = gateway(store), Ledger()

    with pytest.raises(RuntimeError, match="injected"):
        g.update(LIVE, "ledger-export", entry(10000, 9091), ledger, no_difference)
    pending = store.get("e-1", "ledger-export")
    assert pending is not None
    assert pending.status == "pending"
    # The retry runs code that would now send something else (a deploy in between): the recorded request wins.
    retried = g.update(LIVE, "ledger-export", entry(10000, 11000), ledger, no_difference)

    assert retried.action == "resent"
    assert [key for _, key in ledger.calls] == ["e-1:ledger-export", "e-1:ledger-export"]
    assert ledger.calls[1][0] == entry(10000, 9091)
    assert len(ledger.taken) == 1  # the external system deduped on the key: taken once
    done = store.get("e-1", "ledger-export")
    assert done is not None
    assert (done.status, done.attempts) == ("sent", 2)


def test_a_failed_call_stays_pending_with_the_reason_and_the_retry_sends_it() -> None:
    store = MemoryRecordings()
    g, ledger = gateway(store), Ledger()
    ledger.fail_with = ExternalSystemError("ledger answered 503", maybe_sent=True, status=503)

    with pytest.raises(ExternalSystemError):
        g.update(LIVE, "ledger-export", entry(500, 550), ledger, no_difference)
    pending = store.get("e-1", "ledger-export")
    assert pending is not None
    assert pending.status == "pending"
    assert pending.note == "last attempt failed: ledger answered 503"

    assert g.update(LIVE, "ledger-export", entry(500, 550), ledger, no_difference).action == "resent"
    assert len(ledger.calls) == 2
    assert len(ledger.taken) == 1


def test_a_request_refused_for_good_is_recorded_and_a_fix_sends_it_anew() -> None:
    store = MemoryRecordings()
    g, ledger = gateway(store), Ledger()
    ledger.fail_with = ExternalSystemError("ledger answered 422: bad currency", maybe_sent=False, status=422)

    refused = g.update(LIVE, "ledger-export", entry(100, 91), ledger, no_difference)
    again = g.update(LIVE, "ledger-export", entry(100, 91), ledger, no_difference)  # a redelivery

    assert (refused.action, again.action) == ("refused", "already_done")
    assert len(ledger.calls) == 1  # not sent again: the answer would be the same
    recorded = store.get("e-1", "ledger-export")
    assert recorded is not None
    assert (recorded.status, recorded.note) == ("refused", "ledger answered 422: bad currency")
    fixed = g.update(FIX, "ledger-export", entry(100, 110), ledger, correction)
    assert fixed.action == "corrected"
    assert ledger.total() == 110  # nothing was taken before, so the whole entry


@pytest.mark.parametrize("status", [408, 429, 503])
def test_not_now_is_not_no(status: int) -> None:
    store = MemoryRecordings()
    g, ledger = gateway(store), Ledger()
    ledger.fail_with = ExternalSystemError(
        f"ledger answered {status}", maybe_sent=status >= 500, status=status
    )

    with pytest.raises(ExternalSystemError):
        g.update(LIVE, "ledger-export", entry(100, 91), ledger, no_difference)
    recorded = store.get("e-1", "ledger-export")
    assert recorded is not None
    assert recorded.status == "pending"


# -- replays ----------------------------------------------------------------------------------------------------


def test_a_replay_sends_no_update_and_records_what_it_would_have_sent() -> None:
    store = MemoryRecordings()
    g, ledger = gateway(store), Ledger()
    g.update(LIVE, "ledger-export", entry(10000, 9091), ledger, no_difference)

    result = g.update(FEATURE, "ledger-export", entry(10000, 11000), ledger, no_difference)

    assert result.action == "suppressed"
    assert len(ledger.calls) == 1  # the live one only
    own = store.get("e-1", "ledger-export@r-feature")
    assert own is not None
    assert (own.status, own.request, own.expires_at) == (
        "suppressed",
        entry(10000, 11000),
        1_000_000 + 30 * 24 * 3600,
    )
    original = store.get("e-1", "ledger-export")
    assert original is not None
    assert original.request == entry(10000, 9091)


def test_a_fix_sends_only_the_difference_once_and_a_later_fix_counts_it() -> None:
    store = MemoryRecordings()
    g, ledger = gateway(store), Ledger()
    g.update(LIVE, "ledger-export", entry(10000, 9091, conversion=1), ledger, no_difference)  # the bug

    fixed = g.update(FIX, "ledger-export", entry(10000, 11000), ledger, correction)
    redelivered = g.update(FIX, "ledger-export", entry(10000, 11000), ledger, correction)
    second_fix = CallContext("e-1", "acct-1", 2, "fix", "r-fix-2")
    nothing_more = g.update(second_fix, "ledger-export", entry(10000, 11000), ledger, correction)

    assert (fixed.action, redelivered.action, nothing_more.action) == (
        "corrected",
        "already_done",
        "no_difference",
    )
    assert len(ledger.calls) == 2
    sent, key = ledger.calls[1]
    assert key == "e-1:ledger-export@r-fix"
    assert (sent["kind"], sent["amount"], sent["reporting_amount"]) == ("correction", 0, 1909)
    assert ledger.total() == 11000  # what the ledger holds now is what the fixed code says
    recorded = store.get("e-1", "ledger-export@r-fix")
    assert recorded is not None
    assert (recorded.status, recorded.wanted, recorded.expires_at) == ("sent", entry(10000, 11000), None)


def test_a_fix_that_finds_no_difference_sends_nothing() -> None:
    store = MemoryRecordings()
    g, ledger = gateway(store), Ledger()
    g.update(LIVE, "ledger-export", entry(10000, 11000), ledger, no_difference)

    result = g.update(FIX, "ledger-export", entry(10000, 11000), ledger, correction)

    assert result.action == "no_difference"
    assert len(ledger.calls) == 1


def test_a_fix_of_an_event_whose_original_sent_nothing_sends_the_whole_entry() -> None:
    g, ledger = gateway(), Ledger()
    g.update(LIVE, "ledger-export", None, ledger, no_difference)  # e.g. refused by the old rules

    result = g.update(FIX, "ledger-export", entry(2500, 2750), ledger, correction)

    assert result.action == "corrected"
    assert result.sent is not None
    assert (result.sent["amount"], result.sent["reporting_amount"]) == (2500, 2750)
    assert ledger.total() == 2750


def test_a_fix_where_the_current_code_sends_nothing_takes_back_what_went_out() -> None:
    g, ledger = gateway(), Ledger()
    g.update(LIVE, "ledger-export", entry(-2500, -2750), ledger, no_difference)  # e.g. applied by a bad rule

    result = g.update(FIX, "ledger-export", None, ledger, correction)

    assert result.sent is not None
    assert (result.sent["amount"], result.sent["reporting_amount"]) == (2500, 2750)
    assert ledger.total() == 0


@pytest.mark.parametrize(
    ("policy", "expected"), [("error", MissingRecording), ("skip", SkipEvent)], ids=["error", "skip"]
)
def test_a_fix_without_the_original_recording_sends_nothing_unless_told(
    policy: MissingPolicy, expected: type[Exception]
) -> None:
    g, ledger = gateway(missing=policy), Ledger()

    with pytest.raises(expected):
        g.update(FIX, "ledger-export", entry(100, 110), ledger, correction)
    assert ledger.calls == []


def test_the_live_policy_takes_a_missing_original_as_nothing_sent() -> None:
    store = MemoryRecordings()
    g, ledger = gateway(store, missing="live"), Ledger()

    result = g.update(FIX, "ledger-export", entry(100, 110), ledger, correction)

    assert result.action == "corrected"
    assert ledger.total() == 110
    recorded = store.get("e-1", "ledger-export@r-fix")
    assert recorded is not None
    assert recorded.note is not None
    assert "taken as nothing sent" in recorded.note


def test_a_fix_first_finishes_a_call_in_doubt_with_its_own_key_then_corrects() -> None:
    store = CrashAfterSend()
    g, ledger = gateway(store), Ledger()
    with pytest.raises(RuntimeError):  # the ledger took 91; nobody recorded that it did
        g.update(LIVE, "ledger-export", entry(100, 91), ledger, no_difference)

    result = g.update(FIX, "ledger-export", entry(100, 110), ledger, correction)

    assert result.action == "corrected"
    assert [key for _, key in ledger.calls] == [
        "e-1:ledger-export",
        "e-1:ledger-export",
        "e-1:ledger-export@r-fix",
    ]
    assert ledger.total() == 110  # the resend was taken once; the correction is 19
    assert result.sent is not None
    assert result.sent["reporting_amount"] == 19
    original = store.get("e-1", "ledger-export")
    assert original is not None
    assert (original.status, original.attempts) == ("sent", 2)


@pytest.mark.parametrize("stored", [None, "feature"], ids=["no-definition", "a-feature-definition"])
def test_a_correction_needs_a_fix_replay_the_replayer_recorded(stored: str | None) -> None:
    g = Gateway(MemoryRecordings(), replay_modes=lambda replay_id: stored)
    ledger = Ledger()
    g.update(LIVE, "ledger-export", entry(100, 91), ledger, no_difference)

    with pytest.raises(ReplayNotAuthorised, match="replay r-fix is marked fix"):
        g.update(FIX, "ledger-export", entry(100, 110), ledger, correction)
    assert len(ledger.calls) == 1


@pytest.mark.parametrize("name", ["", "a@b", "with space", "x" * 201])
def test_call_names_are_checked(name: str) -> None:
    with pytest.raises(ValueError, match="call name"):
        gateway().query(LIVE, name, RATE, Market())


@pytest.mark.parametrize(
    ("replay", "mode"),
    [(None, "live"), ("rebuild", "replay"), ("feature", "replay"), ("fix", "fix")],
)
def test_the_mode_and_keys_follow_the_envelope(replay: str | None, mode: str) -> None:
    from eventlog.envelope import Event, ReplayInfo

    event = Event(
        event_id="e-9",
        aggregate_id="acct-9",
        type="MoneyDeposited",
        version=4,
        schema_version=1,
        occurred_at="2026-01-01T00:00:00.000000Z",
        recorded_at="2026-01-01T00:00:00.000000Z",
        payload={"amount": 1},
        replay=ReplayInfo("r-9", replay) if replay else None,  # type: ignore[arg-type]
    )

    ctx = CallContext.for_event(event)

    assert (ctx.mode, ctx.event_id, ctx.version) == (mode, "e-9", 4)
    assert ctx.key("ledger-export") == ("ledger-export" if replay is None else "ledger-export@r-9")
