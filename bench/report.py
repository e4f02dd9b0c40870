"""Figures, ratios against the same run's baselines, the gateway's targets, and output.

Owns turning tallies into numbers: p50/p99 latency, operations per second, CPU-ms per
operation, peak RSS, and the ratios the targets are set on (:func:`targets`). It must
never compare across runs: every ratio is between arms measured interleaved in this run.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.runner import Tally

RESULTS = Path(__file__).resolve().parent / "results"


def percentile(sorted_values: list[int], q: float) -> float:
    """Nearest-rank percentile of an ascending list (``q`` in 0..100)."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return float(sorted_values[rank - 1])


def figures(tally: Tally) -> dict[str, Any]:
    lat = sorted(tally.latencies_ns)
    ok = len(lat)
    return {
        "ok": ok,
        "errors": tally.errors,
        "first_error": tally.first_error,
        "p50_ms": round(percentile(lat, 50) / 1e6, 4) if ok else None,
        "p99_ms": round(percentile(lat, 99) / 1e6, 4) if ok else None,
        "per_s": round(ok / (tally.wall_ns / 1e9), 1) if tally.wall_ns and ok else None,
        "cpu_ms_per_op": round(tally.cpu_ns / 1e6 / ok, 4) if ok else None,
        # The load generator's own CPU: if it nears the wall time, the client is the limit.
        "loadgen_cpu_ms_per_op": round(tally.loadgen_cpu_ns / 1e6 / ok, 4) if ok else None,
        "rss_mb": round(tally.rss_max / 2**20, 1),
        "batches": tally.batches,
    }


def _get(results: dict[str, dict[str, Any]], workload: str, arm: str, key: str) -> float | None:
    value = results.get(workload, {}).get(arm, {}).get(key)
    return float(value) if isinstance(value, int | float) else None


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 3)


SIZES = ("200B", "16KB", "1MB")
GATEWAY_ARMS = ("gateway", "gateway-legacy")


def ratios(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Ratios to the baselines of this run, per result size, for both gateway client forms."""
    out: dict[str, Any] = {}
    for gw in GATEWAY_ARMS:
        # Same client form on both sides: stateless vs stateless, session vs session.
        sdk = "sdk-modern" if gw == "gateway" else "sdk"
        for size in SIZES:
            c32, c1 = f"call/{size}/c32", f"call/{size}/c1"

            def per_s(arm: str, wl: str = c32) -> float | None:
                return _get(results, wl, arm, "per_s")

            out[f"{gw}/{size}"] = {
                f"calls_per_s_vs_{sdk}_c32": _ratio(per_s(gw), per_s(sdk)),
                "p50_added_vs_direct_c1_ms": _diff(
                    _get(results, c1, gw, "p50_ms"), _get(results, c1, "direct", "p50_ms")
                ),
                "calls_per_s_vs_supergateway_c32": _ratio(per_s(gw), per_s("supergateway")),
                "calls_per_s_vs_mcp_proxy_c32": _ratio(per_s(gw), per_s("mcp-proxy")),
                "calls_per_s_vs_fastmcp_c32": _ratio(per_s(gw), per_s("fastmcp")),
                "cpu_per_call_vs_direct_c32": _ratio(
                    _get(results, c32, gw, "cpu_ms_per_op"),
                    _get(results, c32, "direct", "cpu_ms_per_op"),
                ),
            }
        out[f"{gw}/list500"] = {
            "p50_vs_direct_sum": _ratio(
                _get(results, "list/500", gw, "p50_ms"),
                _get(results, "list/500", "direct", "p50_ms"),
            ),
        }
    return out


def _diff(a: float | None, b: float | None) -> float | None:
    if a is None or b is None:
        return None
    return round(a - b, 4)


def targets(ratio: dict[str, Any]) -> list[dict[str, Any]]:
    """The gateway's targets against the SDK, the direct call and its peers, checked on
    200 B results (the hop's own cost)."""
    checks = []
    for gw in GATEWAY_ARMS:
        r = ratio.get(f"{gw}/200B", {})
        sdk = "sdk-modern" if gw == "gateway" else "sdk"
        for name, key, bound, higher in (
            (f"{gw} calls/s ≥ 1.0x {sdk} at c=32", f"calls_per_s_vs_{sdk}_c32", 1.0, True),
            (f"{gw} p50 added ≤ 0.5 ms over direct, c=1", "p50_added_vs_direct_c1_ms", 0.5, False),
            (
                f"{gw} calls/s ≥ 2x supergateway at c=32",
                "calls_per_s_vs_supergateway_c32",
                2.0,
                True,
            ),
            (f"{gw} calls/s ≥ 5x mcp-proxy at c=32", "calls_per_s_vs_mcp_proxy_c32", 5.0, True),
        ):
            value = r.get(key)
            met = None if value is None else (value >= bound if higher else value <= bound)
            checks.append({"target": name, "value": value, "met": met})
    return checks


COLUMNS = (
    f"{'workload':<16} {'arm':<15} {'ok':>6} {'err':>4} {'p50 ms':>9} {'p99 ms':>9} "
    f"{'ops/s':>9} {'cpu ms/op':>10} {'client ms':>10} {'rss MB':>7}"
)


def table(results: dict[str, dict[str, Any]], arms: list[str]) -> str:
    lines = []
    for workload, per_arm in results.items():
        lines += ["", COLUMNS]
        for arm in arms:
            f = per_arm.get(arm)
            if f is None:
                continue
            if "unavailable" in f:
                lines.append(f"{workload:<16} {arm:<15} unavailable: {f['unavailable'][:60]}")
                continue
            lines.append(
                f"{workload:<16} {arm:<15} {f['ok']:>6} {f['errors']:>4} "
                f"{_fmt(f['p50_ms']):>9} {_fmt(f['p99_ms']):>9} {_fmt(f['per_s'], 1):>9} "
                f"{_fmt(f['cpu_ms_per_op']):>10} {_fmt(f['loadgen_cpu_ms_per_op']):>10} "
                f"{f['rss_mb']:>7}"
            )
    return "\n".join(lines)


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def save(kind: str, out: dict[str, Any], path: Path | None = None) -> Path:
    """Write a run's JSON to ``path`` or ``bench/results/<kind>-<UTC time>.json``, print
    its summary on stdout; the file's path is returned (the caller says where it went)."""
    if path is None:
        RESULTS.mkdir(parents=True, exist_ok=True)
        path = RESULTS / f"{kind}-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out["summary"], indent=2))
    return path
