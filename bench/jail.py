"""Benchmark of the sandbox: jail + network set-up, cold first call, density.

Owns three measurements, each reported as ratios to a baseline taken in the same run:

- set-up: from ``launch()`` to the first byte echoed back by ``/bin/cat`` in the jail,
  from nothing (no pool) and with a pool of ready namespaces; baselines: the same cat
  spawned bare, and bare ``bwrap`` with no network or cgroup (the floor);
- cold first call: launch → initialize → tools/call answered, for a Node server
  (server-everything) and a Python one (mcp-server-time), jailed versus bare;
- density: N idle jailed Node servers (server-memory): memory and kernel objects per
  instance beyond the server process itself, and what that allows on this machine.

Run as root: ``./scripts/bench-sandbox [--quick]``; results go to bench/results/ as
JSON. It must never leave an instance, namespace or cgroup behind, also when it fails.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from gigmcp.core.instances import InstanceKey
from gigmcp.core.launch import JailLimits, LaunchedProcess, LaunchSpec
from gigmcp.sandbox import cgroups
from gigmcp.sandbox.launcher import SandboxConfig, SandboxLauncher
from gigmcp.supervisor.launcher import PlainLauncher

ROOT = Path(__file__).resolve().parent.parent
PEERS = ROOT / "tests" / "peers"
EVERYTHING = (
    "/usr/bin/node",
    str(PEERS / "node_modules/@modelcontextprotocol/server-everything/dist/index.js"),
)
MEMORY = (
    "/usr/bin/node",
    str(PEERS / "node_modules/@modelcontextprotocol/server-memory/dist/index.js"),
)
TIME = (str(PEERS / "pyvenv" / "bin" / "mcp-server-time"),)
SUBNET = "10.213.0.0/20"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, max(0, int(round(q / 100 * len(ordered))) - 1))], 3)


def summary(ms: list[float]) -> dict[str, float]:
    return {
        "n": len(ms),
        "p50_ms": pct(ms, 50),
        "p99_ms": pct(ms, 99),
        "mean_ms": round(statistics.fmean(ms), 3),
    }


async def _echo_once(proc: LaunchedProcess) -> None:
    proc.stdin.write(b"x\n")
    await proc.stdin.drain()
    line = await proc.stdout.readline()
    if line != b"x\n":
        raise RuntimeError(f"cat answered {line!r}")


async def _stop(proc: LaunchedProcess) -> None:
    proc.kill()
    await proc.wait()
    await proc.cleanup()


async def setup_times(runs: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    plain = PlainLauncher()
    # Interleaved, so that machine noise hits every arm alike.
    arms: dict[str, list[float]] = {
        "bare_cat": [],
        "bare_bwrap": [],
        "jail_cold": [],
        "jail_pooled": [],
        "jail_cold_userns": [],
        "jail_pooled_userns": [],
    }
    cold = SandboxLauncher(SandboxConfig(subnet=SUBNET, pool_size=0))
    await cold.start()
    # Userns mode (no CAP_SYS_ADMIN, sandbox/holder.py) is measured in the same loop but
    # cannot share the host-wide sandbox network with the root-mode launcher: it gets
    # turns of its own, after it.
    try:
        key = InstanceKey(1, "cat")
        for _ in range(runs):
            t = time.perf_counter()
            p = await plain.launch(LaunchSpec(key, ("/bin/cat",)))
            await _echo_once(p)
            arms["bare_cat"].append((time.perf_counter() - t) * 1e3)
            await _stop(p)

            t = time.perf_counter()
            bw = await asyncio.create_subprocess_exec(
                "/usr/bin/bwrap", "--unshare-all", "--ro-bind", "/usr", "/usr",
                "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64",
                "--proc", "/proc", "--dev", "/dev", "--die-with-parent", "--", "/usr/bin/cat",
                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            )  # fmt: skip
            assert bw.stdin is not None and bw.stdout is not None
            bw.stdin.write(b"x\n")
            await bw.stdin.drain()
            await bw.stdout.readline()
            arms["bare_bwrap"].append((time.perf_counter() - t) * 1e3)
            bw.kill()
            await bw.wait()

            t = time.perf_counter()
            p = await cold.launch(LaunchSpec(key, ("/bin/cat",)))
            await _echo_once(p)
            arms["jail_cold"].append((time.perf_counter() - t) * 1e3)
            await _stop(p)
    finally:
        await cold.aclose()
    cold_userns = SandboxLauncher(SandboxConfig(subnet=SUBNET, pool_size=0, mode="userns"))
    await cold_userns.start()
    try:
        for _ in range(runs):
            t = time.perf_counter()
            p = await cold_userns.launch(LaunchSpec(InstanceKey(1, "cat"), ("/bin/cat",)))
            await _echo_once(p)
            arms["jail_cold_userns"].append((time.perf_counter() - t) * 1e3)
            await _stop(p)
    finally:
        await cold_userns.aclose()
    for mode, arm in (("root", "jail_pooled"), ("userns", "jail_pooled_userns")):
        pooled = SandboxLauncher(SandboxConfig(subnet=SUBNET, pool_size=4, mode=mode))
        await pooled.start()
        try:
            for _ in range(runs):
                while len(pooled._zygotes) < pooled.config.pool_size:
                    await asyncio.sleep(0.005)  # a pool refills between cold starts
                t = time.perf_counter()
                p = await pooled.launch(LaunchSpec(InstanceKey(1, "cat"), ("/bin/cat",)))
                await _echo_once(p)
                arms[arm].append((time.perf_counter() - t) * 1e3)
                await _stop(p)
        finally:
            await pooled.aclose()
    for name, ms in arms.items():
        out[name] = summary(ms)
    base = out["bare_cat"]["p50_ms"]
    out["ratios"] = {
        "jail_cold_p50_over_bare_cat": round(out["jail_cold"]["p50_ms"] / base, 2),
        "jail_pooled_p50_over_bare_cat": round(out["jail_pooled"]["p50_ms"] / base, 2),
        "jail_cold_userns_p50_over_bare_cat": round(out["jail_cold_userns"]["p50_ms"] / base, 2),
        "jail_pooled_userns_p50_over_bare_cat": round(
            out["jail_pooled_userns"]["p50_ms"] / base, 2
        ),
        "jail_cold_p50_over_bare_bwrap": round(
            out["jail_cold"]["p50_ms"] / out["bare_bwrap"]["p50_ms"], 2
        ),
        "jail_pooled_p50_over_bare_bwrap": round(
            out["jail_pooled"]["p50_ms"] / out["bare_bwrap"]["p50_ms"], 2
        ),
    }
    out["targets"] = {
        "cold_p50_le_25ms": out["jail_cold"]["p50_ms"] <= 25,
        "pooled_p50_le_10ms": out["jail_pooled"]["p50_ms"] <= 10,
    }
    return out


def _rpc(msg_id: int, method: str, params: dict[str, Any]) -> bytes:
    return (
        json.dumps({"jsonrpc": "2.0", "id": msg_id, "method": method, "params": params}).encode()
        + b"\n"
    )


async def _first_call(
    launcher: Any, command: tuple[str, ...], tool: str, args: dict[str, Any]
) -> float:
    t = time.perf_counter()
    p = await launcher.launch(LaunchSpec(InstanceKey(1, "cold"), command))
    try:
        p.stdin.write(_rpc(1, "initialize", {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "bench", "version": "1"},
        }))  # fmt: skip
        p.stdin.write(b'{"jsonrpc":"2.0","method":"notifications/initialized"}\n')
        p.stdin.write(_rpc(2, "tools/call", {"name": tool, "arguments": args}))
        await p.stdin.drain()
        async with asyncio.timeout(60):
            while True:
                msg = json.loads(await p.stdout.readline())
                if msg.get("id") == 2:
                    if "result" not in msg:
                        raise RuntimeError(f"{command[0]}: {msg}")
                    break
        return (time.perf_counter() - t) * 1e3
    finally:
        await _stop(p)


async def cold_calls(runs: int) -> dict[str, Any]:
    jail = SandboxLauncher(SandboxConfig(subnet=SUBNET, pool_size=2))
    await jail.start()
    plain = PlainLauncher()
    out: dict[str, Any] = {}
    try:
        for name, command, tool, args in (
            ("node_everything", EVERYTHING, "echo", {"message": "x"}),
            ("python_time", TIME, "get_current_time", {"timezone": "UTC"}),
        ):
            bare: list[float] = []
            jailed: list[float] = []
            await _first_call(jail, command, tool, args)  # plan and page cache warm for both
            for _ in range(runs):
                bare.append(await _first_call(plain, command, tool, args))
                jailed.append(await _first_call(jail, command, tool, args))
                await asyncio.sleep(0.05)
            out[name] = {
                "bare": summary(bare),
                "jailed": summary(jailed),
                "ratio_p50_jailed_over_bare": round(pct(jailed, 50) / pct(bare, 50), 3),
                "target_le_1_2": pct(jailed, 50) / pct(bare, 50) <= 1.2,
            }
    finally:
        await jail.aclose()
    return out


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _pss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


async def density(count: int) -> dict[str, Any]:
    jail = SandboxLauncher(
        SandboxConfig(subnet=SUBNET, pool_size=0), JailLimits(memory_bytes=256 << 20)
    )
    await jail.start()
    plain = PlainLauncher()
    procs: list[LaunchedProcess] = []
    fds_before = len(os.listdir("/proc/self/fd"))
    try:
        bare = await plain.launch(LaunchSpec(InstanceKey(1, "bare"), MEMORY))
        await asyncio.sleep(1.5)  # settled: idle after start
        bare_pss = _pss_kb(bare.pid)
        await _stop(bare)
        t = time.perf_counter()
        for i in range(count):
            procs.append(await jail.launch(LaunchSpec(InstanceKey(i, "memory"), MEMORY)))
        launch_s = time.perf_counter() - t
        await asyncio.sleep(2.0)
        server_pss: list[int] = []
        overhead_pss: list[int] = []
        cgroup_bytes: list[int] = []
        for p in procs:
            cg: cgroups.Cgroup = p.cgroup  # type: ignore[attr-defined]
            pids = cg.pids()
            node = [
                q
                for q in pids
                if b"node" in Path(f"/proc/{q}/cmdline").read_bytes().split(b"\0")[0]
            ]
            server_pss.append(sum(_pss_kb(q) for q in node))
            overhead_pss.append(sum(_pss_kb(q) for q in pids if q not in node))
            usage = None
            for path in cg.paths:
                for name in ("memory.current", "memory.usage_in_bytes"):
                    f = Path(path, name)
                    if f.exists():
                        usage = int(f.read_text())
            cgroup_bytes.append(usage or 0)
        fds_after = len(os.listdir("/proc/self/fd"))
        alive = sum(1 for p in procs if Path(f"/proc/{p.pid}").exists())
        per_instance_kb = statistics.fmean(c / 1024 for c in cgroup_bytes)
        total_kb = int(Path("/proc/meminfo").read_text().split()[1])
        return {
            "instances": count,
            "alive": alive,
            "launch_all_s": round(launch_s, 2),
            "bare_server_pss_mb": round(bare_pss / 1024, 1),
            "jailed_server_pss_mb_mean": round(statistics.fmean(server_pss) / 1024, 1),
            "jail_processes_pss_mb_mean": round(statistics.fmean(overhead_pss) / 1024, 2),
            "cgroup_memory_mb_mean": round(per_instance_kb / 1024, 1),
            "gateway_fds_per_instance": round((fds_after - fds_before) / count, 2),
            "kernel_objects_per_instance": {
                "network_namespaces": 1,
                "veth_pairs": 1,
                "cgroup_dirs": len(procs[0].cgroup.paths) if procs else 0,  # type: ignore[attr-defined]
                "nft_set_elements": 2,
                "processes_besides_server": 2,
            },
            "ratio_jail_overhead_over_server": round(
                statistics.fmean(overhead_pss) / max(1, bare_pss), 3
            ),
            "instances_that_fit_in_ram": int(total_kb / max(1.0, per_instance_kb)),
            "target_ge_200": int(total_kb / max(1.0, per_instance_kb)) >= 200,
        }
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            await p.wait()
            await p.cleanup()
        await jail.aclose()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    runs = 30 if args.quick else 200
    result: dict[str, Any] = {
        "benchmark": "sandbox",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "quick": args.quick,
        "machine": {"cpus": os.cpu_count(), "kernel": os.uname().release},
    }
    result["setup"] = await setup_times(runs)
    print(json.dumps({"setup": result["setup"]["ratios"]}), file=sys.stderr)
    result["cold_first_call"] = await cold_calls(5 if args.quick else 15)
    print(json.dumps({"cold_first_call": result["cold_first_call"]}), file=sys.stderr)
    result["density"] = await density(args.instances or (20 if args.quick else 100))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.jail", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs (about a minute)")
    parser.add_argument("--instances", type=int, default=0, help="density: idle instances")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("bench.jail: needs root (network namespaces, cgroups)", file=sys.stderr)
        return 2
    result = asyncio.run(run(args))
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"jail-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"bench.jail: results in {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
