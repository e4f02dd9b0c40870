"""Rules of the ``packages`` extension: npm and PyPI packages pinned so that what was
approved is exactly what runs.

The block is modelled on the official MCP registry's ``server.json`` packages
(``registryType``, ``identifier``, ``version``, ``runtimeArguments``,
``packageArguments``), kept small, plus what that format lacks and a gateway needs:

* ``version`` is exact (npm: a full semver without build metadata; PyPI: a PEP 440
  public version) — never a range, a tag like ``latest``, or a wildcard;
* ``integrity`` is mandatory: npm ``sha512-<base64>`` (the registry's SRI for the
  tarball), PyPI ``sha256:<64 hex>`` (the hash of the exact distribution file);
* ``lock`` lists the dependency closure, each ``{identifier, version, integrity}``.
  PyPI requires it (the installer runs pip with ``--require-hashes --no-deps`` over the
  package plus its lock; it may be empty only for a package without dependencies, which
  the installer finds out). npm may omit it: npm then resolves dependency versions
  itself, each verified against the npm registry's own integrity — a documented limit.

One manifest runs one artifact: a manifest has either an image (the v1 rule: ref,
digest, absolute entrypoint) or exactly one package, never both, so consent covers one
thing that runs.

Owns ``package_problems``. It must never look anything up in a registry.
"""

from __future__ import annotations

import base64
import binascii
import re

from gigmcp.registry.manifest import LockEntry, Package

NPM = "npm"
PYPI = "pypi"
REGISTRY_TYPES = (NPM, PYPI)

# npm package names: lowercase, URL-safe, optional @scope/, at most 214 characters.
_NPM_NAME = re.compile(r"^(?:@[a-z0-9~-][a-z0-9._~-]*/)?[a-z0-9~-][a-z0-9._~-]*$")
# Semantic Versioning 2.0.0 without build metadata (npm ignores it: not a pin).
_NPM_VERSION = re.compile(
    r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)"
    r"(?:-((?:0|[1-9][0-9]*|[0-9]*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9][0-9]*|[0-9]*[a-zA-Z-][0-9a-zA-Z-]*))*))?$"
)
# PEP 508 project names.
_PYPI_NAME = re.compile(r"^([A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9._-]*[A-Za-z0-9])$")
# PEP 440 public versions (no local "+..." part: PyPI refuses those).
_PYPI_VERSION = re.compile(
    r"^(?:[0-9]+!)?[0-9]+(?:\.[0-9]+)*"
    r"(?:[-_.]?(?:a|b|c|rc|alpha|beta|pre|preview)[-_.]?[0-9]*)?"
    r"(?:-[0-9]+|[-_.]?(?:post|rev|r)[-_.]?[0-9]*)?"
    r"(?:[-_.]?dev[-_.]?[0-9]*)?$",
    re.IGNORECASE | re.ASCII,
)
_NPM_INTEGRITY = re.compile(r"^sha512-([A-Za-z0-9+/]{86}==)$")
_PYPI_INTEGRITY = re.compile(r"^sha256:[0-9a-f]{64}$")


def pypi_normalize(name: str) -> str:
    """PEP 503 normalized project name (``Foo_Bar.baz`` → ``foo-bar-baz``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _name_problem(kind: str, identifier: str, where: str) -> str | None:
    if kind == NPM:
        if len(identifier) > 214 or not _NPM_NAME.fullmatch(identifier):
            return f"{where}.identifier {identifier!r} is not a valid npm package name"
    elif not _PYPI_NAME.fullmatch(identifier):
        return f"{where}.identifier {identifier!r} is not a valid PyPI project name"
    return None


def _version_problem(kind: str, version: str, where: str) -> str | None:
    pattern = _NPM_VERSION if kind == NPM else _PYPI_VERSION
    if not pattern.fullmatch(version):
        return (
            f"{where}.version {version!r} invalid: an exact {kind} version is required "
            "(no range, tag, wildcard or build metadata)"
        )
    return None


def _integrity_problem(kind: str, integrity: str, where: str) -> str | None:
    if kind == NPM:
        match = _NPM_INTEGRITY.fullmatch(integrity)
        if match is None:
            return f"{where}.integrity invalid: npm needs sha512-<base64> (the registry's SRI)"
        try:
            raw = base64.b64decode(match.group(1), validate=True)
        except binascii.Error:
            raw = b""
        if len(raw) != 64:
            return f"{where}.integrity invalid: sha512 digest must be 64 bytes"
        return None
    if not _PYPI_INTEGRITY.fullmatch(integrity):
        return (
            f"{where}.integrity invalid: pypi needs sha256:<64 lowercase hex> "
            "(the hash of the distribution file)"
        )
    return None


def _argument_problems(values: tuple[str, ...], where: str) -> list[str]:
    problems = []
    for i, value in enumerate(values):
        if not value or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
            problems.append(f"{where}[{i}] must be non-empty text without control characters")
    return problems


def package_problems(package: Package, where: str) -> list[str]:
    """Every problem with one package entry (``where`` prefixes the messages)."""
    kind = package.registry_type
    if kind not in REGISTRY_TYPES:
        return [f'{where}.registryType {kind!r} invalid: must be "npm" or "pypi"']
    problems: list[str] = []
    for check in (
        _name_problem(kind, package.identifier, where),
        _version_problem(kind, package.version, where),
        _integrity_problem(kind, package.integrity, where),
    ):
        if check is not None:
            problems.append(check)
    problems += _argument_problems(package.runtime_arguments, f"{where}.runtimeArguments")
    problems += _argument_problems(package.package_arguments, f"{where}.packageArguments")
    if package.lock is None:
        if kind == PYPI:
            problems.append(
                f"{where}.lock is required for pypi: the full dependency closure with "
                "hashes (pip runs with --require-hashes --no-deps); use [] only if the "
                "package has no dependencies"
            )
        return problems
    problems += _lock_problems(kind, package, package.lock, where)
    return problems


def _lock_problems(
    kind: str, package: Package, lock: tuple[LockEntry, ...], where: str
) -> list[str]:
    problems: list[str] = []

    # PyPI installs one version per project; npm may nest several versions of one name.
    def key(entry: LockEntry) -> tuple[str, ...]:
        if kind == PYPI:
            return (pypi_normalize(entry.identifier),)
        return (entry.identifier, entry.version)

    seen = {key(LockEntry(package.identifier, package.version, ""))}
    for i, entry in enumerate(lock):
        at = f"{where}.lock[{i}]"
        for check in (
            _name_problem(kind, entry.identifier, at),
            _version_problem(kind, entry.version, at),
            _integrity_problem(kind, entry.integrity, at),
        ):
            if check is not None:
                problems.append(check)
        identity = key(entry)
        if identity in seen:
            problems.append(f"{at}: {entry.identifier!r} listed twice (or is the package itself)")
        seen.add(identity)
    return problems
