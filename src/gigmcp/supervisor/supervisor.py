"""Lifecycle of server instances: one per (server × profile), started on first use.

Owns starting (once, even under concurrent first uses; a failed start is not cached),
crash handling (in-flight requests fail at once via the connection, then a restart with
exponential backoff while the instance is in use), idle reaping, and shutdown (TERM, then
KILL). It launches only through the :class:`Launcher` seam and only from the event-loop
thread, and must never leave a process behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from gigmcp.store.views import ServerDef
from gigmcp.supervisor.launcher import LaunchedProcess, Launcher, LaunchError, LaunchSpec
from gigmcp.supervisor.logs import InstanceLog
from gigmcp.upstream.connection import StdioUpstream
from gigmcp.upstream.handshake import StartError, connect
from gigmcp.upstream.types import JSON, InstanceKey, Upstream, UpstreamPeer

log = logging.getLogger(__name__)

__all__ = ["InstanceStatus", "StartError", "Supervisor"]


def default_spec(key: InstanceKey, server: ServerDef) -> LaunchSpec:
    return LaunchSpec(key, server.command, dict(server.env), server.cwd)


@dataclass
class InstanceStatus:
    key: InstanceKey
    pid: int | None
    state: str
    started_at: float | None
    restarts: int
    last_exit: str | None


@dataclass(eq=False)
class _Instance:
    key: InstanceKey
    server: ServerDef
    log: InstanceLog
    process: LaunchedProcess | None = None
    conn: StdioUpstream | None = None
    starting: asyncio.Future[StdioUpstream] | None = None
    started_at: float | None = None
    last_used: float = field(default_factory=time.monotonic)
    restarts: int = 0
    backoff: float = 0.0
    last_exit: str | None = None
    stopping: bool = False
    tasks: set[asyncio.Task[None]] = field(default_factory=set)


class Supervisor:
    def __init__(
        self,
        launcher: Launcher,
        peer: UpstreamPeer,
        *,
        logs_dir: Path,
        spec_for: Callable[[InstanceKey, ServerDef], LaunchSpec] = default_spec,
        idle_timeout: float = 600.0,
        handshake_timeout: float = 20.0,
        restart_backoff: tuple[float, float] = (0.5, 30.0),
        client_info: JSON | None = None,
        grace: float = 3.0,
    ) -> None:
        self._launcher = launcher
        self._peer = peer
        self._logs_dir = logs_dir
        self._spec_for = spec_for
        self._idle = idle_timeout
        self._handshake = handshake_timeout
        self._backoff = restart_backoff
        self._client_info = client_info or {"name": "gigmcp", "version": "0"}
        self._grace = grace
        self._instances: dict[InstanceKey, _Instance] = {}
        self._reaper: asyncio.Task[None] | None = None

    # ------------------------------------------------------------ use

    async def get(self, key: InstanceKey, server: ServerDef) -> Upstream:
        inst = self._instances.get(key)
        if inst is not None and inst.server != server:
            await self.stop(key)
            inst = None
        if inst is None:
            inst = _Instance(key, server, InstanceLog(self._logs_dir, key))
            self._instances[key] = inst
        inst.last_used = time.monotonic()
        self._ensure_reaper()
        conn = inst.conn
        if conn is not None and not conn.closed:
            return conn
        if inst.starting is None:
            inst.starting = asyncio.get_running_loop().create_future()
            self._track(inst, self._start(inst, inst.starting))
        return await asyncio.shield(inst.starting)

    async def _start(self, inst: _Instance, done: asyncio.Future[StdioUpstream]) -> None:
        try:
            if inst.backoff:
                await asyncio.sleep(inst.backoff)
            spec = self._spec_for(inst.key, inst.server)
            try:
                process = await self._launcher.launch(spec)
            except OSError as exc:
                raise StartError(
                    f"{inst.key.server_name}: cannot launch: {exc.strerror or exc}"
                ) from exc
            except LaunchError as exc:
                raise StartError(f"{inst.key.server_name}: cannot launch: {exc}") from exc
            inst.process = process
            inst.log.write(f"started pid {process.pid}: {' '.join(spec.command)[:200]}")
            self._track(inst, inst.log.pump(process.stderr))
            conn = await connect(
                process,
                inst.key,
                self._peer,
                client_info=self._client_info,
                timeout=self._handshake,
            )
            inst.conn = conn
            inst.started_at = time.monotonic()
            inst.log.write(f"ready: {conn.era} protocol {conn.protocol_version}")
            self._track(inst, self._watch(inst, process, conn))
            done.set_result(conn)
        except BaseException as exc:
            inst.log.write(f"start failed: {exc}")
            err = (
                exc if isinstance(exc, StartError) else StartError(f"{inst.key.server_name}: {exc}")
            )
            if not done.done():
                done.set_exception(err)
                done.exception()
            if inst.process is not None:
                await self._terminate(inst.process)
        finally:
            inst.starting = None

    async def _watch(self, inst: _Instance, process: LaunchedProcess, conn: StdioUpstream) -> None:
        status = await process.wait()
        with contextlib.suppress(Exception):
            await process.cleanup()
        await conn.close()
        inst.last_exit = (
            f"killed by signal {-status}" if status < 0 else f"exited with code {status}"
        )
        reason = process.exit_reason()
        if reason:
            inst.last_exit += f" ({reason})"
        inst.log.write(f"process {process.pid} {inst.last_exit}")
        inst.conn = None
        inst.process = None
        if inst.stopping or self._instances.get(inst.key) is not inst:
            return
        # Crashed: restart in the background while it is in use, with growing backoff.
        if time.monotonic() - inst.last_used < self._idle:
            inst.restarts += 1
            low, high = self._backoff
            inst.backoff = min(high, max(low, inst.backoff * 2))
            if inst.starting is None:
                inst.starting = asyncio.get_running_loop().create_future()
                inst.starting.add_done_callback(_retrieve)
                self._track(inst, self._start(inst, inst.starting))

    def _track(self, inst: _Instance, coro: object) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)  # type: ignore[arg-type]
        inst.tasks.add(task)
        task.add_done_callback(inst.tasks.discard)

    # ------------------------------------------------------------ stop

    async def _terminate(self, process: LaunchedProcess) -> None:
        process.terminate()
        try:
            async with asyncio.timeout(self._grace):
                await process.wait()
        except TimeoutError:
            process.kill()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._grace):
                    await process.wait()
        with contextlib.suppress(Exception):
            await process.cleanup()

    async def stop(self, key: InstanceKey) -> None:
        inst = self._instances.pop(key, None)
        if inst is None:
            return
        inst.stopping = True
        if inst.conn is not None:
            await inst.conn.close()
        if inst.process is not None:
            await self._terminate(inst.process)
        for task in list(inst.tasks):
            task.cancel()
        for task in list(inst.tasks):
            with contextlib.suppress(BaseException):
                await task

    async def stop_matching(self, predicate: Callable[[InstanceKey], bool]) -> None:
        await asyncio.gather(*(self.stop(k) for k in list(self._instances) if predicate(k)))

    async def shutdown(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
            self._reaper = None
        await self.stop_matching(lambda _k: True)

    # ------------------------------------------------------------ idle reaping

    def _ensure_reaper(self) -> None:
        if self._reaper is None or self._reaper.done():
            self._reaper = asyncio.get_running_loop().create_task(self._reap_loop())

    async def _reap_loop(self) -> None:
        interval = max(0.2, min(30.0, self._idle / 4))
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for key, inst in list(self._instances.items()):
                busy = inst.conn is not None and inst.conn.pending_count > 0
                if not busy and inst.starting is None and now - inst.last_used >= self._idle:
                    inst.log.write("idle: stopping")
                    await self.stop(key)

    def status(self) -> list[InstanceStatus]:
        return [
            InstanceStatus(
                key,
                inst.process.pid if inst.process else None,
                "running"
                if inst.conn and not inst.conn.closed
                else ("starting" if inst.starting else "stopped"),
                inst.started_at,
                inst.restarts,
                inst.last_exit,
            )
            for key, inst in self._instances.items()
        ]


def _retrieve(future: asyncio.Future[StdioUpstream]) -> None:
    if not future.cancelled():
        future.exception()
