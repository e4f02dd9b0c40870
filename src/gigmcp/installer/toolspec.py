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
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from gigmcp import filemodes
from gigmcp.core.definitions import CredentialDef
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
    folder: Path,
    spec: Mapping[str, Any],
    credentials: Sequence[CredentialDef],
    python: str = PYTHON,
) -> tuple[list[str], str]:
    """The engine and its input in ``folder``; returns the command and working directory.

    An existing folder is kept as it is: its name carries the consented runtime hash, so
    its input cannot differ, and a running server's files are never replaced under it
    (not even by a newer gateway's engine). A new one is written to a staging folder
    beside it and renamed into place, so a failure leaves nothing."""
    if not (folder / "input.json").exists():
        data = launch.engine_input(spec, engine_credentials(credentials), None)
        filemodes.public_dirs(folder.parent)  # 0755 whatever the gateway's umask
        stage = Path(tempfile.mkdtemp(prefix=".staging-", dir=folder.parent))
        try:
            os.chmod(stage, 0o755)  # noqa: S103 - the jails' uids read it (read-only bind)
            (stage / "engine").mkdir(mode=0o755)
            os.chmod(stage / "engine", 0o755)  # noqa: S103 - as above, whatever the umask
            for entry in sorted(os.listdir(launch.ENGINE_DIR)):
                if entry.endswith(".py"):
                    shutil.copyfile(
                        os.path.join(launch.ENGINE_DIR, entry), stage / "engine" / entry
                    )
                    os.chmod(stage / "engine" / entry, 0o644)
            (stage / "input.json").write_bytes(data)
            os.chmod(stage / "input.json", 0o644)
            os.replace(stage, folder)
        except BaseException:
            shutil.rmtree(stage, ignore_errors=True)
            raise
    command = launch.command(python, str(folder / "engine"), str(folder / "input.json"))
    return list(command), str(folder)
