"""Fixtures of the service-layer tests: a real store (SQLite in the test's folder,
migrated by the real migrations) and three users — the local administrator and two
users without admin rights. Users are rows here because signing in is not the service
layer's business."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from gigmcp.control import actor
from gigmcp.control.actor import Actor
from gigmcp.store.db import make_engine, migrate
from gigmcp.store.models import User


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    eng = make_engine(f"sqlite:///{tmp_path / 'gig.db'}")
    migrate(eng)
    try:
        yield eng
    finally:
        eng.dispose()


def _user(engine: Engine, subject: str) -> Actor:
    with Session(engine) as s, s.begin():
        user = User(issuer="https://idp.example.test", subject=subject, email=None, role="user")
        s.add(user)
        s.flush()
        uid = user.id
    found = actor.of_user(engine, uid)
    assert found == Actor(uid, admin=False)
    return found


@pytest.fixture
def admin(engine: Engine) -> Actor:
    return actor.local_admin(engine)


@pytest.fixture
def alice(engine: Engine) -> Actor:
    return _user(engine, "alice")


@pytest.fixture
def bob(engine: Engine) -> Actor:
    return _user(engine, "bob")
