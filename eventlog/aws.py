"""boto3 clients built from `Settings`. Clients are made when asked for, never at import."""

from __future__ import annotations

from typing import TYPE_CHECKING

import boto3
from botocore.config import Config

from eventlog.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodbstreams import DynamoDBStreamsClient
    from mypy_boto3_kinesis import KinesisClient


def client_config(max_pool_connections: int = 10, read_timeout: float = 10.0) -> Config:
    """Standard retries (with backoff and jitter) and a pool sized to the caller's concurrency."""
    return Config(
        retries={"mode": "standard", "max_attempts": 5},
        connect_timeout=3,
        read_timeout=read_timeout,
        max_pool_connections=max_pool_connections,
        tcp_keepalive=True,
    )


def _session(settings: Settings) -> boto3.session.Session:
    return boto3.session.Session(region_name=settings.region)


def dynamodb_client(settings: Settings, max_pool_connections: int = 10) -> DynamoDBClient:
    return _session(settings).client(
        "dynamodb", endpoint_url=settings.endpoint_url, config=client_config(max_pool_connections)
    )


def dynamodbstreams_client(settings: Settings) -> DynamoDBStreamsClient:
    return _session(settings).client(
        "dynamodbstreams", endpoint_url=settings.endpoint_url, config=client_config()
    )


def kinesis_client(settings: Settings, max_pool_connections: int = 10) -> KinesisClient:
    return _session(settings).client(
        "kinesis", endpoint_url=settings.endpoint_url, config=client_config(max_pool_connections)
    )
