"""Handles to what one replica holds (router/handles.py): any replica with the shared
key can tell which replica holds a handle and for which token it was minted, and
nothing else passes as one."""

from __future__ import annotations

import pytest

from gigmcp.router.handles import Handles, derive

KEY = derive(b"k" * 32, "handle")


def test_a_handle_names_its_replica_to_every_replica_with_the_key() -> None:
    handle = Handles(KEY, "aaaa11112222").mint("state", 7)
    assert Handles(KEY, "bbbb33334444").holder("state", handle, 7) == "aaaa11112222"


@pytest.mark.parametrize(
    ("kind", "token_id"), [("task", 7), ("state", 8)], ids=["another kind", "another token"]
)
def test_attack_a_handle_used_for_another_token_or_kind_names_no_one(
    kind: str, token_id: int
) -> None:
    handle = Handles(KEY, "aaaa11112222").mint("state", 7)
    assert Handles(KEY, "bbbb33334444").holder(kind, handle, token_id) is None


def test_attack_a_handle_pointed_at_another_replica_names_no_one() -> None:
    _replica, ident, tag = Handles(KEY, "aaaa11112222").mint("state", 7).split(".")
    assert Handles(KEY, "x").holder("state", f"cccc55556666.{ident}.{tag}", 7) is None


@pytest.mark.parametrize(
    "handle", ["", "a.b", "a.b.c.d", "../x.y.z", None, 12, "a" * 300], ids=repr
)
def test_attack_malformed_handles_name_no_one(handle: object) -> None:
    assert Handles(KEY, "aaaa11112222").holder("state", handle, 7) is None


def test_another_deployments_key_reads_nothing() -> None:
    handle = Handles(KEY, "aaaa11112222").mint("task", 7)
    assert Handles(derive(b"o" * 32, "handle"), "aaaa11112222").holder("task", handle, 7) is None
