"""The injection stage: credentials into the request head, placeholders watched for in
everything the sandbox sends (``inject.py`` decides; this stage applies it to a flow).

Keys go only toward a credential's hosts, and only on a leg whose upstream the proxy
verifies by TLS: the head is rewritten before anything is dialled with
``verified_tls`` true for an https leg only (only such a leg dials with the verifying
context, ``upstream.py``), and every chunk of the body is checked against the upstream
connection actually used. A placeholder out of place, or any placeholder on a plain leg,
is a refusal naming the credential, never its value.

Owns those two points of a flow. It must never inject on a leg without verified TLS or
toward a host outside a credential's hosts, and never put a value in what it raises.
"""

from __future__ import annotations

from gigmcp.egress.flow import Flow
from gigmcp.egress.http1 import Denied
from gigmcp.egress.inject import Exfiltration, UnusableValue
from gigmcp.errors import AccountError, ConnectionNeeded


class InjectStage:
    async def prepare(self, flow: Flow) -> None:
        """The connected accounts' current tokens for this request (``flow.tokens``).
        Raises Denied naming the vendor when an account cannot give one: 401 when the
        user must connect (again), 503 when the vendor's token endpoint is failing."""
        assert flow.host is not None
        try:
            flow.tokens = await flow.client.keys.fetch(
                flow.host, verified_tls=flow.scheme == "https"
            )
        except AccountError as exc:
            if isinstance(exc, ConnectionNeeded):
                raise Denied(401, "account-reconnect", str(exc)) from None
            raise Denied(503, "account-unavailable", str(exc)) from None

    def on_request_headers(self, flow: Flow) -> None:
        """Rewrites ``flow.headers``: each credential's header set toward its hosts, the
        ids in ``flow.injected``. Raises Denied for a placeholder out of place (403) or a
        value that cannot make a header (502)."""
        assert flow.host is not None
        keys = flow.client.keys
        try:
            flow.headers, flow.injected = keys.rewrite(
                flow.host, flow.target.encode(), flow.headers,
                verified_tls=flow.scheme == "https", tokens=flow.tokens,
            )  # fmt: skip
        except (Exfiltration, UnusableValue) as exc:
            status = 403 if isinstance(exc, Exfiltration) else 502
            raise Denied(status, exc.reason, str(exc), exc.credential_id) from None
        flow.detector = keys.detector()

    def on_request_body_chunk(self, flow: Flow, data: bytes) -> None:
        """Raises Denied when ``data`` completes a placeholder heading the wrong way."""
        if flow.detector is None:
            return
        assert flow.host is not None
        assert flow.upstream is not None
        try:
            flow.client.keys.check_found(
                flow.detector.feed(data), flow.host, verified_tls=flow.upstream.verified_tls
            )
        except Exfiltration as exc:
            raise Denied(403, exc.reason, str(exc), exc.credential_id) from None
