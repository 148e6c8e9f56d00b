"""The exact event shapes AWS hands to Lambda functions, built from what the emulator returns.

- `rest_api_event`: API Gateway REST API, Lambda proxy integration (payload format 1.0).
- `kinesis_event`: a Kinesis event source mapping's batch (from GetRecords records).
- `dynamodb_stream_event`: a DynamoDB Streams event source mapping's batch (from GetRecords records).

The pollers and the HTTP server in this folder use them, and so do the tests that call handlers directly.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

ACCOUNT_ID = "123456789012"
STAGE = "local"
API_ID = "devstack"


def kinesis_stream_arn(region: str, stream: str) -> str:
    return f"arn:aws:kinesis:{region}:{ACCOUNT_ID}:stream/{stream}"


def function_arn(region: str, name: str) -> str:
    return f"arn:aws:lambda:{region}:{ACCOUNT_ID}:function:{name}"


def kinesis_event(
    records: Sequence[Mapping[str, Any]], *, shard_id: str, stream_arn: str, region: str
) -> dict[str, Any]:
    """A Kinesis event from GetRecords records (`Data` as bytes, as boto3 returns it)."""
    out = []
    for record in records:
        arrival = record.get("ApproximateArrivalTimestamp")
        arrival_s = arrival.timestamp() if isinstance(arrival, datetime) else float(arrival or time.time())
        out.append(
            {
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": record["PartitionKey"],
                    "sequenceNumber": record["SequenceNumber"],
                    "data": base64.b64encode(record["Data"]).decode("ascii"),
                    "approximateArrivalTimestamp": round(arrival_s, 3),
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": f"{shard_id}:{record['SequenceNumber']}",
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": f"arn:aws:iam::{ACCOUNT_ID}:role/devstack",
                "awsRegion": region,
                "eventSourceARN": stream_arn,
            }
        )
    return {"Records": out}


def dynamodb_stream_event(
    records: Sequence[Mapping[str, Any]], *, stream_arn: str, region: str
) -> dict[str, Any]:
    """A DynamoDB Streams event from GetRecords records (the `dynamodb` part is passed through as sent)."""
    out = []
    for record in records:
        ddb = dict(record["dynamodb"])
        created = ddb.get("ApproximateCreationDateTime")
        if isinstance(created, datetime):
            ddb["ApproximateCreationDateTime"] = int(created.timestamp())
        out.append(
            {
                "eventID": record.get("eventID") or uuid.uuid4().hex,
                "eventName": record["eventName"],
                "eventVersion": record.get("eventVersion", "1.1"),
                "eventSource": "aws:dynamodb",
                "awsRegion": record.get("awsRegion", region),
                "dynamodb": ddb,
                "eventSourceARN": stream_arn,
            }
        )
    return {"Records": out}


def rest_api_event(
    method: str,
    resource: str,
    path: str,
    *,
    headers: Sequence[tuple[str, str]] = (),
    query: Sequence[tuple[str, str]] = (),
    body: bytes | None = None,
    source_ip: str = "127.0.0.1",
) -> dict[str, Any]:
    """An API Gateway REST proxy event. `path` is the raw (percent-encoded) request path without the stage;
    path parameters are matched against `resource` and URL-decoded, as API Gateway does. A body that is not
    UTF-8 text arrives base64-encoded with isBase64Encoded true."""
    decoded_path = unquote(path)
    path_parameters = match_resource(resource, path)
    single_headers: dict[str, str] = {}
    multi_headers: dict[str, list[str]] = {}
    for name, value in headers:
        single_headers[name] = value  # API Gateway keeps the last value in `headers`
        multi_headers.setdefault(name, []).append(value)
    single_query: dict[str, str] = {}
    multi_query: dict[str, list[str]] = {}
    for name, value in query:
        single_query[name] = value
        multi_query.setdefault(name, []).append(value)
    is_base64 = False
    text: str | None = None
    if body is not None and len(body) > 0:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            text = base64.b64encode(body).decode("ascii")
            is_base64 = True
    now = datetime.now(UTC)
    request_id = str(uuid.uuid4())
    return {
        "resource": resource,
        "path": decoded_path,
        "httpMethod": method,
        "headers": single_headers or None,
        "multiValueHeaders": multi_headers or None,
        "queryStringParameters": single_query or None,
        "multiValueQueryStringParameters": multi_query or None,
        "pathParameters": path_parameters or None,
        "stageVariables": None,
        "requestContext": {
            "resourceId": "devstack",
            "resourcePath": resource,
            "httpMethod": method,
            "extendedRequestId": request_id,
            "requestTime": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "path": f"/{STAGE}{decoded_path}",
            "accountId": ACCOUNT_ID,
            "protocol": "HTTP/1.1",
            "stage": STAGE,
            "domainPrefix": "localhost",
            "requestTimeEpoch": int(now.timestamp() * 1000),
            "requestId": request_id,
            "identity": {
                "sourceIp": source_ip,
                "userAgent": single_headers.get("User-Agent") or single_headers.get("user-agent"),
                "caller": None,
                "user": None,
                "userArn": None,
                "accessKey": None,
                "accountId": None,
                "cognitoIdentityPoolId": None,
                "cognitoIdentityId": None,
                "cognitoAuthenticationType": None,
                "cognitoAuthenticationProvider": None,
                "apiKey": None,
                "apiKeyId": None,
                "principalOrgId": None,
            },
            "domainName": "localhost",
            "apiId": API_ID,
        },
        "body": text,
        "isBase64Encoded": is_base64,
    }


def match_resource(resource: str, path: str) -> dict[str, str] | None:
    """Path parameters if the raw `path` matches the `resource` template ({name} matches one segment), else
    None. Parameters are URL-decoded after splitting, so an encoded slash stays inside its segment."""
    want = resource.strip("/").split("/")
    have = path.split("?", 1)[0].strip("/").split("/")
    if len(want) != len(have):
        return None
    params: dict[str, str] = {}
    for template, segment in zip(want, have, strict=True):
        if template.startswith("{") and template.endswith("}"):
            if not segment:
                return None
            params[template[1:-1]] = unquote(segment)
        elif template != segment:
            return None
    return params
