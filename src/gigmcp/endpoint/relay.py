"""Handing a modern request to the replica that holds what it continues.

Stateless clients may send each request to any replica behind a load balancer. Almost
everything they send is self-contained (cursors are authenticated with a key all
replicas share; the configuration is the database's), but two things live in one
process: a call parked for the client's answer (its ``requestState``) and a task. The
receiving replica reads the holder from the handle (router/handles.py) and sends the
request there over the database's notifications (store/bus.py); the holder runs it on
its hub as if it had arrived there and sends back what the client would have been
sent (progress and log notifications, then the response). The receiver streams these
to its client. A client that goes away cancels the call at the holder.

Messages are sealed with AES-GCM under a key sealed in the vault and bound to the
channel they are sent on, so the database carries no argument or result in clear and
nobody with access to the database but not the vault can make a replica act (a sealed
message older than ``MAX_AGE_S`` is dropped, and one seen before is too). A holder
serves a relayed request only for a token it still holds as valid.

Owns the relay's protocol on both sides. It must never serve a request for a token
that is not valid, never wait without bound for a holder that stopped answering, and
never put a message on the bus unsealed.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gigmcp.core.jsontypes import JSON
from gigmcp.mcp import jsonrpc as rpc
from gigmcp.router.context import RequestContext, RequestSink
from gigmcp.router.gateway import Router
from gigmcp.router.tasks import TASK_METHODS
from gigmcp.store.bus import PAYLOAD_CHARS, Bus, BusError

log = logging.getLogger(__name__)

# A holder that has not acknowledged by then is taken to be gone.
ACK_TIMEOUT_S = 3.0
# A holder serving a request says so this often; silence for SILENCE_S ends the wait.
BEAT_S = 2.0
SILENCE_S = 10.0
# Sealed messages older than this are refused (a replay from the database's log).
MAX_AGE_S = 30.0
_CHUNK = PAYLOAD_CHARS - 64
# Pieces of a message being put back together, at most this long.
_ASSEMBLY_S = 30.0


def channel(replica: str) -> str:
    return f"gigmcp_relay_{replica}"


def _gone(msg: JSON) -> JSON:
    """The holder is gone, and what it held with it: the client's answer is the one
    it gets for a handle that expired."""
    if msg.get("method") in TASK_METHODS:
        text = "Unknown task"
    else:
        text = "Invalid params: requestState expired or already used (its replica stopped)"
    return {"jsonrpc": "2.0", "id": msg.get("id"), "error": {"code": rpc.INVALID_PARAMS,
                                                             "message": text}}  # fmt: skip


def _context_out(ctx: RequestContext) -> JSON:
    extra = dict(ctx.extra)
    headers = extra.pop("param_headers", None)
    return {
        "era": ctx.era,
        "version": ctx.protocol_version,
        "caps": ctx.client_capabilities,
        "info": ctx.client_info,
        "token": ctx.token_id,
        "user": ctx.user_id,
        "profile": ctx.profile_id,
        "level": ctx.log_level,
        "params": {k: v.decode("latin-1") for k, v in headers.items()} if headers else None,
    }


def _context_in(data: JSON, sink: RequestSink) -> RequestContext:
    ctx = RequestContext(
        era="modern",
        protocol_version=str(data["version"]),
        client_capabilities=data["caps"],
        client_info=data["info"],
        token_id=int(data["token"]),
        user_id=int(data["user"]),
        profile_id=int(data["profile"]),
        sink=sink,
        log_level=data["level"],
    )
    if data.get("params"):
        ctx.extra["param_headers"] = {k: v.encode("latin-1") for k, v in data["params"].items()}
    return ctx


class _ForwardSink:
    """The holder's side of the request's channel: notifications go back in order."""

    can_ask = False

    def __init__(self, exchange: str) -> None:
        self.exchange = exchange
        self.queue: asyncio.Queue[JSON] = asyncio.Queue()

    def notify(self, message: JSON) -> None:
        self.queue.put_nowait({"t": "note", "x": self.exchange, "msg": message})

    async def ask(self, method: str, params: JSON | None) -> Any:
        raise rpc.RpcError(rpc.INTERNAL_ERROR, "a relayed request cannot ask its client")


@dataclass(slots=True)
class _Assembly:
    pieces: list[str | None]
    started: float = field(default_factory=time.monotonic)


class Relay:
    def __init__(self, bus: Bus, router: Router, key: bytes) -> None:
        self._bus = bus
        self._router = router
        self._aead = AESGCM(key)
        self.me = router.replica
        self._waiting: dict[str, asyncio.Queue[JSON]] = {}
        self._serving: dict[str, asyncio.Task[None]] = {}
        self._assembling: dict[str, _Assembly] = {}
        # Requests taken in the last 2 * MAX_AGE_S: a replay of one is dropped.
        self._seen: dict[str, float] = {}
        self._pruned = 0.0
        bus.on(channel(self.me), self._received)

    def holder(self, token_id: int, msg: JSON) -> str | None:
        return self._router.holder(token_id, msg)

    # ------------------------------------------------------------ the receiver's side

    async def forward(self, holder: str, ctx: RequestContext, msg: JSON) -> JSON:
        """Run ``msg`` at ``holder``; its notifications go to ``ctx.sink``; returns the
        response (or the error for a handle whose holder is gone)."""
        exchange = secrets.token_hex(12)
        inbox: asyncio.Queue[JSON] = asyncio.Queue()
        self._waiting[exchange] = inbox
        try:
            try:
                await self._send(holder, {"t": "call", "x": exchange, "from": self.me,
                                          "ctx": _context_out(ctx), "msg": msg})  # fmt: skip
                first = await asyncio.wait_for(inbox.get(), ACK_TIMEOUT_S)
            except TimeoutError:
                log.warning("relay: replica %s did not take a request", holder)
                return _gone(msg)
            except BusError as err:
                log.warning("relay: cannot reach replica %s: %s", holder, err)
                error = {"code": rpc.INTERNAL_ERROR, "message": "Internal error: the "
                         "replica holding this request cannot be reached now; retry"}  # fmt: skip
                return {"jsonrpc": "2.0", "id": msg.get("id"), "error": error}
            item: JSON = first
            while True:
                kind = item.get("t")
                if kind == "note" and isinstance(item.get("msg"), dict):
                    ctx.sink.notify(item["msg"])
                elif kind == "done" and isinstance(item.get("msg"), dict):
                    done: JSON = item["msg"]
                    return done
                try:
                    item = await asyncio.wait_for(inbox.get(), SILENCE_S)
                except TimeoutError:
                    log.warning("relay: replica %s stopped answering mid-request", holder)
                    return _gone(msg)
        except asyncio.CancelledError:
            # The client went away: the holder stops the call too (best effort).
            cancel = self._send(holder, {"t": "cancel", "x": exchange, "from": self.me})
            asyncio.get_running_loop().create_task(_quietly(cancel))
            raise
        finally:
            self._waiting.pop(exchange, None)

    # ------------------------------------------------------------ the holder's side

    async def _serve(self, envelope: JSON) -> None:
        exchange, back = str(envelope["x"]), str(envelope["from"])
        msg = envelope["msg"]
        sink = _ForwardSink(exchange)
        ctx = _context_in(envelope["ctx"], sink)
        pump: asyncio.Task[None] | None = None
        try:
            await self._send(back, {"t": "ack", "x": exchange})
            pump = asyncio.get_running_loop().create_task(self._pump(back, sink))
            response = await self._answer(ctx, msg)
            sink.queue.put_nowait({"t": "done", "x": exchange, "msg": response})
            await pump
        except asyncio.CancelledError:
            pass  # the client left (at the receiver), or this replica is stopping
        except BusError as err:
            log.warning("relay: cannot answer replica %s: %s", back, err)
        except Exception:
            log.exception("relay: serving a request from replica %s failed", back)
        finally:
            if pump is not None and not pump.done():
                pump.cancel()
            self._serving.pop(exchange, None)

    async def _answer(self, ctx: RequestContext, msg: JSON) -> JSON:
        router = self._router
        router.refresh()
        view = router.catalog.profile(ctx.profile_id)
        if view is None or ctx.token_id not in router.catalog.live_token_ids():
            error = {"code": rpc.INVALID_REQUEST,
                     "message": "Unauthorized: the token is no longer valid"}  # fmt: skip
            return {"jsonrpc": "2.0", "id": msg.get("id"), "error": error}
        return await router.hub(view).handle(ctx, msg)

    async def _pump(self, back: str, sink: _ForwardSink) -> None:
        """The one sender of an exchange's replies, so they arrive in order:
        notifications as they come, a beat when there are none, the answer last."""
        while True:
            try:
                item = await asyncio.wait_for(sink.queue.get(), BEAT_S)
            except TimeoutError:
                item = {"t": "beat", "x": sink.exchange}
            await self._send(back, item)
            if item.get("t") == "done":
                return

    # ------------------------------------------------------------ the wire

    async def _send(self, replica: str, message: JSON) -> None:
        name = channel(replica)
        message["at"] = time.time()
        nonce = secrets.token_bytes(12)
        sealed = nonce + self._aead.encrypt(nonce, orjson.dumps(message), name.encode())
        text = base64.b64encode(sealed).decode()
        ident = secrets.token_hex(6)
        pieces = [text[i : i + _CHUNK] for i in range(0, len(text), _CHUNK)] or [""]
        total = len(pieces)
        await self._bus.send(name, [f"{ident}:{i}:{total}:{p}" for i, p in enumerate(pieces)])

    def _received(self, payload: str) -> None:
        try:
            ident, index, total, piece = payload.split(":", 3)
            i, n = int(index), int(total)
            if not 0 <= i < n <= 100_000:
                raise ValueError("piece numbers")
        except ValueError:
            log.warning("relay: a malformed notification was dropped")
            return
        now = time.monotonic()
        for stale in [k for k, a in self._assembling.items() if now - a.started > _ASSEMBLY_S]:
            del self._assembling[stale]
        if n == 1:
            self._open("".join(piece))
            return
        assembly = self._assembling.setdefault(ident, _Assembly([None] * n))
        if len(assembly.pieces) != n:
            del self._assembling[ident]
            return
        assembly.pieces[i] = piece
        if all(p is not None for p in assembly.pieces):
            del self._assembling[ident]
            self._open("".join(p for p in assembly.pieces if p is not None))

    def _open(self, text: str) -> None:
        try:
            sealed = base64.b64decode(text, validate=True)
            plain = self._aead.decrypt(sealed[:12], sealed[12:], channel(self.me).encode())
            message = orjson.loads(plain)
        except (ValueError, InvalidTag, orjson.JSONDecodeError):
            # Not sealed with the deployment's key: not from a replica of ours.
            log.warning("relay: a message that is not a replica's was dropped")
            return
        now = time.time()
        if not isinstance(message, dict) or abs(now - float(message.get("at", 0))) > MAX_AGE_S:
            log.warning("relay: a stale message was dropped")
            return
        if now - self._pruned > 1.0:
            self._pruned = now
            self._seen = {k: t for k, t in self._seen.items() if now - t <= 2 * MAX_AGE_S}
        exchange = str(message.get("x"))
        kind = message.get("t")
        if kind == "call":
            if exchange in self._seen:
                log.warning("relay: a replayed request was dropped")
                return
            self._seen[exchange] = now
            task = asyncio.get_running_loop().create_task(self._serve(message))
            self._serving[exchange] = task
        elif kind == "cancel":
            serving = self._serving.get(exchange)
            if serving is not None:
                serving.cancel()
        else:
            inbox = self._waiting.get(exchange)
            if inbox is not None:
                inbox.put_nowait(message)

    async def aclose(self) -> None:
        for task in list(self._serving.values()):
            task.cancel()
        for task in list(self._serving.values()):
            with contextlib.suppress(BaseException):
                await task


async def _quietly(work: Any) -> None:
    with contextlib.suppress(Exception):
        await work
