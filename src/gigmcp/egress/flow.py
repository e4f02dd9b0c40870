"""One request through the egress proxy, as it passes from the sandbox to the upstream
and back: the :class:`Flow` every entrance, stage and the exchange work on.

A flow is made for each request an entrance reads (or fails to read) on a sandbox
connection. It carries who sent it (the connection's :class:`Client`: identity, policy,
keys), the sandbox side's h11 connection and stream, where it goes once decided (scheme,
canonical host, port, origin-form target) and the policy decision that let it, what is
sent upstream (the rebuilt headers, the credentials injected), the upstream connection
chosen, the audit event with its clock, and what the stages keep for it between their
points (the detector over the request body; the scrubber and decoder over the answer).

Owns that record only. It must never decide, dial, write or audit anything itself, never
be shared between two requests, and never show a header or a target in its repr (once
injected, the headers hold a real value).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import h11

from gigmcp.egress.audit import EgressEvent
from gigmcp.egress.clients import Client
from gigmcp.egress.http1 import Headers
from gigmcp.egress.scrub import Detector, Scrubber
from gigmcp.egress.streams import Stream
from gigmcp.egress.upstream import Upstream
from gigmcp.netpolicy.hosts import Host
from gigmcp.netpolicy.policy import Decision


@dataclass(eq=False, repr=False, slots=True)
class Flow:
    client: Client
    conn: h11.Connection  # the sandbox side
    stream: Stream
    scheme: str  # "http", "https", or "connect" for a CONNECT request itself
    request: h11.Request | None = None
    # Where it goes, set only once the entrance's checks passed: a refusal before that
    # names what the request itself named.
    host: Host | None = None
    port: int | None = None
    target: str = ""  # origin-form, as sent upstream
    decision: Decision | None = None
    # Toward the upstream.
    websocket: bool = False
    headers: Headers = field(default_factory=list)
    injected: list[str] = field(default_factory=list)
    # Connected accounts' tokens for this request, by credential id (never shown).
    tokens: dict[str, bytes] = field(default_factory=dict)
    upstream: Upstream | None = None
    # The audit row while the exchange runs, and when it began (time.monotonic()).
    event: EgressEvent | None = None
    started: float = 0.0
    # What the stages keep between their points.
    detector: Detector | None = None
    scrubber: Scrubber | None = None
    decoder: zlib._Decompress | None = None  # an answer decoded so it can be scrubbed

    def __repr__(self) -> str:
        where = f"{self.host.name}:{self.port}" if self.host is not None else "undecided"
        return f"Flow({self.client.instance}, {self.scheme}, {where})"
