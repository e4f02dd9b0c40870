"""What an instance's grant is made of, as the gateway's snapshot sees it: the egress
allowlist, the declared credentials and which values the profile's owner set.

The router retires running instances whose grant moved (tests/egress/test_grant_changes.py
shows it end to end); these tests pin down that the snapshot moves exactly when it must:
on every set, replace or unset of a value and every allowlist change, and not for a
master-key rotation (same values) or for another server's values. The snapshot never
holds a value.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gigmcp.control import actor, credentials, profiles, servers
from gigmcp.core.views import ServerDef
from gigmcp.store.catalog import StoreCatalog
from gigmcp.vault.keys import Keyring, MasterKey

CANARY = b"sk_live_gigSNAPSHOT_3c4d5e6f7a8b9c0d1e2f"
OLD_KEY, NEW_KEY = MasterKey(bytes(range(32))), MasterKey(bytes(range(1, 33)))
CREDENTIAL = {
    "id": "api_key",
    "type": "api_key",
    "inject": {"header": "Authorization", "format": "Bearer {token}"},
    "env": "API_KEY",
    "hosts": ["api.example.test"],
}
EGRESS = {"hosts": ["api.example.test", "other.example.test"]}


@pytest.fixture
def cat(database_url: str) -> Iterator[StoreCatalog]:
    catalog = StoreCatalog(database_url)
    me = actor.local_admin(catalog.engine)
    profiles.create_profile(catalog.engine, me, "p1")
    for name in ("keyed", "other"):
        servers.add_server(
            catalog.engine, me, name, ["true"], {}, [], None,
            egress=EGRESS, credentials=[CREDENTIAL],
        )  # fmt: skip
        profiles.assign(catalog.engine, me, "p1", name, True)
    yield catalog
    catalog.engine.dispose()


def server(cat: StoreCatalog, name: str = "keyed") -> ServerDef:
    cat.refresh()
    view = cat.profile_by_slug("p1")
    assert view is not None
    assignment = view.assignment(name)
    assert assignment is not None
    return assignment.server


def test_every_set_replace_or_unset_of_a_value_moves_the_grant(cat: StoreCatalog) -> None:
    me, ring = actor.local_admin(cat.engine), Keyring(OLD_KEY)
    unset = server(cat).grant()
    credentials.set_credential(cat.engine, ring, me, "keyed", "api_key", CANARY)
    first = server(cat).grant()
    # The same value set again is a new record: an operator who re-enters a key after a
    # leak means it, and the gateway cannot compare values it does not decrypt.
    credentials.set_credential(cat.engine, ring, me, "keyed", "api_key", CANARY)
    again = server(cat).grant()
    credentials.unset_credential(cat.engine, me, "keyed", "api_key")
    assert len({unset, first, again}) == 3
    assert server(cat).grant() == unset
    credentials.set_credential(cat.engine, ring, me, "keyed", "api_key", CANARY)
    assert CANARY.decode() not in repr(cat.profile_by_slug("p1"))


def test_a_master_key_rotation_or_another_servers_value_leaves_the_grant(
    cat: StoreCatalog,
) -> None:
    me = actor.local_admin(cat.engine)
    credentials.set_credential(cat.engine, Keyring(OLD_KEY), me, "keyed", "api_key", CANARY)
    before = server(cat)
    credentials.rotate_master_key(cat.engine, Keyring(NEW_KEY, [OLD_KEY]), me)
    credentials.set_credential(cat.engine, Keyring(NEW_KEY), me, "other", "api_key", CANARY)
    assert server(cat) == before
    assert server(cat, "other").grant() != before.grant()


def test_an_allowlist_change_moves_the_grant_and_a_limit_does_not(cat: StoreCatalog) -> None:
    me = actor.local_admin(cat.engine)
    before = server(cat)
    servers.set_limits(cat.engine, me, "keyed", {"pids": 64})
    limited = server(cat)
    assert limited != before and limited.grant() == before.grant()
    servers.set_egress(cat.engine, me, "keyed", {"hosts": ["api.example.test"]})
    assert server(cat).grant() != before.grant()
