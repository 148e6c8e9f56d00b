"""What every handler shares for the life of its Lambda container: settings, clients and stores.

Built on first use, never at import (a bad setting then fails the invocation with a clear error instead of the
import). `reset()` forgets them, for tests and for the devstack when it repoints the environment.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from eventlog.aws import dynamodb_client, kinesis_client
from eventlog.settings import Settings
from eventlog.state import StateStore
from eventlog.status import StatusStore
from eventlog.store import EventStore

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_kinesis import KinesisClient


@functools.cache
def settings() -> Settings:
    return Settings.from_env()


@functools.cache
def dynamodb() -> DynamoDBClient:
    return dynamodb_client(settings(), max_pool_connections=16)


@functools.cache
def kinesis() -> KinesisClient:
    return kinesis_client(settings())


@functools.cache
def event_store() -> EventStore:
    s = settings()
    return EventStore(dynamodb(), s.events_table, s.event_status_table)


@functools.cache
def state_store() -> StateStore:
    return StateStore(dynamodb(), settings().state_table)


@functools.cache
def status_store() -> StatusStore:
    return StatusStore(dynamodb(), settings().event_status_table)


def reset() -> None:
    """Forget every cached setting, client and store."""
    for cached in (settings, dynamodb, kinesis, event_store, state_store, status_store):
        cached.cache_clear()
