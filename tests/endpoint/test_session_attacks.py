"""Attack list for legacy sessions and notification streams: one tenant must not evict
another's sessions, sessions must not leak their listeners, and a revoked token's open
streams must end at once. Runs the real endpoint in-process (tests/support/endpoint_inproc.py)
so the tests can count a hub's listeners."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx2 as httpx

from gigmcp.endpoint.sessions import SessionStore
from tests.support.endpoint_inproc import LEGACY, stack, wait_until
from tests.support.gateway import TIME, GatewayProc, gateway
from tests.support.legacy_client import open_session, sse_messages
from tests.support.mcp_http import modern_body, modern_headers


async def test_a_token_opening_many_sessions_cannot_evict_another_profiles_session(
    tmp_path: Path,
) -> None:
    async with stack(tmp_path, "p1", "p2") as s:
        s.endpoint.sessions = SessionStore(max_sessions=4)
        t1, t2 = s.mint("p1", "t1"), s.mint("p2", "t2")
        victim = await s.session("p2", t2)
        assert victim is not None
        opened = [await s.session("p1", t1) for _ in range(12)]
        assert await s.ping("p2", t2, victim) == 200, "another profile's session was evicted"
        live = [sid for sid in opened if sid and await s.ping("p1", t1, sid) == 200]
        assert live, "the attacker's own newest sessions work"
        assert s.listeners("p1") == len(live)


async def test_a_token_over_its_session_cap_evicts_only_its_own_oldest(tmp_path: Path) -> None:
    async with stack(tmp_path, "p1") as s:
        s.endpoint.sessions = SessionStore(per_token=3, per_profile=10)
        t1, t1b = s.mint("p1", "t1"), s.mint("p1", "t1b")
        neighbour = await s.session("p1", t1b)
        assert neighbour is not None
        opened = [await s.session("p1", t1) for _ in range(8)]
        assert all(opened)
        statuses = [await s.ping("p1", t1, sid) for sid in opened if sid]
        assert statuses == [404] * 5 + [200] * 3
        assert await s.ping("p1", t1b, neighbour) == 200
        assert s.listeners("p1") == 4


async def test_a_profile_over_its_session_cap_evicts_within_the_profile(tmp_path: Path) -> None:
    async with stack(tmp_path, "p1", "p2") as s:
        s.endpoint.sessions = SessionStore(per_token=100, per_profile=3, max_sessions=100)
        other = s.mint("p2", "other")
        kept = await s.session("p2", other)
        tokens = [s.mint("p1", f"t{i}") for i in range(6)]
        opened = [await s.session("p1", t) for t in tokens]
        assert [
            await s.ping("p1", t, sid or "") for t, sid in zip(tokens, opened, strict=True)
        ] == [404] * 3 + [200] * 3
        assert kept is not None and await s.ping("p2", other, kept) == 200
        assert s.listeners("p1") == 3 and s.listeners("p2") == 1


async def test_expired_sessions_leave_no_listener_behind(tmp_path: Path) -> None:
    """Tiny TTL: every session is idle at once. Nothing but the gateway's own sweeping
    (no new session, no DELETE) may remove them and their listeners."""
    async with stack(tmp_path, "p1") as s:
        s.endpoint.sessions = SessionStore(idle_timeout=0.0)
        t1 = s.mint("p1", "t1")
        for _ in range(3):
            assert await s.session("p1", t1) is not None
        assert s.listeners("p1") >= 1
        await wait_until(lambda: s.listeners("p1") == 0, timeout=5)
        assert len(s.endpoint.sessions) == 0


async def test_evicted_and_deleted_sessions_leave_no_listener_behind(tmp_path: Path) -> None:
    async with stack(tmp_path, "p1") as s:
        clock = [1000.0]
        s.endpoint.sessions = SessionStore(idle_timeout=60, per_token=2, clock=lambda: clock[0])
        t1 = s.mint("p1", "t1")
        opened = [await s.session("p1", t1) for _ in range(5)]
        assert s.listeners("p1") == 2
        last = opened[-1]
        assert last is not None
        ex = s.request("DELETE", "p1", t1, mcp_session_id=last)
        await ex.json()
        assert ex.status == 204
        assert s.listeners("p1") == 1
        clock[0] += 61
        s.endpoint.sessions.expire()
        assert s.listeners("p1") == 0


async def _stream_ends(ex: object, timeout: float) -> float:
    start = time.monotonic()
    await asyncio.wait_for(ex.ended.wait(), timeout)  # type: ignore[attr-defined]
    return time.monotonic() - start


async def test_revoking_a_token_closes_its_get_and_listen_streams_at_once(tmp_path: Path) -> None:
    async with stack(tmp_path, "p1") as s:
        doomed, bystander = s.mint("p1", "doomed"), s.mint("p1", "bystander")
        streams = {}
        for name, token in (("doomed", doomed), ("bystander", bystander)):
            sid = await s.session("p1", token)
            assert sid is not None
            get = s.request(
                "GET",
                "p1",
                token,
                accept="text/event-stream",
                mcp_session_id=sid,
                mcp_protocol_version=LEGACY,
            )
            assert await get.started() == 200
            body = modern_body(
                "subscriptions/listen", {"notifications": {"toolsListChanged": True}}
            )
            listen = s.request(
                "POST", "p1", token, body, modern_headers(token, "subscriptions/listen")
            )
            assert await listen.started() == 200
            streams[name] = (sid, get, listen)
        # Sessions, GET streams and listen streams of both tokens are on the hub.
        await wait_until(lambda: s.listeners("p1") == 4, timeout=5)
        s.revoke(doomed)
        _sid, get, listen = streams["doomed"]
        took_get = await _stream_ends(get, timeout=5)
        took_listen = await _stream_ends(listen, timeout=5)
        print(f"revocation closed GET after {took_get:.3f}s, listen after {took_listen:.3f}s")
        await wait_until(lambda: s.listeners("p1") == 2, timeout=5)
        sid_b, get_b, listen_b = streams["bystander"]
        assert not get_b.ended.is_set() and not listen_b.ended.is_set()
        assert await s.ping("p1", bystander, sid_b) == 200


def test_revoking_a_token_ends_its_get_stream_through_the_real_gateway(gw: GatewayProc) -> None:
    """The same through `gigmcp serve` and `gigmcp token revoke`: the open GET stream
    ends (the read returns) instead of carrying the profile's notifications on."""
    token = gw.cli("token", "mint", "beta", "--name", "revoked-listener").stdout.strip()
    listing = gw.cli("token", "list", "beta").stdout
    token_id = next(line.split()[0] for line in listing.splitlines() if "revoked-listener" in line)
    with httpx.Client(timeout=httpx.Timeout(10, read=10)) as client:
        h = open_session(client, gw.url("beta"), token)
        with client.stream(
            "GET", gw.url("beta"), headers=dict(h, Accept="text/event-stream")
        ) as stream:
            assert stream.status_code == 200
            gw.cli("token", "revoke", token_id)
            revoked = time.monotonic()
            events = list(sse_messages(stream))  # returns when the gateway ends the stream
            took = time.monotonic() - revoked
    print(f"real gateway: GET stream ended {took:.3f}s after the revoke command returned")
    assert events == []
    assert took < 5


def test_the_operators_session_caps_reach_the_real_gateway(tmp_path: Path) -> None:
    """The caps are settings: set through the environment of `gigmcp serve`, they are the
    ones enforced (an empty session store once replaced them with the defaults)."""
    with gateway(tmp_path) as g:
        g.add_server("beta", TIME)
        g.profile("p1", "beta")
        g.start(GIG_SESSIONS_PER_TOKEN="2")
        url, token = g.url("p1"), g.tokens["p1"]
        with httpx.Client(timeout=30) as client:
            opened = [open_session(client, url, token) for _ in range(3)]
            ping = {"jsonrpc": "2.0", "id": 9, "method": "ping"}
            statuses = [client.post(url, json=ping, headers=h).status_code for h in opened]
    assert statuses == [404, 200, 200]  # the third session evicted the token's oldest
