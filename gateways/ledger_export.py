"""The gateway to the ledger-export service (an external update)."""

from __future__ import annotations

from gateways.base import Difference, Gateway, UpdateResult
from gateways.http import HttpClient
from gateways.types import JSON, CallContext


class LedgerExport:
    """`export(ctx, entry, difference)`: tell the ledger about the event being processed. The entry goes out
    with its idempotency key as `entry_id` (and the `Idempotency-Key` header), so the ledger takes a resent
    entry once."""

    CALL = "ledger-export"

    def __init__(self, gateway: Gateway, http: HttpClient) -> None:
        self.gateway = gateway
        self.http = http

    def export(self, ctx: CallContext, entry: JSON | None, difference: Difference) -> UpdateResult:
        """Send `entry` (live), nothing (replay), or the correction `difference` computes (fix)."""

        def send(request: JSON, key: str) -> JSON:
            return self.http.post("/entries", {**request, "entry_id": key}, {"Idempotency-Key": key})

        return self.gateway.update(ctx, self.CALL, entry, send, difference)
