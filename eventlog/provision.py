"""Create every table and stream from `eventlog.resources`, and every mapping's dead-letter queue from
`eventlog.topology`, on an endpoint (the embedded AWS, tests).

On AWS the Pulumi program in infra/ creates them from the same definitions.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import boto3
from botocore.exceptions import ClientError

from eventlog.aws import client_config
from eventlog.resources import STREAMS, TABLES
from eventlog.settings import Settings
from eventlog.topology import DEAD_LETTER_RETENTION_S, MAPPINGS, MappingSpec

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_kinesis import KinesisClient


def create_resources(
    settings: Settings,
    dynamodb: DynamoDBClient,
    kinesis: KinesisClient,
    shard_counts: dict[str, int] | None = None,
) -> None:
    """Create (or keep, when they exist) all tables and streams named by `settings`, and wait for them."""
    for spec in TABLES:
        name = settings.table(spec.key)
        try:
            dynamodb.create_table(**spec.create_table_kwargs(name))
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ResourceInUseException":
                raise
        if spec.ttl_attribute:
            dynamodb.update_time_to_live(
                TableName=name,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": spec.ttl_attribute},
            )
    for sspec in STREAMS:
        count = (shard_counts or {}).get(sspec.key, sspec.local_shard_count)
        try:
            kinesis.create_stream(StreamName=settings.stream(sspec.key), ShardCount=count)
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ResourceInUseException":
                raise
    for spec in TABLES:
        dynamodb.get_waiter("table_exists").wait(
            TableName=settings.table(spec.key),
            WaiterConfig={"Delay": 0.1, "MaxAttempts": 300},  # type: ignore[typeddict-item]
        )
    for sspec in STREAMS:
        _wait_stream_active(kinesis, settings.stream(sspec.key))


def sqs_client(settings: Settings) -> Any:
    """An SQS client for the settings' endpoint and region (the dead-letter queues)."""
    return boto3.session.Session(region_name=settings.region).client(
        "sqs", endpoint_url=settings.endpoint_url, config=client_config()
    )


def create_dead_letter_queues(
    settings: Settings, sqs: Any, mappings: Sequence[MappingSpec] = MAPPINGS
) -> dict[str, str]:
    """Create (or keep) each mapping's dead-letter queue, kept as long as infra keeps it; mapping key -> URL."""
    urls: dict[str, str] = {}
    for mapping in mappings:
        response = sqs.create_queue(
            QueueName=mapping.dead_letter_queue(settings.prefix),
            Attributes={"MessageRetentionPeriod": str(DEAD_LETTER_RETENTION_S)},
        )
        urls[mapping.key] = response["QueueUrl"]
    return urls


def _wait_stream_active(kinesis: KinesisClient, name: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        status = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamStatus"]
        if status == "ACTIVE":
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"stream {name} still {status} after {timeout}s")
        time.sleep(0.05)
