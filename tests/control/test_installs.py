"""Installs through the service layer: consent is asked through a callback (or, for a
pending upgrade, in two steps), and a refusal leaves nothing behind — no row, no file,
no revision bump. Errors come from the one error tree, each in words an operator can
act on."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from gigmcp import errors
from gigmcp.config import load_settings
from gigmcp.control import install_rows, installs, servers
from gigmcp.control.actor import Actor
from gigmcp.installer.index_fetch import Fetched
from gigmcp.installer.materialize import Target
from gigmcp.installer.runnable import Runnable
from gigmcp.registry import gostruct
from gigmcp.registry.index import build_index, parse_index
from gigmcp.store.models import AuditRow, ConfigRevision, Server
from tests.support.registry_samples import good

GENERATED = "2026-01-01T00:00:00Z"


def _fetched() -> Fetched:
    raw = build_index([good()], GENERATED, [])
    return Fetched(parse_index(raw), raw, "0" * 64, datetime(2026, 1, 1, tzinfo=UTC))


def _state(engine: Engine) -> tuple[int, int, int]:
    with Session(engine) as s:
        return (
            s.scalars(select(ConfigRevision.rev)).one(),
            s.scalar(select(func.count()).select_from(Server)) or 0,
            s.scalar(select(func.count()).select_from(AuditRow)) or 0,
        )


def test_refused_consent_stops_the_install_with_nothing_written(
    engine: Engine, admin: Actor, tmp_path: Path
) -> None:
    plan = installs.plan_install(engine, admin, _fetched(), "chat-mcp")
    assert (plan.server, plan.kind) == ("chat-mcp", "oci")
    before = _state(engine)
    asked: list[Sequence[str]] = []

    def refuse(lines: Sequence[str]) -> bool:
        asked.append(lines)
        return False

    packages = tmp_path / "packages"
    with pytest.raises(installs.ConsentRefused, match="consent refused"):
        asyncio.run(installs.install(engine, admin, Target(packages), plan, refuse))
    assert asked == [plan.consent]
    text = "\n".join(plan.consent)
    assert "chat.example.com" in text and "chat_token" in text and "admin_settings" in text
    assert _state(engine) == before
    assert not packages.exists(), "something was fetched before consent"


def test_a_plan_is_refused_before_anything_is_asked(engine: Engine, admin: Actor) -> None:
    fetched = _fetched()
    with pytest.raises(errors.RegistryError, match="no-such-server"):
        installs.plan_install(engine, admin, fetched, "no-such-server")
    with pytest.raises(errors.Invalid, match="invalid server name 'Bad_Name'"):
        installs.plan_install(engine, admin, fetched, "chat-mcp", "Bad_Name")
    servers.add_server(engine, admin, "taken", ["/bin/true"], {}, [], None)
    with pytest.raises(errors.Conflict, match="use: gigmcp server upgrade taken"):
        installs.plan_install(engine, admin, fetched, "chat-mcp", "taken")
    with pytest.raises(errors.Invalid, match="was not installed from the registry"):
        installs.registry_name(engine, admin, "taken")


def test_no_registry_configured_is_a_configuration_error(tmp_path: Path) -> None:
    settings = load_settings({"GIG_DATA_DIR": str(tmp_path)})
    with pytest.raises(errors.ConfigurationError, match="GIG_REGISTRY_INDEX_URL"):
        installs.registry_source(settings)


def _run(runtime_hash: str, vendor: str | None = None) -> Runnable:
    m = good()
    origin = {"kind": "oci", "name": m.name, "version": m.version, "package": "img",
              "runtime_hash": runtime_hash, "manifest": gostruct.to_plain(m)}  # fmt: skip
    creds = []
    if vendor is not None:
        creds = [{"id": "chat_token", "type": "oauth2", "provider": "chat", "vendor": vendor,
                  "inject": {"header": "Authorization", "format": "Bearer {token}"}}]  # fmt: skip
    return Runnable(["/server"], None, {}, {"hosts": ["chat.example.com"]}, creds, origin)


def test_attack_an_upgrade_that_only_changes_a_credentials_vendor_waits_for_consent(
    engine: Engine, admin: Actor
) -> None:
    """The vendor is outside the reference's runtime hash, yet it says whose connected
    account's token the proxy puts into the server's requests: same hash, new vendor,
    pending; same hash and vendor, applied."""
    install_rows.install(engine, admin, "chat", _run("a" * 64, vendor="acme"))
    assert install_rows.upgrade(engine, admin, "chat", _run("a" * 64, vendor="google")) == "pending"
    with Session(engine) as s:
        row = s.scalars(select(Server).where(Server.name == "chat")).one()
        assert row.credentials[0]["vendor"] == "acme"
    assert install_rows.upgrade(engine, admin, "chat", _run("a" * 64, vendor="acme")) == "applied"


def test_a_pending_upgrade_applies_only_as_it_was_shown(
    engine: Engine, admin: Actor, alice: Actor, tmp_path: Path
) -> None:
    install_rows.install(engine, admin, "chat", _run("a" * 64))
    assert install_rows.upgrade(engine, admin, "chat", _run("b" * 64)) == "pending"
    shown = installs.pending_upgrade(engine, admin, "chat")
    assert shown.runtime_hash == "b" * 64 and "chat.example.com" in "\n".join(shown.consent)
    # Another user cannot see or consent to it.
    with pytest.raises(errors.NotFound):
        installs.pending_upgrade(engine, alice, "chat")
    with pytest.raises(errors.NotFound):
        installs.apply_upgrade(engine, alice, tmp_path, shown)
    # What waits changes after it was shown: the consent given does not carry over.
    assert install_rows.upgrade(engine, admin, "chat", _run("c" * 64)) == "pending"
    with pytest.raises(errors.Conflict, match="changed since it was shown"):
        installs.apply_upgrade(engine, admin, tmp_path, shown)
    again = installs.pending_upgrade(engine, admin, "chat")
    installs.apply_upgrade(engine, admin, tmp_path, again)
    with Session(engine) as s:
        row = s.scalars(select(Server).where(Server.name == "chat")).one()
        assert (row.consented_runtime_hash, row.pending) == ("c" * 64, None)
    with pytest.raises(errors.Conflict, match="no upgrade waiting"):
        installs.pending_upgrade(engine, admin, "chat")
