"""The catalog and installing from it in two steps, in-process over the real API app, a
real store, and a real signed index built and signed by the `gigmcp registry` commands
from a real catalog entry (a toolspec server: installing it fetches nothing). The
install acts only on the digest of the consent text the caller was shown; an index that
changed in between is refused; only an administrator installs."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx2 as httpx
import pytest

from gigmcp.api.app import build_api
from gigmcp.api.context import ApiConfig
from gigmcp.control import apitokens, users
from gigmcp.control.users import Identity, RolePolicy
from gigmcp.installer.index_fetch import RegistrySource
from gigmcp.installer.materialize import Target
from gigmcp.store.db import make_engine, migrate

ROOT = Path(__file__).resolve().parents[2]
ABLY = ROOT.parent / "shared" / "registry-catalog" / "manifests" / "ably"
GIGMCP = str(Path(sys.executable).parent / "gigmcp")


@dataclass
class World:
    c: httpx.AsyncClient
    admin: dict[str, str]
    user: dict[str, str]
    root: Path
    env: dict[str, str]

    def publish(self, generated: str) -> None:
        idx = self.root / "index" / "index.json"
        for args in (
            (
                "registry",
                "build-index",
                str(self.root / "manifests"),
                "--out",
                str(idx),
                "--generated",
                generated,
            ),
            ("registry", "sign", str(idx), "--key", str(self.root / "key")),
        ):
            subprocess.run([GIGMCP, *args], env=self.env, check=True, capture_output=True)


@pytest.fixture
async def w(tmp_path: Path) -> AsyncIterator[World]:
    if not ABLY.is_dir():
        pytest.skip(f"the registry catalog is not at {ABLY}")
    env = {"PATH": "/usr/bin:/bin", "GIG_DATA_DIR": str(tmp_path / "cli"), "HOME": str(tmp_path)}
    root = tmp_path / "registry"
    (root / "index").mkdir(parents=True)
    shutil.copytree(ABLY, root / "manifests" / "ably")
    keygen = [GIGMCP, "registry", "keygen", "--out", str(root / "key")]
    pub = subprocess.run(keygen, env=env, check=True, capture_output=True, text=True).stdout.strip()
    engine = make_engine(f"sqlite:///{tmp_path / 'g.db'}")
    migrate(engine)
    packages = tmp_path / "packages"
    cfg = ApiConfig(
        engine,
        "http://127.0.0.1:1",
        False,
        registry=RegistrySource(f"file://{root / 'index' / 'index.json'}", pub, tmp_path / "cache"),
        install_target=Target(packages),
    )
    policy = RolePolicy(admin_subjects=frozenset({"root"}))
    admin = users.sign_in(engine, Identity("https://idp.test", "root"), policy)
    user = users.sign_in(engine, Identity("https://idp.test", "bob"), policy)
    _, at = apitokens.mint(engine, admin, "a", "write", None)
    _, ut = apitokens.mint(engine, user, "u", "write", None)
    world = World(
        httpx.AsyncClient(transport=httpx.ASGITransport(app=build_api(cfg)), base_url="http://t"),
        {"Authorization": f"Bearer {at}"},
        {"Authorization": f"Bearer {ut}"},
        root,
        env,
    )
    world.publish("2026-11-18T00:00:00Z")
    async with world.c:
        yield world


async def test_the_catalog_lists_and_shows_what_an_entry_may_do(w: World) -> None:
    listed = (await w.c.get("/api/v1/catalog?q=ably", headers=w.user)).json()
    assert [e["name"] for e in listed] == ["ably"]
    assert (await w.c.get("/api/v1/catalog?q=nothing-like-this", headers=w.user)).json() == []
    detail = (await w.c.get("/api/v1/catalog/ably", headers=w.user)).json()
    assert detail["hosts"] and all(isinstance(h, str) for h in detail["hosts"])
    assert {c["id"] for c in detail["credentials"]}
    tools = {t["name"]: t["enabled_by_default"] for t in detail["tools"]}
    assert tools["list_channels"] is True and tools["publish_message_to_channel"] is False
    # A ref the index does not have is the caller's mistake: 404, not a 500.
    missing = await w.c.get("/api/v1/catalog/no-such-entry", headers=w.user)
    assert missing.status_code == 404 and missing.json()["code"] == "not-found"


async def test_install_takes_two_steps_and_acts_on_the_consent_shown(w: World) -> None:
    shown = (await w.c.get("/api/v1/catalog/ably/consent", headers=w.admin)).json()
    assert shown["server"] == "ably" and shown["kind"] == "toolspec"
    assert any("Basic {token}" in line for line in shown["lines"])
    wrong = await w.c.post(
        "/api/v1/installs", json={"ref": "ably", "consent_digest": "0" * 64}, headers=w.admin
    )
    assert wrong.status_code == 409
    ok = await w.c.post(
        "/api/v1/installs", json={"ref": "ably", "consent_digest": shown["digest"]}, headers=w.admin
    )
    assert ok.status_code == 201, ok.text
    assert "ably" in [s["name"] for s in (await w.c.get("/api/v1/servers", headers=w.user)).json()]
    again = await w.c.post(
        "/api/v1/installs", json={"ref": "ably", "consent_digest": shown["digest"]}, headers=w.admin
    )
    assert again.status_code == 409  # installed already
    assert (await w.c.delete("/api/v1/installs/ably", headers=w.admin)).status_code == 204
    assert "ably" not in [
        s["name"] for s in (await w.c.get("/api/v1/servers", headers=w.user)).json()
    ]


async def test_attack_an_entry_changed_after_the_consent_was_shown_is_not_installed(
    w: World,
) -> None:
    shown = (await w.c.get("/api/v1/catalog/ably/consent", headers=w.admin)).json()
    manifest = w.root / "manifests" / "ably" / "0.1.0.yaml"
    text = manifest.read_text()
    assert "egress:" in text
    manifest.write_text(text.replace("egress:", "egress:\n    - evil.example.com", 1))
    w.publish("2026-11-19T00:00:00Z")
    r = await w.c.post(
        "/api/v1/installs", json={"ref": "ably", "consent_digest": shown["digest"]}, headers=w.admin
    )
    assert r.status_code == 409, r.text
    assert "ably" not in [
        s["name"] for s in (await w.c.get("/api/v1/servers", headers=w.admin)).json()
    ]


async def test_only_an_administrator_installs_or_uninstalls(w: World) -> None:
    r = await w.c.get("/api/v1/catalog/ably/consent", headers=w.user)
    assert r.status_code == 403
    r = await w.c.post(
        "/api/v1/installs", json={"ref": "ably", "consent_digest": "0" * 64}, headers=w.user
    )
    assert r.status_code == 403
