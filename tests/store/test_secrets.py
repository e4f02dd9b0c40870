"""Credential values at rest, on both databases: sealed, bound to their rows, rotated in
one transaction, and never on disk in clear."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from gigmcp.control import actor, credentials, servers
from gigmcp.control.actor import Actor
from gigmcp.errors import GigError, VaultError
from gigmcp.store import secrets as vault_store
from gigmcp.store.models import CredentialValue
from gigmcp.vault import envelope
from gigmcp.vault.keys import Keyring, MasterKey

OLD = MasterKey(b"\x11" * 32)
NEW = MasterKey(b"\x22" * 32)
CANARY = b"gig-canary-vault-7d3e1b0f9c2a"
GITHUB = {
    "id": "github_token",
    "type": "api_key",
    "inject": {"header": "Authorization", "format": "Bearer {token}"},
    "env": "GITHUB_TOKEN",
}
SLACK = {"id": "slack_token", "type": "api_key", "inject": {"env": "SLACK_TOKEN"}}


@pytest.fixture
def engine(migrated_engine: Engine) -> Engine:
    return migrated_engine


@pytest.fixture
def me(engine: Engine) -> Actor:
    user = actor.local_admin(engine)
    for name in ("gh", "other"):
        servers.add_server(
            engine, user, name, ["/bin/true"], {}, [], None,
            egress={"hosts": ["api.github.com", "slack.com"]}, credentials=[GITHUB, SLACK],
        )  # fmt: skip
    return user


def _server_id(engine: Engine, name: str) -> int:
    from gigmcp.store.models import Server

    with Session(engine) as s:
        sid = s.scalar(select(Server.id).where(Server.name == name))
        assert sid is not None
        return sid


def test_a_value_is_set_and_read_back_through_the_vault(engine: Engine, me: Actor) -> None:
    ring = Keyring(OLD)
    credentials.set_credential(engine, ring, me, "gh", "github_token", CANARY)
    with Session(engine) as s:
        assert (
            vault_store.get(s, ring, me.user_id, _server_id(engine, "gh"), "github_token") == CANARY
        )
        row = s.scalars(select(CredentialValue)).one()
        assert CANARY not in row.ciphertext and row.key_id == OLD.key_id_hex


def test_a_credential_the_server_does_not_declare_is_refused(engine: Engine, me: Actor) -> None:
    with pytest.raises(GigError, match="declares no credential 'aws_key'.*github_token"):
        credentials.set_credential(engine, Keyring(OLD), me, "gh", "aws_key", CANARY)


@pytest.mark.parametrize(
    "value", [b"", b"two\nlines", b"cr\rhere", b"nul\0byte", b"bell\x07", b"del\x7f", b"tab\tx"]
)
def test_a_value_that_could_split_a_header_is_refused(
    engine: Engine, me: Actor, value: bytes
) -> None:
    with pytest.raises(GigError):
        credentials.set_credential(engine, Keyring(OLD), me, "gh", "github_token", value)


def test_attack_a_ciphertext_swapped_between_rows_does_not_open(engine: Engine, me: Actor) -> None:
    ring = Keyring(OLD)
    credentials.set_credential(engine, ring, me, "gh", "github_token", CANARY)
    credentials.set_credential(engine, ring, me, "other", "github_token", b"the-other-servers-key")
    gh, other = _server_id(engine, "gh"), _server_id(engine, "other")
    with Session(engine) as s, s.begin():
        rows = {r.server_id: r for r in s.scalars(select(CredentialValue))}
        rows[gh].ciphertext, rows[other].ciphertext = rows[other].ciphertext, rows[gh].ciphertext
    with Session(engine) as s:
        for sid in (gh, other):
            with pytest.raises(VaultError, match="moved from another row"):
                vault_store.get(s, ring, me.user_id, sid, "github_token")


def test_attack_a_ciphertext_moved_to_another_user_does_not_open(engine: Engine, me: Actor) -> None:
    ring = Keyring(OLD)
    credentials.set_credential(engine, ring, me, "gh", "github_token", CANARY)
    with Session(engine) as s, s.begin():
        from gigmcp.store.models import User

        mallory = User(issuer="local", subject="mallory", role="user")
        s.add(mallory)
        s.flush()
        s.execute(update(CredentialValue).values(owner_id=mallory.id))
        mallory_id = mallory.id
    with Session(engine) as s, pytest.raises(VaultError):
        vault_store.get(s, ring, mallory_id, _server_id(engine, "gh"), "github_token")


def test_replacing_a_value_changes_its_record_id(engine: Engine, me: Actor) -> None:
    ring = Keyring(OLD)
    credentials.set_credential(engine, ring, me, "gh", "github_token", b"first-value-123")
    with Session(engine) as s:
        first = s.scalars(select(CredentialValue)).one()
        first_record, first_blob = first.record_id, first.ciphertext
    credentials.set_credential(engine, ring, me, "gh", "github_token", b"second-value-456")
    with Session(engine) as s, s.begin():
        row = s.scalars(select(CredentialValue)).one()
        assert row.record_id != first_record
        row.ciphertext = first_blob  # an old copy put back in place
    with Session(engine) as s, pytest.raises(VaultError):
        vault_store.get(s, ring, me.user_id, _server_id(engine, "gh"), "github_token")


def test_rotation_rewraps_every_value_and_the_old_key_is_no_longer_needed(
    engine: Engine, me: Actor
) -> None:
    for server in ("gh", "other"):
        for cid in ("github_token", "slack_token"):
            credentials.set_credential(engine, Keyring(OLD), me, server, cid, CANARY + cid.encode())
    result = credentials.rotate_master_key(engine, Keyring(NEW, [OLD]), me)
    assert (result.rewrapped, result.already_current) == (4, 0)
    assert vault_store.key_ids(engine) == {NEW.key_id_hex: 4}
    with Session(engine) as s:
        values = vault_store.values_for(s, Keyring(NEW), me.user_id, _server_id(engine, "gh"))
    assert values == {
        "github_token": CANARY + b"github_token",
        "slack_token": CANARY + b"slack_token",
    }
    again = credentials.rotate_master_key(engine, Keyring(NEW, [OLD]), me)
    assert (again.rewrapped, again.already_current) == (0, 4)


def test_a_rotation_interrupted_half_way_changes_nothing(
    engine: Engine, me: Actor, monkeypatch: pytest.MonkeyPatch
) -> None:
    for server in ("gh", "other"):
        for cid in ("github_token", "slack_token"):
            credentials.set_credential(engine, Keyring(OLD), me, server, cid, CANARY + cid.encode())
    with Session(engine) as s:
        before = {r.id: (r.key_id, r.ciphertext) for r in s.scalars(select(CredentialValue))}
    real_rewrap = envelope.rewrap
    calls = 0

    def dies_on_the_third(*args: object, **kwargs: object) -> bytes:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise VaultError("power cut")
        return real_rewrap(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(envelope, "rewrap", dies_on_the_third)
    with pytest.raises(GigError, match="nothing changed"):
        credentials.rotate_master_key(engine, Keyring(NEW, [OLD]), me)
    with Session(engine) as s:
        after = {r.id: (r.key_id, r.ciphertext) for r in s.scalars(select(CredentialValue))}
        assert after == before
        assert vault_store.values_for(s, Keyring(OLD), me.user_id, _server_id(engine, "gh"))


def test_a_row_that_does_not_open_stops_the_rotation_before_anything_moves(
    engine: Engine, me: Actor
) -> None:
    credentials.set_credential(engine, Keyring(OLD), me, "gh", "github_token", CANARY)
    credentials.set_credential(engine, Keyring(OLD), me, "gh", "slack_token", b"slack-value-0000")
    with Session(engine) as s, s.begin():
        row = s.scalars(select(CredentialValue).order_by(CredentialValue.id.desc())).first()
        assert row is not None
        row.ciphertext = row.ciphertext[:-1] + bytes([row.ciphertext[-1] ^ 1])
    with pytest.raises(GigError, match="nothing changed"):
        credentials.rotate_master_key(engine, Keyring(NEW, [OLD]), me)
    assert vault_store.key_ids(engine) == {OLD.key_id_hex: 2}


def test_the_database_never_holds_a_value_in_clear(
    engine: Engine, me: Actor, database_url: str
) -> None:
    ring = Keyring(OLD)
    credentials.set_credential(engine, ring, me, "gh", "github_token", CANARY)
    credentials.rotate_master_key(engine, Keyring(NEW, [OLD]), me)
    credentials.set_credential(engine, Keyring(NEW), me, "other", "slack_token", CANARY)
    engine.dispose()
    for blob in _database_bytes(database_url):
        assert CANARY not in blob
        assert CANARY.hex().encode() not in blob
    assert any(b"credential.set" in b for b in _database_bytes(database_url)), "control"


def _database_bytes(database_url: str) -> list[bytes]:
    """Every byte the database keeps on disk (and, for PostgreSQL, a full dump too)."""
    if database_url.startswith("sqlite"):
        path = Path(database_url.split("///", 1)[1])
        return [p.read_bytes() for p in path.parent.glob(path.name + "*")]
    socket_dir = database_url.split("host=", 1)[1]
    name = database_url.split("@/", 1)[1].split("?", 1)[0]
    dump = subprocess.run(
        ["pg_dump", "-h", socket_dir, "-U", "gig", name], capture_output=True, check=True
    ).stdout
    files = []
    data = Path(socket_dir) / "data"
    subprocess.run(
        ["psql", "-h", socket_dir, "-U", "gig", "-d", name, "-c", "CHECKPOINT"],
        capture_output=True,
        check=True,
    )
    for root, _dirs, names in os.walk(data):
        for n in names:
            try:
                files.append((Path(root) / n).read_bytes())
            except OSError:
                continue
    return [dump, *files]


def test_a_gateway_secret_is_made_once_and_a_racing_replica_gets_the_winners(
    engine: Engine,
) -> None:
    ring = Keyring(OLD)
    made: list[bytes] = []

    def make(value: bytes) -> bytes:
        made.append(value)
        return value

    first = vault_store.get_or_add_item(engine, ring, "test-item", lambda: make(b"first"))
    again = vault_store.get_or_add_item(engine, ring, "test-item", lambda: make(b"second"))
    assert first == again == b"first"
    assert made == [b"first"]  # the second call found it and made nothing

    # A replica that looked, found nothing, and made its own while another replica
    # stored theirs: the insert is refused and the stored value is what it returns.
    def lose_the_race() -> bytes:
        with Session(engine) as s, s.begin():
            vault_store.add_item(s, ring, "raced", b"the other replica's")
        return b"ours"

    assert vault_store.get_or_add_item(engine, ring, "raced", lose_the_race) == (
        b"the other replica's"
    )
