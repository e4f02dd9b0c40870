"""The audit trails as hash chains with signed checkpoints (store/audit_chain.py), on
both databases, with rows written by the real writers: an administrator's changes
(control/), tool calls (the catalog's batched writer) and egress requests
(store/egress_audit.py). Then the attacks, each by someone who can write the database
but does not hold the master key: an edited row, a deleted one, two rows reordered, a
chain rewritten with fresh hashes, a forged checkpoint, rows cut off the start or the
end. And what must keep working: retention that leaves a verifiable chain, two
sealers at once (two replicas), the JSON Lines export, and ``gigmcp audit verify``."""

from __future__ import annotations

import asyncio
import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine, delete, select, text, update
from sqlalchemy.orm import Session

from gigmcp.control import actor, profiles
from gigmcp.core.views import AuditEvent
from gigmcp.store import audit_chain
from gigmcp.store.catalog import StoreCatalog
from gigmcp.store.db import make_engine
from gigmcp.store.egress_audit import insert_rows
from gigmcp.store.models import AuditCheckpoint, AuditRow
from gigmcp.vault.keys import Keyring, MasterKey
from tests.support.gateway import gateway

KEYRING = Keyring(MasterKey(bytes.fromhex("cd" * 32)))


@pytest.fixture
def engine(migrated_engine: Engine) -> Engine:
    return migrated_engine


def _write(engine: Engine, database_url: str, n: int = 3, at: datetime | None = None) -> None:
    """``n`` of each kind, through the writers the gateway uses."""
    admin = actor.local_admin(engine)
    stamp = datetime.now(UTC).strftime("%H%M%S%f")
    for i in range(n):
        profiles.create_profile(engine, admin, f"p{stamp}-{i}")
    catalog = StoreCatalog(database_url)
    try:
        for i in range(n):
            catalog.record(AuditEvent(action="tools/call", outcome="ok", user_id=admin.user_id,
                                      server="time", tool=f"now{i}", duration_ms=1.5 + i,
                                      **({"at": at} if at else {})))  # fmt: skip
        asyncio.run(catalog.aclose())
    finally:
        catalog.engine.dispose()
    insert_rows(engine, [
        {"source_ip": "10.0.0.2", "decision": "allowed", "reason": "ok", "host": "api.test",
         "port": 443, "method": "GET", "status": 200, "at": at or datetime.now(UTC)}
        for _ in range(n)
    ])  # fmt: skip


def _sealed(engine: Engine) -> None:
    audit_chain.seal_all(engine)
    audit_chain.checkpoint(engine, KEYRING)


def _findings(engine: Engine, keyring: Keyring = KEYRING) -> dict[str, list[str]]:
    return {r.stream: [f.kind for f in r.findings if f.kind != "unsealed"]
            for r in audit_chain.verify(engine, keyring)}  # fmt: skip


def _messages(engine: Engine) -> str:
    return "\n".join(f.message for r in audit_chain.verify(engine, KEYRING) for f in r.findings)


def _events(engine: Engine) -> list[AuditRow]:
    with Session(engine) as s:
        return list(
            s.scalars(select(AuditRow).where(AuditRow.seq.is_not(None)).order_by(AuditRow.seq))
        )


def test_every_writer_s_rows_are_chained_and_verify(engine: Engine, database_url: str) -> None:
    _write(engine, database_url)
    assert _findings(engine) == {"events": [], "egress": []}  # nothing sealed: nothing wrong
    assert {r.stream: r.unsealed for r in audit_chain.verify(engine, KEYRING)} == {
        "events": 6, "egress": 3,
    }  # fmt: skip
    _sealed(engine)
    reports = {r.stream: r for r in audit_chain.verify(engine, KEYRING)}
    assert reports["events"].rows == 6 and reports["egress"].rows == 3
    assert reports["events"].checkpoints == 1 and reports["events"].ok
    assert [r.seq for r in _events(engine)] == [1, 2, 3, 4, 5, 6]
    actions = {r.action for r in _events(engine)}
    assert {"profile.create", "tools/call"} <= actions
    # More rows later: the chain goes on from its head.
    _write(engine, database_url, 2)
    _sealed(engine)
    assert _findings(engine) == {"events": [], "egress": []}
    assert _events(engine)[-1].seq == 10


def test_attack_an_edited_row_is_named(engine: Engine, database_url: str) -> None:
    _write(engine, database_url)
    _sealed(engine)
    victim = _events(engine)[2]
    with engine.begin() as conn:
        conn.execute(update(AuditRow).where(AuditRow.id == victim.id).values(outcome="denied"))
    assert "edited" in _findings(engine)["events"]
    assert f"row {victim.id} (#3) was edited" in _messages(engine)


def test_attack_a_deleted_row_is_named(engine: Engine, database_url: str) -> None:
    _write(engine, database_url)
    _sealed(engine)
    victim = _events(engine)[3]
    with engine.begin() as conn:
        conn.execute(delete(AuditRow).where(AuditRow.id == victim.id))
    assert "gap" in _findings(engine)["events"]
    assert "#4 to #4 are missing" in _messages(engine)


def test_attack_reordered_rows_are_named(engine: Engine, database_url: str) -> None:
    """Two rows' places swapped (their positions and links kept with their content)."""
    _write(engine, database_url)
    _sealed(engine)
    a, b = _events(engine)[1], _events(engine)[2]
    with engine.begin() as conn:
        conn.execute(update(AuditRow).where(AuditRow.id == a.id).values(seq=-1))
        conn.execute(update(AuditRow).where(AuditRow.id == b.id).values(seq=a.seq))
        conn.execute(update(AuditRow).where(AuditRow.id == a.id).values(seq=b.seq))
    found = _findings(engine)["events"]
    assert "link" in found, found
    assert "does not follow" in _messages(engine)


def test_attack_a_chain_rewritten_with_fresh_hashes_breaks_the_signed_checkpoint(
    engine: Engine, database_url: str
) -> None:
    """Whoever can write the database can recompute every hash after an edit; not the
    checkpoint's signature, which needs the master key."""
    _write(engine, database_url)
    _sealed(engine)
    rows = _events(engine)
    with Session(engine) as s, s.begin():
        prev = audit_chain.GENESIS
        for row in s.scalars(select(AuditRow).order_by(AuditRow.seq)):
            if row.id == rows[1].id:
                row.detail = "nothing happened here"
            row.prev_hash, row.row_hash = prev, audit_chain.link(prev, row)
            prev = row.row_hash
    assert _findings(engine)["events"] == ["checkpoint"]
    assert "differs from the signed checkpoint" in _messages(engine)


def test_attack_a_forged_checkpoint_is_refused(engine: Engine, database_url: str) -> None:
    _write(engine, database_url)
    _sealed(engine)
    with Session(engine) as s, s.begin():
        cp = s.scalar(select(AuditCheckpoint).where(AuditCheckpoint.stream == "events"))
        assert cp is not None
        forger = Ed25519PrivateKey.generate()
        cp.public_key = audit_chain._public_hex(forger.public_key())
        cp.signature = forger.sign(
            audit_chain._statement(cp.stream, cp.seq, cp.row_hash, cp.at)
        ).hex()
    assert _findings(engine)["events"] == ["checkpoint"]
    assert "not signed by this gateway's key" in _messages(engine)
    # Verified with another master key (another gateway's vault): nothing is vouched for.
    other = Keyring(MasterKey(bytes.fromhex("ef" * 32)))
    with pytest.raises(Exception):
        audit_chain.verify(engine, other)


def test_attack_rows_cut_off_the_start_or_the_end_are_named(
    engine: Engine, database_url: str
) -> None:
    _write(engine, database_url)
    _sealed(engine)
    rows = _events(engine)
    with engine.begin() as conn:
        conn.execute(delete(AuditRow).where(AuditRow.id.in_([rows[0].id, rows[-1].id])))
    found = _findings(engine)["events"]
    assert "unanchored" in found and "gap" in found, found
    messages = _messages(engine)
    assert "rows deleted from the start" in messages and "rows deleted from the end" in messages


def test_retention_deletes_up_to_a_checkpoint_and_the_rest_still_verifies(
    engine: Engine, database_url: str
) -> None:
    old = datetime.now(UTC) - timedelta(days=40)
    _write(engine, database_url, 3, at=old)
    _sealed(engine)  # the checkpoint vouches for the old rows' end
    _write(engine, database_url, 2)
    audit_chain.seal_all(engine)  # new rows, no checkpoint yet
    cutoff = datetime.now(UTC) - timedelta(days=30)
    assert audit_chain.prune(engine, "egress", cutoff) == 3
    # The old calls come after today's changes in the chain: nothing newer is deleted.
    assert audit_chain.prune(engine, "events", cutoff) == 0
    reports = {r.stream: r for r in audit_chain.verify(engine, KEYRING)}
    assert reports["egress"].ok and reports["egress"].first_seq == 4, reports["egress"].findings
    assert reports["events"].ok, reports["events"].findings
    # Nothing past the newest checkpoint is deleted, however old: no anchor for it yet.
    _write(engine, database_url, 2, at=old)
    audit_chain.seal_all(engine)
    assert audit_chain.prune(engine, "egress", datetime.now(UTC)) == 0
    # Deleting the anchoring checkpoint is seen.
    with engine.begin() as conn:
        conn.execute(delete(AuditCheckpoint).where(AuditCheckpoint.stream == "egress"))
    assert _findings(engine)["egress"] == ["unanchored"]


def test_two_sealers_at_once_make_one_chain(engine: Engine, database_url: str) -> None:
    """Two replicas sealing the same rows: the head's lock makes one chain, no position
    twice, none skipped."""
    _write(engine, database_url, 40)
    other = make_engine(database_url)
    errors: list[BaseException] = []

    def run(e: Engine) -> None:
        try:
            for _ in range(20):
                audit_chain.seal(e, "egress", limit=3)
                audit_chain.seal(e, "events", limit=5)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(e,)) for e in (engine, other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    other.dispose()
    assert errors == []
    audit_chain.seal_all(engine)
    audit_chain.checkpoint(engine, KEYRING)
    reports = {r.stream: r for r in audit_chain.verify(engine, KEYRING)}
    assert reports["egress"].rows == 40 and reports["egress"].ok, reports["egress"].findings
    assert reports["events"].rows == 80 and reports["events"].ok, reports["events"].findings


def test_the_export_is_json_lines_a_siem_can_check(engine: Engine, database_url: str) -> None:
    _write(engine, database_url)
    _sealed(engine)
    lines = [json.loads(json.dumps(x)) for x in audit_chain.export(engine, "egress")]
    rows = [x for x in lines if x["type"] == "row"]
    assert [x["seq"] for x in rows] == [1, 2, 3]
    prev = audit_chain.GENESIS
    for x in rows:  # the links, checked from the export alone
        assert x["prev_hash"] == prev
        prev = x["row_hash"]
    assert lines[-1]["type"] == "checkpoint" and lines[-1]["row_hash"] == prev
    assert [x["seq"] for x in audit_chain.export(engine, "egress", after_seq=2)][:1] == [3]


def test_the_command_line_says_which_row_and_exits_1(tmp_path: Path) -> None:
    with gateway(tmp_path) as g:
        g.cli("profile", "create", "first")
        g.cli("profile", "create", "second")
        g.start()  # the sealer runs with the gateway
        g.cli("profile", "create", "third")
        g.stop()  # and seals and signs what is left when it stops
        ok = g.cli("audit", "verify")
        assert "events: " in ok.stdout and "OK" in ok.stdout and "TAMPERED" not in ok.stdout
        exported = g.cli("audit", "export", "events").stdout.splitlines()
        assert json.loads(exported[-1])["type"] == "checkpoint"
        engine = make_engine(f"sqlite:///{g.data_dir / 'gigmcp.db'}")
        with engine.begin() as conn:
            victim = conn.execute(text("SELECT id FROM audit_events WHERE seq = 2")).scalar()
            conn.execute(text("UPDATE audit_events SET detail = 'x' WHERE seq = 2"))
        engine.dispose()
        bad = g.cli("audit", "verify", check=False)
        assert bad.returncode == 1
        assert f"FOUND: events: row {victim} (#2) was edited" in bad.stdout
        assert "TAMPERED" in bad.stdout
