"""The client of the egress benchmark: HTTPS with keep-alive, directly or through an
explicit proxy (CONNECT, then TLS inside the tunnel), with h11 on a plain asyncio stream.

The same code serves every arm, so what differs between arms is only what sits between
this client and the upstream. Prints one JSON line: latencies (ns) or bytes and seconds.
It must never send traffic beyond the benchmark's own namespace.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import time

import h11


async def _open(args: argparse.Namespace) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    ctx = ssl.create_default_context(cafile=args.ca)
    ctx.set_alpn_protocols(["http/1.1"])
    if args.proxy is None:
        return await asyncio.open_connection(
            args.address, args.port, ssl=ctx, server_hostname=args.host,
            local_addr=(args.source, 0) if args.source else None, limit=1 << 20,
        )  # fmt: skip
    phost, pport = args.proxy.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(
        phost, int(pport), local_addr=(args.source, 0) if args.source else None, limit=1 << 20
    )
    writer.write(
        f"CONNECT {args.host}:{args.port} HTTP/1.1\r\nHost: {args.host}:{args.port}\r\n\r\n".encode()
    )
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200") and not head.startswith(b"HTTP/1.0 200"):
        raise RuntimeError(f"CONNECT refused: {head[:80]!r}")
    await writer.start_tls(ctx, server_hostname=args.host)
    return reader, writer


async def _request(
    conn: h11.Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
    host: str, path: str, headers: list[tuple[str, str]],
) -> int:  # fmt: skip
    writer.write(conn.send(h11.Request(method="GET", target=path,
                                        headers=[("host", host), *headers])))  # fmt: skip
    writer.write(conn.send(h11.EndOfMessage()))
    await writer.drain()
    received = 0
    while True:
        ev = conn.next_event()
        if ev is h11.NEED_DATA:
            conn.receive_data(await reader.read(1 << 20))
            continue
        if isinstance(ev, h11.Response) and ev.status_code != 200:
            raise RuntimeError(f"status {ev.status_code}")
        if isinstance(ev, h11.Data):
            received += len(ev.data)
        if isinstance(ev, h11.EndOfMessage):
            conn.start_next_cycle()
            return received
        if isinstance(ev, h11.ConnectionClosed):
            raise RuntimeError("closed")


async def latency(args: argparse.Namespace) -> dict[str, object]:
    reader, writer = await _open(args)
    conn = h11.Connection(h11.CLIENT)
    headers = [("authorization", f"Bearer {args.key}")] if args.key else []
    for _ in range(args.warmup):
        await _request(conn, reader, writer, args.host, "/small", headers)
    lat = []
    for _ in range(args.n):
        t0 = time.perf_counter_ns()
        await _request(conn, reader, writer, args.host, "/small", headers)
        lat.append(time.perf_counter_ns() - t0)
    writer.close()
    return {"latencies_ns": lat}


async def throughput_rps(args: argparse.Namespace) -> dict[str, object]:
    headers = [("authorization", f"Bearer {args.key}")] if args.key else []
    deadline = time.perf_counter() + args.seconds
    done = 0

    async def worker() -> None:
        nonlocal done
        reader, writer = await _open(args)
        conn = h11.Connection(h11.CLIENT)
        while time.perf_counter() < deadline:
            await _request(conn, reader, writer, args.host, "/small", headers)
            done += 1
        writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*[worker() for _ in range(args.concurrency)])
    return {"requests": done, "seconds": time.perf_counter() - t0}


async def download(args: argparse.Namespace) -> dict[str, object]:
    reader, writer = await _open(args)
    conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=1 << 20)
    headers = [("authorization", f"Bearer {args.key}")] if args.key else []
    t0 = time.perf_counter()
    got = await _request(conn, reader, writer, args.host, f"/big?n={args.bytes}", headers)
    seconds = time.perf_counter() - t0
    writer.close()
    return {"bytes": got, "seconds": seconds}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["latency", "rps", "download"])
    p.add_argument("--host", required=True)
    p.add_argument("--address", required=True)
    p.add_argument("--port", type=int, default=443)
    p.add_argument("--ca", required=True)
    p.add_argument("--proxy")
    p.add_argument("--source")
    p.add_argument("--key")
    p.add_argument("-n", type=int, default=1000)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--bytes", type=int, default=100 * 2**20)
    args = p.parse_args()
    fn = {"latency": latency, "rps": throughput_rps, "download": download}[args.mode]
    print(json.dumps(asyncio.run(fn(args))))


if __name__ == "__main__":
    main()
