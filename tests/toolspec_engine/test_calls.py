"""Tool calls: the engine, run as a real subprocess and driven by the official SDK's
client, sends real HTTPS requests to a loopback upstream that records them.

A toolspec written here (base URL ``https://localhost:<port>``) covers every way an
argument travels and every kind of answer; the catalog's own toolspecs, unchanged, are
called through a CONNECT tunnel that routes their real API hosts to the same upstream
(which holds certificates for those names from the test CA), the way the egress proxy
is the jail's one route out. Each test checks what reached the upstream: method, raw
path, query, headers (the credential header carries the placeholder from the engine's
environment), body and content type; or that nothing did.
"""

from __future__ import annotations

import base64
import json
import shutil
import socket
import sys
import threading
import urllib.parse
from pathlib import Path
from typing import Any

import anyio
import pytest

from gigmcp.toolspec_engine import launch
from tests.support.toolspec_catalog import entry
from tests.support.toolspec_demo import KEY, TOKEN, demo_env, demo_input, demo_spec
from tests.support.toolspec_lab import API_HOSTS, Pki, Upstream, start_tunnel
from tests.support.toolspec_session import ENGINE_DIR, engine_session, jail_command


def text_of(result: Any) -> str:
    assert len(result.content) == 1
    assert result.content[0].type == "text"
    return str(result.content[0].text)


def assert_credentials(headers: dict[str, str]) -> None:
    assert headers["authorization"] == f"Bearer {TOKEN}"
    assert headers["x-api-key"] == KEY


def demo_session(upstream: Upstream, pki: Pki, tmp_path: Path) -> Any:
    """A session with the demo toolspec (opened in the test itself: the SDK's task groups
    must be entered and left by the same task)."""
    return engine_session(demo_input(upstream.port), demo_env(pki), tmp_path)


async def test_get_with_query_params(pki: Pki, tmp_path: Path, upstream: Upstream) -> None:
    async with demo_session(upstream, pki, tmp_path) as demo:
        result = await demo.call_tool(
            "search",
            {
                "q": "hello world & more/é",
                "limit": 5,
                "tags": ["a", "b c"],
                "exact": True,
                "ratio": 0.5,
                "filter": {"since": "2024-01-01"},
            },
        )
        assert result.is_error is False
        assert result.structured_content == {"ok": True, "method": "GET", "path": "/search"}
        assert json.loads(text_of(result)) == result.structured_content
        [seen] = upstream.seen
        assert seen.method == "GET"
        assert seen.path == "/search"
        assert seen.query == [
            ("q", "hello world & more/é"),
            ("limit", "5"),
            ("tags", "a"),
            ("tags", "b c"),
            ("exact", "true"),
            ("ratio", "0.5"),
            ("filter", '{"since":"2024-01-01"}'),
        ]
        # Spaces as %20 and every reserved character encoded: nothing to re-interpret.
        assert seen.target.startswith("/search?q=hello%20world%20%26%20more%2F%C3%A9&limit=5")
        assert seen.headers["host"] == f"localhost:{upstream.port}"
        assert_credentials(seen.headers)
        assert "content-type" not in seen.headers
        assert seen.body == b""
        assert seen.headers["user-agent"].startswith("gigmcp-toolspec-engine/")


async def test_post_json_body(pki: Pki, tmp_path: Path, upstream: Upstream) -> None:
    async with demo_session(upstream, pki, tmp_path) as demo:
        args = {
            "group": "team-1",
            "name": "Widget",
            "count": 3.0,  # an integral float is an integer to JSON Schema; sent as 3
            "labels": ["x", "y"],
            "meta": {"k": [1, 2], "ü": None},
            "active": False,
        }
        result = await demo.call_tool("create_item", args)
        assert result.is_error is False, text_of(result)
        [seen] = upstream.seen
        assert seen.method == "POST"
        assert seen.target == "/groups/team-1/items"
        assert seen.headers["content-type"] == "application/json"
        assert seen.headers["content-length"] == str(len(seen.body))
        body = seen.json()
        assert body == {
            "name": "Widget",
            "count": 3,
            "labels": ["x", "y"],
            "meta": {"k": [1, 2], "ü": None},
            "active": False,
        }
        assert type(body["count"]) is int
        assert_credentials(seen.headers)


async def test_form_body(pki: Pki, tmp_path: Path, upstream: Upstream) -> None:
    async with demo_session(upstream, pki, tmp_path) as demo:
        args = {"text": "a&b=c d+é", "n": 2, "flags": ["x", "y"], "extra": {"a": 1}, "yes": True}
        result = await demo.call_tool("submit_form", args)
        assert result.is_error is False, text_of(result)
        [seen] = upstream.seen
        assert seen.method == "POST"
        assert seen.path == "/forms"
        assert seen.headers["content-type"] == "application/x-www-form-urlencoded"
        assert urllib.parse.parse_qsl(seen.body.decode("ascii"), strict_parsing=True) == [
            ("text", "a&b=c d+é"),
            ("n", "2"),
            ("flags", "x"),
            ("flags", "y"),
            ("extra", '{"a":1}'),
            ("yes", "true"),
        ]
        assert_credentials(seen.headers)


async def test_path_params_keep_slashes_and_spaces_inside_their_segment(
    pki: Pki, tmp_path: Path, upstream: Upstream
) -> None:
    async with demo_session(upstream, pki, tmp_path) as demo:
        result = await demo.call_tool("get_file", {"folder": "a/b", "name": "my file?.txt#1"})
        assert result.is_error is False, text_of(result)
        [seen] = upstream.seen
        assert seen.target == "/files/a%2Fb/my%20file%3F.txt%231/raw"
        assert seen.path.count("/") == 4  # files, folder, name, raw: no segment was added

        upstream.clear()
        result = await demo.call_tool("remove_item", {"id": 42})
        assert result.is_error is False, text_of(result)
        [seen] = upstream.seen
        assert (seen.method, seen.target) == ("DELETE", "/items/42")


@pytest.mark.parametrize("value", ["..", ".", ""])
async def test_a_dot_segment_is_refused_and_nothing_sent(
    pki: Pki, tmp_path: Path, upstream: Upstream, value: str
) -> None:
    async with demo_session(upstream, pki, tmp_path) as demo:
        result = await demo.call_tool("get_file", {"folder": value, "name": "x"})
        assert result.is_error is True
        assert "argument 'folder': a path segment cannot be empty, '.' or '..'" in text_of(result)
        assert "No request was sent" in text_of(result)
        assert upstream.seen == []


async def test_header_params(pki: Pki, tmp_path: Path, upstream: Upstream) -> None:
    async with demo_session(upstream, pki, tmp_path) as demo:
        args = {
            "X-Account-Id": "acct-1",
            "X-Version": 3,
            "X-Tags": ["a", "b"],
            "X-Filter": {"p": "é"},
        }
        result = await demo.call_tool("with_headers", args)
        assert result.is_error is False, text_of(result)
        [seen] = upstream.seen
        assert seen.headers["x-account-id"] == "acct-1"
        assert seen.headers["x-version"] == "3"
        assert seen.headers["x-tags"] == "a,b"
        assert seen.headers["x-filter"] == '{"p":"\\u00e9"}'  # ASCII-only JSON in a header
        assert_credentials(seen.headers)


@pytest.mark.parametrize("value", ["a\r\nX-Injected: 1", "a\nb", "caf\u00e9", "nul\x00"])
async def test_a_header_value_that_cannot_be_carried_is_refused(
    pki: Pki, tmp_path: Path, upstream: Upstream, value: str
) -> None:
    async with demo_session(upstream, pki, tmp_path) as demo:
        result = await demo.call_tool("with_headers", {"X-Account-Id": value})
        assert result.is_error is True
        assert "argument 'X-Account-Id' goes into a header and must be printable ASCII" in text_of(
            result
        )
        assert upstream.seen == []


async def test_a_tool_with_its_own_base_url(upstream: Upstream, pki: Pki, tmp_path: Path) -> None:
    async with demo_session(upstream, pki, tmp_path) as demo:
        result = await demo.call_tool("other_host", {})
        assert result.is_error is False, text_of(result)
        assert (await demo.call_tool("search", {"q": "x"})).is_error is False
    other, search = upstream.seen
    assert (other.headers["host"], other.path) == (f"127.0.0.1:{upstream.port}", "/elsewhere")
    assert search.headers["host"] == f"localhost:{upstream.port}"
    assert_credentials(other.headers)


async def test_put_fixed_query_and_bodiless_post(
    pki: Pki, tmp_path: Path, upstream: Upstream
) -> None:
    async with demo_session(upstream, pki, tmp_path) as demo:
        assert (await demo.call_tool("replace_item", {"id": 7})).is_error is False
        assert (await demo.call_tool("tracks", {"q": "blue"})).is_error is False
        assert (await demo.call_tool("touch", {})).is_error is False
        put, tracks, touch = upstream.seen
        # A body param exists, none was given: the endpoint still gets a JSON body.
        assert (put.method, put.target, put.body) == ("PUT", "/items/7", b"{}")
        assert put.headers["content-type"] == "application/json"
        assert tracks.target == "/search?type=track&q=blue"
        assert (touch.method, touch.body, touch.headers["content-length"]) == ("POST", b"", "0")
        assert "content-type" not in touch.headers


@pytest.mark.parametrize(
    ("code", "line"), [(404, "HTTP 404 Not Found"), (500, "HTTP 500 Internal Server Error")]
)
async def test_an_http_error_is_a_tool_error_with_a_bounded_body(
    pki: Pki, tmp_path: Path, upstream: Upstream, code: int, line: str
) -> None:
    async with demo_session(upstream, pki, tmp_path) as demo:
        result = await demo.call_tool("fail", {"code": code})
        assert result.is_error is True
        text = text_of(result)
        assert text.startswith(line + '\n{"error":"xxxx')
        assert text.endswith("… [truncated: 6012 bytes in total]")
        assert len(text.encode()) < 4096 + 100
        assert result.structured_content is None
        assert len(upstream.seen) == 1


async def test_invalid_arguments_are_a_tool_error_and_nothing_is_sent(
    pki: Pki, tmp_path: Path, upstream: Upstream
) -> None:
    async with demo_session(upstream, pki, tmp_path) as demo:
        cases = {
            "missing required argument 'q'": {},
            "argument 'q' must be a string, got integer": {"q": 5},
            "argument 'limit' must be an integer, got number": {"q": "x", "limit": 2.5},
            "argument 'exact' must be a boolean, got string": {"q": "x", "exact": "true"},
            "argument 'tags' must be an array, got null": {"q": "x", "tags": None},
            "unknown argument 'bogus' (it takes: q, limit, tags, exact, ratio, filter)": {
                "q": "x",
                "bogus": 1,
            },
        }
        for message, args in cases.items():
            result = await demo.call_tool("search", args)
            assert result.is_error is True, message
            assert (
                text_of(result) == f"invalid arguments for search: {message}. No request was sent."
            )
        assert upstream.seen == []


async def test_answers_of_every_kind(pki: Pki, tmp_path: Path, upstream: Upstream) -> None:
    async with demo_session(upstream, pki, tmp_path) as demo:
        text = await demo.call_tool("fetch", {"route": "text"})
        assert (text_of(text), text.structured_content) == ("plain words, été", None)

        array = await demo.call_tool("fetch", {"route": "array"})
        assert json.loads(text_of(array)) == [1, 2, {"a": 3}]
        assert array.structured_content is None  # structured content is an object only

        empty = await demo.call_tool("fetch", {"route": "empty"})
        assert text_of(empty) == "HTTP 204 No Content (empty body)"

        gz = await demo.call_tool("fetch", {"route": "gzip"})
        assert gz.structured_content == {"compressed": True}

        binary = await demo.call_tool("fetch", {"route": "binary"})
        [block] = binary.content
        assert block.type == "resource"
        assert base64.b64decode(block.resource.blob) == bytes(range(256))
        assert str(block.resource.uri) == f"https://localhost:{upstream.port}/binary"

        image = await demo.call_tool("fetch", {"route": "image"})
        [block] = image.content
        assert (block.type, block.mime_type) == ("image", "image/png")
        assert base64.b64decode(block.data) == b"\x89PNG\r\n\x1a\nfake"

        redirect = await demo.call_tool("fetch", {"route": "redirect"})
        assert redirect.is_error is True
        assert text_of(redirect) == "HTTP 302 Found\nmoved"
        assert [s.path for s in upstream.seen][-1] == "/redirect"  # not followed
        assert len(upstream.seen) == 7


async def test_consecutive_calls_reuse_the_connection(
    pki: Pki, tmp_path: Path, upstream: Upstream
) -> None:
    async with demo_session(upstream, pki, tmp_path) as demo:
        for _ in range(3):
            assert (await demo.call_tool("search", {"q": "x"})).is_error is False
        ports = {s.client_port for s in upstream.seen}
        assert len(upstream.seen) == 3
        assert len(ports) == 1


async def test_response_size_cap(upstream: Upstream, pki: Pki, tmp_path: Path) -> None:
    cap = 262144
    doc = demo_input(upstream.port, limits={"maxResponseBytes": cap})
    async with engine_session(doc, demo_env(pki), tmp_path) as session:
        big = await session.call_tool("fetch", {"route": "big"})
        assert big.is_error is True
        assert (
            text_of(big)
            == f"the answer is 300011 bytes, more than the {cap} bytes this server may return"
        )
        # 64 MiB of zeros, gzipped to well under the cap: refused once inflated past it.
        bomb = await session.call_tool("fetch", {"route": "bomb"})
        assert bomb.is_error is True
        assert (
            text_of(bomb)
            == f"the answer inflates to more than the {cap} bytes this server may return"
        )
        # The engine is still serving after both.
        assert (await session.call_tool("search", {"q": "x"})).is_error is False


async def test_timeout_and_calls_run_concurrently(
    upstream: Upstream, pki: Pki, tmp_path: Path
) -> None:
    doc = demo_input(upstream.port, limits={"timeoutSeconds": 0.5})
    async with engine_session(doc, demo_env(pki), tmp_path) as session:
        # The upstream answers after 3 s; the error says the engine gave up at 0.5 s.
        slow = await session.call_tool("slow", {"seconds": 3})
        assert slow.is_error is True
        assert text_of(slow) == f"the request to localhost:{upstream.port} timed out after 0.5 s"

    doc = demo_input(upstream.port, limits={"timeoutSeconds": 60})
    gate = upstream.gate = threading.Event()  # the slow call ends when the fast one did
    async with engine_session(doc, demo_env(pki), tmp_path) as session:
        done: list[str] = []

        async def call_slow() -> None:
            result = await session.call_tool("slow", {"seconds": 0})
            assert result.structured_content == {"slow": True}
            done.append("slow")

        async def ping_and_search() -> None:
            assert await anyio.to_thread.run_sync(upstream.wait_seen, "/slow/0")
            await session.send_ping()
            assert (await session.call_tool("search", {"q": "x"})).is_error is False
            done.append("fast")
            gate.set()

        async with anyio.create_task_group() as group:
            group.start_soon(call_slow)
            group.start_soon(ping_and_search)
        assert done == ["fast", "slow"]


async def test_tls_is_verified_against_ssl_cert_file(
    upstream: Upstream, pki: Pki, tmp_path: Path
) -> None:
    env = demo_env(pki, SSL_CERT_FILE=str(pki.other_ca_file))
    async with engine_session(demo_input(upstream.port), env, tmp_path) as session:
        result = await session.call_tool("search", {"q": "x"})
    assert result.is_error is True
    assert text_of(result).startswith(
        f"TLS certificate verification failed for localhost:{upstream.port}: "
    )
    assert upstream.seen == []


async def test_network_failure_is_a_tool_error(pki: Pki, tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    async with engine_session(demo_input(port), demo_env(pki), tmp_path) as session:
        result = await session.call_tool("search", {"q": "x"})
    assert result.is_error is True
    assert text_of(result) == f"the connection to localhost:{port} was refused"


async def test_missing_credential_variable(upstream: Upstream, pki: Pki, tmp_path: Path) -> None:
    env = demo_env(pki)
    del env["DEMO_KEY"]
    async with engine_session(demo_input(upstream.port), env, tmp_path) as session:
        result = await session.call_tool("search", {"q": "x"})
    assert result.is_error is True
    assert text_of(result) == (
        "the credential variable DEMO_KEY is not set: the gateway gave this server no "
        "credential. No request was sent."
    )
    assert upstream.seen == []
    assert "the credential variable DEMO_KEY is not set" in (tmp_path / "engine.stderr").read_text()


async def test_logs_hold_no_placeholder_argument_or_body(
    upstream: Upstream, pki: Pki, tmp_path: Path
) -> None:
    async with engine_session(demo_input(upstream.port), demo_env(pki), tmp_path) as session:
        await session.call_tool("search", {"q": "secret-words-in-an-argument"})
        await session.call_tool("fail", {"code": 500})
        await session.call_tool("create_item", {"group": "g", "name": "body-value-zz"})
    log = (tmp_path / "engine.stderr").read_text()
    assert "search: GET localhost:" in log and "-> HTTP 200 in" in log
    assert "fail: GET localhost:" in log and "-> HTTP 500 in" in log
    for secret in (TOKEN, KEY, "secret-words", "body-value-zz", "xxxx"):
        assert secret not in log


# -- catalog toolspecs, unchanged, through a CONNECT tunnel ------------------------------


@pytest.fixture
def tunnel(upstream: Upstream) -> Any:
    tunnel = start_tunnel(upstream.port, API_HOSTS)
    yield tunnel
    tunnel.server.shutdown()
    tunnel.server.server_close()


async def test_catalog_tools_through_the_tunnel(
    upstream: Upstream, pki: Pki, tunnel: Any, tmp_path: Path
) -> None:
    airtable = entry("airtable")
    doc, env = airtable.engine_input()
    [token] = env.values()
    env |= {"SSL_CERT_FILE": str(pki.ca_file), "HTTPS_PROXY": tunnel.url}
    async with engine_session(doc, env, tmp_path) as session:
        args = {"baseId": "app1", "tableIdOrName": "My Table/2024", "fields": ["Name", "Notes"]}
        result = await session.call_tool("list_records", {**args, "pageSize": 10})
        assert result.is_error is False, text_of(result)
        created = await session.call_tool(
            "create_records",
            {"baseId": "app1", "tableIdOrName": "T", "records": [{"fields": {"Name": "a"}}]},
        )
        assert created.is_error is False
    listed, posted = upstream.seen
    assert tunnel.targets == ["api.airtable.com:443"]  # one tunnel, kept alive
    assert listed.headers["host"] == "api.airtable.com"
    assert listed.target == ("/v0/app1/My%20Table%2F2024?pageSize=10&fields=Name&fields=Notes")
    assert listed.headers["authorization"] == f"Bearer {token}"
    assert (posted.method, posted.path) == ("POST", "/v0/app1/T")
    assert posted.json() == {"records": [{"fields": {"Name": "a"}}]}
    assert posted.headers["authorization"] == f"Bearer {token}"


async def test_catalog_form_and_header_tools_through_the_tunnel(
    upstream: Upstream, pki: Pki, tunnel: Any, tmp_path: Path
) -> None:
    chatwork = entry("chatwork")
    doc, env = chatwork.engine_input()
    [token] = env.values()
    env |= {"SSL_CERT_FILE": str(pki.ca_file), "HTTPS_PROXY": tunnel.url}
    async with engine_session(doc, env, tmp_path) as session:
        result = await session.call_tool(
            "post_message", {"room_id": 42, "body": "hello & welcome", "self_unread": 1}
        )
        assert result.is_error is False, text_of(result)
    [seen] = upstream.seen
    assert (seen.method, seen.target) == ("POST", "/v2/rooms/42/messages")
    assert seen.headers["host"] == "api.chatwork.com"
    assert seen.headers["x-chatworktoken"] == token
    assert seen.headers["content-type"] == "application/x-www-form-urlencoded"
    assert urllib.parse.parse_qsl(seen.body.decode()) == [
        ("body", "hello & welcome"),
        ("self_unread", "1"),
    ]

    upstream.clear()
    harvest = entry("harvest")
    doc, env = harvest.engine_input()
    [token] = env.values()
    env |= {"SSL_CERT_FILE": str(pki.ca_file), "HTTPS_PROXY": tunnel.url}
    async with engine_session(doc, env, tmp_path) as session:
        result = await session.call_tool(
            "list_projects", {"Harvest-Account-Id": "12345", "is_active": True}
        )
        assert result.is_error is False, text_of(result)
    [seen] = upstream.seen
    assert seen.headers["host"] == "api.harvestapp.com"
    assert seen.headers["harvest-account-id"] == "12345"
    assert seen.headers["authorization"] == f"Bearer {token}"
    assert seen.target == "/v2/projects?is_active=true"


async def test_a_host_the_proxy_refuses(upstream: Upstream, pki: Pki, tmp_path: Path) -> None:
    tunnel = start_tunnel(upstream.port, allowed=("api.airtable.com",))
    try:
        doc, env = entry("chatwork").engine_input()
        env |= {"SSL_CERT_FILE": str(pki.ca_file), "HTTPS_PROXY": tunnel.url}
        async with engine_session(doc, env, tmp_path) as session:
            result = await session.call_tool("post_message", {"room_id": 1, "body": "x"})
    finally:
        tunnel.server.shutdown()
        tunnel.server.server_close()
    assert result.is_error is True
    assert text_of(result) == (
        "the egress proxy refused the connection to api.chatwork.com: 403 Forbidden"
    )
    assert tunnel.targets == ["api.chatwork.com:443"]
    assert upstream.seen == []


async def test_no_proxy_bypasses_the_tunnel(
    upstream: Upstream, pki: Pki, tunnel: Any, tmp_path: Path
) -> None:
    env = demo_env(pki, HTTPS_PROXY=tunnel.url, NO_PROXY="example.org,localhost")
    async with engine_session(demo_input(upstream.port), env, tmp_path) as session:
        assert (await session.call_tool("search", {"q": "x"})).is_error is False
    assert tunnel.targets == []
    assert len(upstream.seen) == 1


# -- ways to start it -------------------------------------------------------------------


async def test_runs_as_a_module_of_the_gateway_package(
    upstream: Upstream, pki: Pki, tmp_path: Path
) -> None:
    command = [sys.executable, "-m", "gigmcp.toolspec_engine", "{input}"]
    env = demo_env(pki)
    async with engine_session(demo_input(upstream.port), env, tmp_path, command) as session:
        assert (await session.call_tool("search", {"q": "x"})).is_error is False
    assert len(upstream.seen) == 1


async def test_runs_from_a_copy_of_its_folder_alone(
    upstream: Upstream, pki: Pki, tmp_path: Path
) -> None:
    """Bound alone, under another name, with only the standard library: as in the jail."""
    folder = tmp_path / "opt" / "engine"
    shutil.copytree(ENGINE_DIR, folder, ignore=shutil.ignore_patterns("__pycache__"))
    input_path = tmp_path / "input.json"
    input_path.write_bytes(launch.engine_input(demo_spec(upstream.port), [], None))
    argv = list(launch.command(sys.executable, str(folder), str(input_path)))
    assert argv == jail_command(input_path, folder)
    async with engine_session(
        json.loads(input_path.read_text()), demo_env(pki), tmp_path, [*argv[:-1], "{input}"]
    ) as session:
        listed = (await session.list_tools()).tools
        assert len(listed) == len(demo_spec(0)["tools"])
        assert (await session.call_tool("search", {"q": "x"})).is_error is False
    [seen] = upstream.seen
    assert "authorization" not in seen.headers  # no credentials in this input
