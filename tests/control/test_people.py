"""Users, browser sessions, API tokens and one-time sign-in links in the service layer,
on both databases: roles decided only by the policy, a new session at every sign-in,
every kind of secret hashed, refused once revoked or expired, and none of them making
the MCP endpoints reload."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from gigmcp.auth import tokens
from gigmcp.control import actor, apitokens, loginlinks, profiles, users, websessions
from gigmcp.control.actor import Actor
from gigmcp.control.users import Identity, RolePolicy
from gigmcp.errors import Forbidden, Invalid, NotFound
from gigmcp.store.models import (
    ApiToken,
    AuditRow,
    ConfigRevision,
    LoginLink,
    User,
    WebSession,
)

ISS = "https://idp.example.test"
POLICY = RolePolicy(
    admin_role="gig-admins",
    admin_subjects=frozenset({"root-sub"}),
    admin_emails=frozenset({"boss@example.test"}),
)
LIFE = websessions.Lifetimes(idle=timedelta(minutes=30), absolute=timedelta(hours=12))


@pytest.fixture
def engine(migrated_engine: Engine) -> Engine:
    return migrated_engine


def revision(engine: Engine) -> int:
    with Session(engine) as s:
        return int(s.scalar(select(ConfigRevision.rev)) or 0)


def alice(engine: Engine) -> Actor:
    return users.sign_in(engine, Identity(ISS, "alice-sub", "alice@example.test"), POLICY)


# --- who is an administrator ---------------------------------------------------------


def test_the_role_comes_from_the_roles_claim_and_is_recomputed_at_each_sign_in(
    engine: Engine,
) -> None:
    first = users.sign_in(engine, Identity(ISS, "carol", roles=("gig-admins",)), POLICY)
    assert first.admin
    again = users.sign_in(engine, Identity(ISS, "carol", roles=("staff",)), POLICY)
    assert again.user_id == first.user_id and not again.admin


def test_an_unverified_email_on_the_bootstrap_list_makes_no_administrator(engine: Engine) -> None:
    unverified = Identity(ISS, "mallory", "boss@example.test", email_verified=False)
    assert not users.sign_in(engine, unverified, POLICY).admin
    verified = Identity(ISS, "boss", "Boss@Example.test", email_verified=True)
    assert users.sign_in(engine, verified, POLICY).admin
    assert users.sign_in(engine, Identity(ISS, "root-sub"), POLICY).admin


def test_users_are_keyed_on_issuer_and_subject_never_on_email(engine: Engine) -> None:
    a = users.sign_in(engine, Identity(ISS, "one", "same@example.test", True), POLICY)
    b = users.sign_in(engine, Identity(ISS, "two", "same@example.test", True), POLICY)
    c = users.sign_in(engine, Identity("https://other.test", "one"), POLICY)
    assert len({a.user_id, b.user_id, c.user_id}) == 3


def test_only_an_administrator_lists_users(engine: Engine) -> None:
    user = alice(engine)
    with pytest.raises(Forbidden):
        users.list_users(engine, user)
    admin = users.sign_in(engine, Identity(ISS, "root-sub"), POLICY)
    assert {u.subject for u in users.list_users(engine, admin)} >= {"alice-sub", "root-sub"}


def test_signing_in_does_not_make_the_mcp_endpoints_reload(engine: Engine) -> None:
    before = revision(engine)
    user = alice(engine)
    opened = websessions.open_session(engine, user, LIFE)
    current = websessions.resolve(engine, opened.token, LIFE)
    assert current is not None
    websessions.close(engine, current)
    apitokens.mint(engine, user, "script", "read", None)
    loginlinks.redeem(engine, loginlinks.mint(engine))
    assert revision(engine) == before
    profiles.create_profile(engine, user, "alices")  # a real change still does
    assert revision(engine) == before + 1


# --- browser sessions ----------------------------------------------------------------


def test_each_sign_in_gets_a_new_session_and_only_hashes_are_stored(engine: Engine) -> None:
    user = alice(engine)
    one, two = (
        websessions.open_session(engine, user, LIFE),
        websessions.open_session(engine, user, LIFE),
    )
    assert one.token != two.token and one.csrf != two.csrf
    assert one.token.startswith("gig_ws_") and one.csrf.startswith("gig_cs_")
    with Session(engine) as s:
        stored = [(r.token_hash, r.csrf_hash) for r in s.scalars(select(WebSession))]
    flat = " ".join(h for pair in stored for h in pair)
    assert one.token not in flat and one.csrf not in flat
    assert tokens.digest(one.token) in flat


def test_a_session_resolves_to_its_user_and_checks_its_own_csrf_token(engine: Engine) -> None:
    user = alice(engine)
    mine = websessions.open_session(engine, user, LIFE)
    other = websessions.open_session(
        engine, users.sign_in(engine, Identity(ISS, "bob"), POLICY), LIFE
    )
    current = websessions.resolve(engine, mine.token, LIFE)
    assert current is not None and current.actor.user_id == user.user_id
    assert current.csrf_ok(mine.csrf)
    assert not current.csrf_ok(other.csrf)  # another session's token
    assert not current.csrf_ok(None) and not current.csrf_ok("")
    assert not current.csrf_ok(mine.token)  # a secret of another kind


def test_a_session_ends_when_idle_at_its_deadline_or_when_revoked(engine: Engine) -> None:
    user = alice(engine)
    idle = websessions.open_session(engine, user, LIFE)
    old = datetime.now(UTC) - LIFE.idle - timedelta(seconds=1)
    with Session(engine) as s, s.begin():
        s.execute(update(WebSession).where(WebSession.id == idle.id).values(last_seen_at=old))
    assert websessions.resolve(engine, idle.token, LIFE) is None

    absolute = websessions.open_session(engine, user, LIFE)
    past = datetime.now(UTC) - timedelta(seconds=1)
    with Session(engine) as s, s.begin():
        s.execute(update(WebSession).where(WebSession.id == absolute.id).values(expires_at=past))
    assert websessions.resolve(engine, absolute.token, LIFE) is None

    revoked = websessions.open_session(engine, user, LIFE)
    websessions.revoke(engine, user, revoked.id)
    assert websessions.resolve(engine, revoked.token, LIFE) is None


def test_a_user_lists_and_revokes_only_their_own_sessions(engine: Engine) -> None:
    user = alice(engine)
    bob = users.sign_in(engine, Identity(ISS, "bob"), POLICY)
    admin = users.sign_in(engine, Identity(ISS, "root-sub"), POLICY)
    bobs = websessions.open_session(engine, bob, LIFE)
    mine = websessions.open_session(engine, user, LIFE)
    assert [s.id for s in websessions.list_sessions(engine, user, mine.id)] == [mine.id]
    for who in (user, admin):  # sessions are personal: not even an administrator
        with pytest.raises(NotFound):
            websessions.revoke(engine, who, bobs.id)
    assert websessions.resolve(engine, bobs.token, LIFE) is not None


def test_a_secret_of_another_kind_is_never_a_session(engine: Engine) -> None:
    user = alice(engine)
    _, api = apitokens.mint(engine, user, "script", "write", None)
    assert websessions.resolve(engine, api, LIFE) is None
    assert websessions.resolve(engine, tokens.mint(), LIFE) is None
    assert apitokens.resolve(engine, websessions.open_session(engine, user, LIFE).token) is None


# --- API tokens ----------------------------------------------------------------------


def test_an_api_token_acts_as_its_user_and_a_read_token_changes_nothing(engine: Engine) -> None:
    user = alice(engine)
    _, write = apitokens.mint(engine, user, "deploy", "write", None)
    _, read = apitokens.mint(engine, user, "dash", "read", None)
    w, r = apitokens.resolve(engine, write), apitokens.resolve(engine, read)
    assert w is not None and r is not None
    assert w.actor.user_id == r.actor.user_id == user.user_id
    profiles.create_profile(engine, w.actor, "from-script")
    with pytest.raises(Forbidden):
        profiles.create_profile(engine, r.actor, "from-read-token")
    with pytest.raises(Forbidden):
        apitokens.mint(engine, r.actor, "escalate", "write", None)


def test_api_tokens_are_personal_expire_and_revoke(engine: Engine) -> None:
    user = alice(engine)
    bob = users.sign_in(engine, Identity(ISS, "bob"), POLICY)
    tid, token = apitokens.mint(engine, user, "ci", "write", timedelta(hours=1))
    assert [t.id for t in apitokens.list_tokens(engine, bob)] == []
    with pytest.raises(NotFound):
        apitokens.revoke(engine, bob, tid)
    past = datetime.now(UTC) - timedelta(seconds=1)
    with Session(engine) as s, s.begin():
        s.execute(update(ApiToken).where(ApiToken.id == tid).values(expires_at=past))
    assert apitokens.resolve(engine, token) is None
    tid2, token2 = apitokens.mint(engine, user, "ci2", "write", None)
    apitokens.revoke(engine, user, tid2)
    assert apitokens.resolve(engine, token2) is None
    with Session(engine) as s:
        assert all(token not in (t.token_hash + t.display) for t in s.scalars(select(ApiToken)))


def test_an_api_token_needs_a_name_and_a_known_scope(engine: Engine) -> None:
    user = alice(engine)
    with pytest.raises(Invalid, match="scope"):
        apitokens.mint(engine, user, "x", "admin", None)
    with pytest.raises(Invalid, match="name"):
        apitokens.mint(engine, user, "  ", "read", None)


# --- one-time sign-in links ----------------------------------------------------------


def test_a_login_link_signs_in_the_local_administrator_exactly_once(engine: Engine) -> None:
    link = loginlinks.mint(engine)
    first = loginlinks.redeem(engine, link)
    assert first is not None and first == actor.find_local_admin(engine)
    assert loginlinks.redeem(engine, link) is None  # single use


def test_a_login_link_is_refused_after_its_deadline_and_in_any_other_shape(
    engine: Engine,
) -> None:
    link = loginlinks.mint(engine)
    past = datetime.now(UTC) - timedelta(seconds=1)
    with Session(engine) as s, s.begin():
        s.execute(update(LoginLink).values(expires_at=past))
    assert loginlinks.redeem(engine, link) is None
    assert loginlinks.redeem(engine, None) is None
    assert loginlinks.redeem(engine, tokens.mint()) is None  # a profile token
    with Session(engine) as s:
        assert link not in " ".join(r.token_hash for r in s.scalars(select(LoginLink)))


def test_account_events_are_audited_without_their_secrets(engine: Engine) -> None:
    user = alice(engine)
    opened = websessions.open_session(engine, user, LIFE)
    _, api = apitokens.mint(engine, user, "ci", "write", None)
    link = loginlinks.mint(engine)
    with Session(engine) as s:
        audit = [(r.action, r.user_id, r.detail or "") for r in s.scalars(select(AuditRow))]
    actions = [a for a, _, _ in audit]
    assert {"user.sign_in", "session.open", "api_token.mint", "login_link.mint"} <= set(actions)
    text = repr(audit)
    assert opened.token not in text and api not in text and link not in text
    with Session(engine) as s:
        assert s.get(User, user.user_id) is not None


def test_a_read_only_token_cannot_sign_the_user_out_elsewhere(engine: Engine) -> None:
    user = alice(engine)
    browser = websessions.open_session(engine, user, LIFE)
    _, read = apitokens.mint(engine, user, "ro", "read", None)
    resolved = apitokens.resolve(engine, read)
    assert resolved is not None
    with pytest.raises(Forbidden):
        websessions.revoke(engine, resolved.actor, browser.id)
    assert websessions.resolve(engine, browser.token, LIFE) is not None
