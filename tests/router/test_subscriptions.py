"""Resource subscriptions are shared by every client of a profile: the gateway subscribes
upstream once, for the first subscriber, and unsubscribes once the last one is gone. One
client must never cut off another (an unsubscribe from a client that never subscribed),
and a client that goes away (DELETE, a closed listen stream, a session expired for
idleness) must not keep the upstream subscription alive. Two real clients on one profile, against a real gateway
and a real server (tests/servers/bulletin.py) that logs what it receives."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2 as httpx
import mcp_types as types
import pytest
from mcp.client.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from tests.support.gateway import SERVERS, GatewayProc, gateway
from tests.support.legacy_client import open_session

PROFILE = "news"


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProc]:
    with gateway(tmp_path_factory.mktemp("subs")) as g:
        g.add_server("bulletin", (sys.executable, str(SERVERS / "bulletin.py")))
        g.profile(PROFILE, "bulletin")
        g.start()
        yield g


class Updates:
    """The ``notifications/resources/updated`` one client received, by URI."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[str] = asyncio.Queue()

    async def handler(self, message: Any) -> None:
        if isinstance(message, types.ResourceUpdatedNotification):
            await self.queue.put(str(message.params.uri))

    async def next(self, timeout: float = 15) -> str:
        return await asyncio.wait_for(self.queue.get(), timeout)


@asynccontextmanager
async def client(gw: GatewayProc, mode: str, **kw: Any) -> AsyncIterator[Client]:
    http = create_mcp_http_client(headers={"Authorization": f"Bearer {gw.tokens[PROFILE]}"})
    async with (
        http,
        Client(streamable_http_client(gw.url(PROFILE), http_client=http), mode=mode, **kw) as c,
    ):
        yield c


async def publish(c: Client, uri: str) -> str:
    """Ask the server to say ``uri`` changed; ``sent`` if it is subscribed upstream."""
    result = await c.call_tool("bulletin_publish", {"uri": uri.split("+", 1)[1]})
    return "".join(x.text for x in result.content if isinstance(x, types.TextContent))


async def upstream_saw(gw: GatewayProc, line: str) -> bool:
    # The server's own prefix: "subscribe X" alone is also inside "unsubscribe X".
    return await asyncio.to_thread(
        gw.wait_for_server_log, "bulletin", PROFILE, f"bulletin: {line}", 30
    )


async def test_an_unsubscribe_from_a_client_that_never_subscribed_cuts_no_one_off(
    gw: GatewayProc,
) -> None:
    uri = "bulletin+note://bogus-unsubscribe"
    got = Updates()
    async with (
        client(gw, "legacy", message_handler=got.handler) as subscriber,
        client(gw, "legacy") as stranger,
    ):
        await subscriber.subscribe_resource(uri)
        assert await upstream_saw(gw, "subscribe note://bogus-unsubscribe")
        await stranger.unsubscribe_resource(uri)  # never subscribed: must change nothing
        assert await publish(subscriber, uri) == "sent"
        assert await got.next() == uri
        await subscriber.unsubscribe_resource(uri)
        assert await upstream_saw(gw, "unsubscribe note://bogus-unsubscribe")
        assert await publish(subscriber, uri) == "not subscribed"


async def test_a_deleted_session_releases_its_subscriptions(gw: GatewayProc) -> None:
    uri = "bulletin+note://deleted-session"
    got = Updates()
    async with client(gw, "legacy", message_handler=got.handler) as stays:
        async with client(gw, "legacy") as leaves:
            await leaves.subscribe_resource(uri)
            await stays.subscribe_resource(uri)
        # ``leaves`` sent DELETE on the way out: the other subscriber is still served.
        assert await publish(stays, uri) == "sent"
        assert await got.next() == uri
    # The last subscriber's session is deleted too: nobody holds the subscription.
    assert await upstream_saw(gw, "unsubscribe note://deleted-session")


async def test_a_closed_listen_stream_releases_its_subscriptions(gw: GatewayProc) -> None:
    """A legacy subscriber unsubscribes first, then the modern listen stream closes: the
    upstream subscription ends with the last of them."""
    uri = "bulletin+note://listen-stream"
    async with client(gw, "auto") as modern, client(gw, "legacy") as legacy:
        await legacy.subscribe_resource(uri)
        async with modern.listen(resource_subscriptions=[uri]) as sub:
            assert list(sub.honored.resource_subscriptions or []) == [uri]
            await legacy.unsubscribe_resource(uri)
            assert await publish(modern, uri) == "sent"
            event = await asyncio.wait_for(sub.__anext__(), 15)
            assert uri in repr(event)
        assert await upstream_saw(gw, "unsubscribe note://listen-stream")
        assert await publish(legacy, uri) == "not subscribed"


@pytest.fixture(scope="module")
def short_lived(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProc]:
    """A gateway whose legacy sessions expire after one idle second."""
    with gateway(tmp_path_factory.mktemp("expiry")) as g:
        g.add_server("bulletin", (sys.executable, str(SERVERS / "bulletin.py")))
        g.profile(PROFILE, "bulletin")
        g.start(GIG_SESSION_IDLE_TIMEOUT="1")
        yield g


def test_an_expired_session_releases_its_subscriptions(short_lived: GatewayProc) -> None:
    """A client that subscribes and then goes quiet (no GET stream, no request: an SDK
    client holds its GET stream open and never idles, so this is the wire itself) is
    expired by the sweeper, and its subscription goes with it: the upstream is told."""
    uri = "bulletin+note://expired-session"
    url = short_lived.url(PROFILE)
    with httpx.Client(timeout=30) as http:
        h = open_session(http, url, short_lived.tokens[PROFILE])
        sub = {"jsonrpc": "2.0", "id": 2, "method": "resources/subscribe", "params": {"uri": uri}}
        r = http.post(url, json=sub, headers=h)
        assert r.status_code == 200, r.text
        assert short_lived.wait_for_server_log(
            "bulletin", PROFILE, "bulletin: subscribe note://expired-session", 30
        )
        # Nothing more from this client: after a second idle the sweeper ends the
        # session, and the subscription it was the last holder of ends upstream.
        assert short_lived.wait_for_server_log(
            "bulletin", PROFILE, "bulletin: unsubscribe note://expired-session", 30
        )
        # The session is gone for good: the client is told so, by the specification's 404.
        ping = {"jsonrpc": "2.0", "id": 3, "method": "ping"}
        assert http.post(url, json=ping, headers=h).status_code == 404
