"""The router: one :class:`ProfileHub` per profile, fed by the supervisor's instances.

Owns the mapping from profile to hub, receives everything upstream servers start
(:class:`UpstreamPeer`), and keeps hubs in step with the store: a watcher notices a new
catalog revision and hands each hub its new view, so a changed tool selection reaches
running sessions at once; instances whose server was taken away, or whose grant (egress
allowlist, declared credentials, set values) changed, are retired in that same step.
It never parses HTTP and never launches processes itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from gigmcp.core import aio
from gigmcp.core.instances import InstanceKey
from gigmcp.core.jsontypes import JSON
from gigmcp.core.views import Catalog, ProfileView, ServerDef
from gigmcp.router.calls import PARKABLE_METHODS, ParkingLot
from gigmcp.router.cursor import CursorCodec
from gigmcp.router.handles import Handles, derive, new_replica_id
from gigmcp.router.hub import ProfileHub
from gigmcp.router.tasks import TASK_AFTER_S, TASK_METHODS, TASK_RESULT_BYTES
from gigmcp.router.toolcalls import CallGate
from gigmcp.router.upstreams import InstanceSource

log = logging.getLogger(__name__)
StaleCheck = Callable[[InstanceKey, ServerDef], str | None]
# How often the store is polled while its changes are announced (a missed announcement
# costs at most this long).
PUSHED_POLL_S = 5.0
MIN_POKE_GAP_S = 0.05


@runtime_checkable
class Retiring(Protocol):
    """What the supervisor offers the router for instances that must stop now."""

    current: Callable[[InstanceKey], ServerDef | None] | None

    def retire_matching(self, reason_for: StaleCheck) -> list[InstanceKey]: ...


class Router:
    def __init__(
        self,
        catalog: Catalog,
        *,
        request_timeout: float = 120.0,
        watch_interval: float = 0.25,
        root_key: bytes | None = None,
        replica: str | None = None,
    ) -> None:
        self.catalog = catalog
        self._source: InstanceSource | None = None
        self._timeout = request_timeout
        self._watch_interval = watch_interval
        # Replicas of one deployment share ``root_key`` (sealed in the vault), so a
        # cursor or handle minted by one is read by all; alone, a random key does.
        root = root_key if root_key is not None else secrets.token_bytes(32)
        self._cursors = CursorCodec(derive(root, "cursor"))
        self.handles = Handles(derive(root, "handle"), replica or new_replica_id())
        self._hubs: dict[int, ProfileHub] = {}
        self._revision = -1
        self._watcher: asyncio.Task[None] | None = None
        self._poked = asyncio.Event()
        # Whether changes are announced (the bus listens): then polling slows down.
        self.pushed: Callable[[], bool] = lambda: False
        # Called after every refresh that saw a new revision (the endpoint ends the
        # sessions and streams of tokens revoked by it).
        self.on_change: list[Callable[[], None]] = []
        # Bytes of finished task results kept per profile (GIG_TASK_RESULT_BYTES).
        self.task_result_bytes = TASK_RESULT_BYTES
        # Seconds a call may run before it becomes a task (GIG_TASK_AFTER).
        self.task_after = TASK_AFTER_S
        # Asked before each tool call (connected accounts); set before serving.
        self.gate: CallGate | None = None

    def attach(self, source: InstanceSource) -> None:
        """The supervisor needs the router as its peer and the router needs the supervisor:
        attach after both exist."""
        self._source = source
        if isinstance(source, Retiring):
            source.current = self._current

    def hub(self, view: ProfileView) -> ProfileHub:
        # The request that brought ``view`` read the revision: if it moved, stale
        # instances are retired here, in the same step, before anything else runs.
        self.refresh()
        hub = self._hubs.get(view.id)
        if hub is None:
            assert self._source is not None, "Router.attach() was not called"
            parking = ParkingLot(self.handles, ttl=self._timeout)
            hub = ProfileHub(
                view,
                self._source,
                self._cursors,
                parking,
                self.catalog.record,
                self._timeout,
                self.catalog.pins,
                self.gate,
            )
            hub.tasks.result_bytes = self.task_result_bytes
            hub.tasks.task_after = self.task_after
            self._hubs[view.id] = hub
        elif hub.view is not view:
            hub.update(view)
        return hub

    def existing_hub(self, profile_id: int) -> ProfileHub | None:
        return self._hubs.get(profile_id)

    @property
    def replica(self) -> str:
        return self.handles.replica

    def holder(self, token_id: int, msg: JSON) -> str | None:
        """The other replica that holds what this modern request continues (a parked
        call's ``requestState``, a task's id), or None: this replica answers it, and an
        unknown or forged handle gets its usual error here."""
        params = msg.get("params")
        if not isinstance(params, dict):
            return None
        if msg.get("method") in TASK_METHODS:
            found = self.handles.holder("task", params.get("taskId"), token_id)
        elif msg.get("method") in PARKABLE_METHODS:
            state = params.get("requestState")
            found = None
            if isinstance(state, str) and state.startswith(ParkingLot.PREFIX):
                found = self.handles.holder("state", state[len(ParkingLot.PREFIX) :], token_id)
        else:
            # Nothing else continues what a replica holds: answered here, whatever
            # requestState it carries (a client cannot steer its load to one replica).
            return None
        return found if found != self.handles.replica else None

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
        """Give every hub its profile's current view and retire the instances it no
        longer allows (cheap when nothing changed).

        This is where a change is *noticed*: when the store announces it (PostgreSQL),
        on the watcher's tick (every ``watch_interval``, 250 ms, when changes are not
        announced) or on the first request after the commit, whichever comes first.
        Retiring is synchronous (see ``Supervisor.retire``), so from the moment the new
        snapshot is in memory the old grant is gone: an old key can be injected for at
        most one watch interval (plus one loop turn) after the commit, or until the
        announcement arrives (milliseconds; 5 s if one is lost), and never after it was
        noticed."""
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
        self._retire_stale()
        for hook in self.on_change:
            try:
                hook()
            except Exception:
                log.exception("change hook failed")

    def _current(self, key: InstanceKey) -> ServerDef | None:
        """The definition an instance of ``key`` starts from: the loaded snapshot's."""
        view = self.catalog.profile(key.profile_id)
        assignment = view.assignment(key.server_name) if view is not None else None
        return assignment.server if assignment is not None else None

    def _stale(self, key: InstanceKey, running: ServerDef) -> str | None:
        """Why an instance running ``running`` may not go on, or None."""
        current = self._current(key)
        if current is None:
            return "its server was unassigned, removed or uninstalled"
        # Only what the grant is made of: other changes (command, limits) take effect at
        # the next use, which restarts the instance without cutting it off now.
        if current.grant() != running.grant():
            return "its egress allowlist or credentials changed"
        return None

    def _retire_stale(self) -> None:
        """Instances of servers that were removed, uninstalled or unassigned, and those
        whose grant changed (a key unset or replaced, a host removed), stop now, not
        when they would have idled out: what the operator took away is gone."""
        if not isinstance(self._source, Retiring):
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return
        self._source.retire_matching(self._stale)

    def poke(self) -> None:
        """The store announced a change (PostgreSQL's NOTIFY, store/bus.py): read it
        now, not at the next poll."""
        self._poked.set()

    async def _watch(self) -> None:
        last_poll = 0.0
        loop = asyncio.get_running_loop()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poked.wait(), self._watch_interval)
            try:
                # Announced changes are read when announced; the poll stays as the
                # fallback, every 250 ms without announcements, every 5 s with them.
                poll = PUSHED_POLL_S if self.pushed() else 0.0
                since = loop.time() - last_poll
                if self._poked.is_set() and since < MIN_POKE_GAP_S:
                    # Announcements anyone on the database can make: at most 20 reads
                    # of the store a second, however many arrive.
                    await asyncio.sleep(MIN_POKE_GAP_S - since)
                if self._poked.is_set() or loop.time() - last_poll >= poll:
                    self._poked.clear()
                    last_poll = loop.time()
                    self.refresh()
                for hub in self._hubs.values():
                    hub.expire_parked(hub.parking.expire())
            except Exception:
                log.exception("router watcher iteration failed")

    def start(self) -> None:
        if self._watcher is None:
            self._watcher = asyncio.get_running_loop().create_task(self._watch())

    async def aclose(self) -> None:
        await aio.stop(self._watcher)
        self._watcher = None
        for hub in self._hubs.values():
            hub.expire_parked(hub.parking.drain())
            await hub.tasks.aclose()
            await hub.aclose()
