"""``python -m bench``: run the routing benchmark and write ``bench/results/<time>.json``.

Owns the run: which arms, which workloads, in what interleaved order, for how long, and
the clean-up of every process, namespace and temp dir it made — on success, on error and
on Ctrl-C or SIGTERM alike. It must never send traffic beyond loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import arms as A
from bench import netns, procs, report, wire
from bench.runner import Tally, Workload, run_batch

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
ALL_ARMS = (
    "direct",
    "sdk",
    "sdk-modern",
    "gateway",
    "gateway-legacy",
    "mcp-proxy",
    "supergateway",
    "fastmcp",
)
SIZES = {"200B": 200, "16KB": 16 * 1024, "1MB": 1024 * 1024}
CONCURRENCY = (1, 8, 32)


@dataclass(frozen=True)
class Plan:
    reps: int
    calls: dict[str, int]  # per batch, by result size
    churn: int
    lists: int
    time_limit: float  # per batch, seconds
    op_timeout: float


QUICK = Plan(
    reps=1,
    calls={"200B": 150, "16KB": 120, "1MB": 16},
    churn=6,
    lists=8,
    time_limit=3.0,
    op_timeout=20.0,
)
FULL = Plan(
    reps=3,
    calls={"200B": 800, "16KB": 600, "1MB": 60},
    churn=30,
    lists=40,
    time_limit=20.0,
    op_timeout=30.0,
)


def workloads(plan: Plan, kinds: set[str]) -> list[Workload]:
    out: list[Workload] = []
    if "call" in kinds:
        for label, size in SIZES.items():
            for c in CONCURRENCY:
                # Enough operations that every worker has several, whatever the size.
                count = max(plan.calls[label], 4 * c)
                out.append(Workload(f"call/{label}/c{c}", "call", size, c, count))
    if "list" in kinds:
        out.append(Workload("list/500", "list", 0, 1, plan.lists))
    if "churn" in kinds:
        out.append(Workload("churn", "churn", 0, 1, plan.churn))
    return out


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.plan = QUICK if args.quick else FULL
        if args.reps:
            self.plan = Plan(**{**self.plan.__dict__, "reps": args.reps})
        self.loadgen_cpus, self.sut_cpus = procs.cpu_split()
        if args.no_pin:
            self.loadgen_cpus = self.sut_cpus = set(os.sched_getaffinity(0))
        self.work = Path(tempfile.mkdtemp(prefix="gigbench-"))
        self.ctx = A.Context(sut_cpus=self.sut_cpus, ids=wire.Ids(), work=self.work)
        self.suts: list[A.HttpSut] = []
        self.arms: list[A.Arm] = []
        self.unavailable: dict[str, str] = {}
        self.notes: list[str] = []
        self.kinds = set(args.workloads.split(","))

    # -- set-up ------------------------------------------------------------------------

    def _start_sut(self, sut: A.HttpSut, names: list[str]) -> bool:
        try:
            self.suts.append(sut)
            sut.start(self.ctx)
            return True
        except Exception as exc:
            for name in names:
                self.unavailable[name] = f"{sut.name} did not start: {exc}"
            return False

    def build(self, wanted: list[str]) -> None:
        ctx = self.ctx
        if "direct" in wanted:
            self.arms.append(A.DirectArm(ctx))
        if {"sdk", "sdk-modern"} & set(wanted):
            sut = A.sdk_sut(ctx)
            if self._start_sut(sut, ["sdk", "sdk-modern"]):
                if "sdk" in wanted:
                    desc = "Python SDK Streamable HTTP, legacy session"
                    self.arms.append(A.HttpArm(ctx, sut, "sdk", desc, False))
                if "sdk-modern" in wanted:
                    desc = "Python SDK Streamable HTTP, 2026-07-28 stateless"
                    self.arms.append(A.HttpArm(ctx, sut, "sdk-modern", desc, True))
        if {"gateway", "gateway-legacy"} & set(wanted):
            self._build_gateway(wanted)
        for name, factory, desc in (
            ("mcp-proxy", A.mcp_proxy_sut, "mcp-proxy (PyPI), legacy session"),
            ("supergateway", A.supergateway_sut, "supergateway --stateful (npm), own netns"),
            ("fastmcp", A.fastmcp_sut, "FastMCP create_proxy (PyPI), legacy session"),
        ):
            if name not in wanted:
                continue
            try:
                sut = factory(ctx)
            except Exception as exc:
                self.unavailable[name] = str(exc)
                continue
            if self._start_sut(sut, [name]):
                self.arms.append(A.HttpArm(ctx, sut, name, desc, False))

    def _build_gateway(self, wanted: list[str]) -> None:
        names: list[str] = [n for n in ("gateway", "gateway-legacy") if n in wanted]
        suts: dict[str, A.HttpSut] = {}
        for profile in ("bench", "list") if "list" in self.kinds else ("bench",):
            setup = A.GatewaySetup(self.ctx, profile)
            try:
                setup.configure()
                sut = setup.sut()
            except Exception as exc:
                if profile == "bench":
                    for name in names:
                        self.unavailable[name] = f"set-up through the CLI failed: {exc}"
                    return
                self.notes.append(f"gateway listing unavailable: {exc}")
                continue
            if self._start_sut(sut, names if profile == "bench" else []):
                suts[profile] = sut
            elif profile == "bench":
                return
            else:
                self.notes.append("gateway listing unavailable: its gateway did not start")
        list_sut = suts.get("list")
        list_ep = list_sut.endpoint() if list_sut else suts["bench"].endpoint()
        for name in names:
            modern = name == "gateway"
            desc = "gigmcp serve, " + ("2026-07-28 stateless" if modern else "legacy session")
            bench = suts["bench"]
            self.arms.append(
                A.GatewayArm(
                    self.ctx, bench, name, desc, modern, bench.endpoint(), list_sut, list_ep
                )
            )

    async def open_arms(self) -> None:
        kept = []
        for arm in self.arms:
            try:
                await asyncio.wait_for(arm.start(), 60)
                if isinstance(arm, A.DirectArm) and "list" in self.kinds:
                    await asyncio.wait_for(arm.start_list(), 60)
                kept.append(arm)
            except Exception as exc:
                self.unavailable[arm.name] = f"could not open a client: {type(exc).__name__}: {exc}"
                with contextlib.suppress(Exception):
                    await arm.stop()
        self.arms = kept

    async def warm_up(self) -> None:
        """A few operations per arm so imports, JITs, connection pools and the gateway's
        start-on-first-use servers are warm before timing."""
        for arm in self.arms:
            with contextlib.suppress(Exception):
                await run_batch(arm, Workload("warm", "call", 200, 8, 40), Tally(), 10, 20)
                await run_batch(arm, Workload("warm", "call", 2**20, 2, 4), Tally(), 10, 20)
                if "list" in self.kinds and arm.supports_list:
                    await run_batch(arm, Workload("warm", "list", 0, 1, 2), Tally(), 30, 30)

    # -- the run -------------------------------------------------------------------------

    async def run(self) -> dict[str, Any]:
        wanted = [a for a in self.args.arms.split(",") if a]
        unknown = set(wanted) - set(ALL_ARMS)
        if unknown:
            raise SystemExit(
                f"unknown arms: {', '.join(sorted(unknown))} (known: {', '.join(ALL_ARMS)})"
            )
        procs.pin_self(self.loadgen_cpus)
        for stale in netns.sweep_stale():
            print(f"bench: removed the namespace {stale} left by a killed run", file=sys.stderr)
        started = time.monotonic()
        await asyncio.to_thread(self.build, wanted)
        await self.open_arms()
        await self.warm_up()
        plan = self.plan
        tallies: dict[str, dict[str, Tally]] = {}
        for rep in range(plan.reps):
            for wl in workloads(plan, self.kinds):
                arms = [a for a in self.arms if wl.kind != "list" or a.supports_list]
                # Rotate who goes first each repetition: no arm always runs right after another.
                shift = rep % len(arms) if arms else 0
                for arm in arms[shift:] + arms[:shift]:
                    tally = tallies.setdefault(wl.key, {}).setdefault(arm.name, Tally())
                    # A churn operation may start a process: give its batches more room.
                    limit = plan.time_limit * (3 if wl.kind == "churn" else 1)
                    await run_batch(arm, wl, tally, limit, plan.op_timeout)
                    self.progress(wl.key, arm.name, tally)
        elapsed = time.monotonic() - started
        return self.assemble(tallies, elapsed, wanted)

    def progress(self, key: str, arm: str, tally: Tally) -> None:
        if self.args.verbose:
            print(
                f"  {key:<16} {arm:<15} ok={len(tally.latencies_ns)} err={tally.errors}",
                file=sys.stderr,
            )

    def assemble(
        self, tallies: dict[str, dict[str, Tally]], elapsed: float, wanted: list[str]
    ) -> dict[str, Any]:
        results: dict[str, dict[str, Any]] = {}
        for key, per_arm in tallies.items():
            results[key] = {name: report.figures(t) for name, t in per_arm.items()}
            for name, why in self.unavailable.items():
                results[key][name] = {"unavailable": why}
        ratio = report.ratios(results)
        return {
            "meta": self.meta(elapsed),
            "arms": {a.name: a.description for a in self.arms}
            | {n: f"unavailable: {w}" for n, w in self.unavailable.items()},
            "plan": self.plan.__dict__,
            "results": results,
            "ratios": ratio,
            "targets": report.targets(ratio),
            "notes": self.notes,
            "errors_total": sum(t.errors for per in tallies.values() for t in per.values()),
            "order": wanted,
        }

    def meta(self, elapsed: float) -> dict[str, Any]:
        def run(*argv: str) -> str:
            try:
                return subprocess.run(
                    argv, capture_output=True, text=True, timeout=10, cwd=ROOT
                ).stdout.strip()
            except (OSError, subprocess.SubprocessError):
                return ""

        cpu_model = ""
        with contextlib.suppress(OSError):
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    cpu_model = line.split(":", 1)[1].strip()
                    break
        return {
            "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "quick": bool(self.args.quick),
            "elapsed_s": round(elapsed, 1),
            "git_commit": run("git", "rev-parse", "HEAD"),
            "python": platform.python_version(),
            "node": run("node", "--version"),
            "kernel": platform.release(),
            "cpu_model": cpu_model,
            "cpus_online": os.cpu_count(),
            "loadgen_cpus": sorted(self.loadgen_cpus),
            "sut_cpus": sorted(self.sut_cpus),
            "peers": peer_versions(),
        }

    # -- clean-up ------------------------------------------------------------------------

    async def close(self) -> None:
        for arm in self.arms:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(arm.stop(), 15)
        for sut in self.suts:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(sut.stop)

    def cleanup(self, keep_logs: bool) -> None:
        procs.stop_all()
        for sut in self.suts:
            if sut.ns is not None:
                sut.ns.delete()
        if keep_logs:
            print(f"bench: logs kept in {self.work}", file=sys.stderr)
        else:
            shutil.rmtree(self.work, ignore_errors=True)


def peer_versions() -> dict[str, str]:
    """Pinned versions as installed by scripts/bench (from the pin files, not guessed)."""
    versions: dict[str, str] = {}
    pins = ROOT / "bench" / "peers"
    for pin, pkg, label in (
        ("mcp-proxy.txt", "mcp-proxy", "mcp-proxy"),
        ("mcp-proxy.txt", "mcp", "mcp (in mcp-proxy's venv)"),
        ("fastmcp.txt", "fastmcp", "fastmcp"),
        ("fastmcp.txt", "mcp", "mcp (in fastmcp's venv)"),
    ):
        with contextlib.suppress(OSError):
            for line in (pins / pin).read_text().splitlines():
                if line.lower().startswith(pkg + "=="):
                    versions[label] = line.split("==", 1)[1]
    with contextlib.suppress(OSError, ValueError):
        lock = json.loads((pins / "npm" / "package-lock.json").read_text())
        versions["supergateway"] = lock["packages"]["node_modules/supergateway"]["version"]
    with contextlib.suppress(Exception):
        from importlib.metadata import version

        versions["mcp (project, sdk arm and benchmark server)"] = version("mcp")
    return versions


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Gig'MCP benchmark: the gateway against the direct stdio call, "
        "the SDK's own Streamable HTTP transport, mcp-proxy, supergateway and FastMCP's proxy.",
    )
    add = parser.add_argument
    add("--quick", action="store_true", help="small counts, one repetition (under two minutes)")
    add("--reps", type=int, default=0, help="repetitions (default: 1 quick, 3 full)")
    add(
        "--arms",
        default=",".join(ALL_ARMS),
        help=f"comma-separated subset of: {','.join(ALL_ARMS)}",
    )
    add("--workloads", default="call,list,churn", help="comma-separated subset of: call,list,churn")
    add("--out", type=Path, help="result file (default bench/results/<UTC time>.json)")
    add("--no-pin", action="store_true", help="do not pin load generator and SUT to separate cores")
    add("--keep-logs", action="store_true", help="keep the logs and data dirs of the SUTs")
    add("-v", "--verbose", action="store_true", help="print each batch as it ends")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    bench = Bench(args)

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    failed = True
    try:
        result = asyncio.run(_run(bench))
        failed = False
    except KeyboardInterrupt:
        print("bench: interrupted; cleaning up", file=sys.stderr)
        return 130
    finally:
        bench.cleanup(keep_logs=args.keep_logs or failed)
    out = args.out or RESULTS / (time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + ".json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, sort_keys=False) + "\n")
    print(report.table(result["results"], list(ALL_ARMS)))
    print("\nratios to this run's baselines:")
    for tag, entry in result["ratios"].items():
        shown = ", ".join(f"{k}={v}" for k, v in entry.items() if v is not None)
        if shown:
            print(f"  {tag}: {shown}")
    print("\ntargets (200 B results):")
    for check in result["targets"]:
        mark = {True: "met", False: "MISSED", None: "n/a"}[check["met"]]
        print(f"  [{mark:>6}] {check['target']}: {check['value']}")
    for name, why in bench.unavailable.items():
        print(f"  unavailable: {name}: {why}")
    print(f"\nbench: {result['errors_total']} errors; results in {out}")
    return 1 if result["errors_total"] else 0


async def _run(bench: Bench) -> dict[str, Any]:
    try:
        return await bench.run()
    finally:
        await bench.close()


if __name__ == "__main__":
    sys.exit(main())
