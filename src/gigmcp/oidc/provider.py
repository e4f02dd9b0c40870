"""The identity provider as the gateway sees it: its discovery document and signing
keys, fetched and cached, and the two calls of the code flow (the authorize URL, the
code exchange).

Owns the HTTP to the provider (httpx2, verified TLS; plain http only for a loopback
issuer, which is what tests use), caching the discovery document and the JWKS and
fetching the keys again when a token names a key the cache does not hold (the
provider rotated its keys), and client authentication at the token
endpoint (``client_secret_basic`` with the id and secret form-encoded as RFC 6749 §2.3.1
says, or none for a public client, which PKCE protects). It must never send the client
secret anywhere but the token endpoint, follow a redirect there, or trust a discovery
document whose issuer is not the configured one.
"""

from __future__ import annotations

import base64
import ipaddress
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote_plus, urlencode, urlsplit

import httpx2 as httpx
from joserfc.jwk import KeySet

from gigmcp.errors import ConfigurationError, Unauthenticated
from gigmcp.oidc import verify
from gigmcp.oidc.flow import Flow

# No minimum wait before fetching the keys again on an unknown kid: an ID token reaches
# this module only from the provider's own token endpoint, in exchange for a one-time
# code, so a miss costs at most one fetch per sign-in, and refusing the first sign-in
# after a rotation would be the only effect of waiting. Fetches are one at a time.
JWKS_REFRESH_MIN_S = 0.0
DISCOVERY_TTL_S = 3600.0
TIMEOUT_S = 10.0
SCOPES = "openid email profile"


@dataclass(frozen=True, slots=True)
class ClientConfig:
    issuer: str
    client_id: str
    redirect_url: str
    client_secret: str | None = None
    scopes: str = SCOPES


def plain_http_allowed(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


class Provider:
    def __init__(self, client: ClientConfig, http: httpx.Client | None = None) -> None:
        if urlsplit(client.issuer).scheme != "https" and not plain_http_allowed(client.issuer):
            raise ConfigurationError("GIG_OIDC_ISSUER must be https (plain http only on loopback)")
        self.client = client
        self._http = http or httpx.Client(timeout=TIMEOUT_S, follow_redirects=False)
        self._lock = threading.Lock()
        self._fetching = threading.Lock()
        self._meta: Mapping[str, Any] | None = None
        self._meta_at = 0.0
        self._keys: KeySet | None = None
        self._keys_at = 0.0

    # --- metadata and keys -------------------------------------------------------------

    def metadata(self) -> Mapping[str, Any]:
        with self._lock:
            if self._meta is None or time.monotonic() - self._meta_at > DISCOVERY_TTL_S:
                url = self.client.issuer.rstrip("/") + "/.well-known/openid-configuration"
                meta = self._get_json(url)
                if meta.get("issuer") != self.client.issuer:
                    raise Unauthenticated("the provider's discovery names another issuer")
                for field in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
                    if not isinstance(meta.get(field), str):
                        raise Unauthenticated(f"the provider's discovery has no {field}")
                self._meta, self._meta_at = meta, time.monotonic()
            return self._meta

    def keys(self, refresh: bool = False) -> KeySet:
        meta = self.metadata()
        with self._fetching:
            stale = refresh and time.monotonic() - self._keys_at >= JWKS_REFRESH_MIN_S
            if self._keys is not None and not stale:
                return self._keys
            jwks = self._get_json(str(meta["jwks_uri"]))
            try:
                keys = KeySet.import_key_set(jwks)  # type: ignore[arg-type]
            except Exception:
                raise Unauthenticated("the provider's key set cannot be read") from None
            self._keys, self._keys_at = keys, time.monotonic()
            return keys

    def _get_json(self, url: str) -> Mapping[str, Any]:
        self._check_url(url)
        try:
            r = self._http.get(url, headers={"Accept": "application/json"})
        except httpx.HTTPError:
            raise Unauthenticated("the identity provider cannot be reached") from None
        if r.status_code != 200:
            raise Unauthenticated(f"the identity provider answered {r.status_code}")
        try:
            data = r.json()
        except ValueError:
            raise Unauthenticated("the identity provider's answer is not JSON") from None
        if not isinstance(data, dict):
            raise Unauthenticated("the identity provider's answer is not an object")
        return data

    def _check_url(self, url: str) -> None:
        if urlsplit(url).scheme != "https" and not plain_http_allowed(url):
            raise Unauthenticated("the identity provider named a plain-http endpoint")

    # --- the code flow -----------------------------------------------------------------

    def authorize_url(self, flow: Flow) -> str:
        params = {
            "response_type": "code",
            "client_id": self.client.client_id,
            "redirect_uri": self.client.redirect_url,
            "scope": self.client.scopes,
            "state": flow.state,
            "nonce": flow.nonce,
            "code_challenge": flow.challenge,
            "code_challenge_method": "S256",
        }
        endpoint = str(self.metadata()["authorization_endpoint"])
        self._check_url(endpoint)
        sep = "&" if "?" in endpoint else "?"
        return endpoint + sep + urlencode(params)

    def exchange(self, code: str, flow: Flow) -> Mapping[str, Any]:
        """The verified ID token's claims for an authorization code."""
        endpoint = str(self.metadata()["token_endpoint"])
        self._check_url(endpoint)
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.client.redirect_url,
            "code_verifier": flow.verifier,
        }
        headers = {"Accept": "application/json"}
        if self.client.client_secret is not None:
            pair = f"{quote_plus(self.client.client_id)}:{quote_plus(self.client.client_secret)}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        else:
            form["client_id"] = self.client.client_id
        try:
            r = self._http.post(endpoint, data=form, headers=headers)
        except httpx.HTTPError:
            raise Unauthenticated("the identity provider cannot be reached") from None
        if r.status_code != 200:
            raise Unauthenticated("the identity provider refused the sign-in code")
        try:
            token = r.json().get("id_token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str):
            raise Unauthenticated("the identity provider sent no ID token")
        expected = verify.Expected(self.client.issuer, self.client.client_id, flow.nonce)
        try:
            return verify.verify_id_token(token, self.keys(), expected)
        except verify.UnknownKey:
            # The provider rotated its keys: fetch them again (rate-bounded), once.
            return verify.verify_id_token(token, self.keys(refresh=True), expected)

    def end_session_url(self, post_logout: str) -> str | None:
        endpoint = self.metadata().get("end_session_endpoint")
        if not isinstance(endpoint, str):
            return None
        query = urlencode(
            {"client_id": self.client.client_id, "post_logout_redirect_uri": post_logout}
        )
        return endpoint + ("&" if "?" in endpoint else "?") + query


def roles_from(claims: Mapping[str, Any], path: str | None) -> tuple[str, ...]:
    """The roles a claim names: a list of strings (``groups``), or an object whose keys
    are the roles (Zitadel's ``urn:zitadel:iam:org:project:roles``). ``path`` is the
    claim's name, or a dotted path into nested objects when no claim has that name."""
    if not path:
        return ()
    value: Any = claims.get(path)
    if value is None and "." in path:
        value = claims
        for part in path.split("."):
            value = value.get(part) if isinstance(value, dict) else None
    if isinstance(value, list):
        return tuple(v for v in value if isinstance(v, str))
    if isinstance(value, dict):
        return tuple(k for k in value if isinstance(k, str))
    if isinstance(value, str):
        return (value,)
    return ()
