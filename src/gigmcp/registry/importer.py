"""A manifest draft from an official MCP registry ``server.json``, for an operator to
complete.

``server.json`` says what to install (packages) but nothing a gateway must enforce:
which hosts the server may reach, which credentials it needs and how they are
injected, which tools it has, the integrity of the artifact. So the draft carries what
can be mapped — a ``[a-z0-9-]`` name, the version, the source repository, the first npm
or PyPI package with its arguments — and leaves everything else as ``# TODO`` comments,
each also returned in the list of todos. The draft parses (``parse_manifest``) but does
not validate until the operator fills the integrity (``TODO`` placeholders are there on
purpose) and reviews the rest.

Owns ``draft_from_server_json``. It must never look anything up (no registry query for
hashes: an operator verifies what they pin) and never emit a value it could not map
faithfully without a TODO next to it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from gigmcp.registry.errors import DraftError
from gigmcp.registry.packages import REGISTRY_TYPES
from gigmcp.registry.validate import VERSION_RE

PLACEHOLDER = "TODO"
_SEMVER_PREFIX = re.compile(r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)")


def derive_name(server_name: str) -> str:
    """``io.github.user/Weather_MCP`` → ``weather-mcp``: the part after the namespace,
    lowercased, anything outside ``[a-z0-9]`` folded into single hyphens."""
    tail = server_name.rsplit("/", 1)[-1].lower()
    return re.sub(r"[^a-z0-9]+", "-", tail).strip("-")


def _q(text: str) -> str:
    # A JSON string is a valid YAML double-quoted scalar: no quoting surprises.
    return json.dumps(text)  # ASCII only: U+2028, U+0085 would break a YAML line


def _repo(repository: Any) -> str:
    if not isinstance(repository, Mapping):
        return ""
    url = repository.get("url")
    if not isinstance(url, str):
        return ""
    repo = re.sub(r"^[a-z]+://", "", url.strip()).removesuffix(".git").rstrip("/")
    return repo


def _arguments(raw: Any, where: str, todos: list[str]) -> list[str]:
    """server.json argument objects → fixed strings; anything user-supplied is a TODO."""
    out: list[str] = []
    if not isinstance(raw, list):
        return out
    for i, arg in enumerate(raw):
        if not isinstance(arg, Mapping):
            todos.append(f"{where}[{i}] is not an object: add it by hand if needed")
            continue
        value = arg.get("value")
        variables = arg.get("variables")
        if not isinstance(value, str) or variables or "{" in value:
            hint = arg.get("valueHint") or arg.get("name") or f"#{i}"
            todos.append(f"{where}: argument {hint!r} needs a value chosen by the operator")
            continue
        if arg.get("type") == "named":
            name = arg.get("name")
            if isinstance(name, str) and name:
                out.append(name)
        out.append(value)
    return out


def _pick_package(data: Mapping[str, Any], todos: list[str]) -> Mapping[str, Any] | None:
    packages = data.get("packages")
    if not isinstance(packages, list):
        packages = []
    usable = [
        p for p in packages if isinstance(p, Mapping) and p.get("registryType") in REGISTRY_TYPES
    ]
    for p in packages:
        if isinstance(p, Mapping) and p.get("registryType") not in REGISTRY_TYPES:
            todos.append(
                f"package {p.get('identifier')!r} of type {p.get('registryType')!r} skipped: "
                "only npm and pypi packages map to a manifest package"
            )
    if data.get("remotes"):
        todos.append("remotes skipped: the gateway runs servers itself, not remote endpoints")
    if not usable:
        todos.append("no npm or pypi package: give an image (ref, digest, entrypoint) instead")
        return None
    for extra in usable[1:]:
        todos.append(f"package {extra.get('identifier')!r} skipped: a manifest runs one package")
    return usable[0]


def draft_from_server_json(data: Mapping[str, Any]) -> tuple[str, list[str]]:
    """Return (manifest YAML draft, todos). ``DraftError`` if ``data`` lacks a name or
    version."""
    if not isinstance(data, Mapping):
        raise DraftError("server.json must be an object")
    server_name = data.get("name")
    version = data.get("version")
    if not isinstance(server_name, str) or not server_name.strip():
        raise DraftError("server.json has no name")
    if not isinstance(version, str) or not version.strip():
        raise DraftError("server.json has no version")
    todos: list[str] = []
    lines = [f"# Draft from server.json {_q(server_name)} {_q(version)}: complete every TODO."]

    name = derive_name(server_name)
    if not name:
        name = PLACEHOLDER.lower()
        todos.append(f"name: choose a [a-z0-9-] name (could not derive one from {server_name!r})")
    if not VERSION_RE.fullmatch(version):
        match = _SEMVER_PREFIX.match(version)
        todos.append(f"version {version!r} is not MAJOR.MINOR.PATCH: choose the manifest version")
        manifest_version = match.group(0) if match else "0.0.0"
    else:
        manifest_version = version

    repo = _repo(data.get("repository"))
    if not repo:
        todos.append("source.repo: the server's source repository (e.g. github.com/owner/repo)")
    todos.append(f"source.tag: check that the release tag is v{manifest_version}")

    lines += ["schemaVersion: 1", f"name: {_q(name)}", f"version: {_q(manifest_version)}"]
    title = data.get("title")
    if isinstance(title, str) and title.strip():
        lines.append(f"displayName: {_q(title.strip())}")
    description = data.get("description")
    if isinstance(description, str) and description.strip():
        lines.append(f"description: {_q(description.strip())}")
    lines += [
        "source:",
        f"  repo: {_q(repo or PLACEHOLDER)}",
        f"  tag: {_q('v' + manifest_version)}",
    ]
    todos.append("tier: sealed (the proxy injects credentials) or entrusted (env)")
    lines += ["# TODO: sealed (proxy injects credentials) or entrusted (server gets env)"]
    lines.append("tier: sealed")

    package = _pick_package(data, todos)
    if package is not None:
        lines += _package_lines(package, todos)

    todos.append("entitlements.egress: every host the server must reach (nothing else is)")
    lines += ["entitlements:", "  # TODO: hosts the server may reach", "  egress: []"]
    _credential_todos(package, todos)
    lines.append("# TODO: credentials (id, type, provider, inject) for each secret needed")
    todos.append("tools: list each tool and whether it is on by default")
    lines.append("# TODO: tools (name, default) for every tool the server offers")
    return "\n".join(lines) + "\n", todos


def _package_lines(package: Mapping[str, Any], todos: list[str]) -> list[str]:
    kind = str(package.get("registryType"))
    identifier = package.get("identifier")
    pkg_version = package.get("version")
    if not isinstance(identifier, str) or not identifier:
        identifier = PLACEHOLDER
        todos.append("packages[0].identifier: the package name")
    if not isinstance(pkg_version, str) or not pkg_version:
        pkg_version = PLACEHOLDER
        todos.append("packages[0].version: the exact package version")
    transport = package.get("transport")
    if isinstance(transport, Mapping) and transport.get("type") not in (None, "stdio"):
        todos.append(f"transport {transport.get('type')!r}: the gateway runs stdio servers")
    if kind == "npm":
        todos.append(
            "packages[0].integrity: the tarball's sha512 SRI (npm view "
            f"{identifier}@{pkg_version} dist.integrity)"
        )
    else:
        todos.append(
            "packages[0].integrity: sha256:<hex> of the exact distribution file to install"
        )
    lines = [
        "packages:",
        f"  - registryType: {_q(kind)}",
        f"    identifier: {_q(identifier)}",
        f"    version: {_q(pkg_version)}",
        "    # TODO: integrity of the exact artifact",
        f"    integrity: {_q(PLACEHOLDER)}",
    ]
    for key in ("runtimeArguments", "packageArguments"):
        values = _arguments(package.get(key), f"packages[0].{key}", todos)
        if values:
            lines.append(f"    {key}: [{', '.join(_q(v) for v in values)}]")
    if kind == "pypi":
        todos.append(
            "packages[0].lock: every dependency with its version and sha256 "
            "(pip installs with --require-hashes --no-deps)"
        )
        lines += ["    # TODO: the full dependency closure, pinned with hashes", "    lock: []"]
    else:
        todos.append(
            "packages[0].lock (optional for npm): pin the dependency closure, or npm "
            "resolves dependency versions itself"
        )
    return lines


def _credential_todos(package: Mapping[str, Any] | None, todos: list[str]) -> None:
    if package is None:
        return
    env = package.get("environmentVariables")
    if not isinstance(env, list):
        return
    for var in env:
        if not isinstance(var, Mapping) or not isinstance(var.get("name"), str):
            continue
        if var.get("isSecret"):
            todos.append(
                f"credentials: {var['name']} is a secret: declare a credential "
                "(entrusted tier: inject.env; sealed: inject.header + format)"
            )
        else:
            todos.append(
                f"environment variable {var['name']} is not carried by the manifest: "
                "the sandbox clears the environment"
            )
