"""Settings from the environment (DESIGN §4); every secret may also come from ``*_FILE``.

Owns parsing and validation only. A bad value raises :class:`ConfigError` with one line
naming the variable and the fix; it never echoes a secret value, and the master key's
repr is redacted.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TypedDict
from urllib.parse import urlparse

from gigmcp import filemodes
from gigmcp.errors import ConfigurationError
from gigmcp.sandbox.mode import MODES as SANDBOX_MODES


class ConfigError(ConfigurationError):
    """A configuration value is missing or wrong; the message is one line for the operator."""


class Secret(bytes):
    """Bytes that never show themselves in a repr or a log line."""

    def __repr__(self) -> str:
        return "Secret(<redacted>)"

    __str__ = __repr__


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    database_url: str
    listen: str = "127.0.0.1:8080"
    master_key: Secret | None = field(default=None, repr=False)
    # During a master key rotation: the key being retired, readable only.
    master_key_previous: Secret | None = field(default=None, repr=False)
    public_url: str | None = None
    oidc_issuer: str | None = None
    oidc_client_id: str | None = None
    oidc_redirect_url: str | None = None
    oidc_client_secret: Secret | None = field(default=None, repr=False)
    admin_emails: tuple[str, ...] = ()
    admin_subjects: tuple[str, ...] = ()
    # The claim that lists a user's roles (a list, or an object keyed by role, e.g.
    # Zitadel's urn:zitadel:iam:org:project:roles), and the role that makes an admin.
    oidc_roles_claim: str | None = None
    oidc_admin_role: str | None = None
    # Scopes asked beyond "openid email profile" (e.g. "groups"), space-separated.
    oidc_scopes: str = ""
    # Reverse proxies whose X-Forwarded-For is believed (addresses or CIDR blocks).
    trusted_proxies: tuple[str, ...] = ()
    # Administrators may view the gateway as another user, read-only (off by default).
    impersonation: bool = False
    registry_index_url: str | None = None
    registry_pubkey: str | None = None
    # An index older than this is a frozen registry: a warning, or refused with
    # GIG_REGISTRY_STALE=refuse. None: no limit.
    registry_max_age: timedelta | None = None
    registry_refuse_stale: bool = False
    # Seconds between background refreshes of the index (once across replicas); 0: off.
    registry_refresh: int = 3600
    # Installed packages; must be reachable by the jails' uids (not under a 0700 dir).
    packages_dir: Path = Path("/var/lib/gigmcp/packages")
    # OCI registries reached over plain http (host:port; loopback mirrors, tests).
    oci_plain_http: tuple[str, ...] = ()
    # Package sources for mirrors and offline installs (None: npm's and PyPI's own).
    npm_registry: str | None = None
    npm_cache: Path | None = None
    npm_offline: bool = False
    pypi_index_url: str | None = None
    pypi_find_links: Path | None = None  # wheels from this folder only (no index)
    sandbox_subnet: str = "10.213.0.0/16"
    sandbox_pool: int = 2
    sandbox_mode: str = "auto"  # auto | root | userns (sandbox/mode.py)
    egress_port: int = 3128  # and the next two, for transparent HTTP and TLS
    egress_dns: str | None = None  # a DNS server for the proxy, else the system resolver
    egress_ca_bundle: Path | None = None  # extra CAs to trust upstream (PEM)
    # Upstream ports beyond 443 and 80 that servers may be granted (none by default).
    egress_extra_ports: tuple[int, ...] = ()
    # Addresses of the gateway's own host the proxy may dial anyway (none by default).
    egress_allow_host_addresses: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    egress_audit_days: int = 30  # egress audit rows older than this are deleted
    audit_days: int = 365  # audit events (calls, changes, sign-ins) older: deleted
    drain_seconds: int = 30  # on SIGTERM: how long in-flight requests may finish
    allowed_origins: tuple[str, ...] = ()
    max_body_bytes: int = 4 * 1024 * 1024
    request_timeout: float = 120.0
    idle_timeout: float = 600.0
    # Seconds a tools/call of a client that declared tasks may run before it answers
    # with a task handle instead of the result.
    task_after: float = 1.0
    # Memory the gateway itself spends for servers and clients, which the jails' cgroups
    # do not bound: one message from a server; each client stream's queue and each
    # session's replay buffer; concurrent server→client requests per instance; stored
    # task results per profile.
    max_message_bytes: int = 4 * 1024 * 1024
    client_buffer_bytes: int = 1024 * 1024
    max_server_requests: int = 16
    task_result_bytes: int = 64 * 1024 * 1024
    # Legacy sessions, so that no client can pile them up: per token, per profile, in
    # all; idle expiry.
    sessions_per_token: int = 100
    sessions_per_profile: int = 1000
    max_sessions: int = 10_000
    session_idle_timeout: float = 3600.0
    log_level: str = "info"
    log_format: str = "text"  # text | json (telemetry/logjson.py)
    # Observability (docs/operations.md, "Metrics, traces and JSON logs"): both off by
    # default. Metrics on a listener of their own (never the MCP port); traces to an
    # OTLP/HTTP collector's base URL, a trace the gateway starts kept with this ratio.
    metrics_listen: str | None = None
    otlp_endpoint: str | None = None
    otlp_sample_ratio: float = 1.0

    @property
    def oidc_enabled(self) -> bool:
        return self.oidc_issuer is not None

    @property
    def loopback_only(self) -> bool:
        host = self.listen.rpartition(":")[0].strip("[]")
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return host == "localhost"

    @property
    def sign_in(self) -> str:
        """How people sign in to the control plane: ``oidc`` with an identity provider;
        ``link`` (the embedded default: one-time links for the local administrator) when
        there is none and the gateway listens on loopback only; else ``off`` (the API
        answers that it is disabled, the MCP endpoints work)."""
        if self.oidc_enabled:
            return "oidc"
        # Both the listener and the address browsers use must be loopback: a public URL
        # elsewhere means a proxy puts the gateway in front of others.
        local = self.loopback_only and _loopback_host(urlparse(self.public_origin).hostname)
        return "link" if local else "off"

    @property
    def public_origin(self) -> str:
        """scheme://host[:port] as browsers see the gateway: GIG_PUBLIC_URL's, else the
        listen address's."""
        if self.public_url:
            return origin_of(self.public_url)
        host, _, port = self.listen.rpartition(":")
        return origin_of(f"http://{_bracketed(host.strip('[]'))}:{port}")

    def with_listen(self, listen: str) -> Settings:
        return dataclasses.replace(self, listen=_listen("--listen", listen))


def _switch(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "off").strip().lower()
    if raw not in ("on", "off"):
        raise ConfigError(f"{name}: expected on or off, got {raw!r}")
    return raw == "on"


def origin_of(url: str) -> str:
    """scheme://host[:port] as a browser writes it in ``Origin``: the host lowercased,
    an IPv6 address in brackets, the scheme's default port left out, no user info."""
    u = urlparse(url)
    host = (u.hostname or "").lower()
    default = {"http": 80, "https": 443}.get(u.scheme)
    port = "" if u.port is None or u.port == default else f":{u.port}"
    return f"{u.scheme}://{_bracketed(host)}{port}"


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _loopback_host(host: str | None) -> bool:
    if not host:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _read(env: Mapping[str, str], name: str, secret: bool = False) -> str | None:
    direct = env.get(name)
    path = env.get(f"{name}_FILE")
    if direct is not None and path is not None:
        raise ConfigError(f"{name} and {name}_FILE are both set; set only one")
    if path is not None:
        try:
            with open(path, encoding="utf-8") as f:
                if secret:
                    # Checked on the open file: a key others can read may have leaked.
                    filemodes.check_secret_file(f.fileno(), path, f"{name}_FILE")
                return f.read().strip()
        except filemodes.ModeError as exc:
            raise ConfigError(str(exc)) from None
        except OSError as exc:
            raise ConfigError(f"{name}_FILE: cannot read {path}: {exc.strerror}") from exc
    if direct is not None and secret:
        return direct.strip()
    return direct


def _listen(name: str, value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host:
        raise ConfigError(f"{name}: expected HOST:PORT (IPv6 in brackets), got {value!r}")
    try:
        port_n = int(port)
    except ValueError:
        port_n = -1
    if not 0 < port_n < 65536:
        raise ConfigError(f"{name}: port must be 1-65535, got {port!r}")
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if bare != "localhost":
        try:
            ipaddress.ip_address(bare)
        except ValueError as exc:
            raise ConfigError(f"{name}: {host!r} is not an IP address or localhost") from exc
    return value


def _count(name: str, raw: str, low: int, high: int) -> int:
    if not raw.strip().isdigit() or not low <= int(raw) <= high:
        raise ConfigError(f"{name}: expected a whole number {low}-{high}, got {raw!r}")
    return int(raw)


def _refresh(raw: str) -> int:
    """GIG_REGISTRY_REFRESH: 0 (off), or a minute to a week: more often would make
    every gateway hammer the registry, less would leave revocations unseen for long."""
    if raw.strip() == "0":
        return 0
    if not raw.strip().isdigit() or not 60 <= int(raw) <= 604_800:
        raise ConfigError(
            f"GIG_REGISTRY_REFRESH: expected 0 (off) or seconds from 60 to 604800, got {raw!r}"
        )
    return int(raw)


def _bytes(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    """A byte count, plain or with a K/M/G suffix (binary units: 4M is 4 MiB)."""
    raw = env.get(name)
    if raw is None:
        return default
    m = re.fullmatch(r"\s*(\d{1,13})\s*([KMG]?)i?B?\s*", raw, re.IGNORECASE)
    value = int(m.group(1)) << {"": 0, "K": 10, "M": 20, "G": 30}[m.group(2).upper()] if m else -1
    if not low <= value <= high:
        raise ConfigError(
            f"{name}: expected a byte count from {low} to {high} (suffix K, M or G allowed), "
            f"got {raw!r}"
        )
    return value


def _port(name: str, raw: str) -> int:
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise ConfigError(f"{name}: expected a port number 1-65535, got {raw!r}")
    return int(raw)


def _egress_port(raw: str) -> int:
    port = _port("GIG_EGRESS_PORT", raw)
    if port > 65532:
        raise ConfigError(
            "GIG_EGRESS_PORT: the proxy uses this port and the next three; at most 65532"
        )
    return port


def _dns_server(raw: str | None) -> str | None:
    if raw is None or not raw.strip():
        return None
    host, sep, port = raw.strip().rpartition(":") if raw.count(":") == 1 else (raw.strip(), "", "")
    try:
        ipaddress.ip_address(host.strip("[]") if sep else raw.strip())
    except ValueError:
        raise ConfigError(f"GIG_EGRESS_DNS: expected an IP address[:port], got {raw!r}") from None
    if sep:
        _port("GIG_EGRESS_DNS", port)
    return raw.strip()


def _extra_ports(raw: str | None) -> tuple[int, ...]:
    items = [p.strip() for p in (raw or "").split(",") if p.strip()]
    for p in items:
        if not p.isdigit() or not 0 < int(p) < 65536:
            raise ConfigError(
                f"GIG_EGRESS_EXTRA_PORTS: expected port numbers 1-65535 separated by commas, "
                f"not {p[:20]!r}"
            )
    return tuple(dict.fromkeys(int(p) for p in items))


def _host_addresses(
    raw: str | None,
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    out: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for item in (i.strip() for i in (raw or "").split(",")):
        if not item:
            continue
        try:
            out.append(ipaddress.ip_network(item, strict=True))
        except ValueError as exc:
            raise ConfigError(
                f"GIG_EGRESS_ALLOW_HOST_ADDRESSES: {item[:50]!r} is not an IP address or "
                f"CIDR network ({exc})"
            ) from None
    return tuple(dict.fromkeys(out))


def _ca_bundle(raw: str | None) -> Path | None:
    if raw is None or not raw.strip():
        return None
    path = Path(raw)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"GIG_EGRESS_CA_BUNDLE: cannot read {path}: {exc.strerror}") from None
    if "-----BEGIN CERTIFICATE-----" not in text:
        raise ConfigError(f"GIG_EGRESS_CA_BUNDLE: {path} holds no PEM certificate")
    return path


def _number(env: Mapping[str, str], name: str, default: float, minimum: float) -> float:
    raw = env.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise ConfigError(f"{name}: expected a number, got {raw!r}") from exc
    if value < minimum:
        raise ConfigError(f"{name}: must be at least {minimum}, got {raw!r}")
    return value


def _url(name: str, value: str | None, schemes: tuple[str, ...]) -> str | None:
    if value is None:
        return None
    parsed = urlparse(value)
    if parsed.scheme not in schemes or (parsed.scheme != "file" and not parsed.netloc):
        raise ConfigError(f"{name}: expected a {'/'.join(schemes)} URL, got {value!r}")
    if parsed.username is not None or parsed.password is not None:
        # It would be copied into links and client configuration for everyone to see.
        raise ConfigError(f"{name}: a URL with user info (user:password@) is not accepted")
    return value


def _master_key(raw: str | None, name: str = "GIG_MASTER_KEY") -> Secret | None:
    if raw is None:
        return None
    if len(raw) != 64 or any(c not in "0123456789abcdefABCDEF" for c in raw):
        raise ConfigError(
            f"{name}: must be 64 hex characters (32 bytes); "
            'generate one with: python3 -c "import secrets; print(secrets.token_hex(32))"'
        )
    return Secret(bytes.fromhex(raw))


def default_data_dir() -> Path:
    if os.geteuid() == 0:
        return Path("/var/lib/gigmcp")
    return Path.home() / ".local" / "share" / "gigmcp"


# Secrets the gateway reads from its environment (or the file named by ``<NAME>_FILE``).
# Once loaded they leave ``os.environ``: a child started without an explicit environment
# (a helper, a library's subprocess) would otherwise inherit them.
SECRET_VARIABLES = (
    "GIG_MASTER_KEY",
    "GIG_MASTER_KEY_PREVIOUS",
    "GIG_DATABASE_URL",
    "GIG_OIDC_CLIENT_SECRET",
)


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from ``environ``, or from the process environment, whose secrets are then
    removed from ``os.environ`` (:data:`SECRET_VARIABLES`): call it once per process."""
    settings = _load(os.environ if environ is None else environ)
    if environ is None:
        for name in SECRET_VARIABLES:
            os.environ.pop(name, None)
            os.environ.pop(f"{name}_FILE", None)
    return settings


def _load(env: Mapping[str, str]) -> Settings:
    data_dir = Path(env.get("GIG_DATA_DIR") or default_data_dir()).expanduser()
    database_url = (
        _read(env, "GIG_DATABASE_URL", secret=True) or f"sqlite:///{data_dir / 'gigmcp.db'}"
    )
    if not database_url.startswith(("sqlite:", "postgresql:", "postgresql+")):
        raise ConfigError("GIG_DATABASE_URL: expected sqlite:///PATH or postgresql://...")
    oidc = {
        k: env.get(k) for k in ("GIG_OIDC_ISSUER", "GIG_OIDC_CLIENT_ID", "GIG_OIDC_REDIRECT_URL")
    }
    present = [k for k, val in oidc.items() if val]
    if present and len(present) != len(oidc):
        missing = ", ".join(k for k, val in oidc.items() if not val)
        raise ConfigError(f"OIDC is all-or-none: {missing} missing (set all three or none)")
    secret = _read(env, "GIG_OIDC_CLIENT_SECRET", secret=True)
    if secret and not present:
        raise ConfigError(
            "GIG_OIDC_CLIENT_SECRET: set without GIG_OIDC_ISSUER; configure OIDC fully"
        )
    subnet = env.get("GIG_SANDBOX_SUBNET", "10.213.0.0/16")
    try:
        net = ipaddress.ip_network(subnet, strict=True)
    except ValueError as exc:
        raise ConfigError(f"GIG_SANDBOX_SUBNET: not a CIDR network: {subnet!r}") from exc
    if net.version != 4 or net.prefixlen > 28:
        raise ConfigError("GIG_SANDBOX_SUBNET: needs an IPv4 network of /28 or larger")
    sandbox_mode = env.get("GIG_SANDBOX_MODE", "auto").strip().lower()
    if sandbox_mode not in SANDBOX_MODES:
        raise ConfigError(f"GIG_SANDBOX_MODE: expected auto, root or userns, not {sandbox_mode!r}")
    origins = tuple(o.strip() for o in env.get("GIG_ALLOWED_ORIGINS", "").split(",") if o.strip())
    for origin in origins:
        parsed = urlparse(origin)
        if parsed.scheme not in ("http", "https") or not parsed.netloc or parsed.path:
            raise ConfigError(
                f"GIG_ALLOWED_ORIGINS: {origin!r} is not an origin like https://host:port"
            )
    level = env.get("GIG_LOG_LEVEL", "info").lower()
    if level not in ("debug", "info", "warning", "error"):
        raise ConfigError("GIG_LOG_LEVEL: expected debug, info, warning or error")
    log_format = env.get("GIG_LOG_FORMAT", "text").strip().lower()
    if log_format not in ("text", "json"):
        raise ConfigError(f"GIG_LOG_FORMAT: expected text or json, not {log_format[:20]!r}")
    emails = tuple(
        e.strip().lower() for e in env.get("GIG_ADMIN_EMAILS", "").split(",") if e.strip()
    )
    for email in emails:
        if "@" not in email:
            raise ConfigError(f"GIG_ADMIN_EMAILS: {email!r} is not an e-mail address")
    proxies = tuple(x.strip() for x in env.get("GIG_TRUSTED_PROXIES", "").split(",") if x.strip())
    for proxy in proxies:
        try:
            ipaddress.ip_network(proxy, strict=False)
        except ValueError:
            raise ConfigError(
                f"GIG_TRUSTED_PROXIES: {proxy!r} is not an address or CIDR block"
            ) from None
    subjects = tuple(x.strip() for x in env.get("GIG_ADMIN_SUBJECTS", "").split(",") if x.strip())
    roles_claim = env.get("GIG_OIDC_ROLES_CLAIM", "").strip() or None
    admin_role = env.get("GIG_OIDC_ADMIN_ROLE", "").strip() or None
    if (roles_claim is None) != (admin_role is None):
        raise ConfigError(
            "GIG_OIDC_ROLES_CLAIM and GIG_OIDC_ADMIN_ROLE go together: set both or neither"
        )
    pubkey = _read(env, "GIG_REGISTRY_PUBKEY")
    if pubkey is not None and (
        len(pubkey) != 64 or any(c not in "0123456789abcdef" for c in pubkey.lower())
    ):
        raise ConfigError("GIG_REGISTRY_PUBKEY: expected 64 hex characters (an ed25519 public key)")
    max_age_raw = env.get("GIG_REGISTRY_MAX_AGE", "").strip()
    max_age: timedelta | None = None
    if max_age_raw:
        m = re.fullmatch(r"(\d{1,5})([hd])", max_age_raw)
        if not m or int(m.group(1)) == 0:
            raise ConfigError(
                f"GIG_REGISTRY_MAX_AGE: expected a number of hours or days like 14d or 36h, "
                f"not {max_age_raw!r}"
            )
        n = int(m.group(1))
        max_age = timedelta(days=n) if m.group(2) == "d" else timedelta(hours=n)
    stale = env.get("GIG_REGISTRY_STALE", "warn").strip().lower()
    if stale not in ("warn", "refuse"):
        raise ConfigError(f"GIG_REGISTRY_STALE: expected warn or refuse, not {stale!r}")
    packages_raw = env.get("GIG_PACKAGES_DIR", "/var/lib/gigmcp/packages")
    if not os.path.isabs(packages_raw):
        raise ConfigError(f"GIG_PACKAGES_DIR: must be an absolute path, not {packages_raw!r}")
    plain = tuple(h.strip() for h in env.get("GIG_OCI_PLAIN_HTTP", "").split(",") if h.strip())
    for h in plain:
        if not re.fullmatch(r"[A-Za-z0-9.-]+:\d{1,5}", h):
            raise ConfigError(f"GIG_OCI_PLAIN_HTTP: expected host:port entries, not {h!r}")
    offline = env.get("GIG_NPM_OFFLINE", "0").strip()
    if offline not in ("0", "1"):
        raise ConfigError(f"GIG_NPM_OFFLINE: expected 0 or 1, not {offline!r}")
    npm_cache = env.get("GIG_NPM_CACHE")
    find_links = env.get("GIG_PYPI_FIND_LINKS")
    for var, value in (("GIG_NPM_CACHE", npm_cache), ("GIG_PYPI_FIND_LINKS", find_links)):
        if value is not None and not os.path.isdir(value):
            raise ConfigError(f"{var}: {value!r} is not a directory")
    return Settings(
        data_dir=data_dir,
        oci_plain_http=plain,
        npm_registry=_url("GIG_NPM_REGISTRY", env.get("GIG_NPM_REGISTRY"), ("http", "https")),
        npm_cache=Path(npm_cache) if npm_cache else None,
        npm_offline=offline == "1",
        pypi_index_url=_url("GIG_PYPI_INDEX_URL", env.get("GIG_PYPI_INDEX_URL"), ("https",)),
        pypi_find_links=Path(find_links) if find_links else None,
        registry_max_age=max_age,
        registry_refuse_stale=stale == "refuse",
        registry_refresh=_refresh(env.get("GIG_REGISTRY_REFRESH", "3600")),
        packages_dir=Path(packages_raw),
        database_url=database_url,
        listen=_listen("GIG_LISTEN", env.get("GIG_LISTEN", "127.0.0.1:8080")),
        sandbox_pool=_count("GIG_SANDBOX_POOL", env.get("GIG_SANDBOX_POOL", "2"), 0, 64),
        egress_port=_egress_port(env.get("GIG_EGRESS_PORT", "3128")),
        egress_dns=_dns_server(env.get("GIG_EGRESS_DNS")),
        egress_ca_bundle=_ca_bundle(env.get("GIG_EGRESS_CA_BUNDLE")),
        egress_extra_ports=_extra_ports(env.get("GIG_EGRESS_EXTRA_PORTS")),
        egress_allow_host_addresses=_host_addresses(env.get("GIG_EGRESS_ALLOW_HOST_ADDRESSES")),
        egress_audit_days=_count(
            "GIG_EGRESS_AUDIT_DAYS", env.get("GIG_EGRESS_AUDIT_DAYS", "30"), 1, 3650
        ),
        audit_days=_count("GIG_AUDIT_DAYS", env.get("GIG_AUDIT_DAYS", "365"), 1, 36500),
        drain_seconds=_count("GIG_DRAIN_SECONDS", env.get("GIG_DRAIN_SECONDS", "30"), 0, 3600),
        master_key=_master_key(_read(env, "GIG_MASTER_KEY", secret=True)),
        master_key_previous=_master_key(
            _read(env, "GIG_MASTER_KEY_PREVIOUS", secret=True), "GIG_MASTER_KEY_PREVIOUS"
        ),
        public_url=_url("GIG_PUBLIC_URL", env.get("GIG_PUBLIC_URL"), ("http", "https")),
        oidc_issuer=_url("GIG_OIDC_ISSUER", oidc["GIG_OIDC_ISSUER"] or None, ("http", "https")),
        oidc_client_id=oidc["GIG_OIDC_CLIENT_ID"] or None,
        oidc_redirect_url=_url(
            "GIG_OIDC_REDIRECT_URL", oidc["GIG_OIDC_REDIRECT_URL"] or None, ("http", "https")
        ),
        oidc_client_secret=Secret(secret.encode()) if secret else None,
        admin_emails=emails,
        admin_subjects=subjects,
        oidc_roles_claim=roles_claim,
        oidc_admin_role=admin_role,
        oidc_scopes=" ".join(env.get("GIG_OIDC_SCOPES", "").split()),
        trusted_proxies=proxies,
        impersonation=_switch(env, "GIG_IMPERSONATION"),
        registry_index_url=_url(
            "GIG_REGISTRY_INDEX_URL", env.get("GIG_REGISTRY_INDEX_URL"), ("https", "file")
        ),
        registry_pubkey=pubkey,
        sandbox_subnet=str(net),
        sandbox_mode=sandbox_mode,
        allowed_origins=origins,
        max_body_bytes=int(_number(env, "GIG_MAX_BODY_BYTES", 4 * 1024 * 1024, 1024)),
        request_timeout=_number(env, "GIG_REQUEST_TIMEOUT", 120.0, 0.1),
        idle_timeout=_number(env, "GIG_IDLE_TIMEOUT", 600.0, 0.1),
        task_after=_number(env, "GIG_TASK_AFTER", 1.0, 0.0),
        max_message_bytes=_bytes(env, "GIG_MAX_MESSAGE_BYTES", 4 << 20, 64 << 10, 1 << 30),
        client_buffer_bytes=_bytes(env, "GIG_CLIENT_BUFFER_BYTES", 1 << 20, 64 << 10, 1 << 30),
        max_server_requests=_count(
            "GIG_MAX_SERVER_REQUESTS", env.get("GIG_MAX_SERVER_REQUESTS", "16"), 1, 10_000
        ),
        task_result_bytes=_bytes(env, "GIG_TASK_RESULT_BYTES", 64 << 20, 1 << 20, 1 << 40),
        sessions_per_token=_count(
            "GIG_SESSIONS_PER_TOKEN", env.get("GIG_SESSIONS_PER_TOKEN", "100"), 1, 1_000_000
        ),
        sessions_per_profile=_count(
            "GIG_SESSIONS_PER_PROFILE", env.get("GIG_SESSIONS_PER_PROFILE", "1000"), 1, 1_000_000
        ),
        max_sessions=_count(
            "GIG_MAX_SESSIONS", env.get("GIG_MAX_SESSIONS", "10000"), 1, 10_000_000
        ),
        session_idle_timeout=_number(env, "GIG_SESSION_IDLE_TIMEOUT", 3600.0, 1.0),
        log_level=level,
        log_format=log_format,
        **_observability(env),  # metrics_listen, otlp_endpoint, otlp_sample_ratio
    )


class _Observability(TypedDict):
    metrics_listen: str | None
    otlp_endpoint: str | None
    otlp_sample_ratio: float


def _observability(env: Mapping[str, str]) -> _Observability:
    """GIG_METRICS_LISTEN, GIG_OTLP_ENDPOINT and GIG_OTLP_SAMPLE_RATIO; ``off`` (or
    unset) leaves each off."""
    raw = env.get("GIG_METRICS_LISTEN", "").strip()
    metrics = None if raw.lower() in ("", "off") else _listen("GIG_METRICS_LISTEN", raw)
    if metrics is not None and metrics == env.get("GIG_LISTEN", "127.0.0.1:8080").strip():
        raise ConfigError("GIG_METRICS_LISTEN: must differ from GIG_LISTEN (a port of its own)")
    raw = env.get("GIG_OTLP_ENDPOINT", "").strip()
    otlp = None if raw.lower() in ("", "off") else _url("GIG_OTLP_ENDPOINT", raw, ("http", "https"))
    ratio = _number(env, "GIG_OTLP_SAMPLE_RATIO", 1.0, 0.0)
    if ratio > 1.0:
        raise ConfigError(f"GIG_OTLP_SAMPLE_RATIO: expected a number from 0 to 1, got {ratio}")
    return _Observability(metrics_listen=metrics, otlp_endpoint=otlp, otlp_sample_ratio=ratio)


def _data_dir_mode(settings: Settings) -> int:
    """0700; 0711 when the packages folder lies inside the data directory (the jails'
    uids must traverse it to reach their packages, and still cannot list it)."""
    data, packages = settings.data_dir.resolve(), settings.packages_dir.resolve()
    return 0o711 if packages != data and packages.is_relative_to(data) else 0o700


def ensure_data_dir(settings: Settings) -> None:
    """The data directory, created 0700 or checked and repaired (``filemodes``' rule), and
    the SQLite database files, wherever ``GIG_DATABASE_URL`` puts them. At start-up of
    ``serve`` and of every command; a refusal is one line naming the variable."""
    mode = _data_dir_mode(settings)
    try:
        filemodes.private_dir(settings.data_dir, "GIG_DATA_DIR", mode)
        if mode != 0o700:
            # Others may reach an entry by its name: each stays private on its own.
            packages = settings.packages_dir.resolve().relative_to(settings.data_dir.resolve())
            for entry in os.scandir(settings.data_dir):
                path = Path(entry.path)
                if entry.name in (packages.parts[0], "master.key") or entry.is_symlink():
                    continue  # the jails' folder; the key has a stricter rule of its own
                if entry.is_dir():
                    filemodes.private_dir(path, "GIG_DATA_DIR")
                elif entry.is_file():
                    filemodes.private_file(path, "GIG_DATA_DIR")
        database = filemodes.sqlite_database(settings.database_url)
        if database is not None:
            filemodes.sqlite_files(database, "GIG_DATABASE_URL", create=False)
    except filemodes.ModeError as exc:
        raise ConfigError(str(exc)) from None


def ensure_master_key(settings: Settings) -> str | None:
    """Make sure a master key exists; return a loud notice when one was generated.

    With neither ``GIG_MASTER_KEY`` nor ``GIG_MASTER_KEY_FILE``, the key lives in
    ``<data_dir>/master.key`` (0600); a key file readable by others is refused.
    """
    ensure_data_dir(settings)
    if settings.master_key is not None:
        return None
    path = settings.data_dir / "master.key"
    if path.exists():
        try:
            with open(path, encoding="utf-8") as f:
                filemodes.check_secret_file(f.fileno(), str(path), "GIG_MASTER_KEY")
                _master_key(f.read().strip(), f"master key file {path}")
        except filemodes.ModeError as exc:
            raise ConfigError(str(exc)) from None
        except OSError as exc:
            raise ConfigError(f"GIG_MASTER_KEY: cannot read {path}: {exc.strerror}") from exc
        return None
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32) + "\n")
    return (
        "*" * 72 + f"\n* gigmcp: no GIG_MASTER_KEY given: generated a new master key in {path}\n"
        "* (mode 0600). Back it up: without it the vault cannot be decrypted.\n" + "*" * 72
    )


def master_keys(settings: Settings) -> tuple[Secret, Secret | None]:
    """The current master key and the previous one (during a rotation), after
    :func:`ensure_master_key`: from the environment, or from the data directory."""
    current = settings.master_key
    if current is None:
        path = settings.data_dir / "master.key"
        try:
            current = _master_key(path.read_text().strip(), f"master key file {path}")
        except OSError as exc:
            raise ConfigError(f"GIG_MASTER_KEY: cannot read {path}: {exc.strerror}") from exc
    assert current is not None
    if settings.master_key_previous is not None and settings.master_key_previous == current:
        raise ConfigError("GIG_MASTER_KEY_PREVIOUS: is the same key as GIG_MASTER_KEY")
    return current, settings.master_key_previous
