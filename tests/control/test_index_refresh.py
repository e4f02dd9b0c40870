"""The registry index refreshed in the background (control/index_refresh.py), against a
real HTTPS registry on loopback (tests/support/index_server.py) and a real store on both
databases: a new generation is picked up and becomes what the catalog browses; a failing
registry is retried with growing delays (the schedule's numbers, and the loop for real
with short intervals); a tampered or rolled-back index is refused and the previous one
kept; two refreshers (two replicas) on one database fetch once per interval; a failure's
log line never carries the URL's query."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine

from gigmcp.control import actor, installs
from gigmcp.control.index_refresh import FIRST_RETRY_S, IndexRefresher, backoff
from gigmcp.store import index_state
from gigmcp.store.db import make_engine
from tests.support.index_server import IndexServer, index_server

GEN1, GEN2, GEN3 = "2026-11-20T00:00:00Z", "2026-11-21T00:00:00Z", "2026-11-22T00:00:00Z"


def _at(generated: str) -> datetime:
    return datetime.fromisoformat(generated.replace("Z", "+00:00")).astimezone(UTC)


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[IndexServer]:
    with index_server(tmp_path) as server:
        yield server


def test_the_backoff_doubles_from_the_first_retry_up_to_the_interval() -> None:
    def top(n: int) -> float:
        return backoff(n, 3600, rand=lambda: 1.0)

    assert [top(n) for n in range(1, 9)] == [30, 60, 120, 240, 480, 960, 1920, 3600]
    assert top(1000) == 3600, "capped, and no overflow however long it fails"
    assert [backoff(n, 3600, rand=lambda: 0.0) for n in (1, 2, 8)] == [15, 30, 1800]
    # Each delay is at least the longest the one before could have been, until the cap.
    for n in range(1, 7):
        assert backoff(n + 1, 3600, rand=lambda: 0.0) >= backoff(n, 3600, rand=lambda: 1.0)
    assert backoff(1, 60, first=0.1, rand=lambda: 0.5) == pytest.approx(0.075)
    assert FIRST_RETRY_S == 30
    # An interval shorter than the first retry caps even the first.
    assert all(10 <= backoff(1, 20, rand=lambda: r) <= 20 for r in (0.0, 0.3, 1.0))


async def test_a_refresh_picks_up_a_new_generation_and_the_catalog_browses_it(
    migrated_engine: Engine, registry: IndexServer, tmp_path: Path
) -> None:
    engine = migrated_engine
    source = registry.source(tmp_path / "cache")
    refresher = IndexRefresher(engine, source, interval=0.5)
    registry.publish(GEN1)
    assert await refresher.tick() == "refreshed"
    assert index_state.last_accepted(engine) is not None
    assert index_state.last_accepted(engine)[0] == _at(GEN1)  # type: ignore[index]
    assert await refresher.tick() == "idle", "not due for another interval"
    registry.publish(GEN2)
    await asyncio.sleep(0.6)
    assert await refresher.tick() == "refreshed"
    assert index_state.last_accepted(engine)[0] == _at(GEN2)  # type: ignore[index]
    fetches = len(registry.fetches())
    admin = actor.local_admin(engine)
    browsed = await asyncio.to_thread(installs.browse_index, engine, admin, source)
    assert browsed.generated == _at(GEN2), "the catalog shows the refreshed index"
    assert len(registry.fetches()) == fetches, "without fetching it again"


@pytest.mark.parametrize("attack", ["tampered", "rolled back"])
async def test_attack_a_refused_index_leaves_the_previous_one_in_place(
    migrated_engine: Engine,
    registry: IndexServer,
    tmp_path: Path,
    attack: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    engine = migrated_engine
    source = registry.source(tmp_path / "cache", query="?token=s3cret-query")
    refresher = IndexRefresher(engine, source, interval=0.3, first_retry=0.2)
    registry.publish(GEN2)
    assert await refresher.tick() == "refreshed"
    if attack == "tampered":
        registry.publish(GEN3, tamper=True)
    else:
        registry.publish(GEN1)  # validly signed, older: a replay
    await asyncio.sleep(0.35)
    with caplog.at_level(logging.WARNING, logger="gigmcp.control.index_refresh"):
        assert await refresher.tick() == "failed"
    said = caplog.text
    assert ("GIG_REGISTRY_PUBKEY" if attack == "tampered" else "rollback") in said
    assert "s3cret" not in said, "the URL's query is never logged"
    assert index_state.last_accepted(engine)[0] == _at(GEN2)  # type: ignore[index]
    browsed = await asyncio.to_thread(
        installs.browse_index, engine, actor.local_admin(engine), source
    )
    assert browsed.generated == _at(GEN2), "the catalog still shows the accepted index"
    assert (tmp_path / "cache" / "index.json").read_bytes() == browsed.raw, "the copy kept"


async def test_a_failing_registry_is_retried_with_growing_delays_then_recovers(
    migrated_engine: Engine, registry: IndexServer, tmp_path: Path
) -> None:
    """The loop for real: a registry answering 503, first retry after 0.1 s (jittered
    down to 0.05), doubled each time; the interval (4 s) is far off."""
    registry.status = 503
    refresher = IndexRefresher(migrated_engine, registry.source(tmp_path / "cache"),
                               interval=4.0, first_retry=0.1, poll=0.02)  # fmt: skip
    await refresher.start()
    try:
        async with asyncio.timeout(20):
            while len(registry.fetches()) < 6:  # noqa: ASYNC110 - the server's log, no event
                await asyncio.sleep(0.02)
            registry.publish(GEN1)
            registry.status = 200
            while refresher.refreshed == 0:  # noqa: ASYNC110 - a counter, no event
                await asyncio.sleep(0.02)
    finally:
        await refresher.aclose()
    times = registry.fetches()
    gaps = [b - a for a, b in itertools.pairwise(times)]
    delays = refresher.delays
    assert len(delays) >= 5 and refresher.failed == len(delays)
    assert all(b >= a for a, b in itertools.pairwise(delays)), delays
    for gap, delay in zip(gaps, delays, strict=False):
        assert gap >= delay - 0.02, (gaps, delays)  # never before its delay
    assert gaps[4] > 3 * gaps[0], (gaps, delays)
    assert index_state.last_accepted(migrated_engine) is not None, "recovered"


async def test_two_replicas_refreshers_fetch_once_per_interval(
    registry: IndexServer, tmp_path: Path, database_url: str, migrated_engine: Engine
) -> None:
    registry.publish(GEN1)
    engines = [make_engine(database_url) for _ in range(2)]
    refreshers = [
        IndexRefresher(e, registry.source(tmp_path / f"cache{i}"), interval=1.0, poll=0.02)
        for i, e in enumerate(engines)
    ]
    try:
        for r in refreshers:
            await r.start()
        await asyncio.sleep(2.5)
    finally:
        for r in refreshers:
            await r.aclose()
        for e in engines:
            e.dispose()
    times = registry.fetches()
    assert len(times) in (2, 3), times  # at 0, 1 (and 2) s
    # The job is due a second after each claim; a fetch arrives at the server some
    # time after its claim (a first TLS handshake is slower), so arrivals may be a little
    # closer than a second, never together (two replicas fetching the same interval).
    assert all(b - a >= 0.5 for a, b in itertools.pairwise(times)), times
    assert sum(r.refreshed for r in refreshers) == len(times)


def test_the_gateway_refreshes_only_with_a_registry_and_a_refresh(tmp_path: Path) -> None:
    from gigmcp.app import Gateway
    from gigmcp.config import load_settings

    base = {"GIG_DATA_DIR": str(tmp_path), "GIG_MASTER_KEY": "ab" * 32}
    registry = {"GIG_REGISTRY_INDEX_URL": f"file://{tmp_path}/index.json",
                "GIG_REGISTRY_PUBKEY": "00" * 32}  # fmt: skip
    for env, on in (
        (base, False),
        ({**base, **registry, "GIG_REGISTRY_REFRESH": "0"}, False),
        ({**base, **registry}, True),
    ):
        gateway = Gateway(load_settings(env))
        try:
            assert (gateway.index_refresher is not None) is on
            if on:
                assert gateway.index_refresher is not None
                assert gateway.index_refresher.interval == 3600
        finally:
            gateway.catalog.engine.dispose()
