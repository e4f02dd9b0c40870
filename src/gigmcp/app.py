"""Assembles one gateway process: store catalog, router, supervisor, MCP endpoint.

Owns start-up and shutdown order (children are terminated before the store closes, so
their last audit rows are written). It must never start serving before the store is
migrated, and never leave a child process behind on shutdown.
"""

from __future__ import annotations

import dataclasses
import logging

from gigmcp.config import Settings
from gigmcp.core.asgi import Receive, Scope, Send
from gigmcp.core.instances import InstanceKey
from gigmcp.core.launch import JailLimits, Launcher, LaunchSpec
from gigmcp.core.server_info import GATEWAY_INFO
from gigmcp.core.views import ServerDef
from gigmcp.credentials.provider import CredentialProvider, NoCredentials, launch_environment
from gigmcp.egress.proxy import EgressProxy
from gigmcp.endpoint.asgi import McpEndpoint
from gigmcp.endpoint.sessions import SessionStore
from gigmcp.router.gateway import Router
from gigmcp.store.catalog import StoreCatalog
from gigmcp.supervisor.launcher import PlainLauncher
from gigmcp.supervisor.supervisor import Supervisor
from gigmcp.upstream.connection import WireLimits

log = logging.getLogger(__name__)


class Gateway:
    """The ASGI application of a running gateway, with its lifespan."""

    def __init__(
        self,
        settings: Settings,
        launcher: Launcher | None = None,
        credentials: CredentialProvider | None = None,
        egress: EgressProxy | None = None,
    ) -> None:
        self.settings = settings
        self.catalog = StoreCatalog(settings.database_url)
        self.router = Router(self.catalog, request_timeout=settings.request_timeout)
        self.router.task_result_bytes = settings.task_result_bytes
        self.router.task_after = settings.task_after
        self.credentials: CredentialProvider = credentials or NoCredentials()
        self.launcher: Launcher = launcher or PlainLauncher()
        self.egress = egress
        self.supervisor = Supervisor(
            self.launcher,
            self.router,
            spec_for=self._spec_for,
            logs_dir=settings.data_dir / "logs",
            idle_timeout=settings.idle_timeout,
            client_info=GATEWAY_INFO,
            wire_limits=WireLimits(settings.max_message_bytes, settings.max_server_requests),
        )
        self.router.attach(self.supervisor)
        self.endpoint = McpEndpoint(
            self.router,
            allowed_origins=frozenset(settings.allowed_origins),
            max_body_bytes=settings.max_body_bytes,
            request_timeout=settings.request_timeout,
            public_url=settings.public_url,
            sessions=SessionStore(
                settings.session_idle_timeout,
                settings.max_sessions,
                per_token=settings.sessions_per_token,
                per_profile=settings.sessions_per_profile,
                buffer_bytes=settings.client_buffer_bytes,
            ),
            buffer_bytes=settings.client_buffer_bytes,
        )

    def _spec_for(self, key: InstanceKey, server: ServerDef) -> LaunchSpec:
        env = launch_environment(self.credentials, key, server)
        limits = dataclasses.replace(JailLimits(), **dict(server.limits))
        # The instance acts for the profile's owner: their credentials, their audit rows.
        profile = self.catalog.profile(key.profile_id)
        owner = profile.owner_id if profile is not None else server.owner_id
        return LaunchSpec(
            key,
            server.command,
            env,
            server.cwd,
            owner_id=owner,
            limits=limits,
            rootfs=server.rootfs,
        )

    async def start(self) -> None:
        await self.catalog.start()
        # The sandbox reconciles what a crashed run left (cgroups, veths, firewall)
        # before the first server can start.
        starter = getattr(self.launcher, "start", None)
        if starter is not None:
            removed = await starter()
            if any(removed.values()):
                log.warning("removed leftovers of an earlier run: %s", removed)
        if self.egress is not None:
            await self.egress.audit.start()
            await self.egress.start()
        self.router.start()

    async def stop(self) -> None:
        await self.endpoint.aclose()
        await self.router.aclose()
        await self.supervisor.shutdown()
        if self.egress is not None:
            await self.egress.aclose()
            await self.egress.audit.aclose()
        closer = getattr(self.launcher, "aclose", None)
        if closer is not None:
            await closer()
        await self.catalog.aclose()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        await self.endpoint(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.start()
                except Exception as exc:
                    log.exception("gateway failed to start")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return
