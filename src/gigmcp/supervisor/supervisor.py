"""Lifecycle of server instances: one per (server × profile), started on first use.

Owns starting (once, even under concurrent first uses; a failed start is not cached),
crash handling (in-flight requests fail at once via the connection, then a restart with
exponential backoff while the instance is in use), idle reaping, retiring (an instance
taken out of service synchronously, its grant revoked through ``on_retire`` hooks before
it is stopped), shutdown (TERM, then KILL), and each instance's status (state, restarts,
last error, memory, last use: :meth:`Supervisor.status`). There is never more than one
process per instance key: a next use waits until the retired one is gone, so a key's
grant belongs to one process. A failed start is reported with its cause, in the
operator's words, to the gateway's log and the instance's own under a reference; whoever
waits gets only :class:`InstanceUnavailable` (the server's name and that reference), and
the status only that reference. It launches only through the :class:`Launcher` seam and
only from the event-loop thread, and must never leave a process behind or hand a client
a host path, a subnet or bubblewrap's words.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from gigmcp.core import aio
from gigmcp.core.instances import InstanceKey, InstanceState, InstanceView, new_ref
from gigmcp.core.jsontypes import JSON
from gigmcp.core.launch import LaunchedProcess, Launcher, LaunchSpec
from gigmcp.core.views import ServerDef
from gigmcp.errors import LaunchError
from gigmcp.sandbox.cgroups import NAME as CGROUP_NAME
from gigmcp.sandbox.cgroups import PARENT as CGROUP_PARENT
from gigmcp.supervisor.logs import InstanceLog
from gigmcp.telemetry import probes
from gigmcp.upstream.connection import StdioUpstream, WireLimits
from gigmcp.upstream.handshake import StartError, connect
from gigmcp.upstream.transport import ProcessTransport
from gigmcp.upstream.types import InstanceUnavailable, Upstream, UpstreamPeer

log = logging.getLogger(__name__)

__all__ = ["InstanceUnavailable", "InstanceView", "StartError", "Supervisor"]

# Failures whose message says it all; anything else also gets its traceback in the
# gateway's log (never anywhere a client reads).
_EXPECTED = (StartError, LaunchError, OSError, RuntimeError, TimeoutError, asyncio.CancelledError)
# How many instances that went idle the status keeps reporting (their last use, restarts
# and last error) once their process is gone; the oldest are forgotten first.
RESTED_KEPT = 4096


def default_spec(key: InstanceKey, server: ServerDef) -> LaunchSpec:
    return LaunchSpec(key, server.command, dict(server.env), server.cwd)


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
    # Wall-clock twins of the two above, for the status (monotonic time means nothing
    # to a reader).
    started_wall: float | None = None
    used_wall: float = field(default_factory=time.time)
    restarts: int = 0
    backoff: float = 0.0
    last_exit: str | None = None
    # The last crash or failed start (see InstanceView.last_error), and whether it is
    # the latest news: set when a process ends on its own or a start fails, cleared by
    # a start that succeeds.
    last_error: str | None = None
    crashed: bool = False
    # Stopped by the idle reaper (remembered as idle once gone), not by a change.
    reaped: bool = False
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
        # Instances the idle reaper stopped, as the status last saw them (state idle, or
        # crashed if that is how they ended), until they are used again; bounded.
        self._rested: dict[InstanceKey, InstanceView] = {}
        # Remote servers' sessions (egress/remote.py), set by app.py where the gateway
        # has an egress side; None: a remote server cannot start here.
        self.remote: Launcher | None = None

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
            rested = self._rested.pop(key, None)
            if rested is not None:
                # The key's history goes on across idling: restarts and the last error.
                inst.restarts, inst.last_error = rested.restarts, rested.last_error
            self._instances[key] = inst
        inst.last_used, inst.used_wall = time.monotonic(), time.time()
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
                launcher = self._launcher if spec.remote is None else self.remote
                if launcher is None:
                    raise LaunchError(
                        "remote servers run only on a gateway with its egress proxy (jailed)"
                    )
                process = await launcher.launch(spec)
            except OSError as exc:
                # An exec that failed in the child does not name the file: we do.
                raise StartError(f"cannot launch {' '.join(spec.command[:1])!r}: {exc}") from exc
            except (LaunchError, RuntimeError) as exc:
                # LaunchError: the sandbox's cgroup, network and address-pool errors too.
                # RuntimeError: an inconsistency the sandbox finds in its own tables.
                raise StartError(f"cannot launch: {exc}") from exc
            inst.process, launched = process, True
            if spec.remote is not None:
                inst.log.write(f"session to {spec.remote.url[:200]}")
            else:
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
            inst.started_at, inst.started_wall = time.monotonic(), time.time()
            inst.crashed = False
            inst.log.write(f"ready: {conn.era} protocol {conn.protocol_version}")
            self._track(inst, self._watch(inst, process, conn))
            probes.instance_started(inst.key.server_name, ok=True)
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
            if not isinstance(exc, asyncio.CancelledError):
                # The status says where to look, not the cause: that is the log's (the
                # operator's words), on the line with this reference.
                inst.crashed, inst.last_error = True, f"start failed (ref {ref})"
                probes.instance_started(inst.key.server_name, ok=False)
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
        if spec is not None and spec.remote is None:
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
        inst.crashed, inst.last_error = True, inst.last_exit
        probes.instance_crashed(inst.key.server_name)
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
            self._rested.pop(key, None)
            ending = self._ending.get(key)
            return ending if ending is not None and not ending.done() else None
        if inst.reaped:
            self._rest(inst)
        else:
            # Retired by a change (a grant, an unassignment, a shutdown): what the key
            # did before says nothing about the instance its next use starts.
            self._rested.pop(key, None)
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
        await aio.stop(self._reaper)
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
                    inst.reaped = True
                    await self.stop(key)

    # ------------------------------------------------------------ status

    def status(self) -> list[InstanceView]:
        """Every instance the gateway runs or has let go idle, by key: what each is doing,
        how often it was restarted, its last error, its memory and its last use.

        Safe to call from a worker thread (the control plane's routes run in one): it
        copies the tables before reading them and reads only plain attributes, so the
        worst a concurrent change does is make one entry a moment old."""
        live = [self._view(inst) for inst in list(self._instances.values())]
        seen = {v.key for v in live}
        rested = [v for k, v in list(self._rested.items()) if k not in seen]
        return sorted(live + rested, key=lambda v: (v.key.server_name, v.key.profile_id))

    def state_counts(self) -> dict[str, int]:
        """How many instances are in each state (the instances the status reports,
        without reading their memory): for the metrics, at each scrape."""
        counts: dict[str, int] = {}
        for inst in list(self._instances.values()):
            state = _state(inst)
            counts[state] = counts.get(state, 0) + 1
        for key, view in list(self._rested.items()):
            if key not in self._instances:
                counts[view.state] = counts.get(view.state, 0) + 1
        return counts

    def _view(self, inst: _Instance) -> InstanceView:
        process = inst.process
        state = _state(inst)
        # A failed start leaves its (ended) process behind until the next one: a pid
        # is reported only while it can be the instance's.
        live = process if state in ("running", "starting") else None
        return InstanceView(
            key=inst.key,
            state=state,
            pid=live.pid if live is not None and live.pid > 0 else None,
            restarts=inst.restarts,
            last_error=inst.last_error,
            memory_bytes=(
                cgroup_memory(live.pid)
                if state == "running" and live is not None and live.pid > 0
                else None
            ),
            started_at=_wall(inst.started_wall),
            last_used=_wall(inst.used_wall),
        )

    def _rest(self, inst: _Instance) -> None:
        """Remember an instance the reaper stops, as it was, without its process."""
        self._rested.pop(inst.key, None)
        self._rested[inst.key] = InstanceView(
            key=inst.key,
            state="crashed" if inst.crashed else "idle",
            pid=None,
            restarts=inst.restarts,
            last_error=inst.last_error,
            memory_bytes=None,
            started_at=_wall(inst.started_wall),
            last_used=_wall(inst.used_wall),
        )
        while len(self._rested) > RESTED_KEPT:
            del self._rested[next(iter(self._rested))]


def _state(inst: _Instance) -> InstanceState:
    conn = inst.conn
    if conn is not None and not conn.closed:
        return "running"
    if inst.crashed:
        return "crashed"
    if inst.starting is not None:
        return "starting"
    return "idle"


def _retrieve(future: asyncio.Future[StdioUpstream]) -> None:
    if not future.cancelled():
        future.exception()


def _wall(at: float | None) -> datetime | None:
    return datetime.fromtimestamp(at, UTC) if at is not None else None


def cgroup_memory(pid: int, proc: Path = Path("/proc")) -> int | None:
    """The memory charged to ``pid``'s instance cgroup: ``memory.current`` (v2) or
    ``memory.usage_in_bytes`` (v1) of the cgroup the sandbox made for it (named by the
    sandbox's rules, inside its ``gigmcp`` directory). None when the process is in no
    such cgroup (run unjailed, its cgroup is the gateway's or the session's, whose figure
    is not the instance's) or when it cannot be read (gone, no memory controller).

    Read from the kernel by pid rather than asked of the launched process: the launcher
    seam (core/launch.py) does not report memory. Small reads of virtual files, cheap
    enough for a status page."""
    try:
        memberships = (proc / str(pid) / "cgroup").read_text().splitlines()
        mounts = (proc / "self" / "mounts").read_text().splitlines()
    except OSError:
        return None
    v2_mount, v1_mount = None, None
    for line in mounts:
        fields = line.split()
        if len(fields) < 4:
            continue
        if fields[2] == "cgroup2" and v2_mount is None:
            v2_mount = fields[1]
        elif fields[2] == "cgroup" and "memory" in fields[3].split(",") and v1_mount is None:
            v1_mount = fields[1]
    candidates: list[Path] = []
    for line in memberships:
        _id, controllers, path = [*line.split(":", 2), "", ""][:3]
        parts = [p for p in path.split("/") if p]
        # Only an instance cgroup: <anything>/gigmcp/<instance name>.
        if len(parts) < 2 or parts[-2] != CGROUP_PARENT or not CGROUP_NAME.match(parts[-1]):
            continue
        if controllers == "" and v2_mount is not None:
            candidates.append(Path(v2_mount, *parts, "memory.current"))
        elif "memory" in controllers.split(",") and v1_mount is not None:
            candidates.append(Path(v1_mount, *parts, "memory.usage_in_bytes"))
    for file in candidates:
        try:
            return int(file.read_text().strip())
        except (OSError, ValueError):
            continue  # v2 without the memory controller there: the v1 hierarchy has it
    return None
