"""Servers: the servers the viewer may use, with their instances, and each one's logs.

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
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from gigmcp.api.auth import config
from gigmcp.api.context import ApiConfig
from gigmcp.control import instances, servers
from gigmcp.core.instances import InstanceView
from gigmcp.errors import NotFound
from gigmcp.web import render
from gigmcp.web.render import NavItem
from gigmcp.web.security import Signed, SignInNeeded, Viewer, viewer

router = APIRouter()
NAV_ITEM = NavItem("nav.servers", "/servers")
LOG_LINES = 200
# Log blocks on a server's page at once: each is a file read per poll, and an
# administrator may see hundreds of instances of a server (the table links to each).
LOGS_SHOWN = 5
_NEVER = datetime.min.replace(tzinfo=UTC)
Slug = Annotated[str, Query(max_length=63)]
# How often the server's page asks for its log blocks again (htmx's "every").
POLL = "5s"
# htmx stops polling an element whose answer has this status (and still swaps it in).
STOP_POLLING = 286


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
    cfg = config(request)
    grouped: defaultdict[str, list[instances.Instance]] = defaultdict(list)
    for inst in instances.visible(cfg.engine, who.actor, _snapshot(cfg)):
        grouped[inst.server].append(inst)
    rows = [(s, grouped.get(s.name, [])) for s in servers.list_servers(cfg.engine, who.actor)]
    return render.page(request, "servers.html", who, {"rows": rows})


@router.get("/servers/{name}")
def server_page(request: Request, who: Signed, name: str, profile: Slug | None = None) -> Response:
    """``profile``: show that instance's log (not found unless the viewer may see it);
    without it, the logs of the most recently used instances, at most LOGS_SHOWN."""
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
