from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.gateway import GatewayProc
from tests.support.shared_gateway import alpha_and_beta


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProc]:
    """A gateway with two profiles: `alpha` (everything + memory + time) and `beta` (memory)."""
    tmp: Path = tmp_path_factory.mktemp("gw")
    with alpha_and_beta(tmp) as g:
        yield g
