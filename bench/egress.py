"""``python -m bench.egress``: the egress proxy benchmark.

HTTPS through the gateway's proxy versus direct to the same upstream, with the same
client, in the same run, interleaved: small keep-alive requests (p50/p99 latency,
requests per second) and a large download (throughput); the same through mitmproxy
(from PyPI, in a venv of its own) as a peer. Then the certificate figures: one mint,
a cached context, and one mint per host under a crowd.

Everything runs inside a network namespace the benchmark makes (no route out): the
upstream (uvicorn over TLS) at 11.0.0.1, a DNS server (dnsmasq), the proxy in this
process, the client and mitmproxy as processes. The proxy runs its real path: identity,
allowlist, resolution behind the SSRF guard, TLS both ways, injection of a sealed
credential and scrubbing of every answer. Results: bench/results/egress-<time>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import ipaddress
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gigmcp.core.definitions import parse_credentials, parse_egress
from gigmcp.core.instances import InstanceKey
from gigmcp.core.placeholders import InstanceCredentials, Sealed
from gigmcp.core.views import ServerDef
from gigmcp.egress.audit import EgressAudit
from gigmcp.egress.certs import CertificateAuthority, LeafCache, upstream_context
from gigmcp.egress.listeners import ProxyPorts
from gigmcp.egress.proxy import EgressProxy
from gigmcp.netpolicy.hostaddr import HostAddresses
from gigmcp.netpolicy.resolver import DnsResolver
from gigmcp.sandbox.identity import Identity, SourceTable
from gigmcp.store.db import make_engine, migrate

ROOT = Path(__file__).resolve().parent.parent
NS = "gmbench-egress"
PROXY, CLIENT, DNS, UPSTREAM = "10.99.0.1", "10.99.0.2", "10.99.0.53", "11.0.0.1"
# The upstream listens in the proxy's own namespace, so its address is one of "this
# host's", which the proxy refuses unless the operator lists it
# (GIG_EGRESS_ALLOW_HOST_ADDRESSES): the bench lists exactly that one address.
UPSTREAM_IS_LOCAL = HostAddresses([ipaddress.ip_network(f"{UPSTREAM}/32")])
HOST = "api.bench.test"
MITM_PORT = 8080
MITM_VERSION = "11.0.2"
MITM_VENV = ROOT / "bench" / ".mitm-venv"
_libc = ctypes.CDLL(None, use_errno=True)


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@contextlib.contextmanager
def namespace() -> Iterator[None]:
    subprocess.run(["ip", "netns", "del", NS], capture_output=True)
    ip("netns", "add", NS)
    host_fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    etc = Path("/etc/netns") / NS
    try:
        ip("-n", NS, "link", "set", "lo", "up")
        for a in (PROXY, CLIENT, DNS, UPSTREAM):
            ip("-n", NS, "addr", "add", f"{a}/32", "dev", "lo")
        # What `ip netns exec` shows mitmproxy as /etc: our name, and no other resolver.
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "hosts").write_text(f"127.0.0.1 localhost\n{UPSTREAM} {HOST}\n")
        (etc / "resolv.conf").write_text(f"nameserver {DNS}\n")
        fd = os.open(f"/run/netns/{NS}", os.O_RDONLY)
        try:
            if _libc.setns(fd, 0x40000000) != 0:
                raise OSError(ctypes.get_errno(), "setns")
        finally:
            os.close(fd)
        yield
    finally:
        _libc.setns(host_fd, 0x40000000)
        os.close(host_fd)
        subprocess.run(["ip", "netns", "del", NS], capture_output=True)
        shutil.rmtree(etc, ignore_errors=True)


def mitm_venv() -> Path | None:
    dump = MITM_VENV / "bin" / "mitmdump"
    if dump.exists():
        return dump
    print(f"bench.egress: installing mitmproxy=={MITM_VERSION} into {MITM_VENV}", file=sys.stderr)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(MITM_VENV)], check=True)
        subprocess.run([str(MITM_VENV / "bin" / "pip"), "install", "-q", f"mitmproxy=={MITM_VERSION}"],
                       check=True, timeout=600)  # fmt: skip
    except (subprocess.SubprocessError, OSError) as exc:
        print(f"bench.egress: no mitmproxy arm: {exc}", file=sys.stderr)
        return None
    return dump


async def client(mode: str, ca: Path, *extra: str) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.egress_client", mode, "--host", HOST, "--address", UPSTREAM,
        "--ca", str(ca), *extra, cwd=ROOT, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"client {mode} {extra}: {err.decode()[-400:]}")
    result: dict[str, Any] = json.loads(out)
    return result


def pct(values: list[int], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(q / 100 * len(ordered)) - 1))] / 1e6


async def certificates() -> dict[str, Any]:
    ca = CertificateAuthority.generate()
    t0 = time.perf_counter()
    for i in range(200):
        ca.mint_leaf(f"h{i}.example.test", is_ip=False)
    mint_ms = (time.perf_counter() - t0) / 200 * 1000
    cache = LeafCache(ca)
    t0 = time.perf_counter()
    await cache.context_for("cold.example.test")
    cold_ms = (time.perf_counter() - t0) * 1000
    t0 = time.perf_counter()
    for _ in range(1000):
        await cache.context_for("cold.example.test")
    cached_us = (time.perf_counter() - t0) / 1000 * 1e6
    crowd = LeafCache(ca)
    await asyncio.gather(*[crowd.context_for("crowd.example.test") for _ in range(100)])
    return {
        "leaf_mint_ms_mean": round(mint_ms, 3),
        "context_cold_ms": round(cold_ms, 3),
        "context_cached_us": round(cached_us, 2),
        "mints_for_100_concurrent_requests_of_one_host": crowd.mints,
        "key": "ECDSA P-256",
        "cache": {"max_entries": crowd.max_entries, "ttl_s": crowd.ttl_s},
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="gmbench-egress-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with namespace():
            up_ca = CertificateAuthority.generate("bench upstream CA")
            chain, key = up_ca.mint_leaf(HOST, is_ip=False)
            (tmp / "up.pem").write_bytes(chain)
            (tmp / "up.key").write_bytes(key)
            (tmp / "up-ca.pem").write_bytes(up_ca.cert_pem())
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "bench.servers.https_upstream", UPSTREAM, "443",
                 str(tmp / "up.pem"), str(tmp / "up.key")], cwd=ROOT,
            ))  # fmt: skip
            procs.append(subprocess.Popen(
                ["dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts", "--no-daemon",
                 f"--listen-address={DNS}", "--bind-interfaces", "--user=root", "--pid-file=",
                 f"--address=/{HOST}/{UPSTREAM}", "--conf-file=/dev/null"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            ))  # fmt: skip
            # The gateway's proxy, with a sealed credential injected on every request.
            egress = parse_egress({"hosts": [HOST]})
            creds = parse_credentials(
                [{"id": "k", "type": "api_key",
                  "inject": {"header": "Authorization", "format": "Bearer {token}"}}], egress
            )  # fmt: skip
            key_ = InstanceKey(1, "bench")
            server = ServerDef(1, "bench", 1, ("x",), egress=egress, credentials=creds)
            placeholder = "gigmcp_ph_" + "B" * 32
            grant = InstanceCredentials(
                key_, 1, server, (Sealed(creds[0], placeholder, b"sk_bench_" + b"r" * 32),)
            )
            ids = SourceTable()
            ids.add(Identity(key_, "bench", 1, 1, PROXY, CLIENT, "lo"))
            gw_ca = CertificateAuthority.generate()
            (tmp / "gw-ca.pem").write_bytes(gw_ca.cert_pem())
            engine = make_engine(f"sqlite:///{tmp / 'audit.db'}")
            migrate(engine)
            audit = EgressAudit(engine)
            await audit.start()
            proxy = EgressProxy(
                identities=ids, grants={key_: grant}.get, resolver=DnsResolver(DNS, UPSTREAM_IS_LOCAL),
                leaves=LeafCache(gw_ca), upstream_tls=upstream_context(up_ca.cert_pem()),
                audit=audit, ports=ProxyPorts.from_base(3128), bind=PROXY,
            )  # fmt: skip
            await proxy.start()
            arms: dict[str, tuple[Path, list[str]]] = {
                "direct": (tmp / "up-ca.pem", ["--source", CLIENT]),
                "gigmcp": (tmp / "gw-ca.pem", ["--proxy", f"{PROXY}:3128", "--source", CLIENT,
                                               "--key", placeholder]),
            }  # fmt: skip
            dump = None if args.no_mitm else mitm_venv()
            if dump is not None:
                confdir = tmp / "mitm"
                procs.append(subprocess.Popen(
                    ["ip", "netns", "exec", NS, str(dump), "--listen-host", PROXY,
                     "--listen-port", str(MITM_PORT), "--set", f"confdir={confdir}",
                     "--set", f"ssl_verify_upstream_trusted_ca={tmp / 'up-ca.pem'}", "-q"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                ))  # fmt: skip
                for _ in range(200):
                    if (confdir / "mitmproxy-ca-cert.pem").exists():
                        break
                    await asyncio.sleep(0.1)
                await asyncio.sleep(1.0)
                arms["mitmproxy"] = (confdir / "mitmproxy-ca-cert.pem",
                                     ["--proxy", f"{PROXY}:{MITM_PORT}", "--source", CLIENT])  # fmt: skip
            await asyncio.sleep(1.5)  # uvicorn and dnsmasq up
            latencies: dict[str, list[int]] = {a: [] for a in arms}
            for _round in range(0 if args.download_only else args.rounds):
                for arm, (ca, extra) in arms.items():
                    r = await client("latency", ca, *extra, "-n", str(args.n), "--warmup", "50")
                    latencies[arm] += r["latencies_ns"]
            rps: dict[str, list[float]] = {a: [1.0] if args.download_only else [] for a in arms}
            for _round in range(0 if args.download_only else args.rounds):
                for arm, (ca, extra) in arms.items():
                    r = await client("rps", ca, *extra, "--seconds", str(args.seconds),
                                     "--concurrency", str(args.concurrency))  # fmt: skip
                    rps[arm].append(r["requests"] / r["seconds"])
            download: dict[str, list[float]] = {a: [] for a in arms}
            for _round in range(args.download_rounds):
                for arm, (ca, extra) in arms.items():
                    r = await client("download", ca, *extra, "--bytes", str(args.bytes))
                    assert r["bytes"] == args.bytes, r
                    download[arm].append(r["bytes"] / r["seconds"] / 2**20)
            await proxy.aclose()
            await audit.aclose()
            certs = await certificates()
    finally:
        for p in procs:
            p.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(5)
            if p.poll() is None:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)
    small = {
        a: {"n": len(v), "p50_ms": round(pct(v, 50), 3), "p99_ms": round(pct(v, 99), 3)}
        for a, v in latencies.items()
        if v
    } or {a: {"n": 0, "p50_ms": 0.0, "p99_ms": 0.0} for a in latencies}
    rps_med = {a: round(statistics.median(v), 1) for a, v in rps.items()}
    dl = {a: round(statistics.median(v), 1) for a, v in download.items()}
    added = small["gigmcp"]["p50_ms"] - small["direct"]["p50_ms"]
    out: dict[str, Any] = {
        "benchmark": "egress proxy",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "kernel": platform.release()},
        "small_keepalive": {
            "latency": small,
            "rps_median": rps_med,
            "concurrency": args.concurrency,
        },
        "download_mib_per_s": {"bytes": args.bytes, "median": dl},
        "certificates": certs,
        "ratios": {
            "added_p50_ms_gigmcp_over_direct": round(added, 3),
            "rps_gigmcp_over_direct": round(rps_med["gigmcp"] / rps_med["direct"], 3),
            "download_gigmcp_over_direct": round(dl["gigmcp"] / dl["direct"], 3),
        },
        "targets": {
            "added_p50_le_1ms": added <= 1.0,
            "download_ge_70pct_of_direct": dl["gigmcp"] >= 0.7 * dl["direct"],
        },
    }
    if "mitmproxy" in arms:
        ratio = rps_med["gigmcp"] / rps_med["mitmproxy"]
        out["ratios"]["rps_gigmcp_over_mitmproxy"] = round(ratio, 2)
        out["ratios"]["download_gigmcp_over_mitmproxy"] = round(dl["gigmcp"] / dl["mitmproxy"], 2)
        out["targets"]["rps_ge_10x_mitmproxy"] = ratio >= 10
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer rounds, smaller download")
    p.add_argument("--no-mitm", action="store_true", help="skip the mitmproxy arm")
    p.add_argument("--download-only", action="store_true", help="only the large download")
    args = p.parse_args()
    args.rounds = 2 if args.quick else 4
    args.n = 300 if args.quick else 1000
    args.seconds = 2.0 if args.quick else 4.0
    args.concurrency = 8
    args.download_rounds = 1 if args.quick else 3
    args.bytes = (20 if args.quick else 100) * 2**20
    if os.geteuid() != 0:
        sys.exit("bench.egress: needs root (it builds a network namespace)")
    result = asyncio.run(run(args))
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"egress-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"bench.egress: results in {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
