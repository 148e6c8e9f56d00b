"""The stack under Pulumi's mocks: every resource the issue lists exists and is wired as stated.

Each test runs the program afresh (tests/infra/harness.py) and asserts on the inputs each resource was
registered with, after every Output resolved.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from eventlog.resources import STREAMS, TABLES
from eventlog.settings import Settings, default_name
from eventlog.topology import FUNCTIONS, MAPPINGS, ROUTES
from infra.mappings import batching_window_seconds, mapping_name
from infra.replayer import CONTAINER
from tests.infra.harness import PREFIX, Deployed, deploy, stack_args
from tests.infra.mocks import ACCOUNT, REGION, AwsMocks, Recorded

TABLE = "aws:dynamodb/table:Table"
STREAM = "aws:kinesis/stream:Stream"
FUNCTION = "aws:lambda/function:Function"
MAPPING = "aws:lambda/eventSourceMapping:EventSourceMapping"
QUEUE = "aws:sqs/queue:Queue"
ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def default() -> Deployed:
    """The stack with every default (one run shared by the read-only tests below)."""
    return deploy()


def key_arn(mocks: AwsMocks) -> str:
    return mocks.one("aws:kms/key:Key").arn


def table(mocks: AwsMocks, key: str) -> Recorded:
    return mocks.named(TABLE, default_name(PREFIX, key))


def stream(mocks: AwsMocks, key: str) -> Recorded:
    return mocks.named(STREAM, default_name(PREFIX, key))


def function(mocks: AwsMocks, key: str) -> Recorded:
    return mocks.named(FUNCTION, f"{PREFIX}-{key}")


# -- tables ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", TABLES, ids=lambda s: s.key)
def test_every_table_has_the_shared_key_schema_and_is_encrypted_with_the_data_key(
    default: Deployed, spec: Any
) -> None:
    t = table(default.mocks, spec.key)
    assert t.inputs["hashKey"] == spec.partition_key.name
    assert t.inputs.get("rangeKey") == (spec.sort_key.name if spec.sort_key else None)
    expected_attributes = [{"name": k.name, "type": k.type} for k in (spec.partition_key, spec.sort_key) if k]
    assert t.inputs["attributes"] == expected_attributes
    assert t.inputs["billingMode"] == "PAY_PER_REQUEST"
    assert t.inputs["serverSideEncryption"] == {"enabled": True, "kmsKeyArn": key_arn(default.mocks)}
    if spec.ttl_attribute:
        assert t.inputs["ttl"] == {"attributeName": spec.ttl_attribute, "enabled": True}
    else:
        assert "ttl" not in t.inputs


def test_the_events_table_is_the_protected_system_of_record(default: Deployed) -> None:
    events = table(default.mocks, "events")
    assert events.inputs["streamEnabled"] is True
    assert events.inputs["streamViewType"] == "NEW_IMAGE"
    assert events.inputs["pointInTimeRecovery"] == {"enabled": True}
    assert events.inputs["deletionProtectionEnabled"] is True
    assert events.options["retainOnDelete"] is True
    # ... and its key stays with it: a kept table is unreadable without the key that encrypts it.
    assert default.mocks.one("aws:kms/key:Key").options["retainOnDelete"] is True
    assert default.mocks.one("aws:kms/key:Key").inputs["enableKeyRotation"] is True
    state = table(default.mocks, "state")
    assert state.options["retainOnDelete"] is False
    assert state.inputs["deletionProtectionEnabled"] is False


def test_keep_event_log_false_lets_destroy_remove_everything() -> None:
    mocks = deploy(stack_args(keep_event_log=False)).mocks
    events = table(mocks, "events")
    assert events.options["retainOnDelete"] is False
    assert events.inputs["deletionProtectionEnabled"] is False
    assert events.inputs["pointInTimeRecovery"] == {"enabled": True}
    assert mocks.one("aws:kms/key:Key").options["retainOnDelete"] is False


# -- streams --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", STREAMS, ids=lambda s: s.key)
def test_streams_are_encrypted_provisioned_by_default(default: Deployed, spec: Any) -> None:
    s = stream(default.mocks, spec.key)
    assert s.inputs["encryptionType"] == "KMS"
    assert s.inputs["kmsKeyId"] == key_arn(default.mocks)
    assert s.inputs["streamModeDetails"] == {"streamMode": "PROVISIONED"}
    assert s.inputs["shardCount"] == 1
    assert s.inputs["retentionPeriod"] == spec.retention_hours


def test_stream_mode_shards_and_retention_come_from_config() -> None:
    mocks = deploy(stack_args(shard_counts={"ingest": 4}, stream_retention_hours={"ingest": 240})).mocks
    assert stream(mocks, "ingest").inputs["shardCount"] == 4
    assert stream(mocks, "playback").inputs["shardCount"] == 1
    assert stream(mocks, "ingest").inputs["retentionPeriod"] == 240
    assert stream(mocks, "playback").inputs["retentionPeriod"] == 24
    on_demand = deploy(stack_args(stream_mode="ON_DEMAND")).mocks
    for spec in STREAMS:
        assert stream(on_demand, spec.key).inputs["streamModeDetails"] == {"streamMode": "ON_DEMAND"}
        assert "shardCount" not in stream(on_demand, spec.key).inputs


# -- functions ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", FUNCTIONS, ids=lambda s: s.key)
def test_each_function_runs_its_handler_on_arm64_with_the_stack_settings(
    default: Deployed, spec: Any
) -> None:
    fn = function(default.mocks, spec.key)
    assert fn.inputs["handler"] == spec.handler
    assert fn.inputs["runtime"] == "python3.13"
    assert fn.inputs["architectures"] == ["arm64"]
    assert fn.inputs["memorySize"] == spec.memory_mb
    assert fn.inputs["timeout"] == spec.timeout_s
    assert fn.inputs["tracingConfig"] == {"mode": "Active"}
    env = fn.inputs["environment"]["variables"]
    # The same variables the devstack sets, naming this stack's tables and streams; Lambda sets the region.
    expected = Settings(prefix=PREFIX).environment()
    del expected["AWS_REGION"]
    assert {k: v for k, v in env.items() if k in expected or k.startswith("AWS_")} == expected
    for tspec in TABLES:
        assert env[tspec.setting] == table(default.mocks, tspec.key).outputs["name"]
    for sspec in STREAMS:
        assert env[sspec.setting] == stream(default.mocks, sspec.key).outputs["name"]
    assert "AWS_ENDPOINT_URL" not in env
    assert env["POWERTOOLS_SERVICE_NAME"] == "eventsourcing"
    assert env["POWERTOOLS_METRICS_NAMESPACE"] == "EventSourcing"
    assert env["POWERTOOLS_LOG_LEVEL"] == "INFO"
    # Logs go to a group of the function's own, with a retention.
    group = default.mocks.named("aws:cloudwatch/logGroup:LogGroup", f"/aws/lambda/{PREFIX}-{spec.key}")
    assert group.inputs["retentionInDays"] == 30
    assert fn.inputs["loggingConfig"] == {"logFormat": "JSON", "logGroup": group.outputs["name"]}
    assert fn.inputs["role"] == default.mocks.named("aws:iam/role:Role", f"{PREFIX}-{spec.key}-function").arn


def test_reserved_concurrency_caps_the_playback_function_only(default: Deployed) -> None:
    for spec in FUNCTIONS:
        expected = 1 if spec.key == "playback" else -1
        assert function(default.mocks, spec.key).inputs["reservedConcurrentExecutions"] == expected
    mocks = deploy(stack_args(reserved_concurrency={"pump": 5})).mocks
    assert function(mocks, "pump").inputs["reservedConcurrentExecutions"] == 5
    assert function(mocks, "playback").inputs["reservedConcurrentExecutions"] == -1


def test_runtime_log_level_and_tracing_come_from_config() -> None:
    mocks = deploy(stack_args(lambda_runtime="python3.14", log_level="DEBUG", tracing=False)).mocks
    fn = function(mocks, "load")
    assert fn.inputs["runtime"] == "python3.14"
    assert fn.inputs["environment"]["variables"]["POWERTOOLS_LOG_LEVEL"] == "DEBUG"
    assert fn.inputs["tracingConfig"] == {"mode": "PassThrough"}


def test_the_playback_function_knows_how_to_start_the_replayer_task(default: Deployed) -> None:
    env = function(default.mocks, "playback").inputs["environment"]["variables"]
    cluster = default.mocks.one("aws:ecs/cluster:Cluster")
    task = default.mocks.one("aws:ecs/taskDefinition:TaskDefinition")
    group = default.mocks.one("aws:ec2/securityGroup:SecurityGroup")
    assert env["ES_REPLAYER_CLUSTER"] == cluster.arn
    assert env["ES_REPLAYER_TASK_DEFINITION"] == task.outputs["arn"]
    assert env["ES_REPLAYER_CONTAINER"] == CONTAINER
    assert env["ES_REPLAYER_SUBNETS"] == "subnet-0aaa,subnet-0bbb,subnet-0ccc"
    assert env["ES_REPLAYER_SECURITY_GROUPS"] == group.id
    assert env["ES_REPLAYER_ASSIGN_PUBLIC_IP"] == "ENABLED"
    for spec in FUNCTIONS:
        if spec.key != "playback":
            others = function(default.mocks, spec.key).inputs["environment"]["variables"]
            assert not any(k.startswith("ES_REPLAYER_") for k in others)


# -- event source mappings ------------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", MAPPINGS, ids=mapping_name)
def test_each_mapping_feeds_its_function_from_its_source_with_a_dead_letter_queue(
    default: Deployed, spec: Any
) -> None:
    mocks = default.mocks
    fn = function(mocks, spec.function)
    candidates = [m for m in mocks.of_type(MAPPING) if m.inputs["functionName"] == fn.arn]
    source = (
        stream(mocks, spec.source).arn
        if spec.source_kind == "kinesis"
        else table(mocks, spec.source).outputs["streamArn"]
    )
    [m] = [m for m in candidates if m.inputs["eventSourceArn"] == source]
    queue = mocks.named(QUEUE, spec.dead_letter_queue(PREFIX))
    assert m.inputs["functionResponseTypes"] == ["ReportBatchItemFailures"]
    assert m.inputs["destinationConfig"] == {"onFailure": {"destinationArn": queue.arn}}
    assert m.inputs["batchSize"] == spec.batch_size
    assert m.inputs["maximumBatchingWindowInSeconds"] == batching_window_seconds(spec)
    assert m.inputs["bisectBatchOnFunctionError"] is spec.bisect_on_error
    assert m.inputs["maximumRetryAttempts"] == spec.max_retry_attempts
    assert m.inputs["maximumRecordAgeInSeconds"] == spec.max_record_age_s
    assert m.inputs["parallelizationFactor"] == spec.parallelization_factor
    assert m.inputs["startingPosition"] == spec.starting_position
    assert queue.inputs["sqsManagedSseEnabled"] is True
    # Lambda checks the role can read the source when the mapping is created: the grant comes first.
    grant = mocks.one(
        "aws:iam/rolePolicy:RolePolicy", lambda r: r.name.endswith(f"{mapping_name(spec)}-grant")
    )
    assert any(dep.endswith(f"::{grant.name}") for dep in m.options["dependencies"])


def test_every_mapping_in_the_topology_is_deployed_and_nothing_else(default: Deployed) -> None:
    assert len(default.mocks.of_type(MAPPING)) == len(MAPPINGS)
    assert len(default.mocks.of_type(QUEUE)) == len(MAPPINGS)


def test_retries_record_age_and_parallelization_come_from_config() -> None:
    mocks = deploy(
        stack_args(
            parallelization_factors={"pump": 4},
            max_retry_attempts={"pump": 3},
            max_record_age_seconds={"pump": 3600, "service": 600},
        )
    ).mocks
    pump = function(mocks, "pump")
    [m] = [m for m in mocks.of_type(MAPPING) if m.inputs["functionName"] == pump.arn]
    assert m.inputs["parallelizationFactor"] == 4
    assert m.inputs["maximumRetryAttempts"] == 3
    assert m.inputs["maximumRecordAgeInSeconds"] == 3600
    # Each function's own setting: the service's mappings take theirs, the write function's keep the topology's.
    by_function = {f: function(mocks, f).arn for f in ("write", "service")}
    for spec in MAPPINGS:
        if spec.function not in by_function:
            continue
        [m] = [
            m
            for m in mocks.of_type(MAPPING)
            if m.inputs["functionName"] == by_function[spec.function]
            and ("playback" in m.inputs["eventSourceArn"]) == (spec.source == "playback")
        ]
        assert m.inputs["maximumRetryAttempts"] == spec.max_retry_attempts
        assert m.inputs["maximumRecordAgeInSeconds"] == (
            600 if spec.function == "service" else spec.max_record_age_s
        )


def test_sub_second_batching_windows_round_to_what_lambda_accepts() -> None:
    from dataclasses import replace

    base = MAPPINGS[0]
    assert batching_window_seconds(replace(base, batching_window_s=0.2)) == 0
    assert batching_window_seconds(replace(base, batching_window_s=0.5)) == 1
    assert batching_window_seconds(replace(base, batching_window_s=5)) == 5


# -- API ------------------------------------------------------------------------------------------------------


def api_body(mocks: AwsMocks) -> dict[str, Any]:
    return json.loads(mocks.one("aws:apigateway/restApi:RestApi").inputs["body"])


def test_the_rest_api_serves_every_route_through_its_function(default: Deployed) -> None:
    body = api_body(default.mocks)
    served = {(method.upper(), path) for path, ops in body["paths"].items() for method in ops}
    assert served == {(r.method, r.resource) for r in ROUTES}
    for route in ROUTES:
        operation = body["paths"][route.resource][route.method.lower()]
        integration = operation["x-amazon-apigateway-integration"]
        assert integration["type"] == "aws_proxy"
        assert integration["httpMethod"] == "POST"
        assert integration["uri"] == function(default.mocks, route.function).outputs["invokeArn"]
        assert operation["operationId"] == route.operation_id


def test_the_api_uses_iam_authorization_by_default(default: Deployed) -> None:
    body = api_body(default.mocks)
    scheme = body["components"]["securitySchemes"]["sigv4"]
    assert scheme["x-amazon-apigateway-authtype"] == "awsSigv4"
    for ops in body["paths"].values():
        for operation in ops.values():
            assert operation["security"] == [{"sigv4": []}]


def test_a_cognito_authorizer_can_replace_iam() -> None:
    pool = f"arn:aws:cognito-idp:{REGION}:{ACCOUNT}:userpool/{REGION}_abc"
    body = api_body(deploy(stack_args(api_authorization="cognito", cognito_user_pool_arns=[pool])).mocks)
    scheme = body["components"]["securitySchemes"]["cognito"]
    assert scheme["x-amazon-apigateway-authorizer"] == {"type": "cognito_user_pools", "providerARNs": [pool]}
    assert all(op["security"] == [{"cognito": []}] for ops in body["paths"].values() for op in ops.values())
    open_body = api_body(deploy(stack_args(api_authorization="none")).mocks)
    assert "components" not in open_body
    assert all("security" not in op for ops in open_body["paths"].values() for op in ops.values())


def test_api_gateway_may_invoke_each_function_for_its_routes_only(default: Deployed) -> None:
    mocks = default.mocks
    execution_arn = mocks.one("aws:apigateway/restApi:RestApi").outputs["executionArn"]
    permissions = mocks.of_type("aws:lambda/permission:Permission")
    assert len(permissions) == len(ROUTES)
    got = {(p.inputs["function"], p.inputs["sourceArn"]) for p in permissions}
    expected = {
        (f"{PREFIX}-load", f"{execution_arn}/*/POST/aggregates/*/events"),
        (f"{PREFIX}-load", f"{execution_arn}/*/POST/aggregates/*/events/*/reverse"),
        (f"{PREFIX}-query", f"{execution_arn}/*/GET/aggregates/*"),
        (f"{PREFIX}-query", f"{execution_arn}/*/GET/aggregates/*/events"),
        (f"{PREFIX}-query", f"{execution_arn}/*/GET/events/*"),
    }
    assert got == expected
    assert all(p.inputs["principal"] == "apigateway.amazonaws.com" for p in permissions)


def test_the_stage_throttles_logs_access_and_traces(default: Deployed) -> None:
    mocks = default.mocks
    stage = mocks.one("aws:apigateway/stage:Stage")
    logs = mocks.named("aws:cloudwatch/logGroup:LogGroup", f"/aws/apigateway/{PREFIX}-api")
    assert stage.inputs["accessLogSettings"]["destinationArn"] == logs.arn
    assert "$context.requestId" in stage.inputs["accessLogSettings"]["format"]
    assert stage.inputs["xrayTracingEnabled"] is True
    settings = mocks.one("aws:apigateway/methodSettings:MethodSettings").inputs
    assert settings["methodPath"] == "*/*"
    assert settings["settings"]["throttlingRateLimit"] == 100
    assert settings["settings"]["throttlingBurstLimit"] == 200
    assert settings["settings"]["metricsEnabled"] is True
    # Access logs need the account's CloudWatch role in place first.
    account = mocks.one("aws:apigateway/account:Account")
    assert any(dep.endswith(f"::{account.name}") for dep in stage.options["dependencies"])
    # The account-wide setting outlives the stack, so the role it names must too.
    role = mocks.one("aws:iam/role:Role", lambda r: r.arn == account.inputs["cloudwatchRoleArn"])
    assert role.options["retainOnDelete"] is True
    assert account.options["retainOnDelete"] is True
    assert default.outputs["apiUrl"] == stage.outputs["invokeUrl"]


def test_the_account_role_can_be_left_to_the_account() -> None:
    mocks = deploy(stack_args(manage_api_gateway_account=False, api_throttle_rate_limit=5.0)).mocks
    assert mocks.of_type("aws:apigateway/account:Account") == []
    assert (
        mocks.one("aws:apigateway/methodSettings:MethodSettings").inputs["settings"]["throttlingRateLimit"]
        == 5
    )


def test_the_deployed_routes_are_the_ones_the_openapi_document_describes(default: Deployed) -> None:
    document_path = REPO_ROOT / "api" / "openapi.yaml"
    if not document_path.exists():
        pytest.skip("api/openapi.yaml is not written yet")
    document = yaml.safe_load(document_path.read_text(encoding="utf-8"))
    methods = {"get", "post", "put", "delete", "patch"}
    described = {(m.upper(), path) for path, ops in document["paths"].items() for m in ops if m in methods}
    body = api_body(default.mocks)
    deployed = {(m.upper(), path) for path, ops in body["paths"].items() for m in ops}
    assert deployed == described


def test_a_new_deployment_follows_a_change_of_routes(default: Deployed) -> None:
    iam = default.mocks.one("aws:apigateway/deployment:Deployment").inputs["triggers"]["body"]
    cognito = deploy(
        stack_args(api_authorization="cognito", cognito_user_pool_arns=["arn:aws:cognito-idp:x:1:userpool/p"])
    ).mocks.one("aws:apigateway/deployment:Deployment")
    assert cognito.inputs["triggers"]["body"] != iam


# -- replayer -------------------------------------------------------------------------------------------------


def test_the_replayer_image_is_built_from_its_dockerfile_and_pushed_to_the_stack_repository(
    default: Deployed,
) -> None:
    mocks = default.mocks
    repository = mocks.one("aws:ecr/repository:Repository")
    image = mocks.one("docker-build:index:Image")
    assert image.inputs["dockerfile"] == {"location": str(REPO_ROOT / "replayer" / "Dockerfile")}
    assert image.inputs["context"] == {"location": str(REPO_ROOT)}
    assert image.inputs["platforms"] == ["linux/arm64"]
    assert image.inputs["push"] is True
    assert image.inputs["tags"] == [f"{repository.outputs['repositoryUrl']}:latest"]
    assert image.inputs["registries"][0]["address"] == repository.outputs["repositoryUrl"]
    assert repository.inputs["imageScanningConfiguration"] == {"scanOnPush": True}
    [container] = json.loads(
        mocks.one("aws:ecs/taskDefinition:TaskDefinition").inputs["containerDefinitions"]
    )
    assert container["image"] == image.outputs["ref"]  # digest-pinned: a new image, a new revision


def test_the_task_definition_runs_on_fargate_with_its_own_roles_and_the_stack_settings(
    default: Deployed,
) -> None:
    mocks = default.mocks
    task = mocks.one("aws:ecs/taskDefinition:TaskDefinition").inputs
    assert task["requiresCompatibilities"] == ["FARGATE"]
    assert task["networkMode"] == "awsvpc"
    assert (task["cpu"], task["memory"]) == ("1024", "2048")
    assert task["runtimePlatform"] == {"operatingSystemFamily": "LINUX", "cpuArchitecture": "ARM64"}
    assert task["taskRoleArn"] == mocks.named("aws:iam/role:Role", f"{PREFIX}-replayer-task").arn
    assert task["executionRoleArn"] == mocks.named("aws:iam/role:Role", f"{PREFIX}-replayer-execution").arn
    [container] = json.loads(task["containerDefinitions"])
    assert container["name"] == CONTAINER
    env = {e["name"]: e["value"] for e in container["environment"]}
    expected = Settings(prefix=PREFIX, region=REGION).environment()
    assert env == expected
    logs = container["logConfiguration"]["options"]
    assert logs["awslogs-group"] == f"/ecs/{PREFIX}-replayer"
    assert logs["awslogs-region"] == REGION
    cluster = mocks.one("aws:ecs/cluster:Cluster").inputs
    assert cluster["settings"] == [{"name": "containerInsights", "value": "enabled"}]


def test_a_prebuilt_image_and_own_network_skip_the_build_and_the_security_group() -> None:
    image = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/mine:1.0"
    deployed = deploy(
        stack_args(
            replayer_image=image,
            replayer_subnet_ids=["subnet-private"],
            replayer_security_group_ids=["sg-mine"],
            replayer_assign_public_ip=False,
            replayer_architecture="X86_64",
        )
    )
    mocks = deployed.mocks
    assert mocks.of_type("docker-build:index:Image") == []
    assert mocks.of_type("aws:ec2/securityGroup:SecurityGroup") == []
    task = mocks.one("aws:ecs/taskDefinition:TaskDefinition").inputs
    assert json.loads(task["containerDefinitions"])[0]["image"] == image
    assert task["runtimePlatform"]["cpuArchitecture"] == "X86_64"
    env = function(mocks, "playback").inputs["environment"]["variables"]
    assert env["ES_REPLAYER_SUBNETS"] == "subnet-private"
    assert env["ES_REPLAYER_SECURITY_GROUPS"] == "sg-mine"
    assert env["ES_REPLAYER_ASSIGN_PUBLIC_IP"] == "DISABLED"
    assert "subnets=[subnet-private]" in deployed.outputs["replayerRunTaskCommand"]


def test_the_default_network_is_the_default_vpc_with_an_egress_only_group(default: Deployed) -> None:
    group = default.mocks.one("aws:ec2/securityGroup:SecurityGroup").inputs
    assert group["vpcId"] == "vpc-0default"
    assert group.get("ingress", []) == []
    assert [(e["protocol"], e["fromPort"], e["toPort"]) for e in group["egress"]] == [("tcp", 443, 443)]
    filters = next(args for token, args in default.mocks.calls if token == "aws:ec2/getSubnets:getSubnets")
    assert {"name": "vpc-id", "values": ["vpc-0default"]} in filters["filters"]


# -- alarms ---------------------------------------------------------------------------------------------------


def test_alarms_cover_iterator_age_dead_letters_throttles_and_errors(default: Deployed) -> None:
    mocks = default.mocks
    topic = mocks.one("aws:sns/topic:Topic")
    assert topic.inputs["kmsMasterKeyId"] == key_arn(mocks)
    alarms = {a.inputs["name"]: a.inputs for a in mocks.of_type(ALARM)}
    for alarm in alarms.values():
        assert alarm["alarmActions"] == [topic.arn]
        assert alarm["okActions"] == [topic.arn]
    for spec in FUNCTIONS:
        name = f"{PREFIX}-{spec.key}"
        assert alarms[f"{name}-errors"]["dimensions"] == {"FunctionName": name}
        assert alarms[f"{name}-errors"]["metricName"] == "Errors"
        assert alarms[f"{name}-throttles"]["metricName"] == "Throttles"
    for consumer in {m.function for m in MAPPINGS}:
        alarm = alarms[f"{PREFIX}-{consumer}-iterator-age"]
        assert (alarm["metricName"], alarm["statistic"], alarm["threshold"]) == (
            "IteratorAge",
            "Maximum",
            60000,
        )
    for spec in MAPPINGS:
        queue = mocks.named(QUEUE, f"{PREFIX}-{mapping_name(spec)}-failures")
        alarm = alarms[f"{PREFIX}-{mapping_name(spec)}-dead-letters"]
        assert alarm["dimensions"] == {"QueueName": queue.outputs["name"]}
        assert alarm["metricName"] == "ApproximateNumberOfMessagesVisible"
    assert alarms[f"{PREFIX}-ingest-write-throttles"]["dimensions"] == {"StreamName": f"{PREFIX}-ingest"}
    assert alarms[f"{PREFIX}-events-write-throttles"]["dimensions"] == {"TableName": f"{PREFIX}-events"}
    assert alarms[f"{PREFIX}-api-5xx"]["dimensions"] == {"ApiName": f"{PREFIX}-api", "Stage": "v1"}
    assert mocks.of_type("aws:sns/topicSubscription:TopicSubscription") == []


def test_an_alarm_email_subscribes_to_the_topic() -> None:
    mocks = deploy(stack_args(alarm_email="ops@example.com", iterator_age_alarm_ms=5000)).mocks
    subscription = mocks.one("aws:sns/topicSubscription:TopicSubscription").inputs
    assert (subscription["protocol"], subscription["endpoint"]) == ("email", "ops@example.com")
    assert subscription["topic"] == mocks.one("aws:sns/topic:Topic").arn
    alarm = mocks.named(ALARM, f"{PREFIX}-pump-iterator-age")
    assert alarm.inputs["threshold"] == 5000


# -- outputs --------------------------------------------------------------------------------------------------


def test_outputs_name_the_api_tables_streams_and_the_replay_command(default: Deployed) -> None:
    out = default.outputs
    assert out["tables"] == {t.key: default_name(PREFIX, t.key) for t in TABLES}
    assert out["streams"] == {s.key: default_name(PREFIX, s.key) for s in STREAMS}
    assert out["apiUrl"].startswith("https://")
    assert out["apiUrl"].endswith("/v1")
    argv = shlex.split(out["replayerRunTaskCommand"])
    assert argv[:3] == ["aws", "ecs", "run-task"]
    flags = dict(zip(argv[3::2], argv[4::2], strict=False))
    assert flags["--cluster"] == f"{PREFIX}-replayer"
    assert (
        flags["--task-definition"]
        == default.mocks.one("aws:ecs/taskDefinition:TaskDefinition").outputs["arn"]
    )
    assert flags["--region"] == REGION
    overrides = json.loads(flags["--overrides"])
    [container] = overrides["containerOverrides"]
    assert container["name"] == CONTAINER
    assert "--mode" in container["command"]
    assert "assignPublicIp=ENABLED" in flags["--network-configuration"]
    invoke = shlex.split(out["playbackInvokeCommand"].split(" && ")[0])
    assert invoke[invoke.index("--function-name") + 1] == f"{PREFIX}-playback"
    json.loads(invoke[invoke.index("--payload") + 1])


def test_physical_names_all_start_with_the_prefix(default: Deployed) -> None:
    named = [
        r.outputs["name"]
        for r in default.mocks
        if r.type.startswith("aws:") and "name" in r.inputs and r.type != "aws:iam/rolePolicy:RolePolicy"
    ]
    assert named
    for name in named:
        assert (
            name.removeprefix("/aws/lambda/")
            .removeprefix("/aws/apigateway/")
            .removeprefix("/ecs/")
            .removeprefix("alias/")
            .startswith(PREFIX)
        ), name


def test_the_playback_stream_feeds_the_write_function_with_its_queue_grant_and_alarm() -> None:
    # Given the topology: the write function takes live events (table stream) and replayed ones (playback)
    mocks = deploy().mocks
    write = function(mocks, "write")
    sources = {
        m.inputs["eventSourceArn"] for m in mocks.of_type(MAPPING) if m.inputs["functionName"] == write.arn
    }
    assert sources == {table(mocks, "events").outputs["streamArn"], stream(mocks, "playback").arn}
    queue = mocks.named(QUEUE, f"{PREFIX}-playback-to-write-failures")
    [m] = [
        m
        for m in mocks.of_type(MAPPING)
        if m.inputs["eventSourceArn"] == stream(mocks, "playback").arn
        and m.inputs["functionName"] == write.arn
    ]
    assert m.inputs["destinationConfig"] == {"onFailure": {"destinationArn": queue.arn}}
    assert m.inputs["batchSize"] == 100
    assert m.inputs["bisectBatchOnFunctionError"] is True
    grant = json.loads(
        mocks.one(
            "aws:iam/rolePolicy:RolePolicy", lambda r: r.name.endswith("playback-to-write-grant")
        ).inputs["policy"]
    )
    read = next(st for st in grant["Statement"] if st.get("Sid") == "ReadSource")
    assert read["Resource"] == [stream(mocks, "playback").arn]
    assert "kinesis:GetRecords" in read["Action"]
    assert mocks.named(ALARM, f"{PREFIX}-playback-to-write-dead-letters")


def dockerfile_sources(text: str) -> list[str]:
    """What a Dockerfile's COPY/ADD lines take from the build context (not from another stage)."""
    text = text.replace("\\\n", " ")
    sources = []
    for line in text.splitlines():
        words = line.split()
        if not words or words[0].upper() not in ("COPY", "ADD"):
            continue
        if any(w.startswith("--from") for w in words[1:]):
            continue
        paths = [w for w in words[1:] if not w.startswith("--")]
        sources.extend(paths[:-1])
    return sources


def missing_from_context(text: str, context: Path) -> list[str]:
    return [src for src in dockerfile_sources(text) if not list(context.glob(src.lstrip("/")))]


def test_the_context_check_sees_a_copy_the_context_lacks(tmp_path: Path) -> None:
    (tmp_path / "eventlog").mkdir()
    (tmp_path / "requirements.lock").write_text("")
    text = (
        "FROM python:3.12-slim AS build\n"
        "COPY --chown=app requirements.lock /app/\n"
        "COPY eventlog/ \\\n  replayer/ /app/\n"
        "COPY --from=build /app /app\n"
    )
    assert dockerfile_sources(text) == ["requirements.lock", "eventlog/", "replayer/"]
    assert missing_from_context(text, tmp_path) == ["replayer/"]


def dockerignore_excludes(rules: list[str], path: str) -> bool:
    """Whether Docker leaves `path` (relative, with /) out of the context: the last matching rule decides, and
    a rule matches a path when it matches the path or one of its parent folders."""

    def matches(pattern: str, candidate: str) -> bool:
        regex = (
            re.escape(pattern.strip("/"))
            .replace(r"\*\*", ".*")
            .replace(r"\*", "[^/]*")
            .replace(r"\?", "[^/]")
        )
        parts = candidate.split("/")
        return any(re.fullmatch(regex, "/".join(parts[:i])) for i in range(1, len(parts) + 1))

    excluded = False
    for rule in rules:
        negated = rule.startswith("!")
        if matches(rule.lstrip("!"), path):
            excluded = not negated
    return excluded


def test_the_dockerignore_rules_are_read_as_docker_reads_them() -> None:
    rules = ["*", "!eventlog/*.py", "!replayer/requirements.txt"]
    assert dockerignore_excludes(rules, ".venv/lib/x.py")
    assert dockerignore_excludes(rules, "build/lambda/b/orjson.so")
    assert not dockerignore_excludes(rules, "eventlog/codec.py")
    assert dockerignore_excludes(rules, "eventlog/sub/codec.py")
    assert not dockerignore_excludes(rules, "replayer/requirements.txt")
    assert dockerignore_excludes(rules, "replayer/Dockerfile")


def test_the_build_context_holds_what_the_replayer_dockerfile_copies() -> None:
    # The program builds replayer/Dockerfile with the repo root as its context (the image needs eventlog/).
    dockerfile = REPO_ROOT / "replayer" / "Dockerfile"
    if not dockerfile.exists():
        pytest.skip("replayer/Dockerfile is not written yet")
    text = dockerfile.read_text(encoding="utf-8")
    assert dockerfile_sources(text), "the Dockerfile copies nothing from the context"
    assert missing_from_context(text, REPO_ROOT) == []
    # ... and .dockerignore lets every file it copies through, and keeps the rest of the repo out.
    rules = [
        line.strip()
        for line in (REPO_ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    copied = [
        p.relative_to(REPO_ROOT).as_posix()
        for src in dockerfile_sources(text)
        for match in REPO_ROOT.glob(src.lstrip("/"))
        for p in ([match] if match.is_file() else match.rglob("*"))
        if p.is_file()
    ]
    assert copied
    assert [p for p in copied if dockerignore_excludes(rules, p)] == []
    for outside in ("build/lambda", ".venv/bin/python", ".git/HEAD", "tests/conftest.py", "handlers/load.py"):
        assert dockerignore_excludes(rules, outside), outside


def test_the_example_commands_in_the_outputs_are_dry_runs_the_replayer_accepts(default: Deployed) -> None:
    from handlers.playback import PlaybackRequest
    from replayer.cli import build_config, parse_options

    argv = shlex.split(default.outputs["replayerRunTaskCommand"])
    command = json.loads(argv[argv.index("--overrides") + 1])["containerOverrides"][0]["command"]
    _, config = build_config(parse_options(command, {}), Settings(prefix=PREFIX))
    assert config.dry_run is True
    invoke = shlex.split(default.outputs["playbackInvokeCommand"].split(" && ")[0])
    event = json.loads(invoke[invoke.index("--payload") + 1])
    request = PlaybackRequest.from_event(event, Settings(prefix=PREFIX))
    assert request.config.dry_run is True


def test_the_service_function_gets_its_external_systems_and_the_gateway_recordings_are_kept() -> None:
    mocks = deploy(
        stack_args(
            exchange_rates_url="https://rates.example.com/v1",
            ledger_export_url="https://ledger.example.com",
            gateway_missing="skip",
        )
    ).mocks
    env = function(mocks, "service").inputs["environment"]["variables"]
    assert env["ES_EXCHANGE_RATES_URL"] == "https://rates.example.com/v1"
    assert env["ES_LEDGER_EXPORT_URL"] == "https://ledger.example.com"
    assert env["ES_GATEWAY_MISSING"] == "skip"
    assert env["ES_GATEWAY_RECORDINGS_TABLE"] == table(mocks, "gateway_recordings").outputs["name"]
    for other in ("write", "query", "playback"):
        assert "ES_LEDGER_EXPORT_URL" not in function(mocks, other).inputs["environment"]["variables"]
    # It consumes live (table stream) and replayed (playback) events, like the write function.
    service = function(mocks, "service")
    sources = {
        m.inputs["eventSourceArn"] for m in mocks.of_type(MAPPING) if m.inputs["functionName"] == service.arn
    }
    assert sources == {table(mocks, "events").outputs["streamArn"], stream(mocks, "playback").arn}
    # What external systems were told cannot be rebuilt from the log: kept with it.
    recordings = table(mocks, "gateway_recordings")
    assert recordings.inputs["deletionProtectionEnabled"] is True
    assert recordings.options["retainOnDelete"] is True
