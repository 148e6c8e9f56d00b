"""Starting the replayer as Fargate tasks (what the playback Lambda does with a large replay).

The task definition (deployed by the Pulumi program) runs replayer/Dockerfile, whose entrypoint is
`python -m replayer`; the filters go to it as command arguments (`container_command`). An ECS command
override holds at most about 8 KB, so a long list of aggregate ids is not passed that way: the replay's
definition is stored in the checkpoint table first and the task is told `--resume REPLAY_ID`, which reads it.
With n workers, n tasks start with `--worker i/n` and the same replay id and segment count.

The environment variables that say where to run (set by the Pulumi program on the playback function):
ES_REPLAYER_CLUSTER, ES_REPLAYER_TASK_DEFINITION, ES_REPLAYER_CONTAINER, ES_REPLAYER_SUBNETS and
ES_REPLAYER_SECURITY_GROUPS (comma-separated), and optionally ES_REPLAYER_ASSIGN_PUBLIC_IP (ENABLED or
DISABLED, the default: the subnets then need a NAT gateway or VPC endpoints for DynamoDB, Kinesis, ECR, Logs).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from replayer.config import ReplayConfig, Worker
from replayer.errors import SetupError

# ECS: "the total size of the overrides is limited to 8192 characters"; leave room for the rest.
MAX_COMMAND_CHARS = 6000
REQUIRED = (
    "ES_REPLAYER_CLUSTER",
    "ES_REPLAYER_TASK_DEFINITION",
    "ES_REPLAYER_CONTAINER",
    "ES_REPLAYER_SUBNETS",
    "ES_REPLAYER_SECURITY_GROUPS",
)


@dataclass(frozen=True, slots=True)
class FargateTarget:
    """Where replayer tasks run."""

    cluster: str
    task_definition: str
    container: str
    subnets: tuple[str, ...]
    security_groups: tuple[str, ...]
    assign_public_ip: str = "DISABLED"

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> FargateTarget | None:
        """The target from the environment; None when none is configured, SetupError when half is."""
        present = [name for name in REQUIRED if environ.get(name, "").strip()]
        if not present:
            return None
        missing = [name for name in REQUIRED if name not in present]
        if missing:
            raise SetupError(f"Fargate replays need {', '.join(missing)} set (only {', '.join(present)} are)")
        assign = environ.get("ES_REPLAYER_ASSIGN_PUBLIC_IP", "DISABLED").strip().upper() or "DISABLED"
        if assign not in ("ENABLED", "DISABLED"):
            raise SetupError(f"ES_REPLAYER_ASSIGN_PUBLIC_IP {assign!r}: expected ENABLED or DISABLED")
        return cls(
            cluster=environ["ES_REPLAYER_CLUSTER"].strip(),
            task_definition=environ["ES_REPLAYER_TASK_DEFINITION"].strip(),
            container=environ["ES_REPLAYER_CONTAINER"].strip(),
            subnets=_split(environ["ES_REPLAYER_SUBNETS"]),
            security_groups=_split(environ["ES_REPLAYER_SECURITY_GROUPS"]),
            assign_public_ip=assign,
        )


def container_command(config: ReplayConfig, worker: Worker | None = None, resume: bool = False) -> list[str]:
    """The `python -m replayer` arguments that run `config` (as worker `worker`, or from its stored definition
    when `resume`). Parsing them back with the CLI gives the same replay (a test holds them to that)."""
    args: list[str] = ["--progress", "json"]
    if resume or config.resume:
        args += ["--resume", config.replay_id]
    else:
        filters = config.filters
        args += ["--replay-id", config.replay_id, "--mode", config.mode]
        for aggregate in filters.aggregates:
            args += ["--aggregate", aggregate]
        for kind in filters.types:
            args += ["--type", kind]
        if filters.since:
            args += ["--since", filters.since]
        if filters.until:
            args += ["--until", filters.until]
        if filters.from_version is not None:
            args += ["--from-version", str(filters.from_version)]
        if filters.to_version is not None:
            args += ["--to-version", str(filters.to_version)]
        if config.segments is not None:
            args += ["--segments", str(config.segments)]
        args += ["--table", config.events_table, "--stream", config.stream]
        if config.state_table is not None:
            args += ["--state-table", config.state_table]
        if config.dry_run:
            args += ["--dry-run"]
        if config.spread_shards:
            args += ["--spread-shards"]
    args += ["--checkpoint-table", config.checkpoint_table]
    if config.limits.rate is not None:
        args += ["--rate", repr(config.limits.rate)]
    if config.limits.max_bytes_per_s is not None:
        args += ["--max-bytes-per-s", repr(config.limits.max_bytes_per_s)]
    if config.concurrency != 16:
        args += ["--concurrency", str(config.concurrency)]
    if worker is not None and worker.count > 1:
        args += ["--worker", str(worker)]
    return args


def command_fits(command: list[str]) -> bool:
    return sum(len(a) + 3 for a in command) <= MAX_COMMAND_CHARS


def run_tasks(ecs: Any, target: FargateTarget, commands: list[list[str]], replay_id: str) -> list[str]:
    """Start one task per command (RunTask); return the task ARNs, raise SetupError if ECS refuses one."""
    started: list[str] = []
    for i, command in enumerate(commands):
        response = ecs.run_task(
            cluster=target.cluster,
            taskDefinition=target.task_definition,
            launchType="FARGATE",
            count=1,
            startedBy=_started_by(replay_id, i),
            networkConfiguration={
                "awsvpcConfiguration": {
                    "subnets": list(target.subnets),
                    "securityGroups": list(target.security_groups),
                    "assignPublicIp": target.assign_public_ip,
                }
            },
            overrides={"containerOverrides": [{"name": target.container, "command": command}]},
        )
        failures = response.get("failures") or []
        tasks = response.get("tasks") or []
        if failures or not tasks:
            reason = (
                "; ".join(f"{f.get('arn', '')} {f.get('reason', '')}".strip() for f in failures) or "no task"
            )
            raise SetupError(f"ECS did not start replayer task {i + 1} of {len(commands)}: {reason}")
        started.append(tasks[0]["taskArn"])
    return started


def _started_by(replay_id: str, index: int) -> str:
    # startedBy: up to 128 letters, digits, hyphens and underscores.
    return re.sub(r"[^A-Za-z0-9_-]", "-", f"{replay_id}-{index}")[-128:]


def _split(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())
