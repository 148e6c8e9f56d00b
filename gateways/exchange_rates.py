"""The gateway to the exchange-rate service (an external query)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from gateways.base import Gateway, QueryAnswer
from gateways.exceptions import ExternalSystemError
from gateways.http import HttpClient
from gateways.types import JSON, CallContext


@dataclass(frozen=True, slots=True)
class Rate:
    """A rate and where its answer came from (live, recorded, live_fallback)."""

    rate: Decimal
    source: str
    answer: JSON


class ExchangeRates:
    """`rate(ctx, "EUR", "USD", at)`: the rate for the event being processed. Live it asks the service (which
    knows only the current rate); in a replay the answer recorded when the event was first processed."""

    def __init__(self, gateway: Gateway, http: HttpClient) -> None:
        self.gateway = gateway
        self.http = http

    @staticmethod
    def call_name(base: str, quote: str) -> str:
        """The stable name of the question (what a replay looks the recording up by)."""
        return f"exchange-rate:{base}/{quote}"

    def rate(self, ctx: CallContext, base: str, quote: str, at: str) -> Rate:
        """The base -> quote rate at `at` (the event's occurred_at; asked for, though the service ignores it)."""
        request = {"base": base, "quote": quote, "at": at}

        def ask(req: JSON) -> JSON:
            answer = self.http.get(f"/rates/{base}/{quote}", {"at": at})
            _rate(answer, self.http.name)  # never record an answer that cannot be used
            return answer

        answered: QueryAnswer = self.gateway.query(ctx, self.call_name(base, quote), request, ask)
        return Rate(_rate(answered.answer, self.http.name), answered.source, answered.answer)


def _rate(answer: JSON, name: str) -> Decimal:
    try:
        rate = Decimal(str(answer["rate"]))
    except (KeyError, InvalidOperation):
        raise ExternalSystemError(f"{name} answered without a rate: {answer}", maybe_sent=False) from None
    if not rate.is_finite() or rate <= 0:
        raise ExternalSystemError(f"{name} answered the rate {answer['rate']!r}", maybe_sent=False)
    return rate
