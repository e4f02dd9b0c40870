"""A toolspec server end to end with every real part: the project's engine laid out by
the installer, jailed by the gateway, its calls leaving through the egress proxy, which
swaps the placeholder in the credential header for the real key toward the API's host
only. The "internet" is the egress lab's namespace (tests/support/egress_lab.py), where the API
records every request it gets.

Each request shape a toolspec can describe — GET with query, POST json, form encoding,
path params, header params — is checked on the API's side: method, path, query,
headers, body, and the real key in the Authorization header; the key never in a tool
result.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gigmcp.control import actor, install_rows
from gigmcp.core.definitions import parse_credentials, parse_egress
from gigmcp.installer import toolspec
from gigmcp.installer.runnable import Runnable
from gigmcp.store.db import make_engine
from tests.support.egress_lab import Lab, lab
from tests.support.gateway import GatewayProc, gateway
from tests.support.mcp_client import connect, text_of

pytestmark = pytest.mark.root

CANARY = "sk_live_gigTOOLSPEC_8d1f0c2b3a4e5f6a7b8c9d0e"
HOST = "api.example.test"


def _p(name: str, where: str, kind: str, required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": where, "type": kind, "required": required}


SPEC: dict[str, Any] = {
    "schemaVersion": 1,
    "name": "demo",
    "version": "0.1.0",
    "baseUrl": f"https://{HOST}",
    "tools": [
        {
            "name": "search",
            "description": "Search",
            "method": "GET",
            "path": "/v1/search",
            "params": [_p("q", "query", "string", True), _p("limit", "query", "integer")],
        },
        {
            "name": "create_item",
            "description": "Create an item",
            "method": "POST",
            "path": "/v1/groups/{group}/items",
            "params": [
                _p("group", "path", "string", True),
                _p("name", "body", "string", True),
                _p("count", "body", "integer"),
            ],
        },
        {
            "name": "submit",
            "description": "Post a form",
            "method": "POST",
            "path": "/v1/forms",
            "encoding": "form",
            "params": [_p("text", "body", "string", True), _p("n", "body", "integer")],
        },
        {
            "name": "traced",
            "description": "A header param",
            "method": "GET",
            "path": "/v1/traced",
            "params": [_p("X-Trace-Id", "header", "string", True)],
        },
        {
            "name": "missing",
            "description": "An endpoint that answers 404",
            "method": "GET",
            "path": "/status/404",
            "params": [],
        },
    ],
}
CREDENTIAL = {
    "id": "demo_key",
    "type": "api_key",
    "provider": "demo",
    "inject": {"header": "Authorization", "format": "Bearer {token}"},
}
MANIFEST = {
    "schemaVersion": 1,
    "name": "demo",
    "version": "0.1.0",
    "tier": "sealed",
    "entitlements": {"egress": [HOST]},
    "credentials": [CREDENTIAL],
    "tools": [{"name": t["name"], "default": True} for t in SPEC["tools"]],
}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Lab, GatewayProc]]:
    tmp: Path = tmp_path_factory.mktemp("toolspec")
    # Not under pytest's tmp dir: the jail's me must be able to reach the package.
    packages = Path(tempfile.mkdtemp(prefix="gigpkg-"))
    os.chmod(packages, 0o755)
    try:
        with lab() as the_lab:
            ca = tmp / "upstream-ca.pem"
            ca.write_bytes(the_lab.ca_pem)
            with gateway(
                tmp, jailed=True, GIG_SANDBOX_SUBNET="10.214.0.0/24", GIG_SANDBOX_POOL="0",
                GIG_EGRESS_DNS=the_lab.dns, GIG_EGRESS_CA_BUNDLE=str(ca),
            ) as g:  # fmt: skip
                g.cli("server", "list")  # creates and migrates the database
                engine = make_engine(f"sqlite:///{g.data_dir / 'gigmcp.db'}")
                try:
                    egress = parse_egress({"hosts": [HOST]})
                    creds = parse_credentials([CREDENTIAL], egress)
                    command, cwd = toolspec.lay_out(packages / "demo" / "0.1.0", SPEC, creds)
                    origin = {
                        "kind": "toolspec", "name": "demo", "version": "0.1.0",
                        "manifest": MANIFEST, "runtime_hash": "0" * 64,
                        "path": str(packages / "demo" / "0.1.0"),
                    }  # fmt: skip
                    run = Runnable(command, cwd, {}, {"hosts": [HOST]}, [CREDENTIAL], origin)
                    install_rows.install(engine, actor.local_admin(engine), "demo", run)
                finally:
                    engine.dispose()
                g.cli("credential", "set", "demo", "demo_key", stdin=CANARY + "\n")
                g.profile("ts", "demo")
                g.start()
                yield the_lab, g
    finally:
        shutil.rmtree(packages, ignore_errors=True)


async def call(g: GatewayProc, tool: str, **args: object) -> tuple[bool, str, Any]:
    async with connect(g, "ts", "auto") as c:
        result = await c.call_tool(f"demo_{tool}", args)
    text = text_of(result)
    assert CANARY not in text and CANARY not in json.dumps(result.structured_content or {})
    return bool(result.is_error), text, result.structured_content


def only_hit(the_lab: Lab) -> Any:
    hits = the_lab.hits_on("11.0.0.1")
    assert len(hits) == 1, hits
    hit = hits[0]
    # The real key reached the API, in the manifest's format: the proxy put it there.
    assert hit.headers["authorization"] == f"Bearer {CANARY}"
    return hit


async def test_get_with_query(world: tuple[Lab, GatewayProc]) -> None:
    the_lab, g = world
    the_lab.reset()
    error, _text, structured = await call(g, "search", q="hello world", limit=5)
    assert not error
    hit = only_hit(the_lab)
    assert (hit.method, hit.path) == ("GET", "/v1/search")
    assert urllib.parse.parse_qs(hit.query) == {"q": ["hello world"], "limit": ["5"]}
    # The API's JSON answer is the structured result; the key it reflected is scrubbed.
    assert structured["path"] == "/v1/search"
    assert structured["headers"]["authorization"].startswith("Bearer gigmcp_ph_")


async def test_post_json_with_a_path_param(world: tuple[Lab, GatewayProc]) -> None:
    the_lab, g = world
    the_lab.reset()
    error, _text, _ = await call(g, "create_item", group="a/b c", name="thing", count=2)
    assert not error
    hit = only_hit(the_lab)
    # The "/" stays inside its segment.
    assert (hit.method, hit.path) == ("POST", "/v1/groups/a%2Fb%20c/items")
    assert hit.headers["content-type"].startswith("application/json")
    assert json.loads(hit.body) == {"name": "thing", "count": 2}


async def test_post_form_encoding(world: tuple[Lab, GatewayProc]) -> None:
    the_lab, g = world
    the_lab.reset()
    error, _text, _ = await call(g, "submit", text="hi there & more", n=3)
    assert not error
    hit = only_hit(the_lab)
    assert hit.headers["content-type"].startswith("application/x-www-form-urlencoded")
    assert urllib.parse.parse_qs(hit.body.decode()) == {"text": ["hi there & more"], "n": ["3"]}


async def test_header_param(world: tuple[Lab, GatewayProc]) -> None:
    the_lab, g = world
    the_lab.reset()
    error, _text, _ = await call(g, "traced", **{"X-Trace-Id": "trace-42"})
    assert not error
    assert only_hit(the_lab).headers["x-trace-id"] == "trace-42"


async def test_an_http_error_is_a_tool_error_with_a_bounded_body(
    world: tuple[Lab, GatewayProc],
) -> None:
    the_lab, g = world
    the_lab.reset()
    error, text, _ = await call(g, "missing")
    assert error and "404" in text
    assert len(text) < 5000 and "truncated" in text


async def test_a_missing_argument_sends_nothing(world: tuple[Lab, GatewayProc]) -> None:
    the_lab, g = world
    the_lab.reset()
    error, text, _ = await call(g, "search", limit=1)
    assert error and "q" in text
    assert the_lab.hits_on("11.0.0.1") == []
