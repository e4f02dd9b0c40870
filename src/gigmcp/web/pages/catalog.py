"""The catalog page: the signed registry's entries, and installing one with consent.

Owns the dashboard's face of the catalog: the list (search, category and tier as a GET
form), an entry's page (tier, the hosts it may reach, the credentials it needs and how
each reaches it, its tools and which start off, version, digest, where it is
installed), the consent page of an install (exactly the text the service layer
computes, and a form that posts its digest back), the review of an upgrade that
changes what a server may do (what changed, and its digest), and uninstalling. Every
rule is the service layer's (``control/installs.py``): who may install, upgrade or
uninstall, what consent says, whether a digest still holds, which upgrade is quiet.

It must never install, upgrade or uninstall without the digest the viewer was shown
(the service layer compares it), decide who may (buttons are hidden from those who may
not, and the service layer refuses them anyway), mark registry text safe (descriptions
and names come from a third party), or show a traceback.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from gigmcp.api.auth import config
from gigmcp.api.context import ApiConfig
from gigmcp.control import installs
from gigmcp.errors import (
    ConfigurationError,
    Conflict,
    ControlError,
    InstallError,
    Invalid,
    RegistryError,
)
from gigmcp.installer.index_fetch import Fetched
from gigmcp.registry.errors import ManifestResolveError
from gigmcp.registry.manifest import Manifest
from gigmcp.web import render
from gigmcp.web.render import NavItem
from gigmcp.web.security import Form, Signed, Viewer

router = APIRouter()
NAV_ITEM = NavItem("nav.catalog", "/catalog")

# The confirmations a redirect may ask a page to show: a fixed set of keys (never text
# from the query string, so a crafted link cannot make the page say anything else).
DONE = {
    "installed": "catalog.done_installed",
    "upgraded": "catalog.done_upgraded",
    "quiet": "catalog.done_quiet",
    "current": "catalog.done_current",
    "uninstalled": "catalog.done_uninstalled",
}
# A tier the index names: its short name and what it means for credentials.
TIERS = {
    "sealed": ("catalog.tier_sealed", "catalog.tier_sealed_help"),
    "entrusted": ("catalog.tier_entrusted", "catalog.tier_entrusted_help"),
}
# Bounds on what a search form may send back (the page echoes it into its fields).
MAX_QUERY = 200


class _Unavailable(ControlError):
    """The registry is not configured, or its index could not be had or was refused:
    the page says which, in the registry's own words (they never carry a secret)."""

    def __init__(self, heading: str, detail: str, status: int) -> None:
        super().__init__(detail)
        self.heading, self.detail, self.status = heading, detail, status


@dataclass(frozen=True, slots=True)
class _Credential:
    id: str
    type: str
    provider: str
    scopes: str
    how: str  # a message key
    env: str
    header: str
    format: str


def _admin(who: Viewer) -> bool:
    """Whether to offer the buttons that change things (the service layer decides)."""
    return who.actor.admin and not who.actor.read_only


def _path(ref: str) -> str:
    return "/catalog/" + quote(ref, safe="")


def _fetch(cfg: ApiConfig, who: Viewer) -> Fetched:
    if cfg.registry is None:
        raise _Unavailable("catalog.unconfigured", "", 503)
    try:
        # Browsing: an index verified in the last minute is reused (installs fetch anew).
        return installs.browse_index(cfg.engine, who.actor, cfg.registry)
    except RegistryError as exc:
        raise _Unavailable("catalog.registry_failed", str(exc), 502) from exc


def _registry_refusal(exc: RegistryError) -> _Unavailable:
    """A ref the index does not have is the viewer's mistake (404); anything else the
    registry refused is the registry's (502)."""
    if isinstance(exc, ManifestResolveError) or isinstance(exc.__cause__, ManifestResolveError):
        return _Unavailable("catalog.no_entry", str(exc), 404)
    return _Unavailable("catalog.registry_failed", str(exc), 502)


def _unavailable(request: Request, who: Viewer, exc: _Unavailable) -> Response:
    return render.page(
        request,
        "catalog_unavailable.html",
        who,
        {
            "heading": exc.heading,
            "detail": exc.detail,
            "unconfigured": exc.heading == "catalog.unconfigured",
        },
        status=exc.status,
    )


def _credentials(m: Manifest) -> list[_Credential]:
    out = []
    for c in m.credentials:
        how = "catalog.cred_env" if c.inject.env else "catalog.cred_header"
        out.append(
            _Credential(
                c.id,
                c.type,
                c.provider,
                ", ".join(c.scopes),
                how,
                c.inject.env,
                c.inject.header,
                c.inject.format,
            )
        )
    return out


def _done(done: str | None) -> str | None:
    return DONE.get(done or "")


@router.get("/catalog")
def catalog_page(
    request: Request,
    who: Signed,
    q: str = "",
    category: str = "",
    tier: str = "",
    done: str | None = None,
) -> Response:
    cfg = config(request)
    try:
        fetched = _fetch(cfg, who)
    except _Unavailable as exc:
        return _unavailable(request, who, exc)
    q, category, tier = q[:MAX_QUERY], category[:MAX_QUERY], tier[:MAX_QUERY]
    entries = installs.catalog_entries(fetched.index, q, category or None, tier or None)
    categories, tiers = installs.catalog_facets(fetched.index)
    installed = {e.name for e in installs.installed_entries(cfg.engine, who.actor)}
    return render.page(
        request,
        "catalog.html",
        who,
        {
            "entries": [
                (
                    m,
                    _path(m.name),
                    m.name in installed,
                    TIERS[m.tier][0] if m.tier in TIERS else None,
                )
                for m in entries
            ],
            "categories": categories,
            "tiers": [(t, TIERS[t][0] if t in TIERS else None) for t in tiers],
            "q": q,
            "category": category,
            "tier": tier,
            "filtered": bool(q or category or tier),
            "warnings": fetched.warnings,
            "done": _done(done),
        },
    )


@router.get("/catalog/{ref}")
def entry_page(request: Request, ref: str, who: Signed, done: str | None = None) -> Response:
    cfg = config(request)
    try:
        fetched = _fetch(cfg, who)
        try:
            m = fetched.index.resolve(ref)
        except RegistryError as exc:
            raise _registry_refusal(exc) from exc
    except _Unavailable as exc:
        return _unavailable(request, who, exc)
    admin = _admin(who)
    installed: list[dict[str, Any]] = []
    for e in installs.installed_entries(cfg.engine, who.actor):
        if e.name != m.name:
            continue
        newer = False
        if admin:
            try:
                plan = installs.plan_upgrade(cfg.engine, who.actor, fetched, e.server)
                newer = not plan.up_to_date
            except (RegistryError, Invalid):
                newer = False  # the entry left the index: nothing to move to
        installed.append({"e": e, "upgrade": newer, "path": quote(e.server, safe="")})
    return render.page(
        request,
        "catalog_entry.html",
        who,
        {
            "m": m,
            "tier_key": TIERS[m.tier][0] if m.tier in TIERS else None,
            "tier_help": TIERS[m.tier][1] if m.tier in TIERS else None,
            "credentials": _credentials(m),
            "tools_on": [t.name for t in m.tools if t.default],
            "tools_off": [t.name for t in m.tools if not t.default],
            "versions": [
                (v, _path(f"{m.name}@{v}")) for v in installs.entry_versions(fetched.index, m.name)
            ],
            "installed": installed,
            "admin": admin,
            "install_path": _path(m.ref) + "/install",
            "warnings": fetched.warnings,
            "done": _done(done),
        },
    )


def _consent_page(
    request: Request,
    who: Viewer,
    ref: str,
    name: str,
    plan: installs.InstallPlan | None,
    error: str | None,
    status: int,
) -> Response:
    cfg = config(request)
    return render.page(
        request,
        "catalog_consent.html",
        who,
        {
            "ref": ref,
            "name": name,
            "plan": plan,
            "digest": installs.consent_digest(plan) if plan else "",
            "error": error,
            "can_install": cfg.install_target is not None,
            "form_path": _path(ref) + "/install",
            "back_path": _path(ref),
        },
        status=status,
    )


def _plan(
    cfg: ApiConfig, who: Viewer, ref: str, name: str
) -> tuple[installs.InstallPlan | None, str | None, int]:
    """The service layer's plan for installing ``ref`` as ``name``; a name it refuses
    is the viewer's to correct on the same page, so it comes back as an error."""
    try:
        plan = asyncio.run(
            installs.plan_from_registry(cfg.engine, who.actor, cfg.registry, ref, name or None)
        )
    except ConfigurationError as exc:  # no registry (after the service layer's checks)
        raise _Unavailable("catalog.unconfigured", "", 503) from exc
    except RegistryError as exc:
        raise _registry_refusal(exc) from exc
    except InstallError as exc:  # the entry cannot be installed here (its kind)
        raise _Unavailable("catalog.cannot_install", str(exc), 422) from exc
    except Invalid as exc:
        return None, str(exc), 422
    except Conflict as exc:
        return None, str(exc), 409
    return plan, None, 200


@router.get("/catalog/{ref}/install")
def consent_page(request: Request, ref: str, who: Signed, name: str = "") -> Response:
    cfg = config(request)
    name = name.strip()[:MAX_QUERY]
    try:
        plan, error, status = _plan(cfg, who, ref, name)
    except _Unavailable as exc:
        return _unavailable(request, who, exc)
    return _consent_page(request, who, ref, name, plan, error, status)


@router.post("/catalog/{ref}/install")
def install(request: Request, ref: str, who: Signed, form: Form) -> Response:
    name = form.get("name", "").strip()[:MAX_QUERY]
    try:
        return _install(request, who, ref, name, form.get("digest", ""))
    except _Unavailable as exc:
        return _unavailable(request, who, exc)


def _install(request: Request, who: Viewer, ref: str, name: str, digest: str) -> Response:
    cfg = config(request)
    # The plan is made again from the index as it is now: the digest is checked
    # against that, never against anything the form says.
    plan, error, status = _plan(cfg, who, ref, name)
    if plan is None:
        return _consent_page(request, who, ref, name, None, error, status)
    if cfg.install_target is None:
        raise ConfigurationError("this gateway has no packages folder to install into")
    try:
        asyncio.run(
            installs.install_agreed(cfg.engine, who.actor, cfg.install_target, plan, digest)
        )
    except Conflict as exc:
        # What the viewer agreed to is not what would be installed now (or the name was
        # taken meanwhile): nothing was installed; show the text as it is now.
        fresh, error, status = _plan(cfg, who, ref, name)
        return _consent_page(request, who, ref, name, fresh, error or str(exc), 409)
    except InstallError as exc:
        raise _Unavailable("catalog.install_failed", str(exc), 502) from exc
    return RedirectResponse(_path(plan.manifest.name) + "?done=installed", status_code=303)


@router.post("/catalog/installed/{server}/upgrade")
def upgrade(request: Request, server: str, who: Signed, form: Form) -> Response:
    cfg = config(request)
    try:
        plan, outcome = asyncio.run(
            installs.upgrade_from_registry(
                cfg.engine, who.actor, cfg.registry, cfg.install_target, server
            )
        )
    except RegistryError as exc:
        return _unavailable(request, who, _registry_refusal(exc))
    except InstallError as exc:
        return _unavailable(request, who, _Unavailable("catalog.install_failed", str(exc), 502))
    if outcome == "pending":
        return RedirectResponse(_upgrade_path(server), status_code=303)
    done = "current" if outcome == "up_to_date" else "quiet"
    return RedirectResponse(_path(plan.manifest.name) + f"?done={done}", status_code=303)


def _upgrade_path(server: str) -> str:
    return f"/catalog/installed/{quote(server, safe='')}/upgrade"


def _review_page(
    request: Request,
    who: Viewer,
    server: str,
    review: installs.UpgradeReview,
    error: str | None,
    status: int,
) -> Response:
    return render.page(
        request,
        "catalog_upgrade.html",
        who,
        {
            "server": server,
            "r": review,
            "error": error,
            "admin": _admin(who),
            "form_path": _upgrade_path(server) + "/consent",
            "back_path": _path(review.pending.name),
        },
        status=status,
    )


@router.get("/catalog/installed/{server}/upgrade")
def review_page(request: Request, server: str, who: Signed) -> Response:
    review = installs.review_upgrade(config(request).engine, who.actor, server)
    return _review_page(request, who, server, review, None, 200)


@router.post("/catalog/installed/{server}/upgrade/consent")
def consent_upgrade(request: Request, server: str, who: Signed, form: Form) -> Response:
    cfg = config(request)
    if cfg.install_target is None:
        raise ConfigurationError("this gateway has no packages folder")
    try:
        done = installs.apply_upgrade_agreed(
            cfg.engine, who.actor, cfg.install_target.packages_dir, server, form.get("digest", "")
        )
    except Conflict as exc:
        # Changed since it was shown, or no longer waiting: nothing applied. Show it as
        # it is now, if it still waits.
        try:
            review = installs.review_upgrade(cfg.engine, who.actor, server)
        except Conflict:
            raise exc from None
        return _review_page(request, who, server, review, str(exc), 409)
    return RedirectResponse(_path(done.name) + "?done=upgraded", status_code=303)


@router.get("/catalog/installed/{server}/uninstall")
def uninstall_page(request: Request, server: str, who: Signed) -> Response:
    name = installs.registry_name(config(request).engine, who.actor, server)
    return render.page(
        request,
        "catalog_uninstall.html",
        who,
        {
            "server": server,
            "admin": _admin(who),
            "form_path": f"/catalog/installed/{quote(server, safe='')}/uninstall",
            "back_path": _path(name),
        },
    )


@router.post("/catalog/installed/{server}/uninstall")
def uninstall(request: Request, server: str, who: Signed, form: Form) -> Response:
    cfg = config(request)
    if cfg.install_target is None:
        raise ConfigurationError("this gateway has no packages folder")
    installs.uninstall(cfg.engine, who.actor, cfg.install_target.packages_dir, server)
    return RedirectResponse("/catalog?done=uninstalled", status_code=303)
