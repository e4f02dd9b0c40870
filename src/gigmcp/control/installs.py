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

For a skin that cannot hold a callback across two requests (the dashboard), the same
flows in two steps: :func:`consent_digest` / :func:`install_agreed` for an install, and
for an upgrade :func:`upgrade_from_registry` (which stages it), :func:`review_upgrade`
(what it changes, and its digest) and :func:`apply_upgrade_agreed` (acts on that
digest only). The catalog's own questions are answered here too, so no skin re-decides
them: :func:`catalog_entries` (search and filters), :func:`catalog_facets`,
:func:`entry_versions` and :func:`installed_entries` (which entries are installed).

Owns these flows and turning the installer's and the registry's failures into the one
error tree. It must never install anything without consent, or before its digest or
hashes were verified.
"""

from __future__ import annotations

import asyncio
import difflib
import hashlib
import hmac
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

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
from gigmcp.registry.index import Index, semver_key
from gigmcp.registry.manifest import Manifest
from gigmcp.store import index_state
from gigmcp.store.models import Server

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
    return await _fetch_accepted(engine, source)


def refresh_index(engine: Engine, source: RegistrySource) -> Fetched:
    """The background refresh (control/index_refresh.py, on behalf of nobody): the same
    fetch, verification and acceptance as :func:`fetch_index`, and the index fetched
    becomes the one the catalog browses. A registry that cannot be reached is a failure
    here, not the last accepted copy (that copy is what is browsed already; the
    refresher tries again later). Runs the fetch on its own event loop: call it from a
    worker thread (verifying and parsing a large index is CPU work, and the store's
    calls block)."""
    fetched = asyncio.run(_fetch_accepted(engine, source))
    if fetched.from_cache:
        raise errors.RegistryError("; ".join(fetched.warnings) or "the registry is unreachable")
    with _browsing:
        _remember((source.url, source.pubkey), fetched)
    return fetched


async def _fetch_accepted(engine: Engine, source: RegistrySource) -> Fetched:
    last = index_state.last_accepted(engine)
    try:
        fetched = await fetch_signed_index(source, Accepted(*last) if last else None)
    except IndexFetchError as exc:
        raise errors.RegistryError(str(exc)) from exc
    if not fetched.from_cache:
        index_state.accept(engine, fetched.generated, fetched.sha256)
    return fetched


# Browsing the catalog reuses an index verified this recently, fetched once however many
# people browse at the same moment: a page view must not make the gateway download and
# verify the index again (any signed-in user could make it hammer the registry and hold
# the workers while it answers slowly). Acting (install, upgrade) always fetches afresh.
BROWSE_REUSE_S = 60.0
_browsed: dict[tuple[str, str], tuple[float, Fetched]] = {}
_browsing = threading.Lock()


def browse_index(engine: Engine, actor: Actor, source: RegistrySource) -> Fetched:
    """The signed index for reading the catalog: :func:`fetch_index`'s, reused for
    ``BROWSE_REUSE_S``. Runs the fetch on its own event loop (callers are worker threads)."""
    key = (source.url, source.pubkey)
    with _browsing:  # one fetch at a time; the ones waiting then find it done
        found = _browsed.get(key)
        if found is not None and time.monotonic() - found[0] < BROWSE_REUSE_S:
            return found[1]
        fetched = asyncio.run(fetch_index(engine, actor, source))
        _remember(key, fetched)
        return fetched


def _remember(key: tuple[str, str], fetched: Fetched) -> None:
    if len(_browsed) >= 16:  # one registry in practice; never a growing map
        _browsed.clear()
    _browsed[key] = (time.monotonic(), fetched)


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


@dataclass(frozen=True, slots=True)
class InstalledEntry:
    """A server installed from the registry, as the catalog shows it."""

    server: str
    name: str  # the registry entry it came from
    version: str
    # The version of an upgrade waiting for consent, if one is.
    pending_version: str | None


@dataclass(frozen=True, slots=True)
class UpgradeReview:
    """A pending upgrade as a skin shows it before consent: the new consent text, the
    running version's, the lines that differ, and the digest to send back."""

    pending: PendingUpgrade
    current: tuple[str, ...]
    added: tuple[str, ...]
    removed: tuple[str, ...]
    digest: str


Outcome = Literal["up_to_date", "applied", "pending"]


def catalog_entries(
    index: Index, q: str | None = None, category: str | None = None, tier: str | None = None
) -> list[Manifest]:
    """The catalog's entries that match a search, each name once (its newest version;
    the others are on its page), by name: ``q`` found in the name, display name or
    description (case ignored), ``category`` and ``tier`` equal when given. The same
    matching as the API's list, which lists every version."""
    needle = (q or "").strip().lower()
    out = []
    for name in sorted(index.servers):
        entry = index.servers[name]
        m = entry.versions.get(entry.latest)
        if m is None:
            continue
        if category and m.category != category:
            continue
        if tier and m.tier != tier:
            continue
        if needle and needle not in f"{m.name} {m.display_name} {m.description}".lower():
            continue
        out.append(m)
    return out


def catalog_facets(index: Index) -> tuple[list[str], list[str]]:
    """The categories and the tiers the entries' newest versions use, sorted: what a
    catalog offers to filter by."""
    newest = [s.versions[s.latest] for s in index.servers.values() if s.latest in s.versions]
    categories = sorted({m.category for m in newest if m.category})
    tiers = sorted({m.tier for m in newest if m.tier})
    return categories, tiers


def entry_versions(index: Index, name: str) -> list[str]:
    """Every version the index has of ``name``, newest first."""
    server = index.servers.get(name)
    if server is None:
        return []
    return sorted(server.versions, key=semver_key, reverse=True)


def installed_entries(engine: Engine, actor: Actor) -> list[InstalledEntry]:
    """The servers installed from the registry that the actor may use (theirs and the
    administrators', as :func:`servers.list_servers`; every one for an admin), by name."""
    with Session(engine) as s:
        query = select(Server).order_by(Server.name)
        if not actor.admin:
            query = query.where(Server.owner_id.in_([actor.user_id, *rows.shared_owner_ids(s)]))
        out = []
        for srv in s.scalars(query):
            origin = srv.origin
            if not isinstance(origin, dict) or not origin.get("name"):
                continue  # added by hand, not from the registry
            staged = (srv.pending or {}).get("origin") or {}
            out.append(
                InstalledEntry(
                    srv.name,
                    str(origin["name"]),
                    str(origin.get("version", "")),
                    str(staged["version"]) if staged.get("version") else None,
                )
            )
        return out


async def upgrade_from_registry(
    engine: Engine,
    actor: Actor,
    source: RegistrySource | None,
    where: Target | None,
    server: str,
    to: str | None = None,
    progress: Progress | None = None,
) -> tuple[UpgradePlan, Outcome]:
    """Move ``server`` to ``to`` (or the newest) from the index fetched now, for an
    administrator: nothing to do when it is up to date; applied at once when only its
    presentation changes; else fetched, laid out and left pending for
    :func:`review_upgrade` and :func:`apply_upgrade_agreed`. The installed version
    keeps running until then."""
    users.require_admin(engine, actor)
    rows.writable(actor)
    registry_name(engine, actor, server)  # from the registry, before anything is fetched
    if source is None:
        raise errors.ConfigurationError(
            "no registry configured (GIG_REGISTRY_INDEX_URL and GIG_REGISTRY_PUBKEY)"
        )
    if where is None:
        raise errors.ConfigurationError("this gateway has no packages folder to install into")
    plan = plan_upgrade(engine, actor, await fetch_index(engine, actor, source), server, to)
    if plan.up_to_date:
        return plan, "up_to_date"
    return plan, await upgrade(engine, actor, where, plan, progress)


def upgrade_digest(pending: PendingUpgrade) -> str:
    """What consent to a pending upgrade is given to, as one value (as
    :func:`consent_digest` for an install): the server, the version, the runtime hash
    and every line of the consent text shown."""
    text = "\n".join(
        (pending.server, pending.name, pending.version, pending.runtime_hash, *pending.consent)
    )
    return hashlib.sha256(text.encode()).hexdigest()


def review_upgrade(engine: Engine, actor: Actor, server: str) -> UpgradeReview:
    """The upgrade of ``server`` waiting for consent, beside what its running version
    was consented to: the lines the upgrade removes and adds, in order."""
    pending = pending_upgrade(engine, actor, server)
    with Session(engine) as s:
        srv = rows.server(s, actor, server)
        origin, egress = dict(srv.origin or {}), dict(srv.egress or {})
    current: list[str] = []
    if isinstance(origin.get("manifest"), dict):
        ports = egress.get("ports") or DEFAULT_PORTS  # the grant the running version holds
        current = consent_text.describe(
            origin["manifest"], str(origin.get("kind", "")), str(origin.get("package", "")), ports
        )
    added: list[str] = []
    removed: list[str] = []
    matcher = difflib.SequenceMatcher(a=current, b=list(pending.consent), autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op in ("replace", "delete"):
            removed.extend(current[i1:i2])
        if op in ("replace", "insert"):
            added.extend(pending.consent[j1:j2])
    return UpgradeReview(
        pending, tuple(current), tuple(added), tuple(removed), upgrade_digest(pending)
    )


def apply_upgrade_agreed(
    engine: Engine, actor: Actor, packages_dir: Path, server: str, agreed_digest: str
) -> PendingUpgrade:
    """The second step of a pending upgrade, for an administrator: apply it only if it
    is what the consent with ``agreed_digest`` was given to; a changed one is refused
    and the installed version keeps running."""
    users.require_admin(engine, actor)
    rows.writable(actor)
    pending = pending_upgrade(engine, actor, server)
    if not hmac.compare_digest(upgrade_digest(pending).encode(), agreed_digest.encode()):
        raise Conflict(f"the upgrade of {server!r} changed since it was shown: read it again")
    # install_rows.consent checks the runtime hash again inside its transaction.
    apply_upgrade(engine, actor, packages_dir, pending)
    return pending


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
