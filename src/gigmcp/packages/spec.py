"""What a package install takes and gives, and how it lands on disk.

Owns the input of the npm and PyPI installers (:class:`PackageSpec`, :class:`LockEntry`,
validated here so that nothing downstream ever puts an unchecked name, version or hash on
a command line, in a requirements file or in a path), their output (:class:`Installation`,
:class:`LaunchCommand`), their errors, and the one on-disk rule both follow: build in a
staging folder next to the final one, rename it into place only once complete and
verified, and leave nothing behind otherwise. It must never run a package's code, never
accept a version range or a tag where an exact version is due, and never put a secret
in an error (hashes are not secrets; credentials in a registry URL are).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import re
import secrets
import shutil
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from gigmcp import filemodes
from gigmcp.errors import InstallError

RegistryType = Literal["npm", "pypi"]

# npm: lowercase, optionally scoped; no leading '.' or '_' (npm refuses those names too).
NPM_NAME = re.compile(r"^(?:@[a-z0-9][a-z0-9._~-]*/)?[a-z0-9][a-z0-9._~-]*$")
# An exact semver: a range, a tag or a URL would let the registry choose what runs.
NPM_VERSION = re.compile(
    r"^(?:0|[1-9]\d*)\.(?:0|[1-9]\d*)\.(?:0|[1-9]\d*)"
    r"(?:-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$"
)
NPM_INTEGRITY = re.compile(r"^sha512-[A-Za-z0-9+/]{86}==$")
# PEP 508 names; PEP 440 public versions (no local part: an index never serves one).
PYPI_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?$")
PYPI_VERSION = re.compile(
    r"^(?:[0-9]+!)?[0-9]+(?:\.[0-9]+)*(?:(?:a|b|rc)[0-9]+)?(?:\.post[0-9]+)?(?:\.dev[0-9]+)?$"
)
PYPI_INTEGRITY = re.compile(r"^sha256:[0-9a-f]{64}$")
# Server names as the registry's manifests spell them; used as a folder name.
SERVER_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
MAX_IDENTIFIER = 214  # npm's own limit, generous for PyPI
RECORD = "gigmcp-install.json"
STAGING_PREFIX = ".staging-"


class SpecError(InstallError):
    """A package spec that cannot be installed as written (the message names the field)."""


class PackageInstallError(InstallError):
    """An install that was refused or failed; nothing of it is left on disk."""


def _check(registry_type: str, identifier: str, version: str, integrity: str, what: str) -> None:
    if registry_type == "npm":
        name_re, version_re, hash_re = NPM_NAME, NPM_VERSION, NPM_INTEGRITY
        hash_form = "sha512-<base64 of 64 bytes> (npm SRI)"
    elif registry_type == "pypi":
        name_re, version_re, hash_re = PYPI_NAME, PYPI_VERSION, PYPI_INTEGRITY
        hash_form = "sha256:<64 lowercase hex digits>"
    else:
        raise SpecError(f"{what}: registry type must be npm or pypi, not {registry_type!r}")
    if len(identifier) > MAX_IDENTIFIER or not name_re.match(identifier):
        raise SpecError(f"{what}: {identifier!r} is not a valid {registry_type} package name")
    if not version_re.match(version):
        raise SpecError(
            f"{what}: version {version!r} of {identifier} is not an exact version "
            "(ranges, tags and URLs are refused: the registry must not choose what runs)"
        )
    if not hash_re.match(integrity):
        raise SpecError(
            f"{what}: integrity of {identifier}@{version} must be {hash_form}, got {integrity!r}"
        )


@dataclass(frozen=True, slots=True)
class LockEntry:
    """One distribution a package may pull in, pinned by the hash of its exact file."""

    identifier: str
    version: str
    integrity: str


@dataclass(frozen=True, slots=True)
class PackageSpec:
    """A package pinned by exact version and integrity hash, with its locked closure."""

    registry_type: RegistryType
    identifier: str
    version: str
    integrity: str
    lock: tuple[LockEntry, ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        _check(self.registry_type, self.identifier, self.version, self.integrity, "package")
        for entry in self.lock:
            if not isinstance(entry, LockEntry):
                raise SpecError(f"lock of {self.identifier}: entries must be LockEntry")
            _check(self.registry_type, entry.identifier, entry.version, entry.integrity, "lock")

    @property
    def ref(self) -> str:
        """How the package is named in messages: ``pkg@1.2.3`` or ``pkg==1.2.3``."""
        sep = "==" if self.registry_type == "pypi" else "@"
        return f"{self.identifier}{sep}{self.version}"

    def record(self) -> dict[str, Any]:
        return {
            "registry_type": self.registry_type,
            "identifier": self.identifier,
            "version": self.version,
            "integrity": self.integrity,
            "lock": sorted([e.identifier, e.version, e.integrity] for e in self.lock),
        }


@dataclass(frozen=True, slots=True)
class LaunchCommand:
    """What to start: ``sandbox.runtime.plan(argv, cwd)`` turns it into a jail plan.

    ``cwd`` None means the jail's own writable home: the package is named by absolute
    path, so it needs no working directory of its own (and its folder is read-only)."""

    argv: tuple[str, ...]
    cwd: str | None = None


@dataclass(frozen=True, slots=True)
class Installation:
    """A verified package in its final folder, and how to start it."""

    spec: PackageSpec
    root: Path  # <servers dir>/<name>/<version>
    entrypoint: Path  # the file that is run (a bin script, a console script)
    command: LaunchCommand


# --- hashes -----------------------------------------------------------------------------


def sri_sha512(path: Path) -> str:
    """The npm SRI string of a file's bytes."""
    digest = hashlib.sha512()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return "sha512-" + base64.b64encode(digest.digest()).decode()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return "sha256:" + digest.hexdigest()


def same_hash(expected: str, actual: str) -> bool:
    """Constant-time comparison (a timing side channel must not reveal a prefix)."""
    return hmac.compare_digest(expected.encode(), actual.encode())


_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/@\s]+@")


def redact(text: str) -> str:
    """A tool's output made fit for an error: credentials in URLs removed."""
    return _USERINFO.sub(r"\1***@", text)


# --- the on-disk rule -------------------------------------------------------------------


def install_root(servers_dir: Path, name: str, version: str) -> Path:
    """``<servers dir>/<name>/<version>``, with both parts checked to be one folder name."""
    if not SERVER_NAME.match(name):
        raise SpecError(f"server name {name!r} must be [a-z0-9-], 1 to 64 characters")
    # The version regexes above already forbid '/', '..' and a leading '.'.
    return servers_dir / name / version


def read_record(root: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((root / RECORD).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def existing(root: Path, spec: PackageSpec) -> dict[str, Any] | None:
    """The record of a finished install of exactly this spec at ``root``, if there is one.
    A different package in the same place is refused rather than replaced: an upgrade
    is a new version folder, and an uninstall is explicit."""
    if not root.exists():
        return None
    record = read_record(root)
    if record is None or record.get("spec") != spec.record():
        raise PackageInstallError(
            f"{root} already holds a different install: remove it before installing {spec.ref}"
        )
    return record


@contextlib.contextmanager
def staging(servers_dir: Path, name: str, version: str) -> Iterator[Path]:
    """A private work folder beside the final one (same filesystem, so the final rename is
    atomic). Whatever happens inside, it is gone afterwards; the server's folder too if
    this install created it and nothing else is in it."""
    parent = install_root(servers_dir, name, version).parent
    created = not parent.exists()
    # 0755 whatever the gateway's umask (077): the jails' uids traverse these folders.
    filemodes.public_dirs(parent)
    work = parent / f"{STAGING_PREFIX}{version}-{secrets.token_hex(6)}"
    work.mkdir(mode=0o700)
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if created:
            with contextlib.suppress(OSError):
                parent.rmdir()  # only when empty: a failure leaves no trace


def _publish_modes(root: Path) -> None:
    """Readable by the jails' uids, writable by nobody but the owner: a jail binds the
    folder read-only, and its uid is never the installer's."""
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                continue
            if stat.S_ISDIR(st.st_mode) or st.st_mode & 0o111:
                os.chmod(path, 0o755)  # noqa: S103 - read-only to all but the owner, on purpose
            else:
                os.chmod(path, 0o644)
    os.chmod(root, 0o755)  # noqa: S103 - as above


def commit(
    staged: Path, final: Path, spec: PackageSpec, entrypoint: str, extra: dict[str, Any]
) -> None:
    """Write the install record, open the modes up and rename the staged folder into
    place: the rename is the moment the install exists, all or nothing."""
    record = {"format": 1, "spec": spec.record(), "entrypoint": entrypoint, **extra}
    (staged / RECORD).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    _publish_modes(staged)
    try:
        os.rename(staged, final)
    except OSError as exc:
        # Someone else finished the same install first: theirs stands if it is this spec.
        if final.exists() and existing(final, spec) is not None:
            return
        raise PackageInstallError(
            f"cannot move the install of {spec.ref} into {final}: {exc}"
        ) from exc
