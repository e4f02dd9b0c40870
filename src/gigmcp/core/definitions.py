"""What a server may reach and which credentials it uses: the registry manifest's
``entitlements.egress`` and ``credentials`` blocks, parsed and checked.

A credential is *sealed* when the manifest says how to inject it (``inject.header`` and
``inject.format`` holding ``{token}``): the server gets a placeholder in its variable,
and the proxy puts the real value in that header toward the credential's hosts only. It
is *entrusted* when the manifest names an environment variable (``inject.env``): the
value goes into the sandbox, and the egress allowlist still applies. ``hosts`` narrows a
credential to some of the server's egress hosts (default: all of them).

Owns parsing these definitions into frozen objects with one clear error per mistake. It
must never accept a header or format that could split a request (CR, LF, NUL), or a
credential host outside the server's own allowlist.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gigmcp.errors import Invalid
from gigmcp.netpolicy.hosts import HostError, canonical_pattern
from gigmcp.netpolicy.policy import DEFAULT_PORTS  # 443 only: plain HTTP is never a default

# The reference registry allows "-" too (google-analytics_token, zoho-crm_token).
CREDENTIAL_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
# RFC 9110 token characters: a header name can hold nothing else.
HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,64}$")
VENDOR = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
# RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ).
SCOPE = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]{1,256}$")
TYPES = ("api_key", "oauth2", "basic", "custom_env")
# Headers the proxy owns or that would change how a request is framed or routed.
FORBIDDEN_HEADERS = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "upgrade", "te", "trailer",
     "proxy-authorization", "proxy-connection", "keep-alive"}
)  # fmt: skip
# RFC 9110 field-value, as h11 checks it before sending, minus the control characters
# h11 lets through: visible characters (and obs-text), with spaces or tabs only between
# them. A rendered header outside it is refused by h11 with an error quoting the whole
# value, so it is refused here first, by name and never quoting the value.
FIELD_VALUE = re.compile(rb"[\x21-\x7e\x80-\xff]+(?:[ \t]+[\x21-\x7e\x80-\xff]+)*")


class DefinitionError(Invalid):
    """A definition is malformed; the message names the field and the fix."""


@dataclass(frozen=True, slots=True)
class Egress:
    hosts: tuple[str, ...] = ()  # canonical patterns: exact hosts or "*.suffix"
    ports: tuple[int, ...] = DEFAULT_PORTS

    def to_json(self) -> dict[str, Any]:
        return {"hosts": list(self.hosts), "ports": list(self.ports)}


@dataclass(frozen=True, slots=True)
class CredentialDef:
    id: str
    type: str
    env: str  # the variable that receives the placeholder (sealed) or the value
    header: str | None = None  # sealed: the header the proxy sets
    format: str | None = None  # sealed: e.g. "Bearer {token}"
    hosts: tuple[str, ...] = ()  # canonical patterns; empty = every egress host
    # oauth2: the vendor whose connected account supplies the token (a slug), and the
    # scopes the manifest asks of it.
    vendor: str | None = None
    scopes: tuple[str, ...] = ()

    @property
    def sealed(self) -> bool:
        return self.header is not None

    def render(self, value: str) -> str:
        """The header value carrying the real secret."""
        assert self.format is not None
        return self.format.replace("{token}", value)

    def render_bytes(self, value: bytes) -> bytes:
        """The header value carrying the real secret, byte for byte (what the proxy
        sends and what its scrubber looks for must be the same bytes)."""
        assert self.format is not None
        return self.format.encode().replace(b"{token}", value)

    def value_problem(self, value: bytes) -> str | None:
        """Why ``value`` cannot be sent in this credential's header (never quoting it),
        or None when it can: the rendered header must be a valid field value."""
        if self.format is None:
            return None
        if value != value.strip(b" \t"):
            return "the value begins or ends with a space or tab (copied with it?)"
        if not FIELD_VALUE.fullmatch(self.render_bytes(value)):
            return (
                f"the {self.header} header it makes would not be a valid HTTP field value "
                "(a control character, or spaces where they cannot be)"
            )
        return None

    def to_json(self) -> dict[str, Any]:
        inject: dict[str, str] = (
            {"header": self.header, "format": self.format or ""}
            if self.header is not None
            else {"env": self.env}
        )
        out: dict[str, Any] = {"id": self.id, "type": self.type, "inject": inject}
        if self.header is not None:
            out["env"] = self.env
        if self.hosts:
            out["hosts"] = list(self.hosts)
        if self.vendor:
            out["vendor"] = self.vendor
        if self.scopes:
            out["scopes"] = list(self.scopes)
        return out

    @property
    def connected(self) -> bool:
        """A sealed oauth2 credential with a vendor: a connected account can supply it."""
        return self.type == "oauth2" and self.vendor is not None and self.sealed


def parse_egress(raw: Mapping[str, Any] | None) -> Egress:
    raw = raw or {}
    unknown = set(raw) - {"hosts", "ports"}
    if unknown:
        raise DefinitionError(f"egress: unknown field(s) {sorted(unknown)}")
    hosts = _patterns("egress host", raw.get("hosts", []))
    ports_raw = raw.get("ports", list(DEFAULT_PORTS))
    if not isinstance(ports_raw, list) or not ports_raw:
        raise DefinitionError("egress ports: a non-empty list of port numbers")
    ports: list[int] = []
    for p in ports_raw:
        if not isinstance(p, int) or isinstance(p, bool) or not 0 < p < 65536:
            raise DefinitionError(f"egress port {p!r}: a number 1-65535")
        if p not in ports:
            ports.append(p)
    return Egress(hosts, tuple(ports))


def _patterns(what: str, raw: Any) -> tuple[str, ...]:
    if not isinstance(raw, list) or not all(isinstance(h, str) for h in raw):
        raise DefinitionError(f"{what}s: a list of host names")
    out: list[str] = []
    for h in raw:
        try:
            pattern = canonical_pattern(h)
        except HostError as exc:
            raise DefinitionError(f"{what} {h[:100]!r}: {exc}") from None
        if pattern not in out:
            out.append(pattern)
    return tuple(out)


def parse_credential(raw: Mapping[str, Any], egress: Egress) -> CredentialDef:
    if not isinstance(raw, Mapping):
        raise DefinitionError("a credential is an object with id, type and inject")
    unknown = set(raw) - {"id", "type", "provider", "vendor", "scopes", "inject", "env", "hosts"}
    if unknown:
        raise DefinitionError(f"credential: unknown field(s) {sorted(unknown)}")
    cid = raw.get("id")
    if not isinstance(cid, str) or not CREDENTIAL_ID.match(cid):
        raise DefinitionError(f"credential id {cid!r}: 1-64 of a-z, 0-9, '_', '-'")
    ctype = raw.get("type")
    if ctype not in TYPES:
        raise DefinitionError(f"credential {cid}: type must be one of {', '.join(TYPES)}")
    inject = raw.get("inject")
    if not isinstance(inject, Mapping) or not inject:
        raise DefinitionError(f"credential {cid}: inject needs header+format, or env")
    if set(inject) - {"header", "format", "env"}:
        raise DefinitionError(f"credential {cid}: inject holds header+format, or env")
    hosts = _patterns(f"credential {cid} host", raw.get("hosts", []))
    for pattern in hosts:
        if pattern not in egress.hosts:
            raise DefinitionError(
                f"credential {cid}: host {pattern} is not in the server's egress allowlist"
            )
    vendor = raw.get("vendor") or None
    if vendor is not None and (not isinstance(vendor, str) or not VENDOR.match(vendor)):
        raise DefinitionError(
            f"credential {cid}: vendor {str(vendor)[:64]!r}: a slug of a-z, 0-9, '-'"
        )
    scopes = raw.get("scopes") or []
    if not isinstance(scopes, list) or not all(
        isinstance(x, str) and SCOPE.match(x) for x in scopes
    ):
        raise DefinitionError(f"credential {cid}: scopes are a list of OAuth scope tokens")
    scope_list = tuple(dict.fromkeys(scopes))
    if "env" in inject:
        if "header" in inject or "format" in inject or "env" in raw:
            raise DefinitionError(f"credential {cid}: inject is either env, or header+format")
        return CredentialDef(
            cid, ctype, _env(cid, inject["env"]), hosts=hosts, vendor=vendor, scopes=scope_list
        )
    header, fmt = inject.get("header"), inject.get("format")
    if not isinstance(header, str) or not HEADER_NAME.match(header):
        raise DefinitionError(f"credential {cid}: inject.header {header!r} is not a header name")
    if header.lower() in FORBIDDEN_HEADERS:
        raise DefinitionError(f"credential {cid}: the proxy owns the {header} header")
    if not isinstance(fmt, str) or fmt.count("{token}") != 1:
        raise DefinitionError(f"credential {cid}: inject.format must hold {{token}} exactly once")
    if any(c in fmt for c in "\r\n\0") or len(fmt) > 256:
        raise DefinitionError(f"credential {cid}: inject.format holds a line break or is too long")
    if not FIELD_VALUE.fullmatch(fmt.replace("{token}", "x").encode()):
        # "Bearer {token} ": every request would carry a header h11 refuses to send.
        raise DefinitionError(
            f"credential {cid}: inject.format {fmt!r} does not make a valid HTTP header "
            "value (it begins or ends with a space, or holds a control character)"
        )
    env = _env(cid, raw.get("env", cid.upper().replace("-", "_")))
    return CredentialDef(cid, ctype, env, header, fmt, hosts, vendor, scope_list)


def _env(cid: str, name: Any) -> str:
    if not isinstance(name, str) or not ENV_NAME.match(name):
        raise DefinitionError(f"credential {cid}: {name!r} is not an environment variable name")
    return name


def parse_credentials(
    raw: Sequence[Mapping[str, Any]] | None, egress: Egress
) -> tuple[CredentialDef, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise DefinitionError("credentials: a list")
    out = tuple(parse_credential(c, egress) for c in raw)
    ids = [c.id for c in out]
    envs = [c.env for c in out]
    for seen, what in ((ids, "id"), (envs, "variable")):
        dupes = {x for x in seen if seen.count(x) > 1}
        if dupes:
            raise DefinitionError(f"credentials: the same {what} twice: {sorted(dupes)}")
    if out and not egress.hosts:
        raise DefinitionError("credentials need an egress allowlist to be used toward")
    return out
