"""Attack list for the MCP endpoint: what must be refused, and how, before any server runs."""

from __future__ import annotations

import httpx2 as httpx
import pytest

from tests.support.gateway import GatewayProc
from tests.support.mcp_http import MODERN, modern_body, modern_headers, post


def test_no_token_is_401_with_bearer_challenge(gw: GatewayProc) -> None:
    r = post(gw, "beta", modern_body("tools/list"), modern_headers(None, "tools/list"))
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer ")


@pytest.mark.parametrize("token", ["gig_pt_wrong", "gig_pt_", "Basic abc", "x" * 600])
def test_bad_tokens_are_401(gw: GatewayProc, token: str) -> None:
    r = post(gw, "beta", modern_body("tools/list"), modern_headers(token, "tools/list"))
    assert r.status_code == 401


def test_token_of_another_profile_is_401_and_starts_nothing(gw: GatewayProc) -> None:
    before = set(gw.descendants())
    r = post(
        gw, "alpha", modern_body("tools/list"), modern_headers(gw.tokens["beta"], "tools/list")
    )
    assert r.status_code == 401
    assert token_not_echoed(r, gw.tokens["beta"])
    assert set(gw.descendants()) <= before


def test_revoked_token_is_refused_on_the_next_request(gw: GatewayProc) -> None:
    token = gw.cli("token", "mint", "beta", "--name", "short-lived").stdout.strip()
    ok = post(gw, "beta", modern_body("server/discover"), modern_headers(token, "server/discover"))
    assert ok.status_code == 200
    listing = gw.cli("token", "list", "beta").stdout
    token_id = next(line.split()[0] for line in listing.splitlines() if "short-lived" in line)
    gw.cli("token", "revoke", token_id)
    r = post(gw, "beta", modern_body("server/discover"), modern_headers(token, "server/discover"))
    assert r.status_code == 401


def token_not_echoed(r: httpx.Response, token: str) -> bool:
    return token not in r.text and all(token not in v for v in r.headers.values())


def test_foreign_origin_is_403(gw: GatewayProc) -> None:
    h = modern_headers(gw.tokens["beta"], "server/discover")
    h["Origin"] = "http://evil.example"
    r = post(gw, "beta", modern_body("server/discover"), h)
    assert r.status_code == 403


def test_configured_origin_is_allowed(gw: GatewayProc) -> None:
    h = modern_headers(gw.tokens["beta"], "server/discover")
    h["Origin"] = "http://localhost:6274"
    r = post(gw, "beta", modern_body("server/discover"), h)
    assert r.status_code == 200


def raw(gw: GatewayProc, content: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(gw.url("beta"), content=content, headers=headers, timeout=30)


def test_invalid_json_is_parse_error(gw: GatewayProc) -> None:
    r = raw(gw, b"{not json", modern_headers(gw.tokens["beta"], "tools/list"))
    assert r.status_code == 400
    assert r.json()["error"]["code"] == -32700


@pytest.mark.parametrize(
    "body",
    [
        b"[]",
        b"42",
        b'"x"',
        b'{"jsonrpc":"1.0","id":1,"method":"ping"}',
        b'{"jsonrpc":"2.0","id":1,"method":7}',
        b'{"jsonrpc":"2.0","id":true,"method":"tools/list"}',
        b'{"jsonrpc":"2.0","id":1,"method":"x","params":[1]}',
        b'[{"jsonrpc":"2.0","id":1,"method":"ping"}]',
    ],
)
def test_not_a_request_is_invalid_request(gw: GatewayProc, body: bytes) -> None:
    r = raw(gw, body, modern_headers(gw.tokens["beta"], "tools/list"))
    assert r.status_code == 400
    assert r.json()["error"]["code"] == -32600


def test_unknown_method_is_404_method_not_found(gw: GatewayProc) -> None:
    r = post(
        gw, "beta", modern_body("nope/nothing"), modern_headers(gw.tokens["beta"], "nope/nothing")
    )
    assert r.status_code == 404
    assert r.json()["error"]["code"] == -32601


def test_unsupported_protocol_version_lists_supported(gw: GatewayProc) -> None:
    body = modern_body("tools/list")
    body["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"] = "1900-01-01"
    h = modern_headers(gw.tokens["beta"], "tools/list")
    h["MCP-Protocol-Version"] = "1900-01-01"
    r = post(gw, "beta", body, h)
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["code"] == -32022
    assert MODERN in err["data"]["supported"]
    assert err["data"]["requested"] == "1900-01-01"


def test_missing_client_capabilities_is_invalid_params(gw: GatewayProc) -> None:
    body = modern_body("tools/list")
    del body["params"]["_meta"]["io.modelcontextprotocol/clientCapabilities"]
    r = post(gw, "beta", body, modern_headers(gw.tokens["beta"], "tools/list"))
    assert r.status_code == 400
    assert r.json()["error"]["code"] == -32602


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("Mcp-Method", "tools/list"),
        ("MCP-Protocol-Version", "2025-11-25"),
        ("Mcp-Name", "memory_other"),
    ],
)
def test_headers_that_disagree_with_the_body_are_header_mismatch(
    gw: GatewayProc, header: str, value: str
) -> None:
    h = modern_headers(gw.tokens["beta"], "tools/call", "memory_read_graph")
    h[header] = value
    r = post(
        gw, "beta", modern_body("tools/call", {"name": "memory_read_graph", "arguments": {}}), h
    )
    assert r.status_code == 400
    assert r.json()["error"]["code"] == -32020


def test_missing_mcp_name_is_header_mismatch(gw: GatewayProc) -> None:
    h = modern_headers(gw.tokens["beta"], "tools/call")
    r = post(gw, "beta", modern_body("tools/call", {"name": "memory_read_graph"}), h)
    assert r.status_code == 400
    assert r.json()["error"]["code"] == -32020


def test_base64_mcp_name_is_decoded_before_comparing(gw: GatewayProc) -> None:
    import base64

    encoded = "=?base64?" + base64.b64encode(b"memory_read_graph").decode() + "?="
    h = modern_headers(gw.tokens["beta"], "tools/call", encoded)
    r = post(
        gw, "beta", modern_body("tools/call", {"name": "memory_read_graph", "arguments": {}}), h
    )
    assert r.status_code == 200, r.text
    assert r.json()["result"]["resultType"] == "complete"


def test_oversized_body_is_413_without_reading_it_all(gw: GatewayProc) -> None:
    big = (
        b'{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"pad":"'
        + b"a" * (5 * 1024 * 1024)
        + b'"}}'
    )
    r = raw(gw, big, modern_headers(gw.tokens["beta"], "tools/list"))
    assert r.status_code == 413


def test_tool_name_with_bad_type_is_invalid_params(gw: GatewayProc) -> None:
    h = modern_headers(gw.tokens["beta"], "tools/call", "7")
    body = modern_body("tools/call", {"name": 7})
    r = post(gw, "beta", body, h)
    # The header cannot match a non-string name: either answer is a clean 400.
    assert r.status_code == 400
    assert r.json()["error"]["code"] in (-32020, -32602)


def test_unknown_tool_is_refused_as_unknown(gw: GatewayProc) -> None:
    h = modern_headers(gw.tokens["beta"], "tools/call", "everything_echo")
    r = post(gw, "beta", modern_body("tools/call", {"name": "everything_echo", "arguments": {}}), h)
    assert r.status_code == 200
    assert r.json()["error"]["code"] == -32602
    assert "Unknown tool" in r.json()["error"]["message"]


def test_session_of_another_token_does_not_exist(gw: GatewayProc) -> None:
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"},
        },
    }
    h = {
        "Accept": "application/json, text/event-stream",
        "Authorization": f"Bearer {gw.tokens['beta']}",
    }
    r = httpx.post(gw.url("beta"), json=init, headers=h, timeout=30)
    assert r.status_code == 200
    sid = r.headers["mcp-session-id"]
    assert len(sid) >= 32
    other = gw.cli("token", "mint", "beta").stdout.strip()
    h2 = {
        "Accept": "application/json",
        "Authorization": f"Bearer {other}",
        "Mcp-Session-Id": sid,
        "MCP-Protocol-Version": "2025-06-18",
    }
    r2 = httpx.post(
        gw.url("beta"),
        json={"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
        headers=h2,
        timeout=30,
    )
    assert r2.status_code == 404


def test_get_and_delete_without_session_are_405(gw: GatewayProc) -> None:
    h = {"Accept": "text/event-stream", "Authorization": f"Bearer {gw.tokens['beta']}"}
    assert httpx.get(gw.url("beta"), headers=h, timeout=30).status_code == 405
    assert httpx.delete(gw.url("beta"), headers=h, timeout=30).status_code == 405


def test_no_response_is_ever_a_500(gw: GatewayProc) -> None:
    h = modern_headers(gw.tokens["beta"], "tools/list")
    for body in [
        b"",
        b"\xff\xfe",
        b"{}",
        b'{"jsonrpc":"2.0"}',
        b'{"jsonrpc":"2.0","id":{},"method":"a"}',
        b'{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":[]}}',
    ]:
        r = raw(gw, body, h)
        assert r.status_code < 500, (body, r.status_code, r.text)
        assert "Traceback" not in r.text
