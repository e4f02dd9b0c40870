"""Prometheus metrics: the families, their bounded labels, and the scrape listener.

Owns the metric families (``gigmcp_*``, documented in docs/operations.md), the rule
that keeps their label values few (methods from a fixed list, server and tool names
only as the catalog routed them and capped per kind, everything else a code the
gateway itself wrote), the gauges read at scrape time (instances by state, database
pools), and :class:`MetricsListener`, the small HTTP/1.1 server on a port of its own
that answers ``GET /metrics``.

It must never take a label value from a client (a user id, a token, an argument, a
method or host name a client made up), never serve anything but the metrics, and never
cost anything while metrics are off: :data:`active` is None then, and every recording
function in ``probes.py`` returns on that one check.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import Any

import h11
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

# The MCP methods a label may name; anything else a client sends counts as "other", so
# that a client cannot mint label values.
METHODS = frozenset(
    {
        "initialize", "ping", "server/discover", "tools/list", "tools/call", "prompts/list",
        "prompts/get", "resources/list", "resources/read", "resources/templates/list",
        "resources/subscribe", "resources/unsubscribe", "completion/complete",
        "logging/setLevel", "subscriptions/listen", "tasks/get", "tasks/update",
        "tasks/cancel", "tasks/list", "tasks/result",
    }
)  # fmt: skip
OTHER = "other"
# Caps on the values one label may take. Server names come from the catalog (bounded by
# what is installed) and tool names from a server's routed, enabled tools; a hostile
# server may still advertise thousands of tools, so past the cap a value is "other".
MAX_SERVERS = 1000
MAX_TOOLS_PER_SERVER = 100
MAX_CODES = 100  # egress reasons, vendors: written by the gateway, capped anyway

# Latency buckets in seconds: a hop costs fractions of a millisecond, a tool call
# anything up to the request timeout.
REQUEST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                   1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)  # fmt: skip
EGRESS_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

INSTANCE_STATES = ("starting", "running", "crashed", "idle")


class _Bounded:
    """The values one label has taken; a new one past the cap is ``other``."""

    __slots__ = ("_cap", "_seen")

    def __init__(self, cap: int) -> None:
        self._cap = cap
        self._seen: set[str] = set()

    def __call__(self, value: str | None) -> str:
        if value is None:
            return "unknown"
        if value in self._seen:
            return value
        if len(self._seen) >= self._cap:
            return OTHER
        self._seen.add(value)
        return value


class Metrics:
    """Every family, registered in a registry of its own (never the process-global
    default, which libraries may fill)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "gigmcp_mcp_requests", "MCP requests answered, by method, protocol era and outcome",
            ["method", "era", "outcome"], registry=r,
        )  # fmt: skip
        self.request_seconds = Histogram(
            "gigmcp_mcp_request_duration_seconds", "Time to answer an MCP request, by method",
            ["method"], buckets=REQUEST_BUCKETS, registry=r,
        )  # fmt: skip
        self.rejections = Counter(
            "gigmcp_mcp_http_rejections",
            "MCP endpoint requests refused before the router (bad token, origin, size...)",
            ["status"], registry=r,
        )  # fmt: skip
        self.tool_calls = Counter(
            "gigmcp_tool_calls", "Tool calls, by server, tool and outcome",
            ["server", "tool", "outcome"], registry=r,
        )  # fmt: skip
        self.tool_seconds = Histogram(
            "gigmcp_tool_call_duration_seconds", "Tool call latency through the gateway",
            ["server"], buckets=REQUEST_BUCKETS, registry=r,
        )  # fmt: skip
        self.starts = Counter(
            "gigmcp_instance_starts", "Server instance starts, by server and outcome",
            ["server", "outcome"], registry=r,
        )  # fmt: skip
        self.crashes = Counter(
            "gigmcp_instance_crashes", "Server instances that ended on their own",
            ["server"], registry=r,
        )  # fmt: skip
        self.egress = Counter(
            "gigmcp_egress_requests", "Egress proxy requests, by server and decision",
            ["server", "decision"], registry=r,
        )  # fmt: skip
        self.egress_denials = Counter(
            "gigmcp_egress_denials", "Egress requests denied, by server and the proxy's reason",
            ["server", "reason"], registry=r,
        )  # fmt: skip
        self.egress_seconds = Histogram(
            "gigmcp_egress_request_duration_seconds", "Egress exchange duration, by decision",
            ["decision"], buckets=EGRESS_BUCKETS, registry=r,
        )  # fmt: skip
        self.refreshes = Counter(
            "gigmcp_token_refreshes", "Connected-account token refreshes, by vendor and outcome",
            ["vendor", "outcome"], registry=r,
        )  # fmt: skip
        self.server = _Bounded(MAX_SERVERS)
        self._tools: dict[str, _Bounded] = {}
        self.reason = _Bounded(MAX_CODES)
        self.vendor = _Bounded(MAX_CODES)
        self._gauges = _Gauges()
        r.register(self._gauges)

    def tool(self, server: str, tool: str) -> str:
        names = self._tools.get(server)
        if names is None:
            names = self._tools[server] = _Bounded(MAX_TOOLS_PER_SERVER)
        return names(tool)

    def watch_instances(self, counts: Callable[[], Mapping[str, int]]) -> None:
        """Read instances by state at each scrape (the supervisor's own tables)."""
        self._gauges.instances = counts

    def watch_pool(self, name: str, engine: Any) -> None:
        """Report a SQLAlchemy engine's connection pool under ``pool=name``."""
        self._gauges.pools[name] = engine

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _Gauges(Collector):
    """Gauges computed when scraped, so that nothing on a hot path keeps them."""

    def __init__(self) -> None:
        self.instances: Callable[[], Mapping[str, int]] | None = None
        self.pools: dict[str, Any] = {}

    def describe(self) -> list[Metric]:
        return []  # computed at collect time; nothing to check at registration

    def collect(self) -> list[Metric]:
        out: list[Metric] = []
        if self.instances is not None:
            g = GaugeMetricFamily("gigmcp_instances", "Server instances by state", labels=["state"])
            counts = self.instances()
            for state in INSTANCE_STATES:
                g.add_metric([state], counts.get(state, 0))
            out.append(g)
        if self.pools:
            families = {
                name: GaugeMetricFamily(f"gigmcp_db_pool_{name}", text, labels=["pool"])
                for name, text in (
                    ("size", "Connections the pool keeps"),
                    ("checked_out", "Connections in use"),
                    ("checked_in", "Idle connections in the pool"),
                    ("overflow", "Connections beyond the pool's size (negative: room left)"),
                )
            }
            for pool_name, engine in self.pools.items():
                pool = engine.pool
                # QueuePool has all four; SQLite's in-memory StaticPool none of them.
                for name, family in families.items():
                    read = getattr(pool, name.replace("_", ""), None)
                    if callable(read):
                        family.add_metric([pool_name], float(read()))
            out.extend(families.values())
        return out


# The registry of a gateway with metrics on; None while they are off (the default).
active: Metrics | None = None


def enable() -> Metrics:
    """Switch metrics on for this process (idempotent); returns the families."""
    global active
    if active is None:
        active = Metrics()
    return active


def disable() -> None:
    global active
    active = None


class MetricsListener:
    """``GET /metrics`` on its own address: HTTP/1.1 through h11, one request per
    connection, in the gateway's event loop (the gauges read the supervisor's tables
    from the thread that changes them)."""

    READ_TIMEOUT_S = 10.0

    def __init__(self, metrics: Metrics, host: str, port: int) -> None:
        self._metrics = metrics
        self._host, self._port = host, port
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self._host, self._port)

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER)
        try:
            async with asyncio.timeout(self.READ_TIMEOUT_S):
                request = await _read_request(conn, reader)
            if request is None:
                return
            status, body, ctype = self._answer(request)
            headers = [(b"content-type", ctype), (b"content-length", str(len(body)).encode()),
                       (b"connection", b"close")]  # fmt: skip
            writer.write(conn.send(h11.Response(status_code=status, headers=headers)) or b"")
            writer.write(conn.send(h11.Data(data=body)) or b"")
            writer.write(conn.send(h11.EndOfMessage()) or b"")
            await writer.drain()
        except (TimeoutError, OSError, h11.ProtocolError):
            pass  # a client that cannot speak HTTP/1.1 in time gets nothing
        except Exception:
            log.exception("metrics listener: a scrape failed")
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def _answer(self, request: h11.Request) -> tuple[int, bytes, bytes]:
        path = request.target.split(b"?", 1)[0]
        if path != b"/metrics":
            return 404, b"not found: scrape /metrics\n", b"text/plain; charset=utf-8"
        if request.method not in (b"GET", b"HEAD"):
            return 405, b"GET only\n", b"text/plain; charset=utf-8"
        return 200, self._metrics.exposition(), b"text/plain; version=0.0.4; charset=utf-8"


async def _read_request(conn: h11.Connection, reader: asyncio.StreamReader) -> h11.Request | None:
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await reader.read(16384)
            conn.receive_data(data)
            continue
        if isinstance(event, h11.Request):
            return event
        return None  # ConnectionClosed or anything else: nothing to answer
