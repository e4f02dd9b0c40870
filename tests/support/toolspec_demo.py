"""The toolspec the call and protocol tests serve: written here, not from the catalog.

It covers every param location and type, both body encodings, every method, a fixed
query in a path, a tool with a base URL of its own, and routes to each kind of answer
the loopback upstream (``toolspec_lab``) can give. Two credentials, each read from a variable
holding a placeholder, as in the jail.
"""

from __future__ import annotations

from typing import Any

from tests.support.toolspec_lab import Pki

TOKEN = "gigph_demo_0123456789abcdefABCDEF"
KEY = "gigph_key_9876543210zyxwvuZYXWVU"


def _p(name: str, where: str, kind: str, required: bool = False, **extra: Any) -> dict[str, Any]:
    return {"name": name, "in": where, "type": kind, "required": required, **extra}


def demo_spec(port: int) -> dict[str, Any]:
    """A toolspec covering every param location, both encodings and many answers."""
    get = "GET"
    return {
        "schemaVersion": 1,
        "name": "demo",
        "version": "1.2.3",
        "baseUrl": f"https://localhost:{port}",
        "tools": [
            {
                "name": "search",
                "description": "Search things",
                "method": get,
                "path": "/search",
                "params": [
                    _p("q", "query", "string", True, description="Words to look for"),
                    _p("limit", "query", "integer"),
                    _p("tags", "query", "array"),
                    _p("exact", "query", "boolean"),
                    _p("ratio", "query", "number"),
                    _p("filter", "query", "object"),
                ],
            },
            {
                "name": "create_item",
                "description": "Create an item in a group",
                "method": "POST",
                "path": "/groups/{group}/items",
                "params": [
                    _p("group", "path", "string", True),
                    _p("name", "body", "string", True),
                    _p("count", "body", "integer"),
                    _p("labels", "body", "array"),
                    _p("meta", "body", "object"),
                    _p("active", "body", "boolean"),
                ],
            },
            {
                "name": "submit_form",
                "description": "Post a form",
                "method": "POST",
                "path": "/forms",
                "encoding": "form",
                "params": [
                    _p("text", "body", "string", True),
                    _p("n", "body", "integer"),
                    _p("flags", "body", "array"),
                    _p("extra", "body", "object"),
                    _p("yes", "body", "boolean"),
                ],
            },
            {
                "name": "get_file",
                "description": "Read a file",
                "method": get,
                "path": "/files/{folder}/{name}/raw",
                "params": [
                    _p("folder", "path", "string", True),
                    _p("name", "path", "string", True),
                ],
            },
            {
                "name": "with_headers",
                "description": "Send header params",
                "method": get,
                "path": "/headers",
                "params": [
                    _p("X-Account-Id", "header", "string", True),
                    _p("X-Version", "header", "integer"),
                    _p("X-Tags", "header", "array"),
                    _p("X-Filter", "header", "object"),
                ],
            },
            {
                "name": "replace_item",
                "description": "Replace an item",
                "method": "PUT",
                "path": "/items/{id}",
                "params": [_p("id", "path", "integer", True), _p("name", "body", "string")],
            },
            {
                "name": "touch",
                "description": "POST without a body",
                "method": "POST",
                "path": "/touch",
            },
            {
                "name": "remove_item",
                "description": "Delete an item",
                "method": "DELETE",
                "path": "/items/{id}",
                "params": [_p("id", "path", "integer", True)],
            },
            {
                "name": "tracks",
                "description": "A path with a fixed query",
                "method": get,
                "path": "/search?type=track",
                "params": [_p("q", "query", "string", True)],
            },
            {
                "name": "fail",
                "description": "An error status",
                "method": get,
                "path": "/status/{code}",
                "params": [_p("code", "path", "integer", True)],
            },
            {
                "name": "slow",
                "description": "A slow answer",
                "method": get,
                "path": "/slow/{seconds}",
                "params": [_p("seconds", "path", "number", True)],
            },
            {
                "name": "other_host",
                "description": "A tool with a base URL of its own",
                "method": get,
                "path": "/elsewhere",
                "baseUrl": f"https://127.0.0.1:{port}",
            },
            {
                "name": "fetch",
                "description": "One of the upstream's canned answers",
                "method": get,
                "path": "/{route}",
                "params": [_p("route", "path", "string", True)],
            },
        ],
    }


def demo_input(port: int, **extra: Any) -> dict[str, Any]:
    return {
        "spec": demo_spec(port),
        "credentials": [
            {"header": "Authorization", "format": "Bearer {token}", "env": "DEMO_TOKEN"},
            {"header": "X-Api-Key", "format": "{token}", "env": "DEMO_KEY"},
        ],
        "tools": None,
        **extra,
    }


def demo_env(pki: Pki, **extra: str) -> dict[str, str]:
    return {"SSL_CERT_FILE": str(pki.ca_file), "DEMO_TOKEN": TOKEN, "DEMO_KEY": KEY, **extra}
