"""Servers: the servers the viewer may use, with their instances, and each one's logs;
and adding a remote MCP server by its URL.

Owns the pages under ``/servers``: the list (every server the viewer may use — their
own and the gateway's catalog; every server, for an administrator — with each instance
in the viewer's profiles: state, restarts, last error, memory, last use), a server's
page (its definition, its instances, and the log tail of the most recently used ones or
of the one the viewer picks) and the log block alone, which the server's page polls
with htmx every few seconds (a plain Refresh link does the same without JavaScript).
The status comes from the supervisor's snapshot (``ApiConfig.instances``) through the
service layer (``control/instances.py``), which decides what the viewer may see:
another user's private server, profile or log is not found, exactly as a missing one,
on every route here. It must never read a process, a log file or a row itself, and
never mark a log line safe (a server writes what it likes to its log).

Also owns the list's form "Add a remote server" and its post, ``/servers/remote``:
turning the form into a call to the service layer (``control/remote.py``), which
decides who may add one, checks the name, the URL and the registration, probes the
server through the SSRF guard and works out its authorization. Success is a redirect to
the server's page, whose notice says (naming the app, looked up, never taken from the
URL) that users connect it on the Accounts page when it asks for authorization; a
refusal is the list again, at the error's status, with the service layer's reason and
what was typed. It must never send a pre-registered client's secret back to the browser
(not in the page, not in a form shown again, not in a redirect), nor a password typed
into the URL, nor log either; and never decide who may add a server.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated
from urllib.parse import quote, urlsplit, urlunsplit

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response

from gigmcp.api.auth import config
from gigmcp.api.context import ApiConfig
from gigmcp.api.problems import status_of
from gigmcp.control import instances, oauth, remote, servers
from gigmcp.core.instances import InstanceView
from gigmcp.errors import ConfigurationError, GigError, NotFound
from gigmcp.oauthclient.outbound import Outbound
from gigmcp.web import render
from gigmcp.web.render import NavItem
from gigmcp.web.security import Form, Signed, SignInNeeded, Viewer, viewer

router = APIRouter()
NAV_ITEM = NavItem("nav.servers", "/servers")
LOG_LINES = 200
# Log blocks on a server's page at once: each is a file read per poll, and an
# administrator may see hundreds of instances of a server (the table links to each).
LOGS_SHOWN = 5
_NEVER = datetime.min.replace(tzinfo=UTC)
Slug = Annotated[str, Query(max_length=63)]
Vendor = Annotated[str, Query(max_length=64)]
# How often the server's page asks for its log blocks again (htmx's "every").
POLL = "5s"
# htmx stops polling an element whose answer has this status (and still swaps it in).
STOP_POLLING = 286
# What a server's page says after the add-remote form, by the ``done`` its redirect
# carries (anything else says nothing: the page never shows text a URL brought).
DONE = {"added": "servers.done_added", "connect": "servers.done_added_authorization"}
# The add-remote form's fields other than the secret: what a refused form keeps.
REMOTE_FIELDS = ("name", "url", "registration", "client_id")
NEW_REMOTE = {**dict.fromkeys(REMOTE_FIELDS, ""), "registration": remote.REGISTRATIONS[0]}


@dataclass(frozen=True, slots=True)
class Log:
    """One instance's log block: its lines, or why there are none."""

    server: str
    profile: str
    lines: tuple[str, ...]
    # None, or the message key saying why the block is empty or stopped.
    note: str | None = None
    polling: bool = True


@router.get("/servers")
def list_page(request: Request, who: Signed) -> Response:
    return _list(request, who)


@router.post("/servers/remote")
def add_remote(request: Request, who: Signed, form: Form) -> Response:
    """Add a remote server by URL. A plain ``def``: the service layer probes the server
    (seconds) and runs its own event loop, so this runs in the thread pool."""
    cfg = config(request)
    typed = {name: form.get(name, "").strip() for name in REMOTE_FIELDS}
    client = None
    if typed["client_id"]:
        secret = form.get("client_secret", "")
        client = remote.PreRegistered(typed["client_id"], secret.encode() if secret else None)
    try:
        if cfg.keyring is None:
            raise ConfigurationError("the vault is not open on this gateway")
        added = remote.add_remote_server(
            cfg.engine, cfg.keyring, cfg.outbound or Outbound(), who.actor, typed["name"],
            typed["url"], cfg.public_origin, client, typed["registration"],
        )  # fmt: skip
    except GigError as exc:
        found = status_of(exc)
        if found is None:
            raise
        # The service layer's reason names what is wrong, never the secret; the form
        # comes back with what was typed, its secret field empty (and a password typed
        # into the URL dropped with its user name).
        draft = {**typed, "url": _without_userinfo(typed["url"])}
        return _list(request, who, draft, str(exc), found[0])
    where = f"/servers/{quote(added.name, safe='')}"
    if added.vendor is None:
        return RedirectResponse(f"{where}?done=added", status_code=303)
    return RedirectResponse(
        f"{where}?done=connect&vendor={quote(added.vendor, safe='')}", status_code=303
    )


def _without_userinfo(url: str) -> str:
    """``url`` without a ``user:password@``; empty for text that is not a URL at all."""
    try:
        u = urlsplit(url)
    except ValueError:
        return ""
    if "@" not in u.netloc:
        return url
    return urlunsplit(u._replace(netloc=u.netloc.rpartition("@")[2]))


def _list(
    request: Request,
    who: Viewer,
    draft: Mapping[str, str] | None = None,
    error: str | None = None,
    status: int = 200,
) -> Response:
    cfg = config(request)
    grouped: defaultdict[str, list[instances.Instance]] = defaultdict(list)
    for inst in instances.visible(cfg.engine, who.actor, _snapshot(cfg)):
        grouped[inst.server].append(inst)
    rows = [(s, grouped.get(s.name, [])) for s in servers.list_servers(cfg.engine, who.actor)]
    return render.page(
        request,
        "servers.html",
        who,
        {
            "rows": rows,
            "remote": draft if draft is not None else NEW_REMOTE,
            "registrations": remote.REGISTRATIONS,
            # What to register at the vendor for a client registered by hand.
            "callback": oauth.callback_url(cfg.public_origin, remote.vendor_of("NAME")),
            "error": error,
            "vault_open": cfg.keyring is not None,
        },
        status,
    )


@router.get("/servers/{name}")
def server_page(
    request: Request,
    who: Signed,
    name: str,
    profile: Slug | None = None,
    done: str | None = None,
    vendor: Vendor | None = None,
) -> Response:
    """``profile``: show that instance's log (not found unless the viewer may see it);
    without it, the logs of the most recently used instances, at most LOGS_SHOWN.
    ``done``/``vendor``: the notice after the server was added (the vendor named only
    when it is an app the viewer may connect to)."""
    cfg = config(request)
    snapshot = _snapshot(cfg)
    found = instances.of_server(cfg.engine, who.actor, snapshot, name)
    if profile is not None:
        chosen = [instances.find(cfg.engine, who.actor, snapshot, name, profile)]
    else:
        recent = sorted(found.instances, key=lambda i: i.last_used or _NEVER, reverse=True)
        chosen = recent[:LOGS_SHOWN]
    return render.page(
        request,
        "server.html",
        who,
        {
            "s": found.server,
            "instances": found.instances,
            "logs": [_log(cfg, who, name, i.profile) for i in chosen],
            "more_logs": len(found.instances) - len(chosen),
            "profile": profile,
            "poll": POLL,
            # The Refresh links' own query, new on every render: a link that differs
            # from the page's address only by its #fragment would make the browser
            # scroll, not load the page again.
            "refresh": time.time_ns(),
            "notice": DONE.get(done or ""),
            "connect": _app(cfg, who, vendor) if done == "connect" else None,
        },
    )


@router.get("/servers/{name}/logs/{profile}")
def log_block(request: Request, name: str, profile: str) -> Response:
    """The log block alone, for the server's page to poll. A session that ended answers
    with a block saying so and the status that stops the polling, rather than a redirect
    to the sign-in page that htmx would follow and swap into the block."""
    try:
        who = viewer(request, activity=False)  # a poll: the person may be long gone
    except SignInNeeded:
        stopped = Log(name, profile, (), "servers.log_signed_out", polling=False)
        return render.page(request, "server_log.html", None, {"log": stopped}, STOP_POLLING)
    cfg = config(request)
    # Not found, in the service layer's words, unless the viewer may see the instance.
    instances.find(cfg.engine, who.actor, _snapshot(cfg), name, profile)
    return render.page(
        request, "server_log.html", who, {"log": _log(cfg, who, name, profile), "poll": POLL}
    )


def _app(cfg: ApiConfig, who: Viewer, vendor: str | None) -> oauth.ConnectionInfo | None:
    """The app ``vendor`` as the viewer's Accounts page lists it; None for any other
    name (the notice then names none)."""
    if not vendor:
        return None
    return next(
        (c for c in oauth.list_connections(cfg.engine, who.actor) if c.vendor == vendor), None
    )


def _snapshot(cfg: ApiConfig) -> Sequence[InstanceView] | None:
    return cfg.instances() if cfg.instances is not None else None


def _log(cfg: ApiConfig, who: Viewer, server: str, profile: str) -> Log:
    if cfg.logs_dir is None:
        return Log(server, profile, (), "servers.log_off", polling=False)
    try:
        lines = servers.log_lines(cfg.engine, who.actor, cfg.logs_dir, profile, server, LOG_LINES)
    except NotFound:
        # The instance is the viewer's (the caller checked): no file yet, it has not run.
        return Log(server, profile, (), "servers.log_empty")
    return Log(server, profile, tuple(lines))
