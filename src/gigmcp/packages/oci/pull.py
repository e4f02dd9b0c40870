"""Installing one pinned image: the steps in order, each verified before the next.

Owns the sequence: parse the reference and the pin; return at once (no network at all)
when the image is already in the cache; else fetch the index *by its digest*, choose
this host's manifest, fetch it by digest, fetch the config and check its platform
before any layer is downloaded, refuse unsupported layer types before downloading
them, fetch the layers (reusing verified cached blobs), extract them in a thread,
check the entrypoint's architecture, and commit to the cache in one step. Any failure
leaves the cache as it was.

It must never extract a blob that was not verified, never run anything from the image,
and never leave a partial image behind (see ``cache``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from gigmcp.packages.oci.cache import ImageCache, Staging
from gigmcp.packages.oci.distribution import ClientOptions, RegistryClient
from gigmcp.packages.oci.errors import BadReference, OciRegistryError, VerificationError
from gigmcp.packages.oci.extract import ExtractLimits, Layer, check_layer_media, extract_layers
from gigmcp.packages.oci.manifest import (
    CONFIG_TYPES,
    MANIFEST_TYPES,
    Descriptor,
    ImageIndex,
    ImageManifest,
    parse_config,
    parse_manifest,
    parse_top,
)
from gigmcp.packages.oci.platform import (
    HostPlatform,
    check_config_platform,
    check_entrypoint,
    host_platform,
    select_manifest,
)
from gigmcp.packages.oci.reference import ImageRef, parse_digest, parse_reference

MiB, GiB = 1024 * 1024, 1024 * 1024 * 1024

# (bytes fetched so far, bytes to fetch in all) for this install; cached blobs excluded.
Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class PullOptions:
    client: ClientOptions = field(default_factory=ClientOptions)
    limits: ExtractLimits = field(default_factory=ExtractLimits)
    max_layers: int = 128
    max_blob_bytes: int = 4 * GiB  # one blob, as stored (compressed)
    max_config_bytes: int = 1 * MiB
    max_download_bytes: int = 16 * GiB  # every blob of the image together
    deadline_s: float = 3600.0
    machine: str | None = None  # ``uname -m`` to install for; None: this host


async def install_image(
    ref: str | ImageRef,
    digest: str,
    entrypoint: str,
    cache: ImageCache,
    *,
    options: PullOptions | None = None,
    progress: Progress | None = None,
) -> Path:
    """The extracted root of the image pinned by ``digest``, installing it if needed."""
    opts = options or PullOptions()
    image = parse_reference(ref) if isinstance(ref, str) else ref
    pinned = parse_digest(digest)
    entry = entrypoint_path(entrypoint)
    host = host_platform(opts.machine)
    async with cache.lock(pinned):
        found = cache.installed(pinned)
        if found is not None:
            await asyncio.to_thread(check_entrypoint, found, entry, host)
            return found
        stage = cache.begin()
        try:
            try:
                async with asyncio.timeout(opts.deadline_s):
                    return await _install(image, pinned, entry, cache, stage, opts, host, progress)
            except TimeoutError:
                raise OciRegistryError(
                    f"image {pinned}: not installed within {opts.deadline_s:g} s"
                ) from None
        finally:
            await asyncio.to_thread(cache.discard, stage)


def entrypoint_path(entrypoint: str) -> str:
    """The manifest's entrypoint as a clean absolute path inside the image."""
    if not isinstance(entrypoint, str) or not entrypoint.startswith("/"):
        raise BadReference("the entrypoint must be an absolute path inside the image")
    parts = entrypoint.split("/")[1:]
    if "\x00" in entrypoint or any(p in ("", ".", "..") for p in parts) or len(entrypoint) > 4096:
        raise BadReference(f"the entrypoint {entrypoint[:200]!r} is not a clean absolute path")
    return entrypoint


async def _install(
    image: ImageRef,
    digest: str,
    entry: str,
    cache: ImageCache,
    stage: Staging,
    opts: PullOptions,
    host: HostPlatform,
    progress: Progress | None,
) -> Path:
    async with RegistryClient(image, opts.client) as client:
        manifest = await _manifest_for_host(client, digest, host)
        _check_sizes(manifest, opts)
        wanted = {d.digest: d for d in (manifest.config, *manifest.layers)}
        local: dict[str, Path] = {}
        for desc in wanted.values():
            cached = await asyncio.to_thread(cache.verified_blob, desc.digest, desc.size)
            if cached is not None:
                local[desc.digest] = cached
        total = sum(d.size for d in wanted.values() if d.digest not in local)
        done = 0

        def on_bytes(count: int) -> None:
            nonlocal done
            done += count
            if progress is not None:
                progress(done, total)

        if progress is not None:
            progress(0, total)

        async def fetch(desc: Descriptor) -> Path:
            if desc.digest not in local:
                dest = stage.blob(desc.digest)
                await client.blob(desc, dest, cap=opts.max_blob_bytes, on_bytes=on_bytes)
                local[desc.digest] = dest
            return local[desc.digest]

        # The config first: a foreign image is refused before its layers are downloaded.
        config_path = await fetch(manifest.config)
        config_bytes = await asyncio.to_thread(config_path.read_bytes)
        config = parse_config(config_bytes, f"config {manifest.config.digest}")
        check_config_platform(config.platform, host)
        diff_ids = config.diff_ids
        if diff_ids is not None and len(diff_ids) != len(manifest.layers):
            raise VerificationError(
                f"image {digest}: its config lists {len(diff_ids)} layers, its manifest "
                f"{len(manifest.layers)}"
            )
        for number, desc in enumerate(manifest.layers, 1):
            check_layer_media(desc.media_type, f"layer {number} ({desc.digest})")
        layers = [
            Layer(await fetch(desc), desc.media_type, desc.digest,
                  diff_ids[i] if diff_ids is not None else None)
            for i, desc in enumerate(manifest.layers)
        ]  # fmt: skip
    await asyncio.to_thread(extract_layers, layers, stage.rootfs, opts.limits)
    await asyncio.to_thread(check_entrypoint, stage.rootfs, entry, host)
    return await asyncio.to_thread(cache.commit, digest, stage, list(wanted))


async def _manifest_for_host(
    client: RegistryClient, digest: str, host: HostPlatform
) -> ImageManifest:
    """The image manifest this host runs, from the pinned index (or the pinned
    single-platform manifest itself, whose config is checked next)."""
    top = await client.manifest(digest)
    doc = parse_top(top.data, top.content_type, f"image {digest}")
    if isinstance(doc, ImageManifest):
        return doc
    assert isinstance(doc, ImageIndex)
    chosen = select_manifest(doc, host)
    if chosen.media_type not in MANIFEST_TYPES:
        raise OciRegistryError(
            f"image {digest}: the entry for {host.spec} is not an image manifest "
            f"({chosen.media_type[:80]})"
        )
    fetched = await client.manifest(chosen.digest, expected_size=chosen.size)
    return parse_manifest(fetched.data, fetched.content_type, f"manifest {chosen.digest}")


def _check_sizes(manifest: ImageManifest, opts: PullOptions) -> None:
    if manifest.config.media_type not in CONFIG_TYPES:
        raise OciRegistryError(
            f"not a container image: its config type is {manifest.config.media_type[:80]!r}"
        )
    if manifest.config.size > opts.max_config_bytes:
        raise VerificationError(
            f"config {manifest.config.digest} is {manifest.config.size} bytes, over the "
            f"{opts.max_config_bytes}-byte cap"
        )
    if not manifest.layers:
        raise OciRegistryError("the image has no layers")
    if len(manifest.layers) > opts.max_layers:
        raise VerificationError(
            f"the image has {len(manifest.layers)} layers, over the cap of {opts.max_layers}"
        )
    total = sum(d.size for d in {d.digest: d for d in manifest.layers}.values())
    if total > opts.max_download_bytes:
        raise VerificationError(
            f"the image's layers are {total} bytes, over the {opts.max_download_bytes}-byte cap"
        )
