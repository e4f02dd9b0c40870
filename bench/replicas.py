"""``python -m bench.replicas``: calls per second of two gateway replicas against one, on
the same workload, measured in the same run, interleaved.

Owns this run: a throwaway PostgreSQL cluster (tests/support/databases.py), two real
``gigmcp serve`` replicas on one database and one master key (tests/support/replicas.py),
each with the benchmark's fast stdio server (bench/servers/fast_server.py) run
unjailed: only one gateway per host may own the sandbox network, and the jail is not
what is measured; round-robin fronts, each a process of its own (so that none shares a
GIL with the load generator), per request in turn, one in front of replica 0 alone and
one in front of both, of each kind asked for: ``python`` (tests/support/round_robin.py,
uvicorn + httpx2, the replica tests' front) and ``haproxy`` (HAProxy, when installed:
a front that costs little CPU next to the gateway's); and the load, the harness's lean
h11 client (bench/http_client.py) at concurrency 32: stateless 2026-07-28
``tools/call`` of ``blob`` (64 bytes, every answer checked), one keep-alive connection
per worker.

Arms, back to back in a rotating order each round: ``direct`` (client to replica 0, no
front: each front's own cost shows against it), and per front kind ``<kind>-1`` (front
to replica 0) and ``<kind>-2`` (front to both). Reported per arm (median over rounds):
p50, p99, calls per second, errors, the CPU each process spent per call (replicas,
their servers, the front, PostgreSQL, the load generator), the machine's busy and
stolen cores, and what each replica's main thread (its event loop) was doing, sampled
every 10 ms from /proc: running or waiting for a core, idle in epoll, in poll(2) (libpq
waiting for PostgreSQL), on a futex (the GIL); and, paired by round, ``<kind>-2`` over
``<kind>-1`` calls per second, the figure asked for. Results:
``bench/results/replicas-<time>.json``.

It must never leave a process behind (every one it starts is stopped on success, error,
Ctrl-C or SIGTERM; each also dies with the benchmark), never run a jailed gateway, and
never send traffic beyond loopback and the cluster's Unix socket.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import procs, procstat, report, wire
from bench.http_client import Connection, Endpoint, McpClient
from bench.report import percentile

ROOT = Path(__file__).resolve().parent.parent
FAST = (sys.executable, str(ROOT / "bench" / "servers" / "fast_server.py"))
FRONTS = ("python", "haproxy")
CONCURRENCY = 32
SIZE = 64
TOOL = "fast_blob"
HAPROXY = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin")
_HZ = os.sysconf("SC_CLK_TCK")
# Lines in a log that say something went wrong under load.
_TROUBLE = re.compile(r"Traceback|\bERROR\b|\bCRITICAL\b|Exception|exception")


@dataclass
class _Process:
    """A process whose CPU is read: alone, or with the servers it started apart."""

    name: str
    pid: int
    split_children: bool = False  # a gateway: its own CPU, and its servers' apart

    def cpu_ns(self) -> dict[str, int]:
        total = procstat.sample(self.pid).cpu_ns
        if not self.split_children:
            return {self.name: total}
        kids = sum(procstat.sample(p).cpu_ns for p in _children(self.pid))
        return {self.name: total - kids, f"{self.name} servers": kids}


def _children(pid: int) -> list[int]:
    found = []
    for p in procstat.tree(pid)[1:]:
        try:
            parent = int(Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if parent == pid:
            found.append(p)
    return found


# What a replica's main thread (its event loop) is doing, by the kernel's word: ``R`` is
# running or waiting for a core; asleep, the function it sleeps in says on what.
_WAITS = (
    ("do_epoll_wait", "idle"),  # the event loop, waiting for work
    ("poll_schedule", "poll"),  # poll(2): libpq waiting for PostgreSQL (the loop is not)
    ("futex", "futex"),  # the GIL, or another lock
)


def _thread_state(pid: int) -> str | None:
    try:
        state = Path(f"/proc/{pid}/task/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        if state == "R":
            return "running"
        wchan = Path(f"/proc/{pid}/task/{pid}/wchan").read_text()
    except (OSError, IndexError):
        return None
    return next((name for key, name in _WAITS if key in wchan), "other")


class _Sampler:
    """Samples each replica's main thread every 10 ms in a thread of its own (reads of
    /proc only: it never signals or slows the replicas)."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.counts: dict[str, dict[str, int]] = {name: {} for name in pids}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            for name, pid in self.pids.items():
                state = _thread_state(pid)
                if state is not None:
                    self.counts[name][state] = self.counts[name].get(state, 0) + 1

    def __enter__(self) -> _Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def shares(self) -> dict[str, dict[str, float]]:
        return {
            name: {k: v / (sum(c.values()) or 1) for k, v in sorted(c.items())}
            for name, c in self.counts.items()
        }


@dataclass
class _Arm:
    name: str
    endpoint: Endpoint
    measured: list[_Process]
    calls: int = 0
    errors: list[str] = field(default_factory=list)
    error_count: int = 0

    async def run(self, calls: int, time_limit: float) -> dict[str, Any]:
        """``CONCURRENCY`` workers, ``calls`` each (or until ``time_limit``): figures."""
        times: list[int] = []
        ids = wire.Ids()
        errors = 0
        deadline = time.monotonic() + time_limit

        async def worker() -> None:
            nonlocal errors
            conn = Connection(self.endpoint)
            client = McpClient(self.endpoint, ids, modern=True)
            try:
                for _ in range(calls):
                    if time.monotonic() > deadline:
                        break
                    call = wire.Call(ids(), TOOL, SIZE, wire.nonce())
                    started = time.perf_counter_ns()
                    try:
                        await asyncio.wait_for(client.call(conn, call), 30)
                    except Exception as exc:  # counted and reported, never hidden
                        errors += 1
                        if len(self.errors) < 5:
                            self.errors.append(f"{type(exc).__name__}: {exc}"[:300])
                        await conn.close()  # a fresh connection for the next call
                        continue
                    times.append(time.perf_counter_ns() - started)
            finally:
                await conn.close()

        loops = {p.name: p.pid for p in self.measured if p.split_children}
        cpu_before, machine_before = self._cpu(), _machine_cpu_s()
        started = time.perf_counter()
        with _Sampler(loops) as sampler:
            await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        wall = time.perf_counter() - started
        cpu_after, machine_after = self._cpu(), _machine_cpu_s()
        self.calls += len(times)
        self.error_count += errors
        ordered = sorted(times)
        cpu_s = {k: (cpu_after[k] - v) / 1e9 for k, v in cpu_before.items()}
        return {
            "calls": len(times),
            "errors": errors,
            "wall_s": wall,
            "p50_ms": percentile(ordered, 50) / 1e6,
            "p99_ms": percentile(ordered, 99) / 1e6,
            "calls_per_s": len(times) / wall if wall else 0.0,
            "cpu_s": cpu_s,
            # Every process on the machine (other work included), and time the host
            # took from this VM: what was left for the arm.
            "machine_busy_cores": (machine_after[0] - machine_before[0]) / wall,
            "machine_steal_cores": (machine_after[1] - machine_before[1]) / wall,
            "main_thread": sampler.shares(),
        }

    def _cpu(self) -> dict[str, int]:
        found = {"load generator": time.process_time_ns()}
        for process in self.measured:
            found.update(process.cpu_ns())
        return found


def _machine_cpu_s() -> tuple[float, float]:
    """(busy, stolen) CPU seconds of the whole machine so far, from /proc/stat."""
    fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    # user nice system idle iowait irq softirq steal (guest time is inside user).
    busy = sum(fields[i] for i in (0, 1, 2, 5, 6))
    return busy / _HZ, fields[7] / _HZ


def summarise(rounds: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Medians over rounds per arm, and ratios paired by round (the machine's mood of the
    moment weighs on both arms of a pair)."""
    summary: dict[str, Any] = {}
    for name, figures in rounds.items():
        calls = [f["calls"] for f in figures]
        entry: dict[str, Any] = {
            "p50_ms": statistics.median(f["p50_ms"] for f in figures),
            "p99_ms": statistics.median(f["p99_ms"] for f in figures),
            "calls_per_s": statistics.median(f["calls_per_s"] for f in figures),
            "errors": sum(f["errors"] for f in figures),
            "calls": sum(calls),
        }
        # CPU per call of each process, over all rounds (a sum of ticks, so rounding
        # does not pile up one way), and how many of the machine's cores were busy.
        total_calls = sum(calls) or 1
        wall = sum(f["wall_s"] for f in figures) or 1.0
        used: dict[str, float] = {}
        for f in figures:
            for process, seconds in f["cpu_s"].items():
                used[process] = used.get(process, 0.0) + seconds
        entry["cpu_ms_per_call"] = {k: v * 1000 / total_calls for k, v in used.items()}
        entry["cpu_ms_per_call_total"] = sum(used.values()) * 1000 / total_calls
        entry["cores_busy"] = sum(used.values()) / wall
        for key in ("machine_busy_cores", "machine_steal_cores"):
            entry[key] = statistics.median(f[key] for f in figures)
        entry["main_thread"] = {
            replica: {
                state: statistics.median(f["main_thread"][replica].get(state, 0.0) for f in figures)
                for state in sorted({s for f in figures for s in f["main_thread"][replica]})
            }
            for replica in figures[0].get("main_thread", {})
        }
        summary[name] = entry

    def paired(a: str, b: str, key: str) -> float | None:
        if a not in rounds or b not in rounds:
            return None
        pairs = zip(rounds[a], rounds[b], strict=True)
        return float(statistics.median(x[key] / y[key] for x, y in pairs if y[key]))

    ratios: dict[str, Any] = {}
    for kind in FRONTS:
        one, two = f"{kind}-1", f"{kind}-2"
        if one in rounds and two in rounds:
            ratios[kind] = {
                "two_over_one_calls_per_s": paired(two, one, "calls_per_s"),
                "two_over_one_p50": paired(two, one, "p50_ms"),
                "two_over_direct_calls_per_s": paired(two, "direct", "calls_per_s"),
                "one_over_direct_calls_per_s": paired(one, "direct", "calls_per_s"),
                "one_over_direct_p50": paired(one, "direct", "p50_ms"),
            }
    summary["ratios"] = ratios
    return summary


def _postmaster(socket_dir: str) -> int:
    return int((Path(socket_dir) / "data" / "postmaster.pid").read_text().split()[0])


def _start_front(kind: str, backends: list[int], tmp: Path, name: str) -> tuple[_Process, int]:
    """A round-robin front of ``kind`` as a process of its own, listening: it, its port."""
    port = procs.free_port()
    log = tmp / f"{name}.log"
    if kind == "python":
        urls = [f"http://127.0.0.1:{b}" for b in backends]
        argv = [sys.executable, "-m", "tests.support.round_robin", "--port", str(port), *urls]
    else:
        config = tmp / f"{name}.cfg"
        config.write_text(_haproxy_config(port, backends))
        argv = [HAPROXY or "haproxy", "-db", "-f", str(config)]
    proc = procs.spawn(argv, set(os.sched_getaffinity(0)), log, env=dict(os.environ), cwd=ROOT)
    procs.wait_listening(lambda: socket.create_connection(("127.0.0.1", port), 1), proc, log)
    return _Process("front", proc.pid), port


def _haproxy_config(port: int, backends: list[int]) -> str:
    """Per request in turn (HTTP mode balances each request of a kept-alive client
    connection; idle server connections are reused), no health checks, no logging."""
    servers = "\n".join(f"  server r{i} 127.0.0.1:{b}" for i, b in enumerate(backends))
    return f"""global
  maxconn 4096
  nbthread 1
defaults
  mode http
  option http-keep-alive
  http-reuse always
  timeout connect 2s
  timeout client 120s
  timeout server 120s
frontend front
  bind 127.0.0.1:{port}
  default_backend replicas
backend replicas
  balance roundrobin
{servers}
"""


@contextlib.contextmanager
def _world(tmp: Path, fronts: list[str]) -> Iterator[tuple[dict[str, _Arm], dict[str, Any]]]:
    """PostgreSQL, two replicas, two fronts of each kind; the arms, and where to read each log."""
    from tests.support.databases import throwaway_postgres
    from tests.support.replicas import replica_set

    with contextlib.ExitStack() as stack:
        stack.callback(procs.stop_all)  # the fronts, after the arms are done with them
        socket_dir = stack.enter_context(throwaway_postgres())
        replicas = stack.enter_context(replica_set(tmp, socket_dir, {"fast": FAST}))
        token = replicas[0].tokens["alpha"]
        headers = [(b"authorization", f"Bearer {token}".encode())]
        measured = [
            _Process(f"replica {i}", r.proc.pid, split_children=True)
            for i, r in enumerate(replicas)
            if r.proc is not None
        ]
        measured.append(_Process("postgres", _postmaster(socket_dir)))
        arms = {"direct": _Arm("direct", _endpoint(replicas[0].port, headers), measured)}
        ports = [r.port for r in replicas]
        for kind in fronts:
            for count in (1, 2):
                name = f"{kind}-{count}"
                front, port = _start_front(kind, ports[:count], tmp, name)
                arms[name] = _Arm(name, _endpoint(port, headers), [*measured, front])
        logs: dict[str, Any] = {f"replica {i}": r.output for i, r in enumerate(replicas)}
        logs |= {name: (tmp / f"{name}.log").read_text for name in arms if name != "direct"}
        yield arms, logs


def _endpoint(port: int, headers: list[tuple[bytes, bytes]]) -> Endpoint:
    return Endpoint("127.0.0.1", port, "/mcp/p/alpha", headers)


def _trouble(logs: dict[str, Any]) -> dict[str, Any]:
    """Per log: how many lines say something went wrong, and the first few of them."""
    found: dict[str, Any] = {}
    for name, read in logs.items():
        lines = [line for line in read().splitlines() if _TROUBLE.search(line)]
        if lines:
            found[name] = {"lines": len(lines), "first": [line[:300] for line in lines[:5]]}
    return found


async def _measure(
    arms: dict[str, _Arm], calls: int, rounds: int, time_limit: float
) -> dict[str, list[dict[str, Any]]]:
    # Warm-up, not measured: connections made, both replicas' server instances started.
    for arm in arms.values():
        await arm.run(4, time_limit)
        arm.calls, arm.error_count, arm.errors = 0, 0, []
    names = list(arms)
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for r in range(rounds):
        # The order rotates every round, so no arm always runs first or last.
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            figures = await arms[name].run(calls, time_limit)
            results[name].append(figures)
            shown = {k: round(v, 2) for k, v in figures.items() if isinstance(v, float)}
            print(f"round {r + 1} {name}: {figures['calls']} calls, {figures['errors']} "
                  f"errors, {shown}", file=sys.stderr)  # fmt: skip
    return results


def _machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "load_avg_at_start": os.getloadavg(),
    }


def _haproxy_version() -> str | None:
    if HAPROXY is None:
        return None
    out = subprocess.run([HAPROXY, "-v"], capture_output=True, text=True, timeout=10).stdout
    return out.split()[2] if len(out.split()) > 2 else out.strip()


def _stop_on_sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # unwinds through every context manager: nothing left behind


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200, help="calls per worker per round")
    parser.add_argument("--rounds", type=int, default=4, help="interleaved rounds")
    parser.add_argument("--time-limit", type=float, default=120, help="seconds per batch at most")
    parser.add_argument("--quick", action="store_true", help="60 calls a worker, 2 rounds")
    parser.add_argument(
        "--fronts",
        default=",".join(FRONTS),
        help="front kinds, comma-separated (python,haproxy); haproxy is left out, saying "
        "so, when it is not installed",
    )
    parser.add_argument("--out", type=Path, help="where the JSON goes (default bench/results/)")
    args = parser.parse_args(argv)
    if args.quick:
        args.calls, args.rounds = 60, 2
    fronts = [f for f in args.fronts.split(",") if f]
    if unknown := set(fronts) - set(FRONTS):
        parser.error(f"unknown front kinds: {sorted(unknown)}")
    left_out = {}
    if "haproxy" in fronts and HAPROXY is None:
        fronts.remove("haproxy")
        left_out["haproxy"] = "not installed (apt-get install haproxy)"
        print("haproxy is not installed: its arms are left out", file=sys.stderr)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    machine = _machine()
    tmp = Path(tempfile.mkdtemp(prefix="gigbench-replicas-"))
    started = time.monotonic()
    try:
        with _world(tmp, fronts) as (arms, logs):
            results = asyncio.run(_measure(arms, args.calls, args.rounds, args.time_limit))
            made = {name: arm.calls for name, arm in arms.items()}
            errors = {name: arm.errors for name, arm in arms.items() if arm.errors}
            trouble = _trouble(logs)
    except KeyboardInterrupt:
        print(f"interrupted; every process stopped; logs kept in {tmp}", file=sys.stderr)
        sys.exit(130)
    except BaseException:
        print(f"failed; every process stopped; logs kept in {tmp}", file=sys.stderr)
        raise
    shutil.rmtree(tmp, ignore_errors=True)  # kept when the run fails, for its logs
    machine["load_avg_at_end"] = os.getloadavg()
    out = {
        "benchmark": "replicas",
        "when": datetime.now(UTC).isoformat(),
        "machine": machine,
        "settings": {
            "concurrency": CONCURRENCY,
            "calls_per_worker": args.calls,
            "rounds": args.rounds,
            "size": SIZE,
            "workload": "tools/call of blob, 2026-07-28 stateless, h11 keep-alive, "
            "one connection per worker",
            "replicas": "gigmcp serve x2, one PostgreSQL (throwaway cluster, Unix socket)",
            "jailed": False,
            "why_unjailed": "one gateway per host owns the sandbox network; the jail is "
            "not what is measured",
            "upstream": "bench/servers/fast_server.py over stdio, one per replica",
            "fronts": {
                "python": "tests/support/round_robin.py (uvicorn + httpx2), a process per arm",
                "haproxy": f"HAProxy {_haproxy_version()}, one thread, a process per arm",
            },
            "fronts_run": fronts,
            "fronts_left_out": left_out,
            "pinning": "none: every process shares every core",
        },
        "run_seconds": round(time.monotonic() - started, 1),
        "measured_calls": made,
        "errors": errors,
        "log_trouble": trouble,
        "summary": summarise(results),
        "rounds": results,
    }
    print(f"results: {report.save('replicas', out, args.out)}", file=sys.stderr)
    if any(arm.error_count for arm in arms.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
