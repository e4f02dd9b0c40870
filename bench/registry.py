"""Benchmark of the registry and installs.

Owns three measurements, each against a baseline taken in the same run:

- index: verify the ed25519 signature of, and parse, an index built from the whole
  catalog (../shared/registry-catalog), against reading the same bytes as plain JSON;
- OCI install: an image from a real registry on loopback (Debian's docker-registry),
  uncached (pull, verify every blob, extract) against cached (digest already there);
- toolspec: a tool call through the project's engine (stdio JSON-RPC in, HTTPS out, to
  an upstream on loopback) against the same HTTPS request made directly, both over a
  kept-alive connection.

Run: ``./scripts/bench-registry [--quick]``; results go to bench/results/registry-*.json.
It must never leave a process or temporary folder behind, also when it fails.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gigmcp.toolspec_engine import launch

ROOT = Path(__file__).resolve().parent.parent
CATALOG = ROOT.parent / "shared" / "registry-catalog"
PYTHON = "/usr/bin/python3"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, max(0, int(round(q / 100 * len(ordered))) - 1))], 4)


def summary(ms: list[float]) -> dict[str, float]:
    return {
        "n": len(ms),
        "p50_ms": pct(ms, 50),
        "p99_ms": pct(ms, 99),
        "mean_ms": round(statistics.fmean(ms), 4),
    }


def timed(fn: Callable[[], object], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1e3)
    return out


# ------------------------------------------------------------------ index


def index_verify_parse(runs: int) -> dict[str, Any]:
    from gigmcp.registry import signing
    from gigmcp.registry.catalog import load_catalog
    from gigmcp.registry.index import build_index, parse_index

    catalog = load_catalog(CATALOG / "manifests")
    if not catalog.ok:
        raise RuntimeError(f"the catalog does not lint: {catalog.problems[:3]}")
    raw = build_index(
        catalog.manifests.values(), "2026-11-25T00:00:00Z", catalog.toolspecs.values()
    )
    private, public = signing.keygen()
    sig = signing.sign(private, raw)

    def verified() -> None:
        signing.verify(public, raw, sig)
        parse_index(raw)

    verify_only = timed(lambda: signing.verify(public, raw, sig), runs)
    full = timed(verified, runs)
    plain = timed(lambda: json.loads(raw), runs)
    out: dict[str, Any] = {
        "index_bytes": len(raw),
        "manifests": len(catalog.manifests),
        "toolspecs": len(catalog.toolspecs),
        "verify": summary(verify_only),
        "verify_and_parse": summary(full),
        "json_loads_baseline": summary(plain),
    }
    out["ratio_p50_verify_parse_over_json_loads"] = round(
        out["verify_and_parse"]["p50_ms"] / out["json_loads_baseline"]["p50_ms"], 2
    )
    return out


# ------------------------------------------------------------------ OCI


def oci_install(runs: int) -> dict[str, Any]:
    import asyncio
    import shutil

    from tests.support import oci_images as images
    from tests.support.oci_registry import start_registry, stop_registry

    from gigmcp.packages.oci.cache import ImageCache
    from gigmcp.packages.oci.distribution import ClientOptions
    from gigmcp.packages.oci.pull import PullOptions, install_image
    from gigmcp.sandbox import runtime

    plan = runtime.plan(("/bin/sh",), None)
    files = sorted(p for p in plan.ro_paths if os.path.isfile(p))
    entries = images.copy_host_tree(files, list(plan.symlinks))
    entries.append(images.file("server.sh", b"#!/bin/sh\nexec cat\n", 0o755))
    layer = images.tar(entries)
    registry = start_registry()
    pusher = images.Pusher(registry.url)
    work = Path(tempfile.mkdtemp(prefix="gigbench-oci-"))
    try:
        digest = pusher.push("bench/sh", images.index([images.image([layer])]))
        ref = f"{registry.host}/bench/sh"
        opts = PullOptions(client=ClientOptions(plain_http_registries=frozenset({registry.host})))

        def install(cache_dir: Path) -> None:
            asyncio.run(
                install_image(ref, digest, "/server.sh", ImageCache(cache_dir), options=opts)
            )

        uncached: list[float] = []
        for i in range(runs):
            cache_dir = work / f"cold-{i}"
            t = time.perf_counter()
            install(cache_dir)
            uncached.append((time.perf_counter() - t) * 1e3)
            shutil.rmtree(cache_dir)
        warm = work / "warm"
        install(warm)
        cached = timed(lambda: install(warm), runs)
    finally:
        pusher.close()
        stop_registry(registry)
        shutil.rmtree(work, ignore_errors=True)
    out: dict[str, Any] = {
        "layer_bytes": len(layer),
        "uncached": summary(uncached),
        "cached": summary(cached),
    }
    out["ratio_p50_uncached_over_cached"] = round(
        out["uncached"]["p50_ms"] / out["cached"]["p50_ms"], 2
    )
    return out


# ------------------------------------------------------------------ toolspec


def toolspec_roundtrip(runs: int) -> dict[str, Any]:
    from tests.support.toolspec_lab import make_ca, start_upstream

    with tempfile.TemporaryDirectory(prefix="gigbench-") as tmp:
        pki = make_ca(Path(tmp))
        upstream = start_upstream(pki)
        # Headers and body go out in two writes: without TCP_NODELAY, Nagle and the
        # client's delayed ACK add ~40 ms to every answer and hide what is measured.
        upstream.server.RequestHandlerClass.disable_nagle_algorithm = True  # type: ignore[attr-defined]
        try:
            spec = {
                "schemaVersion": 1, "name": "bench", "version": "1.0.0",
                "baseUrl": f"https://localhost:{upstream.port}",
                "tools": [{
                    "name": "get_item", "description": "Get an item", "method": "GET",
                    "path": "/items/{id}",
                    "params": [{"name": "id", "in": "path", "type": "string", "required": True}],
                }],
            }  # fmt: skip
            creds = [{"header": "Authorization", "format": "Bearer {token}", "env": "BENCH_KEY"}]
            data = launch.engine_input(spec, creds, None)
            input_path = Path(tmp) / "input.json"
            input_path.write_bytes(data)
            env = {"SSL_CERT_FILE": str(pki.ca_file), "BENCH_KEY": "placeholder"}
            proc = subprocess.Popen(
                launch.command(PYTHON, launch.ENGINE_DIR, str(input_path)),
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
            )  # fmt: skip
            try:
                via_engine = _engine_calls(proc, runs)
            finally:
                proc.stdin.close()  # type: ignore[union-attr]
                proc.wait(timeout=10)
                proc.stdout.close()  # type: ignore[union-attr]
            context = ssl.create_default_context(cafile=str(pki.ca_file))
            conn = http.client.HTTPSConnection("localhost", upstream.port, context=context)
            try:

                def direct() -> None:
                    conn.request("GET", "/items/42", headers={"Authorization": "Bearer x"})
                    resp = conn.getresponse()
                    json.loads(resp.read())

                direct()  # connect and handshake outside the measurement, as the engine's
                direct_ms = timed(direct, runs)
            finally:
                conn.close()
        finally:
            upstream.server.shutdown()
            upstream.server.server_close()
    out = {"via_engine": summary(via_engine), "direct_https": summary(direct_ms)}
    out["ratio_p50_engine_over_direct"] = round(
        out["via_engine"]["p50_ms"] / out["direct_https"]["p50_ms"], 2
    )
    out["added_p50_ms"] = round(out["via_engine"]["p50_ms"] - out["direct_https"]["p50_ms"], 3)
    return out


def _engine_calls(proc: subprocess.Popen[bytes], runs: int) -> list[float]:
    assert proc.stdin is not None and proc.stdout is not None

    def send(msg: dict[str, Any]) -> None:
        proc.stdin.write(json.dumps(msg).encode() + b"\n")  # type: ignore[union-attr]
        proc.stdin.flush()  # type: ignore[union-attr]

    def answer(msg_id: int) -> dict[str, Any]:
        while True:
            line = proc.stdout.readline()  # type: ignore[union-attr]
            if not line:
                raise RuntimeError("the engine exited")
            msg = json.loads(line)
            if msg.get("id") == msg_id:
                return msg  # type: ignore[no-any-return]

    send({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "bench", "version": "1"}}})  # fmt: skip
    answer(0)
    send({"jsonrpc": "2.0", "method": "notifications/initialized"})
    call = {"name": "get_item", "arguments": {"id": "42"}}
    send({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": call})
    first = answer(1)
    if first["result"].get("isError"):
        raise RuntimeError(f"the engine's call failed: {first}")
    out = []
    for i in range(runs):
        t = time.perf_counter()
        send({"jsonrpc": "2.0", "id": i + 2, "method": "tools/call", "params": call})
        answer(i + 2)
        out.append((time.perf_counter() - t) * 1e3)
    return out


# ------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.registry")
    parser.add_argument("--quick", action="store_true", help="fewer runs")
    args = parser.parse_args(argv)
    runs = 50 if args.quick else 500
    result: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "quick": args.quick,
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
    }
    result["index"] = index_verify_parse(5 if args.quick else 30)
    result["oci_install"] = oci_install(5 if args.quick else 20)
    result["toolspec"] = toolspec_roundtrip(runs)
    out = ROOT / "bench" / "results" / f"registry-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"bench.registry: results in {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
