"""The authorization code grant with PKCE, refresh and revocation, against one vendor's
authorization server, for one OAuth app.

The RFC 8707 ``resource`` of the app is sent in the authorization request, in the code
exchange and in every refresh: an authorization server that issues audience-restricted
tokens otherwise hands back, on refresh, a token for some other audience (or none) that
the vendor's API refuses. Client authentication is ``client_secret_basic`` (id and
secret form-encoded first, RFC 6749 §2.3.1), ``client_secret_post``, or none for a
public client (PKCE protects it). Token answers are read strictly: a 200 without an
access token is an error, ``expires_in`` is bounded.

Owns these three calls and what their answers mean: an ``invalid_grant`` (or another
OAuth error of a 400/401 answer) is :class:`GrantRefused`, which no retry will change;
network failures, 5xx and 429 are :class:`ServerUnavailable`, which a later retry may.
It must never put a token, code, verifier or secret into an error, a log line or a repr.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote_plus, urlencode, urlsplit

from gigmcp.errors import GigError
from gigmcp.oauthclient.outbound import (
    Outbound,
    OutboundFailed,
    OutboundRefused,
    is_loopback_host,
    origin_of,
    shown,
)

MAX_EXPIRES_IN = 366 * 86400
AUTH_METHODS = ("client_secret_basic", "client_secret_post", "none")
# Parameters the gateway sets itself: an app's extra parameters cannot override them.
RESERVED_PARAMS = frozenset(
    {"response_type", "client_id", "redirect_uri", "scope", "state", "code_challenge",
     "code_challenge_method", "resource", "nonce", "request", "request_uri"}
)  # fmt: skip


class GrantRefused(GigError):
    """The authorization server refused the grant (``invalid_grant`` and the like): the
    user must connect again. ``error`` is the OAuth error code, never a token."""

    def __init__(self, vendor: str, error: str) -> None:
        super().__init__(f"{vendor} refused the grant ({error})")
        self.vendor = vendor
        self.error = error


class ServerUnavailable(GigError):
    """The authorization server could not be reached or answered 5xx/429: retry later."""


class ClientRefused(ServerUnavailable):
    """The authorization server refused the gateway's client itself (``invalid_client``,
    ``unauthorized_client``, ``invalid_scope``...): the app's business, not one user's
    grant. Retried with backoff; an administrator should look at the app."""

    def __init__(self, vendor: str, error: str) -> None:
        super().__init__(
            f"{vendor} refused the gateway's OAuth client ({error}): an administrator "
            "should check the app's client id, secret and scopes"
        )
        self.error = error


@dataclass(frozen=True, slots=True)
class AppConfig:
    """What the client needs of one app (``store/oauth.py`` reads it from the database)."""

    vendor: str
    client_id: str
    authorization_endpoint: str
    token_endpoint: str
    revocation_endpoint: str | None = None
    client_secret: bytes | None = field(default=None, repr=False)
    auth_method: str = "client_secret_basic"
    pkce: bool = True
    resource: str | None = None
    issuer: str | None = None
    extra_params: Mapping[str, str] = field(default_factory=dict)

    def trusted(self) -> frozenset[str]:
        """The loopback origins among the app's own URLs (an administrator typed them,
        or they share the issuer's origin): the only loopback the client may reach."""
        urls = (self.issuer, self.authorization_endpoint, self.token_endpoint,
                self.revocation_endpoint)  # fmt: skip
        out = set()
        for url in urls:
            if url and is_loopback_host(urlsplit(url).hostname or ""):
                out.add(origin_of(url))
        return frozenset(out)


@dataclass(frozen=True, slots=True)
class TokenSet:
    access_token: bytes = field(repr=False)
    refresh_token: bytes | None = field(repr=False)
    expires_in: int | None
    scope: tuple[str, ...] | None  # None: the server did not say (the request's scopes)
    token_type: str = "Bearer"  # noqa: S105 (a scheme's name)


def pkce_pair() -> tuple[str, str]:
    """(verifier, S256 challenge): 64 characters from the CSPRNG (RFC 7636 asks 43-128)."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class VendorClient:
    def __init__(self, app: AppConfig, http: Outbound) -> None:
        self.app = app
        self.http = http

    def authorize_url(
        self, *, state: str, challenge: str | None, scopes: list[str], redirect_uri: str
    ) -> str:
        params: dict[str, str] = {
            k: v for k, v in self.app.extra_params.items() if k not in RESERVED_PARAMS
        }
        params.update(
            response_type="code",
            client_id=self.app.client_id,
            redirect_uri=redirect_uri,
            state=state,
        )
        if scopes:
            params["scope"] = " ".join(scopes)
        if challenge is not None:
            params["code_challenge"] = challenge
            params["code_challenge_method"] = "S256"
        if self.app.resource:
            params["resource"] = self.app.resource
        endpoint = self.app.authorization_endpoint
        return endpoint + ("&" if "?" in endpoint else "?") + urlencode(params)

    async def exchange(self, code: str, verifier: str | None, redirect_uri: str) -> TokenSet:
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
        if verifier is not None:
            form["code_verifier"] = verifier
        return await self._token(form)

    async def refresh(self, refresh_token: bytes, scopes: list[str] | None = None) -> TokenSet:
        form = {"grant_type": "refresh_token", "refresh_token": refresh_token.decode()}
        if scopes:
            form["scope"] = " ".join(scopes)
        return await self._token(form)

    async def revoke(self, token: bytes, hint: str) -> bool:
        """RFC 7009; False when the app has no revocation endpoint or the server does not
        revoke this kind of token (a self-contained JWT access token, typically: the
        refresh token's revocation ends its grant). Raises ServerUnavailable when the
        server could not be told."""
        endpoint = self.app.revocation_endpoint
        if not endpoint:
            return False
        form = {"token": token.decode(), "token_type_hint": hint}
        answer = await self._post(endpoint, form)
        if answer.status == 400 and _json(answer.body).get("error") == "unsupported_token_type":
            return False
        # RFC 7009 §2.2: 200 whether or not the token was valid; 503 means try again.
        if answer.status != 200:
            raise ServerUnavailable(f"{self.app.vendor}: revocation answered {answer.status}")
        return True

    async def _token(self, form: dict[str, str]) -> TokenSet:
        if self.app.resource:
            form["resource"] = self.app.resource
        answer = await self._post(self.app.token_endpoint, form)
        doc = _json(answer.body)
        if answer.status in (400, 401) and isinstance(doc.get("error"), str):
            code = _code(doc["error"])
            # Only invalid_grant is about this user's grant; anything else is the app's.
            if code == "invalid_grant":
                raise GrantRefused(self.app.vendor, code)
            raise ClientRefused(self.app.vendor, code)
        if answer.status != 200:
            raise ServerUnavailable(
                f"{self.app.vendor}: the token endpoint answered {answer.status}"
            )
        access = doc.get("access_token")
        if not isinstance(access, str) or not access:
            raise ServerUnavailable(f"{self.app.vendor}: a token answer without an access token")
        refresh = doc.get("refresh_token")
        expires = doc.get("expires_in")
        if isinstance(expires, str):
            with contextlib.suppress(ValueError):
                expires = float(expires)  # some servers send a string
        if isinstance(expires, (int, float)) and not isinstance(expires, bool) and expires > 0:
            expires = max(1, int(expires))
        else:
            expires = None
        scope = doc.get("scope")
        return TokenSet(
            access_token=access.encode(),
            refresh_token=refresh.encode() if isinstance(refresh, str) and refresh else None,
            expires_in=min(expires, MAX_EXPIRES_IN) if expires else None,
            scope=tuple(scope.split()) if isinstance(scope, str) else None,
            token_type=str(doc.get("token_type") or "Bearer"),
        )

    async def _post(self, endpoint: str, form: dict[str, str]) -> Any:
        headers = {"Accept": "application/json"}
        app = self.app
        if app.auth_method == "client_secret_basic" and app.client_secret is not None:
            pair = f"{quote_plus(app.client_id)}:{quote_plus(app.client_secret.decode())}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        else:
            form["client_id"] = app.client_id
            if app.auth_method == "client_secret_post" and app.client_secret is not None:
                form["client_secret"] = app.client_secret.decode()
        try:
            return await self.http.request(
                "POST", endpoint, trusted=app.trusted(), data=form, headers=headers
            )
        except OutboundRefused:
            raise
        except OutboundFailed as exc:
            raise ServerUnavailable(f"{app.vendor}: {exc}") from None


def _json(body: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(body)
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def _code(error: str) -> str:
    # An OAuth error code is a short token (RFC 6749 §5.2); anything else is cut down
    # to what can be shown safely.
    cleaned = "".join(c for c in error[:64] if c.isalnum() or c in "_-.")
    return cleaned or "error"


__all__ = [
    "AUTH_METHODS",
    "AppConfig",
    "GrantRefused",
    "ServerUnavailable",
    "TokenSet",
    "VendorClient",
    "pkce_pair",
    "shown",
]  # fmt: skip
