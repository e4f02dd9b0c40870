"""The image cache on disk: verified blobs and extracted roots, by digest.

Layout under the cache root::

    blobs/sha256/<hex>     verified blobs (0700: only the gateway reads them)
    rootfs/<index hex>/    an extracted image, the jail's root (readable by the jail user)
    refs/<index hex>.json  which blobs an installed image came from (for ``remove``)
    tmp/                   staging areas; an install builds everything here

Owns the all-or-nothing rule: an install stages its blobs and its root under ``tmp/``
and :meth:`ImageCache.commit` moves them into place, the root last and by one rename,
so an image is either fully installed or absent; a failed install removes its staging
area and leaves nothing behind. A cached blob is re-hashed before it is reused.

It must never treat a path it did not build as an image, never remove anything outside
its root, and never follow a link inside an extracted image (removal is done on
descriptors, with ``shutil.rmtree``'s link-safe walk).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import secrets
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from gigmcp import filemodes
from gigmcp.packages.oci.reference import digest_hex, parse_digest

_HASH_CHUNK = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Staging:
    """One install's private area: ``blobs/`` fetched for it, ``rootfs/`` being built."""

    path: Path

    @property
    def blobs(self) -> Path:
        return self.path / "blobs"

    @property
    def rootfs(self) -> Path:
        return self.path / "rootfs"

    def blob(self, digest: str) -> Path:
        return self.blobs / digest_hex(digest)


class ImageCache:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.blobs = self.root / "blobs" / "sha256"
        self.images = self.root / "rootfs"
        self.refs = self.root / "refs"
        self.tmp = self.root / "tmp"
        # The root and rootfs/ must be traversable by the jail's user (bwrap binds the
        # image's folders as that user); everything else stays the gateway's alone. The
        # folders above the root too, whatever the gateway's umask (077).
        filemodes.public_dirs(self.root.parent)
        for path, mode in ((self.root, 0o755), (self.images, 0o755), (self.root / "blobs", 0o700),
                           (self.blobs, 0o700), (self.refs, 0o700), (self.tmp, 0o700)):  # fmt: skip
            path.mkdir(mode=mode, parents=True, exist_ok=True)
            os.chmod(path, mode)
        self._locks: dict[str, asyncio.Lock] = {}

    def lock(self, digest: str) -> asyncio.Lock:
        """Serialises installs and removals of one image within this process."""
        return self._locks.setdefault(parse_digest(digest), asyncio.Lock())

    def rootfs(self, digest: str) -> Path:
        return self.images / digest_hex(digest)

    def installed(self, digest: str) -> Path | None:
        """The extracted root of a cached image, or None. Present means complete: it only
        ever appears by the rename in :meth:`commit`."""
        path = self.rootfs(digest)
        return path if path.is_dir() and not path.is_symlink() else None

    def blob(self, digest: str) -> Path:
        return self.blobs / digest_hex(digest)

    def verified_blob(self, digest: str, size: int) -> Path | None:
        """A cached blob if it still hashes to its name and has the expected size; a
        damaged one is deleted (it will be fetched again). Blocking: run in a thread."""
        path = self.blob(digest)
        try:
            if path.stat().st_size != size:
                raise ValueError
            hasher = hashlib.sha256()
            with open(path, "rb") as f:
                while chunk := f.read(_HASH_CHUNK):
                    hasher.update(chunk)
            if "sha256:" + hasher.hexdigest() != digest:
                raise ValueError
        except FileNotFoundError:
            return None
        except ValueError:
            path.unlink(missing_ok=True)
            return None
        return path

    def begin(self) -> Staging:
        """A fresh staging area for one install (see :meth:`discard`)."""
        path = self.tmp / f"install-{secrets.token_hex(8)}"
        path.mkdir(mode=0o700)
        stage = Staging(path)
        stage.blobs.mkdir(mode=0o700)
        stage.rootfs.mkdir(mode=0o755)
        return stage

    def discard(self, stage: Staging) -> None:
        """Remove a staging area, whatever it holds (after a commit, nothing of value).
        Blocking: run in a thread."""
        if stage.path.parent != self.tmp:
            raise ValueError("not a staging area of this cache")
        shutil.rmtree(stage.path, ignore_errors=True)

    @contextlib.contextmanager
    def staging(self) -> Iterator[Staging]:
        """:meth:`begin` and :meth:`discard` around a block (synchronous callers)."""
        stage = self.begin()
        try:
            yield stage
        finally:
            self.discard(stage)

    def commit(self, digest: str, stage: Staging, blobs: Iterable[str]) -> Path:
        """Move a finished install into place: blobs, then the refs record, then the root
        by a single rename. Blocking: run in a thread."""
        used = sorted({parse_digest(d) for d in blobs})
        for blob in used:
            staged = stage.blob(blob)
            if staged.exists():
                os.replace(staged, self.blob(blob))
        ref = self.refs / f"{digest_hex(digest)}.json"
        tmp_ref = stage.path / "ref.json"
        tmp_ref.write_text(json.dumps({"digest": digest, "blobs": used}))
        os.replace(tmp_ref, ref)
        target = self.rootfs(digest)
        try:
            os.rename(stage.rootfs, target)
        except OSError:
            # Another install of the same digest finished first: its root is as good.
            if self.installed(digest) is None:
                raise
        return target

    def remove(self, digest: str) -> bool:
        """Remove an image's root and the blobs no other cached image uses. The caller
        stops its instances first. True if anything was removed. Blocking."""
        hexd = digest_hex(digest)
        removed = False
        target = self.rootfs(digest)
        if target.exists() or target.is_symlink():
            # Out of rootfs/ first, by rename: a half-deleted root must never look installed.
            doomed = self.tmp / f"remove-{hexd}-{secrets.token_hex(4)}"
            os.rename(target, doomed)
            shutil.rmtree(doomed, ignore_errors=True)
            removed = True
        ref = self.refs / f"{hexd}.json"
        mine = set(self._ref_blobs(ref))
        if ref.exists():
            ref.unlink()
            removed = True
        still_used: set[str] = set()
        for other in self.refs.glob("*.json"):
            still_used.update(self._ref_blobs(other))
        for blob in mine - still_used:
            path = self.blob(blob)
            if path.exists():
                path.unlink()
                removed = True
        return removed

    def sweep(self) -> None:
        """Remove staging areas left by a crash. Only while no install is running."""
        for entry in self.tmp.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)

    @staticmethod
    def _ref_blobs(path: Path) -> list[str]:
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
            return []
        out: list[str] = []
        for blob in doc.get("blobs", []) if isinstance(doc, dict) else []:
            with contextlib.suppress(Exception):
                out.append(parse_digest(blob))
        return out
