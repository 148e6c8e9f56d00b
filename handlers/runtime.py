"""What every handler shares for the life of its Lambda container: settings, clients and stores.

Built on first use, never at import (a bad setting then fails the invocation with a clear error instead of the
import). `reset()` forgets them, for tests and for the devstack when it repoints the environment.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from eventlog.aws import dynamodb_client, kinesis_client
from eventlog.settings import Settings
from eventlog.state import StateStore
from eventlog.status import StatusStore
from eventlog.store import EventStore

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_kinesis import KinesisClient

T = TypeVar("T")
_caches: list[functools._lru_cache_wrapper[Any]] = []


def per_container(build: Callable[[], T]) -> Callable[[], T]:
    """Build once per Lambda container (on first use) and forget on `reset()`."""
    cached = functools.cache(build)
    _caches.append(cached)
    return cached


@per_container
def settings() -> Settings:
    return Settings.from_env()


@per_container
def dynamodb() -> DynamoDBClient:
    return dynamodb_client(settings(), max_pool_connections=16)


@per_container
def kinesis() -> KinesisClient:
    return kinesis_client(settings())


@per_container
def event_store() -> EventStore:
    s = settings()
    return EventStore(dynamodb(), s.events_table, s.event_status_table)


@per_container
def state_store() -> StateStore:
    return StateStore(dynamodb(), settings().state_table)


@per_container
def status_store() -> StatusStore:
    return StatusStore(dynamodb(), settings().event_status_table)


def reset() -> None:
    """Forget every cached setting, client and store."""
    for cached in _caches:
        cached.cache_clear()
