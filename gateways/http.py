"""A small JSON-over-HTTP client for external systems (the standard library's; no extra dependency in the
Lambda bundle). It tells apart a request that surely did not arrive from one that may have: the gateway keeps a
call that may have arrived pending, and sends it again with the same idempotency key."""

from __future__ import annotations

import http.client
import socket
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Protocol

import orjson

from gateways.exceptions import ExternalSystemError
from gateways.types import JSON


class HttpClient(Protocol):
    """What a gateway needs of an HTTP client (JsonHttp, or NotConfigured)."""

    name: str

    def get(self, path: str, query: dict[str, str] | None = None) -> JSON: ...

    def post(self, path: str, body: JSON, headers: dict[str, str] | None = None) -> JSON: ...


class NotConfigured:
    """Stands in for an external system whose URL is not set: every call fails, saying which variable to set
    (a replay answered from recordings never calls, so it works without one)."""

    def __init__(self, name: str, variable: str) -> None:
        self.name = name
        self.variable = variable

    def get(self, path: str, query: dict[str, str] | None = None) -> JSON:
        """Fail: there is nowhere to send it."""
        raise ExternalSystemError(f"{self.name}: {self.variable} is not set", maybe_sent=False)

    def post(self, path: str, body: JSON, headers: dict[str, str] | None = None) -> JSON:
        """Fail: there is nowhere to send it."""
        raise ExternalSystemError(f"{self.name}: {self.variable} is not set", maybe_sent=False)


class JsonHttp:
    """Calls one external system at `base_url`; `timeout` (seconds) bounds connecting and each read."""

    def __init__(self, base_url: str, *, timeout: float = 5.0, name: str = "external system") -> None:
        parts = urllib.parse.urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"{name} URL {base_url!r} is not an http(s) URL")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.name = name

    def get(self, path: str, query: dict[str, str] | None = None) -> JSON:
        """GET `path` (with query parameters); the JSON object answered."""
        target = path + (f"?{urllib.parse.urlencode(query)}" if query else "")
        return self._call("GET", target, None, {})

    def post(self, path: str, body: JSON, headers: dict[str, str] | None = None) -> JSON:
        """POST a JSON body; the JSON object answered."""
        return self._call("POST", path, orjson.dumps(body), headers or {})

    def _call(self, method: str, target: str, body: bytes | None, headers: dict[str, str]) -> JSON:
        request = urllib.request.Request(self.base_url + target, data=body, method=method)
        request.add_header("Accept", "application/json")
        if body is not None:
            request.add_header("Content-Type", "application/json")
        for name, value in headers.items():
            request.add_header(name, value)
        what = f"{self.name} ({method} {target})"
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
                status = response.status
        except urllib.error.HTTPError as error:
            detail = error.read()[:300].decode("utf-8", "replace")
            # A 5xx may have been applied before the failure; a 4xx was refused and changed nothing.
            raise ExternalSystemError(
                f"{what} answered {error.code}: {detail}", maybe_sent=error.code >= 500, status=error.code
            ) from error
        except urllib.error.URLError as error:
            reason: Any = error.reason
            raise ExternalSystemError(
                f"{what} unreachable: {reason}", maybe_sent=_maybe_arrived(reason)
            ) from error
        except (TimeoutError, ConnectionError, http.client.HTTPException) as error:
            # The request went out and the answer did not come back: it may have been taken.
            raise ExternalSystemError(f"{what} failed after sending: {error!r}", maybe_sent=True) from error
        try:
            value = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError as error:
            raise ExternalSystemError(f"{what} answered {status} with non-JSON", maybe_sent=True) from error
        if not isinstance(value, dict):
            raise ExternalSystemError(f"{what} answered a JSON {type(value).__name__}", maybe_sent=True)
        return value


def _maybe_arrived(reason: Any) -> bool:
    # urllib wraps errors raised while connecting (refused, unknown host) as URLError: those never arrived.
    # A timeout or reset wrapped the same way may have happened after the request was written.
    return not isinstance(reason, ConnectionRefusedError | socket.gaierror)
