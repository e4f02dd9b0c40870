"""The host's side of the sandbox network tests: listeners, the walls, a namespace apart.

``listener`` answers "pong" on an address a test made and records who connected;
``WALLS`` runs an attack three times (both walls, the host table alone, the table inside
the sandbox alone) and ``keep_only`` deletes the wall a run says is not standing;
``outside_namespace`` is a namespace of the test's own, routed from the host. ``SUBNET``
is the sandbox pool these suites use. Root only, like the tests that use them.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
from collections.abc import Iterator

import pytest

from gigmcp.sandbox.firewall import TABLE
from gigmcp.sandbox.netns import NetLease, SandboxNetwork
from gigmcp.sandbox.nft import Nft
from tests.support.netprobe import spawn_in

SUBNET = "10.213.0.0/24"


@contextlib.contextmanager
def listener(host: str, port: int, proto: str = "tcp") -> Iterator[list[str]]:
    """Answers "pong" to anyone; records who connected."""
    seen: list[str] = []
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, kind)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.settimeout(0.2)
    if proto == "tcp":
        sock.listen()
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                if proto == "tcp":
                    conn, addr = sock.accept()
                    seen.append(addr[0])
                    with conn:
                        conn.recv(16)
                        conn.sendall(b"pong")
                else:
                    _data, addr = sock.recvfrom(16)
                    seen.append(addr[0])
                    sock.sendto(b"pong", addr)
            except OSError:
                continue

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield seen
    finally:
        stop.set()
        t.join()
        sock.close()


WALLS = pytest.mark.parametrize("wall", ["both", "host-only", "inside-only"])


def keep_only(net: SandboxNetwork, wall: str, *leases: NetLease) -> None:
    """Delete the wall(s) that ``wall`` says are not standing ("none": both, a control)."""
    if wall in ("inside-only", "none"):
        with Nft() as n:
            n.run(f"delete table inet {TABLE}")
    if wall in ("host-only", "none"):
        for lease in leases:
            nft = spawn_in(net, lease, ["nft", "delete", "table", "inet", TABLE], root=True)
            assert nft.wait(timeout=10) == 0


@contextlib.contextmanager
def outside_namespace() -> Iterator[str]:
    """A namespace of the test's own, routed from the host: what a sandbox would reach
    if the host forwarded its packets. Yields the name; its address is 10.250.9.2."""
    name = "gmtest-outside"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(
            ["ip", "link", "add", "gmtout0", "type", "veth", "peer", "name", "eth0", "netns", name],
            check=True,
        )
        subprocess.run(["ip", "addr", "add", "10.250.9.1/30", "dev", "gmtout0"], check=True)
        subprocess.run(["ip", "link", "set", "gmtout0", "up"], check=True)
        for cmd in (
            ["ip", "addr", "add", "10.250.9.2/30", "dev", "eth0"],
            ["ip", "link", "set", "eth0", "up"],
            ["ip", "link", "set", "lo", "up"],
            ["ip", "route", "add", "default", "via", "10.250.9.1"],
        ):
            subprocess.run(["ip", "netns", "exec", name, *cmd], check=True)
        yield name
    finally:
        subprocess.run(["ip", "link", "del", "gmtout0"], check=False, capture_output=True)
        subprocess.run(["ip", "netns", "del", name], check=False)
