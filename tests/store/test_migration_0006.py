"""Migration 0006: registry servers installed when installs still granted port 80 lose
plain HTTP.

Registry installs used to store the egress default of their day, ports [443, 80]
(``Egress.to_json`` always wrote ports); they now get 443 only (``egress_grant``). A
grant already in the database is what the proxy enforces, so the old rows keep port 80
open — where anyone on the path reads and answers a server's requests — until they are
rewritten. Rows are made at revision 0005, as an older gateway left them, on SQLite and
on PostgreSQL, then migrated to the head. Servers added by hand keep whatever the
operator chose.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from gigmcp.store.db import make_engine, migrate

ORIGIN = {"kind": "oci", "name": "chat-mcp", "version": "1.4.2", "runtime_hash": "r" * 64,
          "manifest": {}}  # fmt: skip
HOSTS = ["api.example.com"]


@pytest.fixture
def at_0005(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    migrate(engine, "0005")
    try:
        yield engine
    finally:
        engine.dispose()


def _tables(engine: Engine) -> tuple[sa.Table, sa.Table]:
    meta = sa.MetaData()
    meta.reflect(engine, only=["users", "servers"])
    servers = meta.tables["servers"]
    # Reflection sees JSON columns as JSON on PostgreSQL but not always on SQLite.
    for name in ("command", "env", "env_names", "egress", "origin", "pending"):
        servers.c[name].type = sa.JSON()
    return meta.tables["users"], servers


def _add(engine: Engine, rows: dict[str, dict[str, Any]]) -> None:
    users, servers = _tables(engine)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        uid = conn.execute(
            users.insert().values(issuer="local", subject="root", role="admin", created_at=now)
        ).inserted_primary_key[0]
        for name, row in rows.items():
            values = {"name": name, "owner_id": uid, "command": ["/bin/true"], "env": {},
                      "env_names": [], "created_at": now, "limits": {}, "credentials": [],
                      **row}  # fmt: skip
            if values.get("origin") is None:
                # SQL NULL, as a hand-added server's row has it (not JSON null).
                values["origin"] = sa.null()
            conn.execute(servers.insert().values(**values))


def _rows(engine: Engine) -> dict[str, tuple[Any, Any]]:
    _, servers = _tables(engine)
    with engine.connect() as conn:
        found = conn.execute(sa.select(servers.c.name, servers.c.egress, servers.c.pending))
        return {name: (egress, pending) for name, egress, pending in found}


def test_attack_registry_servers_installed_before_lose_plain_http(at_0005: Engine) -> None:
    staged = {"command": ["/bin/true"], "cwd": None, "env": {}, "credentials": [],
              "egress": {"hosts": HOSTS, "ports": [443, 80]},
              "origin": dict(ORIGIN, version="1.5.0")}  # fmt: skip
    _add(
        at_0005,
        {
            # What a registry install wrote before: the default of its day.
            "reg-old": {"origin": ORIGIN, "egress": {"hosts": HOSTS, "ports": [443, 80]}},
            "reg-80-first": {"origin": ORIGIN, "egress": {"hosts": HOSTS, "ports": [80, 443]}},
            # An upgrade awaiting consent carries the same old grant: consenting to it
            # later must not bring port 80 back.
            "reg-pending": {
                "origin": ORIGIN,
                "egress": {"hosts": HOSTS, "ports": [443, 80]},
                "pending": staged,
            },
        },
    )
    migrate(at_0005)
    rows = _rows(at_0005)
    assert rows["reg-old"][0] == {"hosts": HOSTS, "ports": [443]}
    assert rows["reg-80-first"][0] == {"hosts": HOSTS, "ports": [443]}
    egress, pending = rows["reg-pending"]
    assert egress == {"hosts": HOSTS, "ports": [443]}
    assert pending == dict(staged, egress={"hosts": HOSTS, "ports": [443]})


def test_only_plain_http_is_taken_and_hand_added_servers_are_left_as_chosen(
    at_0005: Engine,
) -> None:
    hand = {"hosts": HOSTS, "ports": [443, 80]}
    _add(
        at_0005,
        {
            # Added by command: the operator chose port 80 (no credential is ever sent
            # on it: credentials go on 443 only); the migration does not second-guess
            # that.
            "hand": {"origin": None, "egress": hand},
            # A port the operator allowed on top stays; only plain HTTP goes.
            "reg-extra": {"origin": ORIGIN, "egress": {"hosts": HOSTS, "ports": [443, 80, 8443]}},
            "reg-https": {"origin": ORIGIN, "egress": {"hosts": HOSTS, "ports": [443]}},
            "reg-no-ports": {"origin": ORIGIN, "egress": {"hosts": HOSTS}},
        },
    )
    migrate(at_0005)
    rows = _rows(at_0005)
    assert rows["hand"] == (hand, None)
    assert rows["reg-extra"][0] == {"hosts": HOSTS, "ports": [443, 8443]}
    assert rows["reg-https"][0] == {"hosts": HOSTS, "ports": [443]}
    assert rows["reg-no-ports"][0] == {"hosts": HOSTS}
