"""Bring a freshly launched server to a usable connection: probe, then handshake.

A dual-era client probes with ``server/discover`` (stdio backward-compatibility rule of
2026-07-28): a discover result, or an unsupported-version error naming a version we
speak, means a modern server; any other error or silence means a legacy server, which
gets ``initialize`` + ``notifications/initialized``. The gateway advertises the client
capabilities it can bridge, because some servers only offer tools to clients that can
sample or elicit. A failed handshake kills the process; it never returns half a connection.
"""

from __future__ import annotations

import asyncio
import contextlib

from gigmcp.core.instances import InstanceKey
from gigmcp.core.jsontypes import JSON
from gigmcp.errors import LaunchError
from gigmcp.mcp import jsonrpc as rpc
from gigmcp.mcp import versions as v
from gigmcp.upstream.connection import StdioUpstream, WireLimits
from gigmcp.upstream.transport import Transport
from gigmcp.upstream.types import UpstreamClosed, UpstreamPeer

# Legacy servers answer the probe at once with an error; silence is rare. A short probe
# timeout misfires on a server still importing its modules on a loaded machine: it then
# answers the probe late, locks itself into the modern protocol and refuses initialize.
PROBE_SHARE = 0.5
LEGACY_CAPABILITIES: JSON = {
    "roots": {"listChanged": True},
    "sampling": {},
    "elicitation": {"form": {}, "url": {}},
}


class StartError(LaunchError):
    """A server could not be started or did not complete its handshake."""


async def connect(
    transport: Transport,
    key: InstanceKey,
    peer: UpstreamPeer,
    *,
    client_info: JSON,
    timeout: float,
    limits: WireLimits | None = None,
) -> StdioUpstream:
    conn = StdioUpstream(transport, key, peer, client_info=client_info, limits=limits)
    try:
        async with asyncio.timeout(timeout):
            if not await _try_modern(conn, client_info, timeout * PROBE_SHARE):
                await _initialize(conn, client_info)
        return conn
    except (TimeoutError, UpstreamClosed, rpc.RpcError, KeyError, TypeError) as exc:
        await conn.close()
        transport.kill()
        status = None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2):
                status = await transport.wait()
        why = "no answer to the handshake" if isinstance(exc, TimeoutError) else str(exc)
        if status is not None:
            why += f" (process {_describe_exit(status)})"
        raise StartError(f"{key.server_name}: {why}") from exc


async def _try_modern(conn: StdioUpstream, client_info: JSON, probe_timeout: float) -> bool:
    for version in v.MODERN_VERSIONS:
        params: JSON = {
            "_meta": {
                v.META_PROTOCOL_VERSION: version,
                v.META_CLIENT_INFO: client_info,
                v.META_CLIENT_CAPABILITIES: {},
            }
        }
        try:
            response = await conn.request("server/discover", params).wait(probe_timeout)
        except TimeoutError:
            return False
        result = response.get("result")
        if isinstance(result, dict) and isinstance(result.get("supportedVersions"), list):
            supported = [s for s in result["supportedVersions"] if v.is_modern(s)]
            if not supported:
                return False
            conn.era = "modern"
            conn.protocol_version = supported[0] if version not in supported else version
            caps = result.get("capabilities")
            conn.capabilities = caps if isinstance(caps, dict) else {}
            meta = result.get("_meta") or {}
            info = meta.get(v.META_SERVER_INFO) if isinstance(meta, dict) else None
            conn.server_info = info if isinstance(info, dict) else {}
            instructions = result.get("instructions")
            conn.instructions = instructions if isinstance(instructions, str) else None
            return True
        err = response.get("error")
        if isinstance(err, dict) and err.get("code") == rpc.UNSUPPORTED_PROTOCOL_VERSION:
            data = err.get("data") or {}
            offered = [s for s in data.get("supported", []) if v.is_modern(s)]
            if not offered:
                return False
            continue
        return False
    return False


async def _initialize(conn: StdioUpstream, client_info: JSON) -> None:
    params: JSON = {
        "protocolVersion": v.LEGACY_VERSIONS[0],
        "capabilities": LEGACY_CAPABILITIES,
        "clientInfo": client_info,
    }
    response = await conn.request("initialize", params).wait(None)
    if "error" in response:
        err = response["error"]
        raise rpc.RpcError(
            int(err.get("code", -32603)), f"initialize refused: {err.get('message')}"
        )
    result = response["result"]
    version = result.get("protocolVersion")
    if not isinstance(version, str) or not v.is_legacy(version):
        raise rpc.RpcError(rpc.INVALID_REQUEST, f"server chose unsupported version {version!r}")
    conn.era = "legacy"
    conn.protocol_version = version
    caps = result.get("capabilities")
    conn.capabilities = caps if isinstance(caps, dict) else {}
    info = result.get("serverInfo")
    conn.server_info = info if isinstance(info, dict) else {}
    instructions = result.get("instructions")
    conn.instructions = instructions if isinstance(instructions, str) else None
    conn.notify("notifications/initialized", None)


def _describe_exit(status: int) -> str:
    return f"killed by signal {-status}" if status < 0 else f"exited with code {status}"
