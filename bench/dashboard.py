"""``python -m bench.dashboard``: every dashboard page's server time and size under a
large store.

Seeds a store (SQLite, and a throwaway PostgreSQL) with 200 servers, 100 profiles, 101
users and 1 000 000 audit rows (``--quick``: 100 000) through the writers' own roll-up
function, signs the whole registry catalog of ../shared (221 entries) as its index, then
requests each page in-process from the real control plane (the API and the dashboard
behind their guards; no network: the time is the page's, database included) as a user
and as an administrator. Reports p50/p95/p99 per page, the bytes of the HTML (a warm
cache holds the static files, which are named by content and kept for a year, so the
HTML is all a page transfers), and each static file's size, against the budgets: p95
at most 50 ms, at most 100 KB. Results: ``bench/results/dashboard-<time>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2 as httpx
from sqlalchemy import Engine

from bench.control import UNLIMITED, add_audit, seed_people
from gigmcp.api.context import ApiConfig
from gigmcp.control import profiles, websessions
from gigmcp.installer.index_fetch import RegistrySource
from gigmcp.store.db import make_engine, migrate
from gigmcp.vault.keys import Keyring, MasterKey
from gigmcp.web.app import build_control_plane

ROOT = Path(__file__).resolve().parent.parent
CATALOG = ROOT.parent / "shared" / "registry-catalog" / "manifests"
ORIGIN = "http://127.0.0.1:8080"
P95_BUDGET_MS, SIZE_BUDGET = 50.0, 100 * 1024
# (who, path): the pages a user and an administrator open with this store.
PAGES = [
    ("user", "/"),
    ("admin", "/"),
    ("user", "/catalog"),
    ("user", "/catalog/slack"),
    ("user", "/servers"),
    ("user", "/servers/srv-7"),
    ("user", "/profiles"),
    ("user", "/profiles/p-0"),
    ("user", "/credentials"),
    ("user", "/audit"),
    ("user", "/audit?server=srv-7"),
    ("admin", "/audit"),
    ("admin", "/users"),
    ("anonymous", "/sign-in"),
]


def signed_catalog(tmp: Path) -> RegistrySource:
    """The whole registry catalog of ../shared (221 entries), signed by the real CLI."""
    root = tmp / "registry"
    (root / "index").mkdir(parents=True)
    shutil.copytree(CATALOG, root / "manifests")
    env = {"PATH": "/usr/bin:/bin", "GIG_DATA_DIR": str(tmp / "cli"), "HOME": str(tmp)}
    gigmcp = str(Path(sys.executable).parent / "gigmcp")

    def cli(*args: str) -> str:
        done = subprocess.run([gigmcp, *args], env=env, check=True, capture_output=True, text=True)
        return done.stdout.strip()

    pub = cli("registry", "keygen", "--out", str(root / "key"))
    idx = root / "index" / "index.json"
    cli("registry", "build-index", str(root / "manifests"), "--out", str(idx))
    cli("registry", "sign", str(idx), "--key", str(root / "key"))
    return RegistrySource(f"file://{idx}", pub, tmp / "cache")


async def measure(engine: Engine, people: dict[str, Any], n: int, tmp: Path) -> dict[str, Any]:
    cfg = ApiConfig(
        engine, ORIGIN, False, keyring=Keyring(MasterKey(bytes(range(32)))),
        logs_dir=tmp / "logs", user_rate=UNLIMITED, address_rate=UNLIMITED,
        registry=signed_catalog(tmp) if CATALOG.is_dir() else None,
    )  # fmt: skip
    app = build_control_plane(cfg)
    out: dict[str, Any] = {}
    clients = {}
    for who, actor in people.items():
        c = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ORIGIN)
        if actor is not None:
            s = websessions.open_session(engine, actor, cfg.lifetimes, "bench")
            c.cookies.set(cfg.cookie_name, s.token)
        clients[who] = c
    try:
        for who, path in PAGES:
            c = clients[who]
            first = await c.get(path)
            if first.status_code != 200:
                out[f"{who} {path}"] = {"status": first.status_code}
                continue
            for _ in range(3):
                await c.get(path)
            times = []
            for _ in range(n):
                t = time.perf_counter()
                r = await c.get(path)
                times.append((time.perf_counter() - t) * 1000)
                r.raise_for_status()
            times.sort()
            p95 = times[min(n - 1, int(n * 0.95))]
            out[f"{who} {path}"] = {
                "p50_ms": round(statistics.median(times), 2),
                "p95_ms": round(p95, 2),
                "p99_ms": round(times[min(n - 1, int(n * 0.99))], 2),
                "html_bytes": len(first.content),
                "within_budget": p95 <= P95_BUDGET_MS and len(first.content) <= SIZE_BUDGET,
            }
        page = (await clients["user"].get("/")).text
        statics = {}
        for url in re.findall(r'(?:href|src)="(/static/[^"]+)"', page):
            r = await clients["anonymous"].get(url)
            statics[url] = {"bytes": len(r.content), "cache": r.headers.get("cache-control")}
        out["static_files"] = statics
    finally:
        for c in clients.values():
            await c.aclose()
    return out


def run_on(url: str, rows: int, n: int) -> dict[str, Any]:
    engine = make_engine(url)
    migrate(engine)
    admin, user = seed_people(engine, profiles_count=100)
    ids = [admin.user_id, user.user_id, *range(user.user_id + 1, user.user_id + 100)]
    started = time.perf_counter()
    add_audit(engine, rows, ids, random.Random(11))
    print(
        f"  {engine.dialect.name}: {rows} audit rows in {time.perf_counter() - started:.0f} s",
        file=sys.stderr,
    )
    # The user's first profile has a server, so its page lists tools and tokens.
    profiles.assign(engine, user, "p-0", "srv-7", True)
    with tempfile.TemporaryDirectory() as tmp:
        result = asyncio.run(
            measure(engine, {"user": user, "admin": admin, "anonymous": None}, n, Path(tmp))
        )
    engine.dispose()
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="100 000 audit rows, fewer requests")
    ap.add_argument("--no-postgres", action="store_true")
    ap.add_argument("--no-sqlite", action="store_true")
    args = ap.parse_args()
    rows, n = (100_000, 60) if args.quick else (1_000_000, 200)
    results: dict[str, Any] = {
        "benchmark": "dashboard pages",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "cpus": __import__("os").cpu_count()},
        "audit_rows": rows,
        "servers": 200,
        "profiles": 100,
        "requests_per_page": n,
        "budgets": {"p95_ms": P95_BUDGET_MS, "html_bytes": SIZE_BUDGET},
    }
    if not args.no_sqlite:
        with tempfile.TemporaryDirectory() as tmp:
            results["sqlite"] = run_on(f"sqlite:///{tmp}/bench.db", rows, n)
    if not args.no_postgres:
        sys.path.insert(0, str(ROOT))
        from tests.support.databases import throwaway_postgres

        with throwaway_postgres() as socket_dir:
            results["postgresql"] = run_on(f"postgresql://gig@/postgres?host={socket_dir}", rows, n)
    out = ROOT / "bench" / "results" / f"dashboard-{datetime.now(UTC):%Y%m%d-%H%M%S}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    for db in ("sqlite", "postgresql"):
        for page, m in results.get(db, {}).items():
            if isinstance(m, dict) and "p95_ms" in m:
                flag = "ok" if m["within_budget"] else "OVER BUDGET"
                print(
                    f"{db:10} {page:28} p50 {m['p50_ms']:6.1f} ms  p95 {m['p95_ms']:6.1f} ms  {m['html_bytes']:7d} B  {flag}"
                )
            elif isinstance(m, dict) and "status" in m:
                print(f"{db:10} {page:28} status {m['status']}")
    print(f"bench.dashboard: results in {out}")


if __name__ == "__main__":
    main()
