"""The environment that makes a handler or the replayer see this stack's tables and streams.

The variable names come from `eventlog.settings.Settings.environment()`, the same map the devstack sets, so
a handler reads its settings on AWS exactly as it does locally; only the values differ (the deployed
resources' names). On AWS there is no endpoint override.
"""

from __future__ import annotations

from collections.abc import Mapping

import pulumi
import pulumi_aws as aws

from eventlog.resources import STREAMS, TABLES
from eventlog.settings import Settings

# Lambda sets these itself and refuses a function that tries to.
LAMBDA_RESERVED = frozenset(
    {"AWS_REGION", "AWS_DEFAULT_REGION", "AWS_EXECUTION_ENV", "AWS_LAMBDA_FUNCTION_NAME"}
)


def stack_environment(
    prefix: str,
    tables: Mapping[str, aws.dynamodb.Table],
    streams: Mapping[str, aws.kinesis.Stream],
    region: pulumi.Input[str] | None = None,
) -> dict[str, pulumi.Input[str]]:
    """Settings' variables with this stack's resource names; AWS_REGION only when `region` is given
    (containers need it; Lambda sets it itself)."""
    template = Settings(prefix=prefix).environment()
    env: dict[str, pulumi.Input[str]] = {k: v for k, v in template.items() if k not in LAMBDA_RESERVED}
    env.pop("AWS_ENDPOINT_URL", None)  # the real endpoints, never an emulator's
    for spec in TABLES:
        env[spec.setting] = tables[spec.key].name
    for sspec in STREAMS:
        env[sspec.setting] = streams[sspec.key].name
    if region is not None:
        env["AWS_REGION"] = region
    return env
