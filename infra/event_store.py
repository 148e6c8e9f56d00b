"""The tables: every TableSpec in eventlog.resources, keys exactly as defined there."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from eventlog.resources import TABLES, TableSpec
from eventlog.settings import default_name


@dataclass
class EventStoreArgs:
    prefix: str
    key_arn: pulumi.Input[str]
    # Keep the system-of-record tables (the events table) on `pulumi destroy`, with deletion protection.
    keep_event_log: bool


class EventStore(pulumi.ComponentResource):
    """The events table (the system of record: point-in-time recovery, deletion protection, kept on destroy,
    change stream with new images) and the state and bookkeeping tables, all on-demand and encrypted with
    the data key."""

    tables: dict[str, aws.dynamodb.Table]

    def __init__(self, name: str, args: EventStoreArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("eventsourcing:infra:EventStore", name, None, opts)
        self.tables = {spec.key: self._table(name, spec, args) for spec in TABLES}
        self.register_outputs({key: table.name for key, table in self.tables.items()})

    def _table(self, name: str, spec: TableSpec, args: EventStoreArgs) -> aws.dynamodb.Table:
        keys = [spec.partition_key] if spec.sort_key is None else [spec.partition_key, spec.sort_key]
        keep = spec.system_of_record and args.keep_event_log
        return aws.dynamodb.Table(
            f"{name}-{spec.key}",
            name=default_name(args.prefix, spec.key),
            billing_mode="PAY_PER_REQUEST",
            hash_key=spec.partition_key.name,
            range_key=spec.sort_key.name if spec.sort_key else None,
            attributes=[aws.dynamodb.TableAttributeArgs(name=k.name, type=k.type) for k in keys],
            stream_enabled=spec.stream_view_type is not None,
            stream_view_type=spec.stream_view_type,
            ttl=(
                aws.dynamodb.TableTtlArgs(attribute_name=spec.ttl_attribute, enabled=True)
                if spec.ttl_attribute
                else None
            ),
            server_side_encryption=aws.dynamodb.TableServerSideEncryptionArgs(
                enabled=True, kms_key_arn=args.key_arn
            ),
            point_in_time_recovery=aws.dynamodb.TablePointInTimeRecoveryArgs(enabled=spec.system_of_record),
            deletion_protection_enabled=keep,
            opts=pulumi.ResourceOptions(parent=self, retain_on_delete=keep),
        )
