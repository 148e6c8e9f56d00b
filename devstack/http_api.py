"""The API Gateway stand-in: an HTTP server that turns each request into a REST proxy event, invokes the route's
function, and turns the function's answer back into the HTTP response.

- Routes are `eventlog.topology.ROUTES` (method + resource template); a resource with literal segments wins over
  one with a {placeholder} in the same place, as on API Gateway.
- The event (devstack.shapes.rest_api_event) carries the raw path, every header in order (repeats in
  multiValueHeaders), every query pair with blank values kept, and the raw body bytes (base64 when they are not
  UTF-8).
- The answer's statusCode, headers, multiValueHeaders (merged as API Gateway merges them), body and
  isBase64Encoded make the response; Content-Type defaults to application/json, as on API Gateway.

Paths under `/_devstack/` are not API routes: they go to the stack's own control hook (`control`), and only
from a loopback client (see devstack.stack.LocalStack: changing a function's environment, as
`aws lambda update-function-configuration` does on AWS).

Where it says something of its own (API Gateway's REST APIs answer 403 "Missing Authentication Token" for both
an unknown path and a wrong method, which helps nobody locally):
- no route for the path: 404 {"message": ...}; the path matches but not the method: 405 with Allow;
- a body over API Gateway's 10 MB limit: 413 without invoking anything;
- a handler that raises, or answers something that is not a proxy response: 502 {"message": "Internal server
  error"}, as API Gateway says it, with the traceback in the devstack's log and never in the response.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import logging
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson

from devstack.lambda_runtime import LocalFunction
from devstack.shapes import match_resource, rest_api_event
from eventlog.topology import RouteSpec

log = logging.getLogger("devstack.http")

# API Gateway's payload limit for REST APIs.
MAX_BODY_BYTES = 10 * 1024 * 1024
CONTROL_PREFIX = "/_devstack/"


class Response:
    """What goes back to the client."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: Sequence[tuple[str, str]], body: bytes) -> None:
        self.status = status
        self.headers = list(headers)
        self.body = body


def message_response(status: int, message: str, headers: Sequence[tuple[str, str]] = ()) -> Response:
    """A JSON {"message": ...} answer in API Gateway's own style (used for errors of the gateway itself)."""
    return Response(
        status, [("Content-Type", "application/json"), *headers], orjson.dumps({"message": message})
    )


class RouteTable:
    """Finds the route for a method and raw path."""

    def __init__(self, routes: Sequence[RouteSpec]) -> None:
        self.routes = tuple(routes)

    def resolve(self, method: str, path: str) -> tuple[RouteSpec | None, list[str]]:
        """The route, or None and the methods the path's resource allows (empty when no resource matches)."""
        matching = [r.resource for r in self.routes if match_resource(r.resource, path) is not None]
        if not matching:
            return None, []
        best = max(matching, key=_specificity)
        methods = [r for r in self.routes if r.resource == best]
        for route in methods:
            if route.method == method:
                return route, []
        return None, sorted({r.method for r in methods})


def _specificity(resource: str) -> tuple[bool, ...]:
    # Literal segments before placeholders, left to right, as API Gateway picks among overlapping resources.
    return tuple(not segment.startswith("{") for segment in resource.strip("/").split("/"))


class ApiGateway:
    """The HTTP server. `port=0` picks a free port. Raises OSError at construction when the port is taken."""

    def __init__(
        self,
        functions: Mapping[str, LocalFunction],
        routes: Sequence[RouteSpec],
        host: str = "127.0.0.1",
        port: int = 8080,
        control: Callable[[str, str, bytes | None], Response] | None = None,
    ) -> None:
        missing = {r.function for r in routes} - set(functions)
        if missing:
            raise ValueError(f"no function for route(s) of: {', '.join(sorted(missing))}")
        self.functions = dict(functions)
        self.table = RouteTable(routes)
        self.control = control
        self._server = _Server((host, port), _RequestHandler)
        self._server.gateway = self
        self._thread: threading.Thread | None = None

    @property
    def host(self) -> str:
        return str(self._server.server_address[0])

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        """Serve requests on a background thread."""
        # A short poll interval makes stop() quick (serve_forever checks for shutdown that often).
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="devstack-http", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop taking requests and close the socket (requests in progress finish on their own threads)."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()

    def handle(
        self,
        method: str,
        target: str,
        headers: Sequence[tuple[str, str]],
        body: bytes | None,
        client_ip: str,
    ) -> Response:
        """One request, from the raw request target to the response."""
        path, _, query = target.partition("?")
        if path.startswith(CONTROL_PREFIX) and self.control is not None and _is_loopback(client_ip):
            return self.control(method, path, body)
        route, allowed = self.table.resolve(method, path)
        if route is None:
            if allowed:
                return message_response(
                    405,
                    f"{method} is not allowed here (allowed: {', '.join(allowed)})",
                    [("Allow", ", ".join(allowed))],
                )
            return message_response(404, f"no route for {method} {path}")
        event = rest_api_event(
            method,
            route.resource,
            path,
            headers=headers,
            query=parse_qsl(query, keep_blank_values=True),
            body=body,
            source_ip=client_ip,
        )
        request_id = event["requestContext"]["requestId"]
        function = self.functions[route.function]
        try:
            result = function.invoke(event)
        except Exception:
            log.exception("%s raised on %s %s (request %s)", function.name, method, path, request_id)
            return _gateway_error(request_id)
        try:
            response = proxy_response(result)
        except ValueError as exc:
            log.error("%s gave a malformed proxy response on %s %s: %s", function.name, method, path, exc)
            return _gateway_error(request_id)
        response.headers.append(("x-amzn-RequestId", request_id))
        return response


def _is_loopback(client_ip: str) -> bool:
    try:
        return ipaddress.ip_address(client_ip).is_loopback
    except ValueError:
        return False


def _gateway_error(request_id: str) -> Response:
    return message_response(502, "Internal server error", [("x-amzn-RequestId", request_id)])


def proxy_response(result: Any) -> Response:
    """A Lambda proxy integration answer as the HTTP response API Gateway would send. ValueError when it is
    not one (API Gateway then answers 502 "Malformed Lambda proxy response")."""
    if not isinstance(result, Mapping):
        raise ValueError(f"expected an object, got {type(result).__name__}")
    status = result.get("statusCode")
    if isinstance(status, str) and status.isdigit():
        status = int(status)
    if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
        raise ValueError(f"statusCode {status!r} is not an HTTP status")
    body = result.get("body")
    if body is None:
        raw = b""
    elif not isinstance(body, str):
        raise ValueError(f"body must be a string, got {type(body).__name__}")
    elif result.get("isBase64Encoded"):
        try:
            raw = base64.b64decode(body, validate=True)
        except binascii.Error as exc:
            raise ValueError("isBase64Encoded is true but the body is not base64") from exc
    else:
        raw = body.encode("utf-8")
    # Both maps may be given; for a name in both, only multiValueHeaders' values are sent (API Gateway's rule).
    multi = result.get("multiValueHeaders") or {}
    single = result.get("headers") or {}
    if not isinstance(multi, Mapping) or not isinstance(single, Mapping):
        raise ValueError("headers and multiValueHeaders must be objects")
    headers: list[tuple[str, str]] = []
    multi_names = {str(name).lower() for name in multi}
    for name, value in single.items():
        if str(name).lower() not in multi_names:
            headers.append((str(name), _header_value(value)))
    for name, values in multi.items():
        if not isinstance(values, list):
            raise ValueError(f"multiValueHeaders[{name!r}] must be a list")
        headers.extend((str(name), _header_value(v)) for v in values)
    headers = [
        (n, v) for n, v in headers if n.lower() not in ("content-length", "transfer-encoding", "connection")
    ]
    if not any(n.lower() == "content-type" for n, _ in headers):
        headers.insert(0, ("Content-Type", "application/json"))
    return Response(status, headers, raw)


def _header_value(value: Any) -> str:
    text = value if isinstance(value, str) else orjson.dumps(value).decode() if value is not None else ""
    if "\r" in text or "\n" in text:
        raise ValueError("a header value holds a line break")
    return text


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    gateway: ApiGateway

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up mid-answer is routine; anything else is worth a traceback in the log.
        if isinstance(sys.exc_info()[1], ConnectionError):
            log.debug("connection from %s ended early", client_address, exc_info=True)
        else:
            log.exception("error serving %s", client_address)


class _RequestHandler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"  # keep-alive, so a benchmark's client can reuse its connections
    server_version = "devstack"
    sys_version = ""

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_GET

    def _dispatch(self) -> None:
        started = time.perf_counter()
        target = self.path
        if not target.startswith("/"):
            # An absolute-form target (http://host/path?query), as a proxy would send it.
            parts = urlsplit(target)
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        body, problem = self._read_body()
        if problem is not None:
            response = problem
            self.close_connection = True
        else:
            response = self.server.gateway.handle(
                self.command, target, list(self.headers.items()), body, self.client_address[0]
            )
        self._send(response)
        log.info(
            "%s %s -> %d (%.0f ms)",
            self.command,
            target,
            response.status,
            (time.perf_counter() - started) * 1000,
        )

    def _read_body(self) -> tuple[bytes | None, Response | None]:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return self._read_chunked()
        length_header = self.headers.get("Content-Length")
        if length_header is None:
            return None, None
        try:
            length = int(length_header)
            if length < 0:
                raise ValueError
        except ValueError:
            return None, message_response(400, f"Content-Length {length_header!r} is not a length")
        if length > MAX_BODY_BYTES:
            return None, _too_large()
        return self.rfile.read(length), None

    def _read_chunked(self) -> tuple[bytes | None, Response | None]:
        chunks: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(1024).split(b";", 1)[0].strip()
            try:
                size = int(line, 16)
            except ValueError:
                return None, message_response(400, "malformed chunked body")
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(chunks), None
            total += size
            if total > MAX_BODY_BYTES:
                return None, _too_large()
            chunks.append(self.rfile.read(size))
            self.rfile.readline(8)  # the CRLF after each chunk

    def _send(self, response: Response) -> None:
        self.send_response(response.status)
        for name, value in response.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    def log_message(self, format: str, *args: Any) -> None:
        # http.server writes to stderr; the devstack's log (one line per request, in _dispatch) is enough.
        log.debug(format, *args)


def _too_large() -> Response:
    return message_response(
        413, f"Request Too Long: the body is over API Gateway's limit of {MAX_BODY_BYTES} bytes"
    )
