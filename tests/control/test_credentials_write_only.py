"""Credential values are write-only in the service layer: a value can be set, replaced
and removed, and nothing in ``control/`` hands it back — not the credential functions,
not any listing, not an audit row, not an error."""

from __future__ import annotations

import dataclasses
import inspect
import typing

import pytest
from sqlalchemy import Engine

from gigmcp.control import audit, credentials, profiles, servers, tokens
from gigmcp.control.actor import Actor
from gigmcp.errors import GigError
from gigmcp.vault.keys import Keyring, MasterKey

RING = Keyring(MasterKey(bytes(range(32))))
CANARY = b"canary-value-0123456789"
SEALED = {
    "id": "api_key",
    "type": "api_key",
    "provider": "example",
    "inject": {"header": "Authorization", "format": "Bearer {token}"},
}


def test_no_credential_function_can_return_a_value() -> None:
    hints = {
        name: typing.get_type_hints(fn)["return"]
        for name, fn in inspect.getmembers(credentials, inspect.isfunction)
        if fn.__module__ == credentials.__name__ and not name.startswith("_")
    }
    assert hints["set_credential"] is type(None)
    assert hints["unset_credential"] is type(None)
    for name, returned in hints.items():
        assert bytes not in typing.get_args(returned) and returned is not bytes, name
    fields = {f.name: f.type for f in dataclasses.fields(credentials.CredentialStatus)}
    assert fields == {"server": "str", "credential_id": "str", "kind": "str", "is_set": "bool"}


def test_a_value_set_appears_nowhere_the_service_layer_answers(
    engine: Engine, admin: Actor
) -> None:
    servers.add_server(
        engine, admin, "keyed", ["/bin/true"], {}, [], None,
        egress={"hosts": ["api.example.test"]}, credentials=[SEALED],
    )  # fmt: skip
    profiles.create_profile(engine, admin, "p1")
    profiles.assign(engine, admin, "p1", "keyed", True)
    assert credentials.set_credential(engine, RING, admin, "keyed", "api_key", CANARY) is None
    answers = [
        credentials.list_credentials(engine, admin),
        credentials.key_counts(engine, admin),
        servers.list_servers(engine, admin),
        profiles.list_profiles(engine, admin),
        profiles.show_profile(engine, admin, "p1"),
        tokens.list_tokens(engine, admin),
        audit.events(engine, admin, limit=500),
    ]
    text = repr(answers)
    assert CANARY.decode() not in text and CANARY.hex() not in text
    assert [(c.server, c.credential_id, c.kind, c.is_set) for c in answers[0]] == [
        ("keyed", "api_key", "sealed", True)
    ]
    # Refused values are described, never quoted.
    for bad in (CANARY + b"\n" + CANARY, CANARY + b" "):
        with pytest.raises(GigError) as refused:
            credentials.set_credential(engine, RING, admin, "keyed", "api_key", bad)
        assert CANARY.decode() not in str(refused.value)
    credentials.unset_credential(engine, admin, "keyed", "api_key")
    assert [c.is_set for c in credentials.list_credentials(engine, admin)] == [False]
