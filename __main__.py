"""The Pulumi program (`pulumi up` from the repo root): read this stack's config, build the stack from infra/.

Every config key is a field of infra.config.StackArgs in camelCase (`logRetentionDays` -> log_retention_days),
except `namePrefix` (-> prefix, default `es-<stack name>`); docs/deploy.md lists them with their defaults.
An unknown key (a typo) or a bad value stops the program with one line before anything changes.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import re
import types
import typing
from typing import Any

import pulumi
from pulumi.runtime import config as runtime_config

from infra.config import ConfigError, StackArgs
from infra.stack import build

# Fields set by the program, never by config.
NOT_CONFIG = {"prefix", "lambda_code"}


def config_key(field: str) -> str:
    """`log_retention_days` -> `logRetentionDays`."""
    head, *rest = field.split("_")
    return head + "".join(part.capitalize() for part in rest)


def read_value(config: pulumi.Config, key: str, hint: Any) -> Any:
    """One config value, read with the getter its StackArgs type calls for (None when unset)."""
    origin = typing.get_origin(hint)
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if origin in (typing.Union, types.UnionType):  # `int | None`
        return read_value(config, key, args[0])
    if hint is bool:
        return config.get_bool(key)
    if hint is int:
        return config.get_int(key)
    if hint is float:
        return config.get_float(key)
    if hint is str or origin is typing.Literal:
        return config.get(key)
    value = config.get_object(key)  # maps and lists, given as YAML or JSON
    if value is None:
        return None
    if origin is collections.abc.Mapping:
        if not isinstance(value, dict):
            raise ConfigError(f"config {key} must be a map")
        return {str(k): _coerce(v, args[1], f"{key}.{k}") for k, v in value.items()}
    if not isinstance(value, list):
        raise ConfigError(f"config {key} must be a list")
    return [_coerce(v, args[0], key) for v in value]


def _coerce(value: Any, kind: type, where: str) -> Any:
    if kind is int and isinstance(value, str) and value.lstrip("-").isdigit():
        return int(value)
    if not isinstance(value, kind) or isinstance(value, bool) is not (kind is bool):
        raise ConfigError(f"config {where} must be {'an integer' if kind is int else 'a ' + kind.__name__}")
    return value


def read_args(config: pulumi.Config, stack: str) -> StackArgs:
    """StackArgs from this stack's config; unknown keys are an error."""
    hints = typing.get_type_hints(StackArgs)
    fields = {config_key(f.name): f.name for f in dataclasses.fields(StackArgs) if f.name not in NOT_CONFIG}
    known = {"namePrefix", *fields}
    given = {*runtime_config.CONFIG.get(), *runtime_config.get_config_env()}
    ours = sorted(k.split(":", 1)[1] for k in given if k.startswith(f"{config.name}:"))
    typos = [k for k in ours if k not in known]
    if typos:
        raise ConfigError(f"unknown config key(s) {', '.join(typos)}; see docs/deploy.md for the keys")
    values: dict[str, Any] = {}
    try:
        for key, name in fields.items():
            value = read_value(config, key, hints[name])
            if value is not None:
                values[name] = value
    except (pulumi.ConfigTypeError, ValueError) as exc:
        raise ConfigError(str(exc)) from None
    prefix = config.get("namePrefix") or re.sub(r"[^a-z0-9-]", "-", f"es-{stack}".lower())
    return StackArgs(prefix=prefix, **values)


stack = build(read_args(pulumi.Config(), pulumi.get_stack()))
for name, value in stack.outputs.items():
    pulumi.export(name, value)
