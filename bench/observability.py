"""``python -m bench.observability``: what metrics and tracing add to a tool call, as a
ratio to the same gateway with both off, measured in the same run, interleaved.

Three gateways with the same profile and the same fast stdio server
(bench/servers/fast_server.py, run unjailed: the jail is not what is measured here):
``off`` (the default), ``metrics`` (``GIG_METRICS_LISTEN``), and ``metrics+tracing``
(also ``GIG_OTLP_ENDPOINT``, exporting every span to the tests' OTLP/HTTP receiver,
tests/support/otlp.py, which decodes each batch as a collector would, in a process of
its own). The load is the
harness's lean h11 client (bench/http_client.py): stateless 2026-07-28 ``tools/call``
of ``blob`` (64 bytes, every answer checked) on keep-alive connections, at concurrency
1 and 8; each round runs the three arms back to back in a rotating order.

Reported per arm and concurrency (median over rounds): p50, p99 and calls per second;
and each arm's ratio to ``off`` of the same round (p50, p99, calls per second). At the
end the metrics are scraped and the spans counted, so the figures are known to come
from gateways that did record every call. Results: ``bench/results/observability-<time>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import report, wire
from bench.http_client import Connection, Endpoint, McpClient
from bench.report import percentile

ROOT = Path(__file__).resolve().parent.parent
FAST = (sys.executable, str(ROOT / "bench" / "servers" / "fast_server.py"))
ARMS = ("off", "metrics", "metrics+tracing")
SIZE = 64


class _Arm:
    def __init__(self, name: str, port: int, token: str) -> None:
        self.name = name
        self.endpoint = Endpoint("127.0.0.1", port, "/mcp/p/bench",
                                 [(b"authorization", f"Bearer {token}".encode())])  # fmt: skip
        self.calls = 0
        self.errors: list[str] = []

    async def run(self, concurrency: int, calls: int) -> dict[str, Any]:
        times: list[int] = []
        ids = wire.Ids()

        async def worker() -> None:
            conn = Connection(self.endpoint)
            client = McpClient(self.endpoint, ids, modern=True)
            try:
                for _ in range(calls):
                    call = wire.Call(ids(), "fast_blob", SIZE, wire.nonce())
                    started = time.perf_counter_ns()
                    try:
                        await asyncio.wait_for(client.call(conn, call), 30)
                    except Exception as exc:  # counted and reported, never hidden
                        self.errors.append(f"{type(exc).__name__}: {exc}"[:300])
                        continue
                    times.append(time.perf_counter_ns() - started)
            finally:
                await conn.close()

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - started
        self.calls += len(times)
        ordered = sorted(times)
        return {
            "calls": len(times),
            "p50_ms": percentile(ordered, 50) / 1e6,
            "p99_ms": percentile(ordered, 99) / 1e6,
            "calls_per_s": len(times) / wall if wall else None,
        }


def _receive(port: Any, spans: Any, stop: Any) -> None:
    """The OTLP receiver, in a process of its own: decoding batches must not take the
    load generator's CPU (and its GIL) in the middle of a measured call."""
    from tests.support.otlp import receiver

    with receiver() as rx:
        port.value = rx.port
        while not stop.wait(0.1):
            spans.value = len(rx.snapshot())
        spans.value = len(rx.snapshot())


class _Receiver:
    def __init__(self) -> None:
        ctx = multiprocessing.get_context("fork")  # before any thread of ours starts
        self._port, self.spans, self._stop = ctx.Value("i", 0), ctx.Value("q", 0), ctx.Event()
        self._proc = ctx.Process(target=_receive, args=(self._port, self.spans, self._stop))
        self._proc.start()
        deadline = time.monotonic() + 10
        while not self._port.value and time.monotonic() < deadline:
            time.sleep(0.05)
        self.endpoint = f"http://127.0.0.1:{self._port.value}"

    def close(self) -> None:
        self._stop.set()
        self._proc.join(10)


@contextlib.contextmanager
def _gateways(tmp: Path) -> Iterator[tuple[dict[str, _Arm], _Receiver, dict[str, str]]]:
    from tests.support.gateway import free_port, gateway

    with contextlib.ExitStack() as stack:
        rx = _Receiver()
        stack.callback(rx.close)
        arms: dict[str, _Arm] = {}
        metrics: dict[str, str] = {}
        for name in ARMS:
            env: dict[str, str] = {}
            if name != "off":
                metrics[name] = env["GIG_METRICS_LISTEN"] = f"127.0.0.1:{free_port()}"
            if name == "metrics+tracing":
                env["GIG_OTLP_ENDPOINT"] = rx.endpoint
            folder = tmp / name.replace("+", "-")
            folder.mkdir()
            g = stack.enter_context(gateway(folder))
            g.add_server("fast", FAST)
            token = g.profile("bench", "fast")
            g.start(**env)
            arms[name] = _Arm(name, g.port, token)
        yield arms, rx, metrics


def _summary(results: dict[str, dict[str, list[dict[str, Any]]]]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for workload, by_arm in results.items():
        off = by_arm["off"]
        entry: dict[str, Any] = {}
        for name in ARMS:
            rounds = by_arm[name]
            figures: dict[str, Any] = {
                "p50_ms": statistics.median(f["p50_ms"] for f in rounds),
                "p99_ms": statistics.median(f["p99_ms"] for f in rounds),
                "calls_per_s": statistics.median(f["calls_per_s"] for f in rounds),
            }
            if name != "off":
                # Paired by round: the machine's mood of the moment weighs on both.
                pairs = list(zip(rounds, off, strict=True))
                figures["p50_ratio"] = statistics.median(
                    a["p50_ms"] / b["p50_ms"] for a, b in pairs
                )
                figures["p99_ratio"] = statistics.median(
                    a["p99_ms"] / b["p99_ms"] for a, b in pairs
                )
                figures["calls_per_s_ratio"] = statistics.median(
                    a["calls_per_s"] / b["calls_per_s"] for a, b in pairs
                )
                figures["added_p50_us"] = statistics.median(
                    (a["p50_ms"] - b["p50_ms"]) * 1000 for a, b in pairs
                )
            entry[name] = figures
        summary[workload] = entry
    return summary


async def _measure(arms: dict[str, _Arm], calls: int, rounds: int) -> dict[str, Any]:
    order = list(ARMS)
    for arm in arms.values():  # warm-up: instances started, caches filled, not measured
        await arm.run(2, 50)
        arm.calls = 0
    results: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for r in range(rounds):
        for concurrency in (1, 8):
            # The order rotates every round, so no arm always runs first or last.
            for name in order[r % 3 :] + order[: r % 3]:
                figures = await arms[name].run(concurrency, calls)
                results.setdefault(f"c{concurrency}", {}).setdefault(name, []).append(figures)
                print(f"round {r + 1} c={concurrency} {name}: {figures}", file=sys.stderr)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=1000, help="calls per worker per round")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--quick", action="store_true", help="200 calls, 3 rounds")
    args = parser.parse_args()
    if args.quick:
        args.calls, args.rounds = 200, 3

    from tests.support.scrape import scrape, total

    tmp = Path(tempfile.mkdtemp(prefix="gigbench-obs-"))
    started = time.monotonic()
    with _gateways(tmp) as (arms, rx, metrics):
        results = asyncio.run(_measure(arms, args.calls, args.rounds))
        # Proof of work: each instrumented gateway counted every call, and the tracing
        # one exported a span per request and per forwarded call.
        counted = {name: total(scrape(address), "gigmcp_tool_calls_total", outcome="ok")
                   for name, address in metrics.items()}  # fmt: skip
        deadline = time.monotonic() + 15
        expected_spans = 2 * (arms["metrics+tracing"].calls + 100)
        while rx.spans.value < expected_spans and time.monotonic() < deadline:
            time.sleep(0.2)
        spans = rx.spans.value
        made = {name: arm.calls for name, arm in arms.items()}
        errors = {name: arm.errors[:5] for name, arm in arms.items() if arm.errors}
    out = {
        "benchmark": "observability",
        "when": datetime.now(UTC).isoformat(),
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_avg": os.getloadavg(),
        },
        "settings": {
            "calls": args.calls,
            "rounds": args.rounds,
            "size": SIZE,
            "workload": "tools/call, 2026-07-28 stateless, h11 keep-alive",
        },
        "run_seconds": round(time.monotonic() - started, 1),
        "measured_calls": made,
        # Warm-up calls (100 per gateway) included in what the gateways counted.
        "tool_calls_counted_by_metrics": counted,
        "spans_received": spans,
        "errors": errors,
        "summary": _summary(results),
        "rounds": results,
    }
    print(f"results: {report.save('observability', out)}", file=sys.stderr)


if __name__ == "__main__":
    main()
