"""Installing from a signed registry, end to end, with every real part.

The test builds a small OCI image itself (dash, the C library and an MCP server written
in sh: tests/installer/shecho.sh), pushes it to a real docker-registry on loopback, pins
its index digest in a manifest of its own, lints that manifests folder, builds an index,
signs it with a key it made — all through the `gigmcp registry` commands an operator
uses — and points the gateway at it. Then `gigmcp server install` shows the consent,
pulls and verifies the image, and an official SDK client calls the server's tool through
the gateway, inside the jail.

Then the attacks on that path: a tampered index, an index signed by another key, a
rollback to an older index, a manifest whose digest does not match the image, a changed
layer; each refused with a clear error and nothing installed. And consent: a
presentation-only upgrade applies at once, a runtime change waits until consented; a
`default: false` tool starts disabled; uninstall removes the row and the files.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from mcp.shared.exceptions import MCPError

from tests.support import oci_images as images
from tests.support.gateway import GatewayProc, gateway
from tests.support.mcp_client import connect, text_of
from tests.support.oci_registry import (
    RunningRegistry,
    binary_available,
    start_registry,
    stop_registry,
)
from tests.support.shecho import manifest, shecho_layer

pytestmark = pytest.mark.root

HERE = Path(__file__).parent


@dataclass
class World:
    registry: RunningRegistry
    root: Path  # manifests/, index/, key
    packages: Path
    pubkey: str
    gw: GatewayProc
    ref: str
    digest: str

    def write(self, doc: dict[str, object]) -> None:
        folder = self.root / "manifests" / str(doc["name"])
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{doc['version']}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))

    def publish(self, generated: str, key: Path | None = None) -> None:
        """Lint, build and sign the index, as an operator would."""
        idx = self.root / "index" / "index.json"
        self.gw.cli("registry", "lint", str(self.root / "manifests"))
        self.gw.cli(
            "registry", "build-index", str(self.root / "manifests"),
            "--out", str(idx), "--generated", generated,
        )  # fmt: skip
        self.gw.cli("registry", "sign", str(idx), "--key", str(key or self.root / "key"))


@pytest.fixture(scope="module", name="w")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    if not binary_available():
        pytest.skip("docker-registry is not installed (apt-get install docker-registry)")
    tmp: Path = tmp_path_factory.mktemp("install")
    registry = start_registry()
    # Not under pytest's tmp dir: the jails' uids must reach the installed image.
    packages = Path(tempfile.mkdtemp(prefix="gigpkg-"))
    os.chmod(packages, 0o755)
    pusher = images.Pusher(registry.url)
    try:
        img = images.image([shecho_layer("image-one")])
        digest = pusher.push("gig/shecho", images.index([img, images.foreign_stub()]))
        ref = f"{registry.host}/gig/shecho"
        root = tmp / "registry"
        (root / "index").mkdir(parents=True)
        with gateway(
            tmp, jailed=True, GIG_SANDBOX_SUBNET="10.214.1.0/24", GIG_SANDBOX_POOL="0",
            GIG_PACKAGES_DIR=str(packages), GIG_OCI_PLAIN_HTTP=registry.host,
            GIG_REGISTRY_INDEX_URL=f"file://{root / 'index' / 'index.json'}",
        ) as g:  # fmt: skip
            pub = g.cli("registry", "keygen", "--out", str(root / "key")).stdout.strip()
            g.env["GIG_REGISTRY_PUBKEY"] = pub
            w = World(registry, root, packages, pub, g, ref, digest)
            w.write(manifest("shecho", "1.0.0", ref, digest))
            w.publish("2026-11-01T00:00:00Z")
            yield w
    finally:
        pusher.close()
        stop_registry(registry)
        shutil.rmtree(packages, ignore_errors=True)


def _db(w: World, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(w.gw.data_dir / "gigmcp.db") as conn:
        return conn.execute(sql).fetchall()


def _installed(w: World) -> list[str]:
    rootfs = w.packages / "oci" / "rootfs"
    return sorted(os.listdir(rootfs)) if rootfs.exists() else []


async def test_install_shows_consent_then_the_tool_answers_from_the_jail(w: World) -> None:
    out = w.gw.cli("server", "install", "shecho", "--yes")
    consent = out.stderr
    assert "Shell echo (shecho@1.0.0)" in consent and w.digest in consent
    assert "tier: sealed" in consent and "  - api.example.test" in consent
    assert "tools on by default (1): hello" in consent and "(1): wipe" in consent
    assert "fetched" in consent and "(100%)" in consent, "progress while fetching"
    assert consent.index("tier: sealed") < consent.index("fetched"), "consent before fetching"
    assert _installed(w) == [w.digest.removeprefix("sha256:")]
    (origin,) = _db(w, "SELECT origin FROM servers WHERE name='shecho'")[0]
    assert (
        json.loads(str(origin))["runtime_hash"]
        == _db(w, "SELECT consented_runtime_hash FROM servers WHERE name='shecho'")[0][0]
    )
    w.gw.profile("reg", "shecho")
    w.gw.start()
    try:
        async with connect(w.gw, "reg", "auto") as c:
            names = {t.name for t in (await c.list_tools()).tools}
            # The manifest's default:false tool starts disabled in the profile.
            assert "shecho_hello" in names and "shecho_wipe" not in names
            result = await c.call_tool("shecho_hello", {})
            assert text_of(result) == "hello from image-one"
            with pytest.raises(MCPError, match="Unknown tool"):
                await c.call_tool("shecho_wipe", {})
    finally:
        w.gw.stop()


def test_without_consent_nothing_is_installed(w: World) -> None:
    # No --yes and no terminal to ask on: refused before anything is fetched.
    before = _installed(w)
    out = w.gw.cli("server", "install", "shecho@1.0.0", "--name", "other", check=False, stdin="")
    assert out.returncode == 2 and "consent needed" in out.stderr
    assert _installed(w) == before
    # A name it could never be installed under is refused before consent is asked.
    out = w.gw.cli("server", "install", "shecho", "--name", "Bad_Name", "--yes", check=False)
    assert out.returncode == 2 and "invalid server name" in out.stderr
    assert "tier:" not in out.stderr and _installed(w) == before
    assert _db(w, "SELECT name FROM servers WHERE name='other'") == []


@pytest.mark.parametrize("attack", ["tampered", "other key", "truncated signature"])
def test_attack_an_index_not_signed_by_the_key_is_refused(
    w: World, attack: str, tmp_path: Path
) -> None:
    idx = w.root / "index" / "index.json"
    original, sig = idx.read_bytes(), (idx.parent / "index.json.sig").read_bytes()
    try:
        if attack == "tampered":
            idx.write_bytes(original.replace(b'"latest":"1.0.0"', b'"latest":"1.0.0" '))
        elif attack == "other key":
            w.gw.cli("registry", "keygen", "--out", str(tmp_path / "other"))
            w.gw.cli("registry", "sign", str(idx), "--key", str(tmp_path / "other"))
        else:
            (idx.parent / "index.json.sig").write_bytes(sig[:40])
        out = w.gw.cli("server", "install", "shecho", "--name", "evil", "--yes", check=False)
        assert out.returncode == 1
        assert "refused" in out.stderr and "GIG_REGISTRY_PUBKEY" in out.stderr
        assert "Traceback" not in out.stderr
        assert _db(w, "SELECT name FROM servers WHERE name='evil'") == []
    finally:
        idx.write_bytes(original)
        (idx.parent / "index.json.sig").write_bytes(sig)


def test_attack_a_rollback_to_an_older_index_is_refused(w: World) -> None:
    w.gw.cli("server", "list")
    saved = {p.name: p.read_bytes() for p in (w.root / "index").iterdir()}
    try:
        # A newer index is accepted first (any install or upgrade fetches it) ...
        w.publish("2026-11-10T00:00:00Z")
        w.gw.cli("server", "upgrade", "shecho", "--yes")
        # ... then the attacker serves the older one, properly signed back then.
        for name, data in saved.items():
            (w.root / "index" / name).write_bytes(data)
        out = w.gw.cli("server", "install", "shecho", "--name", "old", "--yes", check=False)
        assert out.returncode == 1 and "rollback" in out.stderr
        assert "2026-11-01" in out.stderr and "2026-11-10" in out.stderr
    finally:
        w.publish("2026-11-11T00:00:00Z")


def test_attack_a_digest_that_does_not_match_the_image_installs_nothing(w: World) -> None:
    wrong = "sha256:" + "ab" * 32
    w.write(manifest("forged", "1.0.0", w.ref, wrong))
    w.publish("2026-11-12T00:00:00Z")
    try:
        before = _installed(w)
        out = w.gw.cli("server", "install", "forged", "--yes", check=False)
        assert out.returncode == 1 and "forged@1.0.0: not installed" in out.stderr
        assert _installed(w) == before
        assert list((w.packages / "oci").glob("tmp/*")) == []
        assert _db(w, "SELECT name FROM servers WHERE name='forged'") == []
    finally:
        shutil.rmtree(w.root / "manifests" / "forged")
        w.publish("2026-11-13T00:00:00Z")


def test_attack_a_changed_layer_installs_nothing(w: World) -> None:
    # Same manifest shape, but the registry serves a layer whose bytes changed after the
    # digests were pinned: push an image, then overwrite the layer blob under its name.
    img = images.image([shecho_layer("image-two")])
    pusher = images.Pusher(w.registry.url)
    try:
        digest = pusher.push("gig/changed", images.index([img]))
    finally:
        pusher.close()
    layer = json.loads(img.manifest)["layers"][0]["digest"]
    blob = next(
        (w.registry.workdir / "storage").rglob(f"blobs/sha256/{layer[7:9]}/{layer[7:]}/data")
    )
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))
    w.write(manifest("changed", "1.0.0", f"{w.registry.host}/gig/changed", digest))
    w.publish("2026-11-14T00:00:00Z")
    try:
        out = w.gw.cli("server", "install", "changed", "--yes", check=False)
        assert out.returncode == 1 and "changed@1.0.0: not installed" in out.stderr
        assert digest.removeprefix("sha256:") not in _installed(w)
    finally:
        shutil.rmtree(w.root / "manifests" / "changed")
        w.publish("2026-11-15T00:00:00Z")


def test_consent_again_only_when_the_runtime_changes(w: World) -> None:
    # 1.0.0 republished with only what is shown changed (as the reference registry's
    # branding backfill did): the same runtime hash, applied without asking.
    w.write(manifest("shecho", "1.0.0", w.ref, w.digest, displayName="Shell echo, renamed"))
    w.publish("2026-11-16T00:00:00Z")
    out = w.gw.cli("server", "upgrade", "shecho", stdin="")
    assert "now shecho@1.0.0" in out.stderr and "no change to what it may do" in out.stderr
    (origin,) = _db(w, "SELECT origin FROM servers WHERE name='shecho'")[0]
    assert json.loads(str(origin))["manifest"]["displayName"] == "Shell echo, renamed"
    # 1.0.2 may reach one more host: it waits for consent, 1.0.0 keeps running.
    more = {"egress": ["api.example.test", "upload.example.test"]}
    w.write(manifest("shecho", "1.0.2", w.ref, w.digest, entitlements=more))
    w.publish("2026-11-17T00:00:00Z")
    out = w.gw.cli("server", "upgrade", "shecho", check=False, stdin="")
    assert out.returncode == 2 and "upload.example.test" in out.stderr
    assert "keeps running" in out.stderr
    (origin,) = _db(w, "SELECT origin FROM servers WHERE name='shecho'")[0]
    assert json.loads(str(origin))["version"] == "1.0.0"
    assert _db(w, "SELECT pending IS NOT NULL FROM servers WHERE name='shecho'") == [(1,)]
    out = w.gw.cli("server", "consent", "shecho", "--yes")
    assert "upgraded to shecho@1.0.2" in out.stderr
    (origin,) = _db(w, "SELECT origin FROM servers WHERE name='shecho'")[0]
    assert json.loads(str(origin))["version"] == "1.0.2"
    egress = json.loads(str(_db(w, "SELECT egress FROM servers WHERE name='shecho'")[0][0]))
    assert "upload.example.test" in json.dumps(egress)


async def test_a_catalog_toolspec_entry_runs_without_any_image(w: World) -> None:
    # A real catalog entry (read from ../shared at test time, into this test's folder):
    # builder toolpack, its toolspec carried by the signed index, run by our engine.
    catalog = HERE.parents[2] / "shared" / "registry-catalog" / "manifests" / "ably"
    if not catalog.is_dir():
        pytest.skip(f"the registry catalog is not at {catalog}")
    shutil.copytree(catalog, w.root / "manifests" / "ably")
    w.publish("2026-11-18T00:00:00Z")
    out = w.gw.cli("server", "install", "ably", "--yes")
    assert "the gateway's toolspec engine" in out.stderr
    assert "injected by the proxy as Authorization: Basic {token}" in out.stderr
    (origin,) = _db(w, "SELECT origin FROM servers WHERE name='ably'")[0]
    assert json.loads(str(origin))["kind"] == "toolspec"
    w.gw.cli("profile", "assign", "reg", "ably")
    w.gw.start()
    try:
        async with connect(w.gw, "reg", "auto") as c:
            tools = {t.name: t for t in (await c.list_tools()).tools}
    finally:
        w.gw.stop()
    assert "ably_list_channels" in tools and "ably_get_channel_details" in tools
    assert tools["ably_get_channel_details"].input_schema["required"] == ["channel"]
    # default: false in the manifest: off in the profile until enabled.
    assert "ably_publish_message_to_channel" not in tools


def test_uninstall_removes_the_row_and_the_files(w: World) -> None:
    w.gw.cli("server", "uninstall", "shecho")
    assert _db(w, "SELECT name FROM servers WHERE name='shecho'") == []
    assert w.digest.removeprefix("sha256:") not in _installed(w)
    out = w.gw.cli("server", "uninstall", "shecho", check=False)
    assert out.returncode == 1 and "no server named 'shecho'" in out.stderr
    out = w.gw.cli("server", "upgrade", "shecho", check=False)
    assert out.returncode == 1 and "no server named 'shecho'" in out.stderr
    assert "Traceback" not in out.stderr
    # The toolspec entry's own folder, when the catalog test above installed it.
    for (origin,) in _db(w, "SELECT origin FROM servers WHERE name='ably'"):
        path = Path(json.loads(str(origin))["path"])
        assert path.is_dir()
        w.gw.cli("server", "uninstall", "ably")
        assert not path.exists()
