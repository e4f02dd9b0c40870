"""Rate limits of the control plane, in-process over the real API app and store: a
flood of failed sign-in attempts or of calls gets 429 with Retry-After; X-Forwarded-For counts
only from a configured proxy, so a client cannot dodge its bucket by inventing
addresses."""

from __future__ import annotations

from pathlib import Path

import httpx2 as httpx

from gigmcp.api import ratelimit
from gigmcp.api.app import build_api
from gigmcp.api.context import ApiConfig
from gigmcp.control import actor, apitokens, websessions
from gigmcp.store.db import make_engine, migrate


def client(
    tmp_path: Path,
    proxies: tuple[str, ...] = (),
    user_rate: ratelimit.Rate = ratelimit.API_PER_USER,
) -> tuple[httpx.AsyncClient, ApiConfig]:
    engine = make_engine(f"sqlite:///{tmp_path / 'g.db'}")
    migrate(engine)
    cfg = ApiConfig(
        engine,
        "http://127.0.0.1:1",
        False,
        login_links=True,
        trusted_proxies=proxies,
        user_rate=user_rate,
    )
    transport = httpx.ASGITransport(app=build_api(cfg))  # the peer is 127.0.0.1
    return httpx.AsyncClient(transport=transport, base_url="http://t"), cfg


async def test_attack_a_sign_in_flood_gets_429(tmp_path: Path) -> None:
    c, _ = client(tmp_path)
    async with c:
        answers = [await c.get("/api/auth/link?token=gig_ll_x") for _ in range(40)]
    statuses = [r.status_code for r in answers]
    assert statuses[:20] == [401] * 20  # a person's worth of attempts: answered
    assert statuses.count(429) >= 15  # the rest, but for what refilled meanwhile
    last = answers[-1]
    assert last.status_code == 429 and last.headers["retry-after"] == "60"
    assert last.json()["code"] == "rate-limited"


async def test_attack_invented_forwarded_addresses_do_not_reset_the_bucket(tmp_path: Path) -> None:
    c, _ = client(tmp_path)  # no trusted proxy: X-Forwarded-For means nothing
    async with c:
        statuses = [
            (
                await c.get("/api/auth/link", headers={"X-Forwarded-For": f"198.51.100.{i}"})
            ).status_code
            for i in range(30)
        ]
    assert 429 in statuses


async def test_a_trusted_proxy_names_the_client(tmp_path: Path) -> None:
    c, _ = client(tmp_path, proxies=("127.0.0.1/32",))
    async with c:
        statuses = [
            (
                await c.get("/api/auth/link", headers={"X-Forwarded-For": f"198.51.100.{i}"})
            ).status_code
            for i in range(30)
        ]
    assert 429 not in statuses  # thirty people behind one proxy


async def test_a_user_calling_too_fast_gets_429(tmp_path: Path) -> None:
    slow = ratelimit.Rate(per_second=0.01, burst=5)
    c, cfg = client(tmp_path, proxies=("127.0.0.1/32",), user_rate=slow)
    admin = actor.local_admin(cfg.engine)
    _, token = apitokens.mint(cfg.engine, admin, "busy", "read", None)
    bearer = {"Authorization": f"Bearer {token}"}
    async with c:
        # Spread over addresses, so only the per-user bucket can say no.
        statuses = [
            (
                await c.get(
                    "/api/v1/me",
                    headers={**bearer, "X-Forwarded-For": f"10.0.{i // 250}.{i % 250}"},
                )
            ).status_code
            for i in range(10)
        ]
    assert statuses[:5] == [200] * 5 and statuses[5:] == [429] * 5
    assert websessions.list_sessions(cfg.engine, admin, None) == []


def test_client_address_trusts_forwarded_for_only_from_a_proxy() -> None:
    proxies = ratelimit.parse_proxies(["10.0.0.0/8"])
    assert ratelimit.client_address("203.0.113.9", "1.2.3.4", proxies) == "203.0.113.9"
    assert ratelimit.client_address("10.1.1.1", "1.2.3.4, 10.2.2.2", proxies) == "1.2.3.4"
    assert ratelimit.client_address("10.1.1.1", "not-an-ip", proxies) == "10.1.1.1"
    assert ratelimit.client_address("10.1.1.1", None, proxies) == "10.1.1.1"
    assert ratelimit.client_address(None, "1.2.3.4", proxies) == "unknown"


def test_buckets_refill_and_stay_bounded() -> None:
    b = ratelimit.Buckets(ratelimit.Rate(per_second=1, burst=2))
    assert b.has("a", now=0.0) and b.has("a", now=0.0)  # looking takes nothing
    assert [b.allow("a", now=0.0) for _ in range(3)] == [True, True, False]
    assert not b.has("a", now=0.0)
    assert b.allow("a", now=1.0)
    for i in range(ratelimit.MAX_BUCKETS + 10):
        b.allow(f"k{i}", now=2.0)
    assert len(b._buckets) == ratelimit.MAX_BUCKETS
