"""A tool's MCP input schema, and the check of call arguments against it.

Owns the JSON Schema (Draft 2020-12) advertised for each tool: an object whose
properties are the spec's params, one flat namespace whatever part of the request each
param goes to, with ``required`` and ``additionalProperties: false``; and the check that
a call's arguments satisfy exactly that schema before anything is sent. It must never
let through an argument the schema would refuse, nor coerce one into another type (the
only normalisation is an integral float such as ``3.0`` for an ``integer``, which JSON
Schema itself counts as an integer), and never quote an argument's value in a message.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from .spec import Tool

# Listed in a message about an unknown argument, so a model can correct itself.
MAX_NAMES_IN_MESSAGE = 20


def input_schema(tool: Tool) -> dict[str, Any]:
    """The ``inputSchema`` of ``tool``."""
    properties: dict[str, Any] = {}
    for p in tool.params:
        prop: dict[str, Any] = {"type": p.type}
        if p.type == "array":
            # Some clients refuse an array schema without ``items``; the spec says nothing
            # about the elements, so any element is allowed.
            prop["items"] = {}
        if p.description:
            prop["description"] = p.description
        properties[p.name] = prop
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    required = [p.name for p in tool.params if p.required]
    if required:
        schema["required"] = required
    schema["additionalProperties"] = False
    return schema


def json_type(value: object) -> str:
    """The JSON type name of a decoded JSON value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _conforms(value: object, kind: str) -> tuple[bool, object]:
    """Whether ``value`` is of JSON Schema type ``kind``, and the value to use."""
    if kind == "string":
        return isinstance(value, str), value
    if kind == "boolean":
        return isinstance(value, bool), value
    if kind == "integer":
        if isinstance(value, bool):
            return False, value
        if isinstance(value, int):
            return True, value
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            return True, int(value)
        return False, value
    if kind == "number":
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False, value
        return math.isfinite(value), value
    if kind == "object":
        return isinstance(value, dict), value
    if kind == "array":
        return isinstance(value, list), value
    return False, value


def _article(kind: str) -> str:
    return f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"


def check_arguments(tool: Tool, arguments: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The arguments to use, and every problem found (empty when they are valid)."""
    problems: list[str] = []
    values: dict[str, Any] = {}
    known = [p.name for p in tool.params]
    for name, value in arguments.items():
        param = tool.param(name)
        if param is None:
            listed = ", ".join(known[:MAX_NAMES_IN_MESSAGE])
            if len(known) > MAX_NAMES_IN_MESSAGE:
                listed += ", …"
            takes = f"it takes: {listed}" if known else "it takes no arguments"
            problems.append(f"unknown argument {name[:128]!r} ({takes})")
            continue
        ok, normalised = _conforms(value, param.type)
        if not ok:
            problems.append(
                f"argument {name!r} must be {_article(param.type)}, got {json_type(value)}"
            )
            continue
        values[name] = normalised
    for p in tool.params:
        if p.required and p.name not in arguments:
            problems.append(f"missing required argument {p.name!r}")
    return values, problems
