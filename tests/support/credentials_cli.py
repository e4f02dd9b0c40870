"""``gigmcp`` as an operator runs it for the credential tests: a fresh data dir, a master key.

``run`` calls the real command line with only ``PATH``, ``GIG_DATA_DIR``, ``HOME`` and
``GIG_MASTER_KEY`` (``OLD``, unless the test passes another) in its environment;
``add_server`` adds a server ``github`` that declares one sealed credential (``CRED``,
for ``api.github.com``). ``SECRET`` is the canary value the tests set and then search for.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

GIGMCP = str(Path(sys.executable).parent / "gigmcp")
SECRET = "ghp_cli_CANARY_0f9e8d7c6b5a4f3e2d1c"
OLD, NEW = "11" * 32, "22" * 32
CRED = {
    "id": "github_token",
    "type": "api_key",
    "env": "GITHUB_TOKEN",
    "inject": {"header": "Authorization", "format": "Bearer {token}"},
}


def run(
    tmp: Path, *args: str, stdin: str | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    base = {"PATH": os.environ["PATH"], "GIG_DATA_DIR": str(tmp), "HOME": str(tmp)}
    return subprocess.run(
        [GIGMCP, *args], env={**base, "GIG_MASTER_KEY": OLD, **env}, input=stdin,
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def add_server(tmp: Path) -> None:
    out = run(
        tmp, "server", "add", "github", "--egress", "api.github.com",
        "--credential", json.dumps(CRED), "--", "/bin/cat",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
