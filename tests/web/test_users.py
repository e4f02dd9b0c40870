"""The users page and "view as", in-process over the real control plane and store (SQLite
and PostgreSQL): the list for administrators, and impersonation started from it.

Attacks, each a test that fails if its guard is removed:
- a user who is not an administrator gets no users page, no Users link, and cannot
  start an impersonation by posting the form themselves;
- a "view as" post without the session's CSRF token, with another session's, or from
  another origin is refused and starts nothing;
- an impersonating administrator changes nothing: starting another impersonation is
  refused (stopping is the one post that works);
- impersonation is refused when the gateway has it off, for oneself, and beyond an
  hour; a made-up user or a number that is not one is a clear error, never a 500.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from gigmcp.control import websessions
from gigmcp.control.actor import Actor
from gigmcp.store.models import AuditRow
from tests.support.dashboard import ORIGIN, Browser, Dash, dashboard

CSP_START = "default-src 'none'; script-src 'self'; style-src 'self'"


@pytest.fixture
async def dash(database_url: str, tmp_path: Path) -> AsyncIterator[Dash]:
    async with dashboard(database_url, tmp_path, impersonation=True) as d:
        yield d


def current(dash: Dash, b: Browser) -> websessions.Current:
    found = websessions.resolve(
        dash.engine, b.client.cookies[dash.cfg.cookie_name], dash.cfg.lifetimes
    )
    assert found is not None
    return found


def viewing_as(dash: Dash, b: Browser) -> int | None:
    """Whom the browser's session views the gateway as (None: as itself)."""
    actor = current(dash, b).actor
    return actor.user_id if actor.impersonating else None


def starts(dash: Dash, who: Actor) -> int:
    with Session(dash.engine) as s:
        return len(
            list(
                s.scalars(
                    select(AuditRow.id).where(
                        AuditRow.action == "impersonation.start", AuditRow.user_id == who.user_id
                    )
                )
            )
        )


async def test_administrators_see_every_user_with_their_role(dash: Dash) -> None:
    admin = dash.browser(dash.admin)
    r = await admin.get("/users")
    assert r.status_code == 200, r.text
    assert r.headers["content-security-policy"].startswith(CSP_START)
    assert r.headers["cache-control"] == "no-store"
    assert 'href="/users" aria-current="page"' in r.text
    for name, email in (("Rita Root", "root"), ("Alice", "alice"), ("Bob", "bob")):
        assert f">{name}" in r.text and f"{email}@example.test" in r.text
    assert ">administrator<" in r.text and ">user<" in r.text
    assert "https://idp.test" in r.text
    # A "view as" form for everyone but oneself, posting with the session's CSRF token.
    assert r.text.count('action="/users/view-as"') == 2
    assert f'name="user_id" value="{dash.alice.user_id}"' in r.text
    assert f'name="user_id" value="{dash.admin.user_id}"' not in r.text
    assert f'name="csrf" value="{admin.csrf}"' in r.text
    assert 'max="60"' in r.text


async def test_attack_a_user_gets_no_users_page(dash: Dash) -> None:
    alice = dash.browser(dash.alice)
    r = await alice.get("/users")
    assert r.status_code == 403
    assert "Bob" not in r.text and "bob@example.test" not in r.text
    assert 'href="/users"' not in (await alice.get("/")).text
    assert 'href="/users"' in (await dash.browser(dash.admin).get("/")).text


async def test_attack_a_user_cannot_start_an_impersonation_by_posting(dash: Dash) -> None:
    alice = dash.browser(dash.alice)
    for target in (dash.bob, dash.admin):
        r = await alice.post_form(
            "/users/view-as", {"user_id": str(target.user_id), "minutes": "10"}
        )
        assert r.status_code == 403, r.text
    # A made-up user too: refused for who she is, before whether it exists.
    ghost = await alice.post_form("/users/view-as", {"user_id": "9999", "minutes": "10"})
    assert ghost.status_code == 403
    assert viewing_as(dash, alice) is None
    assert starts(dash, dash.bob) == starts(dash, dash.admin) == 0


async def test_attack_view_as_without_its_csrf_token_or_from_elsewhere_is_refused(
    dash: Dash,
) -> None:
    admin = dash.browser(dash.admin)
    other = dash.browser(dash.admin)  # a second session: another token
    fields = {"user_id": str(dash.alice.user_id), "minutes": "10"}
    attempts = [
        await admin.post_form("/users/view-as", fields, csrf=False),
        await admin.client.post(
            "/users/view-as", data={**fields, "csrf": other.csrf}, headers={"Origin": ORIGIN}
        ),
        await admin.post_form("/users/view-as", fields, origin="https://evil.example"),
        await admin.post_form("/users/view-as", fields, origin=None),
    ]
    for r in attempts:
        assert r.status_code == 403, r.text
    assert viewing_as(dash, admin) is None and starts(dash, dash.alice) == 0


async def test_view_as_starts_a_read_only_view_and_stopping_ends_it(dash: Dash) -> None:
    admin = dash.browser(dash.admin)
    r = await admin.post_form(
        "/users/view-as", {"user_id": str(dash.alice.user_id), "minutes": "5"}
    )
    assert r.status_code == 303 and r.headers["location"] == "/"
    assert viewing_as(dash, admin) == dash.alice.user_id
    assert starts(dash, dash.alice) == 1  # on her record, for her to see
    page = await admin.get("/")
    assert "You are viewing the gateway as Alice" in page.text
    # The users page still lists (the real administrator), without the forms.
    users = await admin.get("/users")
    assert users.status_code == 200
    assert 'action="/users/view-as"' not in users.text
    assert "stop that first" in users.text
    stopped = await admin.post_form("/impersonation/stop", {})
    assert stopped.status_code == 303 and viewing_as(dash, admin) is None


async def test_attack_an_impersonating_administrator_cannot_start_another(dash: Dash) -> None:
    admin = dash.browser(dash.admin)
    first = await admin.post_form("/users/view-as", {"user_id": str(dash.alice.user_id)})
    assert first.status_code == 303
    again = await admin.post_form(
        "/users/view-as", {"user_id": str(dash.bob.user_id), "minutes": "10"}
    )
    assert again.status_code == 409, again.text
    assert "stop first" in again.text
    assert viewing_as(dash, admin) == dash.alice.user_id
    assert starts(dash, dash.bob) == 0


@pytest.mark.parametrize(
    ("fields", "status", "words"),
    [
        ({"minutes": "61"}, 422, "minutes: 1 to 60"),
        ({"minutes": "0"}, 422, "minutes: 1 to 60"),
        ({"minutes": "ten"}, 422, "a whole number from 1 to 60"),
        ({"minutes": "-5"}, 422, "a whole number from 1 to 60"),
        ({"minutes": "9" * 40}, 422, "a whole number from 1 to 60"),
        ({"user_id": "9999"}, 404, "no user with id 9999"),
        ({"user_id": "x"}, 422, "choose one from the list"),
        ({"user_id": "9" * 40}, 422, "choose one from the list"),
        ({"user_id": ""}, 422, "choose one from the list"),
    ],
)
async def test_a_bad_view_as_is_a_clear_error(
    dash: Dash, fields: dict[str, str], status: int, words: str
) -> None:
    admin = dash.browser(dash.admin)
    r = await admin.post_form("/users/view-as", {"user_id": str(dash.alice.user_id), **fields})
    assert r.status_code == status, r.text
    assert words in r.text and "Traceback" not in r.text
    assert viewing_as(dash, admin) is None


async def test_attack_viewing_as_oneself_is_refused(dash: Dash) -> None:
    admin = dash.browser(dash.admin)
    r = await admin.post_form("/users/view-as", {"user_id": str(dash.admin.user_id)})
    assert r.status_code == 422 and "as yourself" in r.text
    assert viewing_as(dash, admin) is None


async def test_attack_view_as_is_refused_when_the_gateway_has_it_off(
    database_url: str, tmp_path: Path
) -> None:
    async with dashboard(database_url, tmp_path) as dash:
        admin = dash.browser(dash.admin)
        page = await admin.get("/users")
        assert page.status_code == 200
        assert 'action="/users/view-as"' not in page.text
        assert "GIG_IMPERSONATION=on" in page.text
        r = await admin.post_form(
            "/users/view-as", {"user_id": str(dash.alice.user_id), "minutes": "10"}
        )
        assert r.status_code == 404 and "GIG_IMPERSONATION=on" in r.text
        assert viewing_as(dash, admin) is None and starts(dash, dash.alice) == 0
