"""The Servers page's form "Add a remote server", in-process over the real control plane,
store (SQLite and PostgreSQL), vault key and SSRF guard: everything that needs no remote
server (a successful add, through a real remote MCP server and authorization server, is
the root end-to-end test's).

What must hold:
- the form is on the list for anyone who may write, with the fields and names the
  browser test drives (the registration a select, automatic first and chosen, each
  choice explained), posting to ``/servers/remote`` with the session's CSRF token; shown
  disabled to an administrator viewing the gateway as a user, and without the vault;
- after an add, the server's page says so, and, when the server asks for authorization,
  names the app to connect on the Accounts page: only an app that exists (a ``vendor``
  in the URL naming none names nothing);
- the route runs in the thread pool (the service layer runs an event loop of its own).

Attacks and refusals, each a clear error at the service layer's status that saves
nothing (no server, no OAuth app) and keeps what was typed but the secret, which is
never in the answer:
- a URL that is plain http, an IP literal, or carries a user name and password (the
  password is not sent back either: the URL comes back without it);
- a bad name; a registration outside the four; pre-registered without a client id; a
  client id with a registration that takes none;
- a host that does not resolve (the real system resolver), one that resolves only to a
  private address, and loopback (the SSRF guard, before any connection);
- a post without the CSRF token, with another session's, or from another origin;
- a post by an administrator viewing the gateway as a user; a post with no vault.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from html import unescape
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gigmcp.control import impersonation, oauth, servers, websessions
from gigmcp.control.remote import REGISTRATIONS
from gigmcp.netpolicy.resolver import RESOLVE_TIMEOUT_S
from gigmcp.oauthclient.outbound import Outbound
from gigmcp.store.models import AuditRow, OAuthApp, Server
from gigmcp.web.pages import servers as servers_page
from tests.support.dashboard import ORIGIN, Browser, Dash, assert_safe_headers, dashboard
from tests.support.hosts_table import HostsTable

SECRET = "remote-client-secret-FORM-5e2a91"
URL_PASSWORD = "url-password-FORM-77c3d0"
FIELDS = {
    "name": "acme-mcp",
    "url": "https://mcp.acme.test/mcp",
    "registration": "auto",
    "client_id": "",
    "client_secret": "",
}
# Names the SSRF guard's resolver knows in these tests, as /etc/hosts would.
HOSTS = {
    "internal.acme.test": ["10.0.0.7"],
    "metadata.acme.test": ["169.254.169.254", "fd12::1"],
    "rebind.acme.test": ["127.0.0.1"],
}


@pytest.fixture
async def dash(database_url: str, tmp_path: Path) -> AsyncIterator[Dash]:
    async with dashboard(database_url, tmp_path, impersonation=True, instances=lambda: []) as d:
        yield d


class _Page(HTMLParser):
    """The add-remote form as a browser sees it: its attributes, its controls (with
    their attributes, in order), each select's options, and its buttons."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.form: dict[str, str | None] | None = None
        self.controls: list[tuple[str, dict[str, str | None]]] = []
        self.options: dict[str, list[tuple[str | None, bool, str]]] = {}
        self.buttons: list[dict[str, str | None]] = []
        self._inside = False
        self._select: str | None = None
        self._option: list[Any] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "form" and a.get("id") == "add-remote":
            self.form, self._inside = a, True
        elif not self._inside:
            return
        elif tag in ("input", "select", "textarea"):
            self.controls.append((tag, a))
            if tag == "select":
                self._select = a.get("name") or ""
                self.options[self._select] = []
        elif tag == "option" and self._select is not None:
            self._option = [a.get("value"), "selected" in a, ""]
        elif tag == "button":
            self.buttons.append(a)

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._inside = False
        elif tag == "select":
            self._select = None
        elif tag == "option" and self._option is not None and self._select is not None:
            value, selected, label = self._option
            self.options[self._select].append((value, selected, label.strip()))
            self._option = None

    def handle_data(self, data: str) -> None:
        if self._option is not None:
            self._option[2] += data

    def control(self, name: str) -> dict[str, str | None]:
        found = [a for _tag, a in self.controls if a.get("name") == name]
        assert len(found) == 1, (name, found)
        return found[0]

    def value(self, name: str) -> str | None:
        """What the browser would send back for ``name`` (a select: its chosen option,
        else its first, as a browser does)."""
        if name in self.options:
            chosen = [v for v, selected, _ in self.options[name] if selected]
            return chosen[0] if chosen else self.options[name][0][0]
        return self.control(name).get("value")


def add_form(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    assert page.form is not None, "no form#add-remote on the page"
    return page


def assert_no_inline_code(html: str) -> None:
    assert not re.search(r"<script(?![^>]*\bsrc=)", html), "inline script"
    assert not re.search(r"\sstyle=|\son[a-z]+=|hx-on|javascript:", html), "inline code"


def saved(dash: Dash) -> tuple[int, int, int]:
    """Servers, OAuth apps and server.add audit rows in the store."""
    with Session(dash.engine) as s:
        return (
            s.scalar(select(func.count()).select_from(Server)) or 0,
            s.scalar(select(func.count()).select_from(OAuthApp)) or 0,
            s.scalar(
                select(func.count()).select_from(AuditRow).where(AuditRow.action == "server.add")
            )
            or 0,
        )


async def post(browser: Browser, **fields: str) -> Any:
    return await browser.post_form("/servers/remote", {**FIELDS, **fields})


async def refused(
    dash: Dash, status: int, words: str, as_: Browser | None = None, **typed: str
) -> _Page:
    """Post the form (as Alice unless ``as_``); it must be refused with ``status`` and
    ``words``, keep what was typed but the secret, never show the secret, and save
    nothing."""
    fields = {**FIELDS, **typed}
    before = saved(dash)
    r = await post(as_ or dash.browser(dash.alice), **fields)
    assert r.status_code == status, (fields, r.status_code, r.text[-2000:])
    assert_safe_headers(r.headers)
    assert_no_inline_code(r.text)
    alert = re.search(r'<div class="cred-errors" role="alert">(.*?)</div>', r.text, re.S)
    assert alert is not None, r.text
    said = unescape(re.sub(r"<[^>]+>", "", alert.group(1)))
    assert words in said, (words, said)
    for secret in (SECRET, URL_PASSWORD):
        assert secret not in r.text
    page = add_form(r.text)
    assert page.control("client_secret").get("value") is None
    assert page.value("name") == fields["name"].strip()
    assert page.value("client_id") == fields["client_id"].strip()
    assert saved(dash) == before
    return page


async def test_the_form_is_on_the_servers_page(dash: Dash) -> None:
    alice = dash.browser(dash.alice)
    r = await alice.get("/servers")
    assert r.status_code == 200, r.text
    assert_safe_headers(r.headers)
    assert_no_inline_code(r.text)
    assert "Add a remote server" in r.text
    page = add_form(r.text)
    assert page.form is not None
    assert (page.form.get("method"), page.form.get("action")) == ("post", "/servers/remote")
    kinds = {a.get("name"): (tag, a.get("type")) for tag, a in page.controls}
    assert kinds == {
        "csrf": ("input", "hidden"),
        "name": ("input", "text"),
        "url": ("input", "url"),
        "registration": ("select", None),
        "client_id": ("input", "text"),
        "client_secret": ("input", "password"),
    }
    assert page.value("csrf") == alice.csrf
    for name in ("name", "url", "client_id"):
        assert page.value(name) == ""
    assert page.control("client_secret").get("value") is None
    # The four ways, automatic first and chosen, each with a label and a hint.
    options = page.options["registration"]
    assert [v for v, _, _ in options] == list(REGISTRATIONS)
    assert [s for _, s, _ in options] == [True, False, False, False]
    assert all(label for _, _, label in options)
    assert "internal network" in r.text and "registered at the vendor by hand" in r.text
    # Every control has a label.
    for _tag, a in page.controls:
        if a.get("type") != "hidden":
            assert f'<label for="{a.get("id")}">' in r.text, a
    (button,) = page.buttons
    assert button.get("type") == "submit" and "disabled" not in button
    # An administrator sees it too (adding a server is anyone's, for their own).
    admin = add_form((await dash.browser(dash.admin).get("/servers")).text)
    assert "disabled" not in admin.buttons[0]


def test_the_route_runs_in_the_thread_pool() -> None:
    """add_remote_server runs an event loop of its own (asyncio.run): an ``async def``
    route would call it inside the server's loop and fail."""
    assert not asyncio.iscoroutinefunction(servers_page.add_remote)


@pytest.mark.parametrize(
    ("url", "words", "kept"),
    [
        ("http://mcp.acme.test/mcp", "must be https://", "http://mcp.acme.test/mcp"),
        ("https://10.0.0.5/mcp", "a host name is needed, not an address", None),
        ("https://[2001:db8::1]/mcp", "a host name is needed, not an address", None),
        (
            f"https://admin:{URL_PASSWORD}@mcp.acme.test/mcp",
            "no user name, password or fragment",
            "https://mcp.acme.test/mcp",
        ),
        ("https://mcp.acme.test/mcp#top", "no user name, password or fragment", None),
        ("not a url at all", "must be https://", None),
    ],
)
async def test_a_bad_url_is_a_clear_error_that_saves_nothing(
    dash: Dash, url: str, words: str, kept: str | None
) -> None:
    page = await refused(
        dash, 422, words, url=url, registration="pre-registered", client_id="gw-client",
        client_secret=SECRET,
    )  # fmt: skip
    # What was typed comes back (a URL with a password in it, without them).
    assert page.value("url") == (kept or url)
    assert page.value("registration") == "pre-registered"


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"name": "Acme MCP"}, "invalid server name 'Acme MCP'"),
        ({"name": ""}, "invalid server name"),
        ({"name": "-acme"}, "invalid server name"),
        ({"name": "a" * 64}, "invalid server name"),
        ({"registration": "sideways"}, "registration: one of auto, metadata-document"),
        ({"registration": "pre-registered"}, "give the client id registered by hand"),
        (
            {"registration": "pre-registered", "client_id": "  ", "client_secret": SECRET},
            "give the client id registered by hand",
        ),
        (
            {"registration": "dynamic", "client_id": "gw-client", "client_secret": SECRET},
            "registration dynamic takes none",
        ),
        (
            {"registration": "metadata-document", "client_id": "gw-client"},
            "registration metadata-document takes none",
        ),
    ],
)
async def test_a_bad_name_or_registration_is_a_clear_error_that_saves_nothing(
    dash: Dash, fields: dict[str, str], words: str
) -> None:
    page = await refused(dash, 422, words, None, **fields)
    assert page.value("url") == FIELDS["url"]
    if fields.get("registration") in REGISTRATIONS:
        assert page.value("registration") == fields["registration"]


async def test_a_host_that_does_not_resolve_is_a_clear_error_and_fails_fast(dash: Dash) -> None:
    """The gateway's own guard with the system's resolver (no Outbound configured, as
    in production): ``.invalid`` never resolves (RFC 6761), and a lookup is bounded."""
    assert dash.cfg.outbound is None
    started = time.monotonic()
    await refused(dash, 422, "cannot resolve nowhere.invalid", url="https://nowhere.invalid/mcp")
    assert time.monotonic() - started < RESOLVE_TIMEOUT_S + 3


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("https://internal.acme.test/mcp", "resolves only to blocked addresses (private)"),
        ("https://metadata.acme.test/mcp", "blocked addresses (cloud-metadata, unique-local)"),
        ("https://rebind.acme.test/mcp", "resolves only to blocked addresses (loopback)"),
        ("https://localhost/mcp", "a loopback address nobody configured"),
        ("https://unknown.acme.test/mcp", "cannot resolve unknown.acme.test"),
    ],
)
async def test_the_ssrf_guard_refuses_before_any_connection(
    database_url: str, tmp_path: Path, url: str, words: str
) -> None:
    hosts = HostsTable(HOSTS)
    async with dashboard(database_url, tmp_path, outbound=Outbound(resolver=hosts)) as d:
        await refused(d, 422, words, url=url, client_id="gw-client", client_secret=SECRET)
    host = url.split("/")[2]
    assert hosts.asked == ([] if host == "localhost" else [host])


async def test_attack_a_post_without_its_csrf_token_or_from_elsewhere_saves_nothing(
    dash: Dash,
) -> None:
    alice = dash.browser(dash.alice)
    other = dash.browser(dash.alice)  # another session: another token
    fields = {**FIELDS, "client_id": "gw-client", "client_secret": SECRET}
    attempts = [
        await alice.post_form("/servers/remote", fields, csrf=False),
        await alice.client.post(
            "/servers/remote", data={**fields, "csrf": other.csrf}, headers={"Origin": ORIGIN}
        ),
        await alice.post_form("/servers/remote", fields, origin="https://evil.example"),
        await alice.post_form("/servers/remote", fields, origin=None),
        await alice.client.post(
            "/servers/remote",
            data={**fields, "csrf": alice.csrf},
            headers={"Sec-Fetch-Site": "cross-site"},
        ),
    ]
    for r in attempts:
        assert r.status_code == 403, r.text
        assert_safe_headers(r.headers)
        assert SECRET not in r.text and other.csrf not in r.text
    assert saved(dash) == (0, 0, 0)


async def test_attack_an_administrator_viewing_as_a_user_adds_nothing(dash: Dash) -> None:
    admin = dash.browser(dash.admin)
    current = websessions.resolve(
        dash.engine, admin.client.cookies[dash.cfg.cookie_name], dash.cfg.lifetimes
    )
    assert current is not None
    impersonation.start(dash.engine, current, dash.alice.user_id, 10)
    page = await admin.get("/servers")
    assert page.status_code == 200
    (button,) = add_form(page.text).buttons
    assert "disabled" in button  # shown, as every form is in read-only mode
    # Posted anyway: the service layer refuses it.
    await refused(dash, 403, "read-only", admin, client_id="gw", client_secret=SECRET)


async def test_without_the_vault_no_remote_server_can_be_added(
    database_url: str, tmp_path: Path
) -> None:
    async with dashboard(database_url, tmp_path, keyring=None) as d:
        page = await d.browser(d.alice).get("/servers")
        assert page.status_code == 200
        assert "The vault is not open on this gateway" in page.text
        assert "disabled" in add_form(page.text).buttons[0]
        await refused(d, 503, "the vault is not open", client_id="gw", client_secret=SECRET)


async def test_a_servers_page_says_it_was_added_and_where_to_connect_it(dash: Dash) -> None:
    """The notice the redirect after an add carries (``done``): the app to connect is
    named only when it exists, so a link cannot make the page name anything else."""
    servers.add_server(dash.engine, dash.alice, "acme-mcp", ["/bin/true"], {}, [], None)
    assert dash.cfg.keyring is not None
    # As an administrator would on the OAuth apps page (save_app runs an event loop of
    # its own: in a thread, as the pages call it).
    await asyncio.to_thread(
        oauth.save_app, dash.engine, dash.cfg.keyring, Outbound(), dash.admin,
        oauth.AppSpec(
            vendor="mcp-acme-mcp", client_id="gw-client", display_name="MCP server at acme",
            authorization_endpoint="http://127.0.0.1:59321/authorize",
            token_endpoint="http://127.0.0.1:59321/token", auth_method="none", pkce=True,
            api_hosts=("mcp.acme.test",),
        ),
        create=True,
    )  # fmt: skip
    alice = dash.browser(dash.alice)

    def notice(text: str) -> str | None:
        found = re.search(r'<div class="cred-notice" role="status">(.*?)</div>', text, re.S)
        if found is None:
            return None
        return unescape(" ".join(re.sub(r"<[^>]+>", " ", found.group(1)).split()))

    r = await alice.get("/servers/acme-mcp?done=connect&vendor=mcp-acme-mcp")
    assert r.status_code == 200
    assert_safe_headers(r.headers)
    said = notice(r.text)
    assert said is not None
    assert "Server acme-mcp added. It asks for authorization" in said
    assert "listed as MCP server at acme (mcp-acme-mcp)" in said
    assert 'href="/connections#conn-mcp-acme-mcp"' in r.text
    added = notice((await alice.get("/servers/acme-mcp?done=added")).text)
    assert added is not None and "asks for no authorization" in added
    # A vendor that is no app, or text of the URL's own: named nowhere.
    for query in ("done=connect&vendor=evil-<b>x</b>", "done=connect&vendor=mcp-other"):
        page = (await alice.get(f"/servers/acme-mcp?{query}")).text
        said = notice(page)
        assert said is not None and "It asks for authorization" in said
        assert "listed as" not in said and "evil" not in page and "mcp-other" not in page
    for query in ("", "done=nonsense", "done=Server%20hacked"):
        page = (await alice.get(f"/servers/acme-mcp?{query}")).text
        assert notice(page) is None and "hacked" not in page
