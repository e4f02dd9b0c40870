"""Install an npm package pinned by exact version and SRI integrity, and say how to run it.

Owns one install: ``npm pack`` fetches the tarball of exactly ``identifier@version``, its
sha512 is checked against the spec's integrity (constant time) *before* anything else
happens with it, then ``npm install`` installs that local, verified file into a staging
folder with every lifecycle script disabled (the package's and its dependencies'),
production dependencies only, no audit, no funding calls; the tree npm actually built
(``node_modules/.package-lock.json``) is checked against the spec's lock; the bin the
package declares is found; and the folder is renamed into ``<servers>/<name>/<version>``.
It must never run a script of the package or of a dependency, never install a tarball it
has not verified, never leave a partial install behind, and never hand npm the
gateway's environment (``child_env``: basics only). Blocking (it waits for npm):
call it from a thread.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gigmcp.packages.child_env import child_env
from gigmcp.packages.spec import (
    Installation,
    LaunchCommand,
    PackageInstallError,
    PackageSpec,
    commit,
    existing,
    install_root,
    read_record,
    redact,
    same_hash,
    sri_sha512,
    staging,
)

MAX_ERROR_LINES = 8
# What npm may see of the gateway's environment beyond child_env's basics: a CA bundle
# for a registry behind a private CA. Never the gateway's other variables.
NPM_ENV = ("NODE_EXTRA_CA_CERTS",)


@dataclass(frozen=True, slots=True)
class NpmSource:
    """Where packages come from. The defaults are npm's own (its configured registry and
    cache); tests and operators with a mirror set ``registry`` and ``cache``."""

    registry: str | None = None
    cache: str | None = None
    offline: bool = False  # from the cache only: a miss is an error, never a download
    # Resolve dependency ranges as the registry stood at this instant (npm --before): an
    # install made later picks the same versions, so a lock keeps matching.
    before: str | None = None
    npm: str = "npm"
    node: str = "node"
    timeout: float = 600.0


def _npm_args(source: NpmSource) -> list[str]:
    npm = shutil.which(source.npm)
    if npm is None:
        raise PackageInstallError(f"npm is not installed ({source.npm} not found on PATH)")
    args = [npm]
    if source.registry:
        args.append(f"--registry={source.registry}")
    if source.cache:
        # npm runs in a work folder: a relative cache must still mean the caller's.
        args.append(f"--cache={os.path.abspath(source.cache)}")
    if source.offline:
        args.append("--offline")
    if source.before:
        args.append(f"--before={source.before}")
    # Scripts off on every call (pack runs none for a registry tarball, but a flag costs
    # nothing); no calls home, no log files left in the cache, no colours in errors.
    args += [
        "--ignore-scripts",
        "--no-audit",
        "--no-fund",
        "--no-update-notifier",
        "--no-progress",
        "--color=false",
        "--loglevel=error",
        "--logs-max=0",
    ]
    return args


def _run(args: list[str], cwd: Path, source: NpmSource, doing: str) -> str:
    try:
        done = subprocess.run(
            args,
            cwd=cwd,
            env=child_env(NPM_ENV),
            capture_output=True,
            text=True,
            timeout=source.timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise PackageInstallError(
            f"{doing}: npm did not finish within {source.timeout:.0f} s"
        ) from exc
    if done.returncode != 0:
        lines = [
            line.removeprefix("npm error").removeprefix("npm ERR!").strip()
            for line in done.stderr.splitlines()
            if line.startswith(("npm error", "npm ERR!"))
        ]
        # npm's pointers to its log files (which are off) say nothing about the failure.
        noise = ("complete log of this run", "Log files were not written")
        lines = [line for line in lines if line and not any(n in line for n in noise)]
        detail = "; ".join(lines[:MAX_ERROR_LINES]) or done.stderr.strip()[-500:] or "no output"
        raise PackageInstallError(f"{doing}: npm failed: {redact(detail)}")
    return done.stdout


def _fetch(spec: PackageSpec, download: Path, source: NpmSource) -> Path:
    ref = spec.ref
    out = _run(
        # --prefix here too: npm reads a project's .npmrc from its prefix, and without one
        # it would look for a project in the folders above the servers folder.
        [
            *_npm_args(source),
            "pack",
            ref,
            f"--prefix={download}",
            f"--pack-destination={download}",
            "--json",
        ],
        download,
        source,
        f"cannot fetch {ref}",
    )
    try:
        packed = json.loads(out)
        filename = packed[0]["filename"]
    except (ValueError, LookupError, TypeError) as exc:
        raise PackageInstallError(
            f"cannot fetch {ref}: npm pack said something unexpected"
        ) from exc
    tarball = download / os.path.basename(str(filename))
    if not tarball.is_file():
        raise PackageInstallError(f"cannot fetch {ref}: npm pack left no tarball")
    return tarball


def verify_tarball(spec: PackageSpec, tarball: Path) -> None:
    """The tarball's bytes are exactly the ones the spec pins, or nothing is installed."""
    actual = sri_sha512(tarball)
    if not same_hash(spec.integrity, actual):
        raise PackageInstallError(
            f"integrity mismatch for {spec.ref}: expected {spec.integrity}, got {actual}"
        )


def _installed_name(path: str, meta: dict[str, Any]) -> str:
    # An alias (`"x": "npm:real@1"`) is installed under its alias: the lock names the
    # package that was fetched, which the lockfile records as "name".
    name = meta.get("name")
    return name if isinstance(name, str) else path.rsplit("node_modules/", 1)[-1]


def check_tree(spec: PackageSpec, tree: dict[str, Any]) -> None:
    """The installed tree holds the verified package and, when the spec has a lock, only
    dependencies it names, each with the version and integrity it names."""
    packages = tree.get("packages")
    if not isinstance(packages, dict):
        raise PackageInstallError(
            f"{spec.ref}: npm wrote no readable lockfile of what it installed"
        )
    main = packages.get(f"node_modules/{spec.identifier}")
    if not isinstance(main, dict):
        raise PackageInstallError(
            f"{spec.ref}: the verified tarball is not the package {spec.identifier}"
        )
    if main.get("version") != spec.version:
        raise PackageInstallError(
            f"{spec.ref}: the verified tarball is version {main.get('version')}, not {spec.version}"
        )
    if not spec.lock:
        return  # npm verified every dependency against the registry's own integrity
    allowed: dict[tuple[str, str], set[str]] = {}
    for entry in spec.lock:
        allowed.setdefault((entry.identifier, entry.version), set()).add(entry.integrity)
    problems: list[str] = []
    for path, meta in sorted(packages.items()):
        if path in ("", f"node_modules/{spec.identifier}") or not isinstance(meta, dict):
            continue
        name = _installed_name(path, meta)
        version, integrity = meta.get("version"), meta.get("integrity")
        if meta.get("link"):
            problems.append(f"{name} is a link, not a package from the registry")
        elif meta.get("inBundle"):
            continue  # shipped inside a tarball whose integrity was checked
        elif (name, version) not in allowed:
            problems.append(f"{name}@{version} is not in the lock")
        elif not isinstance(integrity, str) or not any(
            same_hash(h, integrity) for h in allowed[(name, str(version))]
        ):
            expected = ", ".join(sorted(allowed[(name, str(version))]))
            problems.append(
                f"integrity mismatch for {name}@{version}: expected {expected}, got {integrity}"
            )
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise PackageInstallError(
            f"dependencies of {spec.ref} do not match its lock: {'; '.join(problems[:5])}{more}"
        )


def find_bin(package_dir: Path, spec: PackageSpec, bin_name: str | None = None) -> Path:
    """The file the package's ``bin`` names, which must lie inside the package."""
    try:
        meta = json.loads((package_dir / "package.json").read_text())
    except (OSError, ValueError) as exc:
        raise PackageInstallError(f"{spec.ref}: its package.json cannot be read") from exc
    bins = meta.get("bin") if isinstance(meta, dict) else None
    unscoped = spec.identifier.rsplit("/", 1)[-1]
    if isinstance(bins, str):
        bins = {unscoped: bins}
    if not isinstance(bins, dict) or not bins:
        raise PackageInstallError(f"{spec.ref} declares no bin in its package.json: nothing to run")
    if bin_name is not None:
        if bin_name not in bins:
            raise PackageInstallError(
                f"{spec.ref} has no bin named {bin_name!r} (it has: {', '.join(sorted(bins))})"
            )
        chosen = bin_name
    elif len(bins) == 1:
        chosen = next(iter(bins))
    elif unscoped in bins:
        chosen = unscoped
    else:
        raise PackageInstallError(
            f"{spec.ref} declares several bins ({', '.join(sorted(bins))}): name the one to run"
        )
    target = bins[chosen]
    base = package_dir.resolve()
    path = (base / str(target)).resolve() if isinstance(target, str) else base
    if not isinstance(target, str) or not path.is_relative_to(base) or not path.is_file():
        raise PackageInstallError(
            f"{spec.ref}: its bin {chosen!r} is not a file inside the package"
        )
    return path


def launch_command(root: Path, source: NpmSource | None = None) -> LaunchCommand:
    """How to start the install at ``root``: the host's Node running the package's bin,
    both by absolute path (the jail binds Node and the install read-only)."""
    record = read_record(root)
    if record is None or record.get("spec", {}).get("registry_type") != "npm":
        raise PackageInstallError(f"{root} is not an npm install made by gigmcp")
    node_name = (source or NpmSource()).node
    node = shutil.which(node_name)
    if node is None:
        raise PackageInstallError(f"Node.js is not installed ({node_name} not found on PATH)")
    return LaunchCommand((os.path.abspath(node), str(root / record["entrypoint"])))


def install(
    spec: PackageSpec,
    servers_dir: Path,
    name: str,
    source: NpmSource | None = None,
    bin_name: str | None = None,
) -> Installation:
    """Install ``spec`` as server ``name`` (idempotent: the same spec already installed
    is returned as it is). Raises :class:`PackageInstallError`, leaving nothing behind."""
    source = source or NpmSource()
    if spec.registry_type != "npm":
        raise PackageInstallError(f"{spec.ref} is a PyPI package, not an npm one")
    final = install_root(servers_dir, name, spec.version)
    if existing(final, spec) is None:
        with staging(servers_dir, name, spec.version) as work:
            download, root = work / "download", work / "root"
            download.mkdir()
            root.mkdir()
            tarball = _fetch(spec, download, source)
            verify_tarball(spec, tarball)
            # A project of our own (nameless, so no package can clash with its name): npm
            # installs into this folder and nowhere else.
            (root / "package.json").write_text('{"private": true}\n')
            _run(
                [*_npm_args(source), "install", str(tarball), f"--prefix={root}", "--omit=dev"],
                work,
                source,
                f"cannot install {spec.ref}",
            )
            try:
                tree = json.loads((root / "node_modules" / ".package-lock.json").read_text())
            except (OSError, ValueError) as exc:
                raise PackageInstallError(
                    f"{spec.ref}: npm left no record of what it installed"
                ) from exc
            check_tree(spec, tree)
            package_dir = root / "node_modules" / spec.identifier
            entry = find_bin(package_dir, spec, bin_name)
            commit(root, final, spec, str(entry.relative_to(root.resolve())), {})
    record = read_record(final) or {}
    return Installation(
        spec, final, final / str(record.get("entrypoint")), launch_command(final, source)
    )
