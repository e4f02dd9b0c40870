"""Authorisation lives in the service layer: a user without admin rights neither sees
nor changes another user's profile, token, server or credential — and cannot even tell
that it exists (the refusal reads as for a row that is not there) — while an admin
can. Everything here runs against a real migrated store."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from gigmcp.control import audit, credentials, pins, profiles, servers, tokens, tools
from gigmcp.control.actor import Actor
from gigmcp.errors import Forbidden, NotFound
from gigmcp.store.models import ConfigRevision
from gigmcp.vault.keys import Keyring, MasterKey

RING = Keyring(MasterKey(bytes(range(32))))
KEYED = {"hosts": ["api.example.test"]}
API_KEY = {
    "id": "api_key",
    "type": "api_key",
    "provider": "example",
    "inject": {"header": "Authorization", "format": "Bearer {token}"},
}


def _revision(engine: Engine) -> int:
    with Session(engine) as s:
        return s.scalars(select(ConfigRevision.rev)).one()


def _alice_world(engine: Engine, alice: Actor) -> int:
    """Alice's profile, server (with a credential), assignment, value and token; the
    token's id."""
    profiles.create_profile(engine, alice, "alice-p")
    servers.add_server(
        engine, alice, "alice-srv", ["/bin/true"], {}, [], None,
        egress=KEYED, credentials=[API_KEY],
    )  # fmt: skip
    profiles.assign(engine, alice, "alice-p", "alice-srv", True)
    credentials.set_credential(engine, RING, alice, "alice-srv", "api_key", b"alice-secret-1")
    tokens.mint_token(engine, alice, "alice-p", "laptop", None)
    (token,) = tokens.list_tokens(engine, alice)
    return token.id


def test_another_user_sees_none_of_alices_rows(engine: Engine, alice: Actor, bob: Actor) -> None:
    _alice_world(engine, alice)
    assert profiles.list_profiles(engine, bob) == []
    assert servers.list_servers(engine, bob) == []
    assert tokens.list_tokens(engine, bob) == []
    assert tokens.list_tokens(engine, bob, "alice-p") == []
    assert credentials.list_credentials(engine, bob) == []
    assert [p.slug for p in profiles.list_profiles(engine, alice)] == ["alice-p"]


def _refusals(engine: Engine, bob: Actor, token_id: int) -> list[Callable[[], object]]:
    return [
        lambda: profiles.show_profile(engine, bob, "alice-p"),
        lambda: profiles.delete_profile(engine, bob, "alice-p"),
        lambda: profiles.unassign(engine, bob, "alice-p", "alice-srv"),
        lambda: tools.set_tool(engine, bob, "alice-p", "alice-srv", "t", False),
        lambda: tokens.mint_token(engine, bob, "alice-p", None, None),
        lambda: tokens.revoke_token(engine, bob, token_id),
        lambda: servers.set_limits(engine, bob, "alice-srv", {"pids": 64}),
        lambda: servers.set_egress(engine, bob, "alice-srv", {"hosts": ["evil.example"]}),
        lambda: servers.remove_server(engine, bob, "alice-srv"),
        lambda: credentials.set_credential(engine, RING, bob, "alice-srv", "api_key", b"x"),
        lambda: credentials.unset_credential(engine, bob, "alice-srv", "api_key"),
        lambda: pins.list_pins(engine, bob, "alice-srv"),
        lambda: pins.approve(engine, bob, "alice-srv", "t"),
    ]


def test_another_user_can_change_none_of_alices_rows(
    engine: Engine, alice: Actor, bob: Actor
) -> None:
    token_id = _alice_world(engine, alice)
    rev = _revision(engine)
    for refused in _refusals(engine, bob, token_id):
        with pytest.raises(NotFound):
            refused()
    assert _revision(engine) == rev
    # Alice's rows are as she left them.
    detail = profiles.show_profile(engine, alice, "alice-p")
    assert [a.server for a in detail.assignments] == ["alice-srv"]
    assert [t.revoked for t in tokens.list_tokens(engine, alice)] == [False]
    assert [c.is_set for c in credentials.list_credentials(engine, alice)] == [True]


def test_a_refusal_reads_as_for_a_row_that_does_not_exist(
    engine: Engine, alice: Actor, bob: Actor
) -> None:
    token_id = _alice_world(engine, alice)
    pairs = [
        (lambda: profiles.show_profile(engine, bob, "alice-p"),
         lambda: profiles.show_profile(engine, bob, "nobody-p")),
        (lambda: profiles.delete_profile(engine, bob, "alice-p"),
         lambda: profiles.delete_profile(engine, bob, "nobody-p")),
        (lambda: servers.remove_server(engine, bob, "alice-srv"),
         lambda: servers.remove_server(engine, bob, "nobody-srv")),
        (lambda: tokens.revoke_token(engine, bob, token_id),
         lambda: tokens.revoke_token(engine, bob, token_id + 1000)),
    ]  # fmt: skip
    for hidden, missing in pairs:
        with pytest.raises(NotFound) as a:
            hidden()
        with pytest.raises(NotFound) as b:
            missing()
        assert str(a.value).replace("alice", "nobody") == str(b.value).replace(
            str(token_id + 1000), str(token_id)
        )


def test_a_user_cannot_use_another_users_server_in_their_own_profile(
    engine: Engine, alice: Actor, bob: Actor
) -> None:
    _alice_world(engine, alice)
    profiles.create_profile(engine, bob, "bob-p")
    with pytest.raises(NotFound, match="no server named 'alice-srv'"):
        profiles.assign(engine, bob, "bob-p", "alice-srv", True)


def test_an_admin_sees_and_changes_every_users_rows(
    engine: Engine, admin: Actor, alice: Actor
) -> None:
    token_id = _alice_world(engine, alice)
    assert [p.slug for p in profiles.list_profiles(engine, admin)] == ["alice-p"]
    assert [s.name for s in servers.list_servers(engine, admin)] == ["alice-srv"]
    assert profiles.show_profile(engine, admin, "alice-p").assignments[0].server == "alice-srv"
    tools.set_tool(engine, admin, "alice-p", "alice-srv", "dangerous", False)
    servers.set_limits(engine, admin, "alice-srv", {"pids": 64})
    tokens.revoke_token(engine, admin, token_id)
    assert [t.revoked for t in tokens.list_tokens(engine, alice)] == [True]
    # A credential value is the acting user's own: the admin sees Alice's server's
    # declaration, with no value of the admin's set — never Alice's value.
    assert [(c.server, c.is_set) for c in credentials.list_credentials(engine, admin)] == [
        ("alice-srv", False)
    ]
    profiles.delete_profile(engine, admin, "alice-p")
    assert profiles.list_profiles(engine, alice) == []


def test_the_vault_is_an_admins_business(engine: Engine, admin: Actor, alice: Actor) -> None:
    _alice_world(engine, alice)
    with pytest.raises(Forbidden):
        credentials.key_counts(engine, alice)
    with pytest.raises(Forbidden):
        credentials.rotate_master_key(engine, RING, alice)
    assert credentials.key_counts(engine, admin) == {RING.current.key_id_hex: 1}


def test_a_user_reads_only_the_audit_rows_of_their_own_actions(
    engine: Engine, admin: Actor, alice: Actor, bob: Actor
) -> None:
    _alice_world(engine, alice)
    profiles.create_profile(engine, bob, "bob-p")
    mine = audit.events(engine, bob, limit=500).items
    assert [e.action for e in mine] == ["profile.create"]
    assert {e.user_id for e in mine} == {bob.user_id}
    everyone = audit.events(engine, admin, limit=500).items
    assert {e.user_id for e in everyone} == {alice.user_id, bob.user_id}


def test_a_server_an_admin_owns_is_everyones_to_use_and_only_the_admins_to_change(
    engine: Engine, admin: Actor, alice: Actor, bob: Actor
) -> None:
    """The catalog: what an administrator installs or adds, every user may assign and
    set their own credential for; only an administrator (or its owner) changes it."""
    servers.add_server(
        engine, admin, "catalog-srv", ["/bin/true"], {}, [], None,
        egress=KEYED, credentials=[API_KEY],
    )  # fmt: skip
    profiles.create_profile(engine, bob, "bob-p")
    profiles.assign(engine, bob, "bob-p", "catalog-srv", True)
    tools.set_tool(engine, bob, "bob-p", "catalog-srv", "t", False)
    credentials.set_credential(engine, RING, bob, "catalog-srv", "api_key", b"bobs-own-value")
    assert [srv.name for srv in servers.list_servers(engine, bob)] == ["catalog-srv"]
    assert [(c.server, c.is_set) for c in credentials.list_credentials(engine, bob)] == [
        ("catalog-srv", True)
    ]
    # Alice sees the server, but not Bob's value: her own is not set.
    assert [(c.server, c.is_set) for c in credentials.list_credentials(engine, alice)] == [
        ("catalog-srv", False)
    ]
    for change in (
        lambda: servers.set_limits(engine, bob, "catalog-srv", {"pids": 64}),
        lambda: servers.set_egress(engine, bob, "catalog-srv", {"hosts": ["evil.example"]}),
        lambda: servers.remove_server(engine, bob, "catalog-srv"),
        lambda: pins.approve(engine, bob, "catalog-srv", "t"),
    ):
        with pytest.raises(NotFound):
            change()
