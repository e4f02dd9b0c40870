"""One HTTP/1.1 exchange through the egress proxy: a decided request carried to its
upstream through h11 and its answer carried back, calling the stages (``stages/``) at
their points of the :class:`Flow`.

In order: the request head is rebuilt (``http1.py``), rewritten by injection, dialled
(only now, and only after the entrance's decision: vetted addresses, verified TLS on an
https leg, ``upstream.py``); the grant is checked again right before the head leaves
(it leaves with the first piece of the body, so a head filled in before a revocation
never goes); the body streams up, watched for placeholders; the answer's head comes back
with the standard reason phrase and scrubbed headers, its body streamed through the
scrubber, handed on at least every ``FLUSH_BYTES`` and whenever the proxy is about to
wait on the upstream. A WebSocket upgrade the upstream accepts switches to relaying
(re-framed and scrubbed toward the sandbox). A request framed two ways (Content-Length
and Transfer-Encoding) is refused: it would desync a pooled upstream connection. A
refusal is the JSON answer of ``http1.py`` and an audit row.

Owns the order of an exchange. It must never dial a flow without an allowing decision,
never send a request head once the instance's grant is revoked, never hand on an answer's
bytes the scrub stage did not pass, and never keep an upstream connection whose exchange
did not end cleanly.
"""

from __future__ import annotations

import asyncio

import h11

from gigmcp.egress import http1
from gigmcp.egress.clients import Clients
from gigmcp.egress.flow import Flow
from gigmcp.egress.http1 import Denied
from gigmcp.egress.stages.audit import AuditStage
from gigmcp.egress.stages.inject import InjectStage
from gigmcp.egress.stages.scrub import ScrubStage
from gigmcp.egress.streams import PlainStream
from gigmcp.egress.upstream import EgressUpstreamError, UpstreamPool
from gigmcp.egress.websocket import WebSocketViolation

RESPONSE_TIMEOUT_S = 300.0  # from request sent to response head


class Exchange:
    def __init__(
        self,
        *,
        pool: UpstreamPool,
        clients: Clients,
        inject: InjectStage,
        scrub: ScrubStage,
        audit: AuditStage,
    ) -> None:
        self.pool = pool
        self.clients = clients
        self.inject = inject
        self.scrub = scrub
        self.audit = audit

    async def refuse(self, flow: Flow, denied: Denied) -> None:
        """Audit the refusal and answer it, if nothing of an answer was sent yet."""
        self.audit.on_denied(flow, denied)
        await http1.write_refusal(flow.conn, flow.stream, denied)

    async def run(self, flow: Flow) -> bool:
        """Carry one decided request; whether the sandbox connection may be kept alive."""
        if flow.decision is None or not flow.decision.allowed:
            raise RuntimeError("an exchange without a decision that allows it")
        req, host, port = flow.request, flow.host, flow.port
        assert req is not None
        assert host is not None
        assert port is not None
        self.audit.on_request(flow)
        if http1.ambiguous_framing(req):
            denied = Denied(
                400, "ambiguous-framing",
                "a request with both Content-Length and Transfer-Encoding",
            )  # fmt: skip
            await self.refuse(flow, denied)
            return False
        flow.websocket = http1.is_websocket(req)
        flow.headers = http1.request_headers(req, host, port, flow.scheme, flow.websocket)
        try:
            await self.inject.prepare(flow)
            self.inject.on_request_headers(flow)
            self.audit.on_request_headers(flow)
            self.scrub.on_request_headers(flow)
            try:
                flow.upstream = await self.pool.get(flow.client.instance, flow.scheme, host, port)
            except EgressUpstreamError as exc:
                raise Denied(502, exc.reason, str(exc)) from None
        except Denied as d:
            await self.refuse(flow, d)
            return False
        up = flow.upstream
        try:
            return await self._relay(flow)
        except Denied as d:
            up.close()
            await self.refuse(flow, d)
            return False
        except h11.LocalProtocolError:
            # h11 refused to send something; its message may quote a header: not kept.
            up.close()
            denied = Denied(502, "protocol-error", "the proxy could not pass this exchange on")
            await self.refuse(flow, denied)
            return False
        except BaseException:
            up.close()
            self.audit.on_aborted(flow)
            raise
        finally:
            self.audit.on_done(flow)

    async def _relay(self, flow: Flow) -> bool:
        conn, stream, req, up = flow.conn, flow.stream, flow.request, flow.upstream
        assert req is not None
        assert up is not None
        # The head leaves with the first piece of the body (or its end): one write.
        head = up.conn.send(
            h11.Request(method=req.method, target=flow.target.encode(), headers=flow.headers)
        )
        if conn.client_is_waiting_for_100_continue:
            stream.write(conn.send(h11.InformationalResponse(status_code=100, headers=[])))
            await stream.drain()
        # The request body, streamed, watched for placeholders heading the wrong way.
        while True:
            ev = await http1.next_event(conn, stream, http1.IDLE_TIMEOUT_S)
            # The head (with the key in it) leaves below, after waiting on the sandbox:
            # only if the grant was not revoked meanwhile.
            if head and not self.clients.granted(flow.client):
                raise Denied(403, "grant-revoked", "the instance's egress grant was revoked")
            if isinstance(ev, h11.Data):
                data = bytes(ev.data)
                self.inject.on_request_body_chunk(flow, data)
                self.audit.on_request_body_chunk(flow, data)
                up.writer.write(head + up.conn.send(h11.Data(data=ev.data)))
                head = b""
                await up.writer.drain()
            elif isinstance(ev, h11.EndOfMessage):
                up.writer.write(head + up.conn.send(h11.EndOfMessage()))
                await up.writer.drain()
                break
            elif ev is h11.PAUSED:
                up.writer.write(head)  # a protocol switch proposal (WebSocket): no body
                await up.writer.drain()
                break
            else:
                raise Denied(400, "bad-request", "the request ended early")
        # The answer's head.
        upstream = PlainStream(up.reader, up.writer)
        while True:
            try:
                rev = await http1.next_event(up.conn, upstream, RESPONSE_TIMEOUT_S, remote=True)
            except TimeoutError:
                raise Denied(504, "upstream-timeout", "the upstream did not answer") from None
            if isinstance(rev, h11.InformationalResponse):
                if rev.status_code == 101 and flow.websocket:
                    if any(n == b"sec-websocket-extensions" for n, _v in rev.headers):
                        # None was offered: its frames may be compressed past the scrubber.
                        raise Denied(
                            502, "upstream-extension",
                            "the upstream chose a WebSocket extension that was not offered",
                        )  # fmt: skip
                    return await self._switch(flow, rev)
                if rev.status_code != 100:
                    early = http1.response_headers(rev.headers, keep_length=True)
                    info = h11.InformationalResponse(
                        status_code=rev.status_code, headers=self.scrub.headers(flow, early)
                    )
                    stream.write(conn.send(info))
                continue
            if isinstance(rev, h11.Response):
                break
            raise Denied(502, "upstream-protocol", "the upstream did not answer with HTTP")
        self.audit.on_response_headers(flow, rev.status_code)
        self.scrub.on_response_headers(flow, rev)
        out_headers = http1.response_headers(
            rev.headers, keep_length=flow.scrubber is None, drop_encoding=flow.decoder is not None
        )
        stream.write(conn.send(h11.Response(
            status_code=rev.status_code,
            headers=self.scrub.headers(flow, out_headers),
            reason=http1.reason_phrase(rev.status_code),
        )))  # fmt: skip
        # The answer's body.
        while True:
            rev = await http1.next_event(
                up.conn, upstream, RESPONSE_TIMEOUT_S, remote=True, flush=stream
            )
            if isinstance(rev, h11.Data):
                data = bytes(rev.data)
                self.audit.on_response_body_chunk(flow, data)
                for piece in self.scrub.on_response_body_chunk(flow, data):
                    stream.write(conn.send(h11.Data(data=piece)))
                    if stream.buffered >= http1.FLUSH_BYTES:
                        await stream.drain()
            elif isinstance(rev, h11.EndOfMessage):
                tail = self.scrub.on_response_end(flow)
                if tail:
                    stream.write(conn.send(h11.Data(data=tail)))
                stream.write(conn.send(h11.EndOfMessage()))
                await stream.drain()
                break
            else:
                raise ConnectionError("the upstream closed mid-answer")
        self.pool.put(up)
        return conn.our_state is h11.DONE and conn.their_state is h11.DONE

    async def _switch(self, flow: Flow, rev: h11.InformationalResponse) -> bool:
        """A WebSocket upgrade the upstream accepted: from here on, frames (re-framed
        and scrubbed toward the sandbox, ``websocket.py``) and bytes toward the upstream."""
        conn, stream, up = flow.conn, flow.stream, flow.upstream
        assert up is not None
        frames = self.scrub.on_switch(flow)
        self.audit.on_response_headers(flow, 101)
        switched = self.scrub.headers(
            flow, http1.response_headers(rev.headers, keep_length=True, upgrade=True)
        )
        switched += http1.UPGRADE_HEADERS
        stream.write(conn.send(h11.InformationalResponse(status_code=101, headers=switched)))
        await stream.drain()
        from_client = conn.trailing_data[0]
        from_upstream = up.conn.trailing_data[0]
        upstream = PlainStream(up.reader, up.writer, from_upstream)

        async def pump_up() -> None:
            if from_client:
                up.writer.write(from_client)
            while data := await stream.read():
                self.audit.on_request_body_chunk(flow, data)
                up.writer.write(data)
                await up.writer.drain()
            up.writer.close()

        async def pump_down() -> None:
            try:
                while data := await upstream.read():
                    self.audit.on_response_body_chunk(flow, data)
                    stream.write(frames.feed(data) if frames is not None else data)
                    await stream.drain()
            except WebSocketViolation:
                # A frame the scrubber cannot read: both ends are cut off, nothing of it
                # goes on. (A message cut short is dropped with what was held of it.)
                self.audit.on_cut_off(flow, "upstream-websocket-frame")
                up.close()
            stream.close()

        try:
            await asyncio.gather(pump_up(), pump_down())
        finally:
            up.close()
        return False
