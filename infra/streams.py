"""The Kinesis streams: every StreamSpec in eventlog.resources (ingest and playback)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from eventlog.resources import STREAMS, StreamSpec
from eventlog.settings import default_name
from infra.config import StreamMode


@dataclass
class StreamsArgs:
    prefix: str
    key_arn: pulumi.Input[str]
    mode: StreamMode = "PROVISIONED"
    # Stream key -> shards, PROVISIONED only.
    shard_counts: Mapping[str, int] = field(default_factory=dict)
    # Stream key -> hours; default: the stream's own (StreamSpec.retention_hours).
    retention_hours: Mapping[str, int] = field(default_factory=dict)


class Streams(pulumi.ComponentResource):
    """Encrypted with the data key; provisioned (by shard count) or on-demand; each stream's retention its
    definition's (the ingest stream keeps accepted submissions 7 days) unless the config says otherwise."""

    streams: dict[str, aws.kinesis.Stream]

    def __init__(self, name: str, args: StreamsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("eventsourcing:infra:Streams", name, None, opts)
        self.streams = {spec.key: self._stream(name, spec, args) for spec in STREAMS}
        self.register_outputs({key: stream.name for key, stream in self.streams.items()})

    def _stream(self, name: str, spec: StreamSpec, args: StreamsArgs) -> aws.kinesis.Stream:
        provisioned = args.mode == "PROVISIONED"
        return aws.kinesis.Stream(
            f"{name}-{spec.key}",
            name=default_name(args.prefix, spec.key),
            stream_mode_details=aws.kinesis.StreamStreamModeDetailsArgs(stream_mode=args.mode),
            shard_count=args.shard_counts.get(spec.key, 1) if provisioned else None,
            retention_period=args.retention_hours.get(spec.key, spec.retention_hours),
            encryption_type="KMS",
            kms_key_id=args.key_arn,
            # Per-shard metrics show a hot aggregate (one partition key) before it throttles.
            shard_level_metrics=[
                "IncomingRecords",
                "WriteProvisionedThroughputExceeded",
                "IteratorAgeMilliseconds",
            ],
            opts=pulumi.ResourceOptions(parent=self),
        )
