"""The whole stack, wired: data key -> tables and streams -> replayer -> functions -> mappings -> API -> alarms.

`build(args)` creates every resource and returns the components and the stack outputs; `__main__.py` calls it
with the config, the tests call it under Pulumi's mocks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pulumi
import pulumi_aws as aws

from eventlog.topology import MAPPINGS
from infra.alarms import Alarms, AlarmsArgs
from infra.api import Api, ApiArgs
from infra.bundle import REPO_ROOT, BundleError, Target, build_bundle
from infra.config import StackArgs
from infra.encryption import DataKey, DataKeyArgs
from infra.environment import stack_environment
from infra.event_store import EventStore, EventStoreArgs
from infra.functions import Functions, FunctionsArgs
from infra.mappings import Mappings, MappingsArgs
from infra.replayer import Replayer, ReplayerArgs
from infra.streams import Streams, StreamsArgs

LAMBDA_ARCHITECTURE: Literal["arm64", "x86_64"] = "arm64"


@dataclass
class Stack:
    """The components, for tests and for anyone extending the program, and the outputs to export."""

    key: DataKey
    store: EventStore
    streams: Streams
    replayer: Replayer
    functions: Functions
    mappings: Mappings
    api: Api
    alarms: Alarms
    outputs: dict[str, Any]


def lambda_code(args: StackArgs, root: Path = REPO_ROOT) -> pulumi.Archive:
    """The archive every function runs: `args.lambda_code`, or the bundle built for the chosen runtime."""
    if args.lambda_code is not None:
        return args.lambda_code
    try:
        target = Target.lambda_runtime(args.lambda_runtime, LAMBDA_ARCHITECTURE)
        return pulumi.FileArchive(str(build_bundle(target, root=root)))
    except BundleError as exc:
        raise pulumi.RunError(f"cannot build the Lambda bundle: {exc}") from None


def build(args: StackArgs, root: Path = REPO_ROOT) -> Stack:
    """Create every resource of the stack described by `args`."""
    identity = aws.get_caller_identity_output()
    region = aws.get_region_output().region
    partition = aws.get_partition_output().partition

    key = DataKey(
        "data",
        DataKeyArgs(
            prefix=args.prefix,
            account_id=identity.account_id,
            partition=partition,
            retain=args.keep_event_log,
        ),
    )
    store = EventStore("store", EventStoreArgs(args.prefix, key.arn, keep_event_log=args.keep_event_log))
    streams = Streams(
        "streams",
        StreamsArgs(
            args.prefix,
            key.arn,
            mode=args.stream_mode,
            shard_counts=args.shard_counts,
            retention_hours=args.stream_retention_hours,
        ),
    )
    tables, stream_map = store.tables, streams.streams

    replayer = Replayer(
        "replayer",
        ReplayerArgs(
            prefix=args.prefix,
            region=region,
            account_id=identity.account_id,
            partition=partition,
            events_table=tables["events"],
            checkpoints_table=tables["replay_checkpoints"],
            playback_stream=stream_map["playback"],
            key_arn=key.arn,
            environment=stack_environment(args.prefix, tables, stream_map, region=region),
            image=args.replayer_image,
            dockerfile=str(root / args.replayer_dockerfile),
            context=str((root / args.replayer_context).resolve()),
            cpu=args.replayer_cpu,
            memory_mb=args.replayer_memory_mb,
            architecture=args.replayer_architecture,
            subnet_ids=args.replayer_subnet_ids,
            security_group_ids=args.replayer_security_group_ids,
            assign_public_ip=args.replayer_assign_public_ip,
            target_stream_names=args.replay_target_streams,
            log_retention_days=args.log_retention_days,
        ),
    )

    environment: dict[str, pulumi.Input[str]] = {
        **stack_environment(args.prefix, tables, stream_map),
        "POWERTOOLS_SERVICE_NAME": args.service_name,
        "POWERTOOLS_METRICS_NAMESPACE": args.metrics_namespace,
        "POWERTOOLS_LOG_LEVEL": args.log_level,
    }
    functions = Functions(
        "functions",
        FunctionsArgs(
            prefix=args.prefix,
            code=lambda_code(args, root),
            runtime=args.lambda_runtime,
            architecture=LAMBDA_ARCHITECTURE,
            tables=tables,
            streams=stream_map,
            key_arn=key.arn,
            region=region,
            environment=environment,
            log_retention_days=args.log_retention_days,
            reserved_concurrency=args.reserved_concurrency,
            tracing=args.tracing,
            extra_environment={
                "playback": replayer.playback_environment(),
                "service": args.service_environment(),
            },
            extra_statements={"playback": replayer.playback_statements()},
        ),
    )
    mappings = Mappings(
        "mappings",
        MappingsArgs(
            prefix=args.prefix,
            functions=functions.functions,
            roles=functions.roles,
            tables=tables,
            streams=stream_map,
            key_arn=key.arn,
            region=region,
            parallelization_factors=args.parallelization_factors,
            max_retry_attempts=args.max_retry_attempts,
            max_record_age_seconds=args.max_record_age_seconds,
        ),
    )
    api = Api(
        "api",
        ApiArgs(
            prefix=args.prefix,
            functions=functions.functions,
            partition=partition,
            authorization=args.api_authorization,
            cognito_user_pool_arns=args.cognito_user_pool_arns,
            stage_name=args.api_stage_name,
            throttle_rate_limit=args.api_throttle_rate_limit,
            throttle_burst_limit=args.api_throttle_burst_limit,
            log_retention_days=args.log_retention_days,
            tracing=args.tracing,
            manage_account=args.manage_api_gateway_account,
        ),
    )
    alarms = Alarms(
        "alarms",
        AlarmsArgs(
            prefix=args.prefix,
            key_arn=key.arn,
            functions=functions.functions,
            stream_consumers=sorted({m.function for m in MAPPINGS}),
            dead_letter_queues=mappings.dead_letter_queues,
            live_streams={"ingest": stream_map["ingest"]},
            events_table=tables["events"],
            api_name=api.rest_api.name,
            api_stage=api.stage.stage_name,
            email=args.alarm_email,
            iterator_age_ms=args.iterator_age_alarm_ms,
        ),
    )
    outputs: dict[str, Any] = {
        "apiUrl": api.url,
        "apiAuthorization": args.api_authorization,
        "region": region,
        "tables": {k: t.name for k, t in tables.items()},
        "streams": {k: s.name for k, s in stream_map.items()},
        "functions": {k: f.name for k, f in functions.functions.items()},
        "deadLetterQueues": {k: q.url for k, q in mappings.dead_letter_queues.items()},
        "alarmTopic": alarms.topic.arn,
        "replayerImage": replayer.image_uri,
        "replayerCluster": replayer.cluster.name,
        "replayerTaskDefinition": replayer.task_definition.arn,
        "replayerRunTaskCommand": replayer.run_task_command,
        "playbackInvokeCommand": pulumi.Output.concat(
            "aws lambda invoke --region ",
            region,
            " --function-name ",
            functions.functions["playback"].name,
            " --cli-binary-format raw-in-base64-out --payload '",
            PLAYBACK_EXAMPLE,
            "' playback.json && cat playback.json",
        ),
    }
    return Stack(key, store, streams, replayer, functions, mappings, api, alarms, outputs)


# An example event for the playback function (its shape is handlers/playback.py's, see docs/replayer.md).
PLAYBACK_EXAMPLE = '{"aggregates":["acct-1"],"mode":"fix","dry_run":true}'
