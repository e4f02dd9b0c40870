"""Reading a manifests folder the way the reference registry's CI does.

The layout is ``<root>/<name>/<version>.yaml`` for manifests and
``<root>/<name>/<version>.toolspec.yaml`` beside them for toolspecs. ``load_catalog``
applies, in one pass, what the reference's ``registryctl lint`` and ``lint-toolspecs``
apply: each manifest parses, validates (or lints, given a denylist) and sits at the path
its name and version dictate; each toolspec parses, validates, sits at its path, has its
paired manifest and passes the pairing rules; and every manifest built with the
``toolpack`` builder has its toolspec. Symlinks are skipped, as the reference does.

Everything wrong is collected (path and message) instead of stopping at the first
problem, so one run reports the whole folder. This is the library behind the operator's
``lint`` and ``build-index`` commands and the corpus test.

Owns reading that tree. It must never follow a symlink, read a file larger than
``MAX_FILE_BYTES``, or write anything.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from gigmcp.registry.errors import RegistryDataError
from gigmcp.registry.lint import Denylist, lint_manifest
from gigmcp.registry.manifest import Manifest, parse_manifest
from gigmcp.registry.toolspec import ToolSpec, pairing_problems, parse_toolspec, toolspec_problems
from gigmcp.registry.validate import manifest_problems

MAX_FILE_BYTES = 1 << 20
SPEC_SUFFIX = ".toolspec.yaml"


@dataclass(frozen=True)
class Problem:
    path: Path
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass
class Catalog:
    manifests: dict[Path, Manifest] = field(default_factory=dict)  # only clean ones
    toolspecs: dict[Path, ToolSpec] = field(default_factory=dict)  # only clean ones
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _files(root: Path) -> list[Path]:
    found: list[Path] = []
    for folder, dirs, names in os.walk(root):  # does not descend into symlinked dirs
        dirs.sort()
        for name in sorted(names):
            path = Path(folder, name)
            if name.endswith(".yaml") and not path.is_symlink():
                found.append(path)
    return found


def _read(path: Path, catalog: Catalog) -> bytes | None:
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            catalog.problems.append(Problem(path, f"larger than {MAX_FILE_BYTES} bytes"))
            return None
        return path.read_bytes()
    except OSError as exc:
        catalog.problems.append(Problem(path, f"cannot read: {exc.strerror}"))
        return None


def _report(catalog: Catalog, path: Path, messages: list[str]) -> bool:
    for message in messages:
        catalog.problems.append(Problem(path, message))
    return not messages


def load_catalog(root: str | Path, denylist: Denylist | None = None) -> Catalog:
    """Load and check every manifest and toolspec under ``root``."""
    root = Path(root)
    catalog = Catalog()
    if not root.is_dir():
        catalog.problems.append(Problem(root, "not a directory"))
        return catalog
    files = _files(root)
    manifest_files = [p for p in files if not p.name.endswith(SPEC_SUFFIX)]
    if not manifest_files:
        catalog.problems.append(Problem(root, "no manifests found"))
    for path in manifest_files:
        _load_manifest(path, denylist, catalog)
    for path in (p for p in files if p.name.endswith(SPEC_SUFFIX)):
        _load_toolspec(path, catalog)
    paired = {(s.name, s.version) for s in catalog.toolspecs.values()}
    for path, m in catalog.manifests.items():
        if m.image.builder == "toolpack" and (m.name, m.version) not in paired:
            message = "builder 'toolpack' but no valid toolspec beside it"
            catalog.problems.append(Problem(path, message))
    return catalog


def _load_manifest(path: Path, denylist: Denylist | None, catalog: Catalog) -> None:
    raw = _read(path, catalog)
    if raw is None:
        return
    try:
        m = parse_manifest(raw)
    except RegistryDataError as exc:
        _report(catalog, path, [str(exc)])
        return
    if denylist is None:
        messages = manifest_problems(m)
    else:
        messages = [f.message for f in lint_manifest(m, denylist)]
    want = (m.name, f"{m.version}.yaml")
    if (path.parent.name, path.name) != want:
        messages.append(f"path must be <manifests>/{want[0]}/{want[1]}")
    if _report(catalog, path, messages):
        catalog.manifests[path] = m


def _load_toolspec(path: Path, catalog: Catalog) -> None:
    raw = _read(path, catalog)
    if raw is None:
        return
    try:
        spec = parse_toolspec(raw)
    except RegistryDataError as exc:
        _report(catalog, path, [str(exc)])
        return
    messages = toolspec_problems(spec)
    want = (spec.name, f"{spec.version}{SPEC_SUFFIX}")
    if (path.parent.name, path.name) != want:
        messages.append(f"path must be <manifests>/{want[0]}/{want[1]}")
    manifest_path = path.with_name(f"{spec.version}.yaml")
    paired = catalog.manifests.get(manifest_path)
    if paired is None:
        messages.append(f"no valid paired manifest at {manifest_path.name}")
    elif not messages:
        messages += pairing_problems(spec, paired)
    if _report(catalog, path, messages):
        catalog.toolspecs[path] = spec
