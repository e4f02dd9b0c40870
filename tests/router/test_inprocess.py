"""The router and the supervisor over in-process servers: the real store, router,
supervisor and upstream connections, with servers that are functions instead of
processes (tests/support/inprocess.py). Fast, so the behaviours that need several
servers, a crash or a server's own message can be checked on every run without a
process; the same behaviours through real processes, real clients and the jail are in
tests/router/test_aggregation.py, tests/endpoint and tests/sandbox.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from gigmcp.control import actor, profiles, servers
from gigmcp.core.jsontypes import JSON
from gigmcp.router.context import RequestContext
from gigmcp.router.gateway import Router
from gigmcp.router.hub import ProfileHub
from gigmcp.store.catalog import StoreCatalog
from gigmcp.supervisor.supervisor import Supervisor
from tests.support.inprocess import MemoryLauncher, Server, tools_server

WAIT = 5.0  # in-process: only a hang reaches it


class NoAsking:
    """The request channel of a client that cannot be asked anything (a plain JSON
    answer): request-scoped notifications are kept."""

    def __init__(self) -> None:
        self.notified: list[JSON] = []

    @property
    def can_ask(self) -> bool:
        return False

    def notify(self, message: JSON) -> None:
        self.notified.append(message)

    async def ask(self, method: str, params: JSON | None) -> JSON:
        raise AssertionError("nothing may be asked of this client")


@dataclass(eq=False)
class Listening:
    """A client's change-notification channel, recorded."""

    token_id: int = 1
    got: asyncio.Queue[JSON] = field(default_factory=asyncio.Queue)

    def wants(self, method: str, detail: str | None) -> bool:
        return True

    def deliver(self, message: JSON) -> None:
        self.got.put_nowait(message)


@dataclass
class World:
    catalog: StoreCatalog
    router: Router
    supervisor: Supervisor
    launcher: MemoryLauncher
    listener: Listening = field(default_factory=Listening)
    ids: Any = field(default_factory=lambda: iter(range(1, 10_000)))

    def hub(self) -> ProfileHub:
        view = self.catalog.profile_by_slug("p1")
        assert view is not None
        return self.router.hub(view)

    def ctx(self) -> RequestContext:
        view = self.catalog.profile_by_slug("p1")
        assert view is not None
        return RequestContext(
            era="legacy",
            protocol_version="2025-06-18",
            client_capabilities={},
            client_info={"name": "in-process", "version": "0"},
            token_id=1,
            user_id=1,
            profile_id=view.id,
            sink=NoAsking(),
            listener=self.listener,
        )

    async def request(self, method: str, params: JSON | None = None) -> JSON:
        msg: JSON = {"jsonrpc": "2.0", "id": next(self.ids), "method": method}
        if params is not None:
            msg["params"] = params
        return await asyncio.wait_for(self.hub().handle(self.ctx(), msg), WAIT)


def dying_tools(word: str) -> Any:
    """A server whose ``echo`` makes the process exit, unanswered, on ``word``."""
    inner = tools_server({"echo": lambda a: f"echo: {a.get('text')}"})

    def handle(server: Server, message: JSON) -> JSON | None:
        args = (message.get("params") or {}).get("arguments") or {}
        if message.get("method") == "tools/call" and args.get("text") == word:
            server.log("dying on purpose")
            server.stdout.feed_eof()  # its output ends: the process is gone
            return None
        return inner(server, message)

    return handle


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    catalog = StoreCatalog(f"sqlite:///{tmp_path / 'g.db'}")
    me = actor.local_admin(catalog.engine)
    profiles.create_profile(catalog.engine, me, "p1")
    for name in ("alpha", "beta"):
        servers.add_server(catalog.engine, me, name, ["in-process"], {}, [], None)
        profiles.assign(catalog.engine, me, "p1", name, True)
    catalog.refresh()
    launcher = MemoryLauncher(
        {
            "alpha": dying_tools("die"),
            "beta": tools_server({"shout": lambda a: str(a.get("text", "")).upper()}),
        }
    )
    router = Router(catalog)
    supervisor = Supervisor(
        launcher, router, logs_dir=tmp_path / "logs", restart_backoff=(0.0, 0.0)
    )
    router.attach(supervisor)
    router.refresh()
    w = World(catalog, router, supervisor, launcher)
    w.hub().fanout.add(w.listener)
    try:
        yield w
    finally:
        await supervisor.shutdown()
        catalog.engine.dispose()


async def test_a_profile_lists_the_tools_of_all_its_servers_under_their_names(
    world: World,
) -> None:
    reply = await world.request("tools/list")
    names = sorted(t["name"] for t in reply["result"]["tools"])
    assert names == ["alpha_echo", "beta_shout"]
    # Each server was started once, for the listing, and asked for its tools.
    assert [p.server.name for p in world.launcher.launched] == ["alpha", "beta"]


async def test_a_call_goes_to_its_server_under_the_servers_own_name(world: World) -> None:
    reply = await world.request("tools/call", {"name": "beta_shout", "arguments": {"text": "hi"}})
    assert reply["result"]["content"] == [{"type": "text", "text": "HI"}]
    beta = world.launcher.of("beta")[0].server
    calls = [m for m in beta.received if m.get("method") == "tools/call"]
    assert [c["params"]["name"] for c in calls] == ["shout"]
    # Only the server named was started: a call never starts the profile's others.
    assert [p.server.name for p in world.launcher.launched] == ["beta"]


async def test_a_server_that_dies_mid_call_fails_that_call_at_once_and_restarts(
    world: World,
) -> None:
    ok = await world.request("tools/call", {"name": "alpha_echo", "arguments": {"text": "x"}})
    assert ok["result"]["content"][0]["text"] == "echo: x"
    died = await world.request("tools/call", {"name": "alpha_echo", "arguments": {"text": "die"}})
    assert died["error"]["message"] == "Server 'alpha' exited while handling the request"
    # The next call starts a new process of the same server and is answered.
    again = await world.request("tools/call", {"name": "alpha_echo", "arguments": {"text": "y"}})
    assert again["result"]["content"][0]["text"] == "echo: y"
    assert len(world.launcher.of("alpha")) == 2


async def test_a_servers_list_change_reaches_the_profiles_listeners(world: World) -> None:
    await world.request("tools/list")
    beta = world.launcher.of("beta")[0].server
    beta.send({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"})
    message = await asyncio.wait_for(world.listener.got.get(), WAIT)
    assert message["method"] == "notifications/tools/list_changed"


async def test_a_call_to_a_tool_no_server_offers_is_refused_without_starting_anything(
    world: World,
) -> None:
    reply = await world.request("tools/call", {"name": "gamma_echo", "arguments": {}})
    assert "error" in reply
    assert world.launcher.launched == []
