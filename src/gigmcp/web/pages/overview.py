"""The overview: what the viewer's tools did lately (everything, for an administrator).

Owns the overview page: the activity heatmap of the last 26 weeks, calls and errors per
server week by week, the busiest tools, egress by decision, the latest audit events and
the instances running now, all from the service layer (roll-up counters and audit
pages, never a scan); and, for administrators, the gateway's health (vault, registry
freshness, the host checks). It must
never show another user's activity to a user who is not an administrator (the service
layer scopes every read to the viewer's actor).
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from fastapi import APIRouter, Request
from fastapi.responses import Response

from gigmcp.api.auth import config
from gigmcp.control import audit, health, instances, overview
from gigmcp.web import charts, render
from gigmcp.web.render import NavItem
from gigmcp.web.security import Signed

router = APIRouter()
NAV_ITEM = NavItem("nav.overview", "/")
DAYS = 182  # 26 weeks


@router.get("/")
def overview_page(request: Request, who: Signed) -> Response:
    engine = config(request).engine
    o = overview.overview(engine, who.actor, DAYS, top=8)
    first, today = date.fromisoformat(o.since), datetime.now(UTC).date()
    series, series_width = charts.server_series(o, first, today)
    recent = audit.events(engine, who.actor, limit=10)
    top_tool = max((t.calls for t in o.tools), default=0)
    cfg = config(request)
    snapshot = cfg.instances() if cfg.instances is not None else None
    running = [i for i in instances.visible(engine, who.actor, snapshot) if i.state == "running"]
    gateway = None
    if who.actor.admin:
        gateway = health.health(
            engine,
            who.actor,
            cfg.keyring,
            cfg.registry is not None,
            cfg.registry.max_age if cfg.registry is not None else None,
            cfg.host_checks() if cfg.host_checks is not None else None,
        )
    return render.page(
        request,
        "overview.html",
        who,
        {
            "o": o,
            "heat": charts.heatmap(o.days, first, today),
            "cell": charts.CELL,
            "series": series,
            "series_width": series_width,
            "bar_width": charts.BAR,
            "bar_height": charts.BAR_HEIGHT,
            "tools": [(t, charts.share(t.calls, top_tool)) for t in o.tools],
            "total_calls": sum(d.calls for d in o.days),
            "total_errors": sum(d.errors for d in o.days),
            "recent": recent.items,
            "running": running,
            "health": gateway,
        },
    )
