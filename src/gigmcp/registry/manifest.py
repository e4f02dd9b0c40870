"""The schema v1 manifest as frozen dataclasses, and its strict parser.

Field for field, and in the same order, these mirror the reference registry's Go structs
(``schema/manifest.go``), each declared with the JSON name and ``omitempty`` flag of its
Go struct tag: the order and flags decide the canonical encoding, hence the hashes that
consent relies on. Python attributes are snake_case; the YAML/JSON names are the
reference's.

One compatible extension: ``packages`` (npm or PyPI packages pinned by exact version and
integrity, modelled on the official MCP registry's ``server.json`` packages). It is
optional and omitted from the encoding when absent, so every v1 manifest parses and
hashes exactly as before. See ``packages.py`` for its rules.

Owns: the types and ``parse_manifest`` (YAML bytes → ``Manifest``; every field optional
at this stage, as in the reference; unknown fields and wrong types are errors naming the
field path). It must never validate here (that is ``validate.py``) nor accept a field
the schema does not define.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gigmcp.registry import gostruct, goyaml
from gigmcp.registry.errors import ManifestError
from gigmcp.registry.gostruct import gofield, tag

TIER_SEALED = "sealed"
TIER_ENTRUSTED = "entrusted"


@dataclass(frozen=True)
class Source:
    repo: str = gofield("repo", default="")
    tag: str = gofield("tag", default="")
    # Directory inside the repo holding the server's main package (builder input).
    package: str = gofield("package", omitempty=True, default="")


@dataclass(frozen=True)
class Image:
    ref: str = gofield("ref", default="")
    # OCI image-index digest: the gateway pins it and picks the host's platform.
    digest: str = gofield("digest", default="")
    entrypoint: str = gofield("entrypoint", default="")
    builder: str = gofield("builder", omitempty=True, default="")

    @property
    def is_empty(self) -> bool:
        return not (self.ref or self.digest or self.entrypoint or self.builder)


@dataclass(frozen=True)
class Entitlements:
    egress: tuple[str, ...] = gofield("egress", omitempty=True, default=())


@dataclass(frozen=True)
class Inject:
    header: str = gofield("header", omitempty=True, default="")
    format: str = gofield("format", omitempty=True, default="")  # holds "{token}"
    env: str = gofield("env", omitempty=True, default="")


@dataclass(frozen=True)
class Credential:
    id: str = gofield("id", default="")
    type: str = gofield("type", default="")  # oauth2 | api_key | basic | custom_env
    provider: str = gofield("provider", default="")
    scopes: tuple[str, ...] = gofield("scopes", omitempty=True, default=())
    inject: Inject = field(default_factory=Inject, metadata=tag("inject"))
    # OAuth-app grouping key (presentation/grouping only: not in the runtime hash).
    vendor: str = gofield("vendor", omitempty=True, default="")


@dataclass(frozen=True)
class Tool:
    name: str = gofield("name", default="")
    default: bool = gofield("default", default=False)  # exposed in a profile by default


@dataclass(frozen=True)
class LockEntry:
    """One package of a dependency closure, pinned like the package itself."""

    identifier: str = gofield("identifier", default="")
    version: str = gofield("version", default="")
    integrity: str = gofield("integrity", default="")


@dataclass(frozen=True)
class Package:
    """An npm or PyPI package to run instead of an OCI image (extension)."""

    registry_type: str = gofield("registryType", default="")  # npm | pypi
    identifier: str = gofield("identifier", default="")
    version: str = gofield("version", default="")  # exact, never a range
    # npm: "sha512-<base64>" (the registry's SRI); pypi: "sha256:<hex>" of the file.
    integrity: str = gofield("integrity", default="")
    runtime_arguments: tuple[str, ...] = gofield("runtimeArguments", omitempty=True, default=())
    package_arguments: tuple[str, ...] = gofield("packageArguments", omitempty=True, default=())
    # None = no lock given (npm resolves dependencies itself); () = "no dependencies".
    # Encoded as absent vs [] so the two never hash alike.
    lock: tuple[LockEntry, ...] | None = field(default=None, metadata=tag("lock", omitempty=True))


@dataclass(frozen=True)
class Manifest:
    schema_version: int = gofield("schemaVersion", default=0)
    name: str = gofield("name", default="")  # tool-namespace prefix: [a-z0-9-], no "_"
    version: str = gofield("version", default="")
    source: Source = field(default_factory=Source, metadata=tag("source"))
    image: Image = field(default_factory=Image, metadata=tag("image"))
    tier: str = gofield("tier", default="")  # sealed | entrusted
    entitlements: Entitlements = field(default_factory=Entitlements, metadata=tag("entitlements"))
    credentials: tuple[Credential, ...] = gofield("credentials", omitempty=True, default=())
    tools: tuple[Tool, ...] = gofield("tools", omitempty=True, default=())
    # Presentation only (not in the runtime hash).
    display_name: str = gofield("displayName", omitempty=True, default="")
    description: str = gofield("description", omitempty=True, default="")
    category: str = gofield("category", omitempty=True, default="")
    icon: str = gofield("icon", omitempty=True, default="")
    # Extension; last, and omitted when empty, so v1 encodings are unchanged.
    packages: tuple[Package, ...] = gofield("packages", omitempty=True, default=())

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


def parse_manifest(data: bytes) -> Manifest:
    """Parse manifest YAML strictly into a ``Manifest`` (not yet validated).

    Raises ``ManifestError`` listing every unknown field and wrong type. Same verdicts
    and values as the reference's ``UnmarshalStrict``, except that we also refuse
    field names in another case (``Name:``), a second YAML document, anchors/aliases
    and merge keys, all of which the reference accepts and no catalog entry uses.
    """
    try:
        raw = goyaml.load(data)
    except goyaml.YamlError as exc:
        raise ManifestError(str(exc), context="parse manifest") from None
    manifest, problems = gostruct.decode(Manifest, raw, coerce_scalars=True)
    if problems:
        raise ManifestError(problems, context="parse manifest")
    return manifest


def manifest_from_plain(value: object) -> Manifest:
    """A manifest from already-decoded JSON (as inside ``index.json``): strict, and
    without the YAML layer's scalar-to-string conversion."""
    manifest, problems = gostruct.decode(Manifest, value, coerce_scalars=False)
    if problems:
        raise ManifestError(problems, context="manifest")
    return manifest
