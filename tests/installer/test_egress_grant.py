"""What a registry install grants, and what its consent text says about ports.

The registry's schema names hosts, never ports: a registry server gets HTTPS (443) and
nothing else — no plain HTTP, where a key could be read by anyone on the path. The
consent text names every port the grant holds, says that no credential is ever sent on
port 80, and names the operator's setting behind any other port.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from gigmcp.control import actor, install_rows
from gigmcp.installer import consent
from gigmcp.installer.runnable import Runnable
from gigmcp.registry import gostruct
from gigmcp.store.db import make_engine, migrate
from gigmcp.store.models import Server
from tests.support.registry_samples import good


def test_attack_a_registry_install_grants_no_plain_http(tmp_path: Path) -> None:
    from gigmcp.installer.materialize import egress_grant

    manifest = good()
    grant = egress_grant(manifest)
    assert grant == {"hosts": list(manifest.entitlements.egress), "ports": [443]}
    engine = make_engine(f"sqlite:///{tmp_path / 'g.db'}")
    migrate(engine)
    origin = {"kind": "oci", "name": manifest.name, "version": manifest.version,
              "runtime_hash": "r" * 64, "manifest": {}}  # fmt: skip
    run = Runnable(["/bin/true"], None, {}, grant, [], origin)
    install_rows.install(engine, actor.local_admin(engine), "chat", run)
    with Session(engine) as s:
        stored = s.scalars(select(Server.egress).where(Server.name == "chat")).one()
    assert stored["ports"] == [443]
    engine.dispose()


def test_the_consent_text_of_a_registry_server_names_https_only() -> None:
    text = "\n".join(consent.describe(gostruct.to_plain(good()), "oci", "img"))
    assert "port 443 (HTTPS" in text
    assert "port 80" not in text and "plain HTTP" not in text.replace("no plain HTTP", "")


def test_the_consent_text_says_no_credential_is_ever_sent_on_port_80() -> None:
    lines = consent.describe(gostruct.to_plain(good()), "oci", "img", ports=[443, 80, 2375])
    text = "\n".join(lines)
    assert "port 80 (plain HTTP): no credential is ever sent on it" in text
    assert "port 2375" in text and "GIG_EGRESS_EXTRA_PORTS" in text
    # Every host is still listed, before the ports.
    for host in good().entitlements.egress:
        assert f"  - {host}" in text
