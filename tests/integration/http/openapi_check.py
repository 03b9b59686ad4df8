"""Check a JSON body against the schema an OpenAPI 3.1 spec declares for a response.

A small validator for the part of JSON Schema that pydantic writes into FastAPI's spec (``$ref`` into
``components/schemas``, ``type``, ``properties``, ``required``, ``additionalProperties``, ``items``,
``anyOf``, ``enum``, ``const``, ``format: date-time``); the ``jsonschema`` package is not among this
project's dependencies. A keyword it does not know is an error, never a silent pass, so a schema that
grows past it fails the test that uses it instead of passing unchecked.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

ANNOTATIONS = frozenset({"title", "description", "default", "examples", "deprecated", "readOnly", "writeOnly"})
KNOWN = ANNOTATIONS | {
    "$ref",
    "type",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "anyOf",
    "enum",
    "const",
    "format",
}
TYPES: dict[str, Any] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def response_schema(spec: dict[str, Any], path: str, method: str, status: int) -> dict[str, Any] | None:
    """The JSON schema the spec declares for ``method path`` answering ``status``; None when it declares no body."""
    responses = spec["paths"][path][method.lower()]["responses"]
    assert str(status) in responses, f"{method} {path}: the spec declares no {status} (it has {sorted(responses)})"
    content = responses[str(status)].get("content") or {}
    if not content:
        return None
    assert set(content) == {"application/json"}, f"{method} {path} {status}: {sorted(content)}"
    schema: dict[str, Any] = content["application/json"]["schema"]
    return schema


def errors(value: Any, schema: dict[str, Any], spec: dict[str, Any], where: str = "$") -> list[str]:
    """Every way ``value`` breaks ``schema`` (empty when it conforms), each with its JSON path."""
    unknown = set(schema) - KNOWN
    if unknown:
        raise ValueError(f"{where}: the schema uses {sorted(unknown)}, which this checker does not know")
    if "$ref" in schema:
        return errors(value, _resolve(schema["$ref"], spec), spec, where)
    found: list[str] = []
    if "anyOf" in schema:
        branches = [errors(value, branch, spec, where) for branch in schema["anyOf"]]
        if all(branches):
            found.append(f"{where}: matches none of anyOf: " + " | ".join("; ".join(b) for b in branches))
    if "type" in schema:
        kinds = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(TYPES[kind](value) for kind in kinds):
            return [*found, f"{where}: {type(value).__name__} is not {'/'.join(kinds)}"]
    if "enum" in schema and value not in schema["enum"]:
        found.append(f"{where}: {value!r} is not one of {schema['enum']}")
    if "const" in schema and value != schema["const"]:
        found.append(f"{where}: {value!r} is not {schema['const']!r}")
    if schema.get("format") == "date-time" and isinstance(value, str):
        try:
            datetime.fromisoformat(value)
        except ValueError:
            found.append(f"{where}: {value!r} is not a date-time")
    if isinstance(value, dict):
        found += _object_errors(value, schema, spec, where)
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            found += errors(item, schema["items"], spec, f"{where}[{i}]")
    return found


def _object_errors(value: dict[str, Any], schema: dict[str, Any], spec: dict[str, Any], where: str) -> list[str]:
    properties: dict[str, Any] = schema.get("properties", {})
    found = [f"{where}: required {name!r} is missing" for name in schema.get("required", []) if name not in value]
    extra = schema.get("additionalProperties", True)
    for name, item in value.items():
        if name in properties:
            found += errors(item, properties[name], spec, f"{where}.{name}")
        elif extra is False:
            found.append(f"{where}: {name!r} is not declared (additionalProperties: false)")
        elif isinstance(extra, dict):
            found += errors(item, extra, spec, f"{where}.{name}")
    return found


def _resolve(ref: str, spec: dict[str, Any]) -> dict[str, Any]:
    prefix = "#/components/schemas/"
    if not ref.startswith(prefix):
        raise ValueError(f"unsupported $ref {ref!r}")
    schema: dict[str, Any] = spec["components"]["schemas"][ref.removeprefix(prefix)]
    return schema
