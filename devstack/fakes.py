"""Fake external systems for the example microservice, on loopback: what the service function's gateways call.

- `ExchangeRateService`: `GET /rates/{base}/{quote}` answers the current rate, and the rate moves after every
  answer (a busy market). Like most such services it has no history: it ignores `?at=...`, so a replay that
  asked it again would get another answer than the original processing did. That is what recorded answers are
  for.
- `LedgerExportService`: `POST /entries` takes a ledger entry (JSON with `entry_id`, or an `Idempotency-Key`
  header): 201 with a receipt, or 200 with the first receipt again when that entry id was taken before (it
  dedupes, as a payment or ledger API does). `GET /entries[?account_id=...]` reads them back in arrival order.

Both count every request (`requests`, and `GET /_stats`), so tests and the demo can prove that a replay touched
nothing, and both take injected faults: `fail_next(n, status)` answers the next n requests with that status,
`drop_next(n)` takes the next n requests (an entry is stored) and closes the connection without an answer,
as when the network fails after the request arrived.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

import orjson

from eventlog.envelope import utc_now

log = logging.getLogger("devstack.fakes")


class Drop(Exception):
    """Raised inside a fake's handler: close the connection without answering."""


class FakeService:
    """A JSON HTTP service on 127.0.0.1 (port 0: a free one), served from a background thread."""

    name = "fake"

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._lock = threading.Lock()
        self.requests: Counter[str] = Counter()  # "GET /rates" -> count
        self._fail: list[int] = []
        self._drop = 0
        self._server = ThreadingHTTPServer((host, port), _handler_for(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> Self:
        """Serve on a background thread."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever, args=(0.05,), name=f"fake-{self.name}", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def request_count(self, prefix: str = "") -> int:
        """Requests served so far whose "METHOD /path-head" starts with `prefix` (all when empty)."""
        with self._lock:
            return sum(n for key, n in self.requests.items() if key.startswith(prefix))

    def fail_next(self, count: int = 1, status: int = 503) -> None:
        """Answer the next `count` requests with `status` (nothing is done with them)."""
        with self._lock:
            self._fail.extend([status] * count)

    def drop_next(self, count: int = 1) -> None:
        """Do the next `count` requests, then close the connection without an answer."""
        with self._lock:
            self._drop += count

    # -- what a subclass implements --------------------------------------------------------------------------

    def route(
        self, method: str, path: list[str], query: dict[str, list[str]], body: Any, headers: Any
    ) -> tuple[int, Any]:
        raise NotImplementedError

    # -- plumbing --------------------------------------------------------------------------------------------

    def _serve(self, method: str, target: str, raw: bytes, headers: Any) -> tuple[int, Any]:
        parts = urlsplit(target)
        path = [p for p in parts.path.split("/") if p]
        with self._lock:
            self.requests[f"{method} /{path[0] if path else ''}"] += 1
            status = self._fail.pop(0) if self._fail else None
            drop = self._drop > 0
            if drop:
                self._drop -= 1
        if path == ["_stats"]:
            with self._lock:
                return 200, {"requests": dict(self.requests)}
        if status is not None:
            return status, {"message": f"injected failure ({status})"}
        try:
            body = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            return 400, {"message": "the body is not JSON"}
        answer = self.route(method, path, parse_qs(parts.query), body, headers)
        if drop:
            raise Drop
        return answer


def _handler_for(service: FakeService) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = f"devstack-{service.name}"
        sys_version = ""

        def do_GET(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                status, body = service._serve(self.command, self.path, raw, self.headers)
            except Drop:
                self.close_connection = True
                self.connection.close()
                return
            data = orjson.dumps(body)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_POST = do_PUT = do_DELETE = do_GET

        def log_message(self, format: str, *args: Any) -> None:
            log.debug(f"{service.name}: {format}", *args)

    return Handler


class ExchangeRateService(FakeService):
    """EUR->USD and friends: the current rate, which moves by `step` after every answer."""

    name = "exchange-rates"

    def __init__(
        self, rate: str = "1.1000", step: str = "0.0100", host: str = "127.0.0.1", port: int = 0
    ) -> None:
        super().__init__(host, port)
        self._rates: dict[tuple[str, str], Decimal] = {}
        self.initial = Decimal(rate)
        self.step = Decimal(step)

    def set_rate(self, base: str, quote: str, rate: str) -> None:
        """Set the rate the next answer gives."""
        with self._lock:
            self._rates[(base, quote)] = Decimal(rate)

    def current(self, base: str, quote: str) -> Decimal:
        """The rate the next answer would give."""
        with self._lock:
            return self._rates.get((base, quote), self.initial)

    def route(
        self, method: str, path: list[str], query: dict[str, list[str]], body: Any, headers: Any
    ) -> tuple[int, Any]:
        if method == "GET" and len(path) == 3 and path[0] == "rates":
            base, quote = path[1].upper(), path[2].upper()
            if not (len(base) == len(quote) == 3 and base.isalpha() and quote.isalpha()) or base == quote:
                return 400, {"message": f"no rate for {path[1]}/{path[2]}"}
            with self._lock:
                rate = self._rates.get((base, quote), self.initial)
                self._rates[(base, quote)] = rate + self.step  # the market moves on
            # `at` is ignored: the service knows only the current rate (see the module docstring).
            return 200, {"base": base, "quote": quote, "rate": f"{rate:.4f}", "as_of": utc_now()}
        if method == "PUT" and len(path) == 3 and path[0] == "rates" and isinstance(body, dict):
            self.set_rate(path[1].upper(), path[2].upper(), str(body.get("rate")))
            return 200, {"rate": str(body.get("rate"))}
        return 404, {"message": f"no route for {method} /{'/'.join(path)}"}


class LedgerExportService(FakeService):
    """Takes ledger entries (deduped by entry id) and lets them be read back."""

    name = "ledger-export"

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port)
        self._entries: list[dict[str, Any]] = []
        self._receipts: dict[str, dict[str, Any]] = {}
        self.duplicates = 0

    def entries(self, account_id: str | None = None) -> list[dict[str, Any]]:
        """Every entry taken (each once), in arrival order; only one account's when given."""
        with self._lock:
            return [dict(e) for e in self._entries if account_id is None or e.get("account_id") == account_id]

    def route(
        self, method: str, path: list[str], query: dict[str, list[str]], body: Any, headers: Any
    ) -> tuple[int, Any]:
        if path == ["entries"] and method == "POST":
            if not isinstance(body, dict):
                return 400, {"message": "an entry is a JSON object"}
            entry_id = body.get("entry_id") or headers.get("Idempotency-Key")
            if not isinstance(entry_id, str) or not entry_id:
                return 400, {"message": "an entry needs an entry_id (or an Idempotency-Key header)"}
            if not isinstance(body.get("reporting_amount"), int) or not isinstance(body.get("amount"), int):
                return 400, {"message": "amount and reporting_amount must be integers (cents)"}
            with self._lock:
                receipt = self._receipts.get(entry_id)
                if receipt is not None:
                    self.duplicates += 1
                    return 200, {**receipt, "duplicate": True}
                receipt = {"entry_id": entry_id, "sequence": len(self._entries) + 1, "received_at": utc_now()}
                self._entries.append({**body, "entry_id": entry_id, "received_at": receipt["received_at"]})
                self._receipts[entry_id] = receipt
            return 201, receipt
        if path == ["entries"] and method == "GET":
            account = query["account_id"][0] if query.get("account_id") else None
            return 200, {"entries": self.entries(account)}
        return 404, {"message": f"no route for {method} /{'/'.join(path)}"}
