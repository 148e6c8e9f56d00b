"""The demo's gateways part (issue 4, items 4 and 5): the service function's external calls, live, in a feature
replay and in a fix replay.

Carol's account runs through release 1 of the ledger export, which converts EUR to USD with the rate inverted
(a bug): the live deposit goes to the ledger-export service wrong, at the rate the exchange-rate service
answered then. A feature replay runs the service over her events again: it asks no rate (the recorded answer
is used) and sends no entry. Release 2 (the fix) is deployed and her events are replayed in fix mode: the ledger
gets only the correction, computed at the recorded rate, although the market has moved since.
"""

from __future__ import annotations

import json
import urllib.request
from decimal import Decimal
from typing import Any

from devstack.demo import Demo, DemoError
from domain.ledger_export import to_reporting
from gateways.recordings import DynamoRecordings
from gateways.types import Recording

TITLE = "Gateways: external systems live, in a feature replay and in a fix replay"
EXPORT_CALL = "ledger-export"
RATE_CALL = "exchange-rate:EUR/USD"


def cents(amount: int, currency: str) -> str:
    """-2252 -> '-22.52 USD'."""
    return f"{Decimal(amount) / 100:.2f} {currency}"


def entry_text(entry: dict[str, Any]) -> str:
    return (
        f"{entry['kind']} {cents(entry['amount'], entry['currency'])} -> "
        f"{cents(entry['reporting_amount'], entry['reporting_currency'])} at {entry['rate']}"
    )


class External:
    """Reads what the fake external systems saw (their own read API and request counters)."""

    def __init__(self, demo: Demo) -> None:
        urls = demo.need("ES_EXCHANGE_RATES_URL", "ES_LEDGER_EXPORT_URL")
        self.rates_url = urls["ES_EXCHANGE_RATES_URL"]
        self.ledger_url = urls["ES_LEDGER_EXPORT_URL"]

    def entries(self, account: str) -> list[dict[str, Any]]:
        return list(_get(f"{self.ledger_url}/entries?account_id={account}")["entries"])

    def counts(self) -> tuple[int, int]:
        """(questions the rate service answered, entries posted to the ledger) so far."""
        rates = _get(f"{self.rates_url}/_stats")["requests"]
        ledger = _get(f"{self.ledger_url}/_stats")["requests"]
        return int(rates.get("GET /rates", 0)), int(ledger.get("POST /entries", 0))


def _get(url: str) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            value: dict[str, Any] = json.loads(response.read())
            return value
    except OSError as exc:
        raise DemoError(f"the fake external system at {url} does not answer ({exc})") from exc


def section(demo: Demo) -> None:
    """Run the part (see the module docstring); raises DemoError when the stack does something else."""
    external = External(demo)
    recordings = DynamoRecordings(demo.dynamodb(), demo.settings.table("gateway_recordings"))
    carol = f"carol-{demo.suffix}"
    demo.say(f"The service function exports every balance change of {carol}'s account to a ledger-export")
    demo.say("service, converted from EUR to USD at the rate an exchange-rate service gives at the time.")
    demo.say(f"  exchange rates: {external.rates_url}   ledger export: {external.ledger_url}")

    demo.step("1. Release 1 of the service is live; it has a bug: it divides by the rate")
    demo.deploy({"ES_LEDGER_EXPORT_VERSION": "1"}, "release 1 of the ledger export")
    demo.commit(carol, "AccountOpened", {"owner": "Carol"})
    deposit = demo.commit(carol, "MoneyDeposited", {"amount": 10000})
    deposit_id = str(deposit["event_id"])
    (live,) = demo.wait_for(lambda: external.entries(carol) or None, "the ledger to get Carol's deposit")
    demo.say(f"   the ledger got: {entry_text(live)}   (entry {live['entry_id']})")
    rate = demo.wait_for(lambda: recordings.get(deposit_id, RATE_CALL), "the rate's recording")
    answered = (rate.response or {}).get("rate")
    demo.say(f"   recorded: the exchange-rate service answered {answered} for this event")
    if answered is None or live["reporting_amount"] != to_reporting(10000, Decimal(answered), conversion=1):
        raise DemoError(f"expected release 1 to send 100.00 EUR / {answered}, got {entry_text(live)}")

    demo.step("2. A feature replay of Carol's events: the service runs again, external systems see nothing")
    before = external.counts()
    feature = f"feature-{demo.suffix}"
    demo.replay("--mode", "feature", "--aggregate", carol, "--replay-id", feature)
    suppressed = _wait_recording(
        demo, recordings, deposit_id, f"{EXPORT_CALL}@{feature}", "the feature replay"
    )
    after = external.counts()
    demo.say(
        f"   rate questions asked: {after[0] - before[0]}, ledger entries sent: {after[1] - before[1]} "
        "(the service's gateways answered from the recordings and suppressed the update)"
    )
    if after != before:
        raise DemoError(f"a feature replay reached an external system: {before} -> {after} requests")
    if suppressed.status != "suppressed" or suppressed.request is None:
        raise DemoError(f"expected the replay's update to be recorded as suppressed, got {suppressed.status}")
    today = _get(f"{external.rates_url}/rates/EUR/USD")["rate"]  # the demo's own question, after the count
    demo.say(
        f"   what it would have sent: {entry_text(suppressed.request)}: the recorded rate, not today's {today}"
    )

    demo.step("3. Release 2 fixes the conversion; a fix replay sends the ledger only the difference")
    demo.deploy({"ES_LEDGER_EXPORT_VERSION": "2"}, "release 2 of the ledger export (amount x rate)")
    fix = f"fix-{demo.suffix}"
    before = external.counts()
    demo.replay("--mode", "fix", "--aggregate", carol, "--replay-id", fix)
    corrected = _wait_recording(demo, recordings, deposit_id, f"{EXPORT_CALL}@{fix}", "the fix replay")
    entries = demo.wait_for(
        lambda: ((found := external.entries(carol)) and len(found) >= 2 and found) or None,
        "the ledger to get the correction",
    )
    after = external.counts()
    for entry in entries:
        demo.say(f"   ledger: {entry_text(entry)}   (entry {entry['entry_id']})")
    total = sum(int(e["reporting_amount"]) for e in entries)
    demo.say(
        f"   the ledger now holds {cents(total, 'USD')} for the deposit = 100.00 EUR x {answered}; "
        f"rate questions asked by the fix: {after[0] - before[0]}"
    )
    right = to_reporting(10000, Decimal(answered))
    if corrected.status != "sent" or total != right or after[0] != before[0] or after[1] - before[1] != 1:
        raise DemoError(
            f"expected one correction to {cents(right, 'USD')} and no rate question; got {corrected.status}, "
            f"{cents(total, 'USD')}, requests {before} -> {after}"
        )

    demo.step("4. The same fix replayed again sends nothing: the correction is recorded")
    again = f"fix-again-{demo.suffix}"
    demo.replay("--mode", "fix", "--aggregate", carol, "--replay-id", again)
    nothing = _wait_recording(demo, recordings, deposit_id, f"{EXPORT_CALL}@{again}", "the second fix replay")
    if nothing.status != "nothing" or len(external.entries(carol)) != 2:
        raise DemoError(f"expected no second correction, got {nothing.status}")
    demo.say("   no difference: nothing sent")
    demo.deploy({"ES_LEDGER_EXPORT_VERSION": None}, "back to the default release")


def _wait_recording(
    demo: Demo, recordings: DynamoRecordings, event_id: str, call: str, what: str
) -> Recording:
    def done() -> Recording | None:
        found = recordings.get(event_id, call)
        return found if found is not None and found.status != "pending" else None

    return demo.wait_for(done, f"the service to process {what}")
