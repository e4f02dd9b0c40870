from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.gateway import EVERYTHING, MEMORY, TIME, GatewayProc, gateway


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProc]:
    """A gateway with two profiles: `alpha` (everything + memory + time) and `beta` (memory)."""
    tmp: Path = tmp_path_factory.mktemp("gw")
    with gateway(tmp, GIG_ALLOWED_ORIGINS="http://localhost:6274") as g:
        g.add_server("everything", EVERYTHING)
        g.add_server("memory", MEMORY, "--env", f"MEMORY_FILE_PATH={tmp / 'memory.jsonl'}")
        g.add_server("time", TIME)
        g.profile("alpha", "everything", "memory", "time")
        g.profile("beta", "memory")
        g.start()
        yield g
