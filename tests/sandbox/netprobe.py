"""Helpers for network tests: run a small Python probe inside a sandbox namespace.

Probes run as uid 65534 (like a jailed server, but without bwrap, so that these tests
isolate the network layer), print one JSON line and exit. They only ever talk to
addresses the tests created.
"""

from __future__ import annotations

import json
import subprocess
import textwrap
from typing import Any

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


def run_in(
    net: SandboxNetwork, lease: NetLease, code: str, *args: str, root: bool = False
) -> dict[str, Any]:
    net.enter(lease)
    try:
        proc = subprocess.Popen(
            [PY, "-I", "-c", textwrap.dedent(code), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={},
            **({} if root else {"user": 65534, "group": 65534, "extra_groups": []}),
        )
    finally:
        net.leave()
    out, err = proc.communicate(timeout=20)
    lines = out.decode().strip().splitlines()
    assert lines, f"probe printed nothing; stderr: {err.decode()}"
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def connect(
    net: SandboxNetwork, lease: NetLease, host: str, port: int, proto: str = "tcp"
) -> dict[str, Any]:
    return run_in(net, lease, CONNECT, host, str(port), proto)
