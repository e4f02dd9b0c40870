"""The REST API in process for route tests: an API on a migrated database of each kind,
three signed-in people (an administrator, alice and bob) with write API tokens, and an
httpx client on it. Shared by tests/api/test_routes.py and the route tests that follow
its shape."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx2 as httpx

from gigmcp.api.app import build_api
from gigmcp.api.context import ApiConfig
from gigmcp.control import actor, apitokens, users
from gigmcp.control.users import Identity, RolePolicy
from gigmcp.store.db import make_engine, migrate
from gigmcp.vault.keys import Keyring, MasterKey


@dataclass
class World:
    c: httpx.AsyncClient
    cfg: ApiConfig
    alice: dict[str, str]
    bob: dict[str, str]
    admin: dict[str, str]
    people: dict[str, actor.Actor]


def bearer(cfg: ApiConfig, who: actor.Actor) -> dict[str, str]:
    _, token = apitokens.mint(cfg.engine, who, "test", "write", None)
    return {"Authorization": f"Bearer {token}"}


@contextlib.asynccontextmanager
async def api_world(database_url: str, tmp_path: Path) -> AsyncIterator[World]:
    engine = make_engine(database_url)
    migrate(engine)
    cfg = ApiConfig(
        engine, "http://127.0.0.1:1", False, keyring=Keyring(MasterKey(bytes(range(32)))),
        logs_dir=tmp_path / "logs",
    )  # fmt: skip
    policy = RolePolicy(admin_subjects=frozenset({"root"}))
    people = {
        name: users.sign_in(engine, Identity("https://idp.test", name), policy)
        for name in ("root", "alice", "bob")
    }
    transport = httpx.ASGITransport(app=build_api(cfg))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            yield World(
                c, cfg, bearer(cfg, people["alice"]), bearer(cfg, people["bob"]),
                bearer(cfg, people["root"]), people,
            )  # fmt: skip
    finally:
        engine.dispose()
