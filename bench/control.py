"""``python -m bench.control``: the control plane's REST API under a large store.

Seeds a store with 10 000 profiles, 200 servers and audit rows, first 10 000 and then
1 000 000 (``--quick``: 100 000), on SQLite and on a throwaway PostgreSQL, and measures
in-process requests to the real API app (no network: the figure is the API and the
database): the audit page (first page and a deep page by cursor, for a user and for an
administrator), the profile list and the overview. Reports p50/p99 and requests per
second at each size, the ratio of the large store's p99 to the small one's (a page size
bounds the answer, so it should stay near 1), and the database's query plan for the
audit page. Results: ``bench/results/control-<time>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import random
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

from gigmcp.api.app import build_api
from gigmcp.api.context import ApiConfig
from gigmcp.api.ratelimit import Rate
from gigmcp.control import apitokens, users
from gigmcp.control.users import Identity, RolePolicy
from gigmcp.store.db import make_engine, migrate
from gigmcp.store.models import AuditRow, Profile, Server

ROOT = Path(__file__).resolve().parent.parent
PROFILES, SERVERS, USERS = 10_000, 200, 100
BATCH = 20_000
UNLIMITED = Rate(per_second=1e9, burst=1e9)  # the bench measures the API, not the limiter


def seed_people(engine: Engine) -> tuple[Any, Any]:
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
            [{"slug": f"p-{i}", "owner_id": people[i % USERS].user_id} for i in range(PROFILES)],
        )
    return admin, people[0]


def add_audit(engine: Engine, count: int, user_ids: list[int], rng: random.Random) -> None:
    now = datetime.now(UTC)
    done = 0
    while done < count:
        n = min(BATCH, count - done)
        rows = [
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
        with engine.begin() as conn:
            conn.execute(insert(AuditRow), rows)
        done += n
    with engine.begin() as conn:
        conn.execute(text("ANALYZE"))


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
        out["audit_page_user"] = await timed(c, "/api/v1/audit?limit=50", hu, n)
        out["audit_page_admin"] = await timed(c, "/api/v1/audit?limit=50", ha, n)
        out["audit_deep_page_admin"] = await timed(c, deep, ha, n)
        out["audit_page_user_filtered"] = await timed(
            c, "/api/v1/audit?limit=50&server=srv-7", hu, n
        )
        out["profiles_user"] = await timed(c, "/api/v1/profiles", hu, n)
        out["overview_user"] = await timed(c, "/api/v1/overview", hu, max(10, n // 10))
    return out


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
    small, large = (result["sizes"][str(s)] for s in (sizes[0], sizes[-1]))
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
                f"p99 ratios large/small {results[db]['ratios_p99_large_over_small']}"
            )
    print(f"bench.control: results in {out}")


if __name__ == "__main__":
    main()
