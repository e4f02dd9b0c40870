"""Legacy sessions (2025-03-26 … 2025-11-25): the standalone GET stream carries change
notifications, and a client that lost it resumes with Last-Event-ID without a gap."""

from __future__ import annotations

import json

import httpx2 as httpx

from tests.support.gateway import GatewayProc

VERSION = "2025-06-18"


def open_session(gw: GatewayProc, client: httpx.Client, profile: str = "beta") -> dict[str, str]:
    h = {
        "Accept": "application/json, text/event-stream",
        "Authorization": f"Bearer {gw.tokens[profile]}",
    }
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": VERSION,
            "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"},
        },
    }
    r = client.post(gw.url(profile), json=init, headers=h)
    assert r.status_code == 200
    assert r.json()["result"]["protocolVersion"] == VERSION
    h = dict(h, **{"Mcp-Session-Id": r.headers["mcp-session-id"], "MCP-Protocol-Version": VERSION})
    assert (
        client.post(
            gw.url(profile),
            json={"jsonrpc": "2.0", "method": "notifications/initialized"},
            headers=h,
        ).status_code
        == 202
    )
    return h


def read_events(response: httpx.Response, count: int) -> list[tuple[str, dict]]:
    events: list[tuple[str, dict]] = []
    event_id = ""
    for line in response.iter_lines():
        if line.startswith("id: "):
            event_id = line[4:]
        elif line.startswith("data: "):
            events.append((event_id, json.loads(line[6:])))
            if len(events) == count:
                return events
    return events


def test_get_stream_delivers_list_changes_and_resumes_after_a_drop(gw: GatewayProc) -> None:
    with httpx.Client(timeout=20) as client:
        h = open_session(gw, client)
        # Make sure the hub exists and knows the memory server's tools.
        listed = client.post(
            gw.url("beta"), json={"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, headers=h
        )
        assert listed.status_code == 200
        with client.stream(
            "GET", gw.url("beta"), headers=dict(h, Accept="text/event-stream")
        ) as stream:
            assert stream.status_code == 200
            gw.cli("tool", "disable", "beta", "memory", "read_graph")
            ((first_id, first),) = read_events(stream, 1)
        assert first["method"] == "notifications/tools/list_changed"
        assert first_id
        # While no stream is open, another change happens; resuming must replay it.
        gw.cli("tool", "enable", "beta", "memory", "read_graph")
        resumed_headers = dict(h, Accept="text/event-stream", **{"Last-Event-ID": first_id})
        with client.stream("GET", gw.url("beta"), headers=resumed_headers) as stream:
            assert stream.status_code == 200
            ((_, missed),) = read_events(stream, 1)
        assert missed["method"] == "notifications/tools/list_changed"
        assert client.delete(gw.url("beta"), headers=h).status_code == 204
        assert (
            client.post(
                gw.url("beta"), json={"jsonrpc": "2.0", "id": 3, "method": "tools/list"}, headers=h
            ).status_code
            == 404
        )


def test_a_second_standalone_stream_is_refused(gw: GatewayProc) -> None:
    with httpx.Client(timeout=20) as client:
        h = open_session(gw, client)
        with client.stream(
            "GET", gw.url("beta"), headers=dict(h, Accept="text/event-stream")
        ) as first:
            assert first.status_code == 200
            second = client.get(gw.url("beta"), headers=dict(h, Accept="text/event-stream"))
            assert second.status_code == 409


def test_a_dropped_answer_stream_is_resumed_with_its_final_response(gw: GatewayProc) -> None:
    with httpx.Client(timeout=30) as client:
        h = open_session(gw, client, "alpha")
        call = {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "tools/call",
            "params": {
                "name": "everything_trigger-long-running-operation",
                "arguments": {"duration": 2, "steps": 4},
                "_meta": {"progressToken": "tok-1"},
            },
        }
        with client.stream("POST", gw.url("alpha"), json=call, headers=h) as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            ((first_id, first),) = read_events(stream, 1)
        assert first["method"] == "notifications/progress"
        assert first["params"]["progressToken"] == "tok-1"
        # The connection is gone; the call goes on and its events wait for us.
        with client.stream(
            "GET",
            gw.url("alpha"),
            headers=dict(h, Accept="text/event-stream", **{"Last-Event-ID": first_id}),
        ) as stream:
            rest = read_events(stream, 10)
        final = [m for _, m in rest if "id" in m]
        assert final and final[-1]["id"] == 2 and "result" in final[-1]
        assert all(m.get("method") == "notifications/progress" for _, m in rest if "id" not in m)
