"""The OAuth apps page in-process, over the real control plane, store (SQLite and
PostgreSQL) and vault key: administrators add, edit and delete the gateway's apps at the
vendors' authorization servers.

The apps here have their endpoints typed in, on loopback (the service layer trusts a
loopback URL an administrator typed without dialling it, and discovers metadata only
from an issuer), so no authorization server needs to listen.

Attacks, each a test that fails if its guard goes:
- a client secret is never sent back: not in the page after it was saved, not in the
  answer to a form refused (which keeps everything else that was typed), not in a
  redirect, not in the API's answer, and never stored in clear (apps, sealed secrets,
  audit rows);
- an edit with the secret field empty keeps the stored secret (the very ciphertext);
- a user who is not an administrator gets no page, no link to it, and changes nothing
  by posting the forms themselves;
- an add, edit or delete posted without the session's CSRF token, with another
  session's, or from another origin is refused and changes nothing;
- an administrator viewing the gateway as a user (read-only) changes nothing;
- a bad scope, a bad extra-parameter line, a reserved parameter, a plain-http endpoint
  off loopback is a clear error, never a 500, and nothing is stored.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session

from gigmcp.control import impersonation, oauth, servers, websessions
from gigmcp.oauthclient.client import AUTH_METHODS
from gigmcp.store import oauth as store
from gigmcp.store.models import OAuthApp, OAuthPending, OAuthSecret
from tests.support.dashboard import ORIGIN, Browser, Dash, assert_safe_headers, dashboard

SECRET = "vendor-client-secret-WEB-9c1f7e"
NEW_SECRET = "vendor-client-secret-NEW-3b8d21"
# Never dialled: typed loopback endpoints are trusted as they are (oauthclient/outbound.py).
VENDOR_BASE = "http://127.0.0.1:59321"
FIELDS = {
    "vendor": "acme",
    "display_name": "Acme Corp",
    "issuer": "",
    "authorization_endpoint": f"{VENDOR_BASE}/authorize",
    "token_endpoint": f"{VENDOR_BASE}/token",
    "revocation_endpoint": f"{VENDOR_BASE}/revoke",
    "client_id": "gw-acme-client",
    "client_secret": SECRET,
    "auth_method": "client_secret_post",
    "pkce": "on",
    "resource": "https://api.acme.test/v1",
    "default_scopes": "openid offline_access",
    "extra_params": "access_type=offline\nprompt=consent",
}
TYPED = [k for k in FIELDS if k not in ("client_secret", "pkce")]
ACME_SERVER = {
    "id": "acme_token",
    "type": "oauth2",
    "vendor": "acme",
    "scopes": ["api:write"],
    "inject": {"header": "Authorization", "format": "Bearer {token}"},
}


@pytest.fixture
async def dash(database_url: str, tmp_path: Path) -> AsyncIterator[Dash]:
    async with dashboard(database_url, tmp_path, impersonation=True) as d:
        yield d


class _Forms(HTMLParser):
    """Every form of a page, by its action: its fields' values as the browser would
    send them back (inputs, textareas, the selected option, checkboxes checked)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: dict[str, dict[str, Any]] = {}
        self.inputs: list[dict[str, str | None]] = []
        self._form: dict[str, Any] | None = None
        self._textarea: str | None = None
        self._select: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "form":
            self._form = self.forms.setdefault(a.get("action") or "", {})
        elif self._form is None:
            return
        elif tag == "input":
            self.inputs.append(a)
            name = a.get("name") or ""
            if a.get("type") == "checkbox":
                self._form[name] = "checked" in a
            else:
                self._form[name] = a.get("value")
        elif tag == "textarea":
            self._textarea = a.get("name") or ""
            self._form[self._textarea] = ""
        elif tag == "select":
            self._select = a.get("name") or ""
        elif tag == "option" and self._select is not None and "selected" in a:
            self._form[self._select] = a.get("value")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._form = None
        elif tag == "textarea":
            self._textarea = None
        elif tag == "select":
            self._select = None

    def handle_data(self, data: str) -> None:
        if self._form is not None and self._textarea is not None:
            self._form[self._textarea] += data


def forms(html: str) -> _Forms:
    parser = _Forms()
    parser.feed(html)
    return parser


def assert_no_secret_field_value(html: str) -> None:
    for field in forms(html).inputs:
        if field.get("type") == "password":
            assert field.get("value") is None, field


def stored(engine: Engine) -> str:
    """Every app row, sealed secret and audit row, as text, to search for a secret."""
    with engine.connect() as c:
        return "\n".join(
            str(r)
            for table in ("oauth_apps", "oauth_secrets", "audit_events")
            for r in c.execute(text(f"SELECT * FROM {table}"))
        )


def assert_secret_nowhere(dash: Dash, *texts: str) -> None:
    dump = stored(dash.engine)
    for secret in (SECRET, NEW_SECRET):
        assert secret not in dump and secret.encode().hex() not in dump
        for t in texts:
            assert secret not in t


def secret_row(dash: Dash, vendor: str = "acme") -> tuple[str, bytes] | None:
    with Session(dash.engine) as s:
        app_id = s.scalar(select(OAuthApp.id).where(OAuthApp.vendor == vendor))
        row = s.scalar(
            select(OAuthSecret).where(
                OAuthSecret.kind == "client_secret", OAuthSecret.ref_id == app_id
            )
        )
        return None if row is None else (row.record_id, row.ciphertext)


def opened_secret(dash: Dash, vendor: str = "acme") -> bytes | None:
    assert dash.cfg.keyring is not None
    with Session(dash.engine) as s:
        app_id = s.scalar(select(OAuthApp.id).where(OAuthApp.vendor == vendor))
        assert app_id is not None
        return store.get_secret(s, dash.cfg.keyring, "client_secret", app_id)


def vendors(dash: Dash) -> list[str]:
    return [a.vendor for a in oauth.list_apps(dash.engine, dash.admin)]


async def add(browser: Browser, **change: str) -> Any:
    return await browser.post_form("/oauth-apps", {**FIELDS, **change})


def edit_fields(**change: str | None) -> dict[str, str]:
    """The edit form's fields: the add form's but the vendor, the secret left empty;
    a change to None leaves that field out (an unticked checkbox)."""
    fields: dict[str, str | None] = {k: v for k, v in FIELDS.items() if k != "vendor"}
    fields["client_secret"] = ""
    fields.update(change)
    return {k: v for k, v in fields.items() if v is not None}


async def test_an_administrator_adds_an_app_and_sees_it_without_its_secret(dash: Dash) -> None:
    servers.add_server(
        dash.engine, dash.admin, "acme-tools", ["/bin/true"], {}, [], None,
        egress={"hosts": ["api.acme.test"]}, credentials=[ACME_SERVER],
    )  # fmt: skip
    admin = dash.browser(dash.admin)
    empty = await admin.get("/oauth-apps")
    assert empty.status_code == 200, empty.text
    assert_safe_headers(empty.headers)
    assert 'href="/oauth-apps" aria-current="page"' in empty.text
    assert "No OAuth app yet" in empty.text
    form = forms(empty.text).forms["/oauth-apps"]
    assert form["csrf"] == admin.csrf
    assert form["pkce"] is True  # PKCE on by default
    assert form["auth_method"] == "client_secret_basic"
    # Every field is labelled.
    for fid in re.findall(r'<(?:input|select|textarea) [^>]*id="([^"]+)"', empty.text):
        assert f'<label for="{fid}">' in empty.text, fid

    r = await add(admin)
    assert r.status_code == 303, r.text
    assert r.headers["location"] == "/oauth-apps?done=added"
    page = await admin.get(r.headers["location"])
    assert page.status_code == 200
    assert_safe_headers(page.headers)
    assert "Added. The client secret will not be shown again." in page.text
    listing = page.text.split('id="app-acme"', 1)[1].split("</section>", 1)[0]
    shown = " ".join(re.sub(r"<[^>]+>", " ", listing).split())
    for words in (
        "Acme Corp acme",
        "Issuer none: the endpoints were typed in",
        f"Authorization endpoint {VENDOR_BASE}/authorize",
        f"Token endpoint {VENDOR_BASE}/token",
        f"Revocation endpoint {VENDOR_BASE}/revoke",
        "Client id gw-acme-client",
        "Client authentication client_secret_post",
        "Client secret set",
        "PKCE on (S256)",
        "Resource (RFC 8707) https://api.acme.test/v1",
        "Default scopes openid offline_access",
        "declare) openid offline_access api:write",  # the installed server's scope too
        "Extra parameters access_type=offline prompt=consent",
        "Users connected 0",
    ):
        assert words in shown, (words, shown)
    # The edit form holds the app as stored, its secret field empty.
    edit = forms(page.text).forms["/oauth-apps/acme"]
    for name in TYPED:
        if name != "vendor":
            assert edit[name] == FIELDS[name], name
    assert edit["client_secret"] is None and edit["pkce"] is True
    assert "A secret is stored: leave this empty to keep it" in page.text
    assert 'action="/oauth-apps/acme/delete"' in page.text
    assert "disconnects every user&#39;s acme account (0 now)" in page.text
    assert_no_secret_field_value(page.text)
    api = await admin.get("/api/v1/oauth-apps")
    assert api.status_code == 200 and api.json()[0]["has_secret"] is True
    assert_secret_nowhere(dash, r.text, r.headers["location"], page.text, api.text)
    assert opened_secret(dash) == SECRET.encode()
    info = oauth.get_app(dash.engine, dash.admin, "acme")
    assert info.pkce and info.extra_params == {"access_type": "offline", "prompt": "consent"}
    assert info.default_scopes == ("openid", "offline_access")


async def test_an_edit_with_the_secret_left_empty_keeps_the_stored_one(dash: Dash) -> None:
    admin = dash.browser(dash.admin)
    assert (await add(admin)).status_code == 303
    before = secret_row(dash)
    r = await admin.post_form(
        "/oauth-apps/acme",
        edit_fields(display_name="Acme Two", default_scopes="openid", pkce=None, extra_params=""),
    )
    assert r.status_code == 303, r.text
    assert r.headers["location"] == "/oauth-apps?done=saved"
    assert secret_row(dash) == before  # the very ciphertext: not even re-sealed
    info = oauth.get_app(dash.engine, dash.admin, "acme")
    assert info.has_secret and info.display_name == "Acme Two"
    assert info.default_scopes == ("openid",) and not info.pkce and info.extra_params == {}
    page = await admin.get(r.headers["location"])
    assert "Saved." in page.text and "Acme Two" in page.text
    assert forms(page.text).forms["/oauth-apps/acme"]["pkce"] is False
    # A new secret replaces it, sealed anew.
    again = await admin.post_form("/oauth-apps/acme", edit_fields(client_secret=NEW_SECRET))
    assert again.status_code == 303, again.text
    after = secret_row(dash)
    assert after is not None and before is not None and after[0] != before[0]
    assert opened_secret(dash) == NEW_SECRET.encode()
    page = await admin.get("/oauth-apps")
    assert_no_secret_field_value(page.text)
    assert_secret_nowhere(dash, again.text, page.text)


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"default_scopes": 'openid "quoted'}, "default scopes: '\"quoted' is not an OAuth scope"),
        ({"default_scopes": "openid caf\u00e9"}, "is not an OAuth scope"),
        (
            {"extra_params": "access_type=offline\nno equals sign here"},
            "extra parameters, line 2: write name=value",
        ),
        ({"extra_params": "=value"}, "extra parameters, line 1: write name=value"),
        ({"extra_params": "prompt=consent\nprompt=none"}, "'prompt' is given twice"),
        ({"extra_params": "redirect_uri=https://evil.test/"}, "set by the gateway itself"),
        ({"extra_params": "bad name=x"}, "extra parameter 'bad name'"),
        (
            {"token_endpoint": "http://auth.acme.test/token"},
            "plain http is allowed only on loopback",
        ),
        (
            {"authorization_endpoint": "http://10.0.0.8/authorize"},
            "plain http is allowed only on loopback",
        ),
        ({"authorization_endpoint": "", "token_endpoint": ""}, "both the authorization and"),
        ({"vendor": "Not A Slug"}, "a slug of a-z, 0-9 and '-'"),
        ({"auth_method": "none", "pkce": ""}, "needs PKCE"),
        ({"auth_method": "client_secret_jwt"}, "client authentication: one of"),
        ({"client_secret": ""}, "client_secret_post needs a client secret"),
        ({"client_secret": SECRET + "\n"}, "no control character"),
        ({"resource": "not a uri"}, "resource: an absolute URI"),
    ],
)
async def test_a_bad_app_is_a_clear_error_and_keeps_what_was_typed_but_the_secret(
    dash: Dash, change: dict[str, str], words: str
) -> None:
    admin = dash.browser(dash.admin)
    fields = {**FIELDS, **change}
    if fields["pkce"] == "":
        del fields["pkce"]
    r = await admin.post_form("/oauth-apps", fields)
    assert r.status_code == 422, r.text
    assert_safe_headers(r.headers)
    assert words in r.text.replace("&#39;", "'").replace("&#34;", '"'), r.text
    assert "Traceback" not in r.text
    kept = forms(r.text).forms["/oauth-apps"]
    for name in TYPED:
        if name == "auth_method" and fields[name] not in AUTH_METHODS:
            assert name not in kept  # no option of the select is that one
            continue
        assert kept[name] == fields[name], name
    assert kept["pkce"] is ("pkce" in fields)
    assert kept["client_secret"] is None  # the secret's field comes back empty
    assert_no_secret_field_value(r.text)
    assert_secret_nowhere(dash, r.text)
    assert vendors(dash) == [] and secret_row(dash) is None


async def test_a_bad_edit_keeps_what_was_typed_in_that_apps_form(dash: Dash) -> None:
    admin = dash.browser(dash.admin)
    assert (await add(admin)).status_code == 303
    before = secret_row(dash)
    typed = edit_fields(
        display_name="Renamed", default_scopes='openid "x', client_secret=NEW_SECRET
    )
    r = await admin.post_form("/oauth-apps/acme", typed)
    assert r.status_code == 422, r.text
    found = forms(r.text).forms
    assert found["/oauth-apps/acme"]["display_name"] == "Renamed"
    assert found["/oauth-apps/acme"]["default_scopes"] == 'openid "x'
    assert found["/oauth-apps/acme"]["client_secret"] is None
    assert found["/oauth-apps"]["vendor"] == ""  # the add form is not the one refused
    assert "<details open>" in r.text
    assert_secret_nowhere(dash, r.text)
    assert secret_row(dash) == before
    assert oauth.get_app(dash.engine, dash.admin, "acme").display_name == "Acme Corp"
    # An app of another vendor cannot be edited into being.
    ghost = await admin.post_form("/oauth-apps/ghost", edit_fields())
    assert ghost.status_code == 404 and "no OAuth app for ghost" in ghost.text
    assert vendors(dash) == ["acme"]


async def test_adding_a_vendor_twice_is_a_conflict(dash: Dash) -> None:
    admin = dash.browser(dash.admin)
    assert (await add(admin)).status_code == 303
    r = await add(admin, display_name="Other", client_secret=NEW_SECRET)
    assert r.status_code == 409, r.text
    assert "an app for acme exists already; edit it" in r.text
    assert forms(r.text).forms["/oauth-apps"]["display_name"] == "Other"
    assert opened_secret(dash) == SECRET.encode()
    assert_secret_nowhere(dash, r.text)


async def test_attack_a_user_gets_no_page_and_changes_nothing(dash: Dash) -> None:
    admin, alice = dash.browser(dash.admin), dash.browser(dash.alice)
    assert (await add(admin)).status_code == 303
    before = secret_row(dash)
    page = await alice.get("/oauth-apps")
    assert page.status_code == 403, page.text
    assert "gw-acme-client" not in page.text and "/authorize" not in page.text
    assert 'href="/oauth-apps"' not in (await alice.get("/")).text
    assert 'href="/oauth-apps"' in (await admin.get("/")).text
    attempts = [
        await add(alice, vendor="evil"),
        await add(alice, vendor="evil", default_scopes='"bad'),  # refused before parsing shows
        await alice.post_form("/oauth-apps/acme", edit_fields(client_id="evil-client")),
        await alice.post_form("/oauth-apps/acme", edit_fields(client_secret=NEW_SECRET)),
        await alice.post_form("/oauth-apps/acme/delete", {}),
        await alice.post_form("/oauth-apps/ghost/delete", {}),
    ]
    for r in attempts:
        assert r.status_code == 403, r.text
        assert "gw-acme-client" not in r.text
    assert vendors(dash) == ["acme"] and secret_row(dash) == before
    assert oauth.get_app(dash.engine, dash.admin, "acme").client_id == "gw-acme-client"
    assert_secret_nowhere(dash, *(r.text for r in attempts))


async def test_attack_a_post_without_its_csrf_token_or_from_elsewhere_changes_nothing(
    dash: Dash,
) -> None:
    admin = dash.browser(dash.admin)
    other = dash.browser(dash.admin)  # another session: another token
    assert (await add(admin)).status_code == 303
    before = secret_row(dash)
    posts = [
        ("/oauth-apps", {**FIELDS, "vendor": "other"}),
        ("/oauth-apps/acme", edit_fields(client_secret=NEW_SECRET, display_name="Changed")),
        # A field besides the token: an empty post would not even be a form.
        ("/oauth-apps/acme/delete", {"delete": "1"}),
    ]
    for path, fields in posts:
        attempts = [
            await admin.post_form(path, fields, csrf=False),
            await admin.client.post(
                path, data={**fields, "csrf": other.csrf}, headers={"Origin": ORIGIN}
            ),
            await admin.post_form(path, fields, origin="https://evil.example"),
            await admin.post_form(path, fields, origin=None),
        ]
        for r in attempts:
            assert r.status_code == 403, (path, r.text)
            assert_secret_nowhere(dash, r.text)
    assert vendors(dash) == ["acme"] and secret_row(dash) == before
    assert oauth.get_app(dash.engine, dash.admin, "acme").display_name == "Acme Corp"


async def test_attack_an_impersonating_administrator_changes_nothing(dash: Dash) -> None:
    admin = dash.browser(dash.admin)
    assert (await add(admin)).status_code == 303
    before = secret_row(dash)
    current = websessions.resolve(
        dash.engine, admin.client.cookies[dash.cfg.cookie_name], dash.cfg.lifetimes
    )
    assert current is not None
    impersonation.start(dash.engine, current, dash.alice.user_id, 10)
    page = await admin.get("/oauth-apps")  # the real administrator still reads it
    assert page.status_code == 200
    assert re.search(r'<button type="submit" class="danger"[^>]* disabled', page.text)
    for path, fields in (
        ("/oauth-apps", {**FIELDS, "vendor": "other"}),
        ("/oauth-apps/acme", edit_fields(display_name="Changed")),
        ("/oauth-apps/acme/delete", {}),
    ):
        r = await admin.post_form(path, fields)
        assert r.status_code == 403, r.text
    assert vendors(dash) == ["acme"] and secret_row(dash) == before
    assert oauth.get_app(dash.engine, dash.admin, "acme").display_name == "Acme Corp"


async def test_delete_removes_the_app_and_every_connection_in_flight(dash: Dash) -> None:
    admin = dash.browser(dash.admin)
    assert (await add(admin)).status_code == 303
    assert (await add(admin, vendor="other", display_name="Other")).status_code == 303
    # Alice starts connecting (an authorization in flight, its verifier sealed).
    assert dash.cfg.keyring is not None
    await asyncio.to_thread(
        oauth.begin_connect, dash.engine, dash.cfg.keyring, dash.alice, "acme",
        oauth.binding(1), ORIGIN,
    )  # fmt: skip
    r = await admin.post_form("/oauth-apps/acme/delete", {})
    assert r.status_code == 303 and r.headers["location"] == "/oauth-apps?done=deleted"
    page = await admin.get(r.headers["location"])
    assert "Deleted, with every user" in page.text
    assert 'id="app-acme"' not in page.text and 'id="app-other"' in page.text
    assert vendors(dash) == ["other"]
    with Session(dash.engine) as s:
        assert list(s.scalars(select(OAuthPending))) == []
        assert {r.kind for r in s.scalars(select(OAuthSecret))} == {"client_secret"}
    connections = await dash.browser(dash.alice).get("/connections")
    assert "Acme Corp" not in connections.text and "Other" in connections.text
    again = await admin.post_form("/oauth-apps/acme/delete", {})
    assert again.status_code == 404 and "no OAuth app for acme" in again.text


async def test_without_the_vault_no_app_can_be_saved(database_url: str, tmp_path: Path) -> None:
    async with dashboard(database_url, tmp_path, keyring=None) as d:
        admin = d.browser(d.admin)
        page = await admin.get("/oauth-apps")
        assert page.status_code == 200 and "The vault is not open" in page.text
        r = await add(admin)
        assert r.status_code == 503, r.text
        assert SECRET not in r.text
        assert forms(r.text).forms["/oauth-apps"]["client_id"] == "gw-acme-client"
        assert oauth.list_apps(d.engine, d.admin) == []
