"""Hostile requests over raw sockets to the API Gateway stand-in, with the real load and query functions behind
it and the embedded AWS under them.

Framing (short and long bodies, chunked framing, pipelining, smuggling patterns, slow clients), the request
line and headers, methods, sizes, encodings, unicode, numbers at the limits and the ids and times a fuzzer
broke. Each case asserts the status and the reason the client is given, and, when the request is refused,
that nothing was written anywhere: no event status, no idempotency record, no ingest record, no event, no
state (and, for what the gateway refuses itself, that no function was invoked at all). A request that failed
after it was taken is repeated with its event id or Idempotency-Key and then gets its 202, and the log holds
the event once.
"""

from __future__ import annotations

import json
import logging
import select
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from botocore.exceptions import ClientError, ReadTimeoutError

from devstack.embedded_aws import EmbeddedAWS
from devstack.http_api import MAX_BODY_BYTES, ApiGateway
from devstack.lambda_runtime import LocalFunction, load_handler
from eventlog.aws import dynamodb_client, kinesis_client
from eventlog.provision import create_resources
from eventlog.settings import Settings
from eventlog.topology import ROUTES, function_spec
from tests.devstack.support import wait_until
from tests.support import FaultyClient, Pipeline

READ_TIMEOUT = 1.0
IDLE_TIMEOUT = 1.5
# How long a client waits for an answer before calling it a hang: far above the gateway's own timeouts, since
# a function's answer on a loaded 2-core machine (moto, boto3 clients made anew per test) can take seconds.
PATIENCE = 30.0
OPEN = {"type": "AccountOpened", "payload": {"owner": "Ada"}}
LOAD, QUERY = "load", "query"


# -- the gateway under test, and a raw client ------------------------------------------------------------------


class Counting:
    """A function's handler that counts its invocations (the gateway must not invoke on a refused request)."""

    def __init__(self, handler: Callable[[dict[str, Any], Any], Any]) -> None:
        self.handler = handler
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self, event: dict[str, Any], context: Any) -> Any:
        with self._lock:
            self.calls += 1
        return self.handler(event, context)


class Refusals(logging.Handler):
    """The gateway's log lines for requests it refused itself (one per refusal, once it is done with it)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if "refused by the gateway" in str(record.msg):
            self.lines.append(record.getMessage())


class Storage:
    """Every table and stream the functions write, counted. The tables are made once and kept between this
    module's tests (each test compares counts before and after); made again when another module's test has
    reset the embedded AWS in between."""

    def __init__(self, settings: Settings, embedded_aws: EmbeddedAWS) -> None:
        self.settings = settings
        self.embedded_aws = embedded_aws
        self.dynamodb = dynamodb_client(settings)
        self.kinesis = kinesis_client(settings)

    def ensure(self) -> None:
        try:
            self.dynamodb.describe_table(TableName=self.settings.events_table)
            self.kinesis.describe_stream_summary(StreamName=self.settings.ingest_stream)
        except ClientError:
            self.embedded_aws.reset()
            create_resources(self.settings, self.dynamodb, self.kinesis)

    def counts(self) -> dict[str, int]:
        counts = {
            name: self.dynamodb.scan(TableName=table, Select="COUNT")["Count"]
            for name, table in (
                ("statuses", self.settings.event_status_table),
                ("idempotency", self.settings.idempotency_table),
                ("events", self.settings.events_table),
                ("states", self.settings.state_table),
            )
        }
        stream = self.settings.ingest_stream
        counts["ingest"] = 0
        for shard in self.kinesis.list_shards(StreamName=stream)["Shards"]:
            iterator = self.kinesis.get_shard_iterator(
                StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
            )["ShardIterator"]
            while True:
                page = self.kinesis.get_records(ShardIterator=iterator, Limit=10000)
                counts["ingest"] += len(page["Records"])
                iterator = page["NextShardIterator"]
                if not page["Records"]:
                    break
        return counts


@dataclass
class Gateway:
    api: ApiGateway
    functions: dict[str, Counting]
    refusals: Refusals
    storage: Storage
    before: dict[str, int] = field(default_factory=dict)

    @property
    def invocations(self) -> int:
        return sum(f.calls for f in self.functions.values())

    def reset(self) -> None:
        self.storage.ensure()
        for function in self.functions.values():
            function.calls = 0
        self.refusals.lines.clear()
        self.before = self.storage.counts()

    def added(self) -> dict[str, int]:
        """What was written since the test began, per table and stream."""
        now = self.storage.counts()
        return {name: now[name] - self.before[name] for name in now}


class Started:
    """The gateway of this module, started on first use: inside a test, where tests/conftest.py's `aws_env` has
    pointed the process at the embedded AWS (a module fixture runs before it)."""

    def __init__(self, embedded_aws: EmbeddedAWS) -> None:
        self.embedded_aws = embedded_aws
        self.gateway: Gateway | None = None

    def get(self) -> Gateway:
        if self.gateway is None:
            settings = Settings.from_env()
            functions = {key: Counting(load_handler(function_spec(key))) for key in (LOAD, QUERY)}
            api = ApiGateway(
                {
                    key: LocalFunction(function_spec(key), f, settings.prefix, settings.region)
                    for key, f in functions.items()
                },
                ROUTES,
                "127.0.0.1",
                0,
                read_timeout_s=READ_TIMEOUT,
                idle_timeout_s=IDLE_TIMEOUT,
            )
            refusals = Refusals()
            logging.getLogger("devstack.http").addHandler(refusals)
            api.start()
            storage = Storage(settings, self.embedded_aws)
            self.gateway = Gateway(api, functions, refusals, storage)
        return self.gateway

    def stop(self) -> None:
        if self.gateway is not None:
            self.gateway.api.stop()
            logging.getLogger("devstack.http").removeHandler(self.gateway.refusals)


@pytest.fixture(scope="module")
def started(embedded_aws: EmbeddedAWS) -> Iterator[Started]:
    log = logging.getLogger("devstack.http")
    level = log.level
    log.setLevel(logging.INFO)  # the refusals' log lines tell when the gateway is done with a connection
    holder = Started(embedded_aws)
    try:
        yield holder
    finally:
        holder.stop()
        log.setLevel(level)


@pytest.fixture
def gw(started: Started, aws_env: dict[str, str]) -> Gateway:
    """The gateway, its tables and streams there, its counters at zero and what they hold counted."""
    gateway = started.get()
    gateway.reset()
    return gateway


@dataclass
class Answer:
    status: int
    reason: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def message(self) -> str:
        data = orjson.loads(self.body)
        return f"{data.get('error', '')} {data['message']} {json.dumps(data.get('details', []))}"


def parse_answers(raw: bytes) -> list[Answer]:
    answers = []
    while raw:
        head, sep, rest = raw.partition(b"\r\n\r\n")
        assert sep, f"an incomplete answer: {raw[:200]!r}"
        lines = head.decode("latin-1").split("\r\n")
        version, status, reason = [*lines[0].split(" ", 2), ""][:3]
        assert version == "HTTP/1.1", lines[0]
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers["content-length"])
        answers.append(Answer(int(status), reason, headers, rest[:length]))
        raw = rest[length:]
    return answers


def exchange(
    gw: Gateway,
    *parts: bytes,
    half_close: bool = True,
    pause: float = 0.0,
    timeout: float = PATIENCE,
) -> tuple[list[Answer], float]:
    """Send the parts (pausing between them), end our side (unless told not to), read until the server closes.
    The answers, and how long the server kept the connection open after the last part or answer (the time
    a function takes to answer does not count: under load it can be seconds)."""
    with socket.create_connection((gw.api.host, gw.api.port), timeout=timeout) as sock:
        for n, part in enumerate(parts):
            if n and pause:
                time.sleep(pause)
            if select.select([sock], [], [], 0)[0]:
                break  # the server has answered (or closed): a client stops sending then
            sock.sendall(part)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        quiet_since = time.monotonic()
        received = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                raise AssertionError(
                    f"the server did not close within {timeout}s (got {received[:300]!r})"
                ) from None
            if not chunk:
                break
            received += chunk
            quiet_since = time.monotonic()
    return parse_answers(received), time.monotonic() - quiet_since


def request(
    method: str,
    target: str,
    body: bytes | None = None,
    headers: Sequence[tuple[str, str]] = (("Content-Type", "application/json"),),
    *,
    version: str = "HTTP/1.1",
    host: bool = True,
    length: int | str | None = None,
) -> bytes:
    lines = [f"{method} {target} {version}"]
    if host:
        lines.append("Host: 127.0.0.1")
    lines += [f"{name}: {value}" for name, value in headers]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    elif body is not None:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


def post(body: bytes, aggregate: str = "acc-1", **kwargs: Any) -> bytes:
    return request("POST", f"/aggregates/{aggregate}/events", body, **kwargs)


def chunked(chunks: bytes, aggregate: str = "acc-1", extra: Sequence[tuple[str, str]] = ()) -> bytes:
    head = request(
        "POST",
        f"/aggregates/{aggregate}/events",
        None,
        [("Content-Type", "application/json"), ("Transfer-Encoding", "chunked"), *extra],
    )
    return head + chunks


def as_chunks(data: bytes, size: int = 7) -> bytes:
    out = b"".join(
        b"%x\r\n%s\r\n" % (len(data[i : i + size]), data[i : i + size]) for i in range(0, len(data), size)
    )
    return out + b"0\r\n\r\n"


# -- what was written ------------------------------------------------------------------------------------------


NOTHING = {"statuses": 0, "idempotency": 0, "events": 0, "states": 0, "ingest": 0}
ONE_PENDING = {**NOTHING, "statuses": 1, "ingest": 1}


def assert_refused(answer: Answer, status: int, words: str) -> None:
    assert answer.status == status, (answer, answer.body)
    assert answer.headers["content-type"] == "application/json"
    assert words.lower() in answer.message().lower(), answer.message()


# -- framing -----------------------------------------------------------------------------------------------------

GOOD = orjson.dumps(OPEN)


def test_a_body_shorter_than_its_length_is_refused_and_never_processed(gw: Gateway) -> None:
    # The fuzzer's case: a valid JSON body, 10 bytes short of what Content-Length says, then the client gives up.
    answers, _ = exchange(gw, post(GOOD, length=len(GOOD) + 10))
    assert len(answers) == 1
    assert_refused(answers[0], 400, f"ended after {len(GOOD)} of {len(GOOD) + 10} bytes")
    assert gw.invocations == 0
    assert gw.added() == NOTHING


def test_a_body_that_stops_arriving_times_out_with_408_and_is_never_processed(gw: Gateway) -> None:
    started = time.monotonic()
    answers, _ = exchange(gw, post(GOOD, length=len(GOOD) + 10), half_close=False, timeout=READ_TIMEOUT * 10)
    took = time.monotonic() - started
    assert len(answers) == 1
    assert_refused(answers[0], 408, "did not arrive in time")
    assert answers[0].headers["connection"] == "close"
    assert READ_TIMEOUT * 0.5 <= took < READ_TIMEOUT * 6  # the deadline, not the client's patience
    assert gw.invocations == 0
    assert gw.added() == NOTHING


def test_a_client_that_hangs_up_mid_body_leaves_nothing_behind(gw: Gateway) -> None:
    with socket.create_connection((gw.api.host, gw.api.port), timeout=PATIENCE) as sock:
        sock.sendall(post(GOOD, length=len(GOOD) + 10))
    # the server is done with the connection once it logs the refusal (nobody hears the 400)
    wait_until(
        lambda: len(gw.refusals.lines) == 1, timeout=PATIENCE, what="the gateway to refuse the short body"
    )
    assert "400" in gw.refusals.lines[0]
    assert gw.invocations == 0
    assert gw.added() == NOTHING


def test_a_request_trickled_in_slower_than_the_read_timeout_gets_408(gw: Gateway) -> None:
    # Every byte comes well within any per-read timeout; the whole request does not come within the deadline.
    raw = post(GOOD)
    parts = [raw[i : i + 8] for i in range(0, len(raw), 8)]
    started = time.monotonic()
    answers, _ = exchange(gw, *parts, pause=READ_TIMEOUT / 5, half_close=False, timeout=READ_TIMEOUT * 10)
    assert_refused(answers[0], 408, "did not arrive in time")
    assert time.monotonic() - started < len(parts) * READ_TIMEOUT / 5  # cut off, not waited out
    assert gw.invocations == 0
    assert gw.added() == NOTHING


def test_an_idle_kept_alive_connection_is_closed_without_an_answer(gw: Gateway) -> None:
    # An aggregate no other test of this module posts to (the stack is shared by the module's tests).
    answers, waited = exchange(
        gw, request("GET", "/aggregates/idle-nobody"), half_close=False, timeout=IDLE_TIMEOUT * 4
    )
    assert [a.status for a in answers] == [404]  # the request is answered; then the connection idles out
    assert IDLE_TIMEOUT * 0.5 <= waited < IDLE_TIMEOUT * 3
    assert gw.refusals.lines == []  # an idle close is not a refused request


def test_a_connection_that_never_starts_a_request_is_closed(gw: Gateway) -> None:
    answers, waited = exchange(gw, b"", half_close=False, timeout=IDLE_TIMEOUT * 4)
    assert answers == []
    assert waited < IDLE_TIMEOUT * 3


def test_pipelined_requests_are_answered_in_order(gw: Gateway) -> None:
    first = orjson.dumps({**OPEN, "event_id": str(uuid.uuid4())})
    second = orjson.dumps({"type": "MoneyDeposited", "payload": {"amount": 5}, "event_id": str(uuid.uuid4())})
    pipe = f"pipe-{uuid.uuid4().hex[:12]}"  # no other test (of any module on this worker) has written it
    answers, _ = exchange(
        gw, post(first, pipe) + post(second, pipe) + request("GET", f"/aggregates/{pipe}/events")
    )
    # the third answers the GET (404: no pollers run here, so the log holds no event of it yet)
    assert [a.status for a in answers] == [202, 202, 404]
    assert orjson.loads(answers[2].body)["error"] == "not_found"
    assert [orjson.loads(a.body).get("type") for a in answers[:2]] == ["AccountOpened", "MoneyDeposited"]
    assert gw.added() == {**NOTHING, "statuses": 2, "ingest": 2}


def test_bytes_after_the_announced_body_are_the_next_request_not_part_of_this_one(gw: Gateway) -> None:
    # A body longer than its Content-Length: the rest is read as a request of its own (here: not one).
    answers, _ = exchange(gw, post(GOOD) + b'{"type": "MoneyDeposited"}\r\n\r\n')
    assert [a.status for a in answers] == [202, 400]
    assert "request line" in answers[1].message()
    assert gw.added() == ONE_PENDING


def test_a_valid_chunked_body_is_taken_whole(gw: Gateway) -> None:
    answers, _ = exchange(gw, chunked(as_chunks(GOOD)))
    assert [a.status for a in answers] == [202]
    assert gw.added() == ONE_PENDING


def test_chunk_extensions_and_trailers_are_allowed(gw: Gateway) -> None:
    body = b"%x;name=value\r\n%s\r\n0\r\nX-Trailer: 1\r\n\r\n" % (len(GOOD), GOOD)
    answers, _ = exchange(gw, chunked(body))
    assert [a.status for a in answers] == [202]
    assert gw.added() == ONE_PENDING


G = GOOD
CHUNKED_CASES: list[tuple[str, bytes, int, str]] = [
    ("truncated-chunk", b"%x\r\n%s" % (len(G) + 20, G), 400, "a chunk ended after"),
    ("no-last-chunk", b"%x\r\n%s\r\n" % (len(G), G), 400, "ended before its last chunk"),
    ("no-crlf-after-chunk", b"%x\r\n%sXX0\r\n\r\n" % (len(G), G), 400, "no CRLF after a chunk"),
    ("bare-lf-lines", b"%x\n%s\r\n0\n\n" % (len(G), G), 400, "without CR"),
    ("hex-prefix", b"0x%x\r\n%s\r\n0\r\n\r\n" % (len(G), G), 400, "not hex"),
    ("plus-sign", b"+%x\r\n%s\r\n0\r\n\r\n" % (len(G), G), 400, "not hex"),
    ("space-before-size", b" %x\r\n%s\r\n0\r\n\r\n" % (len(G), G), 400, "not hex"),
    ("underscore", b"1_0\r\n" + b"x" * 16 + b"\r\n0\r\n\r\n", 400, "not hex"),
    ("negative", b"-1\r\n\r\n0\r\n\r\n", 400, "not hex"),
    ("empty-size", b"\r\n0\r\n\r\n", 400, "not hex"),
    ("huge-size", b"ffffffffffffffff\r\n", 400, "not hex"),
    ("over-10-mb", b"%x\r\n" % (MAX_BODY_BYTES + 1), 413, "limit"),
    ("endless-size-line", b"1" + b"0" * 5000 + b"\r\n", 400, "too long"),
    ("endless-trailers", b"0\r\n" + b"X-T: 1\r\n" * 40 + b"\r\n", 400, "trailer lines"),
]


@pytest.mark.parametrize(
    ("case", "body", "status", "words"), CHUNKED_CASES, ids=[c[0] for c in CHUNKED_CASES]
)
def test_bad_chunked_framing_is_refused_and_never_processed(
    gw: Gateway, case: str, body: bytes, status: int, words: str
) -> None:
    answers, _ = exchange(gw, chunked(body))
    assert len(answers) == 1
    assert_refused(answers[0], status, words)
    assert answers[0].headers["connection"] == "close"
    assert gw.invocations == 0
    assert gw.added() == NOTHING


# -- the request line, headers, lengths, methods: what the gateway refuses itself --------------------------------


def head(*lines: str, body: bytes = b"") -> bytes:
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


P = "POST /aggregates/acc-1/events HTTP/1.1"
H = "Host: 127.0.0.1"
J = "Content-Type: application/json"
L = f"Content-Length: {len(GOOD)}"
GATEWAY_CASES: list[tuple[str, bytes, int, str]] = [
    # smuggling patterns: two ways to frame one request
    ("te-and-cl", head(P, H, J, L, "Transfer-Encoding: chunked", body=as_chunks(GOOD)), 400, "both"),
    ("cl-and-te", head(P, H, J, "Transfer-Encoding: chunked", L, body=as_chunks(GOOD)), 400, "both"),
    ("te-gzip-chunked", head(P, H, J, "Transfer-Encoding: gzip, chunked", body=as_chunks(GOOD)), 501, "gzip"),
    ("te-chunked-gzip", head(P, H, J, "Transfer-Encoding: chunked, gzip", body=as_chunks(GOOD)), 501, "only"),
    ("te-xchunked", head(P, H, J, "Transfer-Encoding: xchunked", body=as_chunks(GOOD)), 501, "xchunked"),
    ("te-identity", head(P, H, J, "Transfer-Encoding: identity", L, body=GOOD), 400, "both"),
    ("te-twice", head(P, H, J, "Transfer-Encoding: chunked", "Transfer-Encoding: chunked"), 501, "only"),
    (
        "te-on-http-1.0",
        head(P[:-1] + "0", J, "Transfer-Encoding: chunked", body=as_chunks(GOOD)),
        400,
        "HTTP/1.1",
    ),
    ("two-lengths", head(P, H, J, L, "Content-Length: 3", body=GOOD), 400, "not one length"),
    (
        "length-list",
        head(P, H, J, f"Content-Length: {len(GOOD)}, {len(GOOD)}", body=GOOD),
        400,
        "not one length",
    ),
    ("length-plus", head(P, H, J, f"Content-Length: +{len(GOOD)}", body=GOOD), 400, "not one length"),
    ("length-hex", head(P, H, J, "Content-Length: 0x10", body=GOOD), 400, "not one length"),
    ("length-negative", head(P, H, J, "Content-Length: -1", body=GOOD), 400, "not one length"),
    ("length-underscore", head(P, H, J, "Content-Length: 1_0", body=GOOD), 400, "not one length"),
    ("length-superscript", head(P, H, J, "Content-Length: \xb2", body=GOOD), 400, "not one length"),
    ("length-absurd", head(P, H, J, "Content-Length: " + "9" * 5000), 413, "limit"),
    ("length-over-10-mb", head(P, H, J, f"Content-Length: {MAX_BODY_BYTES + 1}"), 413, "limit"),
    # the head itself
    ("obs-fold", head(P, H, J, L, "X-Note: one", " two", body=GOOD), 400, "line break"),
    ("no-colon", head(P, H, J, "Nonsense", L, body=GOOD), 400, "not `name: value`"),
    ("space-before-colon", head(P, H, J, f"Content-Length : {len(GOOD)}", body=GOOD), 400, "name: value"),
    ("bad-header-name", head(P, H, J, L, "X(1): 2", body=GOOD), 400, "not a header name"),
    ("nul-in-value", head(P, H, J, L, "X-Note: a\x00b", body=GOOD), 400, "control character"),
    ("cr-in-value", head(P, H, J, L, "X-Note: a\rb", body=GOOD), 400, "name: value"),
    ("del-in-key", head(P, H, J, L, "Idempotency-Key: a\x7fb", body=GOOD), 400, "control character"),
    ("no-host", head(P, J, L, body=GOOD), 400, "Host"),
    ("two-hosts", head(P, H, H, J, L, body=GOOD), 400, "Host"),
    ("too-many-headers", head(P, H, J, L, *[f"X-{n}: {n}" for n in range(101)], body=GOOD), 431, "headers"),
    ("header-too-long", head(P, H, J, L, "X-Long: " + "a" * 70000, body=GOOD), 431, "too long"),
    # the request line
    ("http-2", head("POST /aggregates/acc-1/events HTTP/2.0", H, J, L, body=GOOD), 505, "HTTP/1.1"),
    ("http-1.2", head("POST /aggregates/acc-1/events HTTP/1.2", H, J, L, body=GOOD), 505, "HTTP/1.1"),
    ("http-0.9", b"GET /aggregates/acc-1\r\n", 400, "request line"),
    (
        "lower-case-version",
        head("POST /aggregates/acc-1/events http/1.1", H, J, L, body=GOOD),
        400,
        "request line",
    ),
    (
        "double-space",
        head("POST  /aggregates/acc-1/events HTTP/1.1", H, J, L, body=GOOD),
        400,
        "request line",
    ),
    ("tab", head("POST\t/aggregates/acc-1/events HTTP/1.1", H, J, L, body=GOOD), 400, "request line"),
    (
        "non-ascii-target",
        head("POST /aggregates/acc-\xe9/events HTTP/1.1", H, J, L, body=GOOD),
        400,
        "request line",
    ),
    (
        "nul-in-target",
        head("POST /aggregates/acc\x00/events HTTP/1.1", H, J, L, body=GOOD),
        400,
        "request line",
    ),
    (
        "bad-method-token",
        head("PO(ST /aggregates/acc-1/events HTTP/1.1", H, J, L, body=GOOD),
        400,
        "request line",
    ),
    ("target-too-long", head("GET /" + "a" * 70000 + " HTTP/1.1", H), 414, "too long"),
    ("not-a-path", head("POST aggregates/acc-1/events HTTP/1.1", H, J, L, body=GOOD), 400, "not a path"),
    (
        "ftp-target",
        head("POST ftp://x/aggregates/acc-1/events HTTP/1.1", H, J, L, body=GOOD),
        400,
        "not a path",
    ),
    ("connect", head("CONNECT 127.0.0.1:443 HTTP/1.1", H), 400, "not a path"),
    ("garbage", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400, "request line"),  # TLS hello
]


@pytest.mark.parametrize(("case", "raw", "status", "words"), GATEWAY_CASES, ids=[c[0] for c in GATEWAY_CASES])
def test_what_the_gateway_cannot_read_safely_it_refuses_without_invoking(
    gw: Gateway, case: str, raw: bytes, status: int, words: str
) -> None:
    answers, _ = exchange(gw, raw)
    assert len(answers) == 1, answers
    assert_refused(answers[0], status, words)
    assert answers[0].headers["connection"] == "close"
    assert gw.invocations == 0
    assert gw.added() == NOTHING


def test_there_are_many_distinct_hostile_cases() -> None:
    ids = [c[0] for c in GATEWAY_CASES + CHUNKED_CASES] + [c[0] for c in FUNCTION_CASES]
    assert len(set(ids)) == len(ids) >= 100


@pytest.mark.parametrize("method", ["TRACE", "OPTIONS", "HEAD", "DELETE", "PATCH", "PUT", "FOO", "get"])
def test_a_method_the_path_does_not_take_is_405_with_allow(gw: Gateway, method: str) -> None:
    answers, _ = exchange(gw, request(method, "/aggregates/acc-1", None, ()))
    assert [a.status for a in answers] == [405]
    assert answers[0].headers["allow"] == "GET"
    if method != "HEAD":
        assert method in orjson.loads(answers[0].body)["message"]
    else:
        assert answers[0].body == b""  # HEAD: the same head, no body
    assert gw.invocations == 0


def test_http_1_0_without_host_is_served_and_the_connection_closed(gw: Gateway) -> None:
    answers, _ = exchange(gw, post(GOOD, version="HTTP/1.0", host=False) + post(GOOD), half_close=False)
    assert [a.status for a in answers] == [202]  # the second request is never read: 1.0 closes
    assert gw.added() == ONE_PENDING


def test_an_absolute_form_target_is_served_as_its_path(gw: Gateway) -> None:
    answers, _ = exchange(gw, request("POST", "http://api.example/aggregates/acc-1/events?x=1", GOOD))
    assert [a.status for a in answers] == [202]
    assert gw.added() == ONE_PENDING


def test_expect_100_continue_is_refused_before_the_body_when_the_head_is_wrong(gw: Gateway) -> None:
    with socket.create_connection((gw.api.host, gw.api.port), timeout=PATIENCE) as sock:
        sock.sendall(head(P, H, J, "Expect: 100-continue", f"Content-Length: {MAX_BODY_BYTES + 1}"))
        answer = parse_answers(sock.recv(65536))
    assert [a.status for a in answer] == [413]
    assert gw.invocations == 0


def test_expect_100_continue_is_honoured(gw: Gateway) -> None:
    with socket.create_connection((gw.api.host, gw.api.port), timeout=PATIENCE) as sock:
        sock.sendall(head(P, H, J, "Expect: 100-continue", L))
        assert sock.recv(65536).startswith(b"HTTP/1.1 100 Continue\r\n")
        sock.sendall(GOOD)
        sock.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    assert [a.status for a in parse_answers(received)] == [202]
    assert gw.added() == ONE_PENDING


# -- what the functions refuse: content, ids, times, numbers, encodings ------------------------------------------


def body(**fields: Any) -> bytes:
    return orjson.dumps(fields)


EID = "01890a5d-ac96-774b-bcce-b302099a8057"
DEEP = b'{"type": "AccountOpened", "payload": {"owner": "x", "n": ' + b"[" * 40 + b"]" * 40 + b"}}"
FUNCTION_CASES: list[tuple[str, bytes, int, str]] = [
    # ids with something after them (the fuzzer's 502: the event committed, its Location header refused)
    ("event-id-trailing-lf", post(body(**OPEN, event_id=EID + "\n")), 422, "event_id"),
    ("event-id-trailing-crlf", post(body(**OPEN, event_id=EID + "\r\n")), 422, "event_id"),
    ("event-id-leading-space", post(body(**OPEN, event_id=" " + EID)), 422, "event_id"),
    ("event-id-braces", post(body(**OPEN, event_id="{" + EID + "}")), 422, "event_id"),
    ("event-id-urn", post(body(**OPEN, event_id="urn:uuid:" + EID)), 422, "event_id"),
    ("event-id-fullwidth", post(body(**OPEN, event_id="\uff10" + EID[1:])), 422, "event_id"),
    ("aggregate-%0A", post(GOOD, aggregate="acc-1%0A"), 400, "invalid_aggregate_id"),
    ("aggregate-%0D%0A", post(GOOD, aggregate="acc-1%0D%0A"), 400, "invalid_aggregate_id"),
    ("aggregate-%00", post(GOOD, aggregate="acc%00"), 400, "invalid_aggregate_id"),
    ("aggregate-%2F", post(GOOD, aggregate="acc%2F1"), 400, "invalid_aggregate_id"),
    ("aggregate-%20", post(GOOD, aggregate="acc%201"), 400, "invalid_aggregate_id"),
    ("aggregate-%C3%A9", post(GOOD, aggregate="acc%C3%A9"), 400, "invalid_aggregate_id"),
    ("aggregate-%FF", post(GOOD, aggregate="acc%FF"), 400, "invalid_aggregate_id"),
    ("aggregate-bad-escape", post(GOOD, aggregate="acc%zz"), 400, "invalid_aggregate_id"),
    ("aggregate-fullwidth", post(GOOD, aggregate="%EF%BC%A1cc"), 400, "invalid_aggregate_id"),
    ("aggregate-129", post(GOOD, aggregate="a" * 129), 400, "invalid_aggregate_id"),
    ("aggregate-dot-dot", post(GOOD, aggregate=".."), 400, "invalid_aggregate_id"),
    (
        "version-%0A",
        request("POST", "/aggregates/acc-1/events/1%0A/reverse", None, ()),
        400,
        "invalid_version",
    ),
    (
        "version-huge",
        request("POST", "/aggregates/acc-1/events/9007199254740992/reverse", None, ()),
        400,
        "version",
    ),
    ("version-zero", request("POST", "/aggregates/acc-1/events/0/reverse", None, ()), 400, "invalid_version"),
    ("status-id-%0A", request("GET", f"/events/{EID}%0A", None, ()), 400, "invalid_event_id"),
    ("status-id-%00", request("GET", f"/events/{EID}%00", None, ()), 400, "invalid_event_id"),
    ("state-id-%0A", request("GET", "/aggregates/acc-1%0A", None, ()), 400, "invalid_aggregate_id"),
    (
        "key-non-ascii",
        post(GOOD, headers=[("Content-Type", "application/json"), ("Idempotency-Key", "k\xe9")]),
        400,
        "idempotency",
    ),
    (
        "key-256",
        post(GOOD, headers=[("Content-Type", "application/json"), ("Idempotency-Key", "k" * 256)]),
        400,
        "idempotency",
    ),
    (
        "key-inner-space",
        post(GOOD, headers=[("Content-Type", "application/json"), ("Idempotency-Key", "a b")]),
        400,
        "idempotency",
    ),
    # times at the calendar's edges (the fuzzer's 502: OverflowError) and other odd ones
    ("time-9999-minus-1h", post(body(**OPEN, occurred_at="9999-12-31T23:59:59-01:00")), 422, "outside"),
    ("time-0001-plus-1h", post(body(**OPEN, occurred_at="0001-01-01T00:00:00+01:00")), 422, "outside"),
    ("time-leap-second", post(body(**OPEN, occurred_at="2016-12-31T23:59:60Z")), 422, "leap second"),
    ("time-offset-24h", post(body(**OPEN, occurred_at="2026-01-01T00:00:00+24:00")), 422, "offset"),
    ("time-week-date", post(body(**OPEN, occurred_at="2026-W01-1T00:00:00Z")), 422, "RFC 3339"),
    ("time-basic-form", post(body(**OPEN, occurred_at="20260101T000000Z")), 422, "RFC 3339"),
    (
        "time-10-fraction-digits",
        post(body(**OPEN, occurred_at="2026-01-01T00:00:00.0123456789Z")),
        422,
        "RFC 3339",
    ),
    (
        "time-arabic-digits",
        post(body(**OPEN, occurred_at="\u0662\u0660\u0662\u0666-01-01T00:00:00Z")),
        422,
        "RFC 3339",
    ),
    ("time-trailing-lf", post(body(**OPEN, occurred_at="2026-01-01T00:00:00Z\n")), 422, "RFC 3339"),
    ("time-30-february", post(body(**OPEN, occurred_at="2024-02-30T00:00:00Z")), 422, "exists"),
    ("time-1969", post(body(**OPEN, occurred_at="1969-12-31T23:59:59Z")), 422, "outside"),
    ("time-future", post(body(**OPEN, occurred_at="2999-01-01T00:00:00Z")), 422, "future"),
    ("time-number", post(body(**OPEN, occurred_at=1767225600)), 422, "occurred_at"),
    (
        "reverse-time-9999",
        request("POST", "/aggregates/acc-1/events/1/reverse", body(occurred_at="9999-12-31T23:59:59-01:00")),
        422,
        "outside",
    ),
    (
        "reverse-time-0001",
        request("POST", "/aggregates/acc-1/events/1/reverse", body(occurred_at="0001-01-01T00:00:00+01:00")),
        422,
        "outside",
    ),
    # numbers at the limits
    ("amount-1e400", post(b'{"type": "MoneyDeposited", "payload": {"amount": 1e400}}'), 400, "infinity"),
    ("amount--1e400", post(b'{"type": "MoneyDeposited", "payload": {"amount": -1e400}}'), 400, "infinity"),
    ("amount-1e2", post(b'{"type": "MoneyDeposited", "payload": {"amount": 1e2}}'), 422, "whole number"),
    ("amount-1.0", post(b'{"type": "MoneyDeposited", "payload": {"amount": 1.0}}'), 422, "whole number"),
    ("amount--0", post(b'{"type": "MoneyDeposited", "payload": {"amount": -0}}'), 422, "between 1"),
    (
        "amount-2^64",
        post(b'{"type": "MoneyDeposited", "payload": {"amount": 18446744073709551616}}'),
        422,
        "between 1",
    ),
    (
        "amount-10^400-digits",
        post(b'{"type": "MoneyDeposited", "payload": {"amount": 1' + b"0" * 400 + b"}}"),
        400,
        "infinity",
    ),
    ("amount-NaN", post(b'{"type": "MoneyDeposited", "payload": {"amount": NaN}}'), 400, "invalid_json"),
    (
        "amount-Infinity",
        post(b'{"type": "MoneyDeposited", "payload": {"amount": Infinity}}'),
        400,
        "invalid_json",
    ),
    ("amount-true", post(b'{"type": "MoneyDeposited", "payload": {"amount": true}}'), 422, "boolean"),
    ("expected-2^53", post(body(**OPEN, expected_version=2**53)), 422, "expected_version"),
    (
        "expected-2^64",
        post(
            b'{"type": "AccountOpened", "payload": {"owner": "x"}, "expected_version": 1' + b"8" * 19 + b"}"
        ),
        422,
        "expected_version",
    ),
    (
        "expected-0.0",
        post(b'{"type": "AccountOpened", "payload": {"owner": "x"}, "expected_version": 0.0}'),
        422,
        "expected_version",
    ),
    (
        "query-limit-5000-digits",
        request("GET", "/aggregates/acc-1/events?limit=" + "9" * 5000, None, ()),
        400,
        "limit",
    ),
    (
        "query-limit-repeated",
        request("GET", "/aggregates/acc-1/events?limit=1&limit=2", None, ()),
        400,
        "2 times",
    ),
    ("query-limit-arabic", request("GET", "/aggregates/acc-1/events?limit=%D9%A1", None, ()), 400, "limit"),
    ("query-limit-exponent", request("GET", "/aggregates/acc-1/events?limit=1e3", None, ()), 400, "limit"),
    ("query-limit-negative", request("GET", "/aggregates/acc-1/events?limit=-1", None, ()), 400, "limit"),
    (
        "query-from-2^53",
        request("GET", "/aggregates/acc-1/events?from_version=9007199254740992", None, ()),
        400,
        "from_version",
    ),
    # JSON and encodings
    (
        "duplicate-type",
        post(b'{"type": "AccountOpened", "type": "MoneyDeposited", "payload": {"owner": "x"}}'),
        400,
        "repeats the key 'type'",
    ),
    (
        "duplicate-in-payload",
        post(b'{"type": "AccountOpened", "payload": {"owner": "x", "owner": "y"}}'),
        400,
        "repeats the key 'owner'",
    ),
    ("deep-40", post(DEEP), 400, "nested more than 32"),
    (
        "deep-2000",
        post(b'{"type": "AccountOpened", "payload": ' + b"[" * 2000 + b"]" * 2000 + b"}"),
        400,
        "invalid_json",
    ),
    ("bom", post(b"\xef\xbb\xbf" + GOOD), 400, "invalid_json"),
    ("utf-16", post(GOOD.decode().encode("utf-16")), 400, "invalid_json"),
    (
        "overlong-utf8-slash",
        post(b'{"type": "AccountOpened", "payload": {"owner": "\xc0\xaf"}}'),
        400,
        "invalid_json",
    ),
    (
        "raw-surrogate-utf8",
        post(b'{"type": "AccountOpened", "payload": {"owner": "\xed\xa0\x80"}}'),
        400,
        "invalid_json",
    ),
    (
        "lone-surrogate-escape",
        post(b'{"type": "AccountOpened", "payload": {"owner": "\\ud800"}}'),
        400,
        "surrogate",
    ),
    (
        "reversed-surrogates",
        post(b'{"type": "AccountOpened", "payload": {"owner": "\\udc00\\ud800"}}'),
        400,
        "invalid_json",
    ),
    (
        "raw-nul-in-string",
        post(b'{"type": "AccountOpened", "payload": {"owner": "a\x00b"}}'),
        400,
        "invalid_json",
    ),
    ("escaped-nul", post(b'{"type": "AccountOpened", "payload": {"owner": "a\\u0000b"}}'), 422, "control"),
    ("escaped-lf-owner", post(b'{"type": "AccountOpened", "payload": {"owner": "Ada\\n"}}'), 422, "control"),
    (
        "bidi-override",
        post(body(type="AccountOpened", payload={"owner": "Ada\u202egnp.exe"})),
        422,
        "bidirectional",
    ),
    ("blank-owner", post(body(type="AccountOpened", payload={"owner": "\u3000\u00a0"})), 422, "blank"),
    (
        "owner-201-after-nfc",
        post(body(type="AccountOpened", payload={"owner": "\u0344" * 101})),
        422,
        "at most 200",
    ),
    ("type-nul", post(b'{"type": "AccountOpened\\u0000", "payload": {"owner": "x"}}'), 422, "type"),
    ("type-trailing-lf", post(b'{"type": "AccountOpened\\n", "payload": {"owner": "x"}}'), 422, "type"),
    ("null-metadata", post(body(**OPEN, metadata=None)), 422, "must not be null"),
    ("null-event-id", post(body(**OPEN, event_id=None)), 422, "must not be null"),
    (
        "null-reason",
        request("POST", "/aggregates/acc-1/events/1/reverse", body(reason=None)),
        422,
        "must not be null",
    ),
    (
        "charset-latin1",
        post(GOOD, headers=[("Content-Type", "application/json; charset=latin-1")]),
        415,
        "utf-8",
    ),
    (
        "charset-utf16",
        post(GOOD, headers=[("Content-Type", "application/json;charset=utf-16")]),
        415,
        "utf-8",
    ),
    (
        "json-subtype",
        post(GOOD, headers=[("Content-Type", "application/json-patch+json")]),
        415,
        "application/json",
    ),
    ("no-content-type", post(GOOD, headers=[]), 415, "application/json"),
    ("body-over-128-kib", post(body(**OPEN, metadata={"actor": "x" * 140_000})), 413, "131072"),
    ("empty-body", post(b""), 400, "empty"),
]


@pytest.mark.parametrize(
    ("case", "raw", "status", "words"), FUNCTION_CASES, ids=[c[0] for c in FUNCTION_CASES]
)
def test_what_the_functions_refuse_is_answered_with_a_reason_and_writes_nothing(
    gw: Gateway, case: str, raw: bytes, status: int, words: str
) -> None:
    answers, _ = exchange(gw, raw)
    assert len(answers) == 1, answers
    assert_refused(answers[0], status, words)
    assert gw.invocations == 1  # the function decided, not the gateway
    assert gw.added() == NOTHING


# -- failed after it was taken: a retry gets its 2xx, and the log holds the event once ---------------------------


def _crash_once_after_everything(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The load function dies after the status and the ingest record are written, before it answers."""
    import handlers.load

    real = handlers.load.json_response
    crashes: list[int] = []

    def crash_first(status: int, *args: Any, **kwargs: Any) -> Any:
        if status == 202 and not crashes:
            crashes.append(status)
            raise RuntimeError("the function died before answering")
        return real(status, *args, **kwargs)

    monkeypatch.setattr(handlers.load, "json_response", crash_first)
    return crashes


def _committed(gw: Gateway, event_id: str) -> int:
    """How many times the log holds this event, once the pump has taken everything on the ingest stream."""
    Pipeline(gw.storage.settings).pump()
    items = gw.storage.dynamodb.scan(TableName=gw.storage.settings.events_table)["Items"]
    return sum(1 for item in items if item["event_id"]["S"] == event_id)


def test_a_request_that_failed_after_it_was_taken_is_retried_with_its_event_id(
    gw: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    crashes = _crash_once_after_everything(monkeypatch)
    event_id = str(uuid.uuid4())
    raw = post(body(**OPEN, event_id=event_id))
    first, _ = exchange(gw, raw)
    assert [a.status for a in first] == [502]
    assert crashes == [202]
    again, _ = exchange(gw, raw)
    assert [a.status for a in again] == [202]
    assert again[0].headers["location"] == f"/events/{event_id}"
    assert _committed(gw, event_id) == 1


def test_a_request_that_failed_after_it_was_taken_is_retried_with_its_idempotency_key(
    gw: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    crashes = _crash_once_after_everything(monkeypatch)
    key = f"open-{uuid.uuid4()}"
    raw = post(GOOD, headers=[("Content-Type", "application/json"), ("Idempotency-Key", key)])
    first, _ = exchange(gw, raw)
    assert [a.status for a in first] == [502]
    assert crashes == [202]
    again, _ = exchange(gw, raw)
    assert [a.status for a in again] == [202]
    event_id = orjson.loads(again[0].body)["event_id"]
    assert _committed(gw, event_id) == 1


def test_a_request_the_stream_did_not_take_is_retried_and_then_taken_once(
    gw: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    from handlers import runtime

    real_kinesis = runtime.kinesis
    made: list[FaultyClient] = []

    def faulty() -> Any:
        if not made:
            made.append(FaultyClient(real_kinesis()))
            made[0].fail("put_record", on={1})
        return made[0]

    monkeypatch.setattr(runtime, "kinesis", faulty)
    event_id = str(uuid.uuid4())
    raw = post(body(**OPEN, event_id=event_id))
    first, _ = exchange(gw, raw)
    assert_refused(first[0], 503, "ingest")
    assert gw.added() == NOTHING  # the pending status was taken back
    again, _ = exchange(gw, raw)
    assert [a.status for a in again] == [202]
    assert _committed(gw, event_id) == 1


class LostAnswer:
    """A Kinesis client whose first put_record goes through and then times out on the way back."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.puts = 0

    def put_record(self, **kwargs: Any) -> Any:
        self.puts += 1
        answer = self._client.put_record(**kwargs)
        if self.puts == 1:
            raise ReadTimeoutError(endpoint_url="http://kinesis.invalid")
        return answer

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def _lose_the_first_answer(monkeypatch: pytest.MonkeyPatch) -> LostAnswer:
    from handlers import runtime

    real_kinesis = runtime.kinesis
    made: list[LostAnswer] = []

    def lossy() -> Any:
        if not made:
            made.append(LostAnswer(real_kinesis()))
        return made[0]

    monkeypatch.setattr(runtime, "kinesis", lossy)
    return lossy()  # type: ignore[no-any-return]


def _committed_for(gw: Gateway, aggregate: str) -> list[str]:
    Pipeline(gw.storage.settings).pump()
    items = gw.storage.dynamodb.scan(TableName=gw.storage.settings.events_table)["Items"]
    return [item["event_id"]["S"] for item in items if item["aggregate_id"]["S"] == aggregate]


def test_a_put_whose_answer_was_lost_is_retried_with_its_key_and_the_log_holds_it_once(
    gw: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    lossy = _lose_the_first_answer(monkeypatch)
    aggregate = f"acc-{uuid.uuid4().hex[:12]}"
    raw = post(GOOD, aggregate, headers=[("Content-Type", "application/json"), ("Idempotency-Key", "open-1")])
    first, _ = exchange(gw, raw)
    assert_refused(first[0], 503, "may have been taken")
    again, _ = exchange(gw, raw)
    assert [a.status for a in again] == [202]
    assert lossy.puts == 2  # the record went onto the stream twice
    assert _committed_for(gw, aggregate) == [orjson.loads(again[0].body)["event_id"]]  # and into the log once


def test_a_put_whose_answer_was_lost_names_the_event_id_to_retry_with(
    gw: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    _lose_the_first_answer(monkeypatch)
    aggregate = f"acc-{uuid.uuid4().hex[:12]}"
    first, _ = exchange(gw, post(GOOD, aggregate))
    assert_refused(first[0], 503, "repeat the request with")
    named = orjson.loads(first[0].body)["message"].split('"event_id": "')[1].split('"')[0]
    again, _ = exchange(gw, post(body(**OPEN, event_id=named), aggregate))
    assert [a.status for a in again] == [202]
    assert _committed_for(gw, aggregate) == [named]
