"""The stack's knobs as one typed, validated value.

`__main__.py` is the only place that reads Pulumi config; it builds a `StackArgs` from it and hands it to
`infra.stack.build`. Defaults here are the documented defaults (docs/deploy.md lists every config key).
A bad value raises `ConfigError`, which Pulumi prints as one line, without a traceback.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import pulumi

from eventlog.resources import STREAMS, stream_spec
from eventlog.topology import FUNCTIONS, MAPPINGS, MappingSpec

StreamMode = Literal["PROVISIONED", "ON_DEMAND"]
ApiAuthorization = Literal["iam", "cognito", "none"]
GatewayMissing = Literal["error", "skip", "live"]
CpuArchitecture = Literal["ARM64", "X86_64"]

# Lambda's current Python runtimes (the bundle's wheels are built for the one chosen).
LAMBDA_RUNTIMES = ("python3.12", "python3.13", "python3.14")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# CloudWatch Logs accepts only these retention periods (days).
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557)
# Fargate's valid (cpu units -> memory MiB) pairs for the sizes a replayer would sensibly use.
FARGATE_SIZES: Mapping[int, tuple[int, ...]] = {
    256: (512, 1024, 2048),
    512: tuple(range(1024, 4097, 1024)),
    1024: tuple(range(2048, 8193, 1024)),
    2048: tuple(range(4096, 16385, 1024)),
    4096: tuple(range(8192, 30721, 1024)),
}
_PREFIX_RE = re.compile(r"^[a-z][a-z0-9-]{1,30}[a-z0-9]$")
_STREAM_NAME_RE = re.compile(r"^[a-zA-Z0-9_.-]{1,128}$")


class ConfigError(pulumi.RunError):
    """A config value that cannot work; Pulumi reports it as one line and stops before changing anything."""


@dataclass(frozen=True)
class StackArgs:
    """Everything the stack can be told. Only `prefix` has no default."""

    # Every physical name starts with it: tables `{prefix}-events`, functions `{prefix}-load`, ...
    prefix: str
    # The code every function runs; None: build the bundle (infra.bundle) for `lambda_runtime` on arm64.
    lambda_code: pulumi.Archive | None = None
    lambda_runtime: str = "python3.13"
    log_retention_days: int = 30
    log_level: str = "INFO"
    service_name: str = "eventsourcing"
    metrics_namespace: str = "EventSourcing"
    tracing: bool = True
    # Function key -> reserved concurrency. The playback function is capped so that a hand-started replay
    # can never take the account's concurrency from the live path.
    reserved_concurrency: Mapping[str, int] = field(default_factory=lambda: {"playback": 1})
    stream_mode: StreamMode = "PROVISIONED"
    # Stream key -> shard count (PROVISIONED only); 1 each by default.
    shard_counts: Mapping[str, int] = field(default_factory=dict)
    # Stream key -> retention in hours (default: the stream's own, eventlog.resources: ingest 7 days, playback
    # 24 hours).
    stream_retention_hours: Mapping[str, int] = field(default_factory=dict)
    # Function key -> parallelization factor of the mappings that feed it (default: the topology's).
    parallelization_factors: Mapping[str, int] = field(default_factory=dict)
    # Function key -> retries of a failing batch before it goes to the dead-letter queue, for the mappings that
    # feed it (-1 = until the record is too old); default: the topology's (eventlog.topology).
    max_retry_attempts: Mapping[str, int] = field(default_factory=dict)
    # Function key -> the age (seconds) past which a record goes to the dead-letter queue (-1 = until it
    # expires from its stream); default: the topology's.
    max_record_age_seconds: Mapping[str, int] = field(default_factory=dict)
    api_authorization: ApiAuthorization = "iam"
    cognito_user_pool_arns: Sequence[str] = ()
    api_stage_name: str = "v1"
    api_throttle_rate_limit: float = 100.0
    api_throttle_burst_limit: int = 200
    # API Gateway needs an account-wide CloudWatch role before any stage can write access logs; set False
    # when the account already has one (this stack would otherwise take the setting over).
    manage_api_gateway_account: bool = True
    # A prebuilt replayer image (URI); when empty, `pulumi up` builds replayer/Dockerfile and pushes it.
    replayer_image: str = ""
    replayer_dockerfile: str = "replayer/Dockerfile"
    # The Docker build context, relative to the repo root: the root itself, since the image needs eventlog/.
    replayer_context: str = "."
    replayer_cpu: int = 1024
    replayer_memory_mb: int = 2048
    replayer_architecture: CpuArchitecture = "ARM64"
    # Empty: the default VPC's subnets and a security group of the stack's own (egress HTTPS only).
    replayer_subnet_ids: Sequence[str] = ()
    replayer_security_group_ids: Sequence[str] = ()
    # A task in a public subnet needs a public IP to reach ECR and the AWS APIs; a private subnet with a
    # NAT gateway or VPC endpoints does not.
    replayer_assign_public_ip: bool = True
    # Streams (names, in this account and region) the replayer may put to besides the playback stream:
    # test environments' streams.
    replay_target_streams: Sequence[str] = ()
    # The external systems the service function calls through its gateways (its ES_*_URL variables); empty:
    # not configured (a live event that needs one fails, and is retried, with a message naming the key).
    exchange_rates_url: str = ""
    ledger_export_url: str = ""
    # What a replay does when a gateway recording it needs is missing (ES_GATEWAY_MISSING).
    gateway_missing: GatewayMissing = "error"
    alarm_email: str = ""
    iterator_age_alarm_ms: int = 60_000
    # Keep the events table (the system of record) and its KMS key on `pulumi destroy`.
    keep_event_log: bool = True

    def __post_init__(self) -> None:
        problems = list(self._problems())
        if problems:
            raise ConfigError("; ".join(problems))

    def _problems(self) -> list[str]:
        out: list[str] = []
        function_keys = {f.key for f in FUNCTIONS}
        mapped_functions = {m.function for m in MAPPINGS}
        stream_keys = {s.key for s in STREAMS}
        if not _PREFIX_RE.match(self.prefix):
            out.append(
                f"namePrefix {self.prefix!r} must be 3-32 characters of a-z, 0-9 and '-', starting with a letter"
            )
        if self.lambda_runtime not in LAMBDA_RUNTIMES:
            out.append(f"lambdaRuntime {self.lambda_runtime!r} is not one of {', '.join(LAMBDA_RUNTIMES)}")
        if self.log_retention_days not in LOG_RETENTION_DAYS:
            out.append(f"logRetentionDays {self.log_retention_days} is not a value CloudWatch Logs accepts")
        if self.log_level not in LOG_LEVELS:
            out.append(f"logLevel {self.log_level!r} is not one of {', '.join(LOG_LEVELS)}")
        for key, value in self.reserved_concurrency.items():
            if key not in function_keys:
                out.append(f"reservedConcurrency names {key!r}, which is not a function")
            elif value < 0:
                out.append(f"reservedConcurrency for {key} must be >= 0")
        if self.stream_mode not in ("PROVISIONED", "ON_DEMAND"):
            out.append(f"streamMode {self.stream_mode!r} must be PROVISIONED or ON_DEMAND")
        for key, count in self.shard_counts.items():
            if key not in stream_keys:
                out.append(f"shardCounts names {key!r}, which is not a stream")
            elif not 1 <= count <= 500:
                out.append(f"shardCounts for {key} must be 1-500")
        for key, factor in self.parallelization_factors.items():
            if key not in mapped_functions:
                out.append(f"parallelizationFactors names {key!r}, which no stream feeds")
            elif not 1 <= factor <= 10:
                out.append(f"parallelizationFactors for {key} must be 1-10")
        limits_from = len(out)
        for key, hours in self.stream_retention_hours.items():
            if key not in stream_keys:
                out.append(f"streamRetentionHours names {key!r}, which is not a stream")
            elif not 24 <= hours <= 8760:
                out.append(f"streamRetentionHours for {key} must be 24-8760")
        for key, retries in self.max_retry_attempts.items():
            if key not in mapped_functions:
                out.append(f"maxRetryAttempts names {key!r}, which no stream feeds")
            elif not -1 <= retries <= 10_000:
                out.append(f"maxRetryAttempts for {key} must be -1 (until too old) or 0-10000")
        for key, age in self.max_record_age_seconds.items():
            if key not in mapped_functions:
                out.append(f"maxRecordAgeSeconds names {key!r}, which no stream feeds")
            elif not (age == -1 or 60 <= age <= 604_800):
                out.append(f"maxRecordAgeSeconds for {key} must be -1 or 60-604800")
        if len(out) == limits_from:  # each value is sound on its own: now whether they fit together
            out.extend(self._age_within_retention())
        if self.api_authorization not in ("iam", "cognito", "none"):
            out.append(f"apiAuthorization {self.api_authorization!r} must be iam, cognito or none")
        if self.api_authorization == "cognito" and not self.cognito_user_pool_arns:
            out.append("apiAuthorization cognito needs cognitoUserPoolArns")
        if not re.match(r"^[a-zA-Z0-9_]{1,128}$", self.api_stage_name):
            out.append(f"apiStageName {self.api_stage_name!r} must be letters, digits and '_'")
        if self.api_throttle_rate_limit <= 0 or self.api_throttle_burst_limit <= 0:
            out.append("apiThrottleRateLimit and apiThrottleBurstLimit must be positive")
        if self.replayer_cpu not in FARGATE_SIZES:
            out.append(f"replayerCpu must be one of {', '.join(map(str, FARGATE_SIZES))}")
        elif self.replayer_memory_mb not in FARGATE_SIZES[self.replayer_cpu]:
            out.append(
                f"replayerMemoryMb {self.replayer_memory_mb} does not go with replayerCpu {self.replayer_cpu}"
            )
        if self.replayer_architecture not in ("ARM64", "X86_64"):
            out.append("replayerArchitecture must be ARM64 or X86_64")
        if bool(self.replayer_subnet_ids) != bool(self.replayer_security_group_ids):
            out.append("replayerSubnetIds and replayerSecurityGroupIds go together: give both or neither")
        for name in self.replay_target_streams:
            if not _STREAM_NAME_RE.match(name):
                out.append(f"replayTargetStreams: {name!r} is not a Kinesis stream name")
        for key, url in (
            ("exchangeRatesUrl", self.exchange_rates_url),
            ("ledgerExportUrl", self.ledger_export_url),
        ):
            if url and not re.match(r"^https?://[^/\s]+(/\S*)?$", url):
                out.append(f"{key} {url!r} is not an http(s) URL")
        if self.gateway_missing not in ("error", "skip", "live"):
            out.append(f"gatewayMissing {self.gateway_missing!r} must be error, skip or live")
        if self.alarm_email and "@" not in self.alarm_email:
            out.append(f"alarmEmail {self.alarm_email!r} is not an email address")
        if self.iterator_age_alarm_ms < 1000:
            out.append("iteratorAgeAlarmMs must be at least 1000")
        return out

    def _age_within_retention(self) -> list[str]:
        # A record age at or past the stream's retention never triggers: the record is gone first, dropped
        # without a dead letter. Each Kinesis-fed mapping must give up while its records are still readable.
        out: list[str] = []
        for spec in MAPPINGS:
            age = self.record_age(spec)
            if spec.source_kind != "kinesis" or age == -1:
                continue
            hours = self.retention_hours(spec.source)
            if age >= hours * 3600:
                out.append(
                    f"maxRecordAgeSeconds for {spec.function} ({age}) must be less than the {spec.source} "
                    f"stream's retention ({hours} h = {hours * 3600} s), or -1; change one of "
                    f"maxRecordAgeSeconds.{spec.function} and streamRetentionHours.{spec.source}"
                )
        return out

    def shard_count(self, stream_key: str) -> int:
        """Shards for a stream in PROVISIONED mode."""
        return self.shard_counts.get(stream_key, 1)

    def retention_hours(self, stream_key: str) -> int:
        """How long a stream keeps a record: the config's, or the stream's own (eventlog.resources)."""
        return self.stream_retention_hours.get(stream_key, stream_spec(stream_key).retention_hours)

    def retry_attempts(self, mapping: MappingSpec) -> int:
        """A mapping's retries of a failing batch: the config's for its function, or the topology's."""
        return self.max_retry_attempts.get(mapping.function, mapping.max_retry_attempts)

    def record_age(self, mapping: MappingSpec) -> int:
        """A mapping's maximum record age in seconds: the config's for its function, or the topology's."""
        return self.max_record_age_seconds.get(mapping.function, mapping.max_record_age_s)

    def service_environment(self) -> dict[str, str]:
        """The service function's own variables: where its gateways' external systems are, and the policy."""
        env: dict[str, str] = {"ES_GATEWAY_MISSING": self.gateway_missing}
        if self.exchange_rates_url:
            env["ES_EXCHANGE_RATES_URL"] = self.exchange_rates_url
        if self.ledger_export_url:
            env["ES_LEDGER_EXPORT_URL"] = self.ledger_export_url
        return env

    @property
    def lambda_python_version(self) -> str:
        """`python3.13` -> `3.13`: the Python the bundle's wheels must be built for."""
        return self.lambda_runtime.removeprefix("python")
