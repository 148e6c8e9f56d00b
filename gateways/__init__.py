"""Gateways to external systems: every call out (an update) and every answer in (a query) goes through a
`Gateway`, bound to the event being processed and its mode (live, replay, fix), and is recorded in the
gateway_recordings table. See gateways/base.py and docs/gateways.md."""

from gateways.base import Gateway, QueryAnswer, UpdateResult
from gateways.config import GatewaySettings
from gateways.exceptions import (
    ExternalSystemError,
    GatewayError,
    MissingRecording,
    ReplayNotAuthorised,
    SkipEvent,
)
from gateways.recordings import DynamoRecordings, MemoryRecordings, RecordingStore
from gateways.types import CallContext, Mode, Recording, mode_of

__all__ = [
    "CallContext",
    "DynamoRecordings",
    "ExternalSystemError",
    "Gateway",
    "GatewayError",
    "GatewaySettings",
    "MemoryRecordings",
    "MissingRecording",
    "Mode",
    "QueryAnswer",
    "Recording",
    "RecordingStore",
    "ReplayNotAuthorised",
    "SkipEvent",
    "UpdateResult",
    "mode_of",
]
