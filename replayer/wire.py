"""The data path to AWS: DynamoDB's and Kinesis's JSON protocol, spoken directly, signed with botocore.

Scan, Query and PutRecords go through here (the control plane and the checkpoints use aiobotocore clients).
A request body is bytes the caller built with orjson; the answer is the raw response body, which the caller
decodes with orjson. That skips botocore's serialisation, validation and parsing, which on a 1 MB Scan page
or a 500-record PutRecords call cost several times the work itself (docs/replayer.md measures it).

What is kept from botocore: credentials (its provider chain, refreshed when they expire) and SigV4 signing.
What this module adds: one long-lived aiohttp session whose pool is sized to the replay's concurrency, AWS's
error shapes mapped to `AwsError` (retryable or not, outcome known or not), and `call_with_retries` with
exponential backoff and full jitter for the idempotent reads.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
import orjson
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest

from replayer.errors import AwsError


@dataclass(frozen=True, slots=True)
class Service:
    """What the JSON protocol needs to know about a service."""

    signing_name: str
    target_prefix: str
    content_type: str


SERVICES: Mapping[str, Service] = {
    "dynamodb": Service("dynamodb", "DynamoDB_20120810", "application/x-amz-json-1.0"),
    "kinesis": Service("kinesis", "Kinesis_20131202", "application/x-amz-json-1.1"),
}

# Error codes that mean "not now": throttling and service-side trouble. Retrying them is what AWS advises.
THROTTLING_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "Throttling",
        "RequestLimitExceeded",
        "LimitExceededException",
        "TooManyRequestsException",
        "KMSThrottlingException",
    }
)
TRANSIENT_CODES = frozenset(
    {"InternalServerError", "InternalFailure", "ServiceUnavailable", "TransactionInProgressException"}
)


class Transport(Protocol):
    """Sends one JSON-protocol request and returns the raw response body, or raises AwsError."""

    async def call(self, service: str, operation: str, body: bytes) -> bytes: ...


class Credentials(Protocol):
    """What botocore's (or aiobotocore's) credentials offer: a frozen, current set."""

    async def get_frozen_credentials(self) -> Any: ...


class SignedTransport:
    """The real transport: SigV4-signed POSTs over one aiohttp session (one pool for the replay's life)."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        endpoints: Mapping[str, str],
        region: str,
        credentials: Credentials,
    ) -> None:
        self._http = http
        self._endpoints = dict(endpoints)
        self._region = region
        self._credentials = credentials

    async def call(self, service: str, operation: str, body: bytes) -> bytes:
        """POST one request; return the body of a 200 answer, raise AwsError for anything else."""
        spec = SERVICES[service]
        url = self._endpoints[service]
        frozen = await self._credentials.get_frozen_credentials()
        request = AWSRequest(
            method="POST",
            url=url,
            data=body,
            headers={
                "Content-Type": spec.content_type,
                "X-Amz-Target": f"{spec.target_prefix}.{operation}",
                # Decompressing costs CPU, which is what the replayer runs short of; bandwidth it has.
                "Accept-Encoding": "identity",
            },
        )
        SigV4Auth(frozen, spec.signing_name, self._region).add_auth(request)
        try:
            async with self._http.post(url, data=body, headers=dict(request.headers.items())) as response:
                payload = await response.read()
                status = response.status
                error_type = response.headers.get("x-amzn-ErrorType", "")
        except TimeoutError as exc:
            raise AwsError(
                "Timeout", f"{operation}: no answer in time", retryable=True, outcome_unknown=True
            ) from exc
        except aiohttp.ClientConnectorError as exc:
            # Never connected: the request cannot have taken effect.
            raise AwsError("ConnectionError", f"cannot reach {url} ({exc.os_error})", retryable=True) from exc
        except aiohttp.ClientError as exc:
            raise AwsError(
                "ConnectionError", f"{operation}: {exc!r}", retryable=True, outcome_unknown=True
            ) from exc
        if status == 200:
            return payload
        raise error_from_response(status, payload, error_type)


def error_from_response(status: int, payload: bytes, error_type: str = "") -> AwsError:
    """AWS's JSON error (`{"__type": "...#Code", "message": "..."}`) as an AwsError."""
    code, message = "", ""
    try:
        data = orjson.loads(payload) if payload else {}
        if isinstance(data, dict):
            code = str(data.get("__type") or "")
            message = str(data.get("message") or data.get("Message") or "")
    except orjson.JSONDecodeError:
        message = payload[:200].decode("utf-8", "replace")
    code = (code or error_type.split(":")[0] or f"HTTP{status}").rsplit("#", 1)[-1]
    server_side = status >= 500
    return AwsError(
        code,
        message,
        status=status,
        retryable=server_side or code in THROTTLING_CODES or code in TRANSIENT_CODES,
        outcome_unknown=server_side,
    )


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with full jitter: attempt n waits a random time in [0, min(cap, base * 2**n))."""

    base: float = 0.05
    cap: float = 5.0
    max_attempts: int = 10

    def delay(self, attempt: int) -> float:
        return random.uniform(0, min(self.cap, self.base * (2 ** min(attempt, 30))))


async def call_with_retries(
    transport: Transport,
    service: str,
    operation: str,
    body: bytes,
    backoff: Backoff = Backoff(),
    on_retry: Callable[[AwsError], None] | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> bytes:
    """Call, retrying retryable errors with backoff. Only for idempotent calls (reads): a retry may repeat."""
    attempt = 0
    while True:
        try:
            return await transport.call(service, operation, body)
        except AwsError as exc:
            attempt += 1
            if not exc.retryable or attempt >= backoff.max_attempts:
                raise
            if on_retry is not None:
                on_retry(exc)
            await sleep(backoff.delay(attempt))
