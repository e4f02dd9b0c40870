"""The systems under test ("arms") and how the load generator talks to each.

Owns starting every system under test around the same fast stdio server, pinned to the
SUT cores, and one operation per workload for each arm: a checked ``tools/call``, one
session of churn, or a full ``tools/list``. It must never start anything that listens
beyond loopback (supergateway, which binds every interface, runs in its own network
namespace) and never leave a process or namespace behind: ``stop`` undoes ``start``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import shutil
import subprocess
import sys
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

from bench import http_client, netns, procs, procstat, wire
from bench.stdio_client import StdioClient

ROOT = Path(__file__).resolve().parent.parent
FAST_SERVER = ROOT / "bench" / "servers" / "fast_server.py"
PEERS = ROOT / "bench" / ".peers"
LIST_SERVERS = 5
LIST_TOOLS_EACH = 100  # blob + 99 no-op tools: 500 tools over 5 servers


def server_argv(*extra: str) -> list[str]:
    """The benchmark server, run by the project's interpreter (it has the SDK)."""
    return [sys.executable, str(FAST_SERVER), *extra]


def list_server_argv(index: int) -> list[str]:
    extra = str(LIST_TOOLS_EACH - 1)
    return server_argv("--name", f"list{index}", "--tools", extra, "--prefix", "t")


def expected_list_names(prefixed: bool) -> set[str]:
    """The 500 names a full listing must give: ``list<i>_<tool>`` through the gateway,
    ``<i>:<tool>`` when the direct baseline collects them server by server."""
    own = ["blob", *(f"t{j:04d}" for j in range(LIST_TOOLS_EACH - 1))]
    sep = "_" if prefixed else ":"
    prefix = "list" if prefixed else ""
    return {f"{prefix}{i}{sep}{name}" for i in range(LIST_SERVERS) for name in own}


@dataclass
class Context:
    """What every arm shares: cores, ids, a scratch dir for logs and data."""

    sut_cpus: set[int]
    ids: wire.Ids
    work: Path


def _children_cpu_ns() -> int:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return int((usage.ru_utime + usage.ru_stime) * 1e9)


class Arm(ABC):
    """One system under test, seen through one client form."""

    name: str
    description: str
    call_tool = "blob"
    supports_list = False

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    @abstractmethod
    async def start(self) -> None: ...

    @abstractmethod
    async def stop(self) -> None: ...

    @abstractmethod
    def roots(self, kind: str) -> list[int]:
        """Root pids of the system under test for a workload kind (each measured with all
        its descendants). The listing runs on processes of its own, so that its five
        servers do not weigh on the memory figures of the call workloads."""

    def cpu_ns(self, kind: str) -> int:
        return sum(procstat.sample(pid).cpu_ns for pid in self.roots(kind))

    def rss_bytes(self, kind: str) -> int:
        return sum(procstat.sample(pid).rss_bytes for pid in self.roots(kind))

    @abstractmethod
    async def call(self, worker: int, size: int) -> None:
        """One checked tools/call of ``blob`` with a fresh nonce."""

    @abstractmethod
    async def churn(self) -> None:
        """One whole session: discover or initialize, one checked call, end."""

    async def list_all(self) -> None:
        raise NotImplementedError

    def new_call(self, size: int) -> wire.Call:
        return wire.Call(id=self.ctx.ids(), tool=self.call_tool, size=size, nonce=wire.nonce())


# --- (a) direct stdio --------------------------------------------------------------------


class DirectArm(Arm):
    name = "direct"
    description = "lean JSON-RPC client on the server's stdio (no transport in between)"
    supports_list = True

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.client = StdioClient(server_argv(), ctx.sut_cpus, ctx.ids)
        self.list_clients: list[StdioClient] = []

    async def start(self) -> None:
        await self.client.start()

    async def start_list(self) -> None:
        for i in range(LIST_SERVERS):
            client = StdioClient(list_server_argv(i), self.ctx.sut_cpus, self.ctx.ids)
            self.list_clients.append(client)
            await client.start()

    async def stop(self) -> None:
        for client in [self.client, *self.list_clients]:
            await client.close()

    def roots(self, kind: str) -> list[int]:
        clients = self.list_clients if kind == "list" else [self.client]
        return [c.pid for c in clients if c.proc is not None]

    def cpu_ns(self, kind: str) -> int:
        if kind != "churn":
            return super().cpu_ns(kind)
        # Churned servers are this process's children: their CPU arrives in RUSAGE_CHILDREN
        # once reaped, and no other child of the benchmark ends while this arm runs.
        return _children_cpu_ns()

    def rss_bytes(self, kind: str) -> int:
        return 0 if kind == "churn" else super().rss_bytes(kind)

    async def call(self, worker: int, size: int) -> None:
        await self.client.call(self.new_call(size))
        if self.client.stray:
            raise wire.WrongAnswer(f"{self.client.stray} answers matched no request")

    async def churn(self) -> None:
        client = StdioClient(server_argv(), self.ctx.sut_cpus, self.ctx.ids)
        try:
            await client.start()
            await client.call(self.new_call(200))
        finally:
            await client.close()

    async def list_all(self) -> None:
        # The baseline for one aggregated tools/list: one tools/list to each server in turn.
        names: set[str] = set()
        for i, client in enumerate(self.list_clients):
            req_id = self.ctx.ids()
            result = wire.check_result(
                await client.send(req_id, wire.request(req_id, "tools/list", None, False)), req_id
            )
            if result.get("nextCursor"):
                raise wire.WrongAnswer("benchmark server paginated unexpectedly")
            names.update(f"{i}:{n}" for n in wire.tool_names(result))
        if names != expected_list_names(prefixed=False):
            raise wire.WrongAnswer(f"direct tools/list gave {len(names)} names, expected 500")


# --- HTTP systems under test ---------------------------------------------------------------


@dataclass
class HttpSut:
    """One HTTP server process tree (several arms may share it with different clients)."""

    name: str
    argv: list[str]
    port: int
    path: str
    env: dict[str, str] | None = None
    ns: netns.NetNamespace | None = None
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None

    def endpoint(self, path: str | None = None) -> http_client.Endpoint:
        connector = None
        if self.ns is not None:
            ns, port = self.ns, self.port
            connector = lambda: ns.connect("127.0.0.1", port)  # noqa: E731
        return http_client.Endpoint(
            "127.0.0.1", self.port, path or self.path, list(self.headers), connector
        )

    def start(self, ctx: Context) -> None:
        self.log = ctx.work / f"{self.name}.log"
        argv = list(self.argv)
        if self.ns is not None:
            self.ns.create()
            argv = self.ns.exec_prefix() + argv
        self.proc = procs.spawn(argv, ctx.sut_cpus, self.log, env=self.env, cwd=ctx.work)
        endpoint = self.endpoint()
        procs.wait_listening(endpoint.connect_socket, self.proc, self.log)

    def stop(self) -> None:
        if self.proc is not None:
            procs.stop_group(self.proc.pid)
            self.proc = None
        if self.ns is not None:
            self.ns.delete()


class HttpArm(Arm):
    """A client (legacy session or stateless) of an HTTP system under test.

    The system under test is started and stopped by the runner: several arms share one.
    """

    def __init__(
        self,
        ctx: Context,
        sut: HttpSut,
        name: str,
        description: str,
        modern: bool,
        tool: str = "blob",
        endpoint: http_client.Endpoint | None = None,
    ) -> None:
        super().__init__(ctx)
        self.sut = sut
        self.name = name
        self.description = description
        self.modern = modern
        self.call_tool = tool
        self.endpoint = endpoint or sut.endpoint()
        self.client = http_client.McpClient(self.endpoint, ctx.ids, modern)
        self.pool: list[http_client.Connection] = []

    async def start(self) -> None:
        await self.client.open(self._conn(0))

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            if self.pool:
                await asyncio.wait_for(self.client.close(self.pool[0]), 5)
        for conn in self.pool:
            await conn.close()
        self.pool.clear()

    def roots(self, kind: str) -> list[int]:
        return [self.sut.proc.pid] if self.sut.proc is not None else []

    def _conn(self, worker: int) -> http_client.Connection:
        while len(self.pool) <= worker:
            self.pool.append(http_client.Connection(self.endpoint))
        return self.pool[worker]

    async def call(self, worker: int, size: int) -> None:
        await self.client.call(self._conn(worker), self.new_call(size))

    async def churn(self) -> None:
        conn = http_client.Connection(self.endpoint)
        client = http_client.McpClient(self.endpoint, self.ctx.ids, self.modern)
        try:
            await client.open(conn)
            await client.call(conn, self.new_call(200))
            await client.close(conn)
        finally:
            await conn.close()


class GatewayArm(HttpArm):
    """The gateway: calls on profile ``bench``, the aggregated listing on profile ``list``."""

    supports_list = True

    def __init__(
        self,
        ctx: Context,
        sut: HttpSut,
        name: str,
        description: str,
        modern: bool,
        endpoint: http_client.Endpoint,
        list_sut: HttpSut | None,
        list_endpoint: http_client.Endpoint,
    ) -> None:
        super().__init__(ctx, sut, name, description, modern, "fast_blob", endpoint)
        self.list_sut = list_sut
        self.supports_list = list_sut is not None
        self.list_conn = http_client.Connection(list_endpoint)
        self.list_client = http_client.McpClient(list_endpoint, self.ctx.ids, self.modern)
        self.list_open = False

    def roots(self, kind: str) -> list[int]:
        sut = self.list_sut if kind == "list" else self.sut
        return [sut.proc.pid] if sut is not None and sut.proc is not None else []

    async def list_all(self) -> None:
        if not self.list_open:
            await self.list_client.open(self.list_conn)
            self.list_open = True
        names = await self.list_client.list_tools(self.list_conn)
        if len(names) != len(set(names)) or set(names) != expected_list_names(prefixed=True):
            raise wire.WrongAnswer(f"gateway tools/list gave {len(names)} names, expected 500")

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            if self.list_open:
                await asyncio.wait_for(self.list_client.close(self.list_conn), 5)
        await self.list_conn.close()
        await super().stop()


# --- the systems under test, by name -------------------------------------------------------


def sdk_sut(ctx: Context) -> HttpSut:
    port = procs.free_port()
    return HttpSut("sdk", server_argv("--http", f"127.0.0.1:{port}"), port, "/mcp")


def mcp_proxy_sut(ctx: Context) -> HttpSut:
    exe = PEERS / "mcp-proxy" / "bin" / "mcp-proxy"
    _require(exe, "mcp-proxy")
    port = procs.free_port()
    argv = [str(exe), "--host", "127.0.0.1", "--port", str(port), "--log-level", "WARNING"]
    return HttpSut("mcp-proxy", [*argv, "--", *server_argv()], port, "/mcp")


def fastmcp_sut(ctx: Context) -> HttpSut:
    python = PEERS / "fastmcp" / "bin" / "python"
    _require(python, "fastmcp")
    port = procs.free_port()
    script = ROOT / "bench" / "peers" / "fastmcp_proxy.py"
    argv = [str(python), str(script), str(port), "--", *server_argv()]
    return HttpSut("fastmcp", argv, port, "/mcp")


def supergateway_sut(ctx: Context) -> HttpSut:
    entry = PEERS / "npm" / "node_modules" / "supergateway" / "dist" / "index.js"
    _require(entry, "supergateway")
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("supergateway needs node on PATH")
    # Any fixed port will do: nothing else lives in this namespace.
    port = 8000
    stdio = " ".join(server_argv())
    argv = [
        node, str(entry), "--stdio", stdio, "--outputTransport", "streamableHttp",
        "--stateful", "--port", str(port), "--logLevel", "none",
    ]  # fmt: skip
    ns = netns.NetNamespace(f"gigbench-{os.getpid()}-sg")
    return HttpSut("supergateway", argv, port, "/mcp", ns=ns)


def _require(path: Path, peer: str) -> None:
    if not path.exists():
        raise RuntimeError(f"{peer} is not installed in {PEERS} (scripts/bench installs it)")


class GatewaySetup:
    """A real ``gigmcp serve`` with its own temp data dir, set up through the real CLI.

    ``profile`` is ``bench`` (one fast server) or ``list`` (five servers of 100 tools).
    """

    def __init__(self, ctx: Context, profile: str) -> None:
        self.ctx = ctx
        self.profile = profile
        self.data = ctx.work / f"gateway-{profile}"
        self.gigmcp = str(Path(sys.executable).parent / "gigmcp")
        self.env = dict(
            os.environ,
            GIG_DATA_DIR=str(self.data),
            GIG_MASTER_KEY=os.urandom(32).hex(),
        )
        self.token = ""

    def cli(self, *args: str) -> str:
        result = subprocess.run(
            [self.gigmcp, *args], env=self.env, capture_output=True, text=True, timeout=60
        )
        if result.returncode != 0:
            lines = result.stderr.strip().splitlines() or ["(no output)"]
            raise RuntimeError(f"gigmcp {' '.join(args[:2])} failed: {lines[-1][:300]}")
        return result.stdout

    def configure(self) -> None:
        self.data.mkdir(parents=True, exist_ok=True)
        self.cli("profile", "create", self.profile)
        servers = (
            [("fast", server_argv())]
            if self.profile == "bench"
            else [(f"list{i}", list_server_argv(i)) for i in range(LIST_SERVERS)]
        )
        for name, argv in servers:
            self.cli("server", "add", name, "--", *argv)
            self.cli("profile", "assign", self.profile, name)
        self.token = self.cli("token", "mint", self.profile).strip()
        if not self.token:
            raise RuntimeError("gigmcp token mint printed no token")

    def sut(self) -> HttpSut:
        port = procs.free_port()
        # The routing benchmark measures the gateway, not the jail (bench/jail.py does):
        # its server runs on the project interpreter, which uid 65534 cannot enter.
        argv = [self.gigmcp, "serve", "--insecure-no-sandbox", "--listen", f"127.0.0.1:{port}"]
        sut = HttpSut(f"gateway-{self.profile}", argv, port, f"/mcp/p/{self.profile}", env=self.env)
        sut.headers = [(b"authorization", f"Bearer {self.token}".encode())]
        return sut
