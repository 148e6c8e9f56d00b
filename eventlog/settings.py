"""Settings, read from the environment only (never at import time).

Where the stack is:

- **region**: `AWS_REGION` or `AWS_DEFAULT_REGION` (the variable boto3 and the AWS CLI read), then, as boto3
  resolves it, the `region` of the AWS profile (`AWS_PROFILE`, else `default`) in `AWS_CONFIG_FILE`
  (`~/.aws/config`) or the shared credentials file. No region at all is an error saying how to set one; only a
  caller for which a local default is right (the devstack, which sets its own) passes `default_region`.
- **endpoint**: `AWS_ENDPOINT_URL` (the embedded AWS in the devstack, or unset on AWS).
- **names**: each table and stream from its own variable (`ES_EVENTS_TABLE`, ... as named in
  `eventlog.resources`), else `{ES_NAME_PREFIX}-{key}`, with `ES_NAME_PREFIX` defaulting to `es-local`. A
  prefix is also how a test environment gets its own set of tables and streams.

Two settings that name the same thing must agree, or `from_env` raises SettingsError naming both, so that a
command never picks one of them silently: `AWS_REGION` and `AWS_DEFAULT_REGION` (or a `--region` flag),
`AWS_ENDPOINT_URL` and a `--endpoint-url` flag (or a service's own `AWS_ENDPOINT_URL_DYNAMODB`, ... which the
AWS CLI would use), and a name variable or flag and the name that a set `ES_NAME_PREFIX` derives. So the
exports of one stack (its prefix and the names it derives) are consistent, and a shell that changes the prefix
while the names of another stack are still exported is told so. Names and no prefix (every name chosen by hand)
are fine too. Environment variables do override the profile's region, as they do for boto3.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from botocore.configloader import load_config, raw_config_parse
from botocore.exceptions import ConfigNotFound, ConfigParseError

from eventlog.resources import STREAMS, TABLES

DEFAULT_PREFIX = "es-local"
DEFAULT_REGION = "us-east-1"
_PREFIX_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,200}$")
# The clients this project makes; the AWS CLI and boto3 would send each to its own endpoint variable first.
SERVICE_ENDPOINT_VARIABLES = (
    "AWS_ENDPOINT_URL_DYNAMODB",
    "AWS_ENDPOINT_URL_DYNAMODB_STREAMS",
    "AWS_ENDPOINT_URL_KINESIS",
)
NO_REGION = (
    "no AWS region is set: export AWS_REGION=<region> (or AWS_DEFAULT_REGION), or set one in your AWS profile "
    "(aws configure set region <region>)"
)


class SettingsError(ValueError):
    """A setting is missing, invalid, or contradicts another one (the message is one line and names them)."""


@dataclass(frozen=True)
class Flag:
    """A command-line option that names part of the target, e.g. `Flag("--region", "eu-west-1")`."""

    option: str
    value: str | None


@dataclass(frozen=True)
class Settings:
    """Where the stack lives: region, optional endpoint, and the physical name of every table and stream."""

    region: str = DEFAULT_REGION
    endpoint_url: str | None = None
    prefix: str = DEFAULT_PREFIX
    table_names: Mapping[str, str] = field(default_factory=dict)
    stream_names: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        region: Flag | None = None,
        endpoint_url: Flag | None = None,
        names: Mapping[str, Flag] | None = None,
        default_region: str | None = None,
    ) -> Settings:
        """The settings the environment (and a command's flags) give; SettingsError (a ValueError) when two of
        them disagree, the prefix is not a valid one, or no region is set anywhere.

        `region`, `endpoint_url`: a command's flags; `names`: flags naming a table or stream, by its key
        (`{"events": Flag("--table", ...)}`). `default_region`: the region when nothing gives one (the
        devstack's own; everyone else gets an error)."""
        env = os.environ if environ is None else environ
        given = dict(names or {})
        unknown = set(given) - {t.key for t in TABLES} - {s.key for s in STREAMS}
        if unknown:
            raise ValueError(f"no table or stream {', '.join(sorted(unknown))}")
        explicit_prefix = env.get("ES_NAME_PREFIX") or None
        prefix = check_prefix(explicit_prefix) if explicit_prefix else DEFAULT_PREFIX

        def name(key: str, setting: str) -> str:
            sources = [(given[key].option, given[key].value)] if key in given else []
            sources.append((setting, env.get(setting)))
            if explicit_prefix:
                sources.append((f"ES_NAME_PREFIX={explicit_prefix}", default_name(explicit_prefix, key)))
            chosen = _agreed(sources, f"the {key.replace('_', ' ')} {_kind(key)}")
            return chosen[1] if chosen else default_name(prefix, key)

        return cls(
            region=resolve_region(env, flag=region, default=default_region),
            endpoint_url=resolve_endpoint(env, flag=endpoint_url),
            prefix=prefix,
            table_names={t.key: name(t.key, t.setting) for t in TABLES},
            stream_names={s.key: name(s.key, s.setting) for s in STREAMS},
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

    @property
    def names_derive_from_prefix(self) -> bool:
        """Whether every table and stream is named `{prefix}-{key}`."""
        return all(self.table(t.key) == default_name(self.prefix, t.key) for t in TABLES) and all(
            self.stream(s.key) == default_name(self.prefix, s.key) for s in STREAMS
        )

    def environment(self) -> dict[str, str]:
        """The variables that make another process (a handler, the replayer) see these settings, and that
        `from_env` reads back to the same settings: every name, and `ES_NAME_PREFIX` only when the names are the
        ones it derives (a prefix beside names it does not derive would be a contradiction)."""
        env = {"AWS_REGION": self.region}
        if self.names_derive_from_prefix:
            env["ES_NAME_PREFIX"] = self.prefix
        if self.endpoint_url:
            env["AWS_ENDPOINT_URL"] = self.endpoint_url
        for spec in TABLES:
            env[spec.setting] = self.table(spec.key)
        for sspec in STREAMS:
            env[sspec.setting] = self.stream(sspec.key)
        return env


def default_name(prefix: str, key: str) -> str:
    return f"{prefix}-{key.replace('_', '-')}"


def name_variables() -> tuple[str, ...]:
    """`ES_NAME_PREFIX` and every table's and stream's own variable."""
    return ("ES_NAME_PREFIX", *(t.setting for t in TABLES), *(s.setting for s in STREAMS))


def check_prefix(prefix: str) -> str:
    """`prefix` if it can start every table and stream name; SettingsError otherwise."""
    if not _PREFIX_RE.match(prefix):
        raise SettingsError(f"ES_NAME_PREFIX {prefix!r} is not a valid name prefix")
    return prefix


def resolve_region(
    environ: Mapping[str, str], flag: Flag | None = None, default: str | None = None, profile: bool = True
) -> str:
    """The region, as boto3 resolves it: `AWS_DEFAULT_REGION` (and this project's `AWS_REGION`, which must
    agree with it and with `flag`), then the AWS profile's `region` (unless `profile` is False), then
    `default`; SettingsError when none gives one."""
    sources = [(flag.option, flag.value)] if flag is not None else []
    sources += [(name, environ.get(name)) for name in ("AWS_REGION", "AWS_DEFAULT_REGION")]
    chosen = _agreed(sources, "the region")
    region = chosen[1] if chosen else (profile_region(environ) if profile else None) or default
    if not region:
        raise SettingsError(NO_REGION)
    return region


def resolve_endpoint(environ: Mapping[str, str], flag: Flag | None = None) -> str | None:
    """`AWS_ENDPOINT_URL` (or `flag`, which must agree with it); None for AWS itself. A service's own
    endpoint variable that names another endpoint is an error too: the AWS CLI would go there instead."""
    sources = [(flag.option, flag.value)] if flag is not None else []
    chosen = _agreed([*sources, ("AWS_ENDPOINT_URL", environ.get("AWS_ENDPOINT_URL"))], "the endpoint")
    if chosen is None:
        return None
    for variable in SERVICE_ENDPOINT_VARIABLES:
        _agreed([chosen, (variable, environ.get(variable))], "the endpoint")
    return chosen[1]


def profile_region(environ: Mapping[str, str]) -> str | None:
    """The `region` of the AWS profile boto3 would use, read as botocore reads it: the profile is
    `AWS_DEFAULT_PROFILE` or `AWS_PROFILE` (else `default`), from `AWS_CONFIG_FILE` (`~/.aws/config`) with the
    shared credentials file (`AWS_SHARED_CREDENTIALS_FILE`, `~/.aws/credentials`) merged over it."""
    config_file = environ.get("AWS_CONFIG_FILE") or "~/.aws/config"
    credentials_file = environ.get("AWS_SHARED_CREDENTIALS_FILE") or "~/.aws/credentials"
    try:
        try:
            profiles: dict[str, dict[str, object]] = load_config(config_file)["profiles"]
        except ConfigNotFound:
            profiles = {}
        try:
            for name, values in raw_config_parse(credentials_file).items():
                profiles.setdefault(name, {}).update(values)
        except ConfigNotFound:
            pass
    except ConfigParseError as exc:
        raise SettingsError(f"cannot read the AWS config: {exc}") from exc
    chosen = environ.get("AWS_DEFAULT_PROFILE") or environ.get("AWS_PROFILE")
    if chosen and chosen not in profiles:
        variable = "AWS_DEFAULT_PROFILE" if environ.get("AWS_DEFAULT_PROFILE") else "AWS_PROFILE"
        raise SettingsError(f"{variable}={chosen}: no such profile in {config_file} or {credentials_file}")
    region = profiles.get(chosen or "default", {}).get("region")
    return str(region) if region else None


def _kind(key: str) -> str:
    return "table" if key in {t.key for t in TABLES} else "stream"


def _agreed(sources: Iterable[tuple[str, str | None]], what: str) -> tuple[str, str] | None:
    """The first source that is set, as (label, value), if every other one that is set gives the same value;
    None when none is set; SettingsError naming two that differ."""
    chosen: tuple[str, str] | None = None
    for label, value in sources:
        if not value:
            continue
        if chosen is None:
            chosen = (label, value)
        elif value != chosen[1]:
            derived = "=" in chosen[0] or "=" in label
            values = f" ({chosen[1]} vs {value})" if derived else ""
            fix = "keep one of them, or make them agree"
            if derived and chosen[0].startswith("ES_"):
                # Names exported for one stack, and a prefix set for another (or the other way round).
                fix = "unset the names of the other stack (ES_*_TABLE, ES_*_STREAM) or ES_NAME_PREFIX"
            raise SettingsError(
                f"{_shown(*chosen)} and {_shown(label, value)} disagree on {what}{values}: {fix}"
            )
    return chosen


def _shown(label: str, value: str) -> str:
    if "=" in label:  # derived: labelled with what it derives from (ES_NAME_PREFIX=x)
        return label
    return f"{label} {value}" if label.startswith("--") else f"{label}={value}"
