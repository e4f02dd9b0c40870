"""The packages extension: npm/PyPI packages pinned by exact version and integrity."""

from __future__ import annotations

import pytest

from gigmcp.registry.manifest import Image, LockEntry, Manifest, Package
from gigmcp.registry.packages import package_problems, pypi_normalize
from gigmcp.registry.validate import manifest_problems
from tests.support.registry_samples import (
    NPM_INTEGRITY,
    PYPI_INTEGRITY,
    good,
    package_manifest,
    replace,
)

NPM = Package(
    registry_type="npm",
    identifier="@modelcontextprotocol/server-everything",
    version="2025.9.25",
    integrity=NPM_INTEGRITY,
)
PYPI = Package(
    registry_type="pypi",
    identifier="mcp-server-time",
    version="2025.1.14",
    integrity=PYPI_INTEGRITY,
    lock=(),
)


def problems_of(package: Package) -> list[str]:
    return package_problems(package, "packages[0]")


def test_valid_packages() -> None:
    assert manifest_problems(package_manifest()) == []
    assert problems_of(NPM) == []  # npm: lock optional
    assert problems_of(PYPI) == []  # pypi: empty lock = no dependencies
    assert problems_of(replace(NPM, identifier="lodash", version="1.0.0-beta.2")) == []
    for version in ("1.0", "1.0.0rc1", "2.0.post1", "1!2.0", "0.9.dev3", "1.0a1"):
        assert problems_of(replace(PYPI, version=version)) == [], version
    npm_locked = replace(NPM, lock=(LockEntry("zod", "3.25.76", NPM_INTEGRITY),))
    assert problems_of(npm_locked) == []


@pytest.mark.parametrize(
    ("package", "message"),
    [
        (
            replace(NPM, registry_type="oci"),
            'packages[0].registryType \'oci\' invalid: must be "npm" or "pypi"',
        ),
        (
            replace(NPM, identifier="Upper"),
            "packages[0].identifier 'Upper' is not a valid npm package name",
        ),
        (replace(NPM, identifier=".hidden"), "is not a valid npm package name"),
        (replace(NPM, identifier="a" * 215), "is not a valid npm package name"),
        (
            replace(PYPI, identifier="-bad-"),
            "packages[0].identifier '-bad-' is not a valid PyPI project name",
        ),
        (
            replace(NPM, version="^1.2.3"),
            "packages[0].version '^1.2.3' invalid: an exact npm version is required",
        ),
        (replace(NPM, version="~1.2.3"), "an exact npm version is required"),
        (replace(NPM, version=">=1.2.3"), "an exact npm version is required"),
        (replace(NPM, version="1.x"), "an exact npm version is required"),
        (replace(NPM, version="latest"), "an exact npm version is required"),
        (replace(NPM, version="1.2.3+build"), "an exact npm version is required"),
        (replace(NPM, version="1.2.3\n"), "an exact npm version is required"),
        (replace(PYPI, version="==1.0"), "an exact pypi version is required"),
        (replace(PYPI, version="1.*"), "an exact pypi version is required"),
        (replace(PYPI, version="1.0+local"), "an exact pypi version is required"),
        (replace(NPM, integrity=""), "packages[0].integrity invalid: npm needs sha512-<base64>"),
        (replace(NPM, integrity="sha1-" + "A" * 27 + "="), "npm needs sha512-<base64>"),
        (replace(NPM, integrity=PYPI_INTEGRITY), "npm needs sha512-<base64>"),
        (replace(PYPI, integrity=NPM_INTEGRITY), "pypi needs sha256:<64 lowercase hex>"),
        (replace(PYPI, integrity="sha256:" + "B" * 64), "pypi needs sha256:<64 lowercase hex>"),
        (replace(PYPI, lock=None), "packages[0].lock is required for pypi"),
        (
            replace(NPM, runtime_arguments=("",)),
            "packages[0].runtimeArguments[0] must be non-empty text",
        ),
        (
            replace(NPM, package_arguments=("ok", "bad\nline")),
            "packages[0].packageArguments[1] must be non-empty text",
        ),
        (
            replace(
                PYPI,
                lock=(
                    LockEntry("tzdata", "2025.2", PYPI_INTEGRITY),
                    LockEntry("TzData", "2024.1", PYPI_INTEGRITY),
                ),
            ),
            "packages[0].lock[1]: 'TzData' listed twice (or is the package itself)",
        ),
        (
            replace(PYPI, lock=(LockEntry("MCP_Server.Time", "1.0", PYPI_INTEGRITY),)),
            "packages[0].lock[0]: 'MCP_Server.Time' listed twice",
        ),
        (
            replace(NPM, lock=(LockEntry(NPM.identifier, NPM.version, NPM_INTEGRITY),)),
            "listed twice (or is the package itself)",
        ),
        (
            replace(PYPI, lock=(LockEntry("tzdata", "latest", "x"),)),
            "packages[0].lock[0].version 'latest' invalid",
        ),
        (
            replace(PYPI, lock=(LockEntry("tzdata", "1.0", "x"),)),
            "packages[0].lock[0].integrity invalid",
        ),
    ],
)
def test_package_rules(package: Package, message: str) -> None:
    problems = problems_of(package)
    assert any(message in p for p in problems), problems


def test_npm_may_repeat_a_dependency_at_different_versions() -> None:
    lock = (LockEntry("debug", "2.6.9", NPM_INTEGRITY), LockEntry("debug", "4.4.1", NPM_INTEGRITY))
    assert problems_of(replace(NPM, lock=lock)) == []


def test_npm_integrity_must_decode_to_64_bytes() -> None:
    # 86 base64 characters + "==" always decode to 64 bytes; a wrong pad is refused.
    assert problems_of(replace(NPM, integrity="sha512-" + "A" * 86 + "=A")) != []


def test_image_or_exactly_one_package() -> None:
    with_both = replace(package_manifest(), image=good().image)
    assert (
        "image and packages are exclusive: a manifest runs one artifact (remove the image block or the packages)"
        in manifest_problems(with_both)
    )
    two = replace(package_manifest(), packages=(PYPI, NPM))
    assert "packages must hold exactly one package, got 2" in manifest_problems(two)
    neither = replace(package_manifest(), packages=())
    problems = manifest_problems(neither)
    assert "image.ref is required (or, instead of an image, one entry in packages)" in problems
    # A package manifest keeps every other rule.
    assert "source.repo and source.tag are required" in manifest_problems(
        replace(package_manifest(), source=replace(package_manifest().source, repo=""))
    )


def test_builder_alone_is_not_an_image() -> None:
    only_builder = replace(package_manifest(), image=Image(builder="node"))
    assert any("image and packages are exclusive" in p for p in manifest_problems(only_builder))


def test_pypi_normalize() -> None:
    assert pypi_normalize("MCP_Server..Time") == "mcp-server-time"


def test_manifest_type_is_unchanged_for_v1() -> None:
    assert isinstance(good(), Manifest) and good().packages == ()
