"""The engine's input file, read and checked defensively.

The gateway hands the engine one JSON document::

    {"spec": <the toolspec, with the YAML's field names>,
     "credentials": [{"header": "Authorization", "format": "Bearer {token}",
                      "env": "VARIABLE_HOLDING_THE_PLACEHOLDER"}],
     "tools": ["enabled", "tool", "names"] or null,
     "limits": {"timeoutSeconds": 30, "maxResponseBytes": 4194304}}   (optional)

Owns turning that document into frozen objects, refusing anything the engine could not
serve safely with one message naming the field. The gateway validated the toolspec
already (``gigmcp.registry``); these checks are the engine's own, because it runs on the
untrusted side and must not trust a file just because it is there. It must never read
the placeholder values themselves (they are read per call, from the environment), and
never accept a header name or path that could split or re-route a request.

Two deliberate differences from the registry's rules: a base URL may carry a port (the
registry forbids one; the egress proxy is what enforces where traffic goes, and tests
point the engine at loopback servers), and ``auth`` in the spec is used only to fill in
a credential entry that names its variable but not its header and format (entrusted
tier: the manifest names the variable, the toolspec the header).
"""

from __future__ import annotations

import json
import re
import urllib.parse
from dataclasses import dataclass
from typing import Any, Final

MAX_INPUT_BYTES: Final = 16 * 2**20
METHODS: Final = ("GET", "POST", "PUT", "PATCH", "DELETE")
BODY_METHODS: Final = ("POST", "PUT", "PATCH")
LOCATIONS: Final = ("path", "query", "header", "body")
TYPES: Final = ("string", "integer", "number", "boolean", "object", "array")
ENCODINGS: Final = ("json", "form")

# RFC 9110 token: a header name can hold nothing else, so none can end a header early.
HEADER_NAME: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,128}")
ENV_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
# A DNS name in the form the registry allows (lowercase labels); ``localhost`` included.
HOST_NAME: Final = re.compile(
    r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
)
PLACEHOLDER: Final = re.compile(r"\{([^{}/]+)\}")
# Path templates: visible ASCII only, no fragment. Spaces, controls and non-ASCII would
# have to be encoded, which would make the request differ from what the spec says.
PATH_CHARS: Final = re.compile(r"/[\x21-\x7e]*")
# Headers the engine or the HTTP layer set themselves, or that change how a request is
# framed or routed: a header param of these names could smuggle a second request or
# disable the credential swap, so a spec declaring one is refused.
RESERVED_HEADERS: Final = frozenset(
    {"host", "content-length", "content-type", "transfer-encoding", "connection", "keep-alive",
     "te", "trailer", "upgrade", "proxy-authorization", "proxy-connection", "accept-encoding",
     "expect"}
)  # fmt: skip

DEFAULT_TIMEOUT: Final = 30.0
MAX_TIMEOUT: Final = 300.0
DEFAULT_MAX_RESPONSE: Final = 4 * 2**20
MIN_MAX_RESPONSE: Final = 1024
MAX_MAX_RESPONSE: Final = 64 * 2**20

_TOP_KEYS: Final = frozenset({"spec", "credentials", "tools", "limits"})
_SPEC_KEYS: Final = frozenset({"schemaVersion", "name", "version", "baseUrl", "auth", "tools"})
_AUTH_KEYS: Final = frozenset({"header", "format"})
_TOOL_KEYS: Final = frozenset(
    {"name", "description", "method", "path", "baseUrl", "encoding", "params"}
)
_PARAM_KEYS: Final = frozenset({"name", "in", "type", "required", "description"})
_CREDENTIAL_KEYS: Final = frozenset({"header", "format", "env"})
_LIMIT_KEYS: Final = frozenset({"timeoutSeconds", "maxResponseBytes"})


class InputError(ValueError):
    """The engine input is unusable; the message names the field and what is wrong."""


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a tool's requests go: always HTTPS."""

    host: str
    port: int = 443

    @property
    def authority(self) -> str:
        return self.host if self.port == 443 else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    location: str  # path | query | header | body
    type: str  # string | integer | number | boolean | object | array
    required: bool
    description: str


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    description: str
    method: str
    path: str  # template, "{name}" holes bound to path params
    origin: Origin
    encoding: str  # json | form
    params: tuple[Param, ...]

    def param(self, name: str) -> Param | None:
        for p in self.params:
            if p.name == name:
                return p
        return None


@dataclass(frozen=True, slots=True)
class Credential:
    """One header to set on every request: ``format`` with ``{token}`` replaced by the
    value of the environment variable ``env`` (a placeholder; the proxy swaps it)."""

    header: str
    format: str
    env: str


@dataclass(frozen=True, slots=True)
class Limits:
    timeout_seconds: float = DEFAULT_TIMEOUT
    max_response_bytes: int = DEFAULT_MAX_RESPONSE


@dataclass(frozen=True, slots=True)
class EngineInput:
    name: str
    version: str
    tools: tuple[Tool, ...]  # the enabled ones, in the spec's order
    credentials: tuple[Credential, ...]
    limits: Limits

    def tool(self, name: str) -> Tool | None:
        for t in self.tools:
            if t.name == name:
                return t
        return None


def _reject_constant(name: str) -> Any:
    raise InputError(f"the input holds {name}, which is not JSON")


def load_input(data: bytes) -> EngineInput:
    """Parse and check the engine input document."""
    if len(data) > MAX_INPUT_BYTES:
        raise InputError(f"the input is {len(data)} bytes; at most {MAX_INPUT_BYTES} are read")
    try:
        doc = json.loads(data.decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError as exc:
        raise InputError(f"the input is not UTF-8 (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"the input is not JSON: {exc.msg} at line {exc.lineno}") from None
    top = _object(doc, "input", _TOP_KEYS)
    if "spec" not in top:
        raise InputError("input: 'spec' is required")
    spec = _object(top["spec"], "spec", _SPEC_KEYS)
    if spec.get("schemaVersion") != 1 or isinstance(spec.get("schemaVersion"), bool):
        raise InputError(f"spec.schemaVersion must be 1, got {spec.get('schemaVersion')!r}")
    name = _text(spec.get("name"), "spec.name", limit=128)
    version = _text(spec.get("version"), "spec.version", limit=64)
    base = _origin(spec.get("baseUrl"), "spec.baseUrl")
    auth = _auth(spec.get("auth"))
    credentials = _credentials(top.get("credentials"), auth)
    credential_headers = {c.header.lower() for c in credentials}
    if auth is not None:
        credential_headers.add(auth.header.lower())

    raw_tools = spec.get("tools")
    if not isinstance(raw_tools, list) or not raw_tools:
        raise InputError("spec.tools must be a non-empty list")
    tools: list[Tool] = []
    for i, raw in enumerate(raw_tools):
        tool = _tool(raw, f"spec.tools[{i}]", base, credential_headers)
        if any(t.name == tool.name for t in tools):
            raise InputError(f"spec.tools[{i}]: tool name {tool.name!r} appears twice")
        tools.append(tool)

    enabled = top.get("tools")
    if enabled is not None:
        if not isinstance(enabled, list) or not all(isinstance(n, str) for n in enabled):
            raise InputError("input.tools must be null or a list of tool names")
        known = {t.name for t in tools}
        for n in enabled:
            if n not in known:
                raise InputError(f"input.tools: {n[:128]!r} is not a tool of this toolspec")
        if len(set(enabled)) != len(enabled):
            raise InputError("input.tools names a tool twice")
        tools = [t for t in tools if t.name in set(enabled)]
    return EngineInput(name, version, tuple(tools), credentials, _limits(top.get("limits")))


def _object(value: object, where: str, keys: frozenset[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InputError(f"{where} must be a JSON object")
    unknown = sorted(k for k in value if k not in keys)
    if unknown:
        raise InputError(f"{where}: unknown field {unknown[0][:64]!r}")
    return value


def _text(value: object, where: str, *, limit: int, empty: bool = False) -> str:
    if not isinstance(value, str):
        raise InputError(f"{where} must be a string")
    if not value and not empty:
        raise InputError(f"{where} must not be empty")
    if len(value) > limit:
        raise InputError(f"{where} is longer than {limit} characters")
    return value


def _no_controls(value: str, where: str) -> str:
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise InputError(f"{where} holds a control character")
    return value


def _origin(value: object, where: str) -> Origin:
    raw = _text(value, where, limit=300)
    try:
        parts = urllib.parse.urlsplit(raw)
        port = parts.port
    except ValueError:
        raise InputError(f"{where} {raw!r} is not a URL") from None
    host = parts.hostname or ""
    if parts.scheme != "https":
        raise InputError(f"{where} {raw!r}: the scheme must be https")
    if parts.username is not None or parts.password is not None:
        raise InputError(f"{where}: a base URL must not carry user information")
    if parts.path or parts.query or parts.fragment or raw.endswith(("?", "#")):
        raise InputError(f"{where} {raw!r}: must be https://<host> with no path or query")
    # The netloc must be exactly host[:port] in lowercase: anything urlsplit tolerated
    # (uppercase, brackets, a trailing colon) would make the Host header differ.
    expected = host if port is None else f"{host}:{port}"
    if parts.netloc != expected or not HOST_NAME.fullmatch(host):
        raise InputError(f"{where} {raw!r}: the host must be a lowercase DNS name")
    if port == 0:
        raise InputError(f"{where} {raw!r}: port 0 is not a port")
    return Origin(host, 443 if port is None else port)


def _auth(value: object) -> Credential | None:
    """The spec's ``auth`` block, kept as a credential without a variable."""
    if value is None:
        return None
    auth = _object(value, "spec.auth", _AUTH_KEYS)
    header = _header_name(auth.get("header"), "spec.auth.header")
    fmt = _format(auth.get("format"), "spec.auth.format")
    return Credential(header, fmt, "")


def _header_name(value: object, where: str) -> str:
    name = _text(value, where, limit=128)
    if not HEADER_NAME.fullmatch(name):
        raise InputError(f"{where} {name[:64]!r} is not an HTTP header name")
    if name.lower() in RESERVED_HEADERS:
        raise InputError(f"{where} {name!r} is a header the engine sets itself")
    return name


def _format(value: object, where: str) -> str:
    fmt = _no_controls(_text(value, where, limit=256), where)
    if "{token}" not in fmt:
        raise InputError(f"{where} must contain {{token}}")
    return fmt


def _credentials(value: object, auth: Credential | None) -> tuple[Credential, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise InputError("input.credentials must be a list")
    out: list[Credential] = []
    for i, raw in enumerate(value):
        where = f"input.credentials[{i}]"
        entry = _object(raw, where, _CREDENTIAL_KEYS)
        env = _text(entry.get("env"), f"{where}.env", limit=128)
        if not ENV_NAME.fullmatch(env):
            raise InputError(f"{where}.env {env[:64]!r} is not an environment variable name")
        if entry.get("header") is None and entry.get("format") is None:
            if auth is None:
                raise InputError(f"{where}: header and format are required (the spec has no auth)")
            header, fmt = auth.header, auth.format
        else:
            header = _header_name(entry.get("header"), f"{where}.header")
            fmt = _format(entry.get("format"), f"{where}.format")
        if any(c.header.lower() == header.lower() for c in out):
            raise InputError(f"{where}: header {header!r} is set by another credential")
        out.append(Credential(header, fmt, env))
    return tuple(out)


def _limits(value: object) -> Limits:
    if value is None:
        return Limits()
    raw = _object(value, "input.limits", _LIMIT_KEYS)
    timeout = raw.get("timeoutSeconds", DEFAULT_TIMEOUT)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise InputError("input.limits.timeoutSeconds must be a number")
    if not 0 < timeout <= MAX_TIMEOUT:
        raise InputError(f"input.limits.timeoutSeconds must be in (0, {MAX_TIMEOUT:g}]")
    size = raw.get("maxResponseBytes", DEFAULT_MAX_RESPONSE)
    if isinstance(size, bool) or not isinstance(size, int):
        raise InputError("input.limits.maxResponseBytes must be an integer")
    if not MIN_MAX_RESPONSE <= size <= MAX_MAX_RESPONSE:
        raise InputError(
            f"input.limits.maxResponseBytes must be in [{MIN_MAX_RESPONSE}, {MAX_MAX_RESPONSE}]"
        )
    return Limits(float(timeout), size)


def _tool(raw: object, where: str, base: Origin, credential_headers: set[str]) -> Tool:
    tool = _object(raw, where, _TOOL_KEYS)
    name = _no_controls(_text(tool.get("name"), f"{where}.name", limit=128), f"{where}.name")
    where = f"{where} ({name})"
    description = _text(tool.get("description"), f"{where}.description", limit=8192)
    method = tool.get("method")
    if method not in METHODS:
        raise InputError(f"{where}.method must be one of {'|'.join(METHODS)}")
    path = _text(tool.get("path"), f"{where}.path", limit=2048)
    if not PATH_CHARS.fullmatch(path) or "#" in path:
        raise InputError(
            f"{where}.path {path[:128]!r} must start with / and hold visible ASCII only, no #"
        )
    if PLACEHOLDER.sub("", path).count("{") or PLACEHOLDER.sub("", path).count("}"):
        raise InputError(f"{where}.path {path[:128]!r} has an unbalanced brace")
    origin = base if tool.get("baseUrl") is None else _origin(tool["baseUrl"], f"{where}.baseUrl")
    encoding = tool.get("encoding") or "json"
    if encoding not in ENCODINGS:
        raise InputError(f"{where}.encoding must be json or form")

    raw_params = tool.get("params")
    if raw_params is None:
        raw_params = []
    if not isinstance(raw_params, list):
        raise InputError(f"{where}.params must be a list")
    params: list[Param] = []
    for j, rp in enumerate(raw_params):
        param = _param(rp, f"{where}.params[{j}]", method, credential_headers)
        if any(p.name == param.name for p in params):
            raise InputError(f"{where}: param {param.name!r} appears twice")
        if param.location == "header" and any(
            p.location == "header" and p.name.lower() == param.name.lower() for p in params
        ):
            raise InputError(f"{where}: header {param.name!r} appears twice")
        params.append(param)

    holes = PLACEHOLDER.findall(path)
    path_params = {p.name for p in params if p.location == "path"}
    for hole in holes:
        if hole not in path_params:
            raise InputError(f"{where}.path: placeholder {{{hole}}} has no in:path param")
    for p in path_params:
        if p not in holes:
            raise InputError(f"{where}: in:path param {p!r} does not appear in the path")
    return Tool(name, description, str(method), path, origin, encoding, tuple(params))


def _param(raw: object, where: str, method: object, credential_headers: set[str]) -> Param:
    param = _object(raw, where, _PARAM_KEYS)
    name = _no_controls(_text(param.get("name"), f"{where}.name", limit=128), f"{where}.name")
    where = f"{where} ({name})"
    location = param.get("in")
    if location not in LOCATIONS:
        raise InputError(f"{where}.in must be one of {'|'.join(LOCATIONS)}")
    kind = param.get("type")
    if kind not in TYPES:
        raise InputError(f"{where}.type must be one of {'|'.join(TYPES)}")
    required = param.get("required")
    if required is None:
        required = False
    if not isinstance(required, bool):
        raise InputError(f"{where}.required must be true or false")
    description = param.get("description")
    if description is None:
        description = ""
    description = _text(description, f"{where}.description", limit=8192, empty=True)
    if location == "path" and not required:
        raise InputError(f"{where}: a path param must be required")
    if location == "body" and method not in BODY_METHODS:
        raise InputError(f"{where}: a body param is not allowed on {method}")
    if location == "header":
        _header_name(name, f"{where}.name")
        if name.lower() in credential_headers:
            raise InputError(f"{where}: header {name!r} is the credential's header")
    return Param(name, str(location), str(kind), required, description)
