"""The API Gateway stand-in: requests in as REST proxy events, proxy responses out, and the gateway's own errors.

Given a gateway whose functions are test handlers (an echo of the event, a crash, a slow one), when a client
sends real HTTP requests, then the handler sees API Gateway's event and the client gets the handler's answer.
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from devstack.http_api import MAX_BODY_BYTES, ApiGateway
from devstack.lambda_runtime import Handler, LocalFunction
from eventlog.topology import ROUTES, RouteSpec, function_spec
from tests.devstack.support import Contention, Recorder


def echo(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return {"statusCode": 200, "body": json.dumps(event)}


Start = Callable[..., ApiGateway]


@pytest.fixture
def gateway() -> Iterator[Start]:
    started: list[ApiGateway] = []

    def start(
        handlers: dict[str, Handler],
        routes: tuple[RouteSpec, ...] = ROUTES,
        functions: dict[str, LocalFunction] | None = None,
    ) -> ApiGateway:
        functions = dict(functions or {})
        for route in routes:
            if route.function not in functions:
                spec = function_spec(route.function)
                functions[route.function] = LocalFunction(
                    spec, handlers[route.function], "es-test", "us-east-1"
                )
        api = ApiGateway(functions, routes, "127.0.0.1", 0)
        api.start()
        started.append(api)
        return api

    yield start
    for api in started:
        api.stop()


def request(
    api: ApiGateway,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: list[tuple[str, str]] | None = None,
) -> tuple[int, http.client.HTTPMessage, bytes]:
    connection = http.client.HTTPConnection(api.host, api.port, timeout=10)
    try:
        connection.putrequest(method, path, skip_accept_encoding=True)
        for name, value in headers or []:
            connection.putheader(name, value)
        if body is not None:
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


def test_a_request_becomes_api_gateways_rest_proxy_event(gateway: Start) -> None:
    api = gateway({"load": echo, "query": echo})
    body = '{"type": "AccountOpened", "payload": {"owner": "Zoë"}}'.encode()

    status, _, raw = request(
        api,
        "POST",
        "/aggregates/acct%2F1%20x/events?b=2&empty=&b=3&plain",
        body,
        [("Content-Type", "application/json"), ("X-Rep", "one"), ("X-Rep", "two"), ("Idempotency-Key", "k1")],
    )

    assert status == 200
    event = json.loads(raw)
    assert event["resource"] == "/aggregates/{aggregate_id}/events"
    assert event["httpMethod"] == "POST"
    assert event["pathParameters"] == {"aggregate_id": "acct/1 x"}  # an encoded slash stays in its segment
    assert event["path"] == "/aggregates/acct/1 x/events"
    assert event["queryStringParameters"] == {"b": "3", "empty": "", "plain": ""}
    assert event["multiValueQueryStringParameters"] == {"b": ["2", "3"], "empty": [""], "plain": [""]}
    assert event["headers"]["Idempotency-Key"] == "k1"
    assert event["headers"]["X-Rep"] == "two"
    assert event["multiValueHeaders"]["X-Rep"] == ["one", "two"]
    names = list(event["headers"])
    assert names.index("Content-Type") < names.index("X-Rep") < names.index("Idempotency-Key")
    assert event["body"] == body.decode()
    assert event["isBase64Encoded"] is False
    assert event["requestContext"]["identity"]["sourceIp"] == "127.0.0.1"
    assert event["requestContext"]["resourcePath"] == "/aggregates/{aggregate_id}/events"


def test_a_body_that_is_not_utf8_arrives_base64_encoded(gateway: Start) -> None:
    api = gateway({"load": echo, "query": echo})
    body = b"\xff\xfe\x00binary"

    status, _, raw = request(
        api, "POST", "/aggregates/a/events", body, [("Content-Type", "application/octet-stream")]
    )

    event = json.loads(raw)
    assert status == 200
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == body


def test_no_body_and_no_query_are_null_as_on_api_gateway(gateway: Start) -> None:
    api = gateway({"load": echo, "query": echo})

    _, _, raw = request(api, "GET", "/events/abc")

    event = json.loads(raw)
    assert event["body"] is None
    assert event["queryStringParameters"] is None
    assert event["pathParameters"] == {"event_id": "abc"}


def test_the_proxy_response_becomes_the_http_response(gateway: Start) -> None:
    def answer(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return {
            "statusCode": 201,
            "headers": {"X-Single": "1", "X-Both": "from-headers"},
            "multiValueHeaders": {"X-Both": ["m1", "m2"], "Set-Cookie": ["a=1", "b=2"]},
            "body": base64.b64encode(b"\x00\x01raw").decode(),
            "isBase64Encoded": True,
        }

    api = gateway({"load": answer, "query": echo})

    status, headers, raw = request(api, "POST", "/aggregates/a/events", b"{}")

    assert status == 201
    assert raw == b"\x00\x01raw"
    assert headers.get_all("X-Single") == ["1"]
    assert headers.get_all("X-Both") == ["m1", "m2"]  # multiValueHeaders win for a name in both
    assert headers.get_all("Set-Cookie") == ["a=1", "b=2"]
    assert headers["Content-Type"] == "application/json"  # API Gateway's default
    assert headers["Content-Length"] == str(len(raw))
    assert headers["x-amzn-RequestId"]


def test_an_unknown_path_is_404_and_invokes_nothing(gateway: Start) -> None:
    recorder = Recorder()
    api = gateway({"load": recorder, "query": recorder})

    for path in ("/nope", "/aggregates", "/aggregates/a/events/extra", "/events/"):
        status, headers, raw = request(api, "GET", path)
        assert status == 404, path
        assert headers["Content-Type"] == "application/json"
        assert "message" in json.loads(raw)
    assert recorder.calls == 0


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("DELETE", "/aggregates/a", "GET"),
        ("POST", "/aggregates/a", "GET"),
        ("PUT", "/aggregates/a/events", "GET, POST"),
        ("POST", "/events/e", "GET"),
    ],
)
def test_a_known_path_with_another_method_is_405_with_allow(
    gateway: Start, method: str, path: str, allow: str
) -> None:
    recorder = Recorder()
    api = gateway({"load": recorder, "query": recorder})

    status, headers, raw = request(api, method, path, b"{}")

    assert status == 405
    assert headers["Allow"] == allow
    assert json.loads(raw)["message"]
    assert recorder.calls == 0


def test_a_body_over_10_mb_is_413_without_invoking(gateway: Start) -> None:
    recorder = Recorder()
    api = gateway({"load": recorder, "query": recorder})
    connection = http.client.HTTPConnection(api.host, api.port, timeout=10)
    try:
        # Announce the body and send none of it: the gateway must answer from the length alone.
        connection.putrequest("POST", "/aggregates/a/events")
        connection.putheader("Content-Length", str(MAX_BODY_BYTES + 1))
        connection.endheaders()
        response = connection.getresponse()
        assert response.status == 413
        assert "message" in json.loads(response.read())
    finally:
        connection.close()
    assert recorder.calls == 0


def test_a_chunked_body_over_10_mb_is_413_and_one_under_it_is_delivered(gateway: Start) -> None:
    api = gateway({"load": echo, "query": echo})

    def chunked(total: int) -> tuple[int, bytes]:
        connection = http.client.HTTPConnection(api.host, api.port, timeout=30)
        try:
            chunk = b"x" * (1024 * 1024)
            chunks = [chunk] * (total // len(chunk)) + [b"y" * (total % len(chunk))]
            connection.request("POST", "/aggregates/a/events", body=iter(chunks), encode_chunked=True)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    status, _ = chunked(MAX_BODY_BYTES + 10)
    assert status == 413
    status, raw = chunked(1000)
    assert status == 200
    assert json.loads(raw)["body"] == "y" * 1000


def test_a_body_of_exactly_10_mb_is_delivered(gateway: Start) -> None:
    sizes: list[int] = []

    def size(event: dict[str, Any], context: Any) -> dict[str, Any]:
        sizes.append(len(event["body"]))
        return {"statusCode": 204}

    api = gateway({"load": size, "query": echo})

    status, _, raw = request(api, "POST", "/aggregates/a/events", b"z" * MAX_BODY_BYTES)

    assert (status, raw, sizes) == (204, b"", [MAX_BODY_BYTES])


def test_a_handler_crash_is_502_with_the_traceback_in_the_log_only(
    gateway: Start, caplog: pytest.LogCaptureFixture
) -> None:
    def crash(event: dict[str, Any], context: Any) -> Any:
        raise RuntimeError("secret detail 7f3a")

    api = gateway({"load": crash, "query": echo})

    with caplog.at_level(logging.ERROR, logger="devstack.http"):
        status, _, raw = request(api, "POST", "/aggregates/a/events", b"{}")

    assert status == 502
    assert json.loads(raw) == {"message": "Internal server error"}
    assert b"secret" not in raw
    assert any("secret detail 7f3a" in (r.exc_text or "") for r in caplog.records)


@pytest.mark.parametrize(
    "bad",
    [
        "not an object",
        {"body": "no status"},
        {"statusCode": "abc"},
        {"statusCode": 200, "body": {"not": "a string"}},
        {"statusCode": 200, "body": "%%%", "isBase64Encoded": True},
        {"statusCode": 200, "headers": {"X": "a\r\nInjected: 1"}},
    ],
    ids=["string", "no-status", "bad-status", "body-object", "bad-base64", "header-crlf"],
)
def test_a_malformed_proxy_response_is_502(gateway: Start, bad: Any) -> None:
    api = gateway({"load": lambda event, context: bad, "query": echo})

    status, headers, raw = request(api, "POST", "/aggregates/a/events", b"{}")

    assert status == 502
    assert json.loads(raw) == {"message": "Internal server error"}
    assert headers.get("Injected") is None


def test_a_literal_segment_wins_over_a_placeholder(gateway: Start) -> None:
    routes = (
        RouteSpec("GET", "/things/{thing_id}", "query", "getThing"),
        RouteSpec("GET", "/things/special", "load", "getSpecial"),
    )
    api = gateway(
        {
            "query": lambda e, c: {"statusCode": 200, "body": "by-id"},
            "load": lambda e, c: {"statusCode": 200, "body": "special"},
        },
        routes,
    )

    assert request(api, "GET", "/things/special")[2] == b"special"
    assert request(api, "GET", "/things/other")[2] == b"by-id"


def test_requests_to_one_function_run_one_at_a_time(gateway: Start) -> None:
    # Six requests to the query function, all of them waiting for it while the first one is inside.
    contention = Contention(6, lambda event, context: {"statusCode": 200, "body": "{}"})
    api = gateway({"load": echo}, functions={"query": contention.function("query")})
    statuses: list[int] = []

    def get(i: int) -> None:
        statuses.append(request(api, "GET", f"/aggregates/a{i}")[0])

    threads = [threading.Thread(target=get, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert not any(thread.is_alive() for thread in threads)
    assert statuses == [200] * 6
    assert contention.most == 1


def test_a_kept_alive_connection_serves_several_requests(gateway: Start) -> None:
    api = gateway({"load": echo, "query": echo})
    connection = http.client.HTTPConnection(api.host, api.port, timeout=10)
    try:
        for i in range(3):
            connection.request("GET", f"/aggregates/a{i}")
            response = connection.getresponse()
            assert response.status == 200
            assert json.loads(response.read())["pathParameters"] == {"aggregate_id": f"a{i}"}
    finally:
        connection.close()


def test_a_taken_port_fails_at_construction() -> None:
    function = LocalFunction(function_spec("query"), echo, "es-test", "us-east-1")
    queries = [r for r in ROUTES if r.function == "query"]
    first = ApiGateway({"query": function}, queries, "127.0.0.1", 0)
    try:
        with pytest.raises(OSError, match="in use"):
            ApiGateway({"query": function}, queries, "127.0.0.1", first.port)
    finally:
        first.stop()
