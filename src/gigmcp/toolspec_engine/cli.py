"""The engine's command line: ``<python> -m gigmcp.toolspec_engine INPUT.json``.

Owns start-up: read and check the input file, set up TLS and the proxy route, keep
stdout for protocol messages alone (``print`` goes to stderr from here on), then serve
stdin until it closes. A bad input or environment stops start-up with exit status 2 and
one line on stderr naming what is wrong. It must never print a credential value (it
only checks that each credential's variable is set) nor anything but protocol on stdout.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Sequence

from . import ENGINE_NAME, ENGINE_VERSION
from .rpc import Server
from .spec import MAX_INPUT_BYTES, InputError, load_input
from .upstream import Client

USAGE = (
    "usage: python3 -m gigmcp.toolspec_engine INPUT.json\n"
    "   or: python3 -I -S <path to the toolspec_engine folder> INPUT.json"
)

_log_lock = threading.Lock()


def log(message: str) -> None:
    with _log_lock:
        sys.stderr.write(f"{ENGINE_NAME}: {message}\n")
        sys.stderr.flush()


def main(argv: Sequence[str]) -> int:
    if len(argv) != 1 or argv[0] in ("-h", "--help"):
        sys.stderr.write(USAGE + "\n")
        return 2
    path = argv[0]
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_INPUT_BYTES + 1)
    except OSError as exc:
        log(f"cannot read the input {path}: {exc.strerror or type(exc).__name__}")
        return 2
    try:
        engine = load_input(data)
        client = Client(engine.limits, os.environ)
    except (InputError, ValueError) as exc:
        log(str(exc))
        return 2
    for credential in engine.credentials:
        if not os.environ.get(credential.env):
            log(f"the credential variable {credential.env} is not set: calls will fail")
    log(
        f"{ENGINE_VERSION} serving {engine.name}@{engine.version}: {len(engine.tools)} tools, "
        f"{len(engine.credentials)} credential header(s)"
    )
    out = sys.stdout.buffer
    # Anything printed by accident must not land in the protocol stream.
    sys.stdout = sys.stderr
    Server(engine, client, os.environ, out, log).serve(sys.stdin.buffer)
    return 0
