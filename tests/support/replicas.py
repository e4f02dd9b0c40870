"""Several real gateway processes on one PostgreSQL database, as replicas behind a load
balancer are deployed: each its own data directory and its own servers, one database
and one master key between them.

``replica_set`` makes a new database on the throwaway cluster, configures it through
the first replica's command line (servers, the ``alpha`` profile, a token every replica
accepts since they read the same store), and starts them all. ``replica_id`` reads the
name a replica goes by on the bus from its log.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

from tests.support.databases import _new_database
from tests.support.gateway import EVERYTHING, GatewayProc, gateway

_REPLICA = re.compile(r"replica ([0-9a-f]{12}) ")


@contextlib.contextmanager
def replica_set(
    tmp: Path,
    pg_socket_dir: str,
    servers: dict[str, tuple[str, ...]],
    count: int = 2,
    **env: str,
) -> Iterator[list[GatewayProc]]:
    url = _new_database(pg_socket_dir)
    with contextlib.ExitStack() as stack:
        replicas: list[GatewayProc] = []
        for i in range(count):
            home = tmp / f"replica{i}"
            home.mkdir()
            replicas.append(stack.enter_context(gateway(home, GIG_DATABASE_URL=url, **env)))
        first = replicas[0]
        for name, command in servers.items():
            first.add_server(name, command)
        first.profile("alpha", *servers)
        for other in replicas[1:]:
            other.tokens = first.tokens
        for replica in replicas:
            replica.start()
        yield replicas


def database_name(gw: GatewayProc) -> str:
    """The name of the database the replicas share."""
    return urlsplit(gw.env["GIG_DATABASE_URL"]).path.lstrip("/")


def replica_id(gw: GatewayProc, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        found = _REPLICA.search(gw.output())
        if found:
            return found.group(1)
        if time.monotonic() > deadline:
            raise AssertionError(f"the replica never said its name: {gw.output()[-2000:]}")
        time.sleep(0.05)


__all__ = ["EVERYTHING", "database_name", "replica_id", "replica_set"]
