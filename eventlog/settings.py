"""Settings, read from the environment only (never at import time).

AWS's own variables are used where they exist: `AWS_REGION` (then `AWS_DEFAULT_REGION`) and
`AWS_ENDPOINT_URL` (the embedded AWS in the devstack, or unset on AWS). Each table and stream name comes from
its own variable (`ES_EVENTS_TABLE`, ... as named in `eventlog.resources`), and defaults to
`{ES_NAME_PREFIX}-{key}` with `ES_NAME_PREFIX` defaulting to `es-local`. A prefix is also how a test
environment gets its own set of tables and streams.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from eventlog.resources import STREAMS, TABLES

DEFAULT_PREFIX = "es-local"
DEFAULT_REGION = "us-east-1"
_PREFIX_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,200}$")


@dataclass(frozen=True)
class Settings:
    """Where the stack lives: region, optional endpoint, and the physical name of every table and stream."""

    region: str = DEFAULT_REGION
    endpoint_url: str | None = None
    prefix: str = DEFAULT_PREFIX
    table_names: Mapping[str, str] = field(default_factory=dict)
    stream_names: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        prefix = env.get("ES_NAME_PREFIX") or DEFAULT_PREFIX
        if not _PREFIX_RE.match(prefix):
            raise ValueError(f"ES_NAME_PREFIX {prefix!r} is not a valid name prefix")
        return cls(
            region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or DEFAULT_REGION,
            endpoint_url=env.get("AWS_ENDPOINT_URL") or None,
            prefix=prefix,
            table_names={t.key: env.get(t.setting) or default_name(prefix, t.key) for t in TABLES},
            stream_names={s.key: env.get(s.setting) or default_name(prefix, s.key) for s in STREAMS},
        )

    def with_prefix(self, prefix: str) -> Settings:
        """The same endpoint and region, with every name derived from another prefix (a test environment)."""
        return replace(
            self,
            prefix=prefix,
            table_names={t.key: default_name(prefix, t.key) for t in TABLES},
            stream_names={s.key: default_name(prefix, s.key) for s in STREAMS},
        )

    def table(self, key: str) -> str:
        return self.table_names.get(key) or default_name(self.prefix, key)

    def stream(self, key: str) -> str:
        return self.stream_names.get(key) or default_name(self.prefix, key)

    @property
    def events_table(self) -> str:
        return self.table("events")

    @property
    def state_table(self) -> str:
        return self.table("state")

    @property
    def event_status_table(self) -> str:
        return self.table("event_status")

    @property
    def idempotency_table(self) -> str:
        return self.table("idempotency")

    @property
    def replay_checkpoints_table(self) -> str:
        return self.table("replay_checkpoints")

    @property
    def ingest_stream(self) -> str:
        return self.stream("ingest")

    @property
    def playback_stream(self) -> str:
        return self.stream("playback")

    def environment(self) -> dict[str, str]:
        """The variables that make another process (a handler, the replayer) see these settings."""
        env = {"AWS_REGION": self.region, "ES_NAME_PREFIX": self.prefix}
        if self.endpoint_url:
            env["AWS_ENDPOINT_URL"] = self.endpoint_url
        for spec in TABLES:
            env[spec.setting] = self.table(spec.key)
        for sspec in STREAMS:
            env[sspec.setting] = self.stream(sspec.key)
        return env


def default_name(prefix: str, key: str) -> str:
    return f"{prefix}-{key.replace('_', '-')}"
