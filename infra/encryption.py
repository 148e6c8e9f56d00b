"""The data key: one customer-managed KMS key for the tables, the streams and the alarm topic."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws


@dataclass
class DataKeyArgs:
    prefix: str
    account_id: pulumi.Input[str]
    partition: pulumi.Input[str]
    # Kept on `pulumi destroy` when the events table is: a kept table is unreadable without its key.
    retain: bool


class DataKey(pulumi.ComponentResource):
    """A KMS key with yearly rotation. Roles get use of it in their own policies (IAM decides, per the
    key policy's first statement); CloudWatch may use it to publish alarms to the encrypted topic."""

    key: aws.kms.Key
    arn: pulumi.Output[str]

    def __init__(self, name: str, args: DataKeyArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("eventsourcing:infra:DataKey", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, retain_on_delete=args.retain)
        account_root = pulumi.Output.concat("arn:", args.partition, ":iam::", args.account_id, ":root")
        key_policy = pulumi.Output.json_dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        # The key policy AWS writes by default: the account decides through IAM policies.
                        "Sid": "AccountAdministersThroughIam",
                        "Effect": "Allow",
                        "Principal": {"AWS": account_root},
                        "Action": "kms:*",
                        "Resource": "*",
                    },
                    {
                        "Sid": "CloudWatchPublishesAlarmsToTheEncryptedTopic",
                        "Effect": "Allow",
                        "Principal": {"Service": "cloudwatch.amazonaws.com"},
                        "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
                        "Resource": "*",
                        "Condition": {"StringEquals": {"aws:SourceAccount": args.account_id}},
                    },
                ],
            }
        )
        self.key = aws.kms.Key(
            f"{name}-key",
            description=f"{args.prefix}: events, state and bookkeeping tables, Kinesis streams, alarm topic",
            enable_key_rotation=True,
            deletion_window_in_days=30,
            policy=key_policy,
            opts=child,
        )
        aws.kms.Alias(
            f"{name}-alias", name=f"alias/{args.prefix}-data", target_key_id=self.key.key_id, opts=child
        )
        self.arn = self.key.arn
        self.register_outputs({"arn": self.arn})
