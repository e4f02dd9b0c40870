"""``python -m bench.control``: the control plane's REST API under a large store.

Seeds a store with 10 000 profiles, 200 servers and audit rows, first 10 000 and then
1 000 000 (``--quick``: 100 000), on SQLite and on a throwaway PostgreSQL, and measures
in-process requests to the real API app (no network: the figure is the API and the
database): the audit page (first page and a deep page by cursor, for a user and for an
administrator, and filtered by server, profile and kind), the profile list and the
overview (from the roll-up counters, which the seeding fills through the writers' own
function). Reports p50/p99 and requests per second at each size, the ratio of the large
store's p99 to the small one's (a page size bounds the answer, so it should stay near
1), and the database's query plans for the audit pages.

Then the sign-in round trip, on each database: a one-time link redeemed and the session
used (the embedded default), and the whole OpenID Connect code flow against the real
``oidc-provider`` of the tests (Node 22 on loopback; the browser's part is plain HTTP,
the user already signed in at the provider as on a second sign-in): the gateway's
redirect, the provider's authorize step, the callback (code exchange, ID token checks,
user and session rows) and the first API call. Results:
``bench/results/control-<time>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import random
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2 as httpx
from sqlalchemy import Engine, event, insert, text
from sqlalchemy.orm import Session

from gigmcp.api.app import build_api
from gigmcp.api.context import ApiConfig
from gigmcp.api.ratelimit import Rate
from gigmcp.control import apitokens, loginlinks, users
from gigmcp.control.users import Identity, RolePolicy
from gigmcp.store import activity
from gigmcp.store.db import make_engine, migrate
from gigmcp.store.models import AuditRow, Profile, Server

ROOT = Path(__file__).resolve().parent.parent
PROFILES, SERVERS, USERS = 10_000, 200, 100
BATCH = 20_000
UNLIMITED = Rate(per_second=1e9, burst=1e9)  # the bench measures the API, not the limiter
# The audit page's filters (name: who asks, what): each has an index ending in (at, id).
FILTERED = [
    ("user_by_server", "/api/v1/audit?limit=50&server=srv-7"),
    ("user_by_profile", "/api/v1/audit?limit=50&profile=p-100"),
    ("admin_by_server", "/api/v1/audit?limit=50&server=srv-7"),
    ("admin_by_rare_kind", "/api/v1/audit?limit=50&action=user.sign_in"),
]


def seed_people(engine: Engine, profiles_count: int = PROFILES) -> tuple[Any, Any]:
    policy = RolePolicy(admin_subjects=frozenset({"root"}))
    admin = users.sign_in(engine, Identity("https://idp.bench", "root"), policy)
    people = [
        users.sign_in(engine, Identity("https://idp.bench", f"u{i}"), policy) for i in range(USERS)
    ]
    with engine.begin() as conn:
        conn.execute(
            insert(Server),
            [
                {
                    "name": f"srv-{i}",
                    "owner_id": admin.user_id,
                    "command": ["/bin/true"],
                    "env": {},
                    "env_names": [],
                }
                for i in range(SERVERS)
            ],
        )
        conn.execute(
            insert(Profile),
            [
                {"slug": f"p-{i}", "owner_id": people[i % USERS].user_id}
                for i in range(profiles_count)
            ],
        )
    return admin, people[0]


def add_audit(engine: Engine, count: int, user_ids: list[int], rng: random.Random) -> None:
    now = datetime.now(UTC)
    done = 0
    while done < count:
        n = min(BATCH, count - done)
        rows: list[dict[str, Any]] = [
            {
                "at": now - timedelta(seconds=rng.randrange(180 * 86400)),
                "action": "tools/call",
                "outcome": "ok" if rng.random() > 0.05 else "error",
                "user_id": rng.choice(user_ids),
                "profile_id": rng.randrange(1, PROFILES + 1),
                "server": f"srv-{rng.randrange(SERVERS)}",
                "tool": f"tool-{rng.randrange(20)}",
                "duration_ms": 12.5,
                "arg_bytes": 64,
            }
            for _ in range(n)
        ]
        with Session(engine) as session, session.begin():
            session.execute(insert(AuditRow), rows)
            # The counters the overview reads, through the writers' own function.
            activity.add_calls(
                session,
                (
                    activity.Call(
                        r["at"], r["user_id"], r["server"], r["tool"], r["outcome"] != "ok"
                    )
                    for r in rows
                ),
            )
        done += n
    # Measured in steady state, as a running gateway's tables are: planner statistics,
    # and on PostgreSQL the bulk load vacuumed (else the first reads set hint bits and
    # autovacuum works through a million new rows during the measurement).
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE" if engine.dialect.name == "postgresql" else "ANALYZE"))


@contextmanager
def captured_sql(engine: Engine) -> Iterator[list[tuple[str, Any]]]:
    seen: list[tuple[str, Any]] = []

    def grab(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
        if "audit_events" in statement and "ORDER BY" in statement:
            seen.append((statement, params))

    event.listen(engine, "before_cursor_execute", grab)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", grab)


def plan(engine: Engine, statement: str, params: Any) -> list[str]:
    prefix = "EXPLAIN QUERY PLAN " if engine.dialect.name == "sqlite" else "EXPLAIN "
    with engine.connect() as conn:
        raw = conn.exec_driver_sql(prefix + statement, params)
        return [" ".join(str(c) for c in row) for row in raw]


async def timed(
    c: httpx.AsyncClient, url: str, headers: dict[str, str], n: int
) -> dict[str, float]:
    times = []
    for _ in range(5):
        (await c.get(url, headers=headers)).raise_for_status()
    start = time.perf_counter()
    for _ in range(n):
        t = time.perf_counter()
        r = await c.get(url, headers=headers)
        times.append((time.perf_counter() - t) * 1000)
        r.raise_for_status()
    total = time.perf_counter() - start
    times.sort()
    return {
        "p50_ms": round(statistics.median(times), 3),
        "p99_ms": round(times[min(len(times) - 1, int(len(times) * 0.99))], 3),
        "per_s": round(n / total, 1),
    }


async def measure(engine: Engine, admin: Any, user: Any, n: int) -> dict[str, Any]:
    cfg = ApiConfig(
        engine, "http://127.0.0.1:1", False, user_rate=UNLIMITED, address_rate=UNLIMITED
    )
    app = build_api(cfg)
    _, at = apitokens.mint(engine, admin, "bench-admin", "read", None)
    _, ut = apitokens.mint(engine, user, "bench-user", "read", None)
    ha, hu = {"Authorization": f"Bearer {at}"}, {"Authorization": f"Bearer {ut}"}
    out: dict[str, Any] = {}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        # A deep page: 100 pages in by cursor (keyset paging: as cheap as the first).
        cursor = None
        for _ in range(100):
            page = (
                await c.get(
                    "/api/v1/audit?limit=50" + (f"&after={cursor}" if cursor else ""), headers=ha
                )
            ).json()
            cursor = page["next"]
        deep = f"/api/v1/audit?limit=50&after={cursor}"
        with captured_sql(engine) as seen:
            await c.get("/api/v1/audit?limit=50", headers=hu)
        out["plan_user_audit_page"] = plan(engine, *seen[-1]) if seen else []
        with captured_sql(engine) as seen:
            await c.get(deep, headers=ha)
        out["plan_admin_deep_page"] = plan(engine, *seen[-1]) if seen else []
        for name, url in FILTERED:
            with captured_sql(engine) as seen:
                await c.get(url, headers=hu if name.startswith("user") else ha)
            out[f"plan_{name}"] = plan(engine, *seen[-1]) if seen else []
        out["audit_page_user"] = await timed(c, "/api/v1/audit?limit=50", hu, n)
        out["audit_page_admin"] = await timed(c, "/api/v1/audit?limit=50", ha, n)
        out["audit_deep_page_admin"] = await timed(c, deep, ha, n)
        for name, url in FILTERED:
            out[f"audit_page_{name}"] = await timed(
                c, url, hu if name.startswith("user") else ha, n
            )
        out["profiles_user"] = await timed(c, "/api/v1/profiles", hu, n)
        out["overview_user"] = await timed(c, "/api/v1/overview", hu, max(10, n // 4))
        out["overview_admin"] = await timed(c, "/api/v1/overview", ha, max(10, n // 4))
    return out


def round_trips(times: list[float], total: float) -> dict[str, float]:
    times.sort()
    return {
        "p50_ms": round(statistics.median(times), 3),
        "p99_ms": round(times[min(len(times) - 1, int(len(times) * 0.99))], 3),
        "per_s": round(len(times) / total, 1),
    }


async def link_sign_ins(engine: Engine, n: int) -> dict[str, float]:
    """Mint a one-time link (as `gigmcp login-link` does), redeem it, call /me."""
    cfg = ApiConfig(
        engine, "http://127.0.0.1:8080", False, login_links=True,
        user_rate=UNLIMITED, address_rate=UNLIMITED,
    )  # fmt: skip
    app = build_api(cfg)
    times = []
    start = time.perf_counter()
    for _ in range(n):
        t = time.perf_counter()
        token = loginlinks.mint(engine)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8080"
        ) as c:
            r = await c.get(f"/api/auth/link?token={token}")
            assert r.status_code in (302, 303), r.text
            (await c.get("/api/v1/me")).raise_for_status()
        times.append((time.perf_counter() - t) * 1000)
    return round_trips(times, time.perf_counter() - start)


def oidc_sign_ins(engine: Engine, n: int) -> dict[str, Any]:
    """The whole code flow against the real oidc-provider, ``n`` times for one user."""
    sys.path.insert(0, str(ROOT))
    from tests.support import oidc as peer

    reason = peer.missing()
    if reason:
        return {"skipped": reason}
    from gigmcp.oidc.flow import KEY_BYTES
    from gigmcp.oidc.provider import ClientConfig, Provider

    origin = "http://127.0.0.1:8080"
    callback = f"{origin}/api/auth/callback"
    client = peer.Client("gig-bench", [callback])
    with (
        tempfile.TemporaryDirectory() as tmp,
        peer.start_provider(
            Path(tmp), clients=[client], accounts=[peer.Account("alice", "pw", "alice@bench.test")]
        ) as idp,
    ):
        cfg = ApiConfig(
            engine, origin, False, user_rate=UNLIMITED, address_rate=UNLIMITED,
            oidc=Provider(ClientConfig(idp.issuer, client.client_id, callback)),
            flow_key=secrets.token_bytes(KEY_BYTES),
        )  # fmt: skip
        app = build_api(cfg)
        browser = httpx.Client()  # the provider's cookies: alice stays signed in there

        async def once() -> None:
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url=origin
            ) as gw:
                r = await gw.get("/api/auth/login")
                assert r.status_code == 303, r.text
                back = await asyncio.to_thread(
                    peer.browser_login, browser, r.headers["location"], "alice", "pw"
                )
                r = await gw.get(back.removeprefix(origin))
                assert r.status_code in (302, 303), r.text
                (await gw.get("/api/v1/me")).raise_for_status()

        async def run() -> dict[str, float]:
            for _ in range(3):
                await once()  # the first signs in at the provider and caches its keys
            times = []
            start = time.perf_counter()
            for _ in range(n):
                t = time.perf_counter()
                await once()
                times.append((time.perf_counter() - t) * 1000)
            return round_trips(times, time.perf_counter() - start)

        try:
            return asyncio.run(run())
        finally:
            browser.close()


def run_on(url: str, sizes: list[int], n: int) -> dict[str, Any]:
    engine = make_engine(url)
    migrate(engine)
    rng = random.Random(7)
    admin, user = seed_people(engine)
    ids = [admin.user_id, user.user_id, *range(user.user_id + 1, user.user_id + USERS)]
    result: dict[str, Any] = {"sizes": {}}
    have = 0
    for size in sizes:
        started = time.perf_counter()
        add_audit(engine, size - have, ids, rng)
        have = size
        seeded = time.perf_counter() - started
        print(
            f"  {engine.dialect.name}: {size} audit rows (seeded in {seeded:.1f} s)",
            file=sys.stderr,
        )
        result["sizes"][str(size)] = asyncio.run(measure(engine, admin, user, n))
    result["sign_in_link"] = asyncio.run(link_sign_ins(engine, max(20, n // 2)))
    result["sign_in_oidc"] = oidc_sign_ins(engine, max(20, n // 8))
    print(f"  {engine.dialect.name}: sign-in round trips measured", file=sys.stderr)
    small, large = (result["sizes"][str(s)] for s in (sizes[0], sizes[-1]))
    result["ratios_p50_large_over_small"] = {
        k: round(large[k]["p50_ms"] / small[k]["p50_ms"], 2)
        for k in large
        if isinstance(large[k], dict) and "p50_ms" in large[k]
    }
    # p99 on a shared machine catches other people's work too; both are reported.
    result["ratios_p99_large_over_small"] = {
        k: round(large[k]["p99_ms"] / small[k]["p99_ms"], 2)
        for k in large
        if isinstance(large[k], dict) and "p99_ms" in large[k]
    }
    engine.dispose()
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="100 000 rows at most, fewer requests")
    ap.add_argument("--no-postgres", action="store_true")
    args = ap.parse_args()
    sizes = [10_000, 100_000 if args.quick else 1_000_000]
    n = 100 if args.quick else 400
    results: dict[str, Any] = {
        "benchmark": "control plane REST API",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "cpus": __import__("os").cpu_count()},
        "profiles": PROFILES,
        "servers": SERVERS,
        "users": USERS + 1,
        "requests_per_case": n,
    }
    with tempfile.TemporaryDirectory() as tmp:
        results["sqlite"] = run_on(f"sqlite:///{tmp}/bench.db", sizes, n)
    if not args.no_postgres:
        sys.path.insert(0, str(ROOT))
        from tests.support.databases import throwaway_postgres

        with throwaway_postgres() as socket_dir:
            results["postgresql"] = run_on(
                f"postgresql://gig@/postgres?host={socket_dir}", sizes, n
            )
    out = ROOT / "bench" / "results" / f"control-{datetime.now(UTC):%Y%m%d-%H%M%S}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    for db in ("sqlite", "postgresql"):
        if db in results:
            big = results[db]["sizes"][str(sizes[-1])]
            print(
                f"{db}: at {sizes[-1]} rows, audit page p99 user {big['audit_page_user']['p99_ms']} ms, "
                f"admin {big['audit_page_admin']['p99_ms']} ms, deep {big['audit_deep_page_admin']['p99_ms']} ms; "
                f"p50 ratios large/small {results[db]['ratios_p50_large_over_small']}"
            )
            print(
                f"{db}: sign-in round trip, link {results[db]['sign_in_link']}, "
                f"OpenID Connect {results[db]['sign_in_oidc']}"
            )
    print(f"bench.control: results in {out}")


if __name__ == "__main__":
    main()
