"""The toolspec schema (``manifests/<name>/<version>.toolspec.yaml``): a declarative
tool → HTTP mapping that the project's generic engine serves inside the sandbox.

Mirrors the reference's ``schema/toolspec.go``: strict parsing (unknown fields and wrong
types are errors naming the field path), then the rules —

* ``schemaVersion`` 1, a valid ``name`` and ``MAJOR.MINOR.PATCH`` ``version``;
* ``baseUrl`` (spec-wide, or per tool) is ``https://<host>`` and nothing else: no port,
  path, query, fragment or userinfo, and the host is a valid egress entry. Stricter
  than the reference in two corners no catalog entry uses: an empty query or fragment
  (``https://host?``) and a wildcard host (``https://*.host``) are refused;
* ``auth``, when present, has a ``header`` and a ``format`` containing ``{token}``;
* at least one tool; tool names unique and non-empty; ``method`` GET/POST/PUT/PATCH/
  DELETE; an absolute ``path``; ``encoding`` json (default) or form; a description (it
  becomes the MCP tool description);
* params share one namespace (unique, non-empty names); ``in`` is path/query/body/
  header; ``type`` string/integer/number/boolean/object/array; body params only on
  POST/PUT/PATCH; path params required; every ``{placeholder}`` in the path has an
  ``in: path`` param and every path param appears in the path; a header param must not
  be the auth header;

and the pairing with its manifest (``check_against_manifest``): same name and version,
the same tool set, every base URL host allowed by the manifest's egress (with the
proxy's matching), ``auth`` required for an entrusted manifest with credentials and
forbidden for a sealed one (there the manifest's inject is authoritative).

``to_json`` gives the validated spec as plain JSON with the reference's field names and
``omitempty`` rules: the engine consumes that.

Owns parsing, those rules and the JSON form. It must never perform a request.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from gigmcp.registry import gostruct, goyaml
from gigmcp.registry.egress_rules import NAME_RE, check_egress_entry, egress_allows
from gigmcp.registry.errors import ToolSpecError
from gigmcp.registry.gostruct import gofield, tag
from gigmcp.registry.manifest import TIER_ENTRUSTED, TIER_SEALED, Manifest
from gigmcp.registry.validate import VERSION_RE

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
BODY_METHODS = ("POST", "PUT", "PATCH")
LOCATIONS = ("path", "query", "body", "header")
PARAM_TYPES = ("string", "integer", "number", "boolean", "object", "array")
ENCODINGS = ("json", "form")
PATH_PLACEHOLDER_RE = re.compile(r"\{([^{}/]+)\}")


@dataclass(frozen=True)
class SpecAuth:
    header: str = gofield("header", default="")
    format: str = gofield("format", default="")  # holds "{token}"


@dataclass(frozen=True)
class SpecParam:
    name: str = gofield("name", default="")
    location: str = gofield("in", default="")  # path | query | body | header
    type: str = gofield("type", default="")
    required: bool = gofield("required", omitempty=True, default=False)
    description: str = gofield("description", omitempty=True, default="")


@dataclass(frozen=True)
class SpecTool:
    name: str = gofield("name", default="")
    description: str = gofield("description", default="")
    method: str = gofield("method", default="")
    path: str = gofield("path", default="")  # absolute; "{name}" binds an in:path param
    base_url: str = gofield("baseUrl", omitempty=True, default="")  # overrides the spec's
    encoding: str = gofield("encoding", omitempty=True, default="")  # json (default) | form
    params: tuple[SpecParam, ...] = gofield("params", omitempty=True, default=())


@dataclass(frozen=True)
class ToolSpec:
    schema_version: int = gofield("schemaVersion", default=0)
    name: str = gofield("name", default="")
    version: str = gofield("version", default="")
    base_url: str = gofield("baseUrl", default="")
    auth: SpecAuth | None = field(default=None, metadata=tag("auth", omitempty=True))
    tools: tuple[SpecTool, ...] = gofield("tools", default=())


def parse_toolspec(data: bytes) -> ToolSpec:
    """Parse toolspec YAML strictly (not yet validated); ``ToolSpecError`` otherwise."""
    try:
        raw = goyaml.load(data)
    except goyaml.YamlError as exc:
        raise ToolSpecError(str(exc), context="parse toolspec") from None
    spec, problems = gostruct.decode(ToolSpec, raw, coerce_scalars=True)
    if problems:
        raise ToolSpecError(problems, context="parse toolspec")
    return spec


def toolspec_from_plain(value: object) -> tuple[ToolSpec, list[str]]:
    """A toolspec from already-decoded JSON (inside ``index.json``): strict, without
    the YAML layer's scalar-to-string conversion. Returns it and its parse problems."""
    return gostruct.decode(ToolSpec, value, coerce_scalars=False)


def base_url_problem(raw: str) -> str | None:
    """None if ``raw`` is ``https://<host>`` with a valid egress host, else why not."""
    scheme, sep, rest = raw.partition("://")
    if not sep or scheme.lower() != "https":
        return f"{raw!r}: scheme must be https"
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    if authority != rest or "@" in authority:
        return f"{raw!r}: must be https://<host> with no path, query, or userinfo"
    if not authority:
        return f"{raw!r}: a host is required"
    if ":" in authority or authority.startswith("["):
        return f"{raw!r}: host only — no port"
    if authority.startswith("*."):
        # The reference lets "https://*.example.com" through; no request can go there.
        return f"{raw!r}: a concrete host is required, not a wildcard"
    return check_egress_entry(authority)


def _tool_problems(tool: SpecTool, auth: SpecAuth | None) -> list[str]:
    problems: list[str] = []
    add = problems.append
    if tool.method not in METHODS:
        add(f"method {tool.method!r} invalid: GET|POST|PUT|PATCH|DELETE")
    if not tool.path.startswith("/"):
        add(f"path {tool.path!r} must be absolute")
    if tool.base_url:
        reason = base_url_problem(tool.base_url)
        if reason is not None:
            add(f"baseUrl: {reason}")
    if tool.encoding and tool.encoding not in ENCODINGS:
        add(f"encoding {tool.encoding!r} invalid: json|form (or omitted for json)")
    if not tool.description:
        add("description is required (it becomes the MCP tool description)")

    body_allowed = tool.method in BODY_METHODS
    path_params: list[str] = []
    seen: set[str] = set()
    for param in tool.params:
        # One flat namespace: params become the properties of the tool's input schema.
        if not param.name or param.name in seen:
            add(f"param {param.name!r} empty or duplicate")
        seen.add(param.name)
        if param.location == "path":
            path_params.append(param.name)
            if not param.required:
                add(f"path param {param.name!r} must be required")
        elif param.location == "body":
            if not body_allowed:
                add(f"body param {param.name!r} not allowed on {tool.method}")
        elif param.location not in ("query", "header"):
            add(f"param {param.name!r}: in {param.location!r} invalid: path|query|body|header")
        if param.type not in PARAM_TYPES:
            add(
                f"param {param.name!r}: type {param.type!r} invalid: "
                "string|integer|number|boolean|object|array"
            )
        if param.location == "header" and auth is not None \
                and param.name.lower() == auth.header.lower():  # fmt: skip
            add(f"header param {param.name!r} collides with the auth header")
    holes: list[str] = []
    for hole in PATH_PLACEHOLDER_RE.findall(tool.path):
        holes.append(hole)
        if hole not in path_params:
            add(f"path placeholder {{{hole}}} has no in:path param")
    for name in path_params:
        if name not in holes:
            add(f"in:path param {name!r} does not appear in path {tool.path!r}")
    return problems


def toolspec_problems(spec: ToolSpec) -> list[str]:
    """Every structural problem of ``spec`` (no manifest needed); empty when valid."""
    problems: list[str] = []
    add = problems.append
    if spec.schema_version != 1:
        add(f"schemaVersion must be 1, got {spec.schema_version}")
    if not NAME_RE.fullmatch(spec.name):
        add(f"name {spec.name!r} invalid: lowercase [a-z0-9-], no underscores")
    if not VERSION_RE.fullmatch(spec.version):
        add(f"version {spec.version!r} invalid: must be MAJOR.MINOR.PATCH")
    reason = base_url_problem(spec.base_url)
    if reason is not None:
        add(f"baseUrl: {reason}")
    if spec.auth is not None and (not spec.auth.header or "{token}" not in spec.auth.format):
        add("auth requires header and a format containing {token}")
    if not spec.tools:
        add("tools must not be empty")
    seen: set[str] = set()
    for tool in spec.tools:
        if not tool.name or tool.name in seen:
            add(f"tool name {tool.name!r} empty or duplicate")
        seen.add(tool.name)
        for problem in _tool_problems(tool, spec.auth):
            add(f"tool {tool.name!r}: {problem}")
    return problems


def validate_toolspec(spec: ToolSpec) -> None:
    problems = toolspec_problems(spec)
    if problems:
        raise ToolSpecError(problems, context=f"toolspec {spec.name or '?'}@{spec.version or '?'}")


def _host_of(base_url: str) -> str:
    return re.split(r"[/?#:]", base_url.partition("://")[2], maxsplit=1)[0]


def pairing_problems(spec: ToolSpec, m: Manifest) -> list[str]:
    """Problems pairing ``spec`` with its (already validated) manifest."""
    problems: list[str] = []
    add = problems.append
    if spec.name != m.name or spec.version != m.version:
        add(f"toolspec {spec.name}@{spec.version} does not match manifest {m.name}@{m.version}")
    spec_tools = [t.name for t in spec.tools]
    manifest_tools = [t.name for t in m.tools]
    for name in manifest_tools:
        if name not in spec_tools:
            add(f"manifest tool {name!r} missing from toolspec")
    for name in spec_tools:
        if name not in manifest_tools:
            add(f"toolspec tool {name!r} not declared in manifest")
    for url in [spec.base_url] + [t.base_url for t in spec.tools if t.base_url]:
        host = _host_of(url)
        if not egress_allows(m.entitlements.egress, host):
            allowed = list(m.entitlements.egress)
            add(f"base URL host {host!r} not allowed by manifest egress {allowed}")
    if m.tier == TIER_ENTRUSTED and m.credentials and spec.auth is None:
        add("entrusted tier requires a toolspec auth block (manifest inject is env-only)")
    if m.tier == TIER_SEALED and spec.auth is not None:
        add(
            "sealed tier forbids a toolspec auth block "
            "(manifest credential inject is authoritative)"
        )
    return problems


def check_against_manifest(spec: ToolSpec, m: Manifest) -> None:
    problems = pairing_problems(spec, m)
    if problems:
        raise ToolSpecError(problems, context=f"toolspec {spec.name}@{spec.version}")


def to_json(spec: ToolSpec) -> dict[str, Any]:
    """The spec as plain JSON, with the reference's field names and omissions."""
    return gostruct.to_plain(spec)
