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
import io
import ipaddress
import logging
import re
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from http import HTTPStatus
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
# Once a request's first byte has come, the whole request (line, headers, body) must arrive within this; a
# kept-alive connection that starts no request within the idle timeout is closed. (API Gateway's front end
# does the same; without these a client that sends less than its Content-Length held a thread for ever.)
READ_TIMEOUT_S = 20.0
IDLE_TIMEOUT_S = 60.0
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
        read_timeout_s: float | None = None,
        idle_timeout_s: float | None = None,
    ) -> None:
        missing = {r.function for r in routes} - set(functions)
        if missing:
            raise ValueError(f"no function for route(s) of: {', '.join(sorted(missing))}")
        self.functions = dict(functions)
        self.table = RouteTable(routes)
        self.control = control
        # Read per connection, so a test can shorten them on a running stack's gateway.
        self.read_timeout_s = READ_TIMEOUT_S if read_timeout_s is None else read_timeout_s
        self.idle_timeout_s = IDLE_TIMEOUT_S if idle_timeout_s is None else idle_timeout_s
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


class _Refused(Exception):
    """A request the gateway answers itself (its framing or head is wrong) without invoking anything; the
    connection is closed after the answer, since what follows on it cannot be trusted to start a request."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status)
        self.response = response


class _DeadlineReader(io.RawIOBase):
    """The connection's socket as a raw stream whose every read waits at most until the request's deadline.

    Before the first byte of a request arrives, a read waits up to the idle timeout (a kept-alive connection
    with nothing to say is closed); from the first byte, the whole request (line, headers, body) must arrive
    within the read timeout, however slowly it trickles in. A read past either raises TimeoutError."""

    def __init__(self, sock: socket.socket, handler: _RequestHandler) -> None:
        self._sock = sock
        self._handler = handler

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        handler = self._handler
        now = time.monotonic()
        if handler.deadline is None:
            wait = handler.server.gateway.idle_timeout_s
        else:
            wait = handler.deadline - now
            if wait <= 0:
                raise TimeoutError("the request did not arrive in time")
        self._sock.settimeout(wait)
        received = self._sock.recv_into(buffer)
        if received and handler.deadline is None:
            handler.deadline = time.monotonic() + handler.server.gateway.read_timeout_s
        return received


# RFC 9110 tokens (method and header names), visible ASCII request targets, and the two versions served.
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}", re.ASCII)
_REQUEST_LINE = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64} [\x21-\x7e]+ HTTP/1\.[01]\r?\n")
_ANY_VERSION = re.compile(rb".* HTTP/([0-9]{1,3})(\.[0-9]{1,3})?\r?\n")
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,8}")
_FORBIDDEN_IN_VALUES = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
MAX_LINE_BYTES = 65536
MAX_CHUNK_LINE_BYTES = 4096
MAX_TRAILER_LINES = 32
# How long, and how much, a refused request's remaining bytes are read and dropped before the connection closes.
LINGER_S = 0.5
MAX_LINGER_BYTES = 1024 * 1024


class _RequestHandler(BaseHTTPRequestHandler):
    """One connection. Unlike http.server's own loop, it never acts on a request it has not read whole and
    well framed: a short body, a truncated or malformed chunked body, a client that goes away, or a request
    that does not arrive within the read timeout invokes nothing (answered 400 or 408 where the client can
    still hear it). Framing that two parsers could read two ways (Transfer-Encoding with Content-Length,
    repeated or odd lengths, obs-fold, header lines without a colon) is refused, not guessed at."""

    server: _Server
    protocol_version = "HTTP/1.1"  # keep-alive, so a benchmark's client can reuse its connections
    server_version = "devstack"
    sys_version = ""
    deadline: float | None = None

    def setup(self) -> None:
        super().setup()
        self.rfile = io.BufferedReader(_DeadlineReader(self.connection, self), 65536)

    def handle_one_request(self) -> None:
        self.deadline = None
        self.command = ""
        self.requestline = ""
        self.request_version = self.default_request_version
        self._answered = False
        try:
            self._one_request()
        except TimeoutError:
            self.close_connection = True
            if self.deadline is not None and not self._answered:
                # Part of a request came, the rest did not: say so if the client still listens.
                self._answer_quietly(
                    message_response(408, "Request Timeout: the request did not arrive in time")
                )
                self._linger()
        except _Refused as refused:
            self.close_connection = True
            self._answer_quietly(refused.response)
            self._linger()
        except (ConnectionError, OSError):
            self.close_connection = True

    def _linger(self) -> None:
        """After refusing a request whose rest may still be coming, end our side and read (and drop) what the
        client still sends for a moment: closing with unread bytes makes the kernel send a reset, which can
        destroy the answer before the client reads it (the lingering close of RFC 9112, section 9.6)."""
        try:
            self.connection.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + LINGER_S
            drained = 0
            while drained < MAX_LINGER_BYTES and (left := deadline - time.monotonic()) > 0:
                self.connection.settimeout(left)
                chunk = self.connection.recv(65536)
                if not chunk:
                    return
                drained += len(chunk)
        except OSError:
            return

    def _one_request(self) -> None:
        started = time.perf_counter()
        self.raw_requestline = self.rfile.readline(MAX_LINE_BYTES + 1)
        if not self.raw_requestline:
            self.close_connection = True  # the client closed (or sent nothing): nothing to answer
            return
        if len(self.raw_requestline) > MAX_LINE_BYTES:
            raise _Refused(message_response(414, "URI Too Long: the request line is over 64 KiB"))
        if not _REQUEST_LINE.fullmatch(self.raw_requestline):
            version = _ANY_VERSION.fullmatch(self.raw_requestline)
            if version is not None and version.group(1, 2) not in ((b"1", b".0"), (b"1", b".1")):
                raise _Refused(message_response(505, "HTTP Version Not Supported: use HTTP/1.1 or HTTP/1.0"))
            raise _Refused(
                message_response(
                    400, "Bad Request: the request line must be METHOD SP target SP HTTP/1.1, visible ASCII"
                )
            )
        if not self.parse_request():
            return  # http.server has answered (through send_error) and closes the connection
        target = self._target()
        body = self._read_body()
        response = self.server.gateway.handle(
            self.command, target, list(self.headers.items()), body, self.client_address[0]
        )
        self._answer(response)
        log.info(
            "%s %s -> %d (%.0f ms)",
            self.command,
            target,
            response.status,
            (time.perf_counter() - started) * 1000,
        )

    def _target(self) -> str:
        """The origin-form target; an absolute-form one (http://host/path?query, as a proxy sends it) is
        reduced to its path and query. The head's fields are checked here too, before any body is read."""
        self._check_fields()
        target = self.path
        if target.startswith("/"):
            return target
        parts = urlsplit(target)
        if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
            raise _Refused(
                message_response(400, f"Bad Request: the request target {target[:100]!r} is not a path")
            )
        return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")

    def _check_fields(self) -> None:
        fields = self.headers
        if fields.defects or fields.get_payload():
            # The email parser stops at the first line it cannot read as a field and keeps the rest as a
            # "body": fields after it (a Content-Length, say) would silently not count.
            raise _Refused(message_response(400, "Bad Request: a header line is not `name: value`"))
        for name, value in fields.items():
            if not _TOKEN.fullmatch(name):
                raise _Refused(message_response(400, f"Bad Request: {name[:64]!r} is not a header name"))
            if _FORBIDDEN_IN_VALUES.search(value):
                # A folded line (obs-fold) or a control character: refused, as RFC 9112 allows, not unfolded.
                raise _Refused(
                    message_response(
                        400, f"Bad Request: the {name} header holds a line break or control character"
                    )
                )
        if self.request_version == "HTTP/1.1" and len(fields.get_all("Host") or []) != 1:
            raise _Refused(
                message_response(400, "Bad Request: an HTTP/1.1 request needs exactly one Host header")
            )
        self._framing()

    def _framing(self) -> tuple[str, int]:
        """How the body is framed: ("length", n), ("chunked", 0) or ("none", 0). Raises _Refused."""
        encodings = self.headers.get_all("Transfer-Encoding") or []
        lengths = self.headers.get_all("Content-Length") or []
        if encodings:
            if lengths:
                raise _Refused(
                    message_response(
                        400,
                        "Bad Request: both Transfer-Encoding and Content-Length (two readers could frame this "
                        "request two ways)",
                    )
                )
            coding = ",".join(encodings).strip().lower()
            if self.request_version != "HTTP/1.1":
                raise _Refused(message_response(400, "Bad Request: Transfer-Encoding needs HTTP/1.1"))
            if coding != "chunked":
                raise _Refused(
                    message_response(
                        501, f"Not Implemented: Transfer-Encoding {coding[:64]!r} (only chunked)"
                    )
                )
            return "chunked", 0
        if not lengths:
            return "none", 0
        if len(set(lengths)) != 1 or not lengths[0].isascii() or not lengths[0].isdigit():
            raise _Refused(
                message_response(
                    400, f"Bad Request: Content-Length {', '.join(lengths)[:64]!r} is not one length"
                )
            )
        digits = lengths[0].lstrip("0") or "0"
        if len(digits) > len(str(MAX_BODY_BYTES)) or int(digits) > MAX_BODY_BYTES:
            raise _Refused(_too_large())
        return "length", int(digits)

    def handle_expect_100(self) -> bool:
        # Say "go on" only to a request whose head will be taken; any other gets its final answer instead.
        try:
            self._target()
        except _Refused as refused:
            self._answer(refused.response)
            self.close_connection = True
            return False
        return super().handle_expect_100()

    def _read_body(self) -> bytes | None:
        kind, length = self._framing()
        if kind == "chunked":
            return self._read_chunked()
        if kind == "none":
            return None
        return self._read_exactly(length, "the body")

    def _read_exactly(self, length: int, what: str) -> bytes:
        data = self.rfile.read(length)
        if len(data) < length:
            # The client closed before sending all it announced: whatever came is not the request it meant.
            raise _Refused(
                message_response(400, f"Bad Request: {what} ended after {len(data)} of {length} bytes")
            )
        return data

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:
            size_text = self._chunk_line().split(b";", 1)[0]
            if not _CHUNK_SIZE.fullmatch(size_text):
                raise _Refused(
                    message_response(400, "Bad Request: malformed chunked body (a chunk size is not hex)")
                )
            size = int(size_text, 16)
            if size == 0:
                break
            total += size
            if total > MAX_BODY_BYTES:
                raise _Refused(_too_large())
            chunks.append(self._read_exactly(size, "a chunk"))
            if self._read_exactly(2, "a chunk's CRLF") != b"\r\n":
                raise _Refused(
                    message_response(400, "Bad Request: malformed chunked body (no CRLF after a chunk)")
                )
        for _ in range(MAX_TRAILER_LINES):
            if self._chunk_line() == b"":
                return b"".join(chunks)
        raise _Refused(message_response(400, f"Bad Request: more than {MAX_TRAILER_LINES} trailer lines"))

    def _chunk_line(self) -> bytes:
        """One line of chunked framing without its CRLF (bare LF is refused: a smuggling favourite)."""
        line = self.rfile.readline(MAX_CHUNK_LINE_BYTES + 1)
        if not line.endswith(b"\n"):
            if len(line) > MAX_CHUNK_LINE_BYTES:
                raise _Refused(
                    message_response(400, "Bad Request: malformed chunked body (a line is too long)")
                )
            raise _Refused(message_response(400, "Bad Request: the chunked body ended before its last chunk"))
        if not line.endswith(b"\r\n"):
            raise _Refused(
                message_response(400, "Bad Request: malformed chunked body (a line ends without CR)")
            )
        return line[:-2]

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # http.server's own refusals (bad version, header lines too long or too many) in the gateway's JSON.
        self.close_connection = True
        try:
            phrase = HTTPStatus(code).phrase
        except ValueError:
            phrase = "Error"
        self._answer(message_response(code, f"{phrase}: {message or explain or phrase}"))

    def _answer(self, response: Response) -> None:
        self._answered = True
        # A client that does not read its answer must not hold the thread either.
        self.connection.settimeout(self.server.gateway.read_timeout_s)
        self.send_response(response.status)
        for name, value in response.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)
        self.wfile.flush()

    def _answer_quietly(self, response: Response) -> None:
        if self.request_version not in ("HTTP/1.0", "HTTP/1.1"):
            self.request_version = "HTTP/1.1"  # the status line goes out even when the request line was bad
        try:
            self._answer(response)
        except OSError:
            log.debug("could not answer %d to %s", response.status, self.client_address)
        log.info("%s -> %d (refused by the gateway)", self.command or "?", response.status)

    def log_message(self, format: str, *args: Any) -> None:
        # http.server writes to stderr; the devstack's log (one line per request, in _one_request) is enough.
        log.debug(format, *args)


def _too_large() -> Response:
    return message_response(
        413, f"Request Too Long: the body is over API Gateway's limit of {MAX_BODY_BYTES} bytes"
    )
