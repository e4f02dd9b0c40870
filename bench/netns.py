"""A throw-away network namespace for a peer that insists on listening on every interface.

Owns creating one named namespace with only loopback up, opening sockets inside it from
this process (``setns`` on one thread, then straight back), and deleting it. It must never
change the host's own network: no routes, no addresses, no links outside the namespace.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import socket
import subprocess
import threading
from collections.abc import Iterator

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
# setns changes the calling thread only; one lock keeps two connects from interleaving.
_switch = threading.Lock()


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


class NetNamespace:
    """``ip netns add NAME`` with ``lo`` up; ``connect()`` opens a TCP socket inside it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.path = f"/run/netns/{name}"
        self._fd: int | None = None

    def create(self) -> None:
        # A namespace of the same name left by a killed run would hold a stale listener.
        self.delete()
        subprocess.run(["ip", "netns", "add", self.name], check=True, capture_output=True)
        subprocess.run(
            ["ip", "-n", self.name, "link", "set", "lo", "up"], check=True, capture_output=True
        )
        self._fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)

    def exec_prefix(self) -> list[str]:
        """Prefix for a command line that must run inside the namespace."""
        return ["ip", "netns", "exec", self.name]

    def connect(self, host: str, port: int, timeout: float = 5.0) -> socket.socket:
        """A connected TCP socket whose endpoint lives inside the namespace.

        A socket belongs to the namespace it was created in for its whole life, so the load
        generator enters the namespace only for ``socket()`` + ``connect()``.
        """
        if self._fd is None:
            raise RuntimeError(f"network namespace {self.name} is not created")
        with _switch:
            home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            try:
                _setns(self._fd)
                try:
                    sock = socket.create_connection((host, port), timeout=timeout)
                finally:
                    _setns(home)
            finally:
                os.close(home)
        sock.setblocking(False)
        return sock

    def delete(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
        if os.path.exists(self.path):
            subprocess.run(["ip", "netns", "delete", self.name], check=False, capture_output=True)

    def __enter__(self) -> NetNamespace:
        self.create()
        return self

    def __exit__(self, *exc: object) -> None:
        self.delete()


def sweep_stale(prefix: str = "gigbench-") -> list[str]:
    """Delete namespaces named ``<prefix><pid>-…`` whose benchmark process is gone.

    A run killed outright (SIGKILL) cannot delete its namespace; the next run does. Only
    names this module makes, and only for pids that no longer exist, are touched.
    """
    removed = []
    for entry in sorted(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else []:
        if not entry.startswith(prefix):
            continue
        owner = entry[len(prefix) :].split("-", 1)[0]
        if owner.isdigit() and not os.path.exists(f"/proc/{owner}"):
            subprocess.run(["ip", "netns", "delete", entry], check=False, capture_output=True)
            removed.append(entry)
    return removed


@contextlib.contextmanager
def namespace(name: str) -> Iterator[NetNamespace]:
    ns = NetNamespace(name)
    ns.create()
    try:
        yield ns
    finally:
        ns.delete()
