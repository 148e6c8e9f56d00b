"""The Lambda functions: one per FunctionSpec in eventlog.topology, each with a role of its own.

A role may do what its FunctionSpec says and nothing else: read (GetItem, BatchGetItem, Query) the tables in
`reads_tables`, write the tables in `writes_tables`, put to the streams in `puts_streams`, use the data key
only through DynamoDB and Kinesis, and write to its own log group. What feeds a function (its event source
mapping) is granted by infra/mappings.py; starting the replayer task, by infra/replayer.py through
`extra_statements`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from eventlog.topology import FUNCTIONS, FunctionSpec
from infra import policy

# The playback function runs the replayer in-process for small replays: it scans the events table, and
# sizes the scan from DescribeTable. No other function scans.
SCANS: Mapping[str, tuple[str, ...]] = {"playback": ("events",)}
DESCRIBES: Mapping[str, tuple[str, ...]] = {"playback": ("events", "replay_checkpoints", "state")}
# A rebuild's events go to its shadow state table (`<state table>-rebuild-<id>`, made by `python -m ops
# rebuild`): the write function reads and writes those as it does the state table; the playback function
# checks that a replay's --state-table exists before it puts anything (DescribeTable).
SHADOW_ACCESS: Mapping[str, tuple[str, ...]] = {"write": ("state",)}
SHADOW_DESCRIBES: Mapping[str, tuple[str, ...]] = {"playback": ("state",)}


@dataclass
class FunctionsArgs:
    prefix: str
    code: pulumi.Archive
    runtime: str
    tables: Mapping[str, aws.dynamodb.Table]
    streams: Mapping[str, aws.kinesis.Stream]
    key_arn: pulumi.Input[str]
    region: pulumi.Input[str]
    # Variables every function gets (table and stream names, Powertools settings).
    environment: Mapping[str, pulumi.Input[str]]
    log_retention_days: int = 30
    reserved_concurrency: Mapping[str, int] = field(default_factory=dict)
    tracing: bool = True
    architecture: str = "arm64"
    # Function key -> more variables / more statements (the playback function and the replayer task).
    extra_environment: Mapping[str, Mapping[str, pulumi.Input[str]]] = field(default_factory=dict)
    extra_statements: Mapping[str, Sequence[policy.Statement]] = field(default_factory=dict)


class Functions(pulumi.ComponentResource):
    """arm64 functions on the chosen Python runtime, one shared code bundle, JSON logs to a log group with
    a retention, X-Ray tracing, reserved concurrency where configured."""

    functions: dict[str, aws.lambda_.Function]
    roles: dict[str, aws.iam.Role]
    log_groups: dict[str, aws.cloudwatch.LogGroup]

    def __init__(self, name: str, args: FunctionsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("eventsourcing:infra:Functions", name, None, opts)
        self.functions, self.roles, self.log_groups = {}, {}, {}
        for spec in FUNCTIONS:
            self._function(name, spec, args)
        self.register_outputs({key: fn.name for key, fn in self.functions.items()})

    def _function(self, name: str, spec: FunctionSpec, args: FunctionsArgs) -> None:
        child = pulumi.ResourceOptions(parent=self)
        function_name = f"{args.prefix}-{spec.key}"
        log_group = aws.cloudwatch.LogGroup(
            f"{name}-{spec.key}-logs",
            name=f"/aws/lambda/{function_name}",
            retention_in_days=args.log_retention_days,
            opts=child,
        )
        role = aws.iam.Role(
            f"{name}-{spec.key}-role",
            name=f"{function_name}-function",
            description=f"{function_name}: {spec.description}"[:1000],
            assume_role_policy=policy.assume_role_policy("lambda.amazonaws.com"),
            opts=child,
        )
        access = aws.iam.RolePolicy(
            f"{name}-{spec.key}-access",
            name="access",
            role=role.id,
            policy=policy.document(self._statements(spec, args, log_group)),
            opts=child,
        )
        environment = {**args.environment, **args.extra_environment.get(spec.key, {})}
        self.functions[spec.key] = aws.lambda_.Function(
            f"{name}-{spec.key}",
            name=function_name,
            description=spec.description[:256],
            role=role.arn,
            runtime=args.runtime,
            architectures=[args.architecture],
            handler=spec.handler,
            code=args.code,
            memory_size=spec.memory_mb,
            timeout=spec.timeout_s,
            environment=aws.lambda_.FunctionEnvironmentArgs(variables=environment),
            logging_config=aws.lambda_.FunctionLoggingConfigArgs(log_format="JSON", log_group=log_group.name),
            tracing_config=aws.lambda_.FunctionTracingConfigArgs(
                mode="Active" if args.tracing else "PassThrough"
            ),
            reserved_concurrent_executions=args.reserved_concurrency.get(spec.key, -1),
            # The log group first (or Lambda makes one without a retention); the policy first, so the first
            # invocation already has its permissions.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[log_group, access]),
        )
        self.roles[spec.key] = role
        self.log_groups[spec.key] = log_group

    @staticmethod
    def _statements(
        spec: FunctionSpec, args: FunctionsArgs, log_group: aws.cloudwatch.LogGroup
    ) -> list[policy.Statement]:
        statements = [policy.allow(policy.LOG_WRITE, [policy.log_streams(log_group.arn)], sid="OwnLogs")]

        def arns(keys: Sequence[str]) -> list[pulumi.Input[str]]:
            return [args.tables[k].arn for k in keys]

        if spec.reads_tables:
            statements.append(policy.allow(policy.TABLE_READ, arns(spec.reads_tables), sid="ReadTables"))
        if spec.writes_tables:
            statements.append(policy.allow(policy.TABLE_WRITE, arns(spec.writes_tables), sid="WriteTables"))
        if SCANS.get(spec.key):
            statements.append(policy.allow(("dynamodb:Scan",), arns(SCANS[spec.key]), sid="ScanTables"))
        if DESCRIBES.get(spec.key) or SHADOW_DESCRIBES.get(spec.key):
            described = [
                *arns(DESCRIBES.get(spec.key, ())),
                *(policy.rebuild_shadows(arn) for arn in arns(SHADOW_DESCRIBES.get(spec.key, ()))),
            ]
            statements.append(policy.allow(("dynamodb:DescribeTable",), described, sid="DescribeTables"))
        if SHADOW_ACCESS.get(spec.key):
            shadows = [policy.rebuild_shadows(arn) for arn in arns(SHADOW_ACCESS[spec.key])]
            statements.append(
                policy.allow((*policy.TABLE_READ, *policy.TABLE_WRITE), shadows, sid="RebuildShadows")
            )
        if spec.puts_streams:
            stream_arns = [args.streams[k].arn for k in spec.puts_streams]
            statements.append(policy.allow(policy.STREAM_PUT, stream_arns, sid="PutStreams"))
        services = (["dynamodb"] if spec.reads_tables or spec.writes_tables else []) + (
            ["kinesis"] if spec.puts_streams else []
        )
        if services:
            writes = bool(spec.writes_tables or spec.puts_streams)
            actions = policy.KEY_WRITE if writes else policy.KEY_READ
            statements.append(policy.key_statement(actions, args.key_arn, services, args.region))
        if args.tracing:
            statements.append(policy.allow(policy.XRAY_WRITE, ["*"], sid="Tracing"))
        statements.extend(args.extra_statements.get(spec.key, ()))
        return statements
