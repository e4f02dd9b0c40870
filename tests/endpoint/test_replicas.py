"""Two gateway replicas on one PostgreSQL, behind a round-robin front: a stateless
client may land on either at every request, and everything it sends works on either.

Real processes throughout: two ``gigmcp serve`` sharing a throwaway PostgreSQL cluster
and a master key, the official Python SDK client in stateless (2026-07-28) mode, a
front that sends each request to the next replica (tests/support/round_robin.py), and
server-everything asking its client for a sampling mid-call. Servers run unjailed here
(these tests are about routing; one host has one sandbox network, see
docs/operations.md), each replica with its own instances.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import psycopg
import pytest
from mcp.client.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from tests.support.gateway import EVERYTHING, GatewayProc
from tests.support.mcp_client import sampler, text_of
from tests.support.mcp_http import MODERN, modern_headers
from tests.support.replicas import database_name, replica_id, replica_set
from tests.support.round_robin import RoundRobin, round_robin

CRASHY = (sys.executable, str(Path(__file__).resolve().parent.parent / "servers" / "crashy.py"))
TASKS = "io.modelcontextprotocol/tasks"
SERVERS = {"everything": EVERYTHING, "crashy": CRASHY}


@pytest.fixture(scope="module")
def pair(
    tmp_path_factory: pytest.TempPathFactory, pg_socket_dir: str
) -> Iterator[list[GatewayProc]]:
    with replica_set(
        tmp_path_factory.mktemp("replicas"), pg_socket_dir, SERVERS,
        GIG_TASK_AFTER="0.5", GIG_REQUEST_TIMEOUT="30",
    ) as replicas:  # fmt: skip
        yield replicas


@pytest.fixture
def front(pair: list[GatewayProc]) -> Iterator[RoundRobin]:
    with round_robin([r.base for r in pair]) as f:
        yield f


@contextlib.asynccontextmanager
async def sdk_client(url: str, token: str, **kw: Any) -> Any:
    http = create_mcp_http_client(headers={"Authorization": f"Bearer {token}"})
    async with http, Client(streamable_http_client(url, http_client=http), mode=MODERN, **kw) as c:
        yield c


def rpc(
    url: str,
    token: str,
    method: str,
    params: dict[str, Any],
    name: str | None = None,
    caps: dict[str, Any] | None = None,
) -> dict[str, Any]:
    body = {
        "jsonrpc": "2.0", "id": 7, "method": method,
        "params": {**params, "_meta": {
            "io.modelcontextprotocol/protocolVersion": MODERN,
            "io.modelcontextprotocol/clientCapabilities": caps or {},
            "io.modelcontextprotocol/clientInfo": {"name": "replica-tests", "version": "1"},
        }},
    }  # fmt: skip
    r = httpx.post(url, json=body, headers=modern_headers(token, method, name), timeout=30)
    out: dict[str, Any] = r.json()
    return out


# ----------------------------------------------------------------------- any replica


async def test_stateless_sdk_clients_alternating_between_replicas_are_served_by_both(
    pair: list[GatewayProc], front: RoundRobin
) -> None:
    token = pair[0].tokens["alpha"]

    async def one(marker: str) -> list[str]:
        async with sdk_client(front.url("alpha"), token) as c:
            tools = await c.list_tools()
            assert "everything_echo" in {t.name for t in tools.tools}
            return [
                text_of(await c.call_tool("everything_echo", {"message": f"{marker}-{i}"}))
                for i in range(4)
            ]

    a, b = await asyncio.gather(one("a"), one("b"))
    assert all(f"a-{i}" in a[i] for i in range(4)) and all(f"b-{i}" in b[i] for i in range(4))
    assert set(front.backends_of("tools/call")) == {0, 1}


async def test_a_sampling_round_trip_crosses_replicas(
    pair: list[GatewayProc], front: RoundRobin
) -> None:
    token = pair[0].tokens["alpha"]
    async with sdk_client(front.url("alpha"), token, sampling_callback=sampler("crossing")) as c:
        for _ in range(2):
            result = await c.call_tool(
                "everything_trigger-sampling-request", {"prompt": "hi", "maxTokens": 5}
            )
            assert "answer-from-crossing" in text_of(result)
    calls = [h for h in front.hops if h.method == "tools/call"]
    # Each call's first request parked it on one replica; its retry, carrying the
    # requestState, was sent by the front to the other one, which relayed it.
    crossed = [
        (first.backend, retry.backend)
        for first, retry in itertools.pairwise(calls)
        if not first.continues and retry.continues
    ]
    assert len(crossed) == 2 and all(a != b for a, b in crossed), front.hops


def test_a_task_started_on_one_replica_is_followed_and_cancelled_on_the_other(
    pair: list[GatewayProc],
) -> None:
    token = pair[0].tokens["alpha"]
    caps = {"extensions": {TASKS: {}}}
    a, b = pair[0].url("alpha"), pair[1].url("alpha")
    handle = rpc(a, token, "tools/call", {"name": "crashy_slow", "arguments": {"seconds": 2}},
                 "crashy_slow", caps)["result"]  # fmt: skip
    assert handle["resultType"] == "task"
    task_id = handle["taskId"]
    deadline = time.monotonic() + 60
    while True:
        got = rpc(b, token, "tasks/get", {"taskId": task_id}, task_id, caps)["result"]
        if got["status"] != "working" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert got["status"] == "completed" and got["result"]["content"][0]["text"] == "slept"

    marker = f"replica-cancel-{time.monotonic_ns()}"
    watched = rpc(a, token, "tools/call",
                  {"name": "crashy_watched", "arguments": {"seconds": 30, "marker": marker}},
                  "crashy_watched", caps)["result"]  # fmt: skip
    ack = rpc(b, token, "tasks/cancel", {"taskId": watched["taskId"]}, watched["taskId"], caps)
    assert ack["result"] == {"resultType": "complete"}
    # The server that ran it, a child of the first replica, saw the cancellation.
    assert pair[0].wait_for_server_log("crashy", "alpha", f"cancelled {marker}")


def test_a_list_cursor_from_one_replica_pages_on_the_other(pair: list[GatewayProc]) -> None:
    # server-everything pages its resources: the gateway's cursor wraps its cursor.
    token = pair[0].tokens["alpha"]
    first = rpc(pair[0].url("alpha"), token, "resources/list", {})["result"]
    cursor = first.get("nextCursor")
    assert cursor, first
    seen = [r["uri"] for r in first["resources"]]
    pages = 1
    while cursor:
        replica = pair[pages % 2]
        page = rpc(replica.url("alpha"), token, "resources/list", {"cursor": cursor})
        assert "result" in page, page
        seen += [r["uri"] for r in page["result"]["resources"]]
        cursor = page["result"].get("nextCursor")
        pages += 1
    assert pages >= 2 and len(seen) == len(set(seen))


def test_a_legacy_session_on_the_wrong_replica_is_not_found_at_once(
    pair: list[GatewayProc],
) -> None:
    token = pair[0].tokens["alpha"]
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json, text/event-stream",
               "Content-Type": "application/json"}  # fmt: skip
    init = httpx.post(pair[0].url("alpha"), headers=headers, timeout=30, json={
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                   "clientInfo": {"name": "sticky", "version": "1"}}})  # fmt: skip
    session = init.headers["mcp-session-id"]
    started = time.monotonic()
    wrong = httpx.post(pair[1].url("alpha"), timeout=30,
                       headers={**headers, "Mcp-Session-Id": session,
                                "MCP-Protocol-Version": "2025-11-25"},
                       json={"jsonrpc": "2.0", "id": 2, "method": "tools/list"})  # fmt: skip
    assert wrong.status_code == 404 and "Session not found" in wrong.text
    assert time.monotonic() - started < 5  # an answer, not a hang


# ----------------------------------------------------------------- announced at once


class ListenStream:
    """A modern subscriptions/listen stream read in a thread: what arrived, and when
    it ended."""

    def __init__(self, url: str, token: str) -> None:
        self.events: list[str] = []
        self.ended_at: float | None = None
        self.open = threading.Event()
        body = {"jsonrpc": "2.0", "id": 1, "method": "subscriptions/listen", "params": {
            "notifications": {"toolsListChanged": True}, "_meta": {
                "io.modelcontextprotocol/protocolVersion": MODERN,
                "io.modelcontextprotocol/clientCapabilities": {},
                "io.modelcontextprotocol/clientInfo": {"name": "listener", "version": "1"}}}}  # fmt: skip
        self._thread = threading.Thread(target=self._read, args=(url, token, body), daemon=True)
        self._thread.start()
        assert self.open.wait(30), "the listen stream did not open"

    def _read(self, url: str, token: str, body: dict[str, Any]) -> None:
        headers = modern_headers(token, "subscriptions/listen")
        with (
            contextlib.suppress(httpx.HTTPError),
            httpx.stream(
                "POST", url, json=body, headers=headers, timeout=httpx.Timeout(60, read=None)
            ) as r,
        ):
            self.open.set()
            for line in r.iter_lines():
                if line.startswith("data:"):
                    self.events.append(line)
        self.ended_at = time.monotonic()
        self.open.set()

    def wait_for(self, needle: str, timeout: float) -> float | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(needle in e for e in self.events):
                return time.monotonic()
            time.sleep(0.01)
        return None


def test_a_tool_switched_on_one_replica_is_announced_on_the_other_within_a_second(
    pair: list[GatewayProc],
) -> None:
    stream = ListenStream(pair[1].url("alpha"), pair[0].tokens["alpha"])
    assert stream.wait_for('"result"', 10) or stream.events  # the acknowledgement
    pair[0].cli("tool", "disable", "alpha", "everything", "echo")
    switched = time.monotonic()
    try:
        seen = stream.wait_for("notifications/tools/list_changed", 5)
        assert seen is not None, stream.events
        assert seen - switched < 1.0
    finally:
        pair[0].cli("tool", "enable", "alpha", "everything", "echo")


def test_a_token_revoked_on_one_replica_ends_its_streams_on_the_other_within_a_second(
    pair: list[GatewayProc],
) -> None:
    token = pair[0].cli("token", "mint", "alpha", "--name", "short-lived").stdout.strip()
    stream = ListenStream(pair[1].url("alpha"), token)
    listed = pair[0].cli("token", "list", "alpha").stdout.splitlines()
    [token_id] = [line.split("\t")[0] for line in listed if "\tshort-lived\t" in line]
    pair[0].cli("token", "revoke", token_id)
    revoked = time.monotonic()
    deadline = revoked + 5
    while stream.ended_at is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert stream.ended_at is not None, "the revoked token's stream stayed open"
    assert stream.ended_at - revoked < 1.0
    assert rpc(pair[1].url("alpha"), token, "tools/list", {}).get("error")


# -------------------------------------------------------------------------- attacks


def test_attack_a_forged_request_state_naming_another_replica_is_not_relayed(
    pair: list[GatewayProc],
) -> None:
    token = pair[0].tokens["alpha"]
    other = replica_id(pair[0])
    forged = f"gw.{other}.{'A' * 24}.{'B' * 22}"
    got = rpc(pair[1].url("alpha"), token, "tools/call",
              {"name": "everything_echo", "arguments": {"message": "x"},
               "requestState": forged, "inputResponses": {}}, "everything_echo")  # fmt: skip
    assert got["error"]["message"] == "Invalid params: requestState was not issued to you"


def test_attack_messages_put_on_a_replicas_channel_without_the_vault_key_are_dropped(
    pair: list[GatewayProc], pg_socket_dir: str
) -> None:
    """Someone who can reach the database but not the vault writes on a replica's
    relay channel: neither junk nor a well-formed envelope sealed with a guessed key
    makes it act."""
    name = database_name(pair[0])
    target = replica_id(pair[0])
    fake = base64.b64encode(os.urandom(80)).decode()
    with psycopg.connect(host=pg_socket_dir, user="gig", dbname=name, autocommit=True) as c:
        for payload in (f"{os.urandom(6).hex()}:0:1:{'A' * 22}:{fake}", "not even pieces"):
            c.execute("SELECT pg_notify(%s, %s)", (f"gigmcp_relay_{target}", payload))
    deadline = time.monotonic() + 30  # a bound for a hung gateway, not a timing claim
    while "relay: notifications dropped since the last report" not in pair[0].output():
        assert time.monotonic() < deadline, pair[0].output()[-2000:]
        time.sleep(0.05)
    # And the replica goes on serving.
    got = rpc(pair[0].url("alpha"), pair[0].tokens["alpha"], "tools/call",
              {"name": "everything_echo", "arguments": {"message": "still"}}, "everything_echo")  # fmt: skip
    assert got["result"]["content"][0]["text"].endswith("still")


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_attack_a_database_role_without_grants_cannot_flood_a_replica(
    pair: list[GatewayProc], pg_socket_dir: str
) -> None:
    """LISTEN and NOTIFY need no privilege: any role that can log in to the cluster can
    write on a replica's relay channel (its name is in every requestState). Pieces
    announcing huge messages must cost the replica nothing: no memory kept for them,
    no time lost, the replica answering as before."""
    name = database_name(pair[0])
    role = f"nobody_{os.getpid()}"
    with psycopg.connect(host=pg_socket_dir, user="gig", dbname=name, autocommit=True) as c:
        c.execute(f'CREATE ROLE "{role}" LOGIN')
    target = replica_id(pair[0])
    assert pair[0].proc is not None
    pid = pair[0].proc.pid
    before = _rss_mb(pid)
    with (
        psycopg.connect(host=pg_socket_dir, user=role, dbname=name, autocommit=True) as c,
        c.cursor() as cur,
    ):
        cur.executemany(
            "SELECT pg_notify(%s, %s)",
            [(f"gigmcp_relay_{target}", f"{k:012x}:0:16384:{'A' * 22}:x") for k in range(3000)],
        )
    token = pair[0].tokens["alpha"]
    started = time.monotonic()
    got = rpc(pair[0].url("alpha"), token, "tools/call",
              {"name": "everything_echo", "arguments": {"message": "unbothered"}},
              "everything_echo")  # fmt: skip
    answered = time.monotonic() - started
    grown = _rss_mb(pid) - before
    assert got["result"]["content"][0]["text"].endswith("unbothered")
    assert grown < 50, f"the replica grew by {grown:.0f} MB"
    assert answered < 2.0, f"the replica took {answered:.1f} s to answer"


async def test_attack_a_relayed_request_replayed_from_the_database_runs_nothing(
    pair: list[GatewayProc], front: RoundRobin, pg_socket_dir: str
) -> None:
    """An eavesdropper on the database records the sealed messages of a relayed call
    and sends them again: the holder drops them (seen before; and after 30 s, stale)."""
    name = database_name(pair[0])
    channels = [f"gigmcp_relay_{replica_id(r)}" for r in pair]
    recorded: list[tuple[str, str]] = []
    with psycopg.connect(host=pg_socket_dir, user="gig", dbname=name, autocommit=True) as spy:
        for ch in channels:
            spy.execute(f'LISTEN "{ch}"')
        token = pair[0].tokens["alpha"]
        async with sdk_client(front.url("alpha"), token, sampling_callback=sampler("r")) as c:
            await c.call_tool(
                "everything_trigger-sampling-request", {"prompt": "hi", "maxTokens": 5}
            )
        for note in spy.notifies(timeout=2):
            recorded.append((note.channel, note.payload))
    assert recorded, "the relay sent nothing over the database"
    said = "replayed or cancelled request was dropped"
    before = sum(r.output().count(said) for r in pair)
    for ch, payload in recorded:
        _notify_db(pg_socket_dir, name, ch, payload)
    deadline = time.monotonic() + 10
    while True:
        after = sum(r.output().count(said) for r in pair)
        if after > before:
            break
        assert time.monotonic() < deadline, "the replayed request was not refused"
        await asyncio.sleep(0.05)


def _notify_db(pg_socket_dir: str, db: str, channel: str, payload: str) -> None:
    with psycopg.connect(host=pg_socket_dir, user="gig", dbname=db, autocommit=True) as c:
        c.execute("SELECT pg_notify(%s, %s)", (channel, payload))


# ------------------------------------------------------------------- a replica dies


def test_one_replica_killed_mid_run_the_other_keeps_serving(
    tmp_path: Path, pg_socket_dir: str
) -> None:
    with (
        replica_set(
            tmp_path, pg_socket_dir, {"everything": EVERYTHING}, GIG_REQUEST_TIMEOUT="30"
        ) as pair,
        round_robin([r.base for r in pair]) as front,
    ):
        token = pair[0].tokens["alpha"]
        # A call parked on the first replica, waiting for its client's answer.
        asked = rpc(pair[0].url("alpha"), token, "tools/call",
                    {"name": "everything_trigger-sampling-request",
                     "arguments": {"prompt": "hi", "maxTokens": 5}},
                    "everything_trigger-sampling-request", {"sampling": {}})["result"]  # fmt: skip
        assert asked["resultType"] == "input_required", asked
        results: list[str] = []
        failed: list[BaseException] = []
        errors: list[BaseException] = []
        stop = threading.Event()

        def calls() -> None:
            async def run() -> None:
                async with sdk_client(front.url("alpha"), token) as c:
                    i = 0
                    while not stop.is_set():
                        try:
                            r = await c.call_tool("everything_echo", {"message": f"m{i}"})
                        except Exception as exc:
                            # The one call in flight on the replica when it died.
                            failed.append(exc)
                        else:
                            results.append(text_of(r))
                        i += 1

            try:
                asyncio.run(run())
            except BaseException as exc:
                errors.append(exc)

        worker = threading.Thread(target=calls, daemon=True)
        worker.start()
        while len(results) < 10 and worker.is_alive():
            time.sleep(0.05)
        assert pair[0].proc is not None
        os.killpg(pair[0].proc.pid, signal.SIGKILL)
        killed_at = len(results)
        deadline = time.monotonic() + 60
        while len(results) < killed_at + 20 and worker.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        stop.set()
        worker.join(30)
        assert not errors, errors
        assert len(results) >= killed_at + 20
        # At most the call in flight at the kill was lost; the client went on.
        assert len(failed) <= 1, failed
        # The parked call died with its replica: its retry on the survivor gets an
        # answer at once, not a hang.
        [(key, _question)] = asked["inputRequests"].items()
        started = time.monotonic()
        late = rpc(pair[1].url("alpha"), token, "tools/call",
                   {"name": "everything_trigger-sampling-request",
                    "arguments": {"prompt": "hi", "maxTokens": 5},
                    "requestState": asked["requestState"],
                    "inputResponses": {key: {"role": "assistant", "model": "m",
                                             "content": {"type": "text", "text": "late"}}}},
                   "everything_trigger-sampling-request", {"sampling": {}})  # fmt: skip
        assert "did not answer" in late["error"]["message"], late
        assert time.monotonic() - started < 10
