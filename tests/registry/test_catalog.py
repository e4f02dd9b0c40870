"""The whole reference catalog, read at test time: every manifest and toolspec parses,
validates, lints and pairs as the reference's CI says it does (all clean); the index
built from it is byte-identical to the reference's; it signs, verifies, refuses a
tampered byte, and resolves all three ref forms. Plus the folder rules on small trees.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from gigmcp.registry.catalog import load_catalog
from gigmcp.registry.errors import ManifestResolveError, SignatureError
from gigmcp.registry.hashing import manifest_hash, runtime_hash
from gigmcp.registry.index import build_index, parse_index
from gigmcp.registry.lint import Denylist, lint_manifest
from gigmcp.registry.manifest import parse_manifest
from gigmcp.registry.signing import keygen, sign, verify
from gigmcp.registry.toolspec import (
    check_against_manifest,
    parse_toolspec,
    to_json,
    validate_toolspec,
)
from gigmcp.registry.validate import validate_manifest
from tests.support.registry_samples import (
    CATALOG_HASHES,
    CATALOG_INDEX_GENERATED,
    CATALOG_INDEX_SHA256,
    DENYLIST,
    GOOD_SPEC_YAML,
    GOOD_YAML,
    require_catalog,
)


@pytest.fixture(scope="module")
def manifests_dir() -> Path:
    return require_catalog()


@pytest.fixture(scope="module")
def denylist(manifests_dir: Path) -> Denylist:
    return Denylist.load(DENYLIST)


def test_every_manifest_parses_validates_and_lints_clean(
    manifests_dir: Path, denylist: Denylist
) -> None:
    paths = sorted(
        p for p in manifests_dir.glob("*/*.yaml") if not p.name.endswith(".toolspec.yaml")
    )
    assert len(paths) >= 221
    failures = {}
    for path in paths:
        m = parse_manifest(path.read_bytes())
        validate_manifest(m)
        findings = lint_manifest(m, denylist)
        if findings:
            failures[str(path)] = findings
        assert (path.parent.name, path.name) == (m.name, f"{m.version}.yaml")
    assert failures == {}


def test_every_toolspec_parses_validates_and_pairs(manifests_dir: Path) -> None:
    paths = sorted(manifests_dir.glob("*/*.toolspec.yaml"))
    assert len(paths) >= 215
    for path in paths:
        spec = parse_toolspec(path.read_bytes())
        validate_toolspec(spec)
        m = parse_manifest(path.with_name(f"{spec.version}.yaml").read_bytes())
        check_against_manifest(spec, m)
        doc = to_json(spec)
        assert doc["name"] == m.name and len(doc["tools"]) == len(spec.tools)


def test_catalog_loader_agrees_with_the_reference_ci(
    manifests_dir: Path, denylist: Denylist
) -> None:
    catalog = load_catalog(manifests_dir, denylist)
    assert [str(p) for p in catalog.problems] == []
    assert len(catalog.manifests) == 221
    assert len(catalog.toolspecs) == 215
    toolpack = [m for m in catalog.manifests.values() if m.image.builder == "toolpack"]
    assert len(toolpack) == 215  # every toolpack manifest has its spec


def test_hashes_equal_the_reference(manifests_dir: Path) -> None:
    for name, (full, runtime) in CATALOG_HASHES.items():
        m = parse_manifest((manifests_dir / name / "0.1.0.yaml").read_bytes())
        assert (manifest_hash(m), runtime_hash(m)) == (full, runtime), name


def test_index_sign_verify_tamper_resolve(manifests_dir: Path, denylist: Denylist) -> None:
    catalog = load_catalog(manifests_dir, denylist)
    plain = build_index(catalog.manifests.values(), CATALOG_INDEX_GENERATED)
    assert hashlib.sha256(plain).hexdigest() == CATALOG_INDEX_SHA256, (
        "index bytes differ from the reference's BuildIndex over the catalog "
        "(if the shared catalog changed, regenerate CATALOG_INDEX_SHA256)"
    )
    # What an operator publishes: the same index with the toolspecs carried along.
    raw = build_index(
        catalog.manifests.values(), CATALOG_INDEX_GENERATED, catalog.toolspecs.values()
    )
    private, public = keygen()
    sig = sign(private, raw)
    verify(public, raw, sig)
    for position in (0, len(raw) // 2, len(raw) - 1):
        tampered = bytearray(raw)
        tampered[position] ^= 0x01
        with pytest.raises(SignatureError, match="verification FAILED"):
            verify(public, bytes(tampered), sig)
    index = parse_index(raw)
    assert len(index.servers) == 221
    gmail = index.resolve("gmail")
    assert index.resolve("gmail@0.1.0") is gmail
    assert index.resolve(gmail.image.digest) is gmail
    assert index.toolspec(gmail) is not None
    carried = [m for m in index.manifests() if index.toolspec_of(m) is not None]
    assert len(carried) == 215
    # Four catalog entries (borneo, botbaba, chmeetings, waboxapp) carry the all-zero
    # digest, marked "PLACEHOLDER until build-images CI emits the real digest" in their
    # YAML. The reference accepts the shape (and would pick one of them arbitrarily);
    # we refuse to choose. Every other digest names exactly one manifest.
    placeholder = "sha256:" + "0" * 64
    holders = sorted(m.name for m in catalog.manifests.values() if m.image.digest == placeholder)
    assert holders == ["borneo", "botbaba", "chmeetings", "waboxapp"]
    with pytest.raises(
        ManifestResolveError, match="ambiguous digest .*: pinned by borneo@0.1.0, botbaba@0.1.0"
    ):
        index.resolve(placeholder)
    for m in catalog.manifests.values():
        if m.image.digest != placeholder:
            assert index.resolve(m.image.digest) == m


# --- folder rules on small trees -------------------------------------------------------


def write(root: Path, relative: str, text: str) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_small_tree_is_clean(tmp_path: Path) -> None:
    write(tmp_path, "chat-mcp/1.4.2.yaml", GOOD_YAML)
    write(tmp_path, "chat-mcp/1.4.2.toolspec.yaml", GOOD_SPEC_YAML)
    catalog = load_catalog(tmp_path, Denylist.from_lines(["pastebin.com"]))
    assert catalog.ok and len(catalog.manifests) == 1 and len(catalog.toolspecs) == 1


def test_tree_problems_are_all_reported(tmp_path: Path) -> None:
    write(tmp_path, "chat/1.4.2.yaml", GOOD_YAML)  # wrong folder
    write(
        tmp_path,
        "other/1.0.0.yaml",
        GOOD_YAML.replace("image:\n", "image:\n  builder: toolpack\n")
        .replace("chat-mcp", "other")
        .replace("1.4.2", "1.0.0"),
    )
    write(tmp_path, "broken/1.0.0.yaml", "name: [\n")
    write(
        tmp_path,
        "lonely/1.0.0.toolspec.yaml",
        GOOD_SPEC_YAML.replace("chat-mcp", "lonely").replace("1.4.2", "1.0.0"),
    )
    (tmp_path / "linked").mkdir()
    (tmp_path / "linked" / "1.4.2.yaml").symlink_to(tmp_path / "chat" / "1.4.2.yaml")
    catalog = load_catalog(tmp_path, Denylist.from_lines(["example.com"]))
    messages = sorted(
        str(p.path.relative_to(tmp_path)) + ": " + p.message for p in catalog.problems
    )
    assert any(m.startswith("broken/1.0.0.yaml: parse manifest: not valid YAML") for m in messages)
    assert "chat/1.4.2.yaml: path must be <manifests>/chat-mcp/1.4.2.yaml" in messages
    assert (
        "chat/1.4.2.yaml: egress 'chat.example.com' matches denylist entry 'example.com'"
        in messages
    )
    assert "lonely/1.0.0.toolspec.yaml: no valid paired manifest at 1.0.0.yaml" in messages
    assert not any(m.startswith("linked/") for m in messages)  # symlinks are skipped
    assert not catalog.ok


def test_toolpack_manifest_needs_its_spec(tmp_path: Path) -> None:
    write(
        tmp_path,
        "chat-mcp/1.4.2.yaml",
        GOOD_YAML.replace(
            "  entrypoint: /server\n", "  entrypoint: /server\n  builder: toolpack\n"
        ),
    )
    catalog = load_catalog(tmp_path)
    assert [p.message for p in catalog.problems] == [
        "builder 'toolpack' but no valid toolspec beside it"
    ]


def test_empty_or_missing_folder(tmp_path: Path) -> None:
    assert [p.message for p in load_catalog(tmp_path).problems] == ["no manifests found"]
    assert [p.message for p in load_catalog(tmp_path / "nope").problems] == ["not a directory"]
