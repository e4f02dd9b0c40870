"""A network namespace without CAP_SYS_ADMIN: the *userns* mode's namespace holder.

In a container granted ``NET_ADMIN`` but not ``SYS_ADMIN`` the gateway cannot create a
network namespace or ``setns`` into one. What it can do is start a process as the
instance's own host uid that creates a user namespace and, inside it, a network
namespace (``unshare --user --map-root-user --net``: no capability needed where the
kernel allows unprivileged user namespaces). That process, the *holder*, is root of
its own user namespace only, which owns the new network namespace: it configures the
inside (``lo``, ``eth0``'s address and route, IPv6 off, the namespace's own nftables
wall) with the ordinary ``ip`` and ``nft`` tools, then sleeps until told to go. The
gateway, with ``NET_ADMIN`` in its own namespace, creates the veth and moves the inside
end there by the holder's pid, and joins the namespace for a spawn with ``nsenter``
run as that same uid (the owner of a user namespace, from its parent, may enter it).

Why the jail still cannot touch its walls: the jail's processes live in a user
namespace bwrap nests *inside* the holder's, without capabilities, so they have none
over the holder's namespace, which owns the network namespace; and they cannot see the
holder (their own pid namespace). The holder exits when its stdin closes, so a gateway
killed with SIGKILL leaves no holder behind, and with it goes the namespace.

Owns starting, configuring and stopping one holder. It must never map host root into
the holder's user namespace (only the instance's host uid, as root there), and never
leave a holder running once its namespace is released.
"""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import time

from gigmcp.errors import LaunchError

UNSHARE = "/usr/bin/unshare"
NSENTER = "/usr/bin/nsenter"
READY_TIMEOUT_S = 5.0


def _script(batch_fd: int, ruleset_fd: int) -> str:
    # Runs as root of the new user namespace. The sysctls first (before eth0 exists, so
    # "default" covers it), then wait for the gateway to move eth0 in, then the addresses
    # and the wall from the two descriptors the gateway passes, then sleep until stdin
    # closes. Any step's failure ends the script with its message on stderr.
    return (
        "set -e; "
        "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6; "
        "echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6; "
        "echo ready; read go; "
        f"ip -batch /dev/fd/{batch_fd}; nft -f /dev/fd/{ruleset_fd}; "
        "echo configured; read _ || true"
    )


class HolderError(LaunchError):
    pass


class NamespaceHolder:
    """One holder process; its pid names the user and network namespaces it holds."""

    def __init__(self, uid: int, inside_batch: str, inside_ruleset: str) -> None:
        self.uid = uid
        fds = [_memfd("ip-batch", inside_batch.encode()), _memfd("nft", inside_ruleset.encode())]
        try:
            argv = [UNSHARE, "--user", "--map-root-user", "--net", "--", "/bin/sh", "-c"]
            self.proc = subprocess.Popen(
                [*argv, _script(*fds)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=tuple(fds),
                process_group=0,
                env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
                user=uid,
                group=uid,
                extra_groups=[],
            )
        finally:
            for fd in fds:
                os.close(fd)
        try:
            self._expect("ready")
        except BaseException:
            self.stop()
            raise

    @property
    def pid(self) -> int:
        return self.proc.pid

    def configure(self) -> None:
        """Call once the inside end of the veth is in the namespace."""
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(b"go\n")
            self.proc.stdin.flush()
        except OSError as exc:
            raise HolderError(f"the namespace holder is gone: {self._stderr()}") from exc
        self._expect("configured")

    def nsenter(self) -> list[str]:
        """The argv prefix that runs a command in the held user and network namespaces
        (as root of the user namespace, i.e. the instance's host uid)."""
        return [NSENTER, "-t", str(self.proc.pid), "-U", "-n", "--preserve-credentials", "--"]

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()

    def _expect(self, word: str) -> None:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + READY_TIMEOUT_S
        line = b""
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise HolderError(f"the namespace holder did not say {word!r} in time")
            chunk = os.read(fd, 64)
            if not chunk:
                raise HolderError(f"the namespace holder failed: {self._stderr()}")
            line += chunk
        if line.strip() != word.encode():
            raise HolderError(f"the namespace holder said {line.strip()!r}, not {word!r}")

    def _stderr(self) -> str:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        assert self.proc.stderr is not None
        text = self.proc.stderr.read(2048).decode(errors="replace").strip()
        return text or f"exit status {self.proc.returncode}"


def _memfd(name: str, data: bytes) -> int:
    fd = os.memfd_create(name)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd
