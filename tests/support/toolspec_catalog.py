"""The registry catalog's toolspecs as engine input, read from the shared folder.

The catalog is AGPL data kept outside the repository: it is read from
``../shared/registry-catalog`` at test time and never copied. PyYAML turns each
``<ver>.toolspec.yaml`` into the dict the engine receives (the gateway's own parser
produces the same field names); the paired manifest gives the credentials: sealed ones
by their ``inject.header`` and ``inject.format``, entrusted ones by their ``inject.env``
(the engine then takes header and format from the toolspec's ``auth``).
"""

from __future__ import annotations

import copy
import functools
import json
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT.parent / "shared" / "registry-catalog" / "manifests"


@dataclass(frozen=True)
class Entry:
    name: str
    manifest: dict[str, Any]
    toolspec: dict[str, Any]

    def credentials(self) -> tuple[list[dict[str, str]], dict[str, str]]:
        """The input's credential entries, and an environment holding a placeholder for
        each (random, like the gateway's: the test then looks for it upstream)."""
        entries: list[dict[str, str]] = []
        env: dict[str, str] = {}
        for c in self.manifest.get("credentials") or []:
            inject = c["inject"]
            if "header" in inject:
                var = "GIG_CRED_" + re.sub(r"[^A-Z0-9_]", "_", c["id"].upper())
                entries.append({"header": inject["header"], "format": inject["format"], "env": var})
            else:
                var = inject["env"]
                entries.append({"env": var})
            env[var] = f"gigph_{secrets.token_hex(16)}"
        return entries, env

    def engine_input(self, tools: list[str] | None = None) -> tuple[dict[str, Any], dict[str, str]]:
        credentials, env = self.credentials()
        spec = copy.deepcopy(self.toolspec)  # the parsed catalog is shared by every test
        return {"spec": spec, "credentials": credentials, "tools": tools}, env


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """YAML 1.2 booleans: only true/false. PyYAML's YAML 1.1 reads ``on``, ``off``,
    ``yes``, ``no`` as booleans, and the catalog has a param named ``on`` (mixpanel);
    the reference's parser keeps it a string, as a string field."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def _load(path: Path) -> dict[str, Any]:
    data = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)
    assert isinstance(data, dict), path
    # The engine gets JSON: anything YAML typed beyond JSON would show up here.
    json.dumps(data)
    return data


@functools.cache
def _all() -> tuple[Entry, ...]:
    if not MANIFESTS.is_dir():
        # The catalog is the project's shared test data (AGPL, never copied here): a
        # checkout without ../shared beside it skips, saying so, like tests/registry.
        pytest.skip(f"registry catalog not found at {MANIFESTS}")
    out: list[Entry] = []
    for spec_path in sorted(MANIFESTS.glob("*/*.toolspec.yaml")):
        manifest_path = spec_path.with_name(spec_path.name.replace(".toolspec.yaml", ".yaml"))
        out.append(Entry(spec_path.parent.name, _load(manifest_path), _load(spec_path)))
    return tuple(out)


def entries() -> list[Entry]:
    """Every catalog entry with a toolspec, sorted by name; parsed once per session."""
    return list(_all())


def entry(name: str) -> Entry:
    for e in entries():
        if e.name == name:
            return e
    raise KeyError(name)
