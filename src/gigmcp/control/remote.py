"""Remote MCP servers, added by URL: the definition, and how the gateway will identify
itself to the server's authorization server.

Adding one probes the URL with an unauthenticated ``initialize`` through the SSRF guard.
A server that answers needs no authorization. One that answers 401 is asked, as the
MCP authorization specification has it, for its protected-resource metadata (RFC 9728:
the ``resource_metadata`` of its ``WWW-Authenticate``, else the well-known URLs), whose
``resource`` must be the server's own URL (a document naming another resource would
make the gateway send the user's token elsewhere: refused); then for its authorization
server's metadata (RFC 8414 or OpenID Connect, the issuer checked exactly). The gateway
identifies itself with (``REGISTRATIONS``): a client an administrator registered by hand
and typed in, when one is given; else, by default, its Client ID Metadata Document
(served at ``<public URL>/oauth/client-metadata/<app>.json``; only where the
authorization server says it takes them and the public URL is https), else dynamic
client registration (RFC 7591). An administrator may ask for one of the two by name: a
vendor's authorization server that cannot reach the gateway's public URL (a gateway on
an internal network) cannot read a metadata document, and registration works there.
Each app has a document of its own so that an authorization server's cached copy (they
cache them for minutes) never lacks the callback of an app added since. The result is
an OAuth app (``control/oauth.py``) named ``mcp-<server>``, with the server's URL as its RFC 8707
resource, and the server's one credential: that app's connected account, as the
``Authorization`` header. Users then connect on the Accounts page as for any vendor.

Owns these steps. It must never dial an address the guard refuses, follow a redirect,
accept metadata for another resource or issuer, or return, log or audit a secret.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError

from gigmcp.control import oauth, rows
from gigmcp.control.actor import Actor
from gigmcp.control.servers import SERVER_NAME, definitions
from gigmcp.core.server_info import GATEWAY_INFO
from gigmcp.errors import Conflict, Invalid
from gigmcp.mcp import versions as v
from gigmcp.oauthclient.metadata import MetadataError, ServerMetadata, discover, first_document
from gigmcp.oauthclient.outbound import Outbound, OutboundFailed, OutboundRefused, shown
from gigmcp.store.models import Server
from gigmcp.vault.keys import Keyring

CIMD_PREFIX = "/oauth/client-metadata/"
# How the gateway identifies itself to a server's authorization server.
REGISTRATIONS = ("auto", "metadata-document", "dynamic", "pre-registered")
CLIENT_NAME = "Gig'MCP gateway"
_CHALLENGE = re.compile(r'resource_metadata\s*=\s*"([^"]+)"', re.I)


@dataclass(frozen=True, slots=True)
class PreRegistered:
    """A client an administrator registered at the authorization server by hand."""

    client_id: str
    client_secret: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class RemoteAdded:
    name: str
    url: str
    vendor: str | None  # the app users connect to (None: the server asks for none)
    client: str | None  # how the gateway identifies itself: cimd | registered | pre-registered


def vendor_of(name: str) -> str:
    """The OAuth app (vendor) a remote server's users connect to."""
    return f"mcp-{name}"[:64]


def cimd_url(public_origin: str, vendor: str) -> str:
    """The client id of an app that identifies the gateway by a metadata document."""
    return f"{public_origin}{CIMD_PREFIX}{vendor}.json"


def check_url(url: str) -> tuple[str, int]:
    """A remote server's URL: https, a host name (not an address), no user name,
    password or fragment. (host, port)."""
    try:
        u = urlsplit(url)
        port = u.port or 443
    except ValueError:
        raise Invalid("the server's URL is not a URL") from None
    if u.scheme != "https" or not u.hostname:
        raise Invalid("a remote server's URL must be https://")
    if u.username is not None or u.password is not None or u.fragment:
        raise Invalid(f"{shown(url)}: no user name, password or fragment in the URL")
    if len(url) > 2048:
        raise Invalid("the server's URL is longer than 2048 characters")
    if re.fullmatch(r"[0-9.]+|\[?[0-9a-fA-F:]+\]?", u.hostname):
        raise Invalid(f"{shown(url)}: a host name is needed, not an address")
    return u.hostname.lower(), port


def same_resource(a: str, b: str) -> bool:
    """RFC 9728 §3.3: the metadata's resource is the URL the client used (compared
    without a trailing slash, scheme and host case-insensitively)."""
    ua, ub = urlsplit(a), urlsplit(b)
    return (
        ua.scheme.lower() == ub.scheme.lower()
        and (ua.hostname or "").lower() == (ub.hostname or "").lower()
        and (ua.port or 443) == (ub.port or 443)
        and ua.path.rstrip("/") == ub.path.rstrip("/")
        and ua.query == ub.query
    )


def _prm_urls(url: str, challenge: str | None) -> list[str]:
    if challenge:
        return [challenge]
    u = urlsplit(url)
    path = u.path.rstrip("/")
    found = [
        urlunsplit((u.scheme, u.netloc, "/.well-known/oauth-protected-resource" + path, "", ""))
    ]
    if path:
        found.append(
            urlunsplit((u.scheme, u.netloc, "/.well-known/oauth-protected-resource", "", ""))
        )
    return found


async def _probe(http: Outbound, url: str) -> str | bool | None:
    """True: the server answers without authorization; else the resource-metadata URL
    of its 401 challenge (None: it named none)."""
    body = {
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": v.LEGACY_VERSIONS[0], "capabilities": {},
                   "clientInfo": GATEWAY_INFO},
    }  # fmt: skip
    answer = await http.request(
        "POST", url, json_body=body,
        headers={"Accept": "application/json, text/event-stream",
                 "MCP-Protocol-Version": v.LEGACY_VERSIONS[0]},
    )  # fmt: skip
    if answer.status == 401:
        match = _CHALLENGE.search(answer.headers.get("www-authenticate", ""))
        return match.group(1) if match else None
    if 200 <= answer.status < 300:
        return True
    raise Invalid(f"{shown(url)} answered HTTP {answer.status} to an initialize request")


async def _resource_metadata(http: Outbound, url: str, challenge: str | None) -> dict[str, Any]:
    try:
        candidate, doc = await first_document(
            http, _prm_urls(url, challenge), "protected-resource metadata"
        )
    except MetadataError as exc:
        raise Invalid(str(exc)) from None
    if not isinstance(doc, dict):
        raise Invalid(f"{shown(candidate)}: the resource metadata is not an object")
    resource = doc.get("resource")
    if not isinstance(resource, str) or not same_resource(resource, url):
        raise Invalid(
            f"the resource metadata of {shown(url)} names another resource "
            f"({shown(str(resource))}): refused (RFC 9728 §3.3)"
        )
    servers = doc.get("authorization_servers")
    if not isinstance(servers, list) or not servers or not isinstance(servers[0], str):
        raise Invalid(f"the resource metadata of {shown(url)} names no authorization server")
    return doc


async def _register(
    http: Outbound, meta: ServerMetadata, redirect: str, scopes: list[str]
) -> tuple[str, bytes | None]:
    """RFC 7591 dynamic client registration: (client_id, client_secret)."""
    assert meta.registration_endpoint is not None
    doc = {
        "client_name": CLIENT_NAME,
        "redirect_uris": [redirect],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "client_secret_basic",
    }
    answer = await http.request("POST", meta.registration_endpoint, json_body=doc,
                                headers={"Accept": "application/json"})  # fmt: skip
    if answer.status not in (200, 201):
        raise Invalid(
            f"dynamic client registration at {shown(meta.registration_endpoint)} answered "
            f"{answer.status}: enter a client registered by hand instead"
        )
    try:
        got = json.loads(answer.body)
    except ValueError:
        raise Invalid("the registration answer is not JSON") from None
    client_id, secret = got.get("client_id"), got.get("client_secret")
    if not isinstance(client_id, str) or not client_id:
        raise Invalid("the registration answer has no client_id")
    return client_id, secret.encode() if isinstance(secret, str) and secret else None


def add_remote_server(
    engine: Engine, keyring: Keyring, http: Outbound, actor: Actor, name: str, url: str,
    public_origin: str, client: PreRegistered | None = None, registration: str = "auto",
) -> RemoteAdded:  # fmt: skip
    """Add a remote server by URL, working out its authorization (module docstring)."""
    rows.writable(actor)
    if not SERVER_NAME.match(name):
        raise Invalid(f"invalid server name {name!r}: a-z, 0-9 and '-' only")
    host, port = check_url(url)
    registration = _registration(registration, client)
    vendor = vendor_of(name)
    try:
        found = asyncio.run(_discover(http, url, vendor, public_origin, client, registration))
    except (MetadataError, OutboundRefused, OutboundFailed) as exc:
        # The guard's reasons already name the URL they refused.
        said = str(exc)
        raise Invalid(said if said.startswith(shown(url)) else f"{shown(url)}: {said}") from None
    credentials: list[dict[str, Any]] = []
    how = None
    if found is not None:
        spec, how = found
        bearer = {"header": "Authorization", "format": "Bearer {token}"}
        credentials = [{"id": "access_token", "type": "oauth2", "vendor": vendor, "inject": bearer}]
        oauth.save_app(engine, keyring, http, actor, spec, create=True, for_server=True)
    egress, creds = definitions({"hosts": [host], "ports": [port]}, credentials, (port,))
    try:
        with rows.change(
            engine, actor, "server.add", server=name, detail=f"remote {shown(url)}"
        ) as s:
            s.add(
                Server(
                    name=name, owner_id=actor.user_id, command=[], env={}, env_names=[],
                    cwd=None, limits={}, egress=egress, credentials=creds,
                    origin={"kind": "remote", "url": url},
                )
            )  # fmt: skip
    except IntegrityError:
        raise Conflict(f"a server named {name!r} already exists") from None
    return RemoteAdded(name, url, vendor if found is not None else None, how)


def _registration(registration: str, client: PreRegistered | None) -> str:
    if registration not in REGISTRATIONS:
        raise Invalid(f"registration: one of {', '.join(REGISTRATIONS)}, not {registration[:40]!r}")
    if client is not None and registration not in ("auto", "pre-registered"):
        raise Invalid(
            f"a client id is a pre-registered client: registration {registration} takes none"
        )
    if client is None and registration == "pre-registered":
        raise Invalid("registration pre-registered: give the client id registered by hand")
    return "pre-registered" if client is not None else registration


async def _discover(
    http: Outbound, url: str, vendor: str, public_origin: str, client: PreRegistered | None,
    registration: str,
) -> tuple[oauth.AppSpec, str] | None:  # fmt: skip
    probe = await _probe(http, url)
    if probe is True:
        return None
    prm = await _resource_metadata(http, url, probe if isinstance(probe, str) else None)
    issuer = prm["authorization_servers"][0]
    meta = await discover(http, issuer, frozenset())
    supported = [s for s in prm.get("scopes_supported") or [] if isinstance(s, str)]
    scopes = list(supported)
    extra: dict[str, str] = {}
    # The gateway needs a refresh token: ask for offline access where the server knows
    # the scope (and, as OpenID Connect wants for it, for the consent prompt).
    if "offline_access" in meta.scopes_supported:
        # OpenID Connect's offline scope: with openid, on a consent prompt.
        scopes += [s for s in ("openid", "offline_access") if s in meta.scopes_supported]
        extra["prompt"] = "consent"
    redirect = oauth.callback_url(public_origin, vendor)
    cimd = meta.client_id_metadata_document and public_origin.startswith("https://")
    dynamic = meta.registration_endpoint is not None
    if registration == "metadata-document" and not meta.client_id_metadata_document:
        raise Invalid(
            f"the authorization server {shown(issuer)} takes no client metadata documents"
        )
    if registration == "metadata-document" and not cimd:
        raise Invalid(
            "a client metadata document needs the gateway's public URL to be https "
            f"(it is {public_origin}): set GIG_PUBLIC_URL"
        )
    if registration == "dynamic" and not dynamic:
        raise Invalid(
            f"the authorization server {shown(issuer)} has no dynamic client registration"
        )
    if client is not None:
        client_id, secret, how = client.client_id, client.client_secret, "pre-registered"
        method = "client_secret_basic" if secret else "none"
    elif cimd and registration in ("auto", "metadata-document"):
        client_id, secret, how, method = cimd_url(public_origin, vendor), None, "cimd", "none"
    elif dynamic:
        client_id, secret = await _register(http, meta, redirect, scopes)
        how, method = "registered", "client_secret_basic" if secret else "none"
    else:
        raise Invalid(
            f"the authorization server {shown(issuer)} takes neither client metadata "
            "documents nor dynamic registration: register the gateway there by hand "
            f"(redirect URI {redirect}) and give its client id"
        )
    spec = oauth.AppSpec(
        vendor=vendor, client_id=client_id, display_name=f"MCP server at {shown(url)}"[:255],
        issuer=issuer, client_secret=secret, auth_method=method, pkce=True,
        resource=url, default_scopes=tuple(scopes), extra_params=extra,
        api_hosts=(urlsplit(url).hostname or "",),
    )  # fmt: skip
    return spec, how
