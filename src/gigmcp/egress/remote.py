"""Remote MCP servers: a Streamable HTTP session to a server somewhere else, presented to
the supervisor as a launched process whose stdio is that session.

The supervisor and the upstream connection speak newline-delimited JSON-RPC to a
process's stdin and stdout (``upstream/transport.py``); a :class:`RemoteSession` takes
each line written to its stdin and POSTs it to the server's URL, and writes each
message the server answers (a JSON body, or the events of an SSE stream) to its stdout,
so the handshake, the router's bridging of both protocol generations, per-profile tools,
pins, audit and server-to-client requests work for a remote server exactly as for a
local one. Legacy sessions keep their ``Mcp-Session-Id`` and negotiated version;
2026-07-28 requests carry ``MCP-Protocol-Version``, ``Mcp-Method`` and ``Mcp-Name``
from the message itself. A GET stream carries a legacy server's own messages.

Everything leaves through the egress policy, as a jail's traffic does: the URL's host
must be in the server's allowlist, its name is resolved by the egress resolver and every
answer vetted (no private, loopback, metadata or host address), the connection is pinned
to the vetted address with TLS checked against the name; no redirects are followed, so a
server cannot send the gateway (and a user's token) to a third host. A request gets the
profile owner's current token from their connected account (the token broker), never
the client's own token to the gateway; on a 401 the token is declared stale, refreshed
once and the request tried again. Answers are scrubbed of every token sent, bounded in
size, and each request is bounded in time; each is an egress audit row, as a jail's
request is. A request the gateway cannot carry (the account must be reconnected, the
server refused or failed) is answered to the upstream connection as a JSON-RPC error
for that id, in words naming the cause.

Owns the HTTP side of a remote server. It must never send a request to a host outside
the server's allowlist or to an unvetted address, forward the client's credentials,
follow a redirect, let a token it sent reach the router unscrubbed, or log a token.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx2
import orjson

from gigmcp.core.instances import InstanceKey
from gigmcp.core.launch import LaunchSpec, RemoteTarget
from gigmcp.core.placeholders import TokenSource
from gigmcp.egress.audit import EgressEvent
from gigmcp.egress.scrub import Scrubber, ScrubRules
from gigmcp.errors import AccountError, EgressError, LaunchError
from gigmcp.mcp import jsonrpc as rpc
from gigmcp.mcp import versions as v
from gigmcp.mcp.headers import NAME_PARAM
from gigmcp.netpolicy.hosts import canonical_host
from gigmcp.netpolicy.policy import EgressPolicy
from gigmcp.netpolicy.resolver import AddressResolveError, Resolver, resolve_vetted

log = logging.getLogger(__name__)

REDACTED = b"[redacted]"
REMOTE_ERROR = -32002  # the gateway could not carry a request to the remote server


@dataclass(frozen=True, slots=True)
class RemoteLimits:
    max_message_bytes: int = 4 * 1024 * 1024
    connect_timeout: float = 10.0
    request_timeout: float = 300.0  # from the POST to the end of its answer
    max_in_flight: int = 64


class _Outgoing(asyncio.WriteTransport):
    """What the upstream connection writes to: whole lines become requests."""

    def __init__(self, session: RemoteSession) -> None:
        super().__init__()
        self._session = session
        self._buffer = bytearray()
        self._closing = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing:
            raise RuntimeError("the remote session is closed")
        self._buffer += data
        while (end := self._buffer.find(b"\n")) >= 0:
            line = bytes(self._buffer[:end])
            del self._buffer[: end + 1]
            if line.strip():
                self._session.submit(line)

    def get_write_buffer_size(self) -> int:
        return len(self._buffer) + self._session.in_flight_bytes

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if not self._closing:
            self._closing = True
            self._session.end(0, None)

    def abort(self) -> None:
        self.close()

    def can_write_eof(self) -> bool:
        return False


class _Protocol(asyncio.streams.FlowControlMixin):
    pass


@dataclass(eq=False)
class RemoteSession:
    """A launched process in the supervisor's eyes (``core/launch.LaunchedProcess``)."""

    target: RemoteTarget
    owner_id: int
    tokens: TokenSource | None
    resolver: Resolver
    tls: ssl.SSLContext
    limits: RemoteLimits = field(default_factory=RemoteLimits)
    key: InstanceKey = field(default_factory=lambda: InstanceKey(0, ""))
    audit: Callable[[EgressEvent], None] | None = None
    pid: int = 0  # no process: the status reports none, and no memory
    stdout: asyncio.StreamReader = field(init=False)
    stderr: asyncio.StreamReader = field(init=False)
    stdin: asyncio.StreamWriter = field(init=False)

    def __post_init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.stdout = asyncio.StreamReader(limit=self.limits.max_message_bytes * 2)
        self.stderr = asyncio.StreamReader()
        self._out = _Outgoing(self)
        self.stdin = asyncio.StreamWriter(self._out, _Protocol(loop), None, loop)
        self._ended: asyncio.Future[int] = loop.create_future()
        self._reason: str | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._session_id: str | None = None
        self._version: str | None = None
        self._listening = False
        self._deleting: asyncio.Task[None] | None = None
        self._sent: dict[bytes, bytes] = {}  # every token sent → its redaction
        self._rules = ScrubRules({})
        self.in_flight_bytes = 0
        u = urlsplit(self.target.url)
        self._host = canonical_host(u.hostname or "")
        self._port = u.port or 443
        self._client: httpx2.AsyncClient | None = None
        self._pinned: str | None = None

    # --- the process protocol ----------------------------------------------------------

    async def wait(self) -> int:
        return await asyncio.shield(self._ended)

    def terminate(self) -> None:
        self.end(-15, "stopped")

    def kill(self) -> None:
        self.end(-9, "killed")

    def exit_reason(self) -> str | None:
        return self._reason

    async def cleanup(self) -> None:
        if self._deleting is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._deleting, 5)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._client is not None:
            with contextlib.suppress(Exception):
                await self._client.aclose()
            self._client = None

    # --- lines in, requests out -----------------------------------------------------------

    def submit(self, line: bytes) -> None:
        if self._ended.done():
            return
        if len(self._tasks) >= self.limits.max_in_flight:
            self._note(f"more than {self.limits.max_in_flight} requests in flight: one dropped")
            self._answer_error(line, "too many requests in flight to the remote server")
            return
        self.in_flight_bytes += len(line)
        task = asyncio.get_running_loop().create_task(self._carry(line))
        self._tasks.add(task)

        def done(t: asyncio.Task[None]) -> None:
            self._tasks.discard(t)
            self.in_flight_bytes -= len(line)

        task.add_done_callback(done)

    def end(self, status: int, reason: str | None) -> None:
        """The session is over (closed by the supervisor, or failed for good)."""
        if self._ended.done():
            return
        self._reason = reason
        if self._session_id is not None and status >= 0:
            # A legacy session is ended politely (cleanup waits for it, briefly).
            self._deleting = asyncio.get_running_loop().create_task(self._delete())
        self.stdout.feed_eof()
        self.stderr.feed_eof()
        self._ended.set_result(status)

    async def _carry(self, line: bytes) -> None:
        try:
            msg = orjson.loads(line)
        except orjson.JSONDecodeError:
            self._note("the connection wrote a line that is not JSON: dropped")
            return
        if not isinstance(msg, dict):
            return
        try:
            await self._post(msg, line)
        except asyncio.CancelledError:
            raise
        except AccountError as exc:
            self._note(f"no token: {exc}")
            self._fail(msg, str(exc))
        except (EgressError, LaunchError) as exc:
            self._note(str(exc))
            self._fail(msg, f"the remote server cannot be reached: {exc}")
        except httpx2.HTTPError as exc:
            self._note(f"{type(exc).__name__} talking to the remote server")
            self._fail(msg, f"the remote server cannot be reached ({type(exc).__name__})")
        except TimeoutError:
            self._fail(
                msg, f"the remote server did not answer within {self.limits.request_timeout:g} s"
            )
        except Exception:
            log.exception("remote %s: carrying a message failed", self.target.url)
            self._fail(msg, "the gateway could not carry this request to the remote server")

    async def _post(self, msg: dict[str, Any], body: bytes) -> None:
        kind = rpc.classify(msg)
        for attempt in (1, 2):
            token = await self._token()
            headers = self._headers(msg, token)
            client, url, extra = await self._connection()
            request = client.build_request(
                "POST", url, content=body, headers={**headers, **extra[0]}, extensions=extra[1]
            )
            started = time.perf_counter()
            status = None
            try:
                async with asyncio.timeout(self.limits.request_timeout):
                    response = await client.send(request, stream=True)
                    try:
                        status = response.status_code
                        self._note(f"POST {msg.get('method') or 'response'} {status}")
                        self._keep_session(response)
                        if status == 401 and token is not None and attempt == 1:
                            await self._stale(token)
                            continue
                        await self._answer(msg, kind, response)
                    finally:
                        await response.aclose()
            finally:
                self._audit(status, len(body), started, token is not None)
            return

    def _keep_session(self, response: httpx2.Response) -> None:
        """A legacy server's session id, from the answer that opened the session."""
        sid = response.headers.get("mcp-session-id")
        if (
            sid
            and self._session_id is None
            and len(sid) <= 256
            and sid.isascii()
            and sid.isprintable()
        ):
            self._session_id = sid

    def _audit(self, status: int | None, sent: int, started: float, token: bool) -> None:
        """An egress audit row per request, as the proxy writes for a jail's."""
        if self.audit is None:
            return
        u = urlsplit(self.target.url)
        self.audit(
            EgressEvent(
                source_ip="gateway", decision="allowed" if status is not None else "error",
                reason="remote-mcp" if status is not None else "remote-failed",
                owner_id=self.owner_id, profile_id=self.key.profile_id,
                server=self.key.server_name,
                instance=f"{self.key.profile_id}/{self.key.server_name}", method="POST",
                scheme="https", host=self._host.name, port=self._port, path=u.path[:1024],
                status=status, bytes_out=sent,
                duration_ms=(time.perf_counter() - started) * 1000,
                credential="access_token" if token else None,
            )
        )  # fmt: skip

    async def _answer(self, msg: dict[str, Any], kind: rpc.Kind, response: httpx2.Response) -> None:
        status = response.status_code
        ctype = response.headers.get("content-type", "").split(";")[0].strip().lower()
        if status == 404 and self._session_id is not None:
            # The server forgot the session: the instance starts again (a new handshake).
            self._fail(msg, "the remote server ended the session; try again")
            self.end(1, "the remote server ended its session (404)")
            return
        if 200 <= status < 300 and ctype == "text/event-stream":
            await self._events(response)
            return
        body = await self._read(response)
        if status in (202, 204) or (200 <= status < 300 and not body.strip()):
            return
        if 200 <= status < 300 and ctype in ("application/json", ""):
            self._deliver(body, request=msg)
            return
        if kind is not rpc.Kind.REQUEST:
            self._note(f"the remote server refused a {kind.name.lower()} ({status})")
            return
        # An error answer: the server's own JSON-RPC error if it sent one for this id.
        with contextlib.suppress(orjson.JSONDecodeError):
            doc = orjson.loads(body)
            if isinstance(doc, dict) and doc.get("id") == msg.get("id") and "error" in doc:
                self._deliver(body, request=msg)
                return
        self._fail(msg, f"the remote server answered HTTP {status}")

    async def _events(self, response: httpx2.Response) -> None:
        """Server-Sent Events: each event's data is one JSON-RPC message."""
        scrubber = Scrubber(self._rules)
        pending = bytearray()
        data: list[bytes] = []
        async for chunk in response.aiter_bytes():
            pending += scrubber.feed(chunk)
            if len(pending) > self.limits.max_message_bytes:
                raise EgressError("an event from the remote server is larger than the limit")
            while (end := pending.find(b"\n")) >= 0:
                raw = bytes(pending[:end]).rstrip(b"\r")
                del pending[: end + 1]
                if not raw:
                    if data:
                        self._deliver(b"\n".join(data), scrubbed=True)
                        data = []
                elif raw.startswith(b"data:"):
                    data.append(raw[5:].removeprefix(b" "))
        pending += scrubber.flush()
        if data:
            self._deliver(b"\n".join(data), scrubbed=True)

    async def _read(self, response: httpx2.Response) -> bytes:
        body = bytearray()
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > self.limits.max_message_bytes:
                raise EgressError("an answer of the remote server is larger than the limit")
        return bytes(body)

    def _deliver(
        self, body: bytes, *, request: dict[str, Any] | None = None, scrubbed: bool = False
    ) -> None:
        if not scrubbed:
            body = Scrubber(self._rules).replace_all(body)
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            self._note("the remote server sent a message that is not JSON: dropped")
            return
        for one in doc if isinstance(doc, list) else [doc]:
            if not isinstance(one, dict):
                continue
            if request is not None and request.get("method") == "initialize":
                self._initialized(one)
            self.stdout.feed_data(orjson.dumps(one) + b"\n")

    def _initialized(self, answer: dict[str, Any]) -> None:
        result = answer.get("result")
        if isinstance(result, dict) and isinstance(result.get("protocolVersion"), str):
            self._version = result["protocolVersion"]
            if self._session_id is not None and not self._listening:
                self._listening = True
                task = asyncio.get_running_loop().create_task(self._listen())
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _listen(self) -> None:
        """A legacy session's GET stream: the server's own requests and notifications."""
        with contextlib.suppress(Exception):
            client, url, extra = await self._connection()
            token = await self._token()
            headers = {**self._headers(None, token), **extra[0], "Accept": "text/event-stream"}
            request = client.build_request("GET", url, headers=headers, extensions=extra[1])
            response = await client.send(request, stream=True)
            try:
                if response.status_code == 200:
                    await self._events(response)
            finally:
                await response.aclose()

    async def _delete(self) -> None:
        with contextlib.suppress(Exception):
            client, url, extra = await self._connection()
            async with asyncio.timeout(5):
                headers = {**self._headers(None, None), **extra[0]}
                await client.request("DELETE", url, headers=headers, extensions=extra[1])
        if self._client is not None:
            with contextlib.suppress(Exception):
                await self._client.aclose()

    # --- headers, tokens, the connection ------------------------------------------------

    def _headers(self, msg: dict[str, Any] | None, token: bytes | None) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream",
        }
        version = self._version
        if msg is not None:
            meta = (
                (msg.get("params") or {}).get("_meta")
                if isinstance(msg.get("params"), dict)
                else None
            )
            if isinstance(meta, dict) and isinstance(meta.get(v.META_PROTOCOL_VERSION), str):
                version = meta[v.META_PROTOCOL_VERSION]
            method = msg.get("method")
            if isinstance(method, str) and version is not None and v.is_modern(version):
                headers["Mcp-Method"] = method
                field_name = NAME_PARAM.get(method)
                value = (msg.get("params") or {}).get(field_name) if field_name else None
                if isinstance(value, str):
                    headers["Mcp-Name"] = _header_value(value)
        if version is not None:
            headers["MCP-Protocol-Version"] = version
        if self._session_id is not None:
            headers["Mcp-Session-Id"] = self._session_id
        if token is not None:
            headers["Authorization"] = "Bearer " + token.decode("ascii", "replace")
        return headers

    async def _token(self) -> bytes | None:
        if self.target.vendor is None or self.tokens is None:
            return None
        token = await self.tokens.access_token(self.owner_id, self.target.vendor)
        if token not in self._sent:
            self._sent[token] = REDACTED
            self._rules = ScrubRules(self._sent)
        return token

    async def _stale(self, token: bytes) -> None:
        """The server refused ``token``: have it refreshed before the one retry."""
        if self.tokens is not None and self.target.vendor is not None:
            await self.tokens.refused(self.owner_id, self.target.vendor, token)

    async def _connection(
        self,
    ) -> tuple[httpx2.AsyncClient, str, tuple[dict[str, str], dict[str, str]]]:
        """The session's client, pinned to a vetted address of the URL's host."""
        if self._client is None or self._pinned is None:
            decision = EgressPolicy(self.target.hosts, self.target.ports).check(
                self._host, self._port
            )
            if not decision.allowed:
                raise EgressError(
                    f"{self._host.name}:{self._port} is not allowed ({decision.reason})"
                )
            try:
                vetted = await resolve_vetted(self.resolver, self._host.name)
            except AddressResolveError as exc:
                raise EgressError(f"{self._host.name}: {exc}") from None
            ip = vetted.addresses[0]
            literal = f"[{ip}]" if ip.version == 6 else str(ip)
            u = urlsplit(self.target.url)
            self._pinned = u._replace(netloc=f"{literal}:{self._port}").geturl()
            timeout = httpx2.Timeout(
                self.limits.request_timeout, connect=self.limits.connect_timeout
            )
            self._client = httpx2.AsyncClient(
                verify=self.tls,
                follow_redirects=False,
                trust_env=False,
                timeout=timeout,
                limits=httpx2.Limits(max_connections=16, max_keepalive_connections=4),
            )
        host = self._host.name + ("" if self._port == 443 else f":{self._port}")
        return self._client, self._pinned, ({"Host": host}, {"sni_hostname": self._host.name})

    # --- answers the gateway makes itself ----------------------------------------------

    def _fail(self, msg: dict[str, Any], message: str) -> None:
        if "id" in msg and "method" in msg:
            error = rpc.error_response(msg["id"], REMOTE_ERROR, message)
            self.stdout.feed_data(orjson.dumps(error) + b"\n")

    def _answer_error(self, line: bytes, message: str) -> None:
        with contextlib.suppress(orjson.JSONDecodeError):
            msg = orjson.loads(line)
            if isinstance(msg, dict):
                self._fail(msg, message)

    def _note(self, text: str) -> None:
        """A line of the instance's log (never a token: none is ever put in one)."""
        if not self.stderr.at_eof():
            self.stderr.feed_data(f"remote: {text}\n".encode())


def _header_value(value: str) -> str:
    if value.isascii() and value.isprintable():
        return value
    return "=?base64?" + base64.b64encode(value.encode()).decode() + "?="


class RemoteLauncher:
    """A :class:`~gigmcp.core.launch.Launcher` for remote servers: each launch opens a
    session (nothing is dialled until the handshake's first request)."""

    def __init__(
        self,
        resolver: Resolver,
        tls: ssl.SSLContext,
        tokens: TokenSource | None,
        limits: RemoteLimits | None = None,
        audit: Callable[[EgressEvent], None] | None = None,
    ) -> None:
        self._resolver = resolver
        self._tls = tls
        self._tokens = tokens
        self._limits = limits or RemoteLimits()
        self._audit = audit

    async def start(self) -> dict[str, list[str]]:
        return {}

    async def launch(self, spec: LaunchSpec) -> RemoteSession:
        if spec.remote is None:
            raise LaunchError("not a remote server")
        return RemoteSession(spec.remote, spec.owner_id, self._tokens, self._resolver, self._tls,
                             self._limits, spec.key, self._audit)  # fmt: skip

    async def explain(self, spec: LaunchSpec) -> str | None:
        return None

    async def aclose(self) -> None:
        return None
