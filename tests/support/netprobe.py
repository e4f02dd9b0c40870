"""Helpers for network tests: run a small Python probe inside a sandbox namespace.

Probes run as uid 65534 without capabilities (like a jailed server, but without the
rest of the jail, so that these tests isolate the network layer), print one JSON line
and exit. They only ever talk to addresses the tests created.

In root mode a probe is spawned from a thread that entered the namespace, as uid 65534
of the host. In userns mode it joins the holder's namespaces with nsenter, as the
launcher does, and then enters a user namespace of its own without capabilities (as
bwrap puts a jailed server) — the holder's root would be more than a server ever is.
``root=True`` gives the most the namespace has: host root in root mode, the holder's
root (owner of the namespace) in userns mode.
"""

from __future__ import annotations

import json
import subprocess
import textwrap
from collections.abc import Sequence
from typing import Any

from gigmcp.sandbox.jail import BWRAP, host_uid
from gigmcp.sandbox.netns import NetLease, SandboxNetwork

PY = "/usr/bin/python3"

CONNECT = """
import json, socket, sys
host, port, proto = sys.argv[1], int(sys.argv[2]), sys.argv[3]
fam = socket.AF_INET6 if ':' in host else socket.AF_INET
try:
    if proto == 'tcp':
        s = socket.socket(fam, socket.SOCK_STREAM); s.settimeout(1.5)
        s.connect((host, port)); s.sendall(b'ping'); data = s.recv(16)
        print(json.dumps({'ok': True, 'data': data.decode()}))
    else:
        s = socket.socket(fam, socket.SOCK_DGRAM); s.settimeout(1.5)
        s.sendto(b'ping', (host, port)); data, _ = s.recvfrom(16)
        print(json.dumps({'ok': True, 'data': data.decode()}))
except OSError as e:
    print(json.dumps({'ok': False, 'error': type(e).__name__, 'errno': e.errno}))
"""


# A user namespace of its own, uid 65534, no capabilities, the host's files read-only:
# the shape of a jailed server as far as the network is concerned.
UNPRIVILEGED = (
    BWRAP,
    "--unshare-user",
    "--uid",
    "65534",
    "--gid",
    "65534",
    "--cap-drop",
    "ALL",
    "--ro-bind",
    "/",
    "/",
    "--proc",
    "/proc",
    "--dev",
    "/dev",
    "--",
)


def spawn_in(
    net: SandboxNetwork,
    lease: NetLease,
    argv: Sequence[str],
    *,
    root: bool = False,
    **popen: Any,
) -> subprocess.Popen[Any]:
    """Start ``argv`` inside the lease's network namespace (see the module docstring)."""
    if lease.holder is not None:
        uid = host_uid(lease.slot.index)
        cmd = [*lease.spawn_prefix, *([] if root else UNPRIVILEGED), *argv]
        return subprocess.Popen(cmd, user=uid, group=uid, extra_groups=[], **popen)
    net.enter(lease)
    try:
        who = {} if root else {"user": 65534, "group": 65534, "extra_groups": []}
        return subprocess.Popen(list(argv), **who, **popen)
    finally:
        net.leave()


def run_in(
    net: SandboxNetwork, lease: NetLease, code: str, *args: str, root: bool = False
) -> dict[str, Any]:
    proc = spawn_in(
        net,
        lease,
        [PY, "-I", "-c", textwrap.dedent(code), *args],
        root=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={},
    )
    out, err = proc.communicate(timeout=20)
    lines = out.decode().strip().splitlines()
    assert lines, f"probe printed nothing; stderr: {err.decode()}"
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def connect(
    net: SandboxNetwork, lease: NetLease, host: str, port: int, proto: str = "tcp"
) -> dict[str, Any]:
    return run_in(net, lease, CONNECT, host, str(port), proto)
