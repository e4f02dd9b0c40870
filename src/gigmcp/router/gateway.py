"""The router: one :class:`ProfileHub` per profile, fed by the supervisor's instances.

Owns the mapping from profile to hub, receives everything upstream servers start
(:class:`UpstreamPeer`), and keeps hubs in step with the store: a watcher notices a new
catalog revision and hands each hub its new view, so a changed tool selection reaches
running sessions at once. It never parses HTTP and never launches processes itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from typing import Any

from gigmcp.router.calls import ParkingLot
from gigmcp.router.cursor import CursorCodec
from gigmcp.router.hub import InstanceSource, ProfileHub
from gigmcp.store.views import Catalog, ProfileView
from gigmcp.upstream.types import InstanceKey

log = logging.getLogger(__name__)
JSON = dict[str, Any]


class Router:
    def __init__(
        self,
        catalog: Catalog,
        *,
        request_timeout: float = 120.0,
        watch_interval: float = 0.25,
    ) -> None:
        self.catalog = catalog
        self._source: InstanceSource | None = None
        self._stopping: set[asyncio.Task[None]] = set()
        self._timeout = request_timeout
        self._watch_interval = watch_interval
        self._cursors = CursorCodec(secrets.token_bytes(32))
        self._state_key = secrets.token_bytes(32)
        self._hubs: dict[int, ProfileHub] = {}
        self._revision = -1
        self._watcher: asyncio.Task[None] | None = None

    def attach(self, source: InstanceSource) -> None:
        """The supervisor needs the router as its peer and the router needs the supervisor:
        attach after both exist."""
        self._source = source

    def hub(self, view: ProfileView) -> ProfileHub:
        hub = self._hubs.get(view.id)
        if hub is None:
            assert self._source is not None, "Router.attach() was not called"
            parking = ParkingLot(self._state_key, ttl=self._timeout)
            hub = ProfileHub(
                view,
                self._source,
                self._cursors,
                parking,
                self.catalog.record,
                self._timeout,
                getattr(self.catalog, "pins", None),
            )
            self._hubs[view.id] = hub
        elif hub.view is not view:
            hub.update(view)
        return hub

    def existing_hub(self, profile_id: int) -> ProfileHub | None:
        return self._hubs.get(profile_id)

    # ----------------------------------------------------------- UpstreamPeer

    def on_notification(self, key: InstanceKey, message: JSON) -> None:
        hub = self._hubs.get(key.profile_id)
        if hub is not None:
            hub.notification(key, message)

    async def on_request(self, key: InstanceKey, message: JSON) -> JSON:
        hub = self._hubs.get(key.profile_id)
        if hub is None:
            return {"error": {"code": -32601, "message": "No client is connected"}}
        return await hub.server_request(key, message)

    def on_closed(self, key: InstanceKey, reason: str) -> None:
        hub = self._hubs.get(key.profile_id)
        if hub is not None:
            hub.instance_closed(key)

    # ----------------------------------------------------------- keeping in step

    def refresh(self) -> None:
        """Give every hub its profile's current view (cheap when nothing changed)."""
        revision = self.catalog.refresh()
        if revision == self._revision:
            return
        self._revision = revision
        for profile_id, hub in list(self._hubs.items()):
            view = self.catalog.profile(profile_id)
            if view is None:
                del self._hubs[profile_id]
                hub.update(ProfileView(hub.view.id, hub.view.slug, hub.view.owner_id, ()))
            elif view is not hub.view:
                hub.update(view)
        self._stop_unassigned()

    def _assigned(self, key: InstanceKey) -> bool:
        view = self.catalog.profile(key.profile_id)
        return view is not None and view.assignment(key.server_name) is not None

    def _stop_unassigned(self) -> None:
        """Instances of servers that were removed, uninstalled or unassigned stop now,
        not when they would have idled out: what the operator took away is gone."""
        stop_matching = getattr(self._source, "stop_matching", None)
        if stop_matching is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        task = loop.create_task(stop_matching(lambda key: not self._assigned(key)))
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self._watch_interval)
            try:
                self.refresh()
                for hub in self._hubs.values():
                    hub.expire_parked(hub.parking.expire())
            except Exception:
                log.exception("router watcher iteration failed")

    def start(self) -> None:
        if self._watcher is None:
            self._watcher = asyncio.get_running_loop().create_task(self._watch())

    async def aclose(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None
        for hub in self._hubs.values():
            hub.expire_parked(hub.parking.drain())
            await hub.tasks.aclose()
