"""Lifecycle of server instances: one per (server × profile), started on first use.

Owns starting (once, even under concurrent first uses; a failed start is not cached),
crash handling (in-flight requests fail at once via the connection, then a restart with
exponential backoff while the instance is in use), idle reaping, retiring (an instance
taken out of service synchronously, its grant revoked through ``on_retire`` hooks before
it is stopped), and shutdown (TERM, then KILL). There is never more than one process per
instance key: a next use waits until the retired one is gone, so a key's grant belongs to
one process. A failed start is reported with its cause, in the operator's words, to the
gateway's log and the instance's own under a reference; whoever waits gets only
:class:`InstanceUnavailable` (the server's name and that reference). It launches only
through the :class:`Launcher` seam and only from the event-loop thread, and must never
leave a process behind or hand a client a host path, a subnet or bubblewrap's words.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from gigmcp.core.instances import InstanceKey, new_ref
from gigmcp.core.jsontypes import JSON
from gigmcp.core.launch import LaunchedProcess, Launcher, LaunchSpec
from gigmcp.core.views import ServerDef
from gigmcp.errors import LaunchError
from gigmcp.supervisor.logs import InstanceLog
from gigmcp.upstream.connection import StdioUpstream, WireLimits
from gigmcp.upstream.handshake import StartError, connect
from gigmcp.upstream.transport import ProcessTransport
from gigmcp.upstream.types import InstanceUnavailable, Upstream, UpstreamPeer

log = logging.getLogger(__name__)

__all__ = ["InstanceStatus", "InstanceUnavailable", "StartError", "Supervisor"]

# Failures whose message says it all; anything else also gets its traceback in the
# gateway's log (never anywhere a client reads).
_EXPECTED = (StartError, LaunchError, OSError, RuntimeError, TimeoutError, asyncio.CancelledError)


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
        wire_limits: WireLimits | None = None,
    ) -> None:
        self._launcher = launcher
        self._peer = peer
        self._logs_dir = logs_dir
        self._spec_for = spec_for
        self._idle = idle_timeout
        self._handshake = handshake_timeout
        self._backoff = restart_backoff
        self._client_info = client_info or {"name": "gigmcp", "version": "0"}
        self._wire_limits = wire_limits or WireLimits()
        self._grace = grace
        self._instances: dict[InstanceKey, _Instance] = {}
        # Retired instances still on their way out, by key.
        self._ending: dict[InstanceKey, asyncio.Task[None]] = {}
        self._reaper: asyncio.Task[None] | None = None
        # Called synchronously with the key when an instance is taken out of service,
        # before its process is told to stop (the egress grant is revoked here).
        self.on_retire: list[Callable[[InstanceKey], None]] = []
        # The server's definition as the store has it now (None: no longer assigned),
        # set by the router. An instance starts from it, not from the view a call began
        # with: a call under way across a change must not bring the old grant back.
        self.current: Callable[[InstanceKey], ServerDef | None] | None = None

    # ------------------------------------------------------------ use

    async def get(self, key: InstanceKey, server: ServerDef) -> Upstream:
        inst: _Instance | None = None
        while True:
            ending = self._ending.get(key)
            if ending is not None and not ending.done():
                # The key's previous process is on its way out: wait, so that one
                # process at a time holds the key (and the grant the proxy finds by it).
                await asyncio.wait([ending])
                continue
            if self.current is not None:
                latest = self.current(key)
                if latest is None:
                    raise StartError(f"{key.server_name}: the server is not assigned any more")
                server = latest
            inst = self._instances.get(key)
            if inst is not None and inst.server != server:
                await self.stop(key)
                continue
            break
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
        spec: LaunchSpec | None = None
        launched = False
        try:
            if inst.backoff:
                await asyncio.sleep(inst.backoff)
            spec = self._spec_for(inst.key, inst.server)
            try:
                process = await self._launcher.launch(spec)
            except OSError as exc:
                # An exec that failed in the child does not name the file: we do.
                raise StartError(f"cannot launch {' '.join(spec.command[:1])!r}: {exc}") from exc
            except (LaunchError, RuntimeError) as exc:
                # LaunchError: the sandbox's cgroup, network and address-pool errors too.
                # RuntimeError: an inconsistency the sandbox finds in its own tables.
                raise StartError(f"cannot launch: {exc}") from exc
            inst.process, launched = process, True
            inst.log.write(f"started pid {process.pid}: {' '.join(spec.command)[:200]}")
            self._track(inst, inst.log.pump(process.stderr))
            conn = await connect(
                ProcessTransport(process),
                inst.key,
                self._peer,
                client_info=self._client_info,
                timeout=self._handshake,
                limits=self._wire_limits,
            )
            inst.conn = conn
            inst.started_at = time.monotonic()
            inst.log.write(f"ready: {conn.era} protocol {conn.protocol_version}")
            self._track(inst, self._watch(inst, process, conn))
            done.set_result(conn)
        except BaseException as exc:
            # The cause is the operator's (host paths, bubblewrap's words, subnets): it
            # goes to the logs under a reference, and clients get only the reference.
            ref = new_ref()
            detail = await self._cause(inst, spec if launched else None, exc)
            inst.log.write(f"start failed (ref {ref}): {detail}")
            log.log(
                logging.INFO if isinstance(exc, asyncio.CancelledError) else logging.WARNING,
                "%s: start failed (ref %s): %s",
                inst.key,
                ref,
                detail,
                exc_info=not isinstance(exc, _EXPECTED),
            )
            err = InstanceUnavailable(inst.key.server_name, ref)
            if not done.done():
                done.set_exception(err)
                done.exception()
            if inst.process is not None:
                await self._terminate(inst.process)
        finally:
            inst.starting = None

    async def _cause(self, inst: _Instance, spec: LaunchSpec | None, exc: BaseException) -> str:
        """The failure in words an operator can act on. A jail that died before its
        server spoke (``spec`` given: it was launched) is asked about: the launcher plans
        its command afresh, since bubblewrap itself says little more than "Permission
        denied" about a path it was told to bind."""
        if isinstance(exc, asyncio.CancelledError):
            return "cancelled (the instance was stopped while starting)"
        detail = str(exc) or type(exc).__name__
        if spec is not None:
            try:
                hint = await self._launcher.explain(spec)
            except Exception:
                log.exception("%s: explaining a failed start failed", inst.key)
                hint = None
            if hint:
                detail += f"; the command's check now says: {hint}"
        return detail

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

    def retire(self, key: InstanceKey, reason: str | None = None) -> asyncio.Task[None] | None:
        """Take an instance out of service now; it stops in the background.

        Synchronous on purpose: when this returns, no new call can reach the instance,
        every ``on_retire`` hook has run (the credential provider and the egress proxy
        drop its grant, so nothing more is injected for it), and a next use of the key
        waits for the process to be gone before starting another. Returns the task that
        stops it (None when nothing runs under the key)."""
        inst = self._instances.pop(key, None)
        if inst is None:
            ending = self._ending.get(key)
            return ending if ending is not None and not ending.done() else None
        inst.stopping = True
        if reason:
            inst.log.write(f"stopping: {reason}")
        for hook in self.on_retire:
            try:
                hook(key)
            except Exception:
                log.exception("a retire hook failed for %s/%s", key.profile_id, key.server_name)
        task = asyncio.get_running_loop().create_task(self._finish(inst))
        self._ending[key] = task

        def done(t: asyncio.Task[None]) -> None:
            if self._ending.get(key) is t:
                del self._ending[key]

        task.add_done_callback(done)
        return task

    def retire_matching(
        self, reason_for: Callable[[InstanceKey, ServerDef], str | None]
    ) -> list[InstanceKey]:
        """Retire every instance for which ``reason_for(key, its definition)`` names a
        reason, synchronously (see :meth:`retire`); the keys retired."""
        retired = []
        for key, inst in list(self._instances.items()):
            reason = reason_for(key, inst.server)
            if reason is not None:
                self.retire(key, reason)
                retired.append(key)
        return retired

    async def stop(self, key: InstanceKey) -> None:
        task = self.retire(key)
        if task is not None:
            # Not cancelled with the caller: a stop once begun always finishes.
            await asyncio.wait([task])

    async def _finish(self, inst: _Instance) -> None:
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
        if self._ending:
            await asyncio.wait(list(self._ending.values()))

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
