"""Servers from the signed registry: install, upgrade, consent, uninstall.

Install is two steps so that any skin can ask for consent its own way: fetch and verify
the index (:func:`fetch_index`), :func:`plan_install` resolves ``name``,
``name@version`` or ``sha256:<digest>`` and says what consent is asked for (tier, hosts,
each credential and how it is injected, tools and their defaults), then
:func:`install` asks the caller's ``consent`` callback and only after a yes fetches and
verifies the package, lays it out and records the consented runtime hash. Upgrade: the
same for the newest version (or a given one); a runtime change waits for consent
(:func:`pending_upgrade` shows it, :func:`apply_upgrade` applies exactly what was shown),
a presentation-only change applies at once. Uninstall removes the row (assignments,
tool selections, pins, credential values) and the files no other server uses.

Owns these flows and turning the installer's and the registry's failures into the one
error tree. It must never install anything without consent, or before its digest or
hashes were verified.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import Engine

from gigmcp import errors
from gigmcp.config import Settings
from gigmcp.control import install_rows, rows, users
from gigmcp.control.actor import Actor
from gigmcp.control.servers import SERVER_NAME
from gigmcp.errors import Conflict, ControlError, GigError, Invalid
from gigmcp.installer import consent as consent_text
from gigmcp.installer.index_fetch import Accepted, Fetched, IndexFetchError, RegistrySource
from gigmcp.installer.index_fetch import fetch_index as fetch_signed_index
from gigmcp.installer.materialize import (
    Target,
    consent_hash,
    egress_grant,
    kind_of,
    materialize,
    package_label,
    remove_files,
)
from gigmcp.installer.runnable import Runnable
from gigmcp.netpolicy.policy import DEFAULT_PORTS
from gigmcp.packages import npm, pypi
from gigmcp.packages.oci.distribution import ClientOptions
from gigmcp.packages.oci.pull import PullOptions
from gigmcp.registry import gostruct
from gigmcp.registry.errors import RegistryDataError
from gigmcp.registry.hashing import manifest_hash
from gigmcp.registry.manifest import Manifest
from gigmcp.store import index_state

# What a refused or failed materialisation raises (every error of the gateway is on the
# tree; the file system's are not); each becomes one InstallError.
_INSTALL_ERRORS = (GigError, OSError)

# Asked with the lines to show; True is consent.
Consent = Callable[[Sequence[str]], bool]
# Called with (bytes fetched, bytes in all) while a package downloads.
Progress = Callable[[int, int], None]


class ConsentRefused(ControlError):
    """The consent callback said no: nothing was fetched or written."""


@dataclass(frozen=True, slots=True)
class InstallPlan:
    """What :func:`install` will install, and the consent it asks for."""

    server: str
    ref: str
    kind: str
    consent: tuple[str, ...]
    manifest: Manifest
    toolspec: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class UpgradePlan:
    server: str
    ref: str
    up_to_date: bool
    manifest: Manifest
    toolspec: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class PendingUpgrade:
    """An upgrade waiting for consent: what it asks, and the runtime hash it is for."""

    server: str
    name: str
    version: str
    runtime_hash: str
    consent: tuple[str, ...]


def target(settings: Settings) -> Target:
    """Where packages land and where they come from, as the operator configured."""
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


def registry_source(settings: Settings) -> RegistrySource:
    if not settings.registry_index_url or not settings.registry_pubkey:
        raise errors.ConfigurationError(
            "no registry configured: set GIG_REGISTRY_INDEX_URL (https:// or file://) and "
            "GIG_REGISTRY_PUBKEY (the registry's ed25519 public key, hex)"
        )
    return RegistrySource(
        settings.registry_index_url,
        settings.registry_pubkey,
        settings.data_dir / "registry",
        settings.registry_max_age,
        settings.registry_refuse_stale,
    )


async def fetch_index(engine: Engine, actor: Actor, source: RegistrySource) -> Fetched:
    """The signed index, verified, and never older than the last one accepted (which a
    freshly fetched index replaces). Its ``warnings`` are for the actor to read."""
    last = index_state.last_accepted(engine)
    try:
        fetched = await fetch_signed_index(source, Accepted(*last) if last else None)
    except IndexFetchError as exc:
        raise errors.RegistryError(str(exc)) from exc
    if not fetched.from_cache:
        index_state.accept(engine, fetched.generated, fetched.sha256)
    return fetched


def plan_install(
    engine: Engine, actor: Actor, fetched: Fetched, ref: str, name: str | None = None
) -> InstallPlan:
    """Resolve ``ref`` and check that it can be installed as ``name`` (default: the
    manifest's), before anything is asked or fetched. Installing is an administrator's
    business (the catalog is everyone's)."""
    users.require_admin(engine, actor)
    rows.writable(actor)
    manifest, toolspec = _resolve(fetched, ref)
    kind = kind_of(manifest, toolspec)  # raises the tree's InstallError
    # Consent to something that cannot be installed under this name is wasted, and
    # nothing may be fetched for it.
    server = name or manifest.name
    if not SERVER_NAME.match(server):
        raise Invalid(f"invalid server name {server!r}: a-z, 0-9 and '-' only")
    if install_rows.exists(engine, server):
        raise Conflict(
            f"a server named {server!r} already exists (use: gigmcp server upgrade {server})"
        )
    plain = gostruct.to_plain(manifest)
    ports = egress_grant(manifest)["ports"]  # what the row will hold, shown as it is
    lines = consent_text.describe(plain, kind, package_label(manifest, kind), ports)
    return InstallPlan(server, manifest.ref, kind, tuple(lines), manifest, toolspec)


async def install(
    engine: Engine,
    actor: Actor,
    where: Target,
    plan: InstallPlan,
    consent: Consent,
    progress: Progress | None = None,
) -> None:
    """Ask ``consent`` with the plan's lines; on a yes, install. A no raises
    :class:`ConsentRefused` with nothing fetched or written."""
    if not consent(plan.consent):
        raise ConsentRefused("not installed: consent refused")
    run = await _materialize(where, plan.manifest, plan.toolspec, plan.server, progress)
    try:
        install_rows.install(engine, actor, plan.server, run)
    except GigError:
        remove_files(run.origin, where.packages_dir, install_rows.paths_in_use(engine))
        raise


async def plan_from_registry(
    engine: Engine,
    actor: Actor,
    source: RegistrySource | None,
    ref: str,
    name: str | None = None,
) -> InstallPlan:
    """:func:`plan_install` on the index fetched now, for an administrator (checked
    before anything is fetched, or the configuration is even looked at)."""
    users.require_admin(engine, actor)
    rows.writable(actor)
    if source is None:
        raise errors.ConfigurationError(
            "no registry configured (GIG_REGISTRY_INDEX_URL and GIG_REGISTRY_PUBKEY)"
        )
    return plan_install(engine, actor, await fetch_index(engine, actor, source), ref, name)


def consent_digest(plan: InstallPlan) -> str:
    """What a consent was given to, as one value: the entry, the name it lands under,
    its kind and every line the consent text showed. A page that showed the text sends
    it back to :func:`install_agreed`; if anything changed meanwhile, it differs."""
    text = "\n".join((plan.ref, plan.server, plan.kind, *plan.consent))
    return hashlib.sha256(text.encode()).hexdigest()


async def install_agreed(
    engine: Engine,
    actor: Actor,
    where: Target,
    plan: InstallPlan,
    agreed_digest: str,
    progress: Progress | None = None,
) -> None:
    """The second of two steps: install ``plan`` only if it is what the consent with
    ``agreed_digest`` was given to; a changed index or entry is refused with nothing
    fetched."""
    if not hmac.compare_digest(consent_digest(plan).encode(), agreed_digest.encode()):
        raise Conflict("what would be installed changed since the consent was shown: read it again")
    await install(engine, actor, where, plan, lambda _lines: True, progress)


def registry_name(engine: Engine, actor: Actor, server: str) -> str:
    """The registry name an installed server came from (before fetching an index to
    upgrade it)."""
    origin = install_rows.origin_of(engine, actor, server)
    if origin is None:
        raise Invalid(f"server {server!r} was not installed from the registry")
    return str(origin["name"])


def plan_upgrade(
    engine: Engine, actor: Actor, fetched: Fetched, server: str, to: str | None = None
) -> UpgradePlan:
    """The version ``server`` would move to: ``to``, or the newest."""
    current = install_rows.origin_of(engine, actor, server)
    if current is None:
        raise Invalid(f"server {server!r} was not installed from the registry")
    manifest, toolspec = _resolve(fetched, f"{current['name']}@{to}" if to else current["name"])
    same = _hashes(manifest, toolspec) == (
        current.get("manifest_hash"),
        current.get("runtime_hash"),
    )
    return UpgradePlan(server, manifest.ref, same, manifest, toolspec)


async def upgrade(
    engine: Engine,
    actor: Actor,
    where: Target,
    plan: UpgradePlan,
    progress: Progress | None = None,
) -> Literal["applied", "pending"]:
    """Fetch and lay out the new version; apply it if its runtime was consented already,
    else leave it pending (see :func:`pending_upgrade`)."""
    run = await _materialize(where, plan.manifest, plan.toolspec, plan.server, progress)
    return install_rows.upgrade(engine, actor, plan.server, run)


def pending_upgrade(engine: Engine, actor: Actor, server: str) -> PendingUpgrade:
    staged = install_rows.pending(engine, actor, server)
    if staged is None:
        raise Conflict(f"server {server!r} has no upgrade waiting for consent")
    origin = staged["origin"]
    ports = (staged.get("egress") or {}).get("ports") or DEFAULT_PORTS  # the grant consented to
    lines = consent_text.describe(
        origin["manifest"], origin["kind"], origin.get("package", ""), ports
    )
    return PendingUpgrade(
        server, origin["name"], origin["version"], origin["runtime_hash"], tuple(lines)
    )


def apply_upgrade(engine: Engine, actor: Actor, packages_dir: Path, agreed: PendingUpgrade) -> None:
    """Apply the pending upgrade that was shown (refused if it changed since)."""
    old = install_rows.consent(engine, actor, agreed.server, agreed.runtime_hash)
    # The version it replaces: its files go, unless another server still uses them.
    remove_files(old, packages_dir, install_rows.paths_in_use(engine))


def uninstall(engine: Engine, actor: Actor, packages_dir: Path, server: str) -> None:
    """Remove an installed server: its row, assignments, pins, credential values, and
    the files no other server uses."""
    users.require_admin(engine, actor)
    origin = install_rows.uninstall(engine, actor, server)
    if origin is not None:
        remove_files(origin, packages_dir, install_rows.paths_in_use(engine))


def _resolve(fetched: Fetched, ref: str) -> tuple[Manifest, dict[str, Any] | None]:
    try:
        manifest = fetched.index.resolve(ref)
    except RegistryDataError as exc:
        raise errors.RegistryError(str(exc)) from exc
    return manifest, fetched.index.toolspec(manifest)


def _hashes(manifest: Manifest, toolspec: dict[str, Any] | None) -> tuple[str, str]:
    """The manifest's hash, and what consent is given to."""
    return manifest_hash(manifest), consent_hash(manifest, toolspec)


async def _materialize(
    where: Target,
    manifest: Manifest,
    toolspec: dict[str, Any] | None,
    server: str,
    progress: Progress | None,
) -> Runnable:
    try:
        return await materialize(
            manifest, toolspec, _hashes(manifest, toolspec), where, server, progress
        )
    except _INSTALL_ERRORS as exc:
        raise errors.InstallError(f"{manifest.ref}: not installed: {exc}") from exc
