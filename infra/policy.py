"""IAM policy documents, and the exact actions each kind of access needs.

Every grant in the stack is built from these sets, so least privilege is decided here once: no wildcard
actions anywhere, and resources are this stack's own ARNs. The few actions AWS authorises only on `*` are
listed in `STAR_ONLY_ACTIONS`; tests/infra/test_least_privilege.py holds every role to these rules.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import pulumi

# What the stores in eventlog/ call (GetItem, BatchGetItem, Query; PutItem, UpdateItem, DeleteItem and
# TransactWriteItems, which IAM authorises per item as PutItem / UpdateItem / ConditionCheckItem).
TABLE_READ = ("dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query")
TABLE_WRITE = (
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:ConditionCheckItem",
)
# The replayer plans from the table's size and reads it with parallel segment scans.
TABLE_SCAN = ("dynamodb:Scan", "dynamodb:Query", "dynamodb:DescribeTable")
# Putting on a stream; ListShards and DescribeStreamSummary let the replayer derive its rate from the shards.
STREAM_PUT = (
    "kinesis:PutRecord",
    "kinesis:PutRecords",
    "kinesis:ListShards",
    "kinesis:DescribeStreamSummary",
)
# What Lambda's event source mapping does with the function's role, per source kind.
KINESIS_CONSUME = (
    "kinesis:DescribeStream",
    "kinesis:DescribeStreamSummary",
    "kinesis:GetRecords",
    "kinesis:GetShardIterator",
    "kinesis:ListShards",
)
TABLE_STREAM_CONSUME = (
    "dynamodb:DescribeStream",
    "dynamodb:GetRecords",
    "dynamodb:GetShardIterator",
    "dynamodb:ListStreams",
)
# The data key (tables and streams are encrypted with it): reading needs Decrypt, writing also needs to
# make data keys. Always used through DynamoDB or Kinesis, never directly (see `key_statement`).
KEY_READ = ("kms:Decrypt", "kms:DescribeKey")
KEY_WRITE = ("kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GenerateDataKey")
LOG_WRITE = ("logs:CreateLogStream", "logs:PutLogEvents")
QUEUE_SEND = ("sqs:SendMessage",)
# AWS authorises these on no resource narrower than "*".
XRAY_WRITE = ("xray:PutTraceSegments", "xray:PutTelemetryRecords")
ECR_LOGIN = ("ecr:GetAuthorizationToken",)
ECR_PULL = ("ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage")
STAR_ONLY_ACTIONS = frozenset(XRAY_WRITE + ECR_LOGIN)

Statement = dict[str, Any]


def allow(
    actions: Sequence[str],
    resources: Sequence[pulumi.Input[str]],
    condition: Mapping[str, Any] | None = None,
    sid: str | None = None,
) -> Statement:
    """One Allow statement. Actions are sorted and de-duplicated so documents are stable across runs."""
    if not actions or not resources:
        raise ValueError("a statement needs at least one action and one resource")
    statement: Statement = {"Effect": "Allow", "Action": sorted(set(actions)), "Resource": list(resources)}
    if sid:
        statement["Sid"] = sid
    if condition:
        statement["Condition"] = dict(condition)
    return statement


def document(statements: Sequence[Statement]) -> pulumi.Output[str]:
    """A policy document (JSON), resolving any Outputs inside the statements."""
    return pulumi.Output.json_dumps({"Version": "2012-10-17", "Statement": list(statements)})


def assume_role_policy(service: str) -> str:
    """The trust policy that lets one AWS service (`lambda.amazonaws.com`, ...) assume a role."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}],
        }
    )


def key_statement(
    actions: Sequence[str], key_arn: pulumi.Input[str], services: Sequence[str], region: pulumi.Input[str]
) -> Statement:
    """Use of the data key, only through the named services (`dynamodb`, `kinesis`) in this region."""
    via = [pulumi.Output.concat(service, ".", region, ".amazonaws.com") for service in sorted(set(services))]
    return allow(actions, [key_arn], condition={"StringEquals": {"kms:ViaService": via}})


# A rebuild's shadow state tables are named `<state table>-rebuild-<id>` (ops/rebuild.py); the write function
# projects a rebuild's events into them, so it is granted that pattern, under the stack's own state table.
REBUILD_SHADOW_SUFFIX = "-rebuild-*"


def rebuild_shadows(state_table_arn: pulumi.Input[str]) -> pulumi.Output[str]:
    """The ARN pattern of the state table's rebuild shadows (see REBUILD_SHADOW_SUFFIX)."""
    return pulumi.Output.concat(state_table_arn, REBUILD_SHADOW_SUFFIX)


def log_streams(log_group_arn: pulumi.Input[str]) -> pulumi.Output[str]:
    """The ARN pattern of the log streams inside one log group (their names are made at run time)."""
    return pulumi.Output.concat(log_group_arn, ":log-stream:*")
