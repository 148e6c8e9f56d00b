"""Event source mappings: one per MappingSpec in eventlog.topology, each with a dead-letter queue.

A Kinesis source is a stream key (`ingest`, `playback`); a `dynamodb` source is a table key whose change stream
feeds the function (the events table's new images). Every mapping reports batch item failures, so Lambda
retries from the first failed record and never skips past it; a batch that still fails after the retries (or
whose records grew too old) leaves its shard and sequence range in the dead-letter queue, and the records
themselves stay readable in the stream until its retention ends. Retries and record age are the topology's
(eventlog.topology: bounded for the consumers of committed events, until the record is about to expire for
the pump) unless the config names a function; `python -m ops redrive` recovers a consumer's dead letters.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from eventlog.topology import DEAD_LETTER_RETENTION_S, MAPPINGS, MappingSpec
from infra import policy

DLQ_RETENTION_S = DEAD_LETTER_RETENTION_S


@dataclass
class MappingsArgs:
    prefix: str
    functions: Mapping[str, aws.lambda_.Function]
    roles: Mapping[str, aws.iam.Role]
    tables: Mapping[str, aws.dynamodb.Table]
    streams: Mapping[str, aws.kinesis.Stream]
    key_arn: pulumi.Input[str]
    region: pulumi.Input[str]
    parallelization_factors: Mapping[str, int] = field(default_factory=dict)
    # Function key -> the setting for the mappings that feed it; default: each mapping's own (the topology's).
    max_retry_attempts: Mapping[str, int] = field(default_factory=dict)
    max_record_age_seconds: Mapping[str, int] = field(default_factory=dict)


def mapping_name(spec: MappingSpec) -> str:
    """A stable, readable name for a mapping: `ingest-to-pump`, `events-changes-to-write` (MappingSpec.key)."""
    return spec.key


def batching_window_seconds(spec: MappingSpec) -> int:
    """Lambda takes whole seconds. A sub-second window rounds to 0 (invoke with what the poll found, which
    on a stream is what arrived since the last poll): the nearest AWS can do to the topology's intent."""
    return math.floor(spec.batching_window_s + 0.5)


class Mappings(pulumi.ComponentResource):
    """Mappings with ReportBatchItemFailures, bisect on error, retry and age limits, parallelization, and an
    SQS on-failure destination; each function's role gets read access to exactly its sources."""

    mappings: dict[str, aws.lambda_.EventSourceMapping]
    dead_letter_queues: dict[str, aws.sqs.Queue]

    def __init__(self, name: str, args: MappingsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("eventsourcing:infra:Mappings", name, None, opts)
        self.mappings, self.dead_letter_queues = {}, {}
        for spec in MAPPINGS:
            self._mapping(name, spec, args)
        self.register_outputs({key: q.url for key, q in self.dead_letter_queues.items()})

    def _mapping(self, name: str, spec: MappingSpec, args: MappingsArgs) -> None:
        key = mapping_name(spec)
        child = pulumi.ResourceOptions(parent=self)
        queue = aws.sqs.Queue(
            f"{name}-{key}-dlq",
            name=spec.dead_letter_queue(args.prefix),
            message_retention_seconds=DLQ_RETENTION_S,
            sqs_managed_sse_enabled=True,
            opts=child,
        )
        if spec.source_kind == "kinesis":
            source_arn: pulumi.Input[str] = args.streams[spec.source].arn
            consume = policy.allow(policy.KINESIS_CONSUME, [source_arn], sid="ReadSource")
            service = "kinesis"
        else:
            table = args.tables[spec.source]
            source_arn = table.stream_arn
            # The stream's label changes if the stream is ever re-enabled; AWS's own example scopes to all of
            # the table's streams the same way.
            consume = policy.allow(
                policy.TABLE_STREAM_CONSUME, [pulumi.Output.concat(table.arn, "/stream/*")], sid="ReadSource"
            )
            service = "dynamodb"
        grant = aws.iam.RolePolicy(
            f"{name}-{key}-grant",
            name=f"consume-{key}",
            role=args.roles[spec.function].id,
            policy=policy.document(
                [
                    consume,
                    policy.key_statement(policy.KEY_READ, args.key_arn, [service], args.region),
                    policy.allow(policy.QUEUE_SEND, [queue.arn], sid="DeadLetters"),
                ]
            ),
            opts=child,
        )
        retries = args.max_retry_attempts.get(spec.function, spec.max_retry_attempts)
        max_age = args.max_record_age_seconds.get(spec.function, spec.max_record_age_s)
        self.mappings[key] = aws.lambda_.EventSourceMapping(
            f"{name}-{key}",
            event_source_arn=source_arn,
            function_name=args.functions[spec.function].arn,
            starting_position=spec.starting_position,
            batch_size=spec.batch_size,
            maximum_batching_window_in_seconds=batching_window_seconds(spec),
            function_response_types=["ReportBatchItemFailures"],
            bisect_batch_on_function_error=spec.bisect_on_error,
            maximum_retry_attempts=retries,
            maximum_record_age_in_seconds=max_age,
            parallelization_factor=args.parallelization_factors.get(
                spec.function, spec.parallelization_factor
            ),
            destination_config=aws.lambda_.EventSourceMappingDestinationConfigArgs(
                on_failure=aws.lambda_.EventSourceMappingDestinationConfigOnFailureArgs(
                    destination_arn=queue.arn
                )
            ),
            # Lambda checks at creation that the role can read the source.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[grant]),
        )
        self.dead_letter_queues[key] = queue
