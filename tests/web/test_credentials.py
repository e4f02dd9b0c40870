"""The Credentials page in-process, over the real control plane, store (SQLite and
PostgreSQL) and vault key: what each server the viewer uses needs, whether it is set,
and write-only forms to set and unset it.

Attacks, each a test that fails if its guard goes:
- a value is never sent back: not in the page after it was set, not in the answer to
  a value refused (a newline, a trailing space), not in a redirect, not in the audit
  rows, and the form's field never carries one;
- Bob cannot set or unset a credential on Alice's private server: not found, exactly
  as for a missing server, and nothing changes;
- a set or unset posted without the CSRF token, or from another origin, is refused and
  changes nothing;
- an administrator viewing the gateway as a user (read-only) changes nothing.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from gigmcp.control import credentials, impersonation, servers, websessions
from gigmcp.store.models import AuditRow, CredentialValue
from tests.support.dashboard import Dash, assert_safe_headers, dashboard

SECRET = "sk_live_gigWEB_5e4d3c2b1a09f8e7"
HOSTS = {"hosts": ["api.example.test"]}
API_KEY = {
    "id": "api_key",
    "type": "api_key",
    "provider": "example",
    "inject": {"header": "Authorization", "format": "Bearer {token}"},
}
ENTRUSTED = {"id": "webhook", "type": "custom_env", "inject": {"env": "WEBHOOK_SECRET"}}


@pytest.fixture
async def dash(database_url: str, tmp_path: Path) -> AsyncIterator[Dash]:
    async with dashboard(database_url, tmp_path, impersonation=True) as d:
        e = d.engine
        servers.add_server(
            e, d.admin, "catalog", ["/bin/true"], {}, [], None,
            egress=HOSTS, credentials=[API_KEY, ENTRUSTED],
        )  # fmt: skip
        servers.add_server(
            e, d.alice, "alices", ["/bin/true"], {}, [], None, egress=HOSTS, credentials=[API_KEY]
        )
        servers.add_server(e, d.alice, "plain", ["/bin/true"], {}, [], None)
        yield d


def everything_stored(dash: Dash) -> str:
    """Every audit row and every stored ciphertext, as text, to search for a value."""
    with Session(dash.engine) as s:
        audit = repr([(r.action, r.detail, r.server) for r in s.scalars(select(AuditRow))])
        sealed = b"".join(r.ciphertext for r in s.scalars(select(CredentialValue)))
    return audit + sealed.decode("latin-1")


def values(dash: Dash) -> set[tuple[int, str]]:
    with Session(dash.engine) as s:
        return {(r.owner_id, r.credential_id) for r in s.scalars(select(CredentialValue))}


def status_row(html: str, server: str, credential: str) -> str:
    """The text of the row of ``credential`` in ``server``'s section."""
    section = html.split(f"Server {server}</h2>", 1)[1].split("</section>", 1)[0]
    for row in re.findall(r"<tr>(.*?)</tr>", section, re.S):
        if f"<code>{credential}</code>" in row:
            return " ".join(re.sub(r"<[^>]+>", " ", row).split())
    raise AssertionError(f"no row for {server}/{credential}")


async def test_the_page_lists_what_each_server_needs_and_whether_it_is_set(dash: Dash) -> None:
    alice = dash.browser(dash.alice)
    page = await alice.get("/credentials")
    assert page.status_code == 200, page.text
    assert_safe_headers(page.headers)
    assert "Server catalog" in page.text and "Server alices" in page.text
    assert "Server plain" not in page.text  # needs nothing
    assert "not set" in status_row(page.text, "catalog", "api_key")
    assert "Sealed" in status_row(page.text, "catalog", "api_key")
    assert "Entrusted" in status_row(page.text, "catalog", "webhook")
    # The write-only form: a password field, never autocompleted, posted with the token.
    fields = re.findall(r"<input [^>]*name=\"value\"[^>]*>", page.text)
    assert len(fields) == 3
    for field in fields:
        assert 'type="password"' in field and 'autocomplete="off"' in field
        assert "value=" not in field.replace('name="value"', "")
    assert page.text.count('method="post"') >= 3
    assert f'name="csrf" value="{alice.csrf}"' in page.text
    # Labels name each field.
    for fid in re.findall(r'<input type="password" id="([^"]+)"', page.text):
        assert f'<label for="{fid}">' in page.text
    # Bob sees the catalog's credentials (his own values, none), not Alice's server.
    bob = await dash.browser(dash.bob).get("/credentials")
    assert "Server catalog" in bob.text and "alices" not in bob.text


async def test_attack_a_value_set_is_never_sent_back(dash: Dash) -> None:
    alice = dash.browser(dash.alice)
    r = await alice.post_form("/credentials/catalog/api_key", {"value": SECRET})
    assert r.status_code == 303 and r.headers["location"] == "/credentials?done=set"
    assert SECRET not in r.text and SECRET not in r.headers["location"]
    page = await alice.get(r.headers["location"])
    assert page.status_code == 200
    assert "Saved. The value will not be shown again." in page.text
    assert SECRET not in page.text
    assert re.search(r"\bset\b", status_row(page.text, "catalog", "api_key"))
    assert "not set" not in status_row(page.text, "catalog", "api_key")
    assert (dash.alice.user_id, "api_key") in values(dash)
    assert SECRET not in everything_stored(dash)
    # Set for Alice only: Bob's catalog row says not set.
    bobs = await dash.browser(dash.bob).get("/credentials")
    assert "not set" in status_row(bobs.text, "catalog", "api_key")
    # The API says the same, without the value.
    listed = await alice.get("/api/v1/credentials")
    assert SECRET not in listed.text


@pytest.mark.parametrize(
    "value", [SECRET + "\n" + SECRET, SECRET + " ", SECRET + "\x00", "", "x" * (64 * 1024 + 1)]
)
async def test_attack_a_refused_value_is_not_echoed(dash: Dash, value: str) -> None:
    alice = dash.browser(dash.alice)
    r = await alice.post_form("/credentials/catalog/api_key", {"value": value})
    assert r.status_code == 422, r.text
    assert_safe_headers(r.headers)
    assert "The value was not saved" in r.text
    assert SECRET not in r.text and (not value or value not in r.text)
    # The form comes back empty: no field carries a value.
    for field in re.findall(r"<input [^>]*name=\"value\"[^>]*>", r.text):
        assert "value=" not in field.replace('name="value"', "")
    assert values(dash) == set()
    assert SECRET not in everything_stored(dash)


async def test_unset_removes_the_viewers_own_value(dash: Dash) -> None:
    alice = dash.browser(dash.alice)
    assert (
        await alice.post_form("/credentials/catalog/webhook", {"value": SECRET})
    ).status_code == 303
    page = await alice.get("/credentials")
    assert 'action="/credentials/catalog/webhook/unset"' in page.text
    assert 'action="/credentials/catalog/api_key/unset"' not in page.text  # not set
    r = await alice.post_form("/credentials/catalog/webhook/unset", {})
    assert r.status_code == 303 and r.headers["location"] == "/credentials?done=unset"
    after = await alice.get(r.headers["location"])
    assert "Removed." in after.text
    assert "not set" in status_row(after.text, "catalog", "webhook")
    assert values(dash) == set()
    # Unsetting what is not set is not found.
    assert (await alice.post_form("/credentials/catalog/webhook/unset", {})).status_code == 404


async def test_attack_bob_cannot_set_or_unset_on_alices_private_server(dash: Dash) -> None:
    alice, bob = dash.browser(dash.alice), dash.browser(dash.bob)
    assert (await alice.post_form("/credentials/alices/api_key", {"value": "a1"})).status_code == (
        303
    )
    before = values(dash)

    def shape(text: str) -> str:
        return text.replace("no-such", "X").replace("alices", "X")

    for path in ("/credentials/{}/api_key", "/credentials/{}/api_key/unset"):
        theirs = await bob.post_form(path.format("alices"), {"value": SECRET})
        missing = await bob.post_form(path.format("no-such"), {"value": SECRET})
        assert theirs.status_code == 404 == missing.status_code, theirs.text
        assert shape(theirs.text) == shape(missing.text)
        assert SECRET not in theirs.text
    assert values(dash) == before
    assert SECRET not in everything_stored(dash)


async def test_attack_a_post_without_its_csrf_token_or_from_elsewhere_changes_nothing(
    dash: Dash,
) -> None:
    alice = dash.browser(dash.alice)
    other = dash.browser(dash.alice)  # another session of hers: another token
    for path in ("/credentials/catalog/api_key", "/credentials/catalog/api_key/unset"):
        attempts = [
            await alice.post_form(path, {"value": SECRET}, csrf=False),
            await alice.client.post(
                path,
                data={"csrf": other.csrf, "value": SECRET},
                headers={"Origin": "http://127.0.0.1:8080"},
            ),
            await alice.post_form(path, {"value": SECRET}, origin="https://evil.example"),
        ]
        for r in attempts:
            assert r.status_code == 403, r.text
            assert SECRET not in r.text
    assert values(dash) == set()
    assert SECRET not in everything_stored(dash)


async def test_attack_an_impersonating_administrator_changes_nothing(dash: Dash) -> None:
    alice = dash.browser(dash.alice)
    assert (
        await alice.post_form("/credentials/catalog/api_key", {"value": SECRET})
    ).status_code == 303
    admin = dash.browser(dash.admin)
    current = websessions.resolve(
        dash.engine, admin.client.cookies[dash.cfg.cookie_name], dash.cfg.lifetimes
    )
    assert current is not None
    impersonation.start(dash.engine, current, dash.alice.user_id, 10)
    page = await admin.get("/credentials")
    assert re.search(r'<input type="password"[^>]* disabled', page.text)
    for path, fields in (
        ("/credentials/catalog/api_key", {"value": "other-value"}),
        ("/credentials/catalog/api_key/unset", {}),
    ):
        r = await admin.post_form(path, fields)
        assert r.status_code == 403, r.text
    assert values(dash) == {(dash.alice.user_id, "api_key")}


async def test_without_the_vault_nothing_can_be_set(database_url: str, tmp_path: Path) -> None:
    async with dashboard(database_url, tmp_path, keyring=None) as d:
        servers.add_server(
            d.engine, d.alice, "alices", ["/bin/true"], {}, [], None,
            egress=HOSTS, credentials=[API_KEY],
        )  # fmt: skip
        alice = d.browser(d.alice)
        page = await alice.get("/credentials")
        assert "The vault is not open" in page.text and 'type="password"' not in page.text
        r = await alice.post_form("/credentials/alices/api_key", {"value": SECRET})
        assert r.status_code == 503 and SECRET not in r.text
        assert credentials.list_credentials(d.engine, d.alice)[0].is_set is False
