"""The REST API's definition, generated from eventlog.topology.ROUTES for API Gateway to import.

Why not import api/openapi.yaml itself: that document describes the API for people and clients, and the
handlers validate every request and answer with their own 4xx bodies; API Gateway request validation would
answer some bad requests first, in another shape. So API Gateway gets the routes only (paths, methods, path
parameters), each a Lambda proxy integration, plus the authorization. tests/infra keep the two documents'
routes identical.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from eventlog.topology import RouteSpec
from infra.config import ApiAuthorization

_PARAM_RE = re.compile(r"\{([^}/]+)\}")


def path_parameters(resource: str) -> list[str]:
    """`/aggregates/{aggregate_id}/events` -> `["aggregate_id"]`."""
    return _PARAM_RE.findall(resource)


def source_arn_path(route: RouteSpec) -> str:
    """The part of an execute-api ARN that names one route, path parameters as `*`:
    `POST/aggregates/*/events`."""
    return f"{route.method}{_PARAM_RE.sub('*', route.resource)}"


def security_schemes(
    authorization: ApiAuthorization, cognito_user_pool_arns: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """The OpenAPI security scheme API Gateway reads for the chosen authorization (none for `none`)."""
    if authorization == "iam":
        return {
            "sigv4": {
                "type": "apiKey",
                "name": "Authorization",
                "in": "header",
                "x-amazon-apigateway-authtype": "awsSigv4",
            }
        }
    if authorization == "cognito":
        return {
            "cognito": {
                "type": "apiKey",
                "name": "Authorization",
                "in": "header",
                "x-amazon-apigateway-authtype": "cognito_user_pools",
                "x-amazon-apigateway-authorizer": {
                    "type": "cognito_user_pools",
                    "providerARNs": list(cognito_user_pool_arns),
                },
            }
        }
    return {}


def rest_api_document(
    title: str,
    routes: Sequence[RouteSpec],
    invoke_arns: Mapping[str, str],
    authorization: ApiAuthorization,
    cognito_user_pool_arns: Sequence[str] = (),
) -> dict[str, Any]:
    """An OpenAPI 3.0 document serving every route through its function's Lambda proxy integration.

    `invoke_arns` maps a function key to its invoke ARN (`arn:aws:apigateway:...:lambda:path/...`)."""
    schemes = security_schemes(authorization, cognito_user_pool_arns)
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        if route.function not in invoke_arns:
            raise KeyError(
                f"route {route.method} {route.resource} names function {route.function!r}, not deployed"
            )
        operation: dict[str, Any] = {
            "operationId": route.operation_id,
            "parameters": [
                {"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
                for p in path_parameters(route.resource)
            ],
            "responses": {"default": {"description": "The function's answer, passed through unchanged."}},
            "x-amazon-apigateway-integration": {
                "type": "aws_proxy",
                # Lambda is always invoked with POST, whatever the route's method.
                "httpMethod": "POST",
                "uri": invoke_arns[route.function],
                "passthroughBehavior": "when_no_match",
            },
        }
        if schemes:
            operation["security"] = [{name: []} for name in schemes]
        method = route.method.lower()
        if method in paths.setdefault(route.resource, {}):
            raise ValueError(f"route {route.method} {route.resource} is defined twice")
        paths[route.resource][method] = operation
    document: dict[str, Any] = {
        "openapi": "3.0.1",
        "info": {"title": title, "version": "1.0"},
        "paths": paths,
    }
    if schemes:
        document["components"] = {"securitySchemes": schemes}
    return document
