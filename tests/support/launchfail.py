"""Servers that cannot start, built for real, and the client's view of their failure.

Owns making, on this host's own files, the launch failures users meet: a Python installed
pyenv-style inside a private (0700) folder, like ``/root/.pyenv``, with a virtual
environment made from it; a command under a folder whose name gives the host away; and
calling a tool through a running gateway as a plain JSON-RPC client, so a test sees the
whole error object a token holder gets. Scratch folders live under ``/var/tmp``: not
under pytest's own tmp (0700, which the jail could not enter either) nor under ``/tmp``
(the jail covers it with a tmpfs). It must never leave a folder behind or stand in for
the jail.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.support.gateway import SERVERS, GatewayProc
from tests.support.mcp_http import modern_body, modern_headers, post

TINY = SERVERS / "tiny.py"
REF = re.compile(r"\(ref ([0-9a-f]{8})\)")


@contextlib.contextmanager
def scratch(prefix: str) -> Iterator[Path]:
    """A folder every user can enter (so only what a test locks is locked)."""
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir="/var/tmp"))
    try:
        folder.chmod(0o755)
        yield folder
    finally:
        with contextlib.suppress(FileNotFoundError):
            _open_up(folder)  # a locked sub-folder must not stop the removal
            shutil.rmtree(folder)


def _open_up(root: Path) -> None:
    for dirpath, dirs, files in os.walk(root):
        os.chmod(dirpath, 0o755)
        for name in dirs:
            os.chmod(os.path.join(dirpath, name), 0o755)
        for name in files:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path):
                os.chmod(path, os.stat(path).st_mode | 0o044)


def private_python(root: Path) -> tuple[Path, Path]:
    """A Python installed the way pyenv installs one under /root: a prefix of its own
    (``bin/python3.X`` and ``lib/python3.X``) inside a home folder of mode 0700. Returns
    (the interpreter, the private home folder)."""
    real = Path(os.path.realpath("/usr/bin/python3"))  # /usr/bin/python3.11
    home = root / "home"
    prefix = home / ".pyenv" / "versions" / "3"
    (prefix / "bin").mkdir(parents=True)
    (prefix / "lib").mkdir()
    interpreter = prefix / "bin" / real.name
    shutil.copy2(real, interpreter)
    # Its standard library, where a Python finds it: next to its own prefix.
    (prefix / "lib" / real.name).symlink_to(f"/usr/lib/{real.name}")
    _open_up(home)
    home.chmod(0o700)
    return interpreter, home


def venv_server(root: Path, interpreter: Path) -> tuple[str, ...]:
    """A virtual environment made from ``interpreter`` (no pip: the server needs none)
    with the tiny server beside it; the command that runs it, as an operator adds it."""
    srv = root / "srv"
    srv.mkdir()
    subprocess.run([str(interpreter), "-m", "venv", "--without-pip", str(srv / "venv")], check=True)
    shutil.copy(TINY, srv / "tiny.py")
    _open_up(srv)
    return (str(srv / "venv" / "bin" / "python"), str(srv / "tiny.py"))


def call_tool(gw: GatewayProc, profile: str, tool: str, args: dict[str, Any]) -> dict[str, Any]:
    """A modern (stateless) ``tools/call`` as raw JSON-RPC; returns the whole reply."""
    body = modern_body("tools/call", {"name": tool, "arguments": args})
    reply = post(gw, profile, body, modern_headers(gw.tokens[profile], "tools/call", tool))
    assert reply.status_code == 200, reply.text
    if reply.headers.get("content-type", "").startswith("text/event-stream"):
        # A slow answer (a cold jail) may come as a stream: the reply is its last event.
        events = [line[5:].strip() for line in reply.text.splitlines() if line.startswith("data:")]
        answer: dict[str, Any] = json.loads(events[-1])
        return answer
    parsed: dict[str, Any] = reply.json()
    return parsed


def error_ref(reply: dict[str, Any]) -> str:
    """The correlation id of a reply's JSON-RPC error (asserting there is one)."""
    assert "error" in reply, reply
    found = REF.search(reply["error"]["message"])
    assert found is not None, f"no correlation id in {reply['error']!r}"
    return found.group(1)


def server_log(gw: GatewayProc, server: str, profile: str) -> str:
    return gw.cli("server", "logs", server, "--profile", profile).stdout
