"""The data-path transport: signed calls that moto accepts, AWS's error shapes, retries with backoff."""

from __future__ import annotations

import orjson
import pytest

from eventlog.settings import Settings
from replayer.connect import AwsConnection
from replayer.errors import AwsError
from replayer.wire import Backoff, call_with_retries, error_from_response


@pytest.mark.parametrize(
    ("status", "body", "code", "retryable", "unknown"),
    [
        (400, b'{"__type":"com.amazonaws.dynamodb.v20120810#ResourceNotFoundException","message":"no"}',
         "ResourceNotFoundException", False, False),
        (400, b'{"__type":"ProvisionedThroughputExceededException","message":"slow"}',
         "ProvisionedThroughputExceededException", True, False),
        (400, b'{"__type":"ThrottlingException","Message":"slow"}', "ThrottlingException", True, False),
        (500, b'{"__type":"InternalServerError"}', "InternalServerError", True, True),
        (503, b"<html>busy</html>", "HTTP503", True, True),
        (403, b'{"__type":"AccessDeniedException","message":"denied"}', "AccessDeniedException", False, False),
    ],
)  # fmt: skip
def test_errors_are_mapped_from_aws_json(
    status: int, body: bytes, code: str, retryable: bool, unknown: bool
) -> None:
    error = error_from_response(status, body)
    assert (error.code, error.retryable, error.outcome_unknown) == (code, retryable, unknown)


@pytest.mark.asyncio
async def test_signed_calls_reach_dynamodb_and_kinesis(settings: Settings) -> None:
    async with AwsConnection(settings) as connection:
        raw = await connection.transport.call(
            "dynamodb", "DescribeTable", orjson.dumps({"TableName": settings.events_table})
        )
        assert orjson.loads(raw)["Table"]["TableName"] == settings.events_table
        raw = await connection.transport.call(
            "kinesis", "DescribeStreamSummary", orjson.dumps({"StreamName": settings.playback_stream})
        )
        assert orjson.loads(raw)["StreamDescriptionSummary"]["OpenShardCount"] == 2
        with pytest.raises(AwsError) as caught:
            await connection.transport.call("dynamodb", "DescribeTable", orjson.dumps({"TableName": "nope"}))
    assert caught.value.code == "ResourceNotFoundException"
    assert not caught.value.retryable


class _Flaky:
    def __init__(self, errors: list[AwsError]) -> None:
        self.errors = errors
        self.calls = 0

    async def call(self, service: str, operation: str, body: bytes) -> bytes:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return b"{}"


async def _no_sleep(delay: float) -> None:
    assert 0 <= delay <= 5.0


@pytest.mark.asyncio
async def test_retryable_errors_are_retried_and_others_are_not() -> None:
    throttled = AwsError("ThrottlingException", "", retryable=True)
    flaky = _Flaky([throttled, throttled])
    assert await call_with_retries(flaky, "dynamodb", "Scan", b"{}", sleep=_no_sleep) == b"{}"
    assert flaky.calls == 3
    flaky = _Flaky([AwsError("ValidationException", "bad")])
    with pytest.raises(AwsError, match="ValidationException"):
        await call_with_retries(flaky, "dynamodb", "Scan", b"{}", sleep=_no_sleep)
    assert flaky.calls == 1
    flaky = _Flaky([throttled] * 10)
    with pytest.raises(AwsError):
        await call_with_retries(flaky, "dynamodb", "Scan", b"{}", Backoff(max_attempts=4), sleep=_no_sleep)
    assert flaky.calls == 4


def test_backoff_grows_with_full_jitter_up_to_the_cap() -> None:
    backoff = Backoff(base=0.1, cap=2.0)
    assert all(0 <= backoff.delay(1) <= 0.2 for _ in range(100))
    assert max(backoff.delay(10) for _ in range(200)) > 1.0
    assert all(backoff.delay(50) <= 2.0 for _ in range(100))
