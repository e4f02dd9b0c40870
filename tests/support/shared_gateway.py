"""The gateway the endpoint and router tests share, started for real.

``alpha_and_beta`` starts one ``gigmcp serve`` (through :func:`tests.support.gateway.gateway`)
with two profiles: ``alpha`` (server-everything, server-memory and mcp-server-time) and
``beta`` (server-memory), and the Inspector's origin allowed. The ``gw`` fixtures of
tests/endpoint/conftest.py and tests/router/conftest.py yield it, once per module.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from tests.support.gateway import EVERYTHING, MEMORY, TIME, GatewayProc, gateway


@contextlib.contextmanager
def alpha_and_beta(tmp: Path) -> Iterator[GatewayProc]:
    with gateway(tmp, GIG_ALLOWED_ORIGINS="http://localhost:6274") as g:
        g.add_server("everything", EVERYTHING)
        g.add_server("memory", MEMORY, "--env", f"MEMORY_FILE_PATH={tmp / 'memory.jsonl'}")
        g.add_server("time", TIME)
        g.profile("alpha", "everything", "memory", "time")
        g.profile("beta", "memory")
        g.start()
        yield g
