"""Images the tests build themselves: tar layers, OCI manifests, configs and indexes,
and a pusher that uploads them through the distribution API (monolithic or chunked
blob uploads, manifests by digest, the index by tag), answering the registry's token
challenge with push credentials when the registry asks for them.

Independent of the code under test on purpose: nothing here imports gigmcp.packages.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import platform
import re
import tarfile
from dataclasses import dataclass, field
from typing import Any

import httpx2

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"

HOST_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}[platform.machine()]
FOREIGN_ARCH = "arm64" if HOST_ARCH == "amd64" else "amd64"
HOST_ELF = {"amd64": "x86_64", "arm64": "aarch64"}[HOST_ARCH]
FOREIGN_ELF = {"amd64": "x86_64", "arm64": "aarch64"}[FOREIGN_ARCH]
_E_MACHINE = {"amd64": 62, "arm64": 183}


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# -- tar members ---------------------------------------------------------------------


@dataclass
class Entry:
    info: tarfile.TarInfo
    data: bytes = b""


def file(name: str, data: bytes | str = b"", mode: int = 0o644) -> Entry:
    raw = data.encode() if isinstance(data, str) else data
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(raw), mode
    return Entry(info, raw)


def directory(name: str, mode: int = 0o755) -> Entry:
    info = tarfile.TarInfo(name)
    info.type, info.mode = tarfile.DIRTYPE, mode
    return Entry(info)


def symlink(name: str, target: str) -> Entry:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    return Entry(info)


def hardlink(name: str, target: str) -> Entry:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.LNKTYPE, target
    return Entry(info)


def device(name: str, kind: bytes = tarfile.CHRTYPE) -> Entry:
    info = tarfile.TarInfo(name)
    info.type, info.devmajor, info.devminor = kind, 1, 3  # /dev/null's numbers
    return Entry(info)


def fifo(name: str) -> Entry:
    info = tarfile.TarInfo(name)
    info.type = tarfile.FIFOTYPE
    return Entry(info)


def tar(entries: list[Entry], *, compress: bool = True) -> bytes:
    """A layer's bytes. The headers are written as given (no name cleaning), which is
    how a hostile image would be made."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for entry in entries:
            tf.addfile(entry.info, io.BytesIO(entry.data) if entry.data else None)
    raw = buf.getvalue()
    return gzip.compress(raw, mtime=0) if compress else raw


def huge_header_tar(name: str, claimed: int) -> bytes:
    """A gzip'd tar whose one member claims ``claimed`` bytes but carries a few: a size
    check must refuse it from the header alone, before reading any of it."""
    info = tarfile.TarInfo(name)
    info.size = claimed
    header = info.tobuf(format=tarfile.PAX_FORMAT)
    return gzip.compress(header + b"\0" * 4096, mtime=0)


def elf_header(arch: str) -> bytes:
    """The first 64 bytes of an ELF64 little-endian executable for ``arch``."""
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + b"\0" * 8
    rest = (2).to_bytes(2, "little") + _E_MACHINE[arch].to_bytes(2, "little")
    rest += (1).to_bytes(4, "little") + b"\0" * (64 - 16 - 8)
    return ident + rest


# -- images --------------------------------------------------------------------------


@dataclass
class Image:
    """One platform's image: its manifest and every blob it references."""

    manifest: bytes
    blobs: dict[str, bytes]
    arch: str

    @property
    def digest(self) -> str:
        return sha(self.manifest)


@dataclass
class ImageSet:
    """What gets pushed: blobs, per-platform manifests, and the index (or none)."""

    blobs: dict[str, bytes] = field(default_factory=dict)
    manifests: list[bytes] = field(default_factory=list)
    index: bytes | None = None

    @property
    def digest(self) -> str:
        return sha(self.index if self.index is not None else self.manifests[-1])


def image(
    layers: list[bytes],
    *,
    arch: str = HOST_ARCH,
    variant: str | None = None,
    layer_media: str | list[str] = LAYER_GZIP,
    diff_ids: list[str] | None = None,
    layer_sizes: dict[int, int] | None = None,
    config_extra: dict[str, Any] | None = None,
) -> Image:
    medias = layer_media if isinstance(layer_media, list) else [layer_media] * len(layers)
    if diff_ids is None:
        diff_ids = [
            sha(gzip.decompress(b) if m.endswith("gzip") else b)
            for b, m in zip(layers, medias, strict=True)
        ]
    config: dict[str, Any] = {
        "architecture": arch,
        "os": "linux",
        "config": {"Entrypoint": ["/app/server"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }
    if variant:
        config["variant"] = variant
    config.update(config_extra or {})
    config_bytes = json.dumps(config).encode()
    sizes = layer_sizes or {}
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": sha(config_bytes), "size": len(config_bytes)},
        "layers": [
            {"mediaType": m, "digest": sha(b), "size": sizes.get(i, len(b))}
            for i, (b, m) in enumerate(zip(layers, medias, strict=True))
        ],
    }
    blobs = {sha(config_bytes): config_bytes} | {sha(b): b for b in layers}
    return Image(json.dumps(manifest).encode(), blobs, arch)


def index(images: list[Image], *, extra: list[dict[str, Any]] | None = None) -> ImageSet:
    out = ImageSet()
    entries = []
    for img in images:
        out.blobs.update(img.blobs)
        out.manifests.append(img.manifest)
        entries.append(
            {
                "mediaType": OCI_MANIFEST,
                "digest": img.digest,
                "size": len(img.manifest),
                "platform": {"os": "linux", "architecture": img.arch},
            }
        )
    doc = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries + (extra or [])}
    out.index = json.dumps(doc).encode()
    return out


def single(img: Image) -> ImageSet:
    return ImageSet(dict(img.blobs), [img.manifest], None)


def foreign_stub() -> Image:
    """A small image for the other architecture, to make an index multi-platform."""
    layer = tar([directory("app"), file("app/server", elf_header(FOREIGN_ARCH), 0o755)])
    return image([layer], arch=FOREIGN_ARCH)


# -- pushing -------------------------------------------------------------------------


class Pusher:
    """Uploads an ImageSet to a registry through the distribution API."""

    def __init__(self, base_url: str, auth: tuple[str, str] | None = None) -> None:
        self.base = base_url.rstrip("/")
        self.auth = auth
        self.http = httpx2.Client(timeout=30, trust_env=False)
        self.token: str | None = None

    def close(self) -> None:
        self.http.close()

    def _request(self, method: str, url: str, **kw: Any) -> httpx2.Response:
        headers = dict(kw.pop("headers", {}))
        for _ in range(2):
            if self.token:
                headers["Authorization"] = f"Bearer {self.token}"
            resp = self.http.request(method, url, headers=headers, **kw)
            if resp.status_code != 401 or self.auth is None:
                return resp
            self._login(resp.headers["www-authenticate"])
        return resp

    def _login(self, challenge: str) -> None:
        params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        resp = self.http.get(
            params["realm"],
            params={"service": params["service"], "scope": params.get("scope", "")},
            auth=self.auth,
        )
        resp.raise_for_status()
        self.token = resp.json()["token"]

    def blob(self, repo: str, data: bytes, *, chunked: bool = False) -> str:
        digest = sha(data)
        head = self._request("HEAD", f"{self.base}/v2/{repo}/blobs/{digest}")
        if head.status_code == 200:
            return digest
        start = self._request("POST", f"{self.base}/v2/{repo}/blobs/uploads/")
        assert start.status_code == 202, start.text
        location = self._absolute(start.headers["location"])
        if chunked:
            offset = 0
            step = max(1, len(data) // 3 + 1)
            while offset < len(data):
                part = data[offset : offset + step]
                resp = self._request(
                    "PATCH",
                    location,
                    content=part,
                    headers={
                        "Content-Type": "application/octet-stream",
                        "Content-Range": f"{offset}-{offset + len(part) - 1}",
                    },
                )
                assert resp.status_code == 202, resp.text
                location = self._absolute(resp.headers["location"])
                offset += len(part)
            done = self._request("PUT", _with_digest(location, digest))
        else:
            done = self._request(
                "PUT",
                _with_digest(location, digest),
                content=data,
                headers={"Content-Type": "application/octet-stream"},
            )
        assert done.status_code == 201, done.text
        return digest

    def manifest(self, repo: str, data: bytes, media: str, reference: str) -> None:
        resp = self._request(
            "PUT",
            f"{self.base}/v2/{repo}/manifests/{reference}",
            content=data,
            headers={"Content-Type": media},
        )
        assert resp.status_code == 201, resp.text

    def push(
        self, repo: str, images: ImageSet, *, tag: str = "latest", chunked: bool = False
    ) -> str:
        for data in images.blobs.values():
            self.blob(repo, data, chunked=chunked)
        for m in images.manifests:
            self.manifest(repo, m, OCI_MANIFEST, sha(m))
        if images.index is not None:
            self.manifest(repo, images.index, OCI_INDEX, tag)
        return images.digest

    def _absolute(self, location: str) -> str:
        return location if "://" in location else self.base + location


def _with_digest(location: str, digest: str) -> str:
    # Appended, not merged: the registry's upload state must come back byte for byte.
    return f"{location}{'&' if '?' in location else '?'}digest={digest.replace(':', '%3A')}"


def copy_host_tree(paths: list[str], symlinks: list[tuple[str, str]]) -> list[Entry]:
    """Tar entries for host files (as their real contents, at the given paths) and the
    merged-/usr links: the way tests/sandbox/test_rootfs.py builds a runnable root."""
    entries: list[Entry] = []
    dirs: set[str] = set()
    for path in sorted(paths):
        rel = path.lstrip("/")
        parts = rel.split("/")
        for i in range(1, len(parts)):
            d = "/".join(parts[:i])
            if d not in dirs:
                dirs.add(d)
                entries.append(directory(d))
        with open(os.path.realpath(path), "rb") as f:
            data = f.read()
        entries.append(file(rel, data, 0o755))
    for target, link in symlinks:
        entries.append(symlink(link.lstrip("/"), target))
    return entries


def app_layer(arch: str = HOST_ARCH, extra: list[Entry] | None = None) -> bytes:
    """A layer whose /app/server is an executable ELF header for ``arch``: enough for
    the installer's checks (it is never run; tests/packages/oci/test_run.py runs a real
    program)."""
    return tar(
        [directory("app"), file("app/server", elf_header(arch) + b"\0" * 64, 0o755), *(extra or [])]
    )
