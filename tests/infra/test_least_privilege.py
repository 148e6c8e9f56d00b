"""Least privilege, asserted over every role the mocked stack creates.

Rules for every role: no wildcard in any action; `*` as a resource only for the actions AWS authorises on
nothing narrower (infra.policy.STAR_ONLY_ACTIONS); every other resource is an ARN of this stack's own (or a
configured replay target stream), at most with a suffix pattern naming its sub-resources (a log group's
streams, a table's change streams). Then per role: exactly the access its FunctionSpec (or the replayer's
contract) calls for, derived independently from eventlog.topology.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import pytest

from eventlog.settings import default_name
from eventlog.topology import FUNCTIONS, MAPPINGS, FunctionSpec
from infra import functions as infra_functions
from infra import policy
from infra.api import API_GATEWAY_LOGS_POLICY
from infra.mappings import mapping_name
from tests.infra.harness import PREFIX, Deployed, deploy, stack_args
from tests.infra.mocks import ACCOUNT, REGION, AwsMocks

ROLE = "aws:iam/role:Role"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
# Sub-resource patterns under one of the stack's own ARNs.
SUFFIXES = (re.compile(r":log-stream:\*$"), re.compile(r"/stream/\*$"), re.compile(r"-rebuild-\*$"))
EXTRA_TARGET = "es-test-ingest"

Grants = dict[str, set[str]]  # resource -> actions


@pytest.fixture(scope="module")
def deployed() -> Deployed:
    return deploy(stack_args(replay_target_streams=[EXTRA_TARGET]))


def statements_by_role(mocks: AwsMocks) -> dict[str, list[dict[str, Any]]]:
    """Role name -> every statement of every inline policy attached to it."""
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for rp in mocks.of_type(ROLE_POLICY):
        document = json.loads(rp.inputs["policy"])
        assert document["Version"] == "2012-10-17"
        out[rp.inputs["role"]].extend(document["Statement"])
    return out


def as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def grants(statements: Iterable[dict[str, Any]], service: str | None = None) -> Grants:
    """resource -> actions (optionally only one service's actions)."""
    out: Grants = defaultdict(set)
    for st in statements:
        for resource in as_list(st["Resource"]):
            for action in as_list(st["Action"]):
                if service is None or action.startswith(f"{service}:"):
                    out[resource].add(action)
    return dict(out)


def violations(mocks: AwsMocks, extra_arns: Iterable[str] = ()) -> list[str]:
    """Every breach of the general rules, as readable lines (empty: none)."""
    own_arns = {r.arn for r in mocks if r.arn} | set(extra_arns)
    found = []
    for role, statements in statements_by_role(mocks).items():
        for st in statements:
            actions = as_list(st["Action"])
            if st.get("Effect") != "Allow" or "NotAction" in st or "NotResource" in st:
                found.append(f"{role}: only plain Allow statements are expected: {st}")
            for action in actions:
                if "*" in action or "?" in action:
                    found.append(f"{role}: wildcard action {action}")
            for resource in as_list(st["Resource"]):
                if resource == "*":
                    wide = [a for a in actions if a not in policy.STAR_ONLY_ACTIONS]
                    if wide:
                        found.append(f"{role}: {wide} on every resource")
                    continue
                base = resource
                for suffix in SUFFIXES:
                    base = suffix.sub("", base)
                if "*" in base or base not in own_arns:
                    found.append(f"{role}: {resource} is not one of the stack's own resources")
    return found


def test_no_role_may_do_more_than_the_general_rules_allow(deployed: Deployed) -> None:
    target = f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/{EXTRA_TARGET}"
    assert violations(deployed.mocks, [target]) == []


def test_the_rules_catch_a_widened_grant(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a program that grants a wildcard action and scans a table no spec asks for
    monkeypatch.setattr(policy, "TABLE_READ", ("dynamodb:Get*",))
    monkeypatch.setattr(infra_functions, "SCANS", {"query": ("state",)})
    mocks = deploy().mocks
    found = violations(mocks)
    assert any("wildcard action dynamodb:Get*" in line for line in found)
    # ... and the per-role check sees the scan
    by_role = statements_by_role(mocks)
    query = grants(by_role[f"{PREFIX}-query-function"], "dynamodb")
    assert "dynamodb:Scan" in query[table_arn(mocks, "state")]


def test_the_rules_catch_a_resource_outside_the_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    original = infra_functions.Functions._statements

    def leaky(*args: Any) -> list[dict[str, Any]]:
        return [
            *original(*args),
            policy.allow(("sqs:SendMessage",), ["arn:aws:sqs:eu-west-2:999999999999:theirs"]),
        ]

    monkeypatch.setattr(infra_functions.Functions, "_statements", staticmethod(leaky))
    assert any("theirs is not one of the stack's own" in line for line in violations(deploy().mocks))


def table_arn(mocks: AwsMocks, key: str) -> str:
    return mocks.named("aws:dynamodb/table:Table", default_name(PREFIX, key)).arn


def stream_arn(mocks: AwsMocks, key: str) -> str:
    return mocks.named("aws:kinesis/stream:Stream", default_name(PREFIX, key)).arn


def expected_dynamodb(mocks: AwsMocks, spec: FunctionSpec) -> Grants:
    """What a function's role may do on tables and their change streams, from the topology alone."""
    out: Grants = defaultdict(set)
    for key in spec.reads_tables:
        out[table_arn(mocks, key)] |= {"dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query"}
    for key in spec.writes_tables:
        out[table_arn(mocks, key)] |= {
            "dynamodb:PutItem",
            "dynamodb:UpdateItem",
            "dynamodb:DeleteItem",
            "dynamodb:BatchWriteItem",
            "dynamodb:ConditionCheckItem",
        }
    if spec.key == "playback":  # the in-process replayer scans the log and sizes the scan
        out[table_arn(mocks, "events")] |= {"dynamodb:Scan", "dynamodb:DescribeTable"}
        out[table_arn(mocks, "replay_checkpoints")] |= {"dynamodb:DescribeTable"}
        # ... and checks that a rebuild's --state-table exists before it puts anything
        out[table_arn(mocks, "state")] |= {"dynamodb:DescribeTable"}
        out[table_arn(mocks, "state") + "-rebuild-*"] |= {"dynamodb:DescribeTable"}
    if spec.key == "write":  # a rebuild's events go to its shadow state table
        out[table_arn(mocks, "state") + "-rebuild-*"] |= {
            "dynamodb:GetItem",
            "dynamodb:BatchGetItem",
            "dynamodb:Query",
            "dynamodb:PutItem",
            "dynamodb:UpdateItem",
            "dynamodb:DeleteItem",
            "dynamodb:BatchWriteItem",
            "dynamodb:ConditionCheckItem",
        }
    for mapping in MAPPINGS:
        if mapping.function == spec.key and mapping.source_kind == "dynamodb":
            out[f"{table_arn(mocks, mapping.source)}/stream/*"] |= {
                "dynamodb:DescribeStream",
                "dynamodb:GetRecords",
                "dynamodb:GetShardIterator",
                "dynamodb:ListStreams",
            }
    return dict(out)


def expected_kinesis(mocks: AwsMocks, spec: FunctionSpec) -> Grants:
    out: Grants = defaultdict(set)
    put = {"kinesis:PutRecord", "kinesis:PutRecords", "kinesis:ListShards", "kinesis:DescribeStreamSummary"}
    for key in spec.puts_streams:
        out[stream_arn(mocks, key)] |= put
    if spec.key == "playback":  # a small replay to a test environment runs in the function itself
        out[f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/{EXTRA_TARGET}"] |= put
    for mapping in MAPPINGS:
        if mapping.function == spec.key and mapping.source_kind == "kinesis":
            out[stream_arn(mocks, mapping.source)] |= {
                "kinesis:DescribeStream",
                "kinesis:DescribeStreamSummary",
                "kinesis:GetRecords",
                "kinesis:GetShardIterator",
                "kinesis:ListShards",
            }
    return dict(out)


@pytest.mark.parametrize("spec", FUNCTIONS, ids=lambda s: s.key)
def test_each_function_touches_exactly_the_tables_and_streams_its_spec_names(
    deployed: Deployed, spec: FunctionSpec
) -> None:
    mocks = deployed.mocks
    statements = statements_by_role(mocks)[f"{PREFIX}-{spec.key}-function"]
    assert grants(statements, "dynamodb") == expected_dynamodb(mocks, spec)
    assert grants(statements, "kinesis") == expected_kinesis(mocks, spec)
    # Its own log group's streams, nothing else of CloudWatch Logs.
    log_group = mocks.named("aws:cloudwatch/logGroup:LogGroup", f"/aws/lambda/{PREFIX}-{spec.key}")
    assert grants(statements, "logs") == {
        f"{log_group.arn}:log-stream:*": {"logs:CreateLogStream", "logs:PutLogEvents"}
    }
    # Dead letters: only into the queues of the mappings that feed it.
    queues = {
        mocks.named("aws:sqs/queue:Queue", f"{PREFIX}-{mapping_name(m)}-failures").arn
        for m in MAPPINGS
        if m.function == spec.key
    }
    assert grants(statements, "sqs") == {arn: {"sqs:SendMessage"} for arn in queues}


@pytest.mark.parametrize("spec", FUNCTIONS, ids=lambda s: s.key)
def test_the_data_key_is_used_only_through_dynamodb_and_kinesis(
    deployed: Deployed, spec: FunctionSpec
) -> None:
    mocks = deployed.mocks
    key = mocks.one("aws:kms/key:Key").arn
    for st in statements_by_role(mocks)[f"{PREFIX}-{spec.key}-function"]:
        if any(a.startswith("kms:") for a in as_list(st["Action"])):
            assert as_list(st["Resource"]) == [key]
            via = st["Condition"]["StringEquals"]["kms:ViaService"]
            assert set(via) <= {f"dynamodb.{REGION}.amazonaws.com", f"kinesis.{REGION}.amazonaws.com"}


def test_only_the_playback_function_may_start_the_replayer_and_pass_its_roles_only(
    deployed: Deployed,
) -> None:
    mocks = deployed.mocks
    by_role = statements_by_role(mocks)
    task = mocks.one("aws:ecs/taskDefinition:TaskDefinition").outputs["arn"]
    cluster = mocks.one("aws:ecs/cluster:Cluster").arn
    replayer_roles = {
        mocks.named(ROLE, f"{PREFIX}-replayer-task").arn,
        mocks.named(ROLE, f"{PREFIX}-replayer-execution").arn,
    }
    playback = by_role[f"{PREFIX}-playback-function"]
    [run] = [st for st in playback if "ecs:RunTask" in as_list(st["Action"])]
    assert (as_list(run["Action"]), as_list(run["Resource"])) == (["ecs:RunTask"], [task])
    assert run["Condition"] == {"ArnEquals": {"ecs:cluster": cluster}}
    [passrole] = [st for st in playback if "iam:PassRole" in as_list(st["Action"])]
    assert set(as_list(passrole["Resource"])) == replayer_roles
    assert passrole["Condition"] == {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}}
    for role, statements in by_role.items():
        if role != f"{PREFIX}-playback-function":
            assert not any(
                a.startswith(("ecs:", "iam:")) for st in statements for a in as_list(st["Action"])
            ), role


def test_the_replayer_task_reads_the_log_keeps_checkpoints_and_puts_to_its_targets_only(
    deployed: Deployed,
) -> None:
    mocks = deployed.mocks
    statements = statements_by_role(mocks)[f"{PREFIX}-replayer-task"]
    checkpoints = table_arn(mocks, "replay_checkpoints")
    assert grants(statements, "dynamodb") == {
        table_arn(mocks, "events"): {"dynamodb:Scan", "dynamodb:Query", "dynamodb:DescribeTable"},
        table_arn(mocks, "state"): {"dynamodb:DescribeTable"},
        table_arn(mocks, "state") + "-rebuild-*": {"dynamodb:DescribeTable"},
        checkpoints: {
            "dynamodb:GetItem",
            "dynamodb:BatchGetItem",
            "dynamodb:Query",
            "dynamodb:PutItem",
            "dynamodb:UpdateItem",
            "dynamodb:DeleteItem",
            "dynamodb:BatchWriteItem",
            "dynamodb:ConditionCheckItem",
            "dynamodb:DescribeTable",
        },
    }
    put = {"kinesis:PutRecord", "kinesis:PutRecords", "kinesis:ListShards", "kinesis:DescribeStreamSummary"}
    assert grants(statements, "kinesis") == {
        stream_arn(mocks, "playback"): put,
        f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/{EXTRA_TARGET}": put,
    }


def test_the_replayer_execution_role_pulls_its_image_and_writes_its_logs(deployed: Deployed) -> None:
    mocks = deployed.mocks
    statements = statements_by_role(mocks)[f"{PREFIX}-replayer-execution"]
    repository = mocks.one("aws:ecr/repository:Repository").arn
    log_group = mocks.named("aws:cloudwatch/logGroup:LogGroup", f"/ecs/{PREFIX}-replayer").arn
    assert grants(statements) == {
        "*": {"ecr:GetAuthorizationToken"},
        repository: {"ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage"},
        f"{log_group}:log-stream:*": {"logs:CreateLogStream", "logs:PutLogEvents"},
    }


def test_roles_trust_only_their_own_service(deployed: Deployed) -> None:
    mocks = deployed.mocks
    for role in mocks.of_type(ROLE):
        trust = json.loads(role.inputs["assumeRolePolicy"])
        [statement] = trust["Statement"]
        assert statement["Action"] == "sts:AssumeRole"
        principal = statement["Principal"]["Service"]
        name = role.outputs["name"]
        if name.endswith("-function"):
            assert principal == "lambda.amazonaws.com"
        elif name.startswith(f"{PREFIX}-replayer"):
            assert principal == "ecs-tasks.amazonaws.com"
        else:
            assert principal == "apigateway.amazonaws.com", name


def test_the_only_managed_policy_is_api_gateways_own_logging_role(deployed: Deployed) -> None:
    mocks = deployed.mocks
    [attachment] = mocks.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
    assert attachment.inputs["policyArn"] == f"arn:aws:iam::aws:{API_GATEWAY_LOGS_POLICY}"
    role = mocks.one(ROLE, lambda r: r.outputs["name"] == attachment.inputs["role"])
    assert json.loads(role.inputs["assumeRolePolicy"])["Statement"][0]["Principal"] == {
        "Service": "apigateway.amazonaws.com"
    }
    assert role.outputs["name"] not in statements_by_role(mocks)


def test_every_role_has_a_policy_and_every_policy_a_known_role(deployed: Deployed) -> None:
    mocks = deployed.mocks
    by_role = statements_by_role(mocks)
    role_names = {r.outputs["name"] for r in mocks.of_type(ROLE)}
    assert set(by_role) <= role_names
    with_inline = {f"{PREFIX}-{f.key}-function" for f in FUNCTIONS} | {
        f"{PREFIX}-replayer-task",
        f"{PREFIX}-replayer-execution",
    }
    assert set(by_role) == with_inline


def test_the_shadow_pattern_names_exactly_what_ops_rebuild_creates(deployed: Deployed) -> None:
    from fnmatch import fnmatchcase

    from ops.rebuild import new_rebuild_id, rebuild_id_from, shadow_name

    state = table_arn(deployed.mocks, "state")
    pattern = state + policy.REBUILD_SHADOW_SUFFIX
    table_prefix = state.rsplit("/", 1)[0] + "/"
    live = default_name(PREFIX, "state")
    for rebuild_id in (new_rebuild_id(), rebuild_id_from("nightly"), rebuild_id_from("rebuild-x")):
        assert fnmatchcase(table_prefix + shadow_name(live, rebuild_id), pattern)
    # ... and nothing else of the stack: not the live state table, not another table that starts alike
    assert not fnmatchcase(state, pattern)
    assert not fnmatchcase(table_arn(deployed.mocks, "events"), pattern)


def test_the_rules_catch_a_shadow_pattern_wider_than_the_state_tables_rebuilds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a program that lets the write function touch every table whose name starts with the state table's
    monkeypatch.setattr(policy, "REBUILD_SHADOW_SUFFIX", "*")
    found = violations(deploy().mocks)
    assert any(
        line.endswith(f"{default_name(PREFIX, 'state')}* is not one of the stack's own resources")
        for line in found
    )
