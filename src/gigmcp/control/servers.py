"""Administrative operations on the store (what the CLI, and later the REST API, do).

Each operation is one transaction that also bumps ``config_revision`` and writes its
audit row, so a running gateway sees the change on its very next request and the audit
log never misses one. Errors are :class:`AdminError` with a message fit for a person.
It must never return or log a token except from :func:`mint_token`, once.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gigmcp.auth import tokens
from gigmcp.credentials.definitions import DefinitionError, parse_credentials, parse_egress
from gigmcp.egress.policy import PortNotPermitted, PortRules
from gigmcp.store.limits import LimitError
from gigmcp.store.limits import check as check_limits
from gigmcp.store.models import (
    AuditRow,
    ConfigRevision,
    CredentialValue,
    Profile,
    ProfileServer,
    ProfileToken,
    ProfileTool,
    Server,
    User,
)
from gigmcp.vault import store as vault_store
from gigmcp.vault.keys import Keyring, VaultError

SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")
SERVER_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class AdminError(Exception):
    pass


@contextmanager
def change(engine: Engine, action: str, user_id: int, **audit: object) -> Iterator[Session]:
    """A transaction that bumps the revision and records ``action`` when it commits."""
    with Session(engine) as s, s.begin():
        yield s
        s.execute(
            update(ConfigRevision).where(ConfigRevision.id == 1).values(rev=ConfigRevision.rev + 1)
        )
        s.add(AuditRow(action=action, outcome="ok", user_id=user_id, **audit))


def local_admin(engine: Engine) -> int:
    """The single local admin who owns everything the CLI makes (until OIDC users exist)."""
    with Session(engine) as s, s.begin():
        uid = s.scalar(select(User.id).where(User.issuer == "local", User.subject == "admin"))
        if uid is None:
            user = User(issuer="local", subject="admin", email=None, role="admin")
            s.add(user)
            s.flush()
            uid = user.id
        return uid


def _profile(s: Session, slug: str) -> Profile:
    p = s.scalar(select(Profile).where(Profile.slug == slug))
    if p is None:
        raise AdminError(f"no profile named {slug!r} (see: gigmcp profile list)")
    return p


def _server(s: Session, name: str) -> Server:
    srv = s.scalar(select(Server).where(Server.name == name))
    if srv is None:
        raise AdminError(f"no server named {name!r} (see: gigmcp server list)")
    return srv


def _assignment(s: Session, p: Profile, srv: Server) -> ProfileServer:
    a = s.scalar(
        select(ProfileServer).where(
            ProfileServer.profile_id == p.id, ProfileServer.server_id == srv.id
        )
    )
    if a is None:
        raise AdminError(f"server {srv.name!r} is not assigned to profile {p.slug!r}")
    return a


def create_profile(engine: Engine, user_id: int, slug: str) -> None:
    if not SLUG.match(slug):
        raise AdminError(
            f"invalid profile slug {slug!r}: 2-63 characters of a-z, 0-9 and '-', "
            "starting with a letter or digit"
        )
    try:
        with change(engine, "profile.create", user_id, detail=slug) as s:
            s.add(Profile(slug=slug, owner_id=user_id))
    except IntegrityError as exc:
        raise AdminError(f"a profile named {slug!r} already exists") from exc


def delete_profile(engine: Engine, user_id: int, slug: str) -> None:
    with change(engine, "profile.delete", user_id, detail=slug) as s:
        s.delete(_profile(s, slug))


def add_server(
    engine: Engine,
    user_id: int,
    name: str,
    command: list[str],
    env: dict[str, str],
    env_names: list[str],
    cwd: str | None,
    limits: dict[str, int] | None = None,
    egress: dict[str, Any] | None = None,
    credentials: list[dict[str, Any]] | None = None,
    extra_ports: Collection[int] = (),
) -> None:
    try:
        checked = check_limits(dict(limits or {}))
    except LimitError as exc:
        raise AdminError(str(exc)) from exc
    egress_json, credentials_json = _definitions(egress, credentials, extra_ports)
    if not SERVER_NAME.match(name):
        raise AdminError(
            f"invalid server name {name!r}: a-z, 0-9 and '-' only "
            "(no '_': tools are named <server>_<tool>)"
        )
    if not command:
        raise AdminError("missing command: gigmcp server add NAME -- COMMAND [ARGS]...")
    for key in [*env, *env_names]:
        if not ENV_NAME.match(key):
            raise AdminError(f"invalid environment variable name {key!r}")
    try:
        with change(engine, "server.add", user_id, server=name) as s:
            s.add(
                Server(
                    name=name,
                    owner_id=user_id,
                    command=command,
                    env=env,
                    env_names=env_names,
                    cwd=cwd,
                    limits=checked,
                    egress=egress_json,
                    credentials=credentials_json,
                )
            )
    except IntegrityError as exc:
        raise AdminError(f"a server named {name!r} already exists") from exc


def set_limits(engine: Engine, user_id: int, name: str, limits: dict[str, int]) -> None:
    """Change a server's limits; they apply from its next start."""
    try:
        checked = check_limits(dict(limits))
    except LimitError as exc:
        raise AdminError(str(exc)) from exc
    with change(engine, "server.limits", user_id, server=name) as s:
        srv = _server(s, name)
        srv.limits = {**(srv.limits or {}), **checked}


def _definitions(
    egress: dict[str, Any] | None,
    credentials: list[dict[str, Any]] | None,
    extra_ports: Collection[int] = (),
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Parse and check a grant. ``extra_ports``: the operator's GIG_EGRESS_EXTRA_PORTS;
    without it, only 443 and 80 (the proxy checks again at run time)."""
    try:
        parsed = parse_egress(egress)
        creds = parse_credentials(credentials, parsed)
        PortRules(extra_ports).check(parsed.ports)
    except (DefinitionError, PortNotPermitted) as exc:
        raise AdminError(str(exc)) from exc
    return parsed.to_json(), [c.to_json() for c in creds]


def set_egress(
    engine: Engine,
    user_id: int,
    name: str,
    egress: dict[str, Any],
    credentials: list[dict[str, Any]] | None = None,
    extra_ports: Collection[int] = (),
) -> None:
    """Replace a server's egress allowlist (and, if given, its credential definitions);
    running instances are retired as soon as the gateway notices (router/gateway.py)."""
    with change(engine, "server.egress", user_id, server=name) as s:
        srv = _server(s, name)
        egress_json, creds_json = _definitions(
            egress, srv.credentials if credentials is None else credentials, extra_ports
        )
        srv.egress, srv.credentials = egress_json, creds_json


def set_credential(
    engine: Engine, keyring: Keyring, user_id: int, server: str, credential_id: str, value: bytes
) -> None:
    """Store a credential value for (this user, server), sealed by the vault. The audit
    row names the credential, never the value."""
    if not value:
        raise AdminError("the value is empty (it is read from standard input)")
    if len(value) > 64 * 1024:
        raise AdminError("the value is longer than 64 KiB")
    # No control character: a value goes into an HTTP header, where h11 would refuse it
    # with an error quoting the value (and errors get logged).
    if any(b < 0x20 or b == 0x7F for b in value):
        raise AdminError(
            "the value holds a line break, NUL or other control character (a trailing "
            "newline from echo is removed; use printf '%s' to be exact)"
        )
    with change(engine, "credential.set", user_id, server=server, detail=credential_id) as s:
        srv = _server(s, server)
        known = {c.get("id") for c in srv.credentials or []}
        if credential_id not in known:
            raise AdminError(
                f"server {server!r} declares no credential {credential_id!r}"
                + (f" (it declares: {', '.join(sorted(map(str, known)))})" if known else "")
            )
        # A sealed value travels in a header the proxy renders: one h11 would refuse
        # (a trailing space) is refused here, by what is wrong and never quoting it.
        try:
            defs = parse_credentials(srv.credentials, parse_egress(srv.egress))
        except DefinitionError as exc:
            raise AdminError(f"server {server!r}: {exc}") from None
        (cred,) = (c for c in defs if c.id == credential_id)
        problem = cred.value_problem(value) if cred.sealed else None
        if problem is not None:
            raise AdminError(f"{server}/{credential_id}: {problem}")
        vault_store.put(s, keyring, user_id, srv.id, credential_id, value)


def unset_credential(engine: Engine, user_id: int, server: str, credential_id: str) -> None:
    with change(engine, "credential.unset", user_id, server=server, detail=credential_id) as s:
        srv = _server(s, server)
        row = s.scalar(
            select(CredentialValue).where(
                CredentialValue.owner_id == user_id,
                CredentialValue.server_id == srv.id,
                CredentialValue.credential_id == credential_id,
            )
        )
        if row is None:
            raise AdminError(f"no value is set for {server}/{credential_id}")
        s.delete(row)


def list_credentials(engine: Engine, user_id: int) -> list[tuple[str, str, str, bool]]:
    """(server, credential id, sealed|entrusted, value set?) for every declared credential."""
    out = []
    with Session(engine) as s:
        have = {
            (r.server_id, r.credential_id)
            for r in s.scalars(select(CredentialValue).where(CredentialValue.owner_id == user_id))
        }
        for srv in s.scalars(select(Server).order_by(Server.name)):
            for c in srv.credentials or []:
                kind = "sealed" if "header" in c.get("inject", {}) else "entrusted"
                out.append((srv.name, str(c["id"]), kind, (srv.id, c["id"]) in have))
    return out


def rotate_master_key(engine: Engine, keyring: Keyring, user_id: int) -> vault_store.Rotation:
    """Re-wrap every credential value under the current master key, in one transaction."""
    try:
        result = vault_store.rotate(engine, keyring)
    except VaultError as exc:
        raise AdminError(f"rotation stopped, nothing changed: {exc}") from exc
    with change(engine, "vault.rotate", user_id, detail=f"{result.rewrapped} to {result.key_id}"):
        pass
    return result


def remove_server(engine: Engine, user_id: int, name: str) -> None:
    with change(engine, "server.remove", user_id, server=name) as s:
        s.delete(_server(s, name))


def assign(engine: Engine, user_id: int, slug: str, server: str, tools_on: bool) -> None:
    try:
        with change(engine, "profile.assign", user_id, server=server, detail=slug) as s:
            p, srv = _profile(s, slug), _server(s, server)
            a = ProfileServer(
                profile_id=p.id, server_id=srv.id, owner_id=p.owner_id, default_enabled=tools_on
            )
            s.add(a)
            s.flush()
            # A registry manifest's tools marked `default: false` (writes, deletes, sends)
            # stay off in a profile until someone enables them there.
            for tool in off_by_default(srv.origin):
                off = ProfileTool(assignment_id=a.id, owner_id=a.owner_id, tool=tool, enabled=False)
                s.add(off)
    except IntegrityError as exc:
        raise AdminError(f"server {server!r} is already assigned to {slug!r}") from exc


def off_by_default(origin: dict[str, Any] | None) -> list[str]:
    """The tools an installed server's manifest marks ``default: false``."""
    manifest = (origin or {}).get("manifest") or {}
    return [
        t["name"]
        for t in manifest.get("tools") or []
        if isinstance(t, dict) and isinstance(t.get("name"), str) and t.get("default") is False
    ]


def unassign(engine: Engine, user_id: int, slug: str, server: str) -> None:
    with change(engine, "profile.unassign", user_id, server=server, detail=slug) as s:
        p, srv = _profile(s, slug), _server(s, server)
        s.delete(_assignment(s, p, srv))


def set_tool(
    engine: Engine, user_id: int, slug: str, server: str, tool: str, enabled: bool
) -> None:
    if not tool or len(tool) > 255:
        raise AdminError("tool name must be 1-255 characters")
    action = "tool.enable" if enabled else "tool.disable"
    with change(engine, action, user_id, server=server, tool=tool, detail=slug) as s:
        a = _assignment(s, _profile(s, slug), _server(s, server))
        row = s.scalar(
            select(ProfileTool).where(ProfileTool.assignment_id == a.id, ProfileTool.tool == tool)
        )
        if row is None:
            s.add(ProfileTool(assignment_id=a.id, owner_id=a.owner_id, tool=tool, enabled=enabled))
        else:
            row.enabled = enabled


def mint_token(
    engine: Engine, user_id: int, slug: str, name: str | None, expires_in: timedelta | None
) -> str:
    token = tokens.mint()
    with change(engine, "token.mint", user_id, detail=slug) as s:
        p = _profile(s, slug)
        s.add(
            ProfileToken(
                token_hash=tokens.digest(token),
                display=tokens.display(token),
                profile_id=p.id,
                owner_id=p.owner_id,
                name=name,
                expires_at=datetime.now(UTC) + expires_in if expires_in else None,
            )
        )
    return token


def revoke_token(engine: Engine, user_id: int, token_id: int) -> None:
    with change(engine, "token.revoke", user_id, detail=f"token {token_id}") as s:
        row = s.get(ProfileToken, token_id)
        if row is None:
            raise AdminError(f"no token with id {token_id} (see: gigmcp token list)")
        if row.revoked_at is None:
            row.revoked_at = datetime.now(UTC)


def parse_duration(text: str) -> timedelta:
    m = re.fullmatch(r"(\d{1,6})([smhd])", text.strip())
    if not m:
        raise AdminError(f"invalid duration {text!r}: use a number and s, m, h or d (e.g. 30d)")
    n, unit = int(m.group(1)), m.group(2)
    if n == 0:
        raise AdminError("duration must be positive")
    return timedelta(**{{"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[unit]: n})
