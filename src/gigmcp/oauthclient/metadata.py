"""An authorization server's metadata (RFC 8414, or OpenID Connect discovery), fetched
through the guard and checked before anything in it is believed.

The document is asked for at RFC 8414's well-known URL (``/.well-known/
oauth-authorization-server`` inserted before the issuer's path), then at OpenID
Connect's (``/.well-known/openid-configuration`` appended). Its ``issuer`` must be
exactly the one asked for (RFC 8414 §3.3): a document naming another issuer is how a
mix-up starts, and is refused. Endpoints it names are kept as URLs; whether the gateway
may dial them is the transport's decision at each use (``outbound.py``), so a document
that points the token endpoint at a private address gets nowhere.

Owns reading and checking the document. It must never accept one whose issuer differs
from the one asked for, or an endpoint that is not an http(s) URL.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from gigmcp.errors import Invalid
from gigmcp.oauthclient.outbound import Outbound, OutboundFailed, origin_of, shown


class MetadataError(Invalid):
    """The authorization server's metadata is missing, malformed or names another issuer."""


@dataclass(frozen=True, slots=True)
class ServerMetadata:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    revocation_endpoint: str | None
    code_challenge_methods: tuple[str, ...]
    iss_parameter: bool  # RFC 9207: the authorization response carries ``iss``
    registration_endpoint: str | None = None
    client_id_metadata_document: bool = False  # CIMD
    scopes_supported: tuple[str, ...] = ()


def well_known_urls(issuer: str) -> list[str]:
    u = urlsplit(issuer)
    path = u.path.rstrip("/")
    return [
        urlunsplit((u.scheme, u.netloc, "/.well-known/oauth-authorization-server" + path, "", "")),
        urlunsplit((u.scheme, u.netloc, path + "/.well-known/openid-configuration", "", "")),
    ]


async def first_document(
    http: Outbound, urls: list[str], what: str, trusted: frozenset[str] = frozenset()
) -> tuple[str, Any]:
    """The first of ``urls`` that answers 200, as (url, parsed JSON). One that cannot be
    reached or answers otherwise is passed over (said in the error if none answers);
    one that answers 200 with something other than JSON is an error at once."""
    problems: list[str] = []
    for url in urls:
        try:
            answer = await http.request(
                "GET", url, trusted=trusted, headers={"Accept": "application/json"}
            )
        except OutboundFailed as exc:
            problems.append(str(exc))
            continue
        if answer.status != 200:
            problems.append(f"{shown(url)} answered {answer.status}")
            continue
        try:
            return url, json.loads(answer.body)
        except ValueError:
            raise MetadataError(f"{shown(url)}: the {what} is not JSON") from None
    raise MetadataError(f"no {what} at {', '.join(map(shown, urls))}: {'; '.join(problems)}")


async def discover(http: Outbound, issuer: str, trusted: frozenset[str]) -> ServerMetadata:
    """The checked metadata of ``issuer``; MetadataError when no document is right."""
    _url_found, doc = await first_document(
        http, well_known_urls(issuer), "authorization server metadata", trusted
    )
    return parse(doc, issuer)


def _url(doc: dict[str, Any], name: str, required: bool) -> str | None:
    value = doc.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or urlsplit(value).scheme not in ("https", "http"):
        raise MetadataError(f"the authorization server's metadata has no valid {name}")
    return value


def parse(doc: Any, issuer: str) -> ServerMetadata:
    if not isinstance(doc, dict):
        raise MetadataError("the authorization server's metadata is not an object")
    if doc.get("issuer") != issuer:
        raise MetadataError(
            f"the metadata of {shown(issuer)} names another issuer "
            f"({shown(str(doc.get('issuer')))}): refused (RFC 8414 §3.3, a mix-up)"
        )
    methods = doc.get("code_challenge_methods_supported") or []
    if not isinstance(methods, list):
        methods = []
    auth = _url(doc, "authorization_endpoint", True)
    token = _url(doc, "token_endpoint", True)
    assert auth is not None
    assert token is not None
    return ServerMetadata(
        issuer=issuer,
        authorization_endpoint=auth,
        token_endpoint=token,
        revocation_endpoint=_url(doc, "revocation_endpoint", False),
        code_challenge_methods=tuple(m for m in methods if isinstance(m, str)),
        iss_parameter=doc.get("authorization_response_iss_parameter_supported") is True,
        registration_endpoint=_url(doc, "registration_endpoint", False),
        client_id_metadata_document=doc.get("client_id_metadata_document_supported") is True,
        scopes_supported=tuple(s for s in doc.get("scopes_supported") or [] if isinstance(s, str)),
    )


def same_origin(a: str, b: str) -> bool:
    return origin_of(a) == origin_of(b)
