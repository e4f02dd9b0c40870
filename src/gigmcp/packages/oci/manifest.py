"""The JSON documents of an image: index, manifest, descriptors, config.

Owns the media types we accept and turning already-verified bytes into typed values:
an image index (OCI) or manifest list (Docker), an image manifest (OCI or Docker v2),
its config. Parsing is strict where it matters for what gets fetched and run (digests,
sizes, media types, platforms) and lenient elsewhere (annotations, history, labels),
because those are never acted on.

It must never parse bytes whose digest has not been checked against a pin (callers
verify first; see ``distribution``), and never accept a descriptor whose digest is not
a valid sha256 or whose size is not a non-negative integer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from gigmcp.packages.oci.errors import ImageError, OciRegistryError, VerificationError
from gigmcp.packages.oci.reference import parse_digest

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})
MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
# Sent as Accept on every manifest GET: without the list types, some registries answer a
# request for an index digest with a converted single manifest (whose digest differs).
MANIFEST_ACCEPT = ", ".join((OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST))

CONFIG_TYPES = frozenset(
    {"application/vnd.oci.image.config.v1+json", "application/vnd.docker.container.image.v1+json"}
)
LAYER_TAR = frozenset({"application/vnd.oci.image.layer.v1.tar"})
LAYER_GZIP = frozenset(
    {
        "application/vnd.oci.image.layer.v1.tar+gzip",
        "application/vnd.docker.image.rootfs.diff.tar.gzip",
    }
)
LAYER_ZSTD = frozenset({"application/vnd.oci.image.layer.v1.tar+zstd"})
# Layers whose bytes may live elsewhere than the registry (URLs in the descriptor): we
# fetch from the registry the image is pinned to, nowhere else.
LAYER_FOREIGN = frozenset(
    {
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    }
)


@dataclass(frozen=True, slots=True)
class PlatformSpec:
    os: str
    architecture: str
    variant: str | None = None

    def __str__(self) -> str:
        tail = f"/{self.variant}" if self.variant else ""
        return f"{self.os}/{self.architecture}{tail}"


@dataclass(frozen=True, slots=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    platform: PlatformSpec | None = None
    attestation: bool = False  # BuildKit's provenance entries in an index: never an image


@dataclass(frozen=True, slots=True)
class ImageIndex:
    manifests: tuple[Descriptor, ...]


@dataclass(frozen=True, slots=True)
class ImageManifest:
    config: Descriptor
    layers: tuple[Descriptor, ...]


@dataclass(frozen=True, slots=True)
class ImageConfig:
    platform: PlatformSpec
    diff_ids: tuple[str, ...] | None


def load_json(data: bytes, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise OciRegistryError(f"{what} is not valid JSON") from None
    if not isinstance(doc, dict):
        raise OciRegistryError(f"{what} is not a JSON object")
    return doc


def parse_top(data: bytes, content_type: str | None, what: str) -> ImageIndex | ImageManifest:
    """An index or a manifest, decided by its ``mediaType`` (or its shape when absent,
    as OCI allows); a document claiming to be both, or neither, is refused."""
    doc = load_json(data, what)
    kind = _kind(doc, content_type, what)
    return _index(doc, what) if kind == "index" else _manifest(doc, what)


def parse_manifest(data: bytes, content_type: str | None, what: str) -> ImageManifest:
    top = parse_top(data, content_type, what)
    if isinstance(top, ImageIndex):
        raise OciRegistryError(f"{what} is an image index, where an image manifest was expected")
    return top


def parse_config(data: bytes, what: str) -> ImageConfig:
    doc = load_json(data, what)
    os_name, arch = doc.get("os"), doc.get("architecture")
    if not isinstance(os_name, str) or not isinstance(arch, str) or not os_name or not arch:
        raise OciRegistryError(f"{what} does not say which platform it is built for")
    variant = doc.get("variant")
    diff_ids: tuple[str, ...] | None = None
    rootfs = doc.get("rootfs")
    if isinstance(rootfs, dict) and "diff_ids" in rootfs:
        raw = rootfs["diff_ids"]
        if not isinstance(raw, list) or not all(isinstance(d, str) for d in raw):
            raise OciRegistryError(f"{what}: rootfs.diff_ids is not a list of digests")
        diff_ids = tuple(_digest(d, f"{what} rootfs.diff_ids") for d in raw)
    return ImageConfig(
        PlatformSpec(os_name, arch, variant if isinstance(variant, str) and variant else None),
        diff_ids,
    )


def _kind(doc: dict[str, Any], content_type: str | None, what: str) -> str:
    if doc.get("schemaVersion") != 2:
        raise OciRegistryError(f"{what}: unsupported schemaVersion (only 2; schema 1 is obsolete)")
    declared = doc.get("mediaType")
    header = (content_type or "").split(";", 1)[0].strip().lower()
    if declared is not None and not isinstance(declared, str):
        raise OciRegistryError(f"{what}: mediaType is not a string")
    media = declared or (header if header in INDEX_TYPES | MANIFEST_TYPES else None)
    has_manifests, has_layers = "manifests" in doc, "layers" in doc or "config" in doc
    if has_manifests and has_layers:
        raise OciRegistryError(f"{what} is ambiguous: it has both manifests and layers")
    if media in INDEX_TYPES and not has_layers:
        return "index"
    if media in MANIFEST_TYPES and not has_manifests:
        return "manifest"
    if media is None and has_manifests:
        return "index"
    if media is None and has_layers:
        return "manifest"
    raise OciRegistryError(f"{what}: unsupported media type {str(media)[:80]!r}")


def _index(doc: dict[str, Any], what: str) -> ImageIndex:
    raw = doc.get("manifests")
    if not isinstance(raw, list):
        raise OciRegistryError(f"{what}: manifests is not a list")
    out = []
    for i, item in enumerate(raw):
        desc = _descriptor(item, f"{what} manifests[{i}]", with_platform=True)
        out.append(desc)
    return ImageIndex(tuple(out))


def _manifest(doc: dict[str, Any], what: str) -> ImageManifest:
    config = _descriptor(doc.get("config"), f"{what} config", with_platform=False)
    raw = doc.get("layers")
    if not isinstance(raw, list):
        raise OciRegistryError(f"{what}: layers is not a list")
    layers = tuple(
        _descriptor(item, f"{what} layers[{i}]", with_platform=False) for i, item in enumerate(raw)
    )
    return ImageManifest(config, layers)


def _descriptor(item: object, what: str, *, with_platform: bool) -> Descriptor:
    if not isinstance(item, dict):
        raise OciRegistryError(f"{what} is not a descriptor object")
    media, size = item.get("mediaType"), item.get("size")
    if not isinstance(media, str) or not media:
        raise OciRegistryError(f"{what} has no mediaType")
    # bool is an int in Python; a size of `true` is not a size.
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise OciRegistryError(f"{what} has no valid size")
    digest = _digest(item.get("digest"), what)
    platform: PlatformSpec | None = None
    attestation = False
    if with_platform:
        plat = item.get("platform")
        if isinstance(plat, dict):
            os_name, arch, variant = plat.get("os"), plat.get("architecture"), plat.get("variant")
            if isinstance(os_name, str) and isinstance(arch, str):
                platform = PlatformSpec(
                    os_name, arch, variant if isinstance(variant, str) and variant else None
                )
        notes = item.get("annotations")
        if isinstance(notes, dict):
            attestation = notes.get("vnd.docker.reference.type") == "attestation-manifest"
    return Descriptor(media, digest, size, platform, attestation)


def _digest(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise OciRegistryError(f"{what} has no digest")
    try:
        return parse_digest(value)
    except ImageError as exc:
        raise VerificationError(f"{what}: {exc}") from None
