"""`gigmcp registry`: what an operator runs to publish a registry of their own, each
command for real (a subprocess), with the clear refusal for each mistake."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.support.gateway import GIGMCP
from tests.support.registry_samples import GOOD_SPEC_YAML, GOOD_YAML


def gigmcp(tmp: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp), "GIG_DATA_DIR": str(tmp / "data")}
    return subprocess.run(
        [GIGMCP, *args], env=env, capture_output=True, text=True, input=stdin, timeout=60
    )


def folder(tmp: Path) -> Path:
    root = tmp / "manifests"
    (root / "chat-mcp").mkdir(parents=True)
    (root / "chat-mcp" / "1.4.2.yaml").write_text(GOOD_YAML)
    (root / "chat-mcp" / "1.4.2.toolspec.yaml").write_text(GOOD_SPEC_YAML)
    return root


def test_keygen_lint_build_sign_verify(tmp_path: Path) -> None:
    root = folder(tmp_path)
    key = tmp_path / "registry.key"
    out = gigmcp(tmp_path, "registry", "keygen", "--out", str(key))
    assert out.returncode == 0
    pub = out.stdout.strip()
    seed = key.read_text().strip()[:64]  # Go's format: seed, then the public key
    assert len(pub) == 64 and key.read_text().strip()[64:] == pub
    assert os.stat(key).st_mode & 0o777 == 0o600
    assert seed not in out.stdout + out.stderr, "the private key is never shown"
    assert (
        "1 manifests and 1 toolspecs: clean"
        in gigmcp(tmp_path, "registry", "lint", str(root)).stderr
    )
    idx = tmp_path / "index.json"
    out = gigmcp(tmp_path, "registry", "build-index", str(root), "--out", str(idx),
                 "--generated", "2026-11-20T00:00:00Z")  # fmt: skip
    assert out.returncode == 0, out.stderr
    doc = json.loads(idx.read_bytes())
    assert doc["generated"] == "2026-11-20T00:00:00Z"
    assert "toolspecs" in doc["servers"]["chat-mcp"], "the signature covers the toolspec"
    assert gigmcp(tmp_path, "registry", "sign", str(idx), "--key", str(key)).returncode == 0
    good = gigmcp(tmp_path, "registry", "verify", str(idx), "--pubkey", pub)
    assert good.returncode == 0 and "signature good; 1 manifests" in good.stdout
    idx.write_bytes(idx.read_bytes().replace(b"chat.example.com", b"chat.exampla.com", 1))
    bad = gigmcp(tmp_path, "registry", "verify", str(idx), "--pubkey", pub)
    assert bad.returncode == 1 and "verification FAILED" in bad.stderr


def test_mistakes_are_refused_clearly(tmp_path: Path) -> None:
    root = folder(tmp_path)
    key = tmp_path / "k"
    assert gigmcp(tmp_path, "registry", "keygen", "--out", str(key)).returncode == 0
    again = gigmcp(tmp_path, "registry", "keygen", "--out", str(key))
    assert again.returncode == 1 and "refusing to overwrite a key" in again.stderr
    # A typo in a security field is an error, not a silently empty allowlist.
    (root / "chat-mcp" / "1.4.2.yaml").write_text(GOOD_YAML.replace("egress:", "egres:"))
    lint = gigmcp(tmp_path, "registry", "lint", str(root))
    assert lint.returncode == 1 and "egres" in lint.stdout
    out = gigmcp(tmp_path, "registry", "build-index", str(root), "--out", str(tmp_path / "i.json"))
    assert out.returncode == 1 and "no index written" in out.stderr
    assert not (tmp_path / "i.json").exists()
    # Signing something the gateway would refuse to parse is refused too.
    (tmp_path / "junk.json").write_text("{}")
    out = gigmcp(tmp_path, "registry", "sign", str(tmp_path / "junk.json"), "--key", str(key))
    assert out.returncode == 1 and not (tmp_path / "junk.json.sig").exists()
    for out in (
        gigmcp(tmp_path, "registry", "lint", str(tmp_path / "nowhere")),
        gigmcp(tmp_path, "registry", "verify", str(tmp_path / "nowhere.json"), "--pubkey", "00"),
    ):
        assert out.returncode == 1 and "Traceback" not in out.stderr


def test_import_drafts_a_manifest_from_server_json(tmp_path: Path) -> None:
    server = {
        "name": "io.github.example/weather",
        "description": "Weather",
        "version": "1.2.0",
        "packages": [
            {"registryType": "npm", "identifier": "@example/weather-mcp", "version": "1.2.0"}
        ],
    }
    (tmp_path / "server.json").write_text(json.dumps(server))
    out = gigmcp(tmp_path, "registry", "import", str(tmp_path / "server.json"))
    assert out.returncode == 0, out.stderr
    assert 'identifier: "@example/weather-mcp"' in out.stdout
    assert 'version: "1.2.0"' in out.stdout
    assert "TODO" in out.stderr
