"""Platform choice and the entrypoint's architecture, on real indexes, real ELF files
from the host and headers built for the other machine."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from gigmcp.packages.oci.errors import PlatformError
from gigmcp.packages.oci.manifest import ImageIndex, PlatformSpec, parse_top
from gigmcp.packages.oci.platform import (
    check_config_platform,
    check_entrypoint,
    elf_machine,
    host_platform,
    select_manifest,
)
from tests.support.oci_images import FOREIGN_ARCH, FOREIGN_ELF, HOST_ELF, elf_header, sha

HOST = host_platform()


def entry(
    arch: str, variant: str | None = None, os_name: str = "linux", **extra: object
) -> dict[str, object]:
    plat: dict[str, object] = {"os": os_name, "architecture": arch}
    if variant:
        plat["variant"] = variant
    digest = sha(json.dumps([arch, variant, os_name, extra]).encode())
    return {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest, "size": 10,
            "platform": plat, **extra}  # fmt: skip


def index(*entries: dict[str, object]) -> ImageIndex:
    doc = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
           "manifests": list(entries)}  # fmt: skip
    parsed = parse_top(json.dumps(doc).encode(), None, "test index")
    assert isinstance(parsed, ImageIndex)
    return parsed


def test_host_platform_names() -> None:
    assert host_platform("x86_64").spec == PlatformSpec("linux", "amd64", None)
    assert host_platform("aarch64").spec == PlatformSpec("linux", "arm64", "v8")
    assert host_platform("armv7l").spec == PlatformSpec("linux", "arm", "v7")
    assert host_platform("x86_64").elf == "x86_64" and host_platform("aarch64").elf == "aarch64"
    assert HOST.elf == HOST_ELF
    with pytest.raises(PlatformError, match="'mips64' is not supported"):
        host_platform("mips64")


def test_the_host_entry_is_chosen_and_attestations_are_skipped() -> None:
    attest = entry("unknown", os_name="unknown",
                   annotations={"vnd.docker.reference.type": "attestation-manifest"})  # fmt: skip
    idx = index(
        attest, entry("arm64", "v8"), entry("amd64"), entry("arm", "v7"), entry("arm", "v6")
    )
    assert select_manifest(idx, host_platform("x86_64")).platform == PlatformSpec("linux", "amd64")
    assert select_manifest(idx, host_platform("aarch64")).platform == PlatformSpec(
        "linux", "arm64", "v8"
    )
    # A v7 host prefers its own level, and takes v6 when that is all there is.
    assert select_manifest(idx, host_platform("armv7l")).platform == PlatformSpec(
        "linux", "arm", "v7"
    )
    assert (
        select_manifest(index(entry("arm", "v6")), host_platform("armv7l")).platform.variant == "v6"
    )  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("entries", "machine", "offers"),
    [
        ([entry("arm64", "v8")], "x86_64", "linux/arm64/v8"),
        ([entry("amd64", "v3")], "x86_64", "linux/amd64/v3"),  # may use instructions we lack
        ([entry("arm", "v7")], "armv6l", "linux/arm/v7"),
        ([entry("amd64", os_name="windows")], "x86_64", "windows/amd64"),
        ([], "x86_64", "no platform at all"),
    ],
)
def test_no_entry_for_this_host_is_refused_naming_what_is_offered(
    entries: list[dict[str, object]], machine: str, offers: str
) -> None:
    with pytest.raises(
        PlatformError, match="has no manifest for this host's platform .* offers: " + offers
    ):
        select_manifest(index(*entries), host_platform(machine))


def test_a_config_for_another_platform_is_refused() -> None:
    check_config_platform(HOST.spec, HOST)
    foreign = PlatformSpec("linux", FOREIGN_ARCH)
    with pytest.raises(
        PlatformError,
        match=f"image is built for linux/{FOREIGN_ARCH} \\({FOREIGN_ELF}\\), this host is",
    ):
        check_config_platform(foreign, HOST)
    with pytest.raises(PlatformError, match="built for windows/"):
        check_config_platform(PlatformSpec("windows", HOST.spec.architecture), HOST)


def test_elf_machines_read_from_real_binaries_and_headers() -> None:
    with open("/usr/bin/cat", "rb") as f:
        assert elf_machine(f.read(64)) == HOST_ELF
    assert elf_machine(elf_header("arm64")) == "aarch64"
    assert elf_machine(elf_header("amd64")) == "x86_64"
    assert elf_machine(b"#!/bin/sh\n") is None


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "app").mkdir(parents=True)
    (root / "usr/bin").mkdir(parents=True)
    shutil.copy("/usr/bin/cat", root / "usr/bin/real")
    os.chmod(root / "usr/bin/real", 0o755)
    return root


def put(root: Path, rel: str, data: bytes, mode: int = 0o755) -> None:
    (root / rel).write_bytes(data)
    os.chmod(root / rel, mode)


def test_a_native_entrypoint_passes(rootfs: Path) -> None:
    check_entrypoint(rootfs, "/usr/bin/real", HOST)


def test_a_foreign_elf_entrypoint_is_refused_naming_both_machines(rootfs: Path) -> None:
    put(rootfs, "app/server", elf_header(FOREIGN_ARCH) + b"\0" * 100)
    with pytest.raises(
        PlatformError, match=f"image is built for {FOREIGN_ELF}, this host is {HOST_ELF}"
    ):
        check_entrypoint(rootfs, "/app/server", HOST)


def test_links_are_followed_inside_the_image_only(rootfs: Path) -> None:
    os.symlink("/usr/bin/real", rootfs / "app/server")  # absolute: from the image's root
    os.symlink("../usr/bin", rootfs / "app/bin")
    check_entrypoint(rootfs, "/app/server", HOST)
    check_entrypoint(rootfs, "/app/bin/real", HOST)
    # /usr/bin/ls exists on the host but not in the image: it must not be found.
    os.symlink("/usr/bin/ls", rootfs / "app/hostls")
    with pytest.raises(PlatformError, match="is not in the image"):
        check_entrypoint(rootfs, "/app/hostls", HOST)
    # '..' stops at the image's root, as it does in the jail.
    os.symlink("../../../../../usr/bin/real", rootfs / "app/deep")
    check_entrypoint(rootfs, "/app/deep", HOST)
    os.symlink("loop2", rootfs / "app/loop1")
    os.symlink("loop1", rootfs / "app/loop2")
    with pytest.raises(PlatformError, match="too many levels of links"):
        check_entrypoint(rootfs, "/app/loop1", HOST)


def test_scripts_are_checked_through_their_interpreter(rootfs: Path) -> None:
    put(rootfs, "app/server", b"#!/usr/bin/real -x\nbody\n")
    check_entrypoint(rootfs, "/app/server", HOST)
    put(rootfs, "app/env", b"#!/usr/bin/env real\n")
    shutil.copy("/usr/bin/env", rootfs / "usr/bin/env")
    check_entrypoint(rootfs, "/app/env", HOST)
    put(rootfs, "app/node", b"#!/usr/bin/env node\n")
    with pytest.raises(PlatformError, match="its interpreter node is not in the image"):
        check_entrypoint(rootfs, "/app/node", HOST)
    put(rootfs, "usr/bin/foreign", elf_header(FOREIGN_ARCH))
    put(rootfs, "app/foreign", b"#!/usr/bin/foreign\n")
    with pytest.raises(PlatformError, match=f"built for {FOREIGN_ELF}"):
        check_entrypoint(rootfs, "/app/foreign", HOST)


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda r: None, "is not in the image"),
        (lambda r: put(r, "app/server", b"\x7fELF", 0o644), "is not executable"),
        (lambda r: put(r, "app/server", b"just text"), "neither an ELF executable nor a #! script"),
        (lambda r: (r / "app/server").mkdir(), "not a regular file"),
    ],
)
def test_unusable_entrypoints_are_refused(rootfs: Path, setup: object, message: str) -> None:
    setup(rootfs)  # type: ignore[operator]
    with pytest.raises(PlatformError, match=message):
        check_entrypoint(rootfs, "/app/server", HOST)
