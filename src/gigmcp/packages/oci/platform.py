"""Which platform an image must be built for, and proof that it is.

Owns three checks: choosing this host's manifest from an image index (``linux/amd64``
on x86_64, ``linux/arm64`` on aarch64; a variant is honoured where it changes what
runs: 32-bit ARM takes the host's level or lower, amd64 takes only the baseline, since
a ``v3`` build may use instructions this CPU lacks); refusing an image whose config
says another platform (a pinned single-platform manifest, or an index that lies); and,
after extraction, reading the entrypoint's ELF header (``e_machine``) so that a binary
for another machine is refused with both architectures named. A ``#!`` entrypoint is
checked through its interpreter, looked up inside the image.

It must never execute anything from the image, and never follow a link in the image to
a file outside it: paths are resolved against the image's root, component by
component, with the image's links interpreted as the jail would.
"""

from __future__ import annotations

import errno
import os
import platform as _platform
import stat
from dataclasses import dataclass
from pathlib import Path

from gigmcp.packages.oci.errors import ImageError, PlatformError
from gigmcp.packages.oci.manifest import Descriptor, ImageIndex, PlatformSpec

# uname machine → (OCI architecture, variant the host runs natively, ELF name)
_MACHINES: dict[str, tuple[str, str | None, str]] = {
    "x86_64": ("amd64", None, "x86_64"),
    "amd64": ("amd64", None, "x86_64"),
    "aarch64": ("arm64", "v8", "aarch64"),
    "arm64": ("arm64", "v8", "aarch64"),
    "armv7l": ("arm", "v7", "arm"),
    "armv6l": ("arm", "v6", "arm"),
    "i686": ("386", None, "i386"),
    "i386": ("386", None, "i386"),
    "ppc64le": ("ppc64le", None, "ppc64le"),
    "s390x": ("s390x", None, "s390x"),
    "riscv64": ("riscv64", None, "riscv64"),
}
# OCI architecture → the ELF machine name used in messages.
_ARCH_ELF = {"amd64": "x86_64", "arm64": "aarch64", "arm": "arm", "386": "i386",
             "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}  # fmt: skip
# ELF e_machine values (System V ABI, the processor supplements).
_E_MACHINE = {3: "i386", 8: "mips", 20: "ppc", 21: "ppc64", 22: "s390x", 40: "arm",
              62: "x86_64", 183: "aarch64", 243: "riscv64", 258: "loongarch64"}  # fmt: skip
# Folders searched for ``#!/usr/bin/env NAME``, as the image's own PATH would be.
IMAGE_PATH = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
MAX_LINK_HOPS = 40  # the kernel's own limit


@dataclass(frozen=True, slots=True)
class HostPlatform:
    spec: PlatformSpec  # what an index entry must say
    elf: str  # what the entrypoint's ELF header must say


def host_platform(machine: str | None = None) -> HostPlatform:
    """This host (or the named ``uname -m`` machine) as an image platform."""
    name = (machine or _platform.machine()).lower()
    known = _MACHINES.get(name)
    if known is None:
        raise PlatformError(f"this host's architecture {name!r} is not supported for images")
    arch, variant, elf = known
    return HostPlatform(PlatformSpec("linux", arch, variant), elf)


def _variant_fits(offered: str | None, host: PlatformSpec) -> int | None:
    """How well an entry's variant fits the host: 0 exact, higher worse, None never."""
    if host.architecture == "arm64":
        return 0 if offered in (None, "v8") else None
    if host.architecture == "arm":
        want = int((host.variant or "v7")[1:])
        if offered is None:
            return 1
        if offered.startswith("v") and offered[1:].isdigit() and int(offered[1:]) <= want:
            return want - int(offered[1:])
        return None
    if host.architecture == "amd64":
        return 0 if offered in (None, "v1") else None
    return 0 if offered is None else None


def select_manifest(index: ImageIndex, host: HostPlatform) -> Descriptor:
    """The index entry this host runs; PlatformError naming what the image offers."""
    best: tuple[int, Descriptor] | None = None
    offered: list[str] = []
    for desc in index.manifests:
        if desc.attestation or desc.platform is None:
            continue
        offered.append(str(desc.platform))
        plat = desc.platform
        if plat.os != host.spec.os or plat.architecture != host.spec.architecture:
            continue
        fit = _variant_fits(plat.variant, host.spec)
        if fit is not None and (best is None or fit < best[0]):
            best = (fit, desc)
    if best is None:
        have = ", ".join(sorted(set(offered))) or "no platform at all"
        raise PlatformError(
            f"the image has no manifest for this host's platform {host.spec} (it offers: {have})"
        )
    return best[1]


def check_config_platform(config: PlatformSpec, host: HostPlatform) -> None:
    """The image's config must describe this host's platform."""
    if config.os != host.spec.os or config.architecture != host.spec.architecture:
        built = _ARCH_ELF.get(config.architecture, config.architecture)
        raise PlatformError(
            f"image is built for {config} ({built}), this host is {host.spec} ({host.elf})"
        )
    if _variant_fits(config.variant, host.spec) is None:
        raise PlatformError(f"image is built for {config}, this host is {host.spec}")


def elf_machine(header: bytes) -> str | None:
    """The machine an ELF header is for (None when it is not ELF)."""
    if len(header) < 20 or header[:4] != b"\x7fELF":
        return None
    little = header[5] == 1
    code = int.from_bytes(header[18:20], "little" if little else "big")
    name = _E_MACHINE.get(code, f"machine {code}")
    if name == "ppc64" and little:
        return "ppc64le"
    return name


def check_entrypoint(rootfs: Path, entrypoint: str, host: HostPlatform) -> None:
    """The entrypoint exists in the image, is executable, and runs on this host."""
    path = resolve_in_root(rootfs, entrypoint, f"entrypoint {entrypoint}")
    head = _read_head(path, entrypoint)
    machine = elf_machine(head)
    if machine is not None:
        _check_machine(machine, host)
        return
    if head.startswith(b"#!"):
        line = head[2:].split(b"\n", 1)[0].decode("utf-8", "replace").split()
        if not line:
            raise PlatformError(f"entrypoint {entrypoint}: empty #! line")
        interp = line[0]
        if os.path.basename(interp) == "env" and len(line) > 1:
            name = line[1]
            interp = next(
                (f"{d}/{name}" for d in IMAGE_PATH if _exists(rootfs, f"{d}/{name}")), name
            )
        what = f"entrypoint {entrypoint}: its interpreter {interp}"
        if not interp.startswith("/"):
            raise PlatformError(f"{what} is not in the image")
        ipath = resolve_in_root(rootfs, interp, what)
        imachine = elf_machine(_read_head(ipath, interp))
        if imachine is None:
            raise PlatformError(f"{what} is not a native executable")
        _check_machine(imachine, host)
        return
    raise PlatformError(f"entrypoint {entrypoint} is neither an ELF executable nor a #! script")


def _check_machine(machine: str, host: HostPlatform) -> None:
    if machine != host.elf:
        raise PlatformError(f"image is built for {machine}, this host is {host.elf}")


def _read_head(path: Path, shown: str) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise PlatformError(f"{shown}: cannot be read ({exc.strerror})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise PlatformError(f"{shown} is not a regular file")
        if not st.st_mode & 0o111:
            raise PlatformError(f"{shown} is not executable")
        return os.read(fd, 256)
    finally:
        os.close(fd)


def _exists(rootfs: Path, path: str) -> bool:
    try:
        resolve_in_root(rootfs, path, path)
    except ImageError:
        return False
    return True


def resolve_in_root(rootfs: Path, path: str, shown: str) -> Path:
    """The host path of the regular file ``path`` names inside the image, following the
    image's links as the jail would (absolute targets from the image's root, ``..``
    stopping at it). Every step is checked with lstat on an already-resolved real
    directory, so no host link is ever followed."""
    if not path.startswith("/"):
        raise PlatformError(f"{shown}: not an absolute path")
    pending = [p for p in path.split("/") if p]
    resolved: list[str] = []
    hops = 0
    while pending:
        part = pending.pop(0)
        if part == ".":
            continue
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = rootfs.joinpath(*resolved, part)
        try:
            st = os.lstat(candidate)
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ENOTDIR):
                raise PlatformError(f"{shown} is not in the image") from None
            raise PlatformError(f"{shown}: cannot be read ({exc.strerror})") from None
        if stat.S_ISLNK(st.st_mode):
            hops += 1
            if hops > MAX_LINK_HOPS:
                raise PlatformError(f"{shown}: too many levels of links in the image")
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            pending = [p for p in target.split("/") if p] + pending
            continue
        if pending and not stat.S_ISDIR(st.st_mode):
            raise PlatformError(f"{shown} is not in the image")
        resolved.append(part)
    final = rootfs.joinpath(*resolved)
    if not resolved or not stat.S_ISREG(os.lstat(final).st_mode):
        raise PlatformError(f"{shown} is not a regular file in the image")
    return final
