"""The REST API: every route in eventlog.topology.ROUTES, a stage with throttling, access logs and tracing."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from eventlog.topology import ROUTES
from infra import openapi, policy
from infra.config import ApiAuthorization

# The access log line: who called what, the answer, and where the time went.
ACCESS_LOG_FORMAT = json.dumps(
    {
        "requestId": "$context.requestId",
        "requestTime": "$context.requestTime",
        "ip": "$context.identity.sourceIp",
        "caller": "$context.identity.caller",
        "user": "$context.identity.userArn",
        "httpMethod": "$context.httpMethod",
        "resourcePath": "$context.resourcePath",
        "path": "$context.path",
        "status": "$context.status",
        "responseLength": "$context.responseLength",
        "integrationLatency": "$context.integrationLatency",
        "responseLatency": "$context.responseLatency",
        "errorMessage": "$context.error.message",
    },
    separators=(",", ":"),
)
API_GATEWAY_LOGS_POLICY = "policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs"


@dataclass
class ApiArgs:
    prefix: str
    functions: Mapping[str, aws.lambda_.Function]
    partition: pulumi.Input[str] = "aws"
    authorization: ApiAuthorization = "iam"
    cognito_user_pool_arns: Sequence[str] = ()
    stage_name: str = "v1"
    throttle_rate_limit: float = 100.0
    throttle_burst_limit: int = 200
    log_retention_days: int = 30
    tracing: bool = True
    manage_account: bool = True


class Api(pulumi.ComponentResource):
    """A regional REST API imported from the document infra.openapi generates, IAM (SigV4) authorization by
    default or a Cognito user pool authorizer, one stage, and a Lambda permission per route."""

    rest_api: aws.apigateway.RestApi
    stage: aws.apigateway.Stage
    url: pulumi.Output[str]
    body: pulumi.Output[str]

    def __init__(self, name: str, args: ApiArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("eventsourcing:infra:Api", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        served = sorted({route.function for route in ROUTES})
        self.body = pulumi.Output.all(*[args.functions[key].invoke_arn for key in served]).apply(
            lambda arns: json.dumps(
                openapi.rest_api_document(
                    f"{args.prefix} event sourcing API",
                    ROUTES,
                    dict(zip(served, arns, strict=True)),
                    args.authorization,
                    args.cognito_user_pool_arns,
                ),
                sort_keys=True,
            )
        )
        self.rest_api = aws.apigateway.RestApi(
            f"{name}-rest-api",
            name=f"{args.prefix}-api",
            description=f"{args.prefix}: append events, read state, history and event status",
            body=self.body,
            endpoint_configuration=aws.apigateway.RestApiEndpointConfigurationArgs(types="REGIONAL"),
            put_rest_api_mode="overwrite",
            opts=child,
        )
        for route in ROUTES:
            aws.lambda_.Permission(
                f"{name}-{route.operation_id}-invoke",
                action="lambda:InvokeFunction",
                function=args.functions[route.function].name,
                principal="apigateway.amazonaws.com",
                # This route of this API only, in any stage.
                source_arn=pulumi.Output.concat(
                    self.rest_api.execution_arn, "/*/", openapi.source_arn_path(route)
                ),
                opts=child,
            )
        deployment = aws.apigateway.Deployment(
            f"{name}-deployment",
            rest_api=self.rest_api.id,
            # A new deployment whenever the routes, integrations or authorization change.
            triggers={"body": self.body.apply(lambda body: hashlib.sha256(body.encode()).hexdigest())},
            opts=child,
        )
        access_logs = aws.cloudwatch.LogGroup(
            f"{name}-access-logs",
            name=f"/aws/apigateway/{args.prefix}-api",
            retention_in_days=args.log_retention_days,
            opts=child,
        )
        stage_depends: list[pulumi.Resource] = []
        if args.manage_account:
            stage_depends.append(self._account(name, args.partition))
        self.stage = aws.apigateway.Stage(
            f"{name}-stage",
            rest_api=self.rest_api.id,
            deployment=deployment.id,
            stage_name=args.stage_name,
            access_log_settings=aws.apigateway.StageAccessLogSettingsArgs(
                destination_arn=access_logs.arn, format=ACCESS_LOG_FORMAT
            ),
            xray_tracing_enabled=args.tracing,
            opts=pulumi.ResourceOptions(parent=self, depends_on=stage_depends),
        )
        aws.apigateway.MethodSettings(
            f"{name}-method-settings",
            rest_api=self.rest_api.id,
            stage_name=self.stage.stage_name,
            method_path="*/*",
            settings=aws.apigateway.MethodSettingsSettingsArgs(
                metrics_enabled=True,
                logging_level="ERROR",
                data_trace_enabled=False,
                throttling_rate_limit=args.throttle_rate_limit,
                throttling_burst_limit=args.throttle_burst_limit,
            ),
            opts=child,
        )
        self.url = self.stage.invoke_url
        self.register_outputs({"url": self.url})

    def _account(self, name: str, partition: pulumi.Input[str]) -> aws.apigateway.Account:
        """API Gateway writes any stage's logs through one role per account and region (AWS's design): the
        managed policy AWS provides for exactly that.

        The role outlives the stack: the account setting is not undone by a destroy (it is not this stack's
        alone), and if it pointed at a deleted role every other API in the region would stop logging."""
        kept = pulumi.ResourceOptions(parent=self, retain_on_delete=True)
        role = aws.iam.Role(
            f"{name}-cloudwatch-role",
            description="API Gateway (account-wide) writes access and execution logs to CloudWatch Logs",
            assume_role_policy=policy.assume_role_policy("apigateway.amazonaws.com"),
            opts=kept,
        )
        attachment = aws.iam.RolePolicyAttachment(
            f"{name}-cloudwatch-role-policy",
            role=role.name,
            policy_arn=pulumi.Output.concat("arn:", partition, ":iam::aws:", API_GATEWAY_LOGS_POLICY),
            opts=kept,
        )
        return aws.apigateway.Account(
            f"{name}-account",
            cloudwatch_role_arn=role.arn,
            opts=pulumi.ResourceOptions.merge(kept, pulumi.ResourceOptions(depends_on=[attachment])),
        )
