"""The official TypeScript SDK clients (v1 legacy, v2 modern) and MCP Inspector's CLI
work against a profile endpoint exactly as against a server."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.support.gateway import NODE, NODE22, PEERS, GatewayProc

HERE = Path(__file__).resolve().parent.parent / "clients"


@pytest.mark.parametrize("flavour", ["v1", "v2"])
def test_typescript_sdk_client(gw: GatewayProc, flavour: str) -> None:
    out = subprocess.run(
        [NODE, str(HERE / "ts_client.mjs"), flavour, gw.url("alpha"), gw.tokens["alpha"]],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert "everything_echo" in seen["tools"] and "memory_read_graph" in seen["tools"]
    assert f"ts-{flavour}" in seen["echo"]
    assert "everything_simple-prompt" in seen["prompts"]
    assert any(u.startswith("everything+") for u in seen["resources"])
    assert all(u.split("+", 1)[0] in {"everything", "memory", "time"} for u in seen["resources"])
    assert seen["readOk"]


def test_inspector_cli_lists_and_calls(gw: GatewayProc) -> None:
    cli = PEERS / "@modelcontextprotocol" / "inspector" / "clients" / "cli" / "build" / "index.js"
    base = [
        NODE22,
        str(cli),
        gw.url("alpha"),
        "--transport",
        "http",
        "--header",
        f"Authorization: Bearer {gw.tokens['alpha']}",
    ]
    listed = subprocess.run(
        [*base, "--method", "tools/list"], capture_output=True, text=True, timeout=120
    )
    assert listed.returncode == 0, listed.stderr + listed.stdout
    names = {t["name"] for t in json.loads(listed.stdout)["tools"]}
    assert "everything_echo" in names
    called = subprocess.run(
        [
            *base,
            "--method",
            "tools/call",
            "--tool-name",
            "everything_echo",
            "--tool-arg",
            "message=inspected",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert called.returncode == 0, called.stderr + called.stdout
    assert "inspected" in called.stdout
