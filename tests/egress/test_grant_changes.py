"""A credential or egress change reaches running instances at once, end to end with
every real part: the gateway (``gigmcp serve``) jails a real MCP server that calls an
HTTPS API through the egress proxy, inside the egress lab (tests/support/egress_lab.py); the
change is made with the command line, as an operator would, mid-session.

The attack: a key leaked and the operator unset or replaced it, or took a host off the
allowlist; a running instance must not go on being granted what was taken away. The
gateway notices a change on the first request after the commit (or its watcher's next
tick) and, in that same step, revokes the instance's grant and retires it; the next use
starts a new instance with the new grant. Instances the change does not concern run on.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp.client.client import Client

from tests.support.egress_lab import Hit, Lab, lab
from tests.support.gateway import ROOT, GatewayProc, gateway
from tests.support.mcp_client import connect, text_of

pytestmark = pytest.mark.root

CANARY = "sk_live_gigGRANT_0a9b8c7d6e5f4a3b2c1d0e9f"
REPLACEMENT = "sk_live_gigGRANT_NEW_1b2c3d4e5f6a7b8c9d0e"
BYSTANDER_KEY = "sk_live_gigBYSTANDER_77aa66bb55cc44dd33ee"
API, API_IP, OTHER, OTHER_IP = "api.example.test", "11.0.0.1", "other.example.test", "11.0.0.2"
PYTHON = str(ROOT / "tests" / "peers" / "pyvenv" / "bin" / "python")
BEACON = (PYTHON, str(ROOT / "tests" / "servers" / "beacon.py"))
FETCHER = (PYTHON, str(ROOT / "tests" / "servers" / "fetcher.py"))
CREDENTIAL = {
    "id": "api_key",
    "type": "api_key",
    "inject": {"header": "Authorization", "format": "Bearer {token}"},
    "env": "API_KEY",
    "hosts": [API],
}
CREDENTIAL_ARGS = ("--credential", json.dumps(CREDENTIAL))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Lab, GatewayProc]]:
    tmp: Path = tmp_path_factory.mktemp("grants")
    with lab() as the_lab:
        ca = tmp / "upstream-ca.pem"
        ca.write_bytes(the_lab.ca_pem)
        with gateway(
            tmp, jailed=True, GIG_SANDBOX_SUBNET="10.215.0.0/24", GIG_SANDBOX_POOL="0",
            GIG_EGRESS_DNS=the_lab.dns, GIG_EGRESS_CA_BUNDLE=str(ca),
        ) as g:  # fmt: skip
            g.add_server(
                "keyed", BEACON, "--egress", API, "--egress", OTHER,
                "--credential", json.dumps(CREDENTIAL),
            )  # fmt: skip
            g.add_server(
                "bystander", FETCHER, "--egress", API, "--credential", json.dumps(CREDENTIAL)
            )
            g.cli("credential", "set", "keyed", "api_key", stdin=CANARY)
            g.cli("credential", "set", "bystander", "api_key", stdin=BYSTANDER_KEY)
            g.profile("grants", "keyed", "bystander")
            g.start()
            yield the_lab, g


async def tool(c: Client, name: str, **args: object) -> Any:
    result = await c.call_tool(name, args)
    assert not result.is_error, text_of(result)
    text = text_of(result)
    return json.loads(text) if text.startswith("{") else text


def keys_seen(hits: list[Hit]) -> list[str | None]:
    return [h.headers.get("authorization") for h in hits]


async def until(what: str, check: Callable[[], bool], limit: float = 30.0) -> None:
    """Wait for an event the test cannot be told of directly; the limit only turns a
    missing event into a failure with a name, it measures nothing."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"never happened: {what}")
        await asyncio.sleep(0.05)


def set_key(g: GatewayProc, value: str) -> None:
    g.cli("credential", "set", "keyed", "api_key", stdin=value)


async def test_attack_an_unset_key_is_not_injected_on_the_next_call(
    world: tuple[Lab, GatewayProc],
) -> None:
    the_lab, g = world
    set_key(g, CANARY)
    async with connect(g, "grants", "auto") as c:
        the_lab.reset()
        assert (await tool(c, "keyed_fetch", url=f"https://{API}/v1/before"))["status"] == 200
        assert keys_seen(the_lab.hits_on(API_IP)) == [f"Bearer {CANARY}"], "control"
        g.cli("credential", "unset", "keyed", "api_key")
        the_lab.reset()
        answer = await tool(c, "keyed_fetch", url=f"https://{API}/v1/after")
    hits = the_lab.hits_on(API_IP)
    # The server still sent its placeholder: the proxy dropped it and had nothing to
    # put in its place.
    assert answer["status"] == 200 and keys_seen(hits) == [None]
    assert CANARY not in repr(hits)


async def test_attack_a_replaced_key_is_never_sent_again(world: tuple[Lab, GatewayProc]) -> None:
    the_lab, g = world
    set_key(g, CANARY)
    async with connect(g, "grants", "auto") as c:
        the_lab.reset()
        await tool(c, "keyed_fetch", url=f"https://{API}/v1/before")
        assert keys_seen(the_lab.hits_on(API_IP)) == [f"Bearer {CANARY}"], "control"
        set_key(g, REPLACEMENT)
        the_lab.reset()
        for n in range(3):
            await tool(c, "keyed_fetch", url=f"https://{API}/v1/after/{n}")
    assert keys_seen(the_lab.hits_on(API_IP)) == [f"Bearer {REPLACEMENT}"] * 3


async def test_attack_a_host_taken_off_the_allowlist_is_cut_off_at_once(
    world: tuple[Lab, GatewayProc],
) -> None:
    the_lab, g = world
    restore = ("server", "egress", "keyed", "--egress", API, "--egress", OTHER)
    try:
        async with connect(g, "grants", "auto") as c:
            the_lab.reset()
            url = f"https://{OTHER}/v1/beacon"
            noticed = await beacon_through(
                c, the_lab, url, lambda: g.cli(*restore[:-2], *CREDENTIAL_ARGS), use_key=False
            )
            # Not on the tunnel the server holds, not on a new one.
            late = [hit for hit in _beacons(the_lab.hits) if hit[0] > noticed + 1]
            assert late == []
            the_lab.reset()
            answer = await tool(c, "keyed_fetch", url=f"https://{OTHER}/v1/next", use_key=False)
        assert answer["status"] in (0, 403), answer
        assert the_lab.hits_on(OTHER_IP) == []
    finally:
        g.cli(*restore, *CREDENTIAL_ARGS)


async def test_a_change_restarts_only_the_instances_it_concerns(
    world: tuple[Lab, GatewayProc],
) -> None:
    the_lab, g = world
    set_key(g, CANARY)
    async with connect(g, "grants", "auto") as c:
        # A placeholder is new at every launch: it tells whether an instance restarted.
        keyed = await tool(c, "keyed_placeholder")
        bystander = (await tool(c, "bystander_inventory"))["env"]["API_KEY"]
        set_key(g, REPLACEMENT)
        assert await tool(c, "keyed_placeholder") != keyed
        assert (await tool(c, "bystander_inventory"))["env"]["API_KEY"] == bystander
        the_lab.reset()
        await tool(c, "bystander_fetch", url=f"https://{API}/v1/bystander")
    assert keys_seen(the_lab.hits_on(API_IP)) == [f"Bearer {BYSTANDER_KEY}"]


def _beacons(hits: list[Hit]) -> list[tuple[int, str, str | None]]:
    """(sequence number, address, Authorization) of each beacon the lab's APIs saw."""
    return [
        (int(h.query.removeprefix("seq=")), h.host, h.headers.get("authorization"))
        for h in hits
        if h.path == "/v1/beacon"
    ]


def _beacon_pids() -> set[int]:
    """Processes running beacon.py: only ``keyed`` does."""
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if b"beacon.py" in cmdline:
                found.add(int(entry))
    return found


async def beacon_through(
    c: Client, the_lab: Lab, url: str, change: Callable[[], object], use_key: bool = True
) -> int:
    """Have ``keyed`` call ``url`` on its own (every 20 ms, over one kept-alive tunnel,
    and on after its client is gone), make ``change`` as the operator would, and return
    once the instance that ran the beacon is gone: the highest sequence number the API
    had seen when the gateway had noticed the change. The beacon sends one request at
    a time, so only the one after it can have been under way at that moment."""
    assert (await tool(c, "keyed_beacon", url=url, use_key=use_key))["first"] == "200"
    await until("three beacons", lambda: len(_beacons(the_lab.hits)) >= 3)
    change()
    # Any request reads the revision (this one goes to the other server): once it is
    # answered, the change was noticed.
    await tool(c, "bystander_inventory")
    noticed = max(seq for seq, _, _ in _beacons(the_lab.hits))
    await until("the keyed instance is gone", lambda: not _beacon_pids())
    return noticed


async def test_attack_a_server_calling_on_its_own_gets_no_key_once_the_change_is_noticed(
    world: tuple[Lab, GatewayProc],
) -> None:
    the_lab, g = world
    set_key(g, CANARY)
    async with connect(g, "grants", "auto") as c:
        the_lab.reset()
        unset = ("credential", "unset", "keyed", "api_key")
        noticed = await beacon_through(
            c, the_lab, f"https://{API}/v1/beacon", lambda: g.cli(*unset)
        )
    seen = _beacons(the_lab.hits)
    assert {key for seq, _, key in seen if seq <= noticed} == {f"Bearer {CANARY}"}, "control"
    late = [(seq, key) for seq, _, key in seen if seq > noticed + 1]
    assert all(key is None for _, key in late), late
