"""The compiled registry index (``index.json``): building it, reading it, resolving refs.

Shape, as the reference's ``schema/index.go`` writes it (Go ``json.Marshal``: struct
fields in order, map keys sorted, no whitespace)::

    {"schemaVersion":1,"generated":"<RFC 3339>",
     "servers":{"<name>":{"latest":"<version>","versions":{"<version>":<manifest>}}}}

``latest`` is the highest semver of the server's versions. ``build_index`` produces the
very bytes the reference's ``registryctl build-index`` produces for the same manifests
and timestamp, so either tool's index can be signed and verified by the other.

Extension: toolspecs travel in the index, so the signature covers them and the gateway
can run a toolspec entry with its own engine without pulling the image the reference
bakes the spec into. A server entry gains ``"toolspecs":{"<version>":<toolspec>}``
after ``versions``, omitted when the server has none — an index built without toolspecs
is byte-for-byte the reference's, and a Go reader that ignores unknown fields still
reads an index with them. Each toolspec is validated and paired with the manifest of
its version, when building and when parsing.

``parse_index`` is for bytes whose signature was already verified (``signing.verify``)
and whose size the caller capped. It is strict: unknown fields, duplicate keys, wrong
types, a manifest that fails validation, a server or version key that disagrees with the
manifest under it, or a ``latest`` that is not one of the versions are all errors. The
parsed ``generated`` is exposed as an aware ``datetime`` for the fetcher's rollback
check.

``Index.resolve`` takes ``name`` (latest), ``name@version`` or ``sha256:<digest>``
(the manifest pinning that image digest; two manifests pinning it is an error, never an
arbitrary pick).

Owns those three operations. It must never verify signatures, fetch anything, or
re-serialize a received index for any purpose but display.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from gigmcp.registry import gojson, gostruct
from gigmcp.registry.errors import ManifestError, ManifestResolveError, RegistryIndexError
from gigmcp.registry.manifest import Manifest, manifest_from_plain
from gigmcp.registry.toolspec import (
    ToolSpec,
    pairing_problems,
    to_json,
    toolspec_from_plain,
    toolspec_problems,
)
from gigmcp.registry.validate import DIGEST_RE, manifest_problems

_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})"
)
_INDEX_KEYS = ("schemaVersion", "generated", "servers")
_SERVER_KEYS = ("latest", "versions")
_SERVER_OPTIONAL = ("toolspecs",)


def semver_key(version: str) -> tuple[int, int, int]:
    """Sort key of a validated MAJOR.MINOR.PATCH version."""
    major, minor, patch = version.split(".")
    return int(major), int(minor), int(patch)


def parse_rfc3339(text: str) -> datetime:
    """An RFC 3339 timestamp (offset required) as an aware datetime."""
    if not _RFC3339.fullmatch(text):
        raise ValueError(f"{text!r} is not an RFC 3339 timestamp (e.g. 2026-06-06T00:00:00Z)")
    normalized = text.upper().replace("Z", "+00:00")
    whole, dot, rest = normalized.partition(".")
    if dot:
        # Python takes at most 6 fractional digits; RFC 3339 allows more.
        digits = re.match(r"[0-9]+", rest)
        assert digits is not None
        normalized = f"{whole}.{digits.group(0)[:6].ljust(6, '0')}{rest[digits.end() :]}"
    try:
        return datetime.fromisoformat(normalized)
    except ValueError:
        raise ValueError(f"{text!r} is not a valid date and time") from None


def format_rfc3339(moment: datetime) -> str:
    """``moment`` in UTC as Go's ``time.RFC3339`` writes it (``2026-06-06T00:00:00Z``)."""
    if moment.tzinfo is None:
        raise ValueError("generated must be timezone-aware")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class IndexServer:
    latest: str
    versions: Mapping[str, Manifest]
    toolspecs: Mapping[str, ToolSpec] = field(default_factory=dict)  # by version


@dataclass(frozen=True)
class Index:
    schema_version: int
    generated: str  # as published
    generated_at: datetime  # parsed, aware: the fetcher compares it (rollback)
    servers: Mapping[str, IndexServer]

    def manifests(self) -> Iterator[Manifest]:
        for name in sorted(self.servers):
            server = self.servers[name]
            for version in sorted(server.versions, key=semver_key):
                yield server.versions[version]

    def toolspec_of(self, m: Manifest) -> ToolSpec | None:
        """The toolspec the index carries for ``m``'s name and version, if any."""
        server = self.servers.get(m.name)
        return None if server is None else server.toolspecs.get(m.version)

    def toolspec(self, m: Manifest) -> dict[str, Any] | None:
        """That toolspec as the engine's JSON (``toolspec.to_json``), if any."""
        spec = self.toolspec_of(m)
        return None if spec is None else to_json(spec)

    def resolve(self, ref: str) -> Manifest:
        """The manifest ``ref`` names; ``ManifestResolveError`` otherwise."""
        if not ref:
            raise ManifestResolveError("empty ref: use name, name@version or sha256:<digest>")
        if ref.startswith("sha256:"):
            return self._by_digest(ref)
        if ref.endswith("@"):
            raise ManifestResolveError(f"malformed ref {ref!r} (trailing @)")
        name, _, version = ref.partition("@")
        if not name:
            raise ManifestResolveError(f"malformed ref {ref!r} (no server name)")
        server = self.servers.get(name)
        if server is None:
            raise ManifestResolveError(f"unknown server {name!r}")
        wanted = version or server.latest
        manifest = server.versions.get(wanted)
        if manifest is None:
            raise ManifestResolveError(f"unknown version {name}@{wanted}")
        return manifest

    def _by_digest(self, ref: str) -> Manifest:
        if not DIGEST_RE.fullmatch(ref):
            raise ManifestResolveError(f"malformed digest ref {ref!r}: sha256:<64 lowercase hex>")
        hits = [m for m in self.manifests() if m.image.digest == ref]
        if not hits:
            raise ManifestResolveError(f"no manifest pins image digest {ref}")
        if len(hits) > 1:
            names = ", ".join(m.ref for m in hits)
            raise ManifestResolveError(
                f"ambiguous digest {ref}: pinned by {names}; use name@version"
            )
        return hits[0]


def build_index(
    manifests: Iterable[Manifest],
    generated: str | datetime,
    toolspecs: Iterable[ToolSpec] = (),
) -> bytes:
    """Validate every manifest (and toolspec, paired with its manifest) and compile the
    index bytes (deterministic)."""
    stamp = format_rfc3339(generated) if isinstance(generated, datetime) else generated
    try:
        parse_rfc3339(stamp)
    except ValueError as exc:
        raise RegistryIndexError(f"generated: {exc}") from None
    servers: dict[str, dict[str, Manifest]] = {}
    for m in manifests:
        problems = manifest_problems(m)
        if problems:
            raise ManifestError(problems, context=f"manifest {m.name or '?'}@{m.version or '?'}")
        versions = servers.setdefault(m.name, {})
        if m.version in versions:
            raise RegistryIndexError(f"duplicate manifest {m.ref}")
        versions[m.version] = m
    specs: dict[str, dict[str, ToolSpec]] = {}
    for spec in toolspecs:
        where = f"toolspec {spec.name}@{spec.version}"
        paired = servers.get(spec.name, {}).get(spec.version)
        if paired is None:
            raise RegistryIndexError(f"{where}: no manifest of that name and version")
        problems = toolspec_problems(spec) or pairing_problems(spec, paired)
        if problems:
            raise RegistryIndexError(problems, context=where)
        by_version = specs.setdefault(spec.name, {})
        if spec.version in by_version:
            raise RegistryIndexError(f"duplicate {where}")
        by_version[spec.version] = spec
    doc: dict[str, Any] = {"schemaVersion": 1, "generated": stamp, "servers": {}}
    # Go writes map keys sorted by their bytes; for these ASCII keys that is str order.
    for name in sorted(servers):
        versions = servers[name]
        entry: dict[str, Any] = {
            "latest": max(versions, key=semver_key),
            "versions": {v: gostruct.to_plain(versions[v]) for v in sorted(versions)},
        }
        if name in specs:
            entry["toolspecs"] = {v: to_json(specs[name][v]) for v in sorted(specs[name])}
        doc["servers"][name] = entry
    return gojson.encode(doc)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise RegistryIndexError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _no_constants(name: str) -> Any:
    raise RegistryIndexError(f"{name} is not JSON")


def _object(
    value: Any, where: str, keys: tuple[str, ...], optional: tuple[str, ...] = ()
) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise RegistryIndexError(f"{where}: expected an object")
    unknown = [k for k in value if k not in keys and k not in optional]
    if unknown:
        raise RegistryIndexError(f"{where}: unknown field {unknown[0]!r}")
    missing = [k for k in keys if k not in value]
    if missing:
        raise RegistryIndexError(f"{where}: missing field {missing[0]!r}")
    return value


def parse_index(raw: bytes) -> Index:
    """Parse verified index bytes strictly; ``RegistryIndexError`` names what is wrong."""
    try:
        text = raw.decode("utf-8")
        doc = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except UnicodeDecodeError:
        raise RegistryIndexError("index is not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise RegistryIndexError(f"index is not JSON: {exc}") from None
    top = _object(doc, "index", _INDEX_KEYS)
    version = top["schemaVersion"]
    if isinstance(version, bool) or version != 1:
        raise RegistryIndexError(f"index schemaVersion must be 1, got {version!r}")
    generated = top["generated"]
    if not isinstance(generated, str):
        raise RegistryIndexError("index generated: expected a string")
    try:
        generated_at = parse_rfc3339(generated)
    except ValueError as exc:
        raise RegistryIndexError(f"index generated: {exc}") from None
    if not isinstance(top["servers"], dict):
        raise RegistryIndexError("index servers: expected an object")
    servers: dict[str, IndexServer] = {}
    for name, entry in top["servers"].items():
        servers[name] = _server(name, entry)
    return Index(1, generated, generated_at, servers)


def _server(name: str, entry: Any) -> IndexServer:
    where = f"servers[{name!r}]"
    body = _object(entry, where, _SERVER_KEYS, _SERVER_OPTIONAL)
    if not isinstance(body["versions"], dict) or not body["versions"]:
        raise RegistryIndexError(f"{where}.versions: expected a non-empty object")
    versions: dict[str, Manifest] = {}
    for version, value in body["versions"].items():
        at = f"{where}.versions[{version!r}]"
        try:
            manifest = manifest_from_plain(value)
        except ManifestError as exc:
            raise RegistryIndexError(exc.problems, context=at) from None
        problems = manifest_problems(manifest)
        if problems:
            raise RegistryIndexError(problems, context=at)
        if manifest.name != name or manifest.version != version:
            # Otherwise a signed index could file "evil@9.9.9" under a trusted name.
            raise RegistryIndexError(f"{at}: holds manifest {manifest.ref}")
        versions[version] = manifest
    latest = body["latest"]
    if not isinstance(latest, str) or latest not in versions:
        raise RegistryIndexError(f"{where}.latest {latest!r} is not one of its versions")
    return IndexServer(latest, versions, _toolspecs(where, body.get("toolspecs"), versions))


def _toolspecs(where: str, raw: Any, versions: Mapping[str, Manifest]) -> dict[str, ToolSpec]:
    if raw is None:
        return {}
    if not isinstance(raw, dict) or not raw:
        raise RegistryIndexError(f"{where}.toolspecs: expected a non-empty object")
    specs: dict[str, ToolSpec] = {}
    for version, value in raw.items():
        at = f"{where}.toolspecs[{version!r}]"
        manifest = versions.get(version)
        if manifest is None:
            raise RegistryIndexError(f"{at}: no manifest of that version")
        spec, problems = toolspec_from_plain(value)
        problems = problems or toolspec_problems(spec) or pairing_problems(spec, manifest)
        if problems:
            raise RegistryIndexError(problems, context=at)
        specs[version] = spec
    return specs
