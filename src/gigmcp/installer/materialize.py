"""From a verified manifest to something the gateway can start, for each package kind.

- ``oci``: the image pinned by ``image.digest``, pulled, verified and extracted
  (``packages/oci``); the entrypoint runs with the rootfs as the jail's ``/``.
- ``npm`` / ``pypi``: the manifest's ``packages`` entry (exact version, integrity, lock),
  installed with its hashes checked (``packages/npm``, ``packages/pypi``); run with the
  host's Node or the system Python bound read-only.
- ``toolspec``: a ``toolpack`` entry whose toolspec the signed index carries; the
  project's engine is laid out with it (``installer/toolspec.py``).

Each install lands in its own folder under ``GIG_PACKAGES_DIR`` and only once verified.
Owns choosing the kind and building the server row's fields (command, working
directory, egress, credentials, origin). It must never return a command for anything
whose digest or hash it did not verify.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from gigmcp.core.definitions import parse_credentials, parse_egress
from gigmcp.errors import InstallError
from gigmcp.installer import toolspec as toolspec_layout
from gigmcp.installer.runnable import Runnable
from gigmcp.netpolicy.policy import DEFAULT_PORTS
from gigmcp.packages import npm, pypi
from gigmcp.packages.oci.cache import ImageCache
from gigmcp.packages.oci.pull import PullOptions, install_image
from gigmcp.packages.spec import LockEntry, PackageSpec
from gigmcp.registry import gostruct
from gigmcp.registry.hashing import runtime_hash
from gigmcp.registry.manifest import Credential, Manifest

Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class Target:
    """Where packages go and where they come from."""

    packages_dir: Path
    oci: PullOptions = field(default_factory=PullOptions)
    npm: npm.NpmSource = field(default_factory=npm.NpmSource)
    pypi: pypi.PypiSource = field(default_factory=pypi.PypiSource)


def kind_of(manifest: Manifest, toolspec: dict[str, Any] | None) -> str:
    if manifest.packages:
        return manifest.packages[0].registry_type
    if manifest.image.builder == "toolpack" and toolspec is not None:
        return "toolspec"
    if manifest.image.builder in ("node", "python") or not manifest.image.digest:
        raise InstallError(
            f"{manifest.ref}: no package this gateway can install (builder "
            f"{manifest.image.builder!r} needs a packages entry)"
        )
    return "oci"


def consent_hash(manifest: Manifest, toolspec: dict[str, Any] | None) -> str:
    """What consent is given to: the manifest's runtime hash, and for a toolspec server
    the spec too (the reference bakes the spec into an image whose digest the runtime
    hash leaves out; here the spec itself decides which requests are made)."""
    base = runtime_hash(manifest)
    if toolspec is None:
        return base
    spec = json.dumps(toolspec, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(base.encode() + b"\0" + hashlib.sha256(spec).digest()).hexdigest()


def package_label(manifest: Manifest, kind: str) -> str:
    if kind in ("npm", "pypi"):
        p = manifest.packages[0]
        return f"{p.identifier}=={p.version} ({p.integrity[:19]}…)"
    if kind == "toolspec":
        return "the gateway's toolspec engine"
    return f"{manifest.image.ref}@{manifest.image.digest}"


def credential_json(cred: Credential) -> dict[str, Any]:
    inject = (
        {"env": cred.inject.env}
        if cred.inject.env
        else {"header": cred.inject.header, "format": cred.inject.format}
    )
    out: dict[str, Any] = {
        "id": cred.id,
        "type": cred.type,
        "provider": cred.provider,
        "inject": inject,
    }
    if cred.scopes:
        out["scopes"] = list(cred.scopes)
    if cred.vendor:
        # Which connected account supplies the token: not in the runtime hash (the
        # reference's rule), so a change of it waits for consent by its own check
        # (control/install_rows.py).
        out["vendor"] = cred.vendor
    return out


async def materialize(
    manifest: Manifest,
    toolspec: dict[str, Any] | None,
    hashes: tuple[str, str],
    target: Target,
    server: str,
    progress: Progress | None = None,
) -> Runnable:
    """Install ``manifest``'s package (verified) for server ``server`` and describe how
    to run it. ``hashes``: its manifest hash and consented runtime hash. npm, PyPI and
    toolspec installs get a folder per server and runtime (an upgrade waiting for
    consent never touches the running one, and uninstalling one server never removes
    another's files); images are shared by digest."""
    kind = kind_of(manifest, toolspec)
    egress = egress_grant(manifest)
    creds = [credential_json(c) for c in manifest.credentials]
    origin: dict[str, Any] = {
        "kind": kind,
        "name": manifest.name,
        "version": manifest.version,
        "manifest": gostruct.to_plain(manifest),
        "manifest_hash": hashes[0],
        "runtime_hash": hashes[1],
        "package": package_label(manifest, kind),
    }
    command: list[str]
    cwd: str | None = None
    if kind == "oci":
        cache = ImageCache(target.packages_dir / "oci")
        rootfs = await install_image(
            manifest.image.ref,
            manifest.image.digest,
            manifest.image.entrypoint,
            cache,
            options=target.oci,
            progress=progress,
        )
        command = [manifest.image.entrypoint]
        origin["rootfs"] = str(rootfs)
        origin["path"] = str(rootfs)
    elif kind in ("npm", "pypi"):
        spec = package_spec(manifest)
        home = target.packages_dir / kind / server / hashes[1][:16]
        try:
            if kind == "npm":
                inst = await asyncio.to_thread(npm.install, spec, home, manifest.name, target.npm)
            else:
                inst = await asyncio.to_thread(pypi.install, spec, home, manifest.name, target.pypi)
        except BaseException:
            # Nothing half-installed: not even the empty folders made for it.
            _prune(home, target.packages_dir / kind)
            raise
        package = manifest.packages[0]
        command = [*inst.command.argv, *package.package_arguments]
        cwd = inst.command.cwd
        origin["path"] = str(home)
    else:
        assert toolspec is not None
        defs = parse_credentials(creds, parse_egress(egress))
        # One folder per server and runtime: an upgrade waiting for consent never
        # touches the running one.
        folder = target.packages_dir / "toolspec" / server / f"{manifest.version}-{hashes[1][:16]}"
        command, cwd = await asyncio.to_thread(toolspec_layout.lay_out, folder, toolspec, defs)
        origin["path"] = cwd
    return Runnable(command, cwd, {}, egress, creds, origin)


def egress_grant(manifest: Manifest) -> dict[str, Any]:
    """What a registry server may reach: its manifest's hosts, on HTTPS only. The
    registry's schema names hosts, never ports, so a registry server never gets plain
    HTTP (80), where anyone on the path reads and answers its requests, nor any port
    the operator has to allow (the consent text says the same: ``consent.describe``)."""
    return {"hosts": list(manifest.entitlements.egress), "ports": list(DEFAULT_PORTS)}


def package_spec(manifest: Manifest) -> PackageSpec:
    p = manifest.packages[0]
    lock = tuple(LockEntry(e.identifier, e.version, e.integrity) for e in p.lock or ())
    if p.registry_type not in ("npm", "pypi"):
        raise InstallError(f"{manifest.ref}: unknown package registry {p.registry_type!r}")
    kind: Literal["npm", "pypi"] = "npm" if p.registry_type == "npm" else "pypi"
    return PackageSpec(kind, p.identifier, p.version, p.integrity, lock)


def _prune(folder: Path, stop: Path) -> None:
    while folder != stop and stop in folder.parents:
        try:
            folder.rmdir()
        except FileNotFoundError:
            pass  # never made: its parent may still be
        except OSError:
            return  # not empty: another install lives here
        folder = folder.parent


def remove_files(
    origin: dict[str, Any], packages_dir: Path, still_used: Collection[str] = ()
) -> None:
    """Delete what an uninstalled server's origin points to (only under packages_dir,
    and not a path another server's origin still names: images are shared by digest)."""
    path = origin.get("path")
    if path in still_used:
        return
    if not isinstance(path, str):
        return
    resolved = Path(path).resolve()
    root = packages_dir.resolve()
    if root not in resolved.parents:
        return  # never delete outside the packages folder, whatever a row says
    if origin.get("kind") == "oci":
        digest = (origin.get("manifest") or {}).get("image", {}).get("digest")
        if isinstance(digest, str):
            ImageCache(packages_dir / "oci").remove(digest)
        return
    shutil.rmtree(resolved, ignore_errors=True)
    _prune(resolved.parent, root)
