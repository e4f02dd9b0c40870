"""``python -m bench.remote``: tool calls to a remote MCP server through the gateway
versus the same SDK client calling it directly, in the same run, interleaved.

The world is the remote server's end-to-end test's (tests/support/remote_world.py): the
official Python SDK's server over HTTPS as an OAuth protected resource in the egress
lab's namespace, oidc-provider as its authorization server, a jailed gateway that adds
it by URL, registers itself, and is connected in Chromium. Access tokens live 20 seconds
(refreshed 10 s after each is issued), so refreshes happen during the run, and are
counted.

Each arm is the official Python SDK client (its Streamable HTTP transport, one session
per worker, ``echo`` with a short text) at concurrency 1 and 8: through the gateway (a
profile token) or directly to the server (with the user's current access token, which
the direct arm reads again whenever the server refuses it). Reported per arm: p50, p99,
calls per second; the added p50 (gateway minus direct) and the ratio of calls per second.
Needs root (network namespaces). Results: ``bench/results/remote-<time>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import ssl
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2 as httpx

from bench import report
from bench.report import percentile

ROOT = Path(__file__).resolve().parent.parent
TTL = 20


async def _worker(session: Any, tool: str, calls: int, times: list[int]) -> None:
    for i in range(calls):
        started = time.perf_counter_ns()
        result = await session.call_tool(tool, {"text": f"x{i}"})
        if result.is_error:
            raise RuntimeError(f"a call failed: {result.content}")
        times.append(time.perf_counter_ns() - started)


class _Arm:
    """One way of calling. Each worker is a thread with an event loop and an SDK client
    session of its own (so one session's trouble on closing cannot cancel another's)."""

    def __init__(self, name: str, url: str, headers: Any, verify: Any, direct: bool) -> None:
        self.name, self.url, self.verify, self.direct = name, url, verify, direct
        self.headers = headers
        self.close_errors = 0
        self.failed_workers: list[str] = []

    def run(self, concurrency: int, calls: int) -> dict[str, Any]:
        times: list[int] = []

        def work() -> None:
            try:
                asyncio.run(self._one(calls, times))
            except BaseException as exc:  # reported with the figures, not hidden
                self.failed_workers.append(f"{type(exc).__name__}: {exc}"[:300])

        threads = [threading.Thread(target=work) for _ in range(concurrency)]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - started
        ordered = sorted(times)
        return {
            "calls": len(times),
            "p50_ms": percentile(ordered, 50) / 1e6,
            "p99_ms": percentile(ordered, 99) / 1e6,
            # Calls over the time the workers were calling (session set-up included).
            "calls_per_s": len(times) / wall if wall else None,
        }

    async def _one(self, calls: int, times: list[int]) -> None:
        from mcp.client.client import Client
        from mcp.client.streamable_http import streamable_http_client

        headers = self.headers() if callable(self.headers) else self.headers
        tool = "echo" if self.direct else "remote_echo"
        async with httpx.AsyncClient(headers=headers, verify=self.verify, timeout=30) as http:
            stack = contextlib.AsyncExitStack()
            session = await stack.enter_async_context(
                Client(streamable_http_client(self.url, http_client=http), mode="auto")
            )
            await _worker(session, tool, calls, times)
            try:
                await stack.aclose()
            except Exception:  # the calls are measured; a session that ends badly is counted
                self.close_errors += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200, help="calls per worker per round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per arm")
    parser.add_argument("--quick", action="store_true", help="40 calls, 2 rounds")
    args = parser.parse_args()
    if args.quick:
        args.calls, args.rounds = 40, 2

    from tests.support.remote_world import MCP_URL, connect_in_browser, remote_world, signed_in

    tmp = Path(tempfile.mkdtemp(prefix="gigbench-remote-"))
    with remote_world(tmp, TTL) as w:
        client, headers = signed_in(w)
        r = client.post(
            "/api/v1/remote-servers", json={"name": "remote", "url": MCP_URL}, headers=headers
        )
        if r.status_code != 201:
            raise SystemExit(f"adding the remote server failed: {r.text}")
        w.g.profile("work", "remote")
        connect_in_browser(w)

        def bearer() -> dict[str, str]:
            return {"Authorization": f"Bearer {w.state().access.decode()}"}  # type: ignore[union-attr]

        insecure = ssl.create_default_context()
        insecure.check_hostname, insecure.verify_mode = False, ssl.CERT_NONE
        arms = [
            _Arm("gateway", w.g.url("work"), {"Authorization": f"Bearer {w.g.tokens['work']}"}, True, False),
            # Directly: the address the lab gives the name (this process does not ask the
            # lab's DNS), the name as Host (the server checks it); TLS without the name
            # check, which costs the same.
            _Arm("direct", MCP_URL.replace("mcp.example.test", "11.0.0.4"),
                 lambda: {**bearer(), "Host": "mcp.example.test"}, insecure, True),
        ]  # fmt: skip
        before = w.refreshes()
        started = time.monotonic()
        results: dict[str, dict[str, list[dict[str, Any]]]] = {}
        for _round in range(args.rounds):
            for concurrency in (1, 8):
                for arm in arms:
                    figures = arm.run(concurrency, args.calls)
                    results.setdefault(f"c{concurrency}", {}).setdefault(arm.name, []).append(
                        figures
                    )
                    print(f"c={concurrency} {arm.name}: {figures}", file=sys.stderr)
        elapsed = time.monotonic() - started
        refreshes = w.refreshes() - before
        close_errors = {arm.name: arm.close_errors for arm in arms}
        failed = {arm.name: arm.failed_workers for arm in arms}

    # Paired by round (each round runs both arms back to back, so the machine's mood of
    # the moment weighs on both): the median over rounds of each figure and each ratio.
    summary: dict[str, Any] = {}
    for workload, by_arm in results.items():
        gw, direct = by_arm["gateway"], by_arm["direct"]
        summary[workload] = {
            "gateway_p50_ms": statistics.median(f["p50_ms"] for f in gw),
            "direct_p50_ms": statistics.median(f["p50_ms"] for f in direct),
            "gateway_calls_per_s": statistics.median(f["calls_per_s"] for f in gw),
            "direct_calls_per_s": statistics.median(f["calls_per_s"] for f in direct),
            "added_p50_ms": statistics.median(
                g["p50_ms"] - d["p50_ms"] for g, d in zip(gw, direct, strict=True)
            ),
            "calls_per_s_ratio": statistics.median(
                g["calls_per_s"] / d["calls_per_s"] for g, d in zip(gw, direct, strict=True)
            ),
        }
    out = {
        "benchmark": "remote",
        "when": datetime.now(UTC).isoformat(),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "settings": {"calls": args.calls, "rounds": args.rounds, "token_ttl_s": TTL},
        "refreshes_during_run": refreshes,
        # SDK client sessions whose closing failed (after their calls were measured).
        "session_close_errors": close_errors,
        "failed_workers": failed,
        "run_seconds": round(elapsed, 1),
        "summary": summary,
        "rounds": results,
    }
    path = report.save("remote", out)
    print(f"refreshes during the run: {refreshes}; results: {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
