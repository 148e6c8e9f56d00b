"""Alarms on what stops the log from moving, to one SNS topic: iterator age, dead letters, throttles, errors."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws


@dataclass
class AlarmsArgs:
    prefix: str
    key_arn: pulumi.Input[str]
    functions: Mapping[str, aws.lambda_.Function]
    # The functions that streams feed (their iterator age is how far behind they are).
    stream_consumers: Sequence[str]
    dead_letter_queues: Mapping[str, aws.sqs.Queue]
    # Streams fed by the live path (a replay throttling itself on the playback stream is by design).
    live_streams: Mapping[str, aws.kinesis.Stream]
    events_table: aws.dynamodb.Table
    api_name: pulumi.Input[str]
    api_stage: pulumi.Input[str]
    email: str = ""
    iterator_age_ms: int = 60_000


# An iterator-age alarm looks at one-minute maxima and fires when 3 of the last 5 are over the threshold: a
# consumer that stops moving is over a 60 s threshold after a minute, so the alarm fires 4 minutes after the
# stall began (at most 5 with CloudWatch's own delay), while one slow batch does not page anyone.
ITERATOR_AGE_PERIOD_S = 60
ITERATOR_AGE_EVALUATION_PERIODS = 5
ITERATOR_AGE_DATAPOINTS = 3


class Alarms(pulumi.ComponentResource):
    """An encrypted SNS topic (optionally an email subscription) and the alarms; each alarm also tells the
    topic when it is OK again."""

    topic: aws.sns.Topic
    alarms: dict[str, aws.cloudwatch.MetricAlarm]

    def __init__(self, name: str, args: AlarmsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("eventsourcing:infra:Alarms", name, None, opts)
        self._name, self._prefix = name, args.prefix
        self.alarms = {}
        self.topic = aws.sns.Topic(
            f"{name}-topic",
            name=f"{args.prefix}-alarms",
            kms_master_key_id=args.key_arn,
            opts=pulumi.ResourceOptions(parent=self),
        )
        if args.email:
            aws.sns.TopicSubscription(
                f"{name}-email",
                topic=self.topic.arn,
                protocol="email",
                endpoint=args.email,
                opts=pulumi.ResourceOptions(parent=self),
            )
        for key, function in args.functions.items():
            dims = {"FunctionName": function.name}
            self._alarm(f"{key}-errors", f"The {key} function failed.", "AWS/Lambda", "Errors", dims, "Sum")
            self._alarm(
                f"{key}-throttles",
                f"The {key} function was throttled.",
                "AWS/Lambda",
                "Throttles",
                dims,
                "Sum",
            )
        for key in args.stream_consumers:
            self._alarm(
                f"{key}-iterator-age",
                f"The {key} function is more than {args.iterator_age_ms} ms behind its stream.",
                "AWS/Lambda",
                "IteratorAge",
                {"FunctionName": args.functions[key].name},
                "Maximum",
                threshold=args.iterator_age_ms,
                period=ITERATOR_AGE_PERIOD_S,
                evaluation_periods=ITERATOR_AGE_EVALUATION_PERIODS,
                datapoints_to_alarm=ITERATOR_AGE_DATAPOINTS,
            )
        for key, queue in args.dead_letter_queues.items():
            self._alarm(
                f"{key}-dead-letters",
                f"A batch from {key} failed for good: its shard and sequence range are in {key}'s queue "
                "(python -m ops redrive).",
                "AWS/SQS",
                "ApproximateNumberOfMessagesVisible",
                {"QueueName": queue.name},
                "Maximum",
            )
        for key, stream in args.live_streams.items():
            # Seen from the stream: Lambda's own IteratorAge has no data while nothing invokes the function (a
            # disabled mapping, a function that cannot start), and no data would read as "fine". Here no data
            # means no reader at all, which is an outage of the live path: breaching.
            self._alarm(
                f"{key}-read-age",
                f"Records wait on the {key} stream for more than {args.iterator_age_ms} ms, or nothing reads "
                "it: accepted events are not reaching the log (docs/deploy.md, 'When an alarm fires').",
                "AWS/Kinesis",
                "GetRecords.IteratorAgeMilliseconds",
                {"StreamName": stream.name},
                "Maximum",
                threshold=args.iterator_age_ms,
                period=ITERATOR_AGE_PERIOD_S,
                evaluation_periods=ITERATOR_AGE_EVALUATION_PERIODS,
                datapoints_to_alarm=ITERATOR_AGE_DATAPOINTS,
                missing="breaching",
            )
            self._alarm(
                f"{key}-write-throttles",
                f"Writes to the {key} stream were throttled: it needs more shards (or on-demand mode).",
                "AWS/Kinesis",
                "WriteProvisionedThroughputExceeded",
                {"StreamName": stream.name},
                "Sum",
            )
        self._alarm(
            "events-write-throttles",
            "Writes to the events table were throttled (a hot aggregate, or a table-level limit).",
            "AWS/DynamoDB",
            "WriteThrottleEvents",
            {"TableName": args.events_table.name},
            "Sum",
        )
        self._alarm(
            "api-5xx",
            "The API answered with a 5xx.",
            "AWS/ApiGateway",
            "5XXError",
            {"ApiName": args.api_name, "Stage": args.api_stage},
            "Sum",
        )
        self.register_outputs({"topic": self.topic.arn})

    def _alarm(
        self,
        key: str,
        description: str,
        namespace: str,
        metric: str,
        dimensions: Mapping[str, pulumi.Input[str]],
        statistic: str,
        threshold: float = 1,
        period: int = 300,
        evaluation_periods: int = 1,
        datapoints_to_alarm: int | None = None,
        missing: str = "notBreaching",
    ) -> None:
        self.alarms[key] = aws.cloudwatch.MetricAlarm(
            f"{self._name}-{key}",
            name=f"{self._prefix}-{key}",
            alarm_description=description,
            namespace=namespace,
            metric_name=metric,
            dimensions=dict(dimensions),
            statistic=statistic,
            period=period,
            evaluation_periods=evaluation_periods,
            datapoints_to_alarm=datapoints_to_alarm,
            threshold=threshold,
            comparison_operator="GreaterThanOrEqualToThreshold",
            # No data means nothing happened (no errors, nothing waiting), unless the alarm says otherwise.
            treat_missing_data=missing,
            alarm_actions=[self.topic.arn],
            ok_actions=[self.topic.arn],
            opts=pulumi.ResourceOptions(parent=self),
        )
