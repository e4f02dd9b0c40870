"""The sandbox launcher: the :class:`~gigmcp.supervisor.launcher.Launcher` that jails.

Owns the start and the end of one jailed instance. A jail starts in two halves. First a
*zygote*: a network namespace, a cgroup, and ``bwrap --args FD`` spawned as the
instance's own host uid (``jail.host_uid``)
inside that namespace, under prlimit's rlimits, moved into the cgroup while it sits
blocked reading its arguments. Then the launch proper: the instance's own arguments
(binds, environment, seccomp, the command) are written to that descriptor, and bwrap
builds the jail; every process it forks is born inside the cgroup. The first half is
the slow one (netlink, and the RCU grace period a cgroup migration waits for), so a
small pool of zygotes is kept ready and a launch costs about what bwrap itself costs.
At the end: the cgroup emptied and removed, the identity forgotten, the namespace and
its veth destroyed.

Spawning happens on the event-loop thread, never on an executor thread: bubblewrap's
``--die-with-parent`` is a parent-death signal, which fires when the spawning *thread*
exits. The loop thread steps into the namespace for the spawn and straight back, with no
await in between, so nothing else can run there meanwhile. Even if that signal were lost,
the pid namespace (its init dies, all die) and the cgroup (killed at cleanup and at the
next start-up) take every descendant down; a zygote whose gateway is gone reads EOF
instead of arguments and exits. It must never start untrusted code outside a cgroup,
never let it run before its limits are in place, and never leave a namespace, veth,
cgroup or set element behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass

from gigmcp.core.instances import InstanceKey
from gigmcp.core.launch import (
    STDERR_LIMIT,
    STREAM_LIMIT,
    JailLimits,
    LaunchedProcess,
    LaunchSpec,
)
from gigmcp.errors import LaunchError
from gigmcp.sandbox import cgroups, jail, runtime, seccomp
from gigmcp.sandbox import mode as sandbox_mode
from gigmcp.sandbox.identity import Identity, SourceTable
from gigmcp.sandbox.netns import NetLease, SandboxNetwork

START_TIMEOUT = 10.0
MAX_ARGS_BYTES = 60 * 1024  # under the 64 KiB of a pipe
PLAN_TTL_S = 30.0
PRLIMIT = "/usr/bin/prlimit"


@dataclass(frozen=True, slots=True)
class SandboxConfig:
    subnet: str = "10.213.0.0/16"
    proxy_port: int = 3128
    pool_size: int = 2
    ca_bundle: bytes = b""
    mode: str = "auto"  # see sandbox/mode.py


@dataclass(slots=True)
class _Zygote:
    """A bwrap blocked on ``--args``: in its namespace and cgroup, not yet jailing."""

    lease: NetLease
    cgroup: cgroups.Cgroup
    proc: subprocess.Popen[bytes]
    args_w: int
    info_r: int
    data_fds: dict[str, int]  # descriptor numbers as the child sees them
    seccomp_fd: int
    limits: JailLimits
    info_w_child: int = -1
    trampoline: bool = True

    def close_fds(self) -> None:
        for name in ("args_w", "info_r"):
            fd = getattr(self, name)
            if fd >= 0:
                os.close(fd)
                setattr(self, name, -1)


class _JailedProcess:
    def __init__(
        self,
        proc: subprocess.Popen[bytes],
        stdin: asyncio.StreamWriter,
        stdout: asyncio.StreamReader,
        stderr: asyncio.StreamReader,
        cleanup: Callable[[], object],
        cgroup: cgroups.Cgroup,
        limits: JailLimits,
    ) -> None:
        self._proc = proc
        self.pid = proc.pid
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
        self._cleanup = cleanup
        self.cgroup = cgroup
        self._limits = limits
        self._exit: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pidfd = os.pidfd_open(proc.pid)
        asyncio.get_running_loop().add_reader(self._pidfd, self._reap)
        self._reason: str | None = None
        self.jail_pid = -1  # bwrap's init, pid 1 of the jail, as the host sees it
        # A pidfd, not the number: once the init has died its pid can be reused, and a
        # signal by number would then reach a stranger.
        self.jail_pidfd = -1
        self._cleaning: asyncio.Task[None] | None = None

    def _reap(self) -> None:
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            pid, status = self.pid, 0
        if pid == 0:
            return
        loop = asyncio.get_running_loop()
        loop.remove_reader(self._pidfd)
        os.close(self._pidfd)
        self._pidfd = -1
        if self.jail_pidfd >= 0:
            os.close(self.jail_pidfd)
            self.jail_pidfd = -1
        code = os.waitstatus_to_exitcode(status)
        self._proc.returncode = code  # so Popen never waits for a pid we reaped
        with contextlib.suppress(Exception):
            self._reason = self.cgroup.died_of()
        if not self._exit.done():
            self._exit.set_result(code)

    async def wait(self) -> int:
        return await asyncio.shield(self._exit)

    def exit_reason(self) -> str | None:
        return self._reason

    def terminate(self) -> None:
        # The jail ends with its init (bwrap's pid 1 inside): the kernel kills the whole
        # pid namespace, and bwrap's monitor, its parent, reaps it and exits. Killing the
        # monitor first would orphan the init to the host's pid 1, which in a container
        # may never reap it. The init forwards no signal, so there is nothing gentler to
        # send; a server that wants to end cleanly gets EOF on stdin first.
        if not self._exit.done() and self.jail_pidfd >= 0:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(self.jail_pidfd, signal.SIGKILL)

    def kill(self) -> None:
        self.terminate()
        if not self._exit.done():
            # The monitor too, should it not follow its init within a second (it
            # normally does at once, after reaping it).
            asyncio.get_running_loop().call_later(1.0, self._kill_monitor)

    def _kill_monitor(self) -> None:
        if not self._exit.done() and self._pidfd >= 0:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)

    def set_cleanup(self, cleanup: Callable[[], object]) -> None:
        self._cleanup = cleanup

    async def cleanup(self) -> None:
        # One clean-up however many callers (the exit watcher and a shutdown race for it),
        # and a caller cancelled while waiting must not cancel the clean-up itself.
        if self._cleaning is None:
            self._cleaning = asyncio.get_running_loop().create_task(self._run_cleanup())
        await asyncio.shield(self._cleaning)

    async def _run_cleanup(self) -> None:
        # Our ends of its pipes: the read ends close at EOF by themselves, the write end
        # only notices a dead reader when the loop next looks; do not leave it to chance.
        self.stdin.close()
        result = self._cleanup()
        if asyncio.iscoroutine(result):
            await result


class SandboxLauncher:
    """Jails every server. ``start()`` must run before the first launch (it reconciles
    what a crashed run left and installs the firewall)."""

    def __init__(self, config: SandboxConfig, limits: JailLimits | None = None) -> None:
        self.config = config
        self.limits = limits or JailLimits()
        # Zygotes are the pool; each holds a namespace of its own.
        p = config.proxy_port
        # The explicit proxy, then its transparent HTTP and TLS entrances and its DNS.
        self.mode = sandbox_mode.resolve(config.mode)
        self.network = SandboxNetwork(
            config.subnet,
            [p, p + 1, p + 2, p + 3],
            pool_size=0,
            redirect=(p + 1, p + 2, p + 3),
            mode=self.mode,
        )
        self.identities = SourceTable()
        # Called with an instance's key once it is gone and its address unregistered
        # (the egress proxy drops what it kept for it).
        self.on_instance_end: list[Callable[[InstanceKey], None]] = []
        self.cgroups = cgroups.CgroupManager()
        # Plans are cached for PLAN_TTL_S: reading ELF headers costs milliseconds, and an
        # upgraded package (new libraries, a moved interpreter) is planned afresh soon.
        self._plans: dict[
            tuple[tuple[str, ...], str | None, str | None], tuple[float, runtime.RuntimePlan]
        ] = {}
        self._seq = 0
        self._live: set[_JailedProcess] = set()
        self._zygotes: list[_Zygote] = []
        self._building: set[asyncio.Task[_Zygote]] = set()
        self._orphans: set[asyncio.Task[None]] = set()
        self._filler: asyncio.Task[None] | None = None
        self._closing = False

    async def start(self) -> dict[str, list[str]]:
        problems = [p for p in (seccomp.available(), cgroups.available()) if p]
        if problems:
            raise LaunchError("; ".join(problems))
        leftovers = await asyncio.to_thread(self.cgroups.reconcile)
        links = await self.network.start()
        self._schedule_fill()
        return {"cgroups": leftovers, "links": links}

    async def aclose(self) -> None:
        """Kill whatever is still jailed and clean every instance up, then the network."""
        self._closing = True
        if self._filler is not None:
            self._filler.cancel()
            await asyncio.gather(self._filler, return_exceptions=True)
        # Zygotes under construction finish (they are never cut short: see _zygote);
        # those nobody claimed are discarded by their own callbacks.
        await asyncio.gather(*self._building, return_exceptions=True)
        await asyncio.gather(*self._orphans, return_exceptions=True)
        for z in self._zygotes:
            await self._discard(z)
        self._zygotes.clear()
        for process in list(self._live):
            process.kill()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5):
                    await process.wait()
            with contextlib.suppress(Exception):
                await process.cleanup()
        await asyncio.to_thread(self.cgroups.close)
        await self.network.aclose()

    async def _plan(self, spec: LaunchSpec) -> runtime.RuntimePlan:
        key = (spec.command, spec.cwd, spec.rootfs)
        now = asyncio.get_running_loop().time()
        cached = self._plans.get(key)
        found = cached[1] if cached is not None and now - cached[0] < PLAN_TTL_S else None
        if found is None:
            try:
                if spec.rootfs is not None:
                    found = await asyncio.to_thread(
                        runtime.plan_rootfs, spec.rootfs, spec.command, spec.cwd
                    )
                else:
                    found = await asyncio.to_thread(runtime.plan, spec.command, spec.cwd)
            except runtime.RuntimeScanError as exc:
                # The planner's words name the path and the fix: the operator's cause.
                raise LaunchError(str(exc)) from exc
            self._plans[key] = (now, found)
        return found

    async def explain(self, spec: LaunchSpec) -> str | None:
        """Why a jail that was launched may have died before its server spoke: the
        command planned afresh, since a cached plan can predate a change on disk (a
        folder locked since, a package removed), which bubblewrap then meets as a bare
        "Permission denied". For the operator's log; None when the plan holds."""
        self._plans.pop((spec.command, spec.cwd, spec.rootfs), None)
        try:
            await self._plan(spec)
        except LaunchError as exc:
            return str(exc)
        return None

    # -- zygotes ------------------------------------------------------------------------
    def _schedule_fill(self) -> None:
        if self.config.pool_size <= 0 or self._closing:
            return
        if self._filler is None or self._filler.done():
            self._filler = asyncio.get_running_loop().create_task(self._fill())

    async def _fill(self) -> None:
        while len(self._zygotes) < self.config.pool_size and not self._closing:
            try:
                self._zygotes.append(await self._zygote(self.limits))
            except Exception:
                return  # the pool is for speed only: a cold launch says what is wrong

    async def _zygote(self, limits: JailLimits, command: tuple[str, ...] | None = None) -> _Zygote:
        """Build a zygote in a task of its own: netlink work on the network thread and a
        cgroup on a worker finish whatever happens to the caller, so a caller cancelled
        half-way (a client gone, a shutdown) must not strand what they made. The caller
        is shielded; if it goes away, the finished zygote is discarded instead."""
        task = asyncio.get_running_loop().create_task(self._make_zygote(limits, command))
        self._building.add(task)
        task.add_done_callback(self._building.discard)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            task.add_done_callback(self._discard_unclaimed)
            raise

    def _discard_unclaimed(self, task: asyncio.Task[_Zygote]) -> None:
        if task.cancelled() or task.exception() is not None:
            return
        orphan = asyncio.get_running_loop().create_task(self._discard(task.result()))
        self._orphans.add(orphan)
        orphan.add_done_callback(self._orphans.discard)

    async def _make_zygote(
        self, limits: JailLimits, command: tuple[str, ...] | None = None
    ) -> _Zygote:
        """``command`` None: the shared shell trampoline (poolable). An image's root may
        have no shell, so an image runs its own command, on bwrap's argv directly."""
        self._seq += 1
        name = f"jail-{os.getpid()}-{self._seq}"
        # The namespace (netlink, on the network thread) and the cgroup (mkdir and
        # limits, on a worker) do not depend on each other: build them side by side.
        made = await asyncio.gather(
            self.network.acquire(),
            asyncio.to_thread(self.cgroups.create, name, _cg_limits(limits)),
            return_exceptions=True,
        )
        lease_or_err, cgroup_or_err = made
        if isinstance(lease_or_err, BaseException) or isinstance(cgroup_or_err, BaseException):
            if isinstance(cgroup_or_err, cgroups.Cgroup):
                await asyncio.to_thread(cgroup_or_err.remove)
            if isinstance(lease_or_err, NetLease):
                await self.network.release(lease_or_err)
            err = lease_or_err if isinstance(lease_or_err, BaseException) else cgroup_or_err
            assert isinstance(err, BaseException)
            raise err
        lease: NetLease = lease_or_err
        cgroup: cgroups.Cgroup | None = cgroup_or_err
        child_fds: list[int] = []
        parent_fds: list[int] = []
        proc: subprocess.Popen[bytes] | None = None
        try:
            assert cgroup is not None
            net = jail.JailNetwork(
                lease.slot.host_ip, lease.slot.sandbox_ip, self.config.proxy_port
            )
            data_fds = {}
            for dest, content in jail.etc_files(net, self.config.ca_bundle).items():
                fd = jail.memfd(os.path.basename(dest), content)
                child_fds.append(fd)
                data_fds[dest] = fd
            seccomp_fd = seccomp.filter_fd()
            child_fds.append(seccomp_fd)
            args_r, args_w = os.pipe()
            child_fds.append(args_r)
            parent_fds.append(args_w)
            info_r, info_w = os.pipe()
            child_fds.append(info_w)
            parent_fds.append(info_r)
            tail = jail.TRAMPOLINE if command is None else ("--", *command)
            argv = with_rlimits([jail.BWRAP, "--args", str(args_r), *tail], limits)
            # Userns mode: nsenter (as the instance's uid, owner of the holder's user
            # namespace) joins it and its network namespace, then runs prlimit and bwrap.
            argv = [*lease.spawn_prefix, *argv]
            # Root mode: this thread enters the namespace, forks, and comes straight back.
            entered = lease.holder is None
            if entered:
                self.network.enter(lease)
            try:
                # Synchronous on purpose: see the module docstring.
                proc = subprocess.Popen(  # noqa: ASYNC220
                    argv,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    pass_fds=tuple(child_fds),
                    env={},
                    user=jail.host_uid(lease.slot.index),
                    group=jail.host_uid(lease.slot.index),
                    extra_groups=[],
                    start_new_session=True,
                )
            finally:
                if entered:
                    self.network.leave()
            # bwrap is blocked reading its arguments: nothing has run yet. Moving it now
            # means every process of the jail is born inside the cgroup.
            await asyncio.to_thread(cgroup.add, proc.pid)
            return _Zygote(
                lease,
                cgroup,
                proc,
                args_w,
                info_r,
                data_fds,
                seccomp_fd,
                limits,
                info_w,
                trampoline=command is None,
            )
        except BaseException:
            # Also when cancelled (a pool refill cut short by shutdown): nothing may stay
            # open or alive.
            for fd in parent_fds:
                os.close(fd)
            if proc is not None:
                proc.kill()
                await asyncio.to_thread(proc.wait)
                for stream in (proc.stdin, proc.stdout, proc.stderr):
                    if stream is not None:
                        stream.close()
            if cgroup is not None:
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(cgroup.remove)
            await self.network.release(lease)
            raise
        finally:
            for fd in child_fds:
                os.close(fd)

    async def _discard(self, z: _Zygote) -> None:
        z.close_fds()  # bwrap reads EOF instead of arguments and exits
        z.proc.kill()
        await asyncio.to_thread(z.proc.wait)
        for stream in (z.proc.stdin, z.proc.stdout, z.proc.stderr):
            if stream is not None:
                stream.close()
        with contextlib.suppress(Exception):
            await asyncio.to_thread(z.cgroup.remove)
        await self.network.release(z.lease)

    # -- launch --------------------------------------------------------------------------
    async def launch(self, spec: LaunchSpec) -> LaunchedProcess:
        plan = await self._plan(spec)
        limits = spec.limits if spec.limits is not None else self.limits
        pooled = None
        if plan.kind != "rootfs":
            pooled = next(
                (z for z in self._zygotes if z.limits.nofile == limits.nofile
                 and z.limits.fsize_bytes == limits.fsize_bytes),
                None,
            )  # fmt: skip
        if pooled is not None:
            self._zygotes.remove(pooled)
            z = pooled
        elif plan.kind == "rootfs":
            z = await self._zygote(limits, command=plan.argv)
        else:
            z = await self._zygote(limits)
        self._schedule_fill()
        identity = Identity(
            spec.key,
            spec.key.server_name,
            spec.key.profile_id,
            spec.owner_id,
            z.lease.slot.host_ip,
            z.lease.slot.sandbox_ip,
            z.lease.slot.host_ifname,
        )
        try:
            if _cg_limits(z.limits) != _cg_limits(limits):
                await asyncio.to_thread(self.cgroups.set_limits, z.cgroup, _cg_limits(limits))
            self.identities.add(identity)
            process = await self._release(z, spec, plan, limits)
        except BaseException:
            self.identities.remove(identity.sandbox_ip)
            await self._discard(z)
            raise
        lease, cgroup = z.lease, z.cgroup

        async def cleanup() -> None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(cgroup.remove)
            self.identities.remove(lease.slot.sandbox_ip)
            await self.network.release(lease)
            self._live.discard(process)
            for hook in self.on_instance_end:
                with contextlib.suppress(Exception):
                    hook(spec.key)

        process.set_cleanup(cleanup)
        self._live.add(process)
        return process

    async def _release(
        self, z: _Zygote, spec: LaunchSpec, plan: runtime.RuntimePlan, limits: JailLimits
    ) -> _JailedProcess:
        """Hand the zygote its arguments and wait until bwrap has built the jail."""
        net = jail.JailNetwork(
            z.lease.slot.host_ip, z.lease.slot.sandbox_ip, self.config.proxy_port
        )
        env = jail.environment(spec.env, net)
        args = jail.bwrap_args(
            plan,
            env,
            limits,
            z.data_fds,
            z.seccomp_fd,
            z.info_w_child,
            hostname=spec.key.server_name[:63] or "sandbox",
            trampoline=z.trampoline,
        )
        payload = b"".join(a.encode() + b"\0" for a in args)
        # One write into an empty pipe, which holds 64 KiB: it never blocks the event
        # loop, and a definition too large for it (a huge environment) is refused.
        if len(payload) > MAX_ARGS_BYTES:
            raise LaunchError(
                f"the jail's options take {len(payload)} bytes, more than {MAX_ARGS_BYTES}: "
                "shorten the server's environment or arguments"
            )
        if os.write(z.args_w, payload) != len(payload):
            raise LaunchError("bubblewrap did not take its options in one piece")
        os.close(z.args_w)
        z.args_w = -1
        info_r, z.info_r = z.info_r, -1
        try:
            jail_pid = await self._read_info(z.proc, info_r)
            try:
                jail_pidfd = _pidfd_in(jail_pid, z.cgroup)
            except LaunchError as exc:
                # bubblewrap says why its init died (a path it could not bind, say).
                said = await asyncio.to_thread(_stderr_of, z.proc)
                raise LaunchError(f"{exc}: {said}") from None
        except LaunchError as exc:
            hint = await self.explain(spec)
            if hint is None:
                raise
            raise LaunchError(f"{exc}; the command's check now says: {hint}") from None
        try:
            process = await _wrap(z.proc, z.cgroup, limits)
        except BaseException:
            os.close(jail_pidfd)
            raise
        process.jail_pid, process.jail_pidfd = jail_pid, jail_pidfd
        return process

    async def _read_info(self, proc: subprocess.Popen[bytes], info_r: int) -> int:
        """bwrap writes its init's pid once the namespaces exist; EOF first means it
        failed, and its stderr says why."""
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(info_r, "rb", buffering=0)
        )
        try:
            async with asyncio.timeout(START_TIMEOUT):
                raw = await reader.read()
        except TimeoutError as exc:
            raise LaunchError("bubblewrap did not start within 10 s") from exc
        finally:
            transport.close()
        try:
            return int(json.loads(raw)["child-pid"])
        except (ValueError, KeyError, TypeError):
            # Off the loop: waiting for bubblewrap to exit may take a moment.
            said = await asyncio.to_thread(_stderr_of, proc)
            raise LaunchError(f"bubblewrap failed: {said}") from None


def _pidfd_in(pid: int, cgroup: cgroups.Cgroup) -> int:
    """A pidfd for ``pid``, checked to be the process in our cgroup that the number named
    when bwrap reported it (a pid that died and was reused in between is not ours)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        raise LaunchError("the jail's init died as it started") from None
    if pid not in cgroup.pids():
        os.close(fd)
        raise LaunchError("the jail's init died as it started")
    return fd


def _cg_limits(limits: JailLimits) -> cgroups.Limits:
    return cgroups.Limits(
        memory_bytes=limits.memory_bytes, pids=limits.pids, cpu_weight=limits.cpu_weight
    )


def _stderr_of(proc: subprocess.Popen[bytes]) -> str:
    """What bwrap said before it died (it prints one line and exits at once)."""
    assert proc.stderr is not None
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)
    if proc.returncode is None:
        return "it did not start its sandbox"
    message = proc.stderr.read(4096).decode(errors="replace").strip()
    return message.splitlines()[-1] if message else f"exit status {proc.returncode}"


def with_rlimits(args: list[str], limits: JailLimits) -> list[str]:
    """Prefix bwrap with prlimit(1), which lowers its own limits and execs: lowering is
    always allowed, while setting another process's limits would need CAP_SYS_RESOURCE,
    which containers often drop. Hard and soft alike, so the jail cannot raise them."""
    n, f = limits.nofile, limits.fsize_bytes
    return [PRLIMIT, f"--nofile={n}:{n}", "--core=0:0", f"--fsize={f}:{f}", "--", *args]


async def _wrap(
    proc: subprocess.Popen[bytes], cgroup: cgroups.Cgroup, limits: JailLimits
) -> _JailedProcess:
    loop = asyncio.get_running_loop()
    assert proc.stdin is not None
    assert proc.stdout is not None
    assert proc.stderr is not None
    stdout = asyncio.StreamReader(limit=STREAM_LIMIT)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdout), proc.stdout)
    stderr = asyncio.StreamReader(limit=STDERR_LIMIT)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stderr), proc.stderr)
    transport, protocol = await loop.connect_write_pipe(
        lambda: asyncio.StreamReaderProtocol(asyncio.StreamReader()), proc.stdin
    )
    stdin = asyncio.StreamWriter(transport, protocol, None, loop)
    return _JailedProcess(proc, stdin, stdout, stderr, lambda: None, cgroup, limits)
