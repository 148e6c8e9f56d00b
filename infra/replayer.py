"""The replayer on Fargate: its image in ECR, a cluster, a task definition with roles of its own, and what the
playback function needs to start it (`playback_environment`, `playback_statements`)."""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_docker_build as docker_build

from eventlog.settings import default_name
from infra import policy
from infra.config import CpuArchitecture

CONTAINER = "replayer"
# An example the docs explain; `--dry-run` makes the printed command safe to paste as it is.
EXAMPLE_FILTERS = ("--mode", "rebuild", "--since", "2026-01-01T00:00:00Z", "--dry-run")


@dataclass
class ReplayerArgs:
    prefix: str
    region: pulumi.Input[str]
    account_id: pulumi.Input[str]
    partition: pulumi.Input[str]
    events_table: aws.dynamodb.Table
    checkpoints_table: aws.dynamodb.Table
    playback_stream: aws.kinesis.Stream
    key_arn: pulumi.Input[str]
    # The container's environment (Settings' variables, with AWS_REGION).
    environment: Mapping[str, pulumi.Input[str]]
    # Empty: build `dockerfile` with `context` (absolute paths) and push it to the stack's repository.
    image: str = ""
    dockerfile: str = ""
    context: str = ""
    cpu: int = 1024
    memory_mb: int = 2048
    architecture: CpuArchitecture = "ARM64"
    subnet_ids: Sequence[str] = ()
    security_group_ids: Sequence[str] = ()
    assign_public_ip: bool = True
    target_stream_names: Sequence[str] = ()
    log_retention_days: int = 30


class Replayer(pulumi.ComponentResource):
    """ECR repository (scanned on push, last 10 images kept), the image, an ECS cluster with Container
    Insights, a log group, and a Fargate task definition whose task role may read the events table, keep its
    checkpoints and put to the playback stream (and the configured test-environment streams) only."""

    repository: aws.ecr.Repository
    cluster: aws.ecs.Cluster
    task_definition: aws.ecs.TaskDefinition
    task_role: aws.iam.Role
    execution_role: aws.iam.Role
    image_uri: pulumi.Output[str]
    subnet_ids: pulumi.Output[list[str]]
    security_group_ids: pulumi.Output[list[str]]
    assign_public_ip: str
    run_task_command: pulumi.Output[str]

    def __init__(self, name: str, args: ReplayerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("eventsourcing:infra:Replayer", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        family = f"{args.prefix}-replayer"

        self.repository = aws.ecr.Repository(
            f"{name}-repository",
            name=family,
            image_scanning_configuration=aws.ecr.RepositoryImageScanningConfigurationArgs(scan_on_push=True),
            # Images are rebuilt from the repo, so the repository may go with its images on destroy.
            force_delete=True,
            opts=child,
        )
        aws.ecr.LifecyclePolicy(
            f"{name}-repository-lifecycle",
            repository=self.repository.name,
            policy=pulumi.Output.json_dumps(
                {
                    "rules": [
                        {
                            "rulePriority": 1,
                            "description": "keep the last 10 images",
                            "selection": {
                                "tagStatus": "any",
                                "countType": "imageCountMoreThan",
                                "countNumber": 10,
                            },
                            "action": {"type": "expire"},
                        }
                    ]
                }
            ),
            opts=child,
        )
        self.image_uri = self._image(name, args) if not args.image else pulumi.Output.from_input(args.image)

        log_group = aws.cloudwatch.LogGroup(
            f"{name}-logs", name=f"/ecs/{family}", retention_in_days=args.log_retention_days, opts=child
        )
        self.execution_role = aws.iam.Role(
            f"{name}-execution-role",
            name=f"{family}-execution",
            description=f"{family}: ECS pulls the image and ships the logs",
            assume_role_policy=policy.assume_role_policy("ecs-tasks.amazonaws.com"),
            opts=child,
        )
        execution = aws.iam.RolePolicy(
            f"{name}-execution-access",
            name="access",
            role=self.execution_role.id,
            policy=policy.document(
                [
                    policy.allow(policy.ECR_LOGIN, ["*"], sid="RegistryLogin"),
                    policy.allow(policy.ECR_PULL, [self.repository.arn], sid="PullImage"),
                    policy.allow(policy.LOG_WRITE, [policy.log_streams(log_group.arn)], sid="OwnLogs"),
                ]
            ),
            opts=child,
        )
        self._extra_targets = self._extra_target_arns(args)
        self.task_role = aws.iam.Role(
            f"{name}-task-role",
            name=f"{family}-task",
            description=f"{family}: reads the events table, keeps checkpoints, puts to the playback stream",
            assume_role_policy=policy.assume_role_policy("ecs-tasks.amazonaws.com"),
            opts=child,
        )
        task_access = aws.iam.RolePolicy(
            f"{name}-task-access",
            name="access",
            role=self.task_role.id,
            policy=policy.document(self._task_statements(args)),
            opts=child,
        )
        self.cluster = aws.ecs.Cluster(
            f"{name}-cluster",
            name=family,
            settings=[aws.ecs.ClusterSettingArgs(name="containerInsights", value="enabled")],
            opts=child,
        )
        environment = pulumi.Output.all(**args.environment).apply(
            lambda env: [{"name": k, "value": v} for k, v in sorted(env.items())]
        )
        container = {
            "name": CONTAINER,
            "image": self.image_uri,
            "essential": True,
            "environment": environment,
            "logConfiguration": {
                "logDriver": "awslogs",
                "options": {
                    "awslogs-group": log_group.name,
                    "awslogs-region": args.region,
                    "awslogs-stream-prefix": CONTAINER,
                },
            },
            "stopTimeout": 120,
        }
        self.task_definition = aws.ecs.TaskDefinition(
            f"{name}-task",
            family=family,
            cpu=str(args.cpu),
            memory=str(args.memory_mb),
            network_mode="awsvpc",
            requires_compatibilities=["FARGATE"],
            runtime_platform=aws.ecs.TaskDefinitionRuntimePlatformArgs(
                operating_system_family="LINUX", cpu_architecture=args.architecture
            ),
            execution_role_arn=self.execution_role.arn,
            task_role_arn=self.task_role.arn,
            container_definitions=pulumi.Output.json_dumps([container]),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[execution, task_access]),
        )
        self.subnet_ids, self.security_group_ids = self._network(name, args)
        self.assign_public_ip = "ENABLED" if args.assign_public_ip else "DISABLED"
        self.run_task_command = pulumi.Output.all(
            args.region,
            self.cluster.name,
            self.task_definition.arn,
            self.subnet_ids,
            self.security_group_ids,
        ).apply(
            lambda v: run_task_command(v[0], v[1], v[2], v[3], v[4], self.assign_public_ip, EXAMPLE_FILTERS)
        )
        self.register_outputs(
            {
                "cluster": self.cluster.arn,
                "taskDefinition": self.task_definition.arn,
                "image": self.image_uri,
                "runTaskCommand": self.run_task_command,
            }
        )

    def _image(self, name: str, args: ReplayerArgs) -> pulumi.Output[str]:
        token = aws.ecr.get_authorization_token_output(registry_id=self.repository.registry_id)
        platform = "linux/arm64" if args.architecture == "ARM64" else "linux/amd64"
        image = docker_build.Image(
            f"{name}-image",
            context=docker_build.BuildContextArgs(location=args.context),
            dockerfile=docker_build.DockerfileArgs(location=args.dockerfile),
            platforms=[docker_build.Platform(platform)],
            push=True,
            tags=[pulumi.Output.concat(self.repository.repository_url, ":latest")],
            registries=[
                docker_build.RegistryArgs(
                    address=self.repository.repository_url,
                    username=token.user_name,
                    password=token.password,
                )
            ],
            opts=pulumi.ResourceOptions(parent=self),
        )
        # The digest-pinned reference: a new image makes a new task definition revision.
        return image.ref

    def _network(
        self, name: str, args: ReplayerArgs
    ) -> tuple[pulumi.Output[list[str]], pulumi.Output[list[str]]]:
        if args.subnet_ids:
            return pulumi.Output.from_input(list(args.subnet_ids)), pulumi.Output.from_input(
                list(args.security_group_ids)
            )
        vpc = aws.ec2.get_vpc_output(default=True)
        subnets = aws.ec2.get_subnets_output(
            filters=vpc.id.apply(
                lambda vpc_id: [
                    aws.ec2.GetSubnetsFilterArgs(name="vpc-id", values=[vpc_id]),
                    aws.ec2.GetSubnetsFilterArgs(name="default-for-az", values=["true"]),
                ]
            )
        )
        group = aws.ec2.SecurityGroup(
            f"{name}-security-group",
            name=f"{args.prefix}-replayer",
            description="The replayer task: no inbound; outbound HTTPS to ECR and the AWS APIs only",
            vpc_id=vpc.id,
            egress=[
                aws.ec2.SecurityGroupEgressArgs(
                    protocol="tcp", from_port=443, to_port=443, cidr_blocks=["0.0.0.0/0"], description="HTTPS"
                )
            ],
            opts=pulumi.ResourceOptions(parent=self),
        )
        return subnets.ids, pulumi.Output.all(group.id).apply(list)

    @staticmethod
    def _extra_target_arns(args: ReplayerArgs) -> list[pulumi.Input[str]]:
        """The configured test-environment streams, as ARNs in this account and region."""
        return [
            pulumi.Output.concat(
                "arn:", args.partition, ":kinesis:", args.region, ":", args.account_id, ":stream/", stream
            )
            for stream in args.target_stream_names
        ]

    @staticmethod
    def _state_table_arns(args: ReplayerArgs) -> list[pulumi.Input[str]]:
        """The state table and its rebuild shadows: a replay with --state-table checks that it exists."""
        state = pulumi.Output.concat(
            "arn:",
            args.partition,
            ":dynamodb:",
            args.region,
            ":",
            args.account_id,
            ":table/",
            default_name(args.prefix, "state"),
        )
        return [state, policy.rebuild_shadows(state)]

    def _task_statements(self, args: ReplayerArgs) -> list[policy.Statement]:
        target_streams: list[pulumi.Input[str]] = [args.playback_stream.arn, *self._extra_target_arns(args)]
        return [
            policy.allow(policy.TABLE_SCAN, [args.events_table.arn], sid="ReadEvents"),
            policy.allow(("dynamodb:DescribeTable",), self._state_table_arns(args), sid="CheckStateTable"),
            policy.allow(
                (*policy.TABLE_READ, *policy.TABLE_WRITE, "dynamodb:DescribeTable"),
                [args.checkpoints_table.arn],
                sid="Checkpoints",
            ),
            policy.allow(policy.STREAM_PUT, target_streams, sid="PutTargets"),
            policy.key_statement(policy.KEY_WRITE, args.key_arn, ["dynamodb", "kinesis"], args.region),
        ]

    def playback_environment(self) -> dict[str, pulumi.Input[str]]:
        """What the playback function needs to start this task (the names the playback handler reads)."""
        return {
            "ES_REPLAYER_CLUSTER": self.cluster.arn,
            "ES_REPLAYER_TASK_DEFINITION": self.task_definition.arn,
            "ES_REPLAYER_CONTAINER": CONTAINER,
            "ES_REPLAYER_SUBNETS": self.subnet_ids.apply(",".join),
            "ES_REPLAYER_SECURITY_GROUPS": self.security_group_ids.apply(",".join),
            "ES_REPLAYER_ASSIGN_PUBLIC_IP": self.assign_public_ip,
        }

    def playback_statements(self) -> list[policy.Statement]:
        """Run this task definition in this cluster, and hand it its own two roles, nothing else; and put to
        the same test-environment streams as the task (a small replay runs in the function itself)."""
        extra = (
            [policy.allow(policy.STREAM_PUT, self._extra_targets, sid="PutTestEnvironments")]
            if self._extra_targets
            else []
        )
        return [
            *extra,
            policy.allow(
                ("ecs:RunTask",),
                [self.task_definition.arn],
                condition={"ArnEquals": {"ecs:cluster": self.cluster.arn}},
                sid="StartReplayer",
            ),
            policy.allow(
                ("iam:PassRole",),
                [self.task_role.arn, self.execution_role.arn],
                condition={"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}},
                sid="PassReplayerRoles",
            ),
        ]


def run_task_command(
    region: str,
    cluster: str,
    task_definition: str,
    subnets: Sequence[str],
    security_groups: Sequence[str],
    assign_public_ip: str,
    filters: Sequence[str],
) -> str:
    """The `aws ecs run-task` command line that starts one replay with `filters` (the replayer's CLI flags)."""
    network = (
        f"awsvpcConfiguration={{subnets=[{','.join(subnets)}],"
        f"securityGroups=[{','.join(security_groups)}],assignPublicIp={assign_public_ip}}}"
    )
    overrides_json = json.dumps(
        {"containerOverrides": [{"name": CONTAINER, "command": list(filters)}]}, separators=(",", ":")
    )
    return " ".join(
        [
            "aws ecs run-task",
            f"--region {shlex.quote(region)}",
            f"--cluster {shlex.quote(cluster)}",
            "--launch-type FARGATE",
            f"--task-definition {shlex.quote(task_definition)}",
            f"--network-configuration {shlex.quote(network)}",
            f"--overrides {shlex.quote(overrides_json)}",
        ]
    )
