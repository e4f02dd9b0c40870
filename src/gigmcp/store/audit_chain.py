"""The audit trails as hash chains, with signed checkpoints: what makes an edited,
deleted or reordered audit row show.

Two chains (``STREAMS``): ``events`` (audit_events: tool calls, administrators' changes,
sign-ins) and ``egress`` (egress_audit: egress requests and the resolver's refusals).
Rows are written as before, by whoever writes them; the sealer (:func:`seal`, run once a
second by the application and by whichever replica gets there first) gives each row not
chained yet, oldest first, its place in its chain (``seq``, 1, 2, ...), the hash of the
row before (``prev_hash``) and its own: ``row_hash = SHA-256(prev_hash "\\n"
canonical JSON of the row's content)``. Chaining at seal time rather than at insert
keeps the writers as they are (batched, concurrent, across replicas) and the order
unambiguous (a row committed late is simply sealed later); the head row's lock makes one
sealer at a time. A checkpoint (:func:`checkpoint`) signs, with an Ed25519 key sealed in
the vault, that row ``seq`` of a chain had hash ``row_hash``: the hashes alone could be
recomputed by whoever can write the database; a signature needs the master key.

:func:`verify` walks each chain from its start (or from the checkpoint that anchors what
retention kept) and names the first row whose content no longer gives its hash
(edited), whose link does not follow (deleted or reordered), a gap in the positions
(deleted), and every checkpoint whose signature or hash does not hold. :func:`prune`
deletes a chain's old rows only up to a checkpoint, so what is left still verifies.

Owns the canonical form, the sealing, the checkpoints' signing key (created on first
use), verifying, pruning and the JSON Lines export's rows. It must never change a
sealed row, sign with a key outside the vault, or delete a checkpoint. Limits (in
docs/threat-model.md): a row someone inserts into the database before the sealer runs
is sealed like any other; rows after the newest checkpoint can be cut off the end
unless checkpoints are kept elsewhere too (the export carries them).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy import Engine, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gigmcp.store import secrets as vault_rows
from gigmcp.store.models import (
    AuditChainHead,
    AuditCheckpoint,
    AuditRow,
    EgressAuditRow,
    utcnow,
)
from gigmcp.vault.keys import Keyring

GENESIS = "0" * 64
STREAMS: dict[str, type[AuditRow] | type[EgressAuditRow]] = {
    "events": AuditRow,
    "egress": EgressAuditRow,
}
# The columns a row's hash covers: all but the chain's own.
_CHAIN_COLUMNS = ("seq", "prev_hash", "row_hash")
SIGNING_KEY_ITEM = "audit-checkpoint-key"
_SIGNED_PREFIX = "gigmcp-audit-checkpoint/v1"
BATCH = 2000


def _columns(model: type[AuditRow] | type[EgressAuditRow]) -> list[str]:
    return [c.name for c in model.__table__.columns if c.name not in _CHAIN_COLUMNS]


def _value(value: Any) -> Any:
    if isinstance(value, datetime):
        # SQLite gives naive datetimes back (only UTC is ever stored): one form for both.
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return aware.astimezone(UTC).isoformat(timespec="microseconds")
    return value


def content(row: AuditRow | EgressAuditRow) -> str:
    """The canonical JSON of a row's content (its id included: a deleted row put back
    under another id does not fit)."""
    fields = {name: _value(getattr(row, name)) for name in _columns(type(row))}
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def link(prev_hash: str, row: AuditRow | EgressAuditRow) -> str:
    return hashlib.sha256(f"{prev_hash}\n{content(row)}".encode()).hexdigest()


# ---------------------------------------------------------------- sealing


def seal(engine: Engine, stream: str, limit: int = BATCH) -> int:
    """Chain up to ``limit`` rows of ``stream`` not chained yet, oldest first. Returns
    how many. One sealer at a time: the head row is locked first (an UPDATE, which both
    databases serialise)."""
    model: Any = STREAMS[stream]
    with Session(engine) as s:
        # Nothing to seal (most seconds): no write, no lock taken.
        if s.scalar(select(model.id).where(model.seq.is_(None)).limit(1)) is None:
            return 0
    with Session(engine) as s, s.begin():
        s.execute(
            update(AuditChainHead)
            .where(AuditChainHead.stream == stream)
            .values(seq=AuditChainHead.seq)
        )
        head = s.get(AuditChainHead, stream, populate_existing=True)
        if head is None:
            raise RuntimeError(f"the audit chain {stream!r} has no head: migrate the database")
        rows = s.scalars(select(model).where(model.seq.is_(None)).order_by(model.id).limit(limit))
        sealed = 0
        for row in rows:
            row.seq = head.seq + 1
            row.prev_hash = head.row_hash
            row.row_hash = link(head.row_hash, row)
            head.seq, head.row_hash = row.seq, row.row_hash
            sealed += 1
        return sealed


def seal_all(engine: Engine) -> int:
    """Seal every stream until nothing is left (in batches)."""
    total = 0
    for stream in STREAMS:
        while (n := seal(engine, stream)) > 0:
            total += n
            if n < BATCH:
                break
    return total


# ---------------------------------------------------------------- checkpoints


def signing_key(engine: Engine, keyring: Keyring) -> Ed25519PrivateKey:
    """The checkpoints' key, sealed in the vault; made on first use (a concurrent
    maker loses on the unique name and reads the winner's)."""
    with Session(engine) as s:
        raw = vault_rows.get_item(s, keyring, SIGNING_KEY_ITEM)
    if raw is None:
        fresh = Ed25519PrivateKey.generate().private_bytes_raw()
        try:
            with Session(engine) as s, s.begin():
                vault_rows.add_item(s, keyring, SIGNING_KEY_ITEM, fresh)
            raw = fresh
        except IntegrityError:
            with Session(engine) as s:
                raw = vault_rows.get_item(s, keyring, SIGNING_KEY_ITEM)
    if raw is None:
        raise RuntimeError("the audit checkpoint key could not be stored")
    return Ed25519PrivateKey.from_private_bytes(raw)


def _public_hex(key: Ed25519PublicKey) -> str:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw).hex()


def _statement(stream: str, seq: int, row_hash: str, at: datetime) -> bytes:
    return f"{_SIGNED_PREFIX}\n{stream}\n{seq}\n{row_hash}\n{_value(at)}".encode()


def checkpoint(engine: Engine, keyring: Keyring) -> list[AuditCheckpoint]:
    """Sign each chain's head, where it moved since its last checkpoint."""
    key = signing_key(engine, keyring)
    made = []
    for stream in STREAMS:
        with Session(engine) as s, s.begin():
            head = s.get(AuditChainHead, stream)
            if head is None or head.seq == 0:
                continue
            last = s.scalar(
                select(func.max(AuditCheckpoint.seq)).where(AuditCheckpoint.stream == stream)
            )
            if last is not None and last >= head.seq:
                continue
            at = utcnow()
            cp = AuditCheckpoint(
                stream=stream, seq=head.seq, row_hash=head.row_hash, at=at,
                public_key=_public_hex(key.public_key()),
                signature=key.sign(_statement(stream, head.seq, head.row_hash, at)).hex(),
            )  # fmt: skip
            s.add(cp)
            made.append(cp)
    return made


# ---------------------------------------------------------------- verifying


@dataclass
class Finding:
    stream: str
    kind: str  # edited | link | gap | checkpoint | unanchored | unsealed
    message: str
    row_id: int | None = None
    seq: int | None = None


@dataclass
class ChainReport:
    stream: str
    rows: int = 0  # sealed rows walked
    first_seq: int | None = None
    last_seq: int | None = None
    checkpoints: int = 0  # checkpoints whose signature and hash hold
    unsealed: int = 0
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(f.kind != "unsealed" for f in self.findings)


def verify(engine: Engine, keyring: Keyring) -> list[ChainReport]:
    """Every chain, walked in order; the signatures checked with the vault's key (not
    with the public key a checkpoint row carries: the database is what is in doubt)."""
    public = _public_hex(signing_key(engine, keyring).public_key())
    return [_verify_stream(engine, stream, public) for stream in STREAMS]


def _verify_stream(engine: Engine, stream: str, public: str) -> ChainReport:
    model: Any = STREAMS[stream]
    report = ChainReport(stream)

    def note(kind: str, message: str, row: Any = None, seq: int | None = None) -> None:
        row_id = row.id if row is not None else None
        at = row.seq if row is not None else seq
        report.findings.append(Finding(stream, kind, f"{stream}: {message}", row_id, at))

    signed: dict[int, AuditCheckpoint] = {}
    with Session(engine) as s:
        for cp in s.scalars(select(AuditCheckpoint).where(AuditCheckpoint.stream == stream)):
            if _signed(cp, public):
                signed[cp.seq] = cp
            else:
                note("checkpoint", f"the checkpoint at #{cp.seq} is not signed by this "
                     "gateway's key: forged or altered", seq=cp.seq)  # fmt: skip
        report.unsealed = s.scalar(select(func.count()).where(model.seq.is_(None))) or 0
    prev: Any = None
    for row in _sealed_rows(engine, model, 0):
        if prev is None:
            report.first_seq = row.seq
            anchor = signed.get(row.seq - 1)
            if row.seq == 1 and row.prev_hash != GENESIS:
                note("link", f"row {row.id} (#1) does not start the chain", row)
            elif row.seq != 1 and (anchor is None or anchor.row_hash != row.prev_hash):
                note("unanchored", f"the chain starts at #{row.seq} (row {row.id}) and no "
                     f"signed checkpoint at #{row.seq - 1} vouches for what came before: "
                     "rows deleted from the start", row)  # fmt: skip
        elif row.seq != prev.seq + 1:
            note("gap", f"#{prev.seq + 1} to #{row.seq - 1} are missing before row {row.id}: "
                 "deleted", row)  # fmt: skip
        elif row.prev_hash != prev.row_hash:
            note("link", f"row {row.id} (#{row.seq}) does not follow #{prev.seq}: a row was "
                 "replaced, or rows reordered", row)  # fmt: skip
        if link(row.prev_hash, row) != row.row_hash:
            note("edited", f"row {row.id} (#{row.seq}) was edited: its content no longer "
                 "gives its hash", row)  # fmt: skip
        vouched = signed.get(row.seq)
        if vouched is not None and vouched.row_hash != row.row_hash:
            note("checkpoint", f"row {row.id} (#{row.seq}) differs from the signed "
                 "checkpoint: the chain was rewritten", row)  # fmt: skip
        elif vouched is not None:
            report.checkpoints += 1
        prev = row
        report.rows += 1
    report.last_seq = prev.seq if prev is not None else None
    beyond = [seq for seq in signed if seq > (report.last_seq or 0)]
    if beyond:
        note("gap", f"a signed checkpoint vouches for #{max(beyond)}, past the chain's end "
             f"(#{report.last_seq or 0}): rows deleted from the end", seq=max(beyond))  # fmt: skip
    if report.unsealed:
        note("unsealed", f"{report.unsealed} rows not chained yet (the sealer runs every "
             "second while a gateway runs)")  # fmt: skip
    return report


def _sealed_rows(engine: Engine, model: Any, after: int) -> Iterator[Any]:
    """A chain's sealed rows in order, a batch at a time."""
    while True:
        with Session(engine) as s:
            batch = list(
                s.scalars(select(model).where(model.seq > after).order_by(model.seq).limit(BATCH))
            )
        if not batch:
            return
        yield from batch
        after = batch[-1].seq


def _signed(cp: AuditCheckpoint, public: str) -> bool:
    if cp.public_key != public:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(public)).verify(
            bytes.fromhex(cp.signature), _statement(cp.stream, cp.seq, cp.row_hash, cp.at)
        )
    except (InvalidSignature, ValueError):
        return False
    return True


# ---------------------------------------------------------------- retention


def prune(engine: Engine, stream: str, before: datetime) -> int:
    """Delete the chain's rows older than ``before``, from its start up to (and
    including) the newest checkpoint that does not pass the first row at or after
    ``before``: what is deleted is old (a row written out of order is kept with its
    newer neighbours), and the first row left is vouched for by that checkpoint, so the
    chain still verifies. Rows not sealed yet are never deleted."""
    model: Any = STREAMS[stream]
    with Session(engine) as s, s.begin():
        first_new = s.scalar(
            select(func.min(model.seq)).where(model.seq.is_not(None), model.at >= before)
        )
        limit = (
            first_new - 1
            if first_new is not None
            else s.scalar(select(func.max(model.seq)).where(model.seq.is_not(None)))
        )
        if not limit:
            return 0
        anchor = s.scalar(
            select(func.max(AuditCheckpoint.seq)).where(
                AuditCheckpoint.stream == stream, AuditCheckpoint.seq <= limit
            )
        )
        if anchor is None:
            return 0
        result = s.execute(delete(model).where(model.seq.is_not(None), model.seq <= anchor))
        return int(result.rowcount or 0)  # type: ignore[attr-defined]


# ---------------------------------------------------------------- export


def export(engine: Engine, stream: str, after_seq: int = 0) -> Iterator[dict[str, Any]]:
    """The chain's sealed rows after ``after_seq``, in order, each with its hashes, then
    the stream's checkpoints: JSON Lines for a SIEM (which can check the links and, with
    the public key, the signatures)."""
    for row in _sealed_rows(engine, STREAMS[stream], after_seq):
        yield {"type": "row", "stream": stream, "seq": row.seq, "prev_hash": row.prev_hash,
               "row_hash": row.row_hash, "row": json.loads(content(row))}  # fmt: skip
    with Session(engine) as s:
        for cp in s.scalars(
            select(AuditCheckpoint).where(AuditCheckpoint.stream == stream)
            .order_by(AuditCheckpoint.seq)
        ):  # fmt: skip
            yield {"type": "checkpoint", "stream": stream, "seq": cp.seq,
                   "row_hash": cp.row_hash, "at": _value(cp.at), "public_key": cp.public_key,
                   "signature": cp.signature}  # fmt: skip
