"""Documents generated from the published spec and the error registry: the error catalogue and Postman."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from kernel.errors import PROBLEM_TYPE_BASE, ServiceError
from services.http.openapi import problem_types

POSTMAN_SCHEMA = "https://schema.getpostman.com/json/collection/v2.1.0/collection.json"


def error_catalogue(extra: Iterable[type[ServiceError]] = ()) -> str:
    """Every problem type as a markdown table: type, status, title, when it happens, what to do."""
    lines = [
        f"Every error is `application/problem+json`; its `type` is `{PROBLEM_TYPE_BASE}<type>`.",
        "",
        "| type | status | title | when | what to do |",
        "|---|---|---|---|---|",
    ]
    for t in problem_types(extra):
        lines.append(f"| `{t['slug']}` | {t['status']} | {t['title']} | {t['when']} | {t['remedy']} |")
    return "\n".join(lines)


def replace_section(text: str, name: str, body: str) -> str:
    """``text`` with what lies between ``<!-- name:start -->`` and ``<!-- name:end -->`` replaced by ``body``."""
    pattern = re.compile(rf"(<!-- {name}:start -->\n).*?(<!-- {name}:end -->)", re.S)
    if not pattern.search(text):
        raise ValueError(f"no <!-- {name}:start --> ... <!-- {name}:end --> section")
    return pattern.sub(lambda m: m.group(1) + body.rstrip("\n") + "\n" + m.group(2), text)


def postman_collection(spec: dict[str, Any]) -> dict[str, Any]:
    """A Postman v2.1 collection: one request per operation, with the API key and base URL as variables."""
    folders: dict[str, list[dict[str, Any]]] = {}
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            folders.setdefault((operation.get("tags") or ["api"])[0], []).append(_item(spec, path, method, operation))
    return {
        "info": {
            "name": spec["info"]["title"],
            "description": spec["info"]["description"],
            "version": spec["info"]["version"],
            "schema": POSTMAN_SCHEMA,
        },
        "auth": {"type": "bearer", "bearer": [{"key": "token", "value": "{{apiKey}}", "type": "string"}]},
        "variable": [
            {"key": "baseUrl", "value": "http://127.0.0.1:3000/api/v1"},
            {"key": "apiKey", "value": ""},
        ],
        "item": [{"name": name, "item": items} for name, items in folders.items()],
    }


def _item(spec: dict[str, Any], path: str, method: str, operation: dict[str, Any]) -> dict[str, Any]:
    raw = "{{baseUrl}}" + re.sub(r"\{(\w+)\}", r":\1", path)
    request: dict[str, Any] = {
        "method": method.upper(),
        "url": {
            "raw": raw,
            "host": ["{{baseUrl}}"],
            "path": [p for p in re.sub(r"\{(\w+)\}", r":\1", path).split("/") if p],
            "variable": [{"key": p["name"], "value": ""} for p in operation.get("parameters", []) if p["in"] == "path"],
        },
        "description": operation.get("description") or operation.get("summary", ""),
    }
    content = (operation.get("requestBody") or {}).get("content", {})
    if "multipart/form-data" in content:
        request["body"] = {"mode": "formdata", "formdata": _form(spec, content["multipart/form-data"]["schema"])}
    elif "application/json" in content:
        request["body"] = {"mode": "raw", "raw": "{}", "options": {"raw": {"language": "json"}}}
    return {"name": operation.get("summary") or f"{method.upper()} {path}", "request": request}


def _form(spec: dict[str, Any], schema: dict[str, Any]) -> list[dict[str, Any]]:
    """Form fields of a multipart body; the body schema is a $ref FastAPI names after the route."""
    if "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    fields: list[dict[str, Any]] = []
    for name, prop in (schema.get("properties") or {}).items():
        if _is_file(prop) or _is_file(prop.get("items") or {}):
            fields.append({"key": name, "type": "file", "src": []})
        else:
            fields.append({"key": name, "type": "text", "value": ""})
    return fields


def _is_file(prop: dict[str, Any]) -> bool:
    return prop.get("format") == "binary" or prop.get("contentMediaType") == "application/octet-stream"


def route_reference(spec: dict[str, Any], max_lines: int = 40) -> str:
    """Every route: what it does, a curl call and a real answer (from the spec's examples), its error statuses."""
    parts: list[str] = []
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            parts.append(_route_section(spec, path, method, operation, max_lines))
    return "\n\n".join(parts)


def _route_section(spec: dict[str, Any], path: str, method: str, operation: dict[str, Any], max_lines: int) -> str:
    lines = [
        f"### `{method.upper()} /api/v1{path}`",
        "",
        (operation.get("description") or operation["summary"]).strip(),
    ]
    request = _example(operation.get("requestBody") or {})
    fields = _body_fields_of(spec, operation)
    call = ["curl -s", f"-X {method.upper()}"] if method != "get" else ["curl -s"]
    if operation.get("security"):
        call.append('-H "Authorization: Bearer $CV_API_KEY"')
    if isinstance(request, dict):
        for key, value in request.items():
            for one in value if isinstance(value, list) else [value]:
                is_file = fields.get(key, False)
                call.append(f"-F {key}=@{one}" if is_file else f"-F '{key}={one}'")
    url = "http://127.0.0.1:3000/api/v1" + re.sub(r"\{(\w+)\}", r"$\1", path).replace("$job_id", "$JOB_ID")
    call.append(f'"{url}"')
    lines += ["", "```bash", " \\\n  ".join(call), "```"]
    for status, response in operation["responses"].items():
        body = ((response.get("content") or {}).get("application/json") or {}).get("example")
        if body is not None:
            text = json.dumps(body, indent=2).splitlines()
            if len(text) > max_lines:
                text = [*text[:max_lines], "  ..."]
            lines += ["", f"Answer `{status}` (a real one):", "", "```json", *text, "```"]
    errors = sorted(s for s in operation["responses"] if s.isdigit() and int(s) >= 400)
    lines += ["", "Errors: " + ", ".join(f"`{s}`" for s in errors) + " (see the catalogue below)."]
    return "\n".join(lines)


def _example(request_body: dict[str, Any]) -> Any:
    for media in (request_body.get("content") or {}).values():
        if "example" in media:
            return media["example"]
    return None


def _body_fields_of(spec: dict[str, Any], operation: dict[str, Any]) -> dict[str, bool]:
    """Form field name -> whether it is a file."""
    out: dict[str, bool] = {}
    for media in ((operation.get("requestBody") or {}).get("content") or {}).values():
        schema = media.get("schema") or {}
        if "$ref" in schema:
            schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
        for name, prop in (schema.get("properties") or {}).items():
            out[name] = _is_file(prop) or _is_file(prop.get("items") or {})
    return out
