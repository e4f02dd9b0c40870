"""The relay's own rules, with two relays on a real PostgreSQL bus in one process: what
a holder must refuse to run, and what it must not hold.

The router behind each relay is a small double that records what it is asked to run:
the relay is what is tested here (the replicas themselves, with real routers, are in
test_replicas.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from gigmcp.core.jsontypes import JSON
from gigmcp.endpoint import relay as relay_mod
from gigmcp.endpoint.relay import Relay, _context_out, _ForwardSink
from gigmcp.router.context import RequestContext
from gigmcp.store.bus import Bus, conninfo
from tests.support.databases import _new_database

KEY = b"r" * 32


class _Sink:
    can_ask = False

    def __init__(self) -> None:
        self.notes: list[JSON] = []

    def notify(self, message: JSON) -> None:
        self.notes.append(message)

    async def ask(self, method: str, params: JSON | None) -> Any:
        raise AssertionError("not asked")


class _Catalog:
    def refresh(self) -> int:
        return 1

    def profile(self, profile_id: int) -> object:
        return object()

    def live_token_ids(self) -> frozenset[int]:
        return frozenset({7})


class _Hub:
    def __init__(self, runs: list[JSON], delay: float) -> None:
        self.runs, self.delay = runs, delay

    async def handle(self, ctx: RequestContext, msg: JSON) -> JSON:
        self.runs.append(msg)
        await asyncio.sleep(self.delay)
        return {"jsonrpc": "2.0", "id": msg["id"], "result": {"ran": True}}


class _Router:
    """Records what the holder runs."""

    def __init__(self, replica: str, delay: float = 0.0) -> None:
        self.replica = replica
        self.catalog = _Catalog()
        self.runs: list[JSON] = []
        self._hub = _Hub(self.runs, delay)

    def refresh(self) -> None:
        return None

    def hub(self, view: object) -> _Hub:
        return self._hub

    def holder(self, token_id: int, msg: JSON) -> str | None:
        return None


def _ctx(sink: _Sink) -> RequestContext:
    return RequestContext(era="modern", protocol_version="2026-07-28", client_capabilities={},
                          client_info=None, token_id=7, user_id=1, profile_id=1, sink=sink)  # fmt: skip


@pytest.fixture
async def buses(pg_socket_dir: str) -> AsyncIterator[tuple[Bus, Bus]]:
    dsn = conninfo(_new_database(pg_socket_dir))
    assert dsn is not None
    a, b = Bus(dsn), Bus(dsn)
    yield a, b
    await a.aclose()
    await b.aclose()


async def _pair(buses: tuple[Bus, Bus], delay: float = 0.0) -> tuple[Relay, Relay, _Router]:
    holder_router = _Router("aaaa", delay)
    receiver = Relay(buses[0], _Router("bbbb"), KEY, 1 << 20)  # type: ignore[arg-type]
    holder = Relay(buses[1], holder_router, KEY, 1 << 20)  # type: ignore[arg-type]
    await buses[0].start()
    await buses[1].start()
    return receiver, holder, holder_router


async def test_a_relayed_call_runs_at_its_holder_once(buses: tuple[Bus, Bus]) -> None:
    receiver, _holder, router = await _pair(buses)
    msg = {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"deep": _nested(300)}}
    got = await receiver.forward("aaaa", _ctx(_Sink()), msg)
    # Nested beyond what orjson writes (254): sent as the local path would answer it.
    assert got == {"jsonrpc": "2.0", "id": 3, "result": {"ran": True}}
    assert len(router.runs) == 1


def _nested(depth: int) -> JSON:
    out: JSON = {}
    for _ in range(depth):
        out = {"d": out}
    return out


async def test_attack_a_call_reaching_its_holder_after_the_receiver_gave_up_never_runs(
    buses: tuple[Bus, Bus], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The receiver answers its client 'did not answer' after ACK_TIMEOUT_S; a holder
    that only now hears of the call (a slow loop, a queue behind a large message) must
    not run it: the client was told it failed and will start it again."""
    receiver, holder, router = await _pair(buses)
    monkeypatch.setattr(relay_mod, "ACK_TIMEOUT_S", 0.3)
    late = asyncio.Event()
    received = holder._received

    def slow_delivery(payload: str) -> None:
        async def later() -> None:
            await asyncio.sleep(0.8)  # past the receiver's patience
            received(payload)
            late.set()

        asyncio.get_running_loop().create_task(later())

    holder._received = slow_delivery  # type: ignore[method-assign]
    buses[1]._callbacks[relay_mod.channel("aaaa")] = slow_delivery
    msg = {"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {}}
    got = await receiver.forward("aaaa", _ctx(_Sink()), msg)
    assert "did not answer" in got["error"]["message"]
    await asyncio.wait_for(late.wait(), 10)
    await asyncio.sleep(0.5)
    assert router.runs == []


def test_attack_an_upstream_flooding_notifications_during_a_relayed_call_is_bounded() -> None:
    sink = _ForwardSink("x", limit=100_000)
    for i in range(10_000):
        sink.notify({"jsonrpc": "2.0", "method": "notifications/message",
                     "params": {"level": "info", "data": "x" * 1000, "i": i}})  # fmt: skip
    assert sink.waiting <= 100_000 and sink.dropped > 9_000
    sink.finish({"jsonrpc": "2.0", "id": 1, "result": {}})
    items = [sink.queue.get_nowait()[0] for _ in range(sink.queue.qsize())]
    assert items[-1]["t"] == "done"
    assert sum(1 for item in items if item["t"] == "note") < 100


async def test_a_cancel_that_overtakes_its_call_drops_the_call(buses: tuple[Bus, Bus]) -> None:
    _receiver, holder, router = await _pair(buses)
    holder._open_message({"t": "cancel", "x": "e1", "from": "bbbb", "at": time.time()})
    holder._open_message({"t": "call", "x": "e1", "from": "bbbb", "at": time.time(),
                          "ctx": _context_out(_ctx(_Sink())),
                          "msg": {"id": 1, "method": "tools/call"}})  # fmt: skip
    await asyncio.sleep(0.3)
    assert router.runs == []
