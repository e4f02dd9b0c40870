"""Applying image layers to a root directory, without ever being led out of it.

Owns turning verified layer blobs (tar, gzip'd tar) into a root file system, in order,
with the OCI whiteout rules (``.wh.<name>`` removes a lower layer's entry, the opaque
marker ``.wh..wh..opq`` empties a directory of lower layers' entries; neither touches
what the same layer adds). The rules every member meets:

* Names: relative, no ``..`` component, no absolute path, bounded length and depth.
* Nothing is ever written *through* a link of the tree being built: every parent is
  opened from the root with ``O_NOFOLLOW | O_DIRECTORY`` relative to its parent's
  descriptor, so a parent that is a symlink (from this layer or a lower one) is an
  error, not a detour. The final name is replaced, never opened through: an existing
  entry is removed first and files are created ``O_EXCL | O_NOFOLLOW``, so no write
  lands in an inode that a hard link shares with another path.
* Symlinks may point anywhere: they are only ever resolved inside the jail, where this
  root is ``/``. Hard links may only name a regular file already extracted inside.
* No device nodes (character, block) and no FIFOs: a server's image has no use for
  either, and refusing the whole image is clearer than silently dropping entries that
  its author put there. Sparse and unknown member types are refused too.
* Ownership and special bits are dropped: everything belongs to the extracting user;
  directories are 0755, files 0755 when any execute bit was set, else 0644 (so the
  jail's unprivileged user can read the image and nothing is setuid or writable).
* Caps: members, single file size, total bytes, header (pax/long name) size, and the
  decompressed stream itself, so a compression bomb stops at the cap.

zstd layers are refused with a clear message: Python 3.11's standard library has no
zstd decoder. The work is synchronous CPU and disk I/O: callers run it in a thread.
It must never follow a link while writing, never create a file outside ``dest``, and
never leave a layer half-checked: each member is checked before it is written.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import hashlib
import os
import shutil
import stat
import tarfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol, Self

from gigmcp.packages.oci.errors import ExtractError
from gigmcp.packages.oci.manifest import LAYER_FOREIGN, LAYER_GZIP, LAYER_TAR, LAYER_ZSTD

KiB, MiB, GiB = 1024, 1024 * 1024, 1024 * 1024 * 1024
WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
# Header members whose payload tarfile reads into memory (pax records, GNU long names).
_META_TYPES = frozenset({tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE,
                         tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK})  # fmt: skip
MAX_META_BYTES = 1 * MiB
_FILE_TYPES = frozenset({tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE})


@dataclass(frozen=True, slots=True)
class ExtractLimits:
    max_members: int = 500_000  # across all layers
    max_file_bytes: int = 4 * GiB
    max_total_bytes: int = 16 * GiB  # file contents, across all layers
    max_path_bytes: int = 4096
    max_depth: int = 256


@dataclass(frozen=True, slots=True)
class Layer:
    path: Path  # the verified blob
    media_type: str
    digest: str  # for messages
    diff_id: str | None = None  # from the image config: the uncompressed tar's sha256


@dataclass(frozen=True, slots=True)
class ExtractStats:
    members: int
    file_bytes: int


class _GuardedTarInfo(tarfile.TarInfo):
    """Refuses an oversized pax or long-name header *before* tarfile reads its payload
    into memory (the member-level caps come too late for those)."""

    @classmethod
    def frombuf(cls, buf: bytes | bytearray, encoding: str, errors: str) -> Self:
        info = super().frombuf(buf, encoding, errors)
        if info.type in _META_TYPES and info.size > MAX_META_BYTES:
            raise ExtractError(
                f"a tar header record of {info.size} bytes is over the {MAX_META_BYTES}-byte cap"
            )
        return info


class _Reader(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class _Counted:
    """The decompressed layer stream: hashed (for the config's diff_id) and capped.
    tarfile's stream mode needs nothing but ``read``."""

    def __init__(self, inner: _Reader, budget: list[int], what: str) -> None:
        self._inner = inner
        self._budget = budget  # shared across layers: [bytes left]
        self._what = what
        self.hasher = hashlib.sha256()

    def read(self, size: int = -1, /) -> bytes:
        return self._read(size)

    # The rest of the file-object shape tarfile's type asks for; a stream only reads.
    def write(self, _data: bytes, /) -> int:
        raise OSError("a layer stream is read-only")

    def seek(self, _pos: int, /) -> int:
        raise OSError("a layer stream cannot seek")

    def tell(self) -> int:
        return 0

    def close(self) -> None:
        pass

    def _read(self, size: int) -> bytes:
        try:
            data = self._inner.read(size if size >= 0 else 1 * MiB)
        except (OSError, EOFError, zlib.error) as exc:
            raise ExtractError(f"{self._what} is not a valid compressed stream ({exc})") from None
        self._budget[0] -= len(data)
        if self._budget[0] < 0:
            raise ExtractError(
                f"{self._what} decompresses to more than the image size cap: refused"
            )
        self.hasher.update(data)
        return data


def _zstd_message(what: str) -> str:
    return (
        f"{what} is zstd-compressed, which is not supported (Python 3.11's standard "
        "library has no zstd): rebuild the image with gzip layers"
    )


def check_layer_media(media: str, what: str) -> None:
    """Refuse a layer type we cannot apply, before anyone downloads it."""
    if media in LAYER_ZSTD:
        raise ExtractError(_zstd_message(what))
    if media in LAYER_FOREIGN:
        raise ExtractError(f"{what} is a non-distributable layer ({media}): not supported")
    if media not in LAYER_GZIP | LAYER_TAR:
        raise ExtractError(f"{what} has an unsupported media type {media[:100]!r}")


def extract_layers(
    layers: Sequence[Layer], dest: Path, limits: ExtractLimits | None = None
) -> ExtractStats:
    """Apply ``layers`` in order into ``dest`` (an existing, empty directory)."""
    limits = limits or ExtractLimits()
    job = _Extraction(dest, limits)
    try:
        for number, layer in enumerate(layers, 1):
            job.apply(layer, f"layer {number} ({layer.digest})")
    finally:
        job.close()
    return ExtractStats(job.members, job.file_bytes)


class _Extraction:
    def __init__(self, dest: Path, limits: ExtractLimits) -> None:
        self.limits = limits
        self.root_fd = os.open(dest, _DIR_FLAGS)
        os.fchmod(self.root_fd, 0o755)
        self.members = 0
        self.file_bytes = 0
        # Headers and padding ride on top of the file bytes: a generous allowance per
        # member, so the stream cap never bites a legitimate image before the real caps.
        self.stream_budget = [limits.max_total_bytes + limits.max_members * 3 * KiB + 16 * MiB]
        self.written: set[str] = set()  # paths this layer created (whiteouts spare them)

    def close(self) -> None:
        os.close(self.root_fd)

    def apply(self, layer: Layer, what: str) -> None:
        self.written = set()
        with open(layer.path, "rb") as raw, self._decompressed(raw, layer, what) as stream:
            counted = _Counted(stream, self.stream_budget, what)
            try:
                with tarfile.open(
                    fileobj=counted, mode="r|", tarinfo=_GuardedTarInfo, errorlevel=2
                ) as tf:
                    for member in tf:
                        self.members += 1
                        if self.members > self.limits.max_members:
                            raise ExtractError(
                                f"{what}: more than {self.limits.max_members} entries in the image"
                            )
                        self._member(tf, member, what)
                # The rest of the stream (end-of-archive blocks, padding) counts for the
                # diff_id, and reading it to the end makes gzip check its CRC.
                while counted.read(1 * MiB):
                    pass
            except tarfile.TarError as exc:
                raise ExtractError(f"{what} is not a valid tar archive ({exc})") from None
        if layer.diff_id is not None:
            got = "sha256:" + counted.hasher.hexdigest()
            if got != layer.diff_id:
                raise ExtractError(
                    f"{what} does not match the image config's diff_id {layer.diff_id} "
                    f"(its contents hash to {got})"
                )

    @contextlib.contextmanager
    def _decompressed(self, raw: IO[bytes], layer: Layer, what: str) -> Iterator[_Reader]:
        media = layer.media_type
        check_layer_media(media, what)
        head = raw.read(4)
        raw.seek(0)
        if head == _ZSTD_MAGIC:
            raise ExtractError(_zstd_message(what))
        if head[:2] == _GZIP_MAGIC:
            with gzip.GzipFile(fileobj=raw, mode="rb") as gz:
                yield gz
        elif media in LAYER_GZIP:
            raise ExtractError(f"{what} is declared gzip but is not gzip data")
        else:
            yield raw

    # -- one member -------------------------------------------------------------------

    def _member(self, tf: tarfile.TarFile, member: tarfile.TarInfo, what: str) -> None:
        parts = self._parts(member.name, what)
        shown = "/".join(parts) or "."
        label = f"{what}: {shown!r}"
        if not parts:
            if member.isdir():
                return  # the root itself ("./"): it stays ours, 0755
            raise ExtractError(f"{label}: the root of the image must be a directory")
        base = parts[-1]
        if any(p.startswith(WHITEOUT) for p in parts[:-1]):
            raise ExtractError(f"{label}: a whiteout name used as a directory")
        if base.startswith(WHITEOUT):
            self._whiteout(parts, label)
            return
        if member.type in (tarfile.CHRTYPE, tarfile.BLKTYPE):
            raise ExtractError(f"{label} is a device node: device nodes are not allowed in images")
        if member.type == tarfile.FIFOTYPE:
            raise ExtractError(f"{label} is a fifo: fifos are not allowed in images")
        if member.issparse():
            raise ExtractError(f"{label} is a sparse file: not supported")
        if member.type in _FILE_TYPES:
            self._file(tf, member, parts, label)
        elif member.type == tarfile.DIRTYPE:
            self._dir(parts, label)
        elif member.type == tarfile.SYMTYPE:
            self._symlink(member, parts, label)
        elif member.type == tarfile.LNKTYPE:
            self._hardlink(member, parts, label, what)
        else:
            raise ExtractError(f"{label} has an unsupported tar entry type {member.type!r}")

    def _parts(self, name: str, what: str) -> list[str]:
        """The member's path components, or ExtractError for any escape."""
        if "\x00" in name:
            raise ExtractError(f"{what}: a member name contains a NUL byte")
        if len(os.fsencode(name)) > self.limits.max_path_bytes:
            raise ExtractError(
                f"{what}: a member name is longer than {self.limits.max_path_bytes} bytes"
            )
        if name.startswith("/"):
            raise ExtractError(f"{what}: {name!r} is an absolute path: refused")
        parts = [p for p in name.split("/") if p not in ("", ".")]
        if ".." in parts:
            raise ExtractError(f"{what}: {name!r} contains '..': refused")
        if len(parts) > self.limits.max_depth:
            raise ExtractError(f"{what}: {name!r} is nested deeper than {self.limits.max_depth}")
        if any(len(os.fsencode(p)) > 255 for p in parts):
            raise ExtractError(f"{what}: {name!r} has a component longer than 255 bytes")
        return parts

    def _mark(self, parts: Sequence[str]) -> None:
        for i in range(1, len(parts) + 1):
            self.written.add("/".join(parts[:i]))

    def _open_dir(self, parts: Sequence[str], label: str, *, create: bool) -> int | None:
        """A descriptor for the directory ``parts`` names, walked from the root one real
        directory at a time (missing ones created when ``create``); None if missing."""
        fd = os.dup(self.root_fd)
        try:
            for i, part in enumerate(parts):
                try:
                    nfd = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        os.close(fd)
                        return None
                    os.mkdir(part, 0o755, dir_fd=fd)
                    nfd = os.open(part, _DIR_FLAGS, dir_fd=fd)
                    os.fchmod(nfd, 0o755)
                    self._mark(parts[: i + 1])
                except OSError as exc:
                    if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                        raise
                    here = "/".join(parts[: i + 1])
                    st = os.stat(part, dir_fd=fd, follow_symlinks=False)
                    if stat.S_ISLNK(st.st_mode):
                        raise ExtractError(
                            f"{label} would be written through the symlink {here!r}: refused"
                        ) from None
                    raise ExtractError(f"{label}: {here!r} is not a directory") from None
                os.close(fd)
                fd = nfd
            return fd
        except BaseException:
            with contextlib.suppress(OSError):
                os.close(fd)
            raise

    def _clear(self, dir_fd: int, name: str, *, keep_dir: bool) -> bool:
        """Remove whatever is at ``name`` (never following it); True if a directory was
        kept because ``keep_dir``."""
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        if stat.S_ISDIR(st.st_mode):
            if keep_dir:
                return True
            # rmtree with dir_fd works on descriptors and never follows links.
            shutil.rmtree(name, dir_fd=dir_fd)
        else:
            os.unlink(name, dir_fd=dir_fd)
        return False

    def _file(
        self, tf: tarfile.TarFile, member: tarfile.TarInfo, parts: list[str], label: str
    ) -> None:
        size = member.size
        if size > self.limits.max_file_bytes:
            raise ExtractError(
                f"{label} is {size} bytes, over the {self.limits.max_file_bytes}-byte file cap"
            )
        self.file_bytes += size
        if self.file_bytes > self.limits.max_total_bytes:
            raise ExtractError(
                f"{label}: the image is larger than the {self.limits.max_total_bytes}-byte cap"
            )
        parent = self._open_dir(parts[:-1], label, create=True)
        assert parent is not None
        try:
            self._clear(parent, parts[-1], keep_dir=False)
            fd = os.open(
                parts[-1],
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                0o600,
                dir_fd=parent,
            )
            try:
                source = tf.extractfile(member)
                if source is None:
                    raise ExtractError(f"{label}: its contents cannot be read")
                left = size
                while left:
                    chunk = source.read(min(left, 1 * MiB))
                    if not chunk:
                        raise ExtractError(f"{label}: the archive ends inside this file")
                    left -= len(chunk)
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fd, view) :]
                os.fchmod(fd, 0o755 if member.mode & 0o111 else 0o644)
            finally:
                os.close(fd)
        finally:
            os.close(parent)
        self._mark(parts)

    def _dir(self, parts: list[str], label: str) -> None:
        parent = self._open_dir(parts[:-1], label, create=True)
        assert parent is not None
        try:
            if not self._clear(parent, parts[-1], keep_dir=True):
                os.mkdir(parts[-1], 0o755, dir_fd=parent)
            fd = os.open(parts[-1], _DIR_FLAGS, dir_fd=parent)
            try:
                os.fchmod(fd, 0o755)
            finally:
                os.close(fd)
        finally:
            os.close(parent)
        self._mark(parts)

    def _symlink(self, member: tarfile.TarInfo, parts: list[str], label: str) -> None:
        target = member.linkname
        if not target or "\x00" in target or len(os.fsencode(target)) >= 4096:
            raise ExtractError(f"{label}: invalid symlink target")
        parent = self._open_dir(parts[:-1], label, create=True)
        assert parent is not None
        try:
            self._clear(parent, parts[-1], keep_dir=False)
            os.symlink(target, parts[-1], dir_fd=parent)
        finally:
            os.close(parent)
        self._mark(parts)

    def _hardlink(self, member: tarfile.TarInfo, parts: list[str], label: str, what: str) -> None:
        target = member.linkname
        if target.startswith("/"):
            raise ExtractError(f"{label}: a hard link to the absolute path {target!r}: refused")
        tparts = [p for p in target.split("/") if p not in ("", ".")]
        if ".." in tparts:
            raise ExtractError(f"{label}: a hard link out of the image ({target!r}): refused")
        if not tparts or tparts == parts:
            raise ExtractError(f"{label}: a hard link to itself")
        self._parts(target, what)
        missing = f"{label}: a hard link to {target!r}, which is not a file extracted before it"
        tparent = self._open_dir(tparts[:-1], label, create=False)
        if tparent is None:
            raise ExtractError(missing)
        try:
            try:
                st = os.stat(tparts[-1], dir_fd=tparent, follow_symlinks=False)
            except FileNotFoundError:
                raise ExtractError(missing) from None
            if not stat.S_ISREG(st.st_mode):
                raise ExtractError(missing)
            parent = self._open_dir(parts[:-1], label, create=True)
            assert parent is not None
            try:
                self._clear(parent, parts[-1], keep_dir=False)
                os.link(
                    tparts[-1], parts[-1], src_dir_fd=tparent, dst_dir_fd=parent,
                    follow_symlinks=False,
                )  # fmt: skip
            finally:
                os.close(parent)
        finally:
            os.close(tparent)
        self._mark(parts)

    def _whiteout(self, parts: list[str], label: str) -> None:
        base = parts[-1]
        if base == OPAQUE:
            self._opaque(parts[:-1], label)
            return
        if base.startswith(WHITEOUT + WHITEOUT):
            return  # other aufs bookkeeping (.wh..wh.plnk): nothing to apply
        name = base[len(WHITEOUT) :]
        if name in ("", ".", ".."):
            raise ExtractError(f"{label}: an invalid whiteout")
        victim = "/".join([*parts[:-1], name])
        if victim in self.written:
            return  # a whiteout hides lower layers only, never its own layer's entries
        parent = self._open_dir(parts[:-1], label, create=False)
        if parent is None:
            return
        try:
            self._clear(parent, name, keep_dir=False)
        finally:
            os.close(parent)

    def _opaque(self, dir_parts: list[str], label: str) -> None:
        fd = self._open_dir(dir_parts, label, create=False)
        if fd is not None:
            self._prune(fd, "/".join(dir_parts))

    def _prune(self, fd: int, prefix: str) -> None:
        """Remove what lower layers put under an opaque directory: every entry this layer
        did not write, and inside this layer's own subdirectories, the same again (an
        opaque directory does not merge with anything below it)."""
        try:
            for name in os.listdir(fd):
                path = f"{prefix}/{name}" if prefix else name
                if path not in self.written:
                    self._clear(fd, name, keep_dir=False)
                    continue
                try:
                    sub = os.open(name, _DIR_FLAGS, dir_fd=fd)
                except OSError:
                    continue  # a file or link this layer wrote: nothing beneath it
                self._prune(sub, path)
        finally:
            os.close(fd)
