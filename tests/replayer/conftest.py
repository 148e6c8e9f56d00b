"""Fixtures for the replayer's tests: the replayer's config for the test stack, and a way to run a replay."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from eventlog.settings import Settings
from replayer.config import ReplayConfig


@pytest.fixture
def make_config(settings: Settings) -> Callable[..., ReplayConfig]:
    """A ReplayConfig for the test stack; keyword arguments override fields."""

    def build(**overrides: Any) -> ReplayConfig:
        fields: dict[str, Any] = {
            "events_table": settings.events_table,
            "stream": settings.playback_stream,
            "checkpoint_table": settings.replay_checkpoints_table,
            "checkpoint_interval": 0.2,
        }
        fields.update(overrides)
        return ReplayConfig(**fields)

    return build
