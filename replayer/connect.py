"""The replayer's AWS connection, made once per process (or Lambda container) and kept for its life.

- aiobotocore clients (from an aioboto3 session) for the control plane and the checkpoints: DescribeTable,
  ListShards, DescribeStreamSummary, and the replay_checkpoints table;
- `wire.SignedTransport` over one aiohttp session for the data path (Scan, Query, PutRecords), with the
  session's credentials and the endpoints the clients resolved (so AWS_ENDPOINT_URL and friends apply alike).

Control-plane failures become one-line `SetupError`s: a missing table or stream, no credentials, an endpoint
that does not answer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aioboto3  # type: ignore[import-untyped]
import aiohttp
from aiobotocore.config import AioConfig
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
)

from eventlog.settings import Settings
from replayer.errors import SetupError
from replayer.shards import ShardMap
from replayer.wire import SignedTransport

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient
    from types_aiobotocore_kinesis import KinesisClient

NO_CREDENTIALS = (
    "no AWS credentials found (set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
    "or run with an IAM role)"
)


@dataclass(frozen=True, slots=True)
class TableInfo:
    name: str
    size_bytes: int
    item_count: int


@dataclass(frozen=True, slots=True)
class StreamInfo:
    name: str
    shard_map: ShardMap
    on_demand: bool


class AwsConnection:
    """Clients and the data-path transport for one settings' region and endpoint (see the module docstring)."""

    def __init__(self, settings: Settings, pool_size: int = 32) -> None:
        self.settings = settings
        self.pool_size = pool_size
        self._stack: AsyncExitStack | None = None
        self._dynamodb: DynamoDBClient | None = None
        self._kinesis: KinesisClient | None = None
        self._transport: SignedTransport | None = None

    @property
    def endpoint(self) -> str:
        return self.settings.endpoint_url or f"AWS ({self.settings.region})"

    @property
    def dynamodb(self) -> DynamoDBClient:
        assert self._dynamodb is not None, "connection is not open"
        return self._dynamodb

    @property
    def kinesis(self) -> KinesisClient:
        assert self._kinesis is not None, "connection is not open"
        return self._kinesis

    @property
    def transport(self) -> SignedTransport:
        assert self._transport is not None, "connection is not open"
        return self._transport

    async def open(self) -> AwsConnection:
        """Resolve credentials and endpoints and open the clients (raise SetupError without credentials)."""
        if self._stack is not None:
            return self
        session = aioboto3.Session(region_name=self.settings.region)
        try:
            credentials = await session.get_credentials()
        except (BotoCoreError, ValueError) as exc:
            raise SetupError(f"cannot load AWS credentials: {exc}") from exc
        if credentials is None:
            raise SetupError(NO_CREDENTIALS)
        config = AioConfig(
            retries={"mode": "standard", "max_attempts": 2},
            connect_timeout=3,
            read_timeout=20,
            max_pool_connections=4,
        )
        stack = AsyncExitStack()
        try:
            self._dynamodb = await stack.enter_async_context(
                session.client("dynamodb", endpoint_url=self.settings.endpoint_url, config=config)
            )
            self._kinesis = await stack.enter_async_context(
                session.client("kinesis", endpoint_url=self.settings.endpoint_url, config=config)
            )
            http = await stack.enter_async_context(
                aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(limit=self.pool_size, limit_per_host=self.pool_size),
                    timeout=aiohttp.ClientTimeout(total=60, connect=5, sock_read=30),
                    headers={"User-Agent": "eventsourcing-replayer/1 aiohttp"},
                )
            )
        except NoRegionError as exc:
            await stack.aclose()
            raise SetupError("no AWS region: set AWS_REGION or pass --region") from exc
        except BaseException:
            await stack.aclose()
            raise
        self._transport = SignedTransport(
            http,
            {"dynamodb": self.dynamodb.meta.endpoint_url, "kinesis": self.kinesis.meta.endpoint_url},
            self.dynamodb.meta.region_name,
            credentials,
        )
        self._stack = stack
        return self

    async def close(self) -> None:
        if self._stack is not None:
            stack, self._stack = self._stack, None
            await stack.aclose()

    async def __aenter__(self) -> AwsConnection:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- control plane ---------------------------------------------------------------------------------

    async def describe_table(self, name: str, what: str = "table") -> TableInfo:
        """Size and item count of a table (DynamoDB refreshes both about every six hours)."""
        async with self.explained(f"{what} {name}"):
            table = (await self.dynamodb.describe_table(TableName=name))["Table"]
        return TableInfo(name, int(table.get("TableSizeBytes", 0)), int(table.get("ItemCount", 0)))

    async def describe_stream(self, name: str) -> StreamInfo:
        """The stream's open shards (with their hash key ranges) and capacity mode."""
        async with self.explained(f"stream {name}"):
            summary = (await self.kinesis.describe_stream_summary(StreamName=name))[
                "StreamDescriptionSummary"
            ]
            shards: list[Any] = []
            kwargs: dict[str, Any] = {"StreamName": name}
            seen: set[str] = set()
            # Not botocore's ListShards paginator: it sends StreamName again with NextToken, which Kinesis
            # refuses ("NextToken and StreamName cannot be provided together", boto/botocore#2009) once a
            # stream has more shards than one page holds. Each page hands out a new token; a repeated one
            # would loop for ever, so it ends the listing with an error instead.
            while True:
                page = await self.kinesis.list_shards(**kwargs)
                shards.extend(page.get("Shards", []))
                token = page.get("NextToken")
                if not token:
                    break
                if token in seen:
                    raise SetupError(f"stream {name}: ListShards handed out the same NextToken twice")
                seen.add(token)
                kwargs = {"NextToken": token}
        try:
            shard_map = ShardMap.from_list_shards(shards)
        except ValueError as exc:
            raise SetupError(f"stream {name} has no open shard") from exc
        mode = summary.get("StreamModeDetails", {}).get("StreamMode", "PROVISIONED")
        return StreamInfo(name, shard_map, mode == "ON_DEMAND")

    @asynccontextmanager
    async def explained(self, what: str) -> AsyncIterator[None]:
        """Turn botocore's exceptions into one-line SetupErrors that name `what` and the endpoint."""
        try:
            yield
        except (NoCredentialsError, PartialCredentialsError) as exc:
            raise SetupError(NO_CREDENTIALS) from exc
        except (EndpointConnectionError, ConnectTimeoutError) as exc:
            raise SetupError(f"cannot reach {self.endpoint} ({type(exc).__name__})") from exc
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = error.get("Code", "")
            if code == "ResourceNotFoundException":
                raise SetupError(f"{what} not found at {self.endpoint}") from exc
            raise SetupError(f"{what}: {code}: {error.get('Message', '')}".rstrip(": ")) from exc
        except BotoCoreError as exc:
            raise SetupError(f"{what}: {exc}") from exc
