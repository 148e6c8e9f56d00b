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
    # Keep the backed-up tables (TableSpec.backed_up: the log and what it cannot give back) on `pulumi destroy`,
    # with deletion protection.
    keep_event_log: bool


class EventStore(pulumi.ComponentResource):
    """Every table, on-demand and encrypted with the data key: the events table (the system of record, with its
    change stream of new images), the state table and the bookkeeping tables. Tables whose loss would lose
    what the log cannot give back (`TableSpec.backed_up`) get point-in-time recovery, deletion protection and
    are kept on destroy (with `keep_event_log`)."""

    tables: dict[str, aws.dynamodb.Table]

    def __init__(self, name: str, args: EventStoreArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("eventsourcing:infra:EventStore", name, None, opts)
        self.tables = {spec.key: self._table(name, spec, args) for spec in TABLES}
        self.register_outputs({key: table.name for key, table in self.tables.items()})

    def _table(self, name: str, spec: TableSpec, args: EventStoreArgs) -> aws.dynamodb.Table:
        keys = [spec.partition_key] if spec.sort_key is None else [spec.partition_key, spec.sort_key]
        keep = spec.backed_up and args.keep_event_log
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
            point_in_time_recovery=aws.dynamodb.TablePointInTimeRecoveryArgs(enabled=spec.backed_up),
            deletion_protection_enabled=keep,
            opts=pulumi.ResourceOptions(parent=self, retain_on_delete=keep),
        )
