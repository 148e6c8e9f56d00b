"""Pulumi mocks that answer like AWS: realistic ARNs, names, URLs, and the data sources the program reads.

Kept in a module of its own (docs/testing.md: a Mocks class defined in a test module breaks once an async test
has run). Every registered resource is recorded with its resolved inputs, so tests assert on plain dicts after
the program has run. The recorder also fails on a duplicate (type, name), which Pulumi's own mocks let pass.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pulumi
from pulumi.runtime.mocks import MockMonitor

ACCOUNT = "123456789012"
# Not us-east-1, so that a region written into the program by mistake shows.
REGION = "eu-west-2"
PARTITION = "aws"


@dataclass
class Recorded:
    """One resource as the program registered it: wire-format (camelCase) inputs, and the mock's outputs."""

    type: str
    name: str
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    id: str = ""
    # Resource options the mocks' own arguments leave out: retainOnDelete, protect, parent and dependency URNs.
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def arn(self) -> str:
        return str(self.outputs.get("arn", ""))


@dataclass
class AwsMocks(pulumi.runtime.Mocks):
    resources: list[Recorded] = field(default_factory=list)
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    _pending_options: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    # -- what tests read -------------------------------------------------------------------------------------

    def of_type(self, type_: str) -> list[Recorded]:
        return [r for r in self.resources if r.type == type_]

    def one(self, type_: str, predicate: Callable[[Recorded], bool] = lambda r: True) -> Recorded:
        found = [r for r in self.of_type(type_) if predicate(r)]
        assert len(found) == 1, f"expected one {type_}, found {[r.name for r in found]}"
        return found[0]

    def named(self, type_: str, physical_name: str) -> Recorded:
        return self.one(type_, lambda r: r.outputs.get("name") == physical_name)

    def by_arn(self, arn: str) -> Recorded | None:
        return next((r for r in self.resources if r.arn == arn), None)

    def __iter__(self) -> Iterator[Recorded]:
        return iter(self.resources)

    # -- pulumi.runtime.Mocks --------------------------------------------------------------------------------

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        if any(r.type == args.typ and r.name == args.name for r in self.resources):
            raise ValueError(f"duplicate resource {args.typ} {args.name}")
        inputs = dict(args.inputs)
        resource_id, extra = _outputs(args.typ, args.name, inputs)
        outputs = {**inputs, **extra}
        options = self._pending_options.pop((args.typ, args.name), {})
        self.resources.append(Recorded(args.typ, args.name, inputs, outputs, resource_id, options))
        return resource_id, outputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:  # type: ignore[override]
        self.calls.append((args.token, dict(args.args)))
        answers: dict[str, dict[str, Any]] = {
            "aws:index/getCallerIdentity:getCallerIdentity": {
                "accountId": ACCOUNT,
                "arn": f"arn:aws:iam::{ACCOUNT}:user/deployer",
                "userId": "AIDAEXAMPLE",
                "id": ACCOUNT,
            },
            "aws:index/getRegion:getRegion": {
                "name": REGION,
                "region": REGION,
                "endpoint": f"ec2.{REGION}.amazonaws.com",
                "description": "Europe (London)",
                "id": REGION,
            },
            "aws:index/getPartition:getPartition": {
                "partition": PARTITION,
                "dnsSuffix": "amazonaws.com",
                "reverseDnsPrefix": "com.amazonaws",
                "id": PARTITION,
            },
            "aws:ec2/getVpc:getVpc": {"id": "vpc-0default", "cidrBlock": "172.31.0.0/16", "default": True},
            "aws:ec2/getSubnets:getSubnets": {
                "ids": ["subnet-0aaa", "subnet-0bbb", "subnet-0ccc"],
                "id": REGION,
            },
            "aws:ecr/getAuthorizationToken:getAuthorizationToken": {
                "userName": "AWS",
                "password": "mock-ecr-password",
                "authorizationToken": "QVdTOm1vY2s=",
                "proxyEndpoint": f"https://{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com",
                "expiresAt": "2026-11-27T00:00:00Z",
                "id": REGION,
            },
        }
        if args.token not in answers:
            raise NotImplementedError(f"the mocks do not answer {args.token}: add it to tests/infra/mocks.py")
        # A bare dict: the SDK iterates the failures of a (result, failures) pair, and None is not iterable.
        return answers[args.token]


class RecordingMonitor(MockMonitor):
    """The SDK's mock monitor, also noting the options each registration carried."""

    def __init__(self, mocks: AwsMocks) -> None:
        super().__init__(mocks)
        self.recorder = mocks

    def RegisterResource(self, request: Any) -> Any:
        self.recorder._pending_options[(request.type, request.name)] = {
            "retainOnDelete": request.retainOnDelete,
            "protect": request.protect,
            "parent": request.parent,
            "dependencies": list(request.dependencies),
        }
        return super().RegisterResource(request)


def _autoname(name: str) -> str:
    """Pulumi's auto-naming: the logical name and 7 hex characters."""
    return f"{name}-{hashlib.sha256(name.encode()).hexdigest()[:7]}"


def _hex(name: str, n: int = 12) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:n]


def _outputs(typ: str, name: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(id, outputs) as AWS would answer for this resource type."""
    physical = inputs.get("name") or _autoname(name)
    base = f"{REGION}:{ACCOUNT}"
    if typ == "aws:dynamodb/table:Table":
        arn = f"arn:aws:dynamodb:{base}:table/{physical}"
        out: dict[str, Any] = {"name": physical, "arn": arn}
        if inputs.get("streamEnabled"):
            out["streamArn"] = f"{arn}/stream/2026-11-26T04:26:33.123"
            out["streamLabel"] = "2026-11-26T04:26:33.123"
        return physical, out
    if typ == "aws:kinesis/stream:Stream":
        arn = f"arn:aws:kinesis:{base}:stream/{physical}"
        return arn, {"name": physical, "arn": arn}
    if typ == "aws:lambda/function:Function":
        arn = f"arn:aws:lambda:{base}:function:{physical}"
        invoke = f"arn:aws:apigateway:{REGION}:lambda:path/2015-03-31/functions/{arn}/invocations"
        return physical, {
            "name": physical,
            "arn": arn,
            "invokeArn": invoke,
            "qualifiedArn": f"{arn}:$LATEST",
            "version": "$LATEST",
        }
    if typ == "aws:iam/role:Role":
        return physical, {
            "name": physical,
            "arn": f"arn:aws:iam::{ACCOUNT}:role/{physical}",
            "uniqueId": _hex(name),
        }
    if typ == "aws:iam/rolePolicy:RolePolicy":
        return f"{inputs.get('role')}:{physical}", {"name": physical}
    if typ == "aws:cloudwatch/logGroup:LogGroup":
        return physical, {"name": physical, "arn": f"arn:aws:logs:{base}:log-group:{physical}"}
    if typ == "aws:sqs/queue:Queue":
        url = f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{physical}"
        return url, {"name": physical, "arn": f"arn:aws:sqs:{base}:{physical}", "url": url}
    if typ == "aws:sns/topic:Topic":
        arn = f"arn:aws:sns:{base}:{physical}"
        return arn, {"name": physical, "arn": arn}
    if typ == "aws:kms/key:Key":
        key_id = f"{_hex(name, 8)}-1234-4321-abcd-{_hex(name + 'k', 12)}"
        return key_id, {"keyId": key_id, "arn": f"arn:aws:kms:{base}:key/{key_id}"}
    if typ == "aws:kms/alias:Alias":
        return physical, {"name": physical, "arn": f"arn:aws:kms:{base}:{physical}"}
    if typ == "aws:ecr/repository:Repository":
        return physical, {
            "name": physical,
            "arn": f"arn:aws:ecr:{base}:repository/{physical}",
            "registryId": ACCOUNT,
            "repositoryUrl": f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{physical}",
        }
    if typ == "aws:ecs/cluster:Cluster":
        arn = f"arn:aws:ecs:{base}:cluster/{physical}"
        return arn, {"name": physical, "arn": arn}
    if typ == "aws:ecs/taskDefinition:TaskDefinition":
        family = inputs["family"]
        arn = f"arn:aws:ecs:{base}:task-definition/{family}"
        return family, {"arn": f"{arn}:1", "arnWithoutRevision": arn, "revision": 1}
    if typ == "aws:ec2/securityGroup:SecurityGroup":
        group_id = f"sg-0{_hex(name, 16)}"
        return group_id, {"name": physical, "arn": f"arn:aws:ec2:{base}:security-group/{group_id}"}
    if typ == "aws:apigateway/restApi:RestApi":
        api_id = _hex(name, 10)
        return api_id, {
            "name": physical,
            "arn": f"arn:aws:apigateway:{REGION}::/restapis/{api_id}",
            "executionArn": f"arn:aws:execute-api:{base}:{api_id}",
            "rootResourceId": _hex(name + "root", 10),
        }
    if typ == "aws:apigateway/stage:Stage":
        api_id, stage = inputs["restApi"], inputs["stageName"]
        return f"ags-{api_id}-{stage}", {
            "arn": f"arn:aws:apigateway:{REGION}::/restapis/{api_id}/stages/{stage}",
            "executionArn": f"arn:aws:execute-api:{base}:{api_id}/{stage}",
            "invokeUrl": f"https://{api_id}.execute-api.{REGION}.amazonaws.com/{stage}",
        }
    if typ == "aws:lambda/eventSourceMapping:EventSourceMapping":
        uuid = f"{_hex(name, 8)}-0000-4000-8000-{_hex(name + 'u', 12)}"
        return uuid, {"uuid": uuid, "arn": f"arn:aws:lambda:{base}:event-source-mapping:{uuid}"}
    if typ == "aws:cloudwatch/metricAlarm:MetricAlarm":
        return physical, {"name": physical, "arn": f"arn:aws:cloudwatch:{base}:alarm:{physical}"}
    if typ == "docker-build:index:Image":
        digest = f"sha256:{hashlib.sha256(name.encode()).hexdigest()}"
        repository = str(inputs["tags"][0]).rsplit(":", 1)[0]
        return digest, {"digest": digest, "ref": f"{repository}@{digest}"}
    return f"{name}-id", {"name": physical} if "name" in inputs else {}


def policy_of(resource: Recorded) -> dict[str, Any]:
    """A RolePolicy's document, parsed."""
    return json.loads(resource.inputs["policy"])
