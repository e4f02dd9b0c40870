"""A change to what an instance is granted retires it in the very step that notices the
change, before anything else runs, and only that instance.

Real parts: the store, the router, the supervisor and real MCP server processes (run
unjailed: this is about ordering inside the gateway; tests/egress/test_grant_changes.py
shows the same end to end, jailed, through the egress proxy). ``on_retire`` is where the
gateway revokes the grant (app.py): it must run synchronously, while the process
is still alive, and the key's next process may start only once the old one is gone, so
that a grant the proxy finds by key belongs to one process.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from gigmcp.control import actor, credentials, profiles, servers
from gigmcp.control.actor import Actor
from gigmcp.core.instances import InstanceKey
from gigmcp.core.launch import LaunchedProcess, LaunchSpec
from gigmcp.core.views import ServerDef
from gigmcp.router.gateway import Router
from gigmcp.store.catalog import StoreCatalog
from gigmcp.supervisor.launcher import PlainLauncher
from gigmcp.supervisor.supervisor import StartError, Supervisor, default_spec
from gigmcp.vault.keys import Keyring, MasterKey
from tests.support.gateway import TIME

RING = Keyring(MasterKey(bytes(range(32))))
CREDENTIAL = {
    "id": "api_key",
    "type": "api_key",
    "inject": {"header": "Authorization", "format": "Bearer {token}"},
    "env": "API_KEY",
    "hosts": ["api.example.test"],
}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@dataclass
class Launches(PlainLauncher):
    """The real launcher, keeping count: which pids each key had, and whether an earlier
    process of the key was still alive when the next was launched."""

    pids: dict[InstanceKey, list[int]] = field(default_factory=dict)
    overlaps: list[InstanceKey] = field(default_factory=list)

    async def launch(self, spec: LaunchSpec) -> LaunchedProcess:
        earlier = self.pids.setdefault(spec.key, [])
        if any(alive(pid) for pid in earlier):
            self.overlaps.append(spec.key)
        process = await super().launch(spec)
        earlier.append(process.pid)
        return process


@dataclass
class World:
    catalog: StoreCatalog
    router: Router
    supervisor: Supervisor
    launches: Launches
    me: Actor
    retired: list[tuple[InstanceKey, bool]] = field(default_factory=list)
    # The definition each launch was made from.
    started: list[ServerDef] = field(default_factory=list)

    def server(self, name: str) -> tuple[InstanceKey, ServerDef]:
        view = self.catalog.profile_by_slug("p1")
        assert view is not None
        assignment = view.assignment(name)
        assert assignment is not None
        return InstanceKey(view.id, name), assignment.server

    async def start(self, name: str) -> int:
        key, server = self.server(name)
        await self.supervisor.get(key, server)
        return self.launches.pids[key][-1]


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    catalog = StoreCatalog(f"sqlite:///{tmp_path / 'g.db'}")
    me = actor.local_admin(catalog.engine)
    profiles.create_profile(catalog.engine, me, "p1")
    for name in ("keyed", "other"):
        servers.add_server(
            catalog.engine, me, name, list(TIME), {}, [], None,
            egress={"hosts": ["api.example.test", "other.example.test"]},
            credentials=[CREDENTIAL],
        )  # fmt: skip
        profiles.assign(catalog.engine, me, "p1", name, True)
        credentials.set_credential(catalog.engine, RING, me, name, "api_key", b"first-value")
    catalog.refresh()
    # The watcher is not started: the test says when the change is noticed.
    router = Router(catalog)
    launches = Launches()
    started: list[ServerDef] = []

    def spec_for(key: InstanceKey, server: ServerDef) -> LaunchSpec:
        started.append(server)
        return default_spec(key, server)

    supervisor = Supervisor(launches, router, logs_dir=tmp_path / "logs", spec_for=spec_for)
    router.attach(supervisor)
    w = World(catalog, router, supervisor, launches, me, started=started)

    def revoke(key: InstanceKey) -> None:
        w.retired.append((key, alive(launches.pids[key][-1])))

    supervisor.on_retire.append(revoke)
    router.refresh()
    try:
        yield w
    finally:
        await supervisor.shutdown()
        catalog.engine.dispose()


async def test_attack_an_unset_value_revokes_the_grant_in_the_step_that_notices_it(
    world: World,
) -> None:
    keyed, other = await world.start("keyed"), await world.start("other")
    credentials.unset_credential(world.catalog.engine, world.me, "keyed", "api_key")
    # What the endpoint does for every request: authenticate (which reloads the
    # snapshot), then ask the router for the profile's hub. No await in between.
    world.catalog.refresh()
    view = world.catalog.profile_by_slug("p1")
    assert view is not None
    world.router.hub(view)
    key = InstanceKey(view.id, "keyed")
    # Revoked already, while the process still ran; the other server's untouched.
    assert world.retired == [(key, True)]
    assert {s.key.server_name for s in world.supervisor.status()} == {"other"}
    assert await world.start("keyed") != keyed
    assert world.launches.overlaps == [], "the key's next process started before the old ended"
    assert not alive(keyed)
    assert await world.start("other") == other


async def test_the_watcher_notices_a_replaced_value_or_a_removed_host(world: World) -> None:
    await world.start("keyed")
    credentials.set_credential(world.catalog.engine, RING, world.me, "keyed", "api_key", b"second")
    world.router.refresh()  # the watcher's tick
    assert [k.server_name for k, was_alive in world.retired if was_alive] == ["keyed"]
    await world.start("keyed")
    servers.set_egress(world.catalog.engine, world.me, "keyed", {"hosts": ["api.example.test"]})
    world.router.refresh()
    assert [k.server_name for k, was_alive in world.retired if was_alive] == ["keyed", "keyed"]
    assert world.launches.overlaps == []


async def test_a_change_outside_the_grant_does_not_cut_a_running_instance_off(
    world: World,
) -> None:
    pid = await world.start("keyed")
    servers.set_limits(world.catalog.engine, world.me, "keyed", {"pids": 64})
    world.router.refresh()
    assert world.retired == [] and alive(pid)
    # It applies at the next use, as before.
    assert await world.start("keyed") != pid


async def test_attack_a_call_under_way_across_a_change_does_not_bring_the_old_grant_back(
    world: World,
) -> None:
    """A call picks its server from the profile's view, then waits (for the instance to
    start, for a retired one to end): a change noticed meanwhile must not be undone by
    the instance it then starts."""
    key, before = world.server("keyed")
    servers.set_egress(world.catalog.engine, world.me, "keyed", {"hosts": ["api.example.test"]})
    world.router.refresh()
    await world.supervisor.get(key, before)
    assert world.started == [world.server("keyed")[1]] != [before]
    profiles.unassign(world.catalog.engine, world.me, "p1", "keyed")
    world.router.refresh()
    with pytest.raises(StartError, match="not assigned any more"):
        await world.supervisor.get(key, before)
