"""A real OpenID provider for the tests, and a browser's part in signing in to it.

* :func:`start_provider` runs ``tests/peers/oidc/provider.mjs`` (oidc-provider 9 on the
  peers' Node 22) on 127.0.0.1 with a free port and a plain-HTTP issuer, configured with
  the :class:`Client` and :class:`Account` lists of one test and short TTLs; it yields a
  :class:`OidcProvider` (issuer, discovery document, key rotation) and always kills the
  process when the block ends.
* :func:`browser_login` does what a browser does between a client's authorize redirect
  and its callback: follows the provider's redirects, fills and posts its login form,
  posts its consent form, and stops at the redirect to the client's ``redirect_uri``,
  returning that URL (code, state, iss) without following it.
* :func:`pkce_pair` and :func:`authorize_url` build the client's side of a request, for
  tests of the provider itself (the gateway makes its own later).

The provider's pages, claims and key rotation are described at the top of provider.mjs.
Owns driving that peer; it must never stand in for it (no fake tokens, no canned pages).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import queue
import secrets
import signal
import subprocess
import threading
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx2 as httpx

ROOT = Path(__file__).resolve().parents[2]
PEERS = ROOT / "tests" / "peers"
NODE22 = PEERS / "node_modules" / ".bin" / "node"
PROVIDER_JS = PEERS / "oidc" / "provider.mjs"
OIDC_PROVIDER = PEERS / "node_modules" / "oidc-provider" / "package.json"

ZITADEL_ROLES = "urn:zitadel:iam:org:project:roles"
# Every scope whose claims the provider knows (its defaults): the ID token then carries
# email, email_verified, name, groups and the Zitadel roles object.
ALL_SCOPES = "openid email profile groups roles"
# Short on purpose; a test passes its own to exercise expiry.
DEFAULT_TTL = {
    "AccessToken": 300,
    "IdToken": 300,
    "AuthorizationCode": 60,
    "Session": 600,
    "Interaction": 300,
    "Grant": 600,
    "RefreshToken": 600,
}
READY_TIMEOUT = 60.0  # only catches a hung node; a start takes well under a second


def missing() -> str | None:
    """Why the provider cannot run here (one line), or None when it can."""
    if not NODE22.exists():
        return f"Node 22 binary absent ({NODE22.relative_to(ROOT)}): run scripts/bootstrap"
    if not OIDC_PROVIDER.exists():
        return "oidc-provider is not installed in tests/peers: run scripts/bootstrap"
    return None


@dataclass(frozen=True)
class Client:
    """An OAuth client registered at the provider. No secret: a public client
    (``token_endpoint_auth_method`` ``none``, PKCE required); with one:
    ``client_secret_basic``."""

    client_id: str
    redirect_uris: Sequence[str]
    client_secret: str | None = None
    grant_types: Sequence[str] = ("authorization_code", "refresh_token")
    id_token_signed_response_alg: str = "RS256"
    post_logout_redirect_uris: Sequence[str] = ()

    @property
    def public(self) -> bool:
        return self.client_secret is None

    def metadata(self) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "client_id": self.client_id,
            "redirect_uris": list(self.redirect_uris),
            "post_logout_redirect_uris": list(self.post_logout_redirect_uris),
            "grant_types": list(self.grant_types),
            "response_types": ["code"],
            "id_token_signed_response_alg": self.id_token_signed_response_alg,
        }
        if self.client_secret is None:
            meta["token_endpoint_auth_method"] = "none"
        else:
            meta["token_endpoint_auth_method"] = "client_secret_basic"
            meta["client_secret"] = self.client_secret
        return meta


@dataclass(frozen=True)
class Account:
    """A user who can sign in, with the login form's login being ``sub`` or ``email``.
    ``roles`` is the Zitadel project roles claim: ``{"admin": {"<org id>": "<org domain>"}}``.
    """

    sub: str
    password: str
    email: str | None = None
    email_verified: bool = True
    name: str | None = None
    groups: Sequence[str] = ()
    roles: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    def config(self) -> dict[str, Any]:
        return {
            "sub": self.sub,
            "password": self.password,
            "email": self.email,
            "email_verified": self.email_verified,
            "name": self.name,
            "groups": list(self.groups),
            "roles": {role: dict(orgs) for role, orgs in self.roles.items()},
        }


@dataclass
class OidcProvider:
    """A running provider. ``discovery`` is its openid-configuration, fetched at start."""

    issuer: str
    discovery: dict[str, Any]
    process: subprocess.Popen[bytes]
    log_path: Path
    clients: dict[str, Client]

    def rotate_keys(self, drop_old: bool = False) -> list[str]:
        """New RS256 and ES256 signing keys, first in the JWKS (new ID tokens use them);
        the old public keys stay in the JWKS unless ``drop_old``. Returns the new kids."""
        r = httpx.post(
            f"{self.issuer}/__test/rotate", params={"drop_old": "1" if drop_old else "0"}
        )
        r.raise_for_status()
        return list(r.json()["signing"])

    def jwks(self) -> dict[str, Any]:
        r = httpx.get(self.discovery["jwks_uri"])
        r.raise_for_status()
        return dict(r.json())

    def log(self) -> str:
        """What the provider wrote to stderr (never a password)."""
        return self.log_path.read_text(errors="replace")

    def authorize_url(
        self,
        client_id: str,
        *,
        scope: str = ALL_SCOPES,
        state: str | None = None,
        nonce: str | None = None,
        code_challenge: str | None = None,
        redirect_uri: str | None = None,
        **extra: str,
    ) -> str:
        client = self.clients[client_id]
        return authorize_url(
            self.discovery["authorization_endpoint"],
            client_id=client_id,
            redirect_uri=redirect_uri or client.redirect_uris[0],
            scope=scope,
            state=state,
            nonce=nonce,
            code_challenge=code_challenge,
            **extra,
        )

    def stop(self) -> None:
        """Kill the process (idempotent) and wait for it."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)


def _die_with_parent() -> None:
    """If pytest itself is killed (no finalizer runs), node still gets SIGKILL."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


@contextlib.contextmanager
def start_provider(
    tmp_path: Path,
    *,
    clients: Sequence[Client],
    accounts: Sequence[Account],
    ttl: Mapping[str, int] | None = None,
    port: int = 0,
    resources: Mapping[str, Mapping[str, Any]] | None = None,
    rotate_refresh_tokens: bool = False,
    tls: tuple[Path, Path] | None = None,
    host: str = "127.0.0.1",
    issuer: str | None = None,
    prefix: Sequence[str] = (),
    dynamic_registration: bool = False,
    client_id_metadata_documents: bool = False,
    extra_ca: Path | None = None,
) -> Iterator[OidcProvider]:
    """Run the provider on 127.0.0.1 (``port`` 0: a free one) until the block ends."""
    reason = missing()
    if reason:
        raise RuntimeError(reason)
    work = Path(tmp_path) / f"oidc-{secrets.token_hex(3)}"
    work.mkdir()
    config = work / "config.json"
    config.write_text(
        json.dumps(
            {
                "clients": [c.metadata() for c in clients],
                "accounts": [a.config() for a in accounts],
                "ttl": {**DEFAULT_TTL, **(ttl or {})},
                "resources": {k: dict(v) for k, v in (resources or {}).items()},
                "rotate_refresh_tokens": rotate_refresh_tokens,
                "dynamic_registration": dynamic_registration,
                "client_id_metadata_documents": client_id_metadata_documents,
            },
            indent=2,
        )
    )
    config.chmod(0o600)
    log_path = work / "provider.log"
    argv = [*prefix, str(NODE22), str(PROVIDER_JS), "--config", str(config), "--port", str(port)]
    if tls is not None:
        argv += ["--host", host, "--tls-cert", str(tls[0]), "--tls-key", str(tls[1])]
        argv += ["--issuer", issuer or f"https://{host}"]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            argv,
            cwd=PEERS,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log,
            preexec_fn=_die_with_parent,
            # A CA of the test's (its world's servers') that the vendor's fetches trust.
            env={**os.environ, "NODE_EXTRA_CA_CERTS": str(extra_ca)} if extra_ca else None,
        )
    try:
        issuer = _wait_ready(process, log_path)
        # An https issuer lives in a test's namespace under a name only its DNS knows:
        # the test reads the discovery document itself if it needs it.
        discovery = {} if tls else httpx.get(f"{issuer}/.well-known/openid-configuration").json()
        yield OidcProvider(issuer, discovery, process, log_path, {c.client_id: c for c in clients})
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


def _wait_ready(process: subprocess.Popen[bytes], log_path: Path) -> str:
    """The issuer from the ``ready <issuer>`` line; stdout is drained after it."""
    lines: queue.Queue[bytes] = queue.Queue()
    stdout = process.stdout
    assert stdout is not None

    def drain() -> None:
        with stdout:
            for line in stdout:
                lines.put(line)
        lines.put(b"")

    threading.Thread(target=drain, name="oidc-provider-stdout", daemon=True).start()
    try:
        line = lines.get(timeout=READY_TIMEOUT)
    except queue.Empty:
        line = b"(no ready line in time)"
    text = line.decode(errors="replace").strip()
    if not text.startswith(("ready http://", "ready https://")):
        process.kill()
        process.wait(timeout=10)
        raise RuntimeError(
            f"the OIDC provider did not start ({text or 'exited'}):\n"
            + log_path.read_text(errors="replace")[-4000:]
        )
    return text.split(" ", 1)[1]


# -- the client's side of a request -------------------------------------------------


def pkce_pair() -> tuple[str, str]:
    """``(code_verifier, code_challenge)`` for S256."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def authorize_url(
    authorization_endpoint: str,
    *,
    client_id: str,
    redirect_uri: str,
    scope: str = ALL_SCOPES,
    state: str | None = None,
    nonce: str | None = None,
    code_challenge: str | None = None,
    **extra: str,
) -> str:
    """A code-flow authorization request (S256 when ``code_challenge`` is given)."""
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "scope": scope,
        "state": state or secrets.token_urlsafe(16),
        "nonce": nonce or secrets.token_urlsafe(16),
    }
    if code_challenge is not None:
        params["code_challenge"] = code_challenge
        params["code_challenge_method"] = "S256"
    params.update(extra)
    return f"{authorization_endpoint}?{urllib.parse.urlencode(params)}"


def exchange_code(
    provider: OidcProvider,
    client: Client,
    code: str,
    code_verifier: str | None = None,
    *,
    form_encode_basic: bool = True,
) -> httpx.Response:
    """The token request a client makes with a code; the response as it comes.

    A public client sends ``client_id`` in the form; a confidential one HTTP Basic, whose
    id and secret RFC 6749 §2.3.1 has form-urlencoded first (oidc-provider decodes them:
    ``+`` is a space, ``%xx`` a byte). ``form_encode_basic=False`` sends them raw, as a
    client that skips that step does."""
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": client.redirect_uris[0],
    }
    if code_verifier is not None:
        data["code_verifier"] = code_verifier
    headers = {}
    if client.client_secret is None:
        data["client_id"] = client.client_id
    else:
        quote = urllib.parse.quote_plus if form_encode_basic else str
        pair = f"{quote(client.client_id)}:{quote(client.client_secret)}"
        headers["authorization"] = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
    return httpx.post(provider.discovery["token_endpoint"], data=data, headers=headers)


def callback_params(url: str) -> dict[str, str]:
    """The query of a callback URL (code, state, iss; or error, error_description)."""
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))


def jwt_parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(header, payload)`` of a compact JWS, decoded WITHOUT checking the signature."""

    def part(b64: str) -> dict[str, Any]:
        return dict(json.loads(base64.urlsafe_b64decode(b64 + "=" * (-len(b64) % 4))))

    header, payload, _signature = token.split(".")
    return part(header), part(payload)


# -- a browser -------------------------------------------------------------------------


class BrowserError(RuntimeError):
    """The provider answered something a browser could not go on from."""


class LoginRefused(BrowserError):
    """The login form came back after the credentials were posted (wrong pair)."""

    def __init__(self, page: str) -> None:
        super().__init__("the provider refused the login and password (its form came back)")
        self.page = page


@dataclass
class Form:
    id: str
    action: str
    method: str
    fields: dict[str, str]
    inputs: list[str]  # every named input, hidden or not


class _Forms(HTMLParser):
    """The page's forms as a browser would submit them: named inputs with their values,
    plus the name/value of the first submit button that has one."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[Form] = []
        self._open: Form | None = None
        self._button_taken = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self._open = Form(a.get("id", ""), a.get("action", ""), a.get("method", "get"), {}, [])
            self._button_taken = False
            self.forms.append(self._open)
        elif self._open is not None and tag in ("input", "button") and a.get("name"):
            kind = a.get("type", "text" if tag == "input" else "submit").lower()
            if kind == "submit":
                if not self._button_taken:
                    self._open.fields[a["name"]] = a.get("value", "")
                    self._button_taken = True
            elif kind not in ("checkbox", "radio") or "checked" in a:
                self._open.fields[a["name"]] = a.get("value", "")
                self._open.inputs.append(a["name"])

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._open = None


def parse_forms(html: str) -> list[Form]:
    parser = _Forms()
    parser.feed(html)
    parser.close()
    return parser.forms


def _is_at(location: str, target: str) -> bool:
    return location == target or location.startswith((target + "?", target + "#"))


def _browse(
    http: httpx.Client,
    url: str,
    stop_at: str,
    login: str = "",
    password: str = "",
    consent: bool = True,
    trail: list[str] | None = None,
) -> str:
    steps = trail if trail is not None else []
    method, data = "GET", None
    posted_login = False
    for _ in range(30):  # a sign-in is about six hops; more is a loop
        r = http.request(method, url, data=data, follow_redirects=False)
        steps.append(f"{method} {urllib.parse.urlsplit(url).path} {r.status_code}")
        if r.is_redirect:
            location = urllib.parse.urljoin(str(r.url), r.headers["location"])
            if _is_at(location, stop_at):
                return location
            method, data, url = "GET", None, location
            continue
        if r.status_code != 200:
            raise BrowserError(f"{r.status_code} from {r.url}:\n{r.text[:2000]}")
        forms = {f.id: f for f in parse_forms(r.text)}
        if "login" in forms:
            if posted_login:
                raise LoginRefused(r.text)
            form = forms["login"]
            form.fields.update(login=login, password=password)
            posted_login = True
        elif "consent" in forms:
            form = forms["consent" if consent else "deny"]
        elif len(forms) == 1:  # the sign-out confirmation
            form = next(iter(forms.values()))
        else:
            raise BrowserError(f"no form to go on with at {r.url}:\n{r.text[:2000]}")
        steps.append(f"form {form.id or form.action}")
        url = urllib.parse.urljoin(str(r.url), form.action)
        method, data = form.method.upper(), form.fields
    raise BrowserError(f"too many steps without reaching {stop_at}")


def browser_login(
    http: httpx.Client,
    authorize_url: str,
    login: str,
    password: str,
    *,
    consent: bool = True,
    trail: list[str] | None = None,
) -> str:
    """Sign in as a browser would, from the client's authorize URL to its callback.

    GETs ``authorize_url``, follows the provider's redirects to its login page, posts the
    login form (its hidden fields as they are, ``login`` and ``password`` filled in),
    follows on, posts the consent form if asked (``consent=False`` posts the deny form),
    and stops at the first redirect whose Location is the ``redirect_uri`` named in
    ``authorize_url``: that URL (with ``code``, ``state`` and ``iss``, or ``error``) is
    returned and not followed. ``http`` keeps the provider's cookies, so a second
    sign-in with the same client goes straight back to the callback. A wrong login or
    password raises :class:`LoginRefused`. ``trail``, if given, gets one line per request
    (``"POST /interaction/<uid>/login 303"``) and per form submitted (``"form login"``).
    """
    query = callback_params(authorize_url)
    return _browse(http, authorize_url, query["redirect_uri"], login, password, consent, trail)


def browser_logout(http: httpx.Client, end_session_url: str, trail: list[str] | None = None) -> str:
    """RP-initiated logout as a browser does it: GET ``end_session_url`` (with
    ``post_logout_redirect_uri``), post the sign-out confirmation, and return the
    redirect to ``post_logout_redirect_uri`` without following it."""
    target = callback_params(end_session_url)["post_logout_redirect_uri"]
    return _browse(http, end_session_url, target, trail=trail)
