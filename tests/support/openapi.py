"""The API's OpenAPI document as the API serves it, for the check-in test and for
regenerating docs/openapi.json (``python -m tests.support.openapi > docs/openapi.json``)."""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx2 as httpx

from gigmcp.api.app import build_api
from gigmcp.api.context import ApiConfig
from gigmcp.store.db import make_engine, migrate

ROOT = Path(__file__).resolve().parents[2]


def document(tmp: Path) -> dict[str, Any]:
    engine = make_engine(f"sqlite:///{tmp / 'openapi.db'}")
    migrate(engine)
    app = build_api(ApiConfig(engine, "http://127.0.0.1:8080", False))

    async def fetch() -> dict[str, Any]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            r = await c.get("/api/v1/openapi.json")
            r.raise_for_status()
            data: dict[str, Any] = r.json()
            return data

    try:
        return asyncio.run(fetch())
    finally:
        engine.dispose()


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        json.dump(document(Path(tmp)), sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write("\n")
