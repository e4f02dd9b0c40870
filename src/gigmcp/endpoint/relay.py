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
import hashlib
import hmac
import logging
import secrets
import time
from collections import OrderedDict
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
# A piece: ident, numbers and a tag (about 60 characters), then a slice of the message.
_CHUNK = PAYLOAD_CHARS - 128
# Pieces of a message being put back together, at most this long, at most this many
# messages at once, each at most MAX_PIECES pieces (about 110 MB: a task's result of
# GIG_TASK_RESULT_BYTES' default 64 MiB, base64, fits).
_ASSEMBLY_S = 30.0
MAX_ASSEMBLIES = 64
MAX_PIECES = 16384


def channel(replica: str) -> str:
    return f"gigmcp_relay_{replica}"


def _gone(msg: JSON) -> JSON:
    """The holder did not answer (stopped, or too slow: it was told to cancel, and
    drops a request that reaches it too late): what it held is lost to the client,
    whose answer is the one for a handle that expired."""
    if msg.get("method") in TASK_METHODS:
        text = "Unknown task"
    else:
        text = (
            "Invalid params: requestState expired or already used (the replica holding it "
            "did not answer)"
        )
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
    """The holder's side of the request's channel: notifications go back in order,
    bounded in bytes as a direct client's stream is (endpoint/buffers.py): beyond
    ``limit`` waiting to be sent, progress and log notifications are dropped, so an
    upstream flooding them costs neither memory nor the database's queue."""

    can_ask = False

    def __init__(self, exchange: str, limit: int) -> None:
        self.exchange = exchange
        self.limit = limit
        self.waiting = 0  # bytes of notifications queued, not yet sent
        self.dropped = 0
        self.queue: asyncio.Queue[tuple[JSON, int]] = asyncio.Queue()

    def notify(self, message: JSON) -> None:
        size = len(rpc.dumps(message))
        if self.waiting + size > self.limit:
            self.dropped += 1
            return
        self.waiting += size
        self.queue.put_nowait(({"t": "note", "x": self.exchange, "msg": message}, size))

    def finish(self, response: JSON) -> None:
        """The answer: never dropped."""
        self.queue.put_nowait(({"t": "done", "x": self.exchange, "msg": response}, 0))

    async def ask(self, method: str, params: JSON | None) -> Any:
        raise rpc.RpcError(rpc.INTERNAL_ERROR, "a relayed request cannot ask its client")


@dataclass(slots=True)
class _Assembly:
    pieces: list[str | None]
    received: int = 0
    started: float = field(default_factory=time.monotonic)


class Relay:
    def __init__(self, bus: Bus, router: Router, key: bytes, buffer_bytes: int) -> None:
        self._bus = bus
        self._router = router
        # One key each for sealing and for tagging pieces, both from the relay's key.
        self._aead = AESGCM(hmac.new(key, b"gigmcp-relay-seal", hashlib.sha256).digest())
        self._piece_key = hmac.new(key, b"gigmcp-relay-pieces", hashlib.sha256).digest()
        self._drops: dict[str, int] = {}
        self._drops_said = -10.0
        self.me = router.replica
        self._waiting: dict[str, asyncio.Queue[JSON]] = {}
        self._serving: dict[str, asyncio.Task[None]] = {}
        self._cancelling: set[asyncio.Task[None]] = set()
        # Bytes of notifications a relayed call may have waiting (GIG_CLIENT_BUFFER_BYTES).
        self._buffer = buffer_bytes
        # Oldest first: the oldest incomplete message goes first when the bound is hit.
        self._assembling: OrderedDict[str, _Assembly] = OrderedDict()
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
                self._cancel(holder, exchange)
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
                    self._cancel(holder, exchange)
                    return _gone(msg)
        except asyncio.CancelledError:
            self._cancel(holder, exchange)  # the client went away
            raise
        finally:
            self._waiting.pop(exchange, None)

    def _cancel(self, holder: str, exchange: str) -> None:
        """Whatever the holder runs (or is about to run) for ``exchange`` stops: the
        client got its answer here, so it must not also happen there (best effort;
        a holder hearing of a cancel before the call drops the call when it comes)."""
        cancel = self._send(holder, {"t": "cancel", "x": exchange, "from": self.me})
        task = asyncio.get_running_loop().create_task(_quietly(cancel))
        self._cancelling.add(task)
        task.add_done_callback(self._cancelling.discard)

    # ------------------------------------------------------------ the holder's side

    async def _serve(self, exchange: str, envelope: JSON) -> None:
        pump: asyncio.Task[None] | None = None
        back = "?"
        try:
            back, msg = str(envelope["from"]), envelope["msg"]
            if not back.isalnum() or not isinstance(msg, dict):
                raise ValueError("a relayed request without its sender or message")
            sink = _ForwardSink(exchange, self._buffer)
            ctx = _context_in(envelope["ctx"], sink)
            await self._send(back, {"t": "ack", "x": exchange})
            pump = asyncio.get_running_loop().create_task(self._pump(back, sink))
            response = await self._answer(ctx, msg)
            sink.finish(response)
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
                item, size = await asyncio.wait_for(sink.queue.get(), BEAT_S)
                sink.waiting -= size
            except TimeoutError:
                item = {"t": "beat", "x": sink.exchange}
            await self._send(back, item)
            if item.get("t") == "done":
                return

    # ------------------------------------------------------------ the wire

    def _tag(self, name: str, ident: str, i: int, n: int, piece: str) -> str:
        mac = hmac.new(self._piece_key, f"{name}\0{ident}\0{i}\0{n}\0{piece}".encode(),
                       hashlib.sha256).digest()  # fmt: skip
        return base64.urlsafe_b64encode(mac[:16]).decode().rstrip("=")

    async def _send(self, replica: str, message: JSON) -> None:
        name = channel(replica)
        message["at"] = time.time()
        nonce = secrets.token_bytes(12)
        sealed = nonce + self._aead.encrypt(nonce, rpc.dumps(message), name.encode())
        text = base64.b64encode(sealed).decode()
        ident = secrets.token_hex(6)
        pieces = [text[i : i + _CHUNK] for i in range(0, len(text), _CHUNK)] or [""]
        n = len(pieces)
        if n > MAX_PIECES:
            raise BusError(f"a relayed message of {len(text)} bytes is too large for the bus")
        await self._bus.send(
            name, [f"{ident}:{i}:{n}:{self._tag(name, ident, i, n, p)}:{p}"
                   for i, p in enumerate(pieces)],
        )  # fmt: skip

    def _received(self, payload: str) -> None:
        """One piece of a message. Each piece carries a tag under the deployment's key,
        checked before anything is kept: whoever can NOTIFY on the database (any role
        that can log in) but does not hold the vault costs the replica one HMAC."""
        try:
            ident, index, total, tag, piece = payload.split(":", 4)
            i, n = int(index), int(total)
            if len(ident) != 12 or not 0 <= i < n <= MAX_PIECES:
                raise ValueError("piece numbers")
        except ValueError:
            self._dropped("malformed")
            return
        if not hmac.compare_digest(tag, self._tag(channel(self.me), ident, i, n, piece)):
            self._dropped("not a replica's")
            return
        if n == 1:
            self._open(piece)
            return
        now = time.monotonic()
        while self._assembling:
            oldest = next(iter(self._assembling.values()))
            if now - oldest.started <= _ASSEMBLY_S and len(self._assembling) < MAX_ASSEMBLIES:
                break
            self._assembling.popitem(last=False)  # lost pieces of a message: it times out
        assembly = self._assembling.get(ident)
        if assembly is None:
            assembly = self._assembling[ident] = _Assembly([None] * n)
        if len(assembly.pieces) != n:
            return
        if assembly.pieces[i] is None:
            assembly.pieces[i] = piece
            assembly.received += 1
        if assembly.received == n:
            del self._assembling[ident]
            self._open("".join(p for p in assembly.pieces if p is not None))

    def _dropped(self, why: str) -> None:
        """Counted, and said at most every 10 s: a flood must not flood the log too."""
        self._drops[why] = self._drops.get(why, 0) + 1
        now = time.monotonic()
        if now - self._drops_said >= 10.0:
            self._drops_said = now
            counts = ", ".join(f"{k}: {v}" for k, v in sorted(self._drops.items()))
            log.warning("relay: notifications dropped since the last report (%s)", counts)
            self._drops.clear()

    def _open(self, text: str) -> None:
        try:
            sealed = base64.b64decode(text, validate=True)
            plain = self._aead.decrypt(sealed[:12], sealed[12:], channel(self.me).encode())
            message = orjson.loads(plain)
        except (ValueError, InvalidTag, orjson.JSONDecodeError):
            # Tagged but not sealed with the deployment's key: not from a replica.
            self._dropped("not a replica's")
            return
        self._open_message(message)

    def _open_message(self, message: Any) -> None:
        """A message a replica sealed: stale, replayed or late ones dropped, the rest
        acted on."""
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
                log.warning("relay: a replayed or cancelled request was dropped")
                return
            self._seen[exchange] = now
            if now - float(message["at"]) > ACK_TIMEOUT_S:
                # Its receiver has given up waiting for the acknowledgement and told its
                # client so: running it now would do what the client was told failed.
                log.warning("relay: a request that came too late was dropped")
                return
            task = asyncio.get_running_loop().create_task(self._serve(exchange, message))
            self._serving[exchange] = task
        elif kind == "cancel":
            serving = self._serving.get(exchange)
            if serving is not None:
                serving.cancel()
            else:
                self._seen[exchange] = now  # the call may still be on its way
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
