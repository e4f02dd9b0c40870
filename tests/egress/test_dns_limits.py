"""What a jail's DNS queries may cost the gateway, attack by attack: the sandbox resolver
reads a bounded number of datagrams per wake-up and per second, rate-limits each
instance (the excess dropped unparsed and counted), and audits refusals as one row per
instance, reason and interval; the audit trail's queue and age are bounded.

The resolver runs on a real UDP socket on loopback, the audit trail on a real database
(SQLite and PostgreSQL); the clock is the test's where a rate is concerned, and the
thresholds are the module's, so nothing here depends on how busy the machine is.
"""

from __future__ import annotations

import asyncio
import socket
from datetime import timedelta

import dns.message
import dns.rcode
import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from gigmcp.core.instances import InstanceKey
from gigmcp.egress import dns as sandbox_dns
from gigmcp.egress.audit import MAX_QUEUE, EgressAudit, EgressEvent
from gigmcp.egress.dns import (
    BURST,
    DENIED,
    MAX_PER_WAKEUP,
    RATE_LIMITED,
    RATE_PER_S,
    SAMPLE_NAMES,
    SandboxDns,
    serve_dns,
)
from gigmcp.netpolicy.policy import EgressPolicy
from gigmcp.sandbox.identity import Identity, SourceTable
from gigmcp.store import audit_chain
from gigmcp.store.models import EgressAuditRow, utcnow
from gigmcp.vault.keys import Keyring, MasterKey
from tests.support.gateway import free_port

LOOPBACK = "127.0.0.1"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def identity(server: str, ip: str = LOOPBACK, profile: int = 1) -> Identity:
    return Identity(
        key=InstanceKey(profile, server), server_name=server, profile_id=profile,
        owner_id=1, host_ip=ip, sandbox_ip=ip, host_ifname="lo",
    )  # fmt: skip


def query(name: str) -> bytes:
    wire: bytes = dns.message.make_query(name, "A").to_wire()
    return wire


@pytest.fixture
def engine(migrated_engine: Engine) -> Engine:
    return migrated_engine


def rows(engine: Engine) -> list[EgressAuditRow]:
    with Session(engine) as session:
        return list(session.scalars(select(EgressAuditRow).order_by(EgressAuditRow.id)))


def resolver(audit: EgressAudit, *identities: Identity, clock: Clock | None = None) -> SandboxDns:
    table = SourceTable()
    for i in identities:
        table.add(i)
    return SandboxDns(
        table, lambda _key: EgressPolicy(["api.example.test"]), audit, clock=clock or Clock()
    )


def test_attack_a_flooding_instance_is_rate_limited_silently_and_counted() -> None:
    clock = Clock()
    resolver_ = resolver(EgressAudit(None), identity("flooder"), clock=clock)
    replies = [resolver_.answer(query(f"n{i}.evil.test"), LOOPBACK, LOOPBACK) for i in range(1000)]
    answered = [r for r in replies if r is not None]
    assert len(answered) == BURST, "a burst is answered (NXDOMAIN), the rest is not"
    assert all(dns.message.from_wire(r).rcode() == dns.rcode.NXDOMAIN for r in answered)
    assert resolver_.refused == BURST and resolver_.rate_limited == 1000 - BURST
    # The bucket refills at its rate, never past its size.
    clock.now += 1.0
    again = [resolver_.answer(query("api.example.test"), LOOPBACK, LOOPBACK) for _ in range(500)]
    assert sum(r is not None for r in again) == RATE_PER_S
    clock.now += 3600.0
    again = [resolver_.answer(query("api.example.test"), LOOPBACK, LOOPBACK) for _ in range(500)]
    assert sum(r is not None for r in again) == BURST


def test_one_instances_flood_leaves_another_instances_bucket_alone() -> None:
    other_ip = "127.0.0.2"
    resolver_ = resolver(EgressAudit(None), identity("flooder"), identity("calm", other_ip))
    for i in range(1000):
        resolver_.answer(query(f"n{i}.evil.test"), LOOPBACK, LOOPBACK)
    answer = resolver_.answer(query("api.example.test"), other_ip, other_ip)
    assert answer is not None and dns.message.from_wire(answer).answer, "the other is answered"


def test_attack_queries_from_nobodys_address_cost_no_state() -> None:
    resolver_ = resolver(EgressAudit(None))
    for i in range(2000):
        assert (
            resolver_.answer(query("x.test"), f"127.0.{i // 250}.{i % 250 + 1}", LOOPBACK) is None
        )
    assert resolver_._buckets == {} and resolver_._tallies == {}


async def test_attack_refused_queries_are_audited_as_one_row_per_instance_and_interval(
    engine: Engine,
) -> None:
    audit = EgressAudit(engine)
    clock = Clock()
    resolver_ = resolver(audit, identity("flooder"), identity("calm", "127.0.0.2"), clock=clock)
    for i in range(1000):
        resolver_.answer(query(f"q{i}.evil.test"), LOOPBACK, LOOPBACK)
    resolver_.answer(query("other.evil.test"), "127.0.0.2", "127.0.0.2")
    resolver_.answer(query("api.example.test"), "127.0.0.2", "127.0.0.2")  # allowed: no row
    resolver_.flush()  # the interval ends
    clock.now += 1.0
    for i in range(50):
        resolver_.answer(query(f"later{i}.evil.test"), LOOPBACK, LOOPBACK)
    resolver_.flush()
    await audit.flush()
    found = [(r.server, r.reason, r.count, r.host, r.method, r.decision) for r in rows(engine)]
    samples = " ".join(f"q{i}.evil.test" for i in range(SAMPLE_NAMES))
    later = " ".join(f"later{i}.evil.test" for i in range(SAMPLE_NAMES))
    assert sorted(found) == sorted([
        ("flooder", DENIED, BURST, samples, "DNS", "denied"),
        ("flooder", RATE_LIMITED, 1000 - BURST, None, "DNS", "denied"),
        ("calm", DENIED, 1, "other.evil.test", "DNS", "denied"),
        ("flooder", DENIED, 50, later, "DNS", "denied"),
    ])  # fmt: skip
    assert audit.written == 4


def serve(table: SourceTable) -> asyncio.Future[sandbox_dns.DnsServer]:
    return asyncio.ensure_future(
        serve_dns(LOOPBACK, free_port(), table, lambda _k: EgressPolicy(()), EgressAudit(None))
    )


def flood(port: int, count: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        for i in range(count):
            s.sendto(query(f"f{i}.evil.test"), (LOOPBACK, port))


def handled(server: sandbox_dns.DnsServer) -> int:
    d = server.dns
    return d.answered + d.refused + d.rate_limited


async def test_attack_a_flood_gets_a_bounded_share_of_each_wake_up() -> None:
    table = SourceTable()
    table.add(identity("flooder"))
    server = await serve(table)
    try:
        flood(server.sock.getsockname()[1], 3 * MAX_PER_WAKEUP)
        server._ready()  # what the loop runs when the socket is readable
        assert handled(server) == MAX_PER_WAKEUP, "then it yields to everyone else"
        # Still registered: the loop comes back for the rest.
        async with asyncio.timeout(10):
            while handled(server) < 3 * MAX_PER_WAKEUP:  # noqa: ASYNC110 - counters, no event
                await asyncio.sleep(0)
    finally:
        server.close()


async def test_attack_a_flood_is_read_at_most_max_per_second(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sandbox_dns, "MAX_PER_SECOND", 100)
    table = SourceTable()
    table.add(identity("flooder"))
    server = await serve(table)
    try:
        flood(server.sock.getsockname()[1], 300)
        for _ in range(10):
            if server._paused is None:
                server._ready()
        assert handled(server) == 100 and server._paused is not None, "paused for the second"
        # What overflowed waits in the kernel (or is dropped there); reading resumes.
        async with asyncio.timeout(10):
            while handled(server) < 200:  # noqa: ASYNC110 - counters, no event
                await asyncio.sleep(0.05)
    finally:
        server.close()


def test_attack_the_audit_queue_is_bounded() -> None:
    audit = EgressAudit(None)
    for _ in range(MAX_QUEUE + 5):
        audit.record(EgressEvent(source_ip=LOOPBACK, decision="denied", reason="x"))
    assert len(audit._queue) == MAX_QUEUE and audit.dropped == 5


async def test_audit_rows_older_than_the_retention_are_deleted(engine: Engine) -> None:
    """Once sealed into the chain and vouched for by a checkpoint (store/audit_chain.py):
    before that, nothing is deleted, so what is left always verifies."""
    audit = EgressAudit(engine, retention_days=30)
    keyring = Keyring(MasterKey(bytes(range(32))))
    now = utcnow()
    for age in (32, 31):
        audit.record(EgressEvent(LOOPBACK, "denied", f"{age}d", at=now - timedelta(days=age)))
    await audit.flush()
    await audit.prune()
    assert audit.pruned == 0, "not sealed and signed yet"
    audit_chain.seal_all(engine)
    audit_chain.checkpoint(engine, keyring)
    for age in (29, 0):
        audit.record(EgressEvent(LOOPBACK, "denied", f"{age}d", at=now - timedelta(days=age)))
    await audit.flush()
    audit_chain.seal_all(engine)
    await audit.prune()
    assert [r.reason for r in rows(engine)] == ["29d", "0d"]
    assert audit.pruned == 2
    assert all(r.ok for r in audit_chain.verify(engine, keyring))
