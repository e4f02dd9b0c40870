"""Structural rules of a schema v1 manifest (the reference's ``Manifest.Validate``).

Every rule of the reference, with the same verdict: ``schemaVersion`` 1; ``name``
``[a-z0-9-]`` (no ``_``: it prefixes tool names as ``<server>_<tool>``);
``MAJOR.MINOR.PATCH`` versions without leading zeros; ``source.repo`` and
``source.tag``; a safe relative ``source.package``; ``image.ref``, an
``image.digest`` of ``sha256:`` + 64 lowercase hex, an absolute ``image.entrypoint``,
a known ``image.builder``; tier ``sealed`` (credentials injected by the proxy:
``inject.header`` + ``inject.format`` with ``{token}``, no ``inject.env``) or
``entrusted`` (``inject.env`` only); valid egress entries; unique, non-empty
credential ids and tool names; oauth2 credentials name a ``vendor``; a vendor is a
lowercase slug; ``category`` from the closed enum.

The one relaxation, for the ``packages`` extension: a manifest with packages has no
image (all image fields empty) and exactly one package, checked by ``packages.py``;
without packages the image rules apply unchanged.

Owns ``manifest_problems`` (all problems, in a stable order) and ``validate_manifest``
(raises ``ManifestError``). It must never consult external data (the denylist is lint's).
"""

from __future__ import annotations

import re

from gigmcp.registry.egress_rules import NAME_RE, check_egress_entry
from gigmcp.registry.errors import ManifestError
from gigmcp.registry.manifest import TIER_ENTRUSTED, TIER_SEALED, Manifest
from gigmcp.registry.packages import package_problems

VERSION_RE = re.compile(r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$")
DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
_SOURCE_PACKAGE_RE = re.compile(r"^[a-zA-Z0-9._/-]+$")
VENDOR_RE = NAME_RE
BUILDERS = ("go-static", "node", "python", "toolpack")
# Closed enum for the presentation-only category (checked only when set).
CATEGORIES = (
    "ai", "analytics", "comms", "CRM", "data", "design", "dev-tools", "documents",
    "e-commerce", "finance", "HR/ATS", "marketing", "productivity", "search", "social",
    "storage", "support",
)  # fmt: skip


def manifest_problems(m: Manifest) -> list[str]:
    """Every structural problem of ``m``; empty when valid."""
    problems: list[str] = []
    add = problems.append

    if m.schema_version != 1:
        add(f"schemaVersion must be 1, got {m.schema_version}")
    if not NAME_RE.fullmatch(m.name):
        add(
            f"name {m.name!r} invalid: lowercase [a-z0-9-], no underscores "
            "(the name prefixes every tool name)"
        )
    if not VERSION_RE.fullmatch(m.version):
        add(f"version {m.version!r} invalid: must be MAJOR.MINOR.PATCH")
    if not m.source.repo or not m.source.tag:
        add("source.repo and source.tag are required")
    problems += _source_package_problems(m.source.package)
    if m.packages:
        problems += _package_block_problems(m)
    else:
        problems += _image_problems(m)
    if m.tier not in (TIER_SEALED, TIER_ENTRUSTED):
        add(f"tier {m.tier!r} invalid: must be {TIER_SEALED!r} or {TIER_ENTRUSTED!r}")
    for entry in m.entitlements.egress:
        reason = check_egress_entry(entry)
        if reason is not None:
            add(reason)
    problems += _credential_problems(m)
    if m.category and m.category not in CATEGORIES:
        add(f"category {m.category!r} invalid: must be one of {', '.join(CATEGORIES)}")
    seen: set[str] = set()
    for tool in m.tools:
        if not tool.name or tool.name in seen:
            add(f"tool name {tool.name!r} empty or duplicate")
        seen.add(tool.name)
    return problems


def validate_manifest(m: Manifest) -> None:
    """Raise ``ManifestError`` carrying every problem, if there is any."""
    problems = manifest_problems(m)
    if problems:
        raise ManifestError(problems, context=f"manifest {m.name or '?'}@{m.version or '?'}")


def _source_package_problems(package: str) -> list[str]:
    if not package:
        return []
    if not _SOURCE_PACKAGE_RE.fullmatch(package):
        return [f"source.package {package!r} invalid: must match ^[a-zA-Z0-9._/-]+$"]
    if ".." in package:
        return [f"source.package {package!r} invalid: must not contain '..' (path injection guard)"]
    if package.startswith("/"):
        return [f"source.package {package!r} invalid: must not be an absolute path"]
    return []


def _image_problems(m: Manifest) -> list[str]:
    problems = []
    image = m.image
    if not image.ref:
        problems.append("image.ref is required (or, instead of an image, one entry in packages)")
    if not DIGEST_RE.fullmatch(image.digest):
        problems.append(
            f"image.digest {image.digest!r} invalid: must be sha256:<64 hex> "
            "(the approved digest is what runs)"
        )
    if not image.entrypoint.startswith("/"):
        problems.append(
            f"image.entrypoint {image.entrypoint!r} must be an absolute path inside the image"
        )
    if image.builder and image.builder not in BUILDERS:
        problems.append(
            f"image.builder {image.builder!r} invalid: must be one of "
            f"{', '.join(BUILDERS)} (or omitted for go-static)"
        )
    return problems


def _package_block_problems(m: Manifest) -> list[str]:
    problems = []
    if not m.image.is_empty:
        problems.append(
            "image and packages are exclusive: a manifest runs one artifact "
            "(remove the image block or the packages)"
        )
    if len(m.packages) != 1:
        problems.append(f"packages must hold exactly one package, got {len(m.packages)}")
    for i, package in enumerate(m.packages):
        problems += package_problems(package, f"packages[{i}]")
    return problems


def _credential_problems(m: Manifest) -> list[str]:
    problems: list[str] = []
    add = problems.append
    seen: set[str] = set()
    for cred in m.credentials:
        if not cred.id or cred.id in seen:
            add(f"credential id {cred.id!r} empty or duplicate")
        seen.add(cred.id)
        inject = cred.inject
        if m.tier == TIER_SEALED:
            if not inject.header or "{token}" not in inject.format or inject.env:
                add(
                    f"credential {cred.id!r}: sealed tier requires inject.header + "
                    "inject.format containing {token}, and no inject.env"
                )
        elif m.tier == TIER_ENTRUSTED and (not inject.env or inject.header or inject.format):
            add(f"credential {cred.id!r}: entrusted tier requires inject.env only")
        if cred.type == "oauth2" and not cred.vendor:
            add(
                f"credential {cred.id!r}: vendor is required for oauth2 "
                "(the OAuth-app grouping key, e.g. 'google')"
            )
        if cred.vendor and not VENDOR_RE.fullmatch(cred.vendor):
            add(f"credential {cred.id!r}: vendor {cred.vendor!r} invalid: lowercase slug [a-z0-9-]")
    return problems
