"""The environment of a tool an install runs (npm, pip, ``python -m venv``): built from
nothing, never the gateway's own.

Owns which of the gateway's variables such a tool may see: what every program needs
(``PATH``, ``HOME``, locale, ``TMPDIR``) and the host's outbound proxy and CA settings,
without which a download fails on a host that has them; plus what the caller names.
Where packages come from is not among them: the installers pass the operator's
registry, index and cache settings as arguments. It must never copy a variable it does
not name: the gateway's environment may hold secrets (a master key, a database
password, whatever the service manager put there).
"""

from __future__ import annotations

import os
from collections.abc import Iterable

BASE = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR")
NETWORK = (
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "NO_PROXY",
    "no_proxy",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
)
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"


def child_env(names: Iterable[str] = ()) -> dict[str, str]:
    """:data:`BASE`, :data:`NETWORK` and ``names``, those the gateway has, and nothing else."""
    env = {k: os.environ[k] for k in (*BASE, *NETWORK, *names) if k in os.environ}
    env.setdefault("PATH", DEFAULT_PATH)
    return env
