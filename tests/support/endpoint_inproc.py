"""The real MCP endpoint in this process, for tests that must look inside the gateway.

Builds the real stack (SQLite store, :class:`StoreCatalog`, :class:`Router` with its
watcher, :class:`Supervisor`, :class:`McpEndpoint`) and drives it through ASGI the way
an HTTP server does: one task per exchange, ``receive`` yields the body and then waits
for the test to disconnect, ``send`` collects what the endpoint writes. Tests use it to
count a hub's listeners or to control a session store's clock; nothing is stubbed.
It must never open a socket or start a server process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gigmcp.control import actor, tokens
from gigmcp.control.actor import Actor
from gigmcp.control.profiles import create_profile
from gigmcp.endpoint.asgi import McpEndpoint
from gigmcp.router.gateway import Router
from gigmcp.store.catalog import StoreCatalog
from gigmcp.supervisor.launcher import PlainLauncher
from gigmcp.supervisor.supervisor import Supervisor

LEGACY = "2025-06-18"


class Exchange:
    """One HTTP request/response through the endpoint."""

    def __init__(self, app: McpEndpoint, method: str, path: str, headers: dict, body: Any):
        raw = b"" if body is None else json.dumps(body).encode()
        self._body: bytes | None = raw
        self._gone = asyncio.Event()
        self.messages: asyncio.Queue[MutableMapping[str, Any]] = asyncio.Queue()
        scope = {
            "type": "http",
            "method": method,
            "path": path,
            "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        }
        self.task = asyncio.get_running_loop().create_task(app(scope, self._receive, self._send))
        self.status = 0
        self.headers: dict[str, str] = {}
        self.ended = asyncio.Event()

    async def _receive(self) -> dict[str, Any]:
        if self._body is not None:
            body, self._body = self._body, None
            return {"type": "http.request", "body": body, "more_body": False}
        await self._gone.wait()
        return {"type": "http.disconnect"}

    async def _send(self, message: MutableMapping[str, Any]) -> None:
        if self._gone.is_set():
            raise OSError("client disconnected")
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.headers = {k.decode(): v.decode() for k, v in message.get("headers", [])}
        elif not message.get("more_body", False):
            self.ended.set()
        await self.messages.put(message)

    async def started(self) -> int:
        while self.status == 0:
            await self.messages.get()
        return self.status

    async def json(self) -> Any:
        await self.started()
        chunks = []
        while True:
            message = await self.messages.get()
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        data = b"".join(chunks)
        return json.loads(data) if data else None

    def disconnect(self) -> None:
        self._gone.set()

    async def finish(self) -> None:
        self.disconnect()
        with contextlib.suppress(Exception):
            await self.task


@dataclass
class Stack:
    catalog: StoreCatalog
    router: Router
    endpoint: McpEndpoint
    me: Actor
    tokens: dict[str, str] = field(default_factory=dict)
    exchanges: list[Exchange] = field(default_factory=list)

    def mint(self, profile: str, name: str) -> str:
        token = tokens.mint_token(self.catalog.engine, self.me, profile, name, None)
        self.tokens[name] = token
        return token

    def token_id(self, token: str) -> int:
        grant = self.catalog.authenticate(token)
        assert grant is not None
        return grant.token_id

    def revoke(self, token: str) -> None:
        tokens.revoke_token(self.catalog.engine, self.me, self.token_id(token))

    def listeners(self, profile: str) -> int:
        view = self.catalog.profile_by_slug(profile)
        assert view is not None
        hub = self.router.existing_hub(view.id)
        return 0 if hub is None else len(hub.fanout)

    def request(
        self,
        method: str,
        profile: str,
        token: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        **more: str,
    ) -> Exchange:
        """``more``: header names with ``_`` for ``-`` (``mcp_session_id=...``)."""
        h = {"authorization": f"Bearer {token}", **(headers or {})}
        h.update({k.replace("_", "-"): v for k, v in more.items()})
        exchange = Exchange(self.endpoint, method, f"/mcp/p/{profile}", h, body)
        self.exchanges.append(exchange)
        return exchange

    async def initialize(self, profile: str, token: str) -> Exchange:
        init = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {"protocolVersion": LEGACY, "capabilities": {}, "clientInfo": {"name": "t"}},
        }
        ex = self.request(
            "POST", profile, token, init, accept="application/json, text/event-stream"
        )
        await ex.json()
        return ex

    async def session(self, profile: str, token: str) -> str | None:
        """A new legacy session's id, or None when the gateway refused one."""
        ex = await self.initialize(profile, token)
        return ex.headers.get("mcp-session-id") if ex.status == 200 else None

    async def ping(self, profile: str, token: str, session: str) -> int:
        ex = self.request(
            "POST",
            profile,
            token,
            {"jsonrpc": "2.0", "id": 9, "method": "ping"},
            accept="application/json",
            mcp_session_id=session,
        )
        await ex.json()
        return ex.status


@contextlib.asynccontextmanager
async def stack(tmp_path: Path, *profiles: str) -> AsyncIterator[Stack]:
    catalog = StoreCatalog(f"sqlite:///{tmp_path / 'gig.db'}")
    me = actor.local_admin(catalog.engine)
    for slug in profiles:
        create_profile(catalog.engine, me, slug)
    catalog.refresh()
    router = Router(catalog)  # the default watch interval: what production notices at
    supervisor = Supervisor(PlainLauncher(), router, logs_dir=tmp_path / "logs")
    router.attach(supervisor)
    endpoint = McpEndpoint(router)
    router.start()
    s = Stack(catalog, router, endpoint, me)
    try:
        yield s
    finally:
        for ex in s.exchanges:
            await ex.finish()
        await endpoint.aclose()
        await router.aclose()
        await supervisor.shutdown()
        catalog.engine.dispose()


async def wait_until(predicate: Any, timeout: float) -> bool:
    """Wait (bounded) for a condition the gateway reaches through its own events."""
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110 - internal state has no event to await
            await asyncio.sleep(0.01)
    return True
