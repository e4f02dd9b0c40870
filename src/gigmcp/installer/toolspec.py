"""Laying out a toolspec server: the project's engine and its input, ready to jail.

A toolspec entry has no package of its own: it runs ``gigmcp.toolspec_engine`` with the
validated spec. The engine's files are copied next to the input into the server's own
folder, so the jail binds that folder alone (read-only) — not the gateway's source tree
or venv — and a later upgrade of the gateway cannot change a running server under it.
The command is the host's bare Python (``-I -S``: no site-packages, no environment).

Owns that folder's contents and the engine's credential entries (the variable of each
credential holds its per-launch placeholder; the proxy puts the real value in the
header). It must never write a credential value anywhere.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from gigmcp.credentials.definitions import CredentialDef
from gigmcp.toolspec_engine import launch

PYTHON = "/usr/bin/python3"


def engine_credentials(credentials: Sequence[CredentialDef]) -> list[dict[str, str]]:
    out = []
    for cred in credentials:
        if cred.sealed:
            assert cred.header is not None
            assert cred.format is not None
            out.append({"header": cred.header, "format": cred.format, "env": cred.env})
        else:
            # Entrusted: the toolspec's own auth block says which header carries it.
            out.append({"env": cred.env})
    return out


def lay_out(
    target: Path,
    spec: Mapping[str, Any],
    credentials: Sequence[CredentialDef],
    python: str = PYTHON,
) -> tuple[list[str], str]:
    """Write the engine and its input under ``target`` (a fresh folder); return the
    command and working directory."""
    data = launch.engine_input(spec, engine_credentials(credentials), None)
    engine = target / "engine"
    engine.mkdir(parents=True, mode=0o755)
    for entry in sorted(os.listdir(launch.ENGINE_DIR)):
        if entry.endswith(".py"):
            shutil.copyfile(os.path.join(launch.ENGINE_DIR, entry), engine / entry)
            os.chmod(engine / entry, 0o644)
    (target / "input.json").write_bytes(data)
    os.chmod(target / "input.json", 0o644)
    return list(launch.command(python, str(engine), str(target / "input.json"))), str(target)
