"""``gigmcp server install | upgrade | consent | uninstall``: servers from the signed
registry, with what they are allowed shown and agreed to first.

Install: fetch and verify the index (``installer/index_fetch.py``), resolve ``name``,
``name@version`` or ``sha256:<digest>``, show the consent text (tier, hosts, each
credential and how it is injected, tools and their defaults), and only after a yes (or
``--yes``) fetch and verify the package, lay it out and record the consented runtime
hash. Upgrade: the same for the newest version; a runtime change waits for consent
(``gigmcp server consent NAME``), a presentation-only change applies at once.
Uninstall removes the row (assignments, tool selections, pins, credential values) and
the files.

Owns these commands' dialogue and progress output. It must never install anything
without consent, or before its digest or hashes were verified.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import typer

from gigmcp.cli.main import _store, fail, server_app
from gigmcp.config import Settings
from gigmcp.core.definitions import DefinitionError
from gigmcp.installer import consent, index_state, records
from gigmcp.installer.index_fetch import (
    Accepted,
    Fetched,
    IndexFetchError,
    RegistrySource,
    fetch_index,
)
from gigmcp.installer.materialize import (
    InstallError,
    Target,
    consent_hash,
    egress_grant,
    kind_of,
    materialize,
    package_label,
)
from gigmcp.installer.materialize import remove_files as remove_package_files
from gigmcp.netpolicy.policy import DEFAULT_PORTS
from gigmcp.packages import npm, pypi
from gigmcp.packages.oci.distribution import ClientOptions
from gigmcp.packages.oci.errors import ImageError
from gigmcp.packages.oci.pull import PullOptions
from gigmcp.packages.spec import InstallError as PackageInstallError
from gigmcp.packages.spec import SpecError
from gigmcp.registry import gostruct
from gigmcp.registry.errors import RegistryError
from gigmcp.registry.hashing import manifest_hash
from gigmcp.registry.manifest import Manifest
from gigmcp.store.admin import SERVER_NAME, AdminError

# What a refused or failed install raises; each becomes one clear line, never a traceback.
INSTALL_ERRORS = (
    InstallError,
    ImageError,
    PackageInstallError,
    SpecError,
    RegistryError,
    DefinitionError,
    OSError,
)


def target(settings: Settings) -> Target:
    return Target(
        settings.packages_dir,
        oci=PullOptions(
            client=ClientOptions(plain_http_registries=frozenset(settings.oci_plain_http))
        ),
        npm=npm.NpmSource(
            registry=settings.npm_registry,
            cache=str(settings.npm_cache) if settings.npm_cache else None,
            offline=settings.npm_offline,
        ),
        pypi=pypi.PypiSource(
            index_url=settings.pypi_index_url,
            find_links=(str(settings.pypi_find_links),) if settings.pypi_find_links else (),
            no_index=settings.pypi_find_links is not None,
        ),
    )


def fetch(settings: Settings, engine: Any) -> Fetched:
    if not settings.registry_index_url or not settings.registry_pubkey:
        fail(
            "no registry configured: set GIG_REGISTRY_INDEX_URL (https:// or file://) and "
            "GIG_REGISTRY_PUBKEY (the registry's ed25519 public key, hex)",
            2,
        )
    source = RegistrySource(
        settings.registry_index_url,
        settings.registry_pubkey,
        settings.data_dir / "registry",
        settings.registry_max_age,
        settings.registry_refuse_stale,
    )
    last = index_state.last_accepted(engine)
    try:
        fetched = asyncio.run(fetch_index(source, Accepted(*last) if last else None))
    except IndexFetchError as exc:
        fail(str(exc))
    for warning in fetched.warnings:
        typer.echo(f"gigmcp: warning: {warning}", err=True)
    if not fetched.from_cache:
        index_state.accept(engine, fetched.generated, fetched.sha256)
    return fetched


def _resolve(fetched: Fetched, ref: str) -> tuple[Manifest, dict[str, Any] | None]:
    try:
        manifest = fetched.index.resolve(ref)
    except RegistryError as exc:
        fail(str(exc))
    return manifest, fetched.index.toolspec(manifest)


def _agree(lines: list[str], yes: bool, question: str) -> None:
    for line in lines:
        typer.echo(line, err=True)
    if yes:
        return
    if not sys.stdin.isatty():
        fail("consent needed: read the above, then run again with --yes", 2)
    if not typer.confirm(question, default=False, err=True):
        fail("not installed: consent refused", 1)


def _progress() -> Any:
    last = [-1]

    def report(done: int, total: int) -> None:
        pct = int(done * 100 / total) if total else 100
        if pct // 10 != last[0] // 10:
            last[0] = pct
            typer.echo(f"  fetched {done // 1024} KiB of {total // 1024} KiB ({pct}%)", err=True)

    return report


def _hashes(manifest: Manifest, toolspec: dict[str, Any] | None) -> tuple[str, str]:
    """The manifest's hash, and what consent is given to."""
    return manifest_hash(manifest), consent_hash(manifest, toolspec)


def _materialize(
    settings: Settings,
    manifest: Manifest,
    toolspec: dict[str, Any] | None,
    server: str,
    hashes: tuple[str, str],
) -> records.Runnable:
    try:
        return asyncio.run(
            materialize(manifest, toolspec, hashes, target(settings), server, _progress())
        )
    except INSTALL_ERRORS as exc:
        fail(f"{manifest.ref}: not installed: {exc}")


@server_app.command("install")
def server_install(
    ref: str = typer.Argument(..., help="name, name@version or sha256:<image digest>"),
    name: str | None = typer.Option(None, "--name", help="Server name (default: the manifest's)."),
    yes: bool = typer.Option(False, "--yes", help="Consent without asking (automation)."),
) -> None:
    """Install a server from the signed registry, after showing what it may do."""
    settings, engine, uid = _store()
    fetched = fetch(settings, engine)
    manifest, toolspec = _resolve(fetched, ref)
    try:
        kind = kind_of(manifest, toolspec)
    except InstallError as exc:
        fail(str(exc))
    # Before asking: consent to something that cannot be installed under this name is
    # wasted, and nothing may be fetched for it.
    server = name or manifest.name
    if not SERVER_NAME.match(server):
        fail(f"invalid server name {server!r}: a-z, 0-9 and '-' only", 2)
    if records.exists(engine, server):
        fail(f"a server named {server!r} already exists (use: gigmcp server upgrade {server})")
    plain = gostruct.to_plain(manifest)
    ports = egress_grant(manifest)["ports"]  # what the row will hold, shown as it is
    _agree(consent.describe(plain, kind, package_label(manifest, kind), ports), yes, "Install it?")
    run = _materialize(settings, manifest, toolspec, server, _hashes(manifest, toolspec))
    try:
        records.install(engine, uid, server, run)
    except AdminError as exc:
        remove_package_files(run.origin, settings.packages_dir, records.paths_in_use(engine))
        fail(str(exc))
    typer.echo(
        f"installed {server} ({manifest.ref}, {kind}); assign it with: "
        f"gigmcp profile assign PROFILE {server}",
        err=True,
    )


@server_app.command("upgrade")
def server_upgrade(
    name: str,
    to: str | None = typer.Option(None, "--to", help="A version (default: the latest)."),
    yes: bool = typer.Option(False, "--yes", help="Consent to a runtime change without asking."),
) -> None:
    """Move an installed server to a newer manifest; a runtime change needs consent."""
    settings, engine, uid = _store()
    try:
        current = records.origin_of(engine, name)
    except AdminError as exc:
        fail(str(exc))
    if current is None:
        fail(f"server {name!r} was not installed from the registry")
    fetched = fetch(settings, engine)
    manifest, toolspec = _resolve(fetched, f"{current['name']}@{to}" if to else current["name"])
    hashes = _hashes(manifest, toolspec)
    if hashes == (current.get("manifest_hash"), current.get("runtime_hash")):
        typer.echo(f"{name} is up to date ({manifest.ref})", err=True)
        return
    run = _materialize(settings, manifest, toolspec, name, hashes)
    try:
        outcome = records.upgrade(engine, uid, name, run)
    except AdminError as exc:
        fail(str(exc))
    if outcome == "applied":
        typer.echo(f"{name}: now {manifest.ref} (no change to what it may do)", err=True)
        return
    typer.echo(f"{name}: {manifest.ref} changes what the server may do or runs:", err=True)
    _consent_pending(settings, engine, uid, name, yes)


@server_app.command("consent")
def server_consent(
    name: str, yes: bool = typer.Option(False, "--yes", help="Consent without asking.")
) -> None:
    """Show an upgrade waiting for consent, and apply it once agreed."""
    settings, engine, uid = _store()
    _consent_pending(settings, engine, uid, name, yes)


def _consent_pending(settings: Settings, engine: Any, uid: int, name: str, yes: bool) -> None:
    try:
        staged = records.pending(engine, name)
    except AdminError as exc:
        fail(str(exc))
    if staged is None:
        fail(f"server {name!r} has no upgrade waiting for consent")
    origin = staged["origin"]
    ports = (staged.get("egress") or {}).get("ports") or DEFAULT_PORTS  # the grant consented to
    lines = consent.describe(origin["manifest"], origin["kind"], origin.get("package", ""), ports)
    try:
        _agree(lines, yes, "Apply this upgrade?")
    except typer.Exit:
        typer.echo(f"{name}: the installed version keeps running; the upgrade waits", err=True)
        raise
    try:
        old = records.consent(engine, uid, name, origin["runtime_hash"])
    except AdminError as exc:
        fail(str(exc))
    # The version it replaces: its files go, unless another server still uses them.
    remove_package_files(old, settings.packages_dir, records.paths_in_use(engine))
    typer.echo(f"{name}: upgraded to {origin['name']}@{origin['version']}", err=True)


@server_app.command("uninstall")
def server_uninstall(name: str) -> None:
    """Remove an installed server: its row, assignments, pins, credential values, files."""
    settings, engine, uid = _store()
    try:
        origin = records.uninstall(engine, uid, name)
    except AdminError as exc:
        fail(str(exc))
    if origin is not None:
        remove_package_files(origin, settings.packages_dir, records.paths_in_use(engine))
    typer.echo(f"uninstalled {name}", err=True)
