"""The registry format: schema v1 manifests and toolspecs, lint, hashes, the signed index.

A pure library, compatible with the reference registry (its Go ``schema`` package):
the same parsing verdicts, the same rules, byte-identical hashes and index bytes, and
the same ed25519 key and signature formats. Modules, one job each:

``manifest`` types + strict parser · ``validate`` structural rules · ``packages`` the
npm/PyPI extension's rules · ``egress_rules`` egress entry shape and matching ·
``lint`` denylist policy · ``toolspec`` toolspec types, rules, pairing, engine JSON ·
``hashing`` manifest/runtime hashes · ``index`` build/parse/resolve · ``signing``
ed25519 · ``importer`` server.json → manifest draft · ``catalog`` a manifests folder ·
``goyaml``/``gostruct``/``gojson`` the Go-compatible decoding and encoding underneath.

It must never touch the network, a database or the command line: fetching the index
(``installer/index_fetch.py``), the installer and the CLI build on it.
"""

from gigmcp.registry.errors import (
    DraftError,
    ManifestError,
    ManifestResolveError,
    RegistryDataError,
    RegistryIndexError,
    SignatureError,
    ToolSpecError,
)
from gigmcp.registry.hashing import manifest_hash, runtime_hash
from gigmcp.registry.index import Index, build_index, parse_index
from gigmcp.registry.lint import Denylist, Finding, lint_manifest
from gigmcp.registry.manifest import Manifest, Package, parse_manifest
from gigmcp.registry.signing import keygen, sign, verify
from gigmcp.registry.toolspec import ToolSpec, parse_toolspec
from gigmcp.registry.validate import manifest_problems, validate_manifest

__all__ = [
    "Denylist",
    "DraftError",
    "Finding",
    "Index",
    "Manifest",
    "ManifestError",
    "ManifestResolveError",
    "Package",
    "RegistryDataError",
    "RegistryIndexError",
    "SignatureError",
    "ToolSpec",
    "ToolSpecError",
    "build_index",
    "keygen",
    "lint_manifest",
    "manifest_hash",
    "manifest_problems",
    "parse_index",
    "parse_manifest",
    "parse_toolspec",
    "runtime_hash",
    "sign",
    "validate_manifest",
    "verify",
]
