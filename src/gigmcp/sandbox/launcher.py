"""The sandbox launcher: the :class:`~gigmcp.supervisor.launcher.Launcher` that jails.

Owns the start and the end of one jailed instance, in this order: a prepared network
namespace, a cgroup with the server's limits, bubblewrap spawned *inside* that namespace
as uid 65534 and held at ``--block-fd`` until its first process is in the cgroup and has
its rlimits, then released; at the end, the cgroup emptied and removed, the identity
forgotten, the namespace and its veth destroyed.

Spawning happens on the event-loop thread, never on an executor thread: bubblewrap's
``--die-with-parent`` is a parent-death signal, which fires when the spawning *thread*
exits. The loop thread steps into the namespace for the spawn and straight back, with no
await in between, so nothing else can run there meanwhile. Even if that signal were lost,
the pid namespace (its init dies, all die) and the cgroup (killed at cleanup and at the
next start-up) take every descendant down. It must never start a process outside a
cgroup, never let a jailed process run before its limits are in place, and never leave a
namespace, veth, cgroup or set element behind.
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

from gigmcp.sandbox import cgroups, jail, runtime, seccomp
from gigmcp.sandbox.identity import Identity, SourceTable
from gigmcp.sandbox.netns import NetLease, SandboxNetwork
from gigmcp.supervisor.launcher import STREAM_LIMIT, LaunchedProcess, LaunchError, LaunchSpec

START_TIMEOUT = 10.0
PRLIMIT = "/usr/bin/prlimit"


@dataclass(frozen=True, slots=True)
class SandboxConfig:
    subnet: str = "10.213.0.0/16"
    proxy_port: int = 3128
    pool_size: int = 2
    ca_bundle: bytes = b""


class _JailedProcess:
    def __init__(
        self,
        proc: subprocess.Popen[bytes],
        stdin: asyncio.StreamWriter,
        stdout: asyncio.StreamReader,
        stderr: asyncio.StreamReader,
        cleanup: Callable[[], object],
        cgroup: cgroups.Cgroup,
        limits: jail.JailLimits,
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
        # bwrap's monitor dies, its init gets SIGKILL from the parent-death signal, and
        # the whole pid namespace goes with it.
        if not self._exit.done():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)

    def kill(self) -> None:
        with contextlib.suppress(Exception):
            self.cgroup.kill()
        if not self._exit.done():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)

    async def cleanup(self) -> None:
        # One clean-up however many callers (the exit watcher and a shutdown race for it),
        # and a caller cancelled while waiting must not cancel the clean-up itself.
        if self._cleaning is None:
            self._cleaning = asyncio.get_running_loop().create_task(self._run_cleanup())
        await asyncio.shield(self._cleaning)

    async def _run_cleanup(self) -> None:
        result = self._cleanup()
        if asyncio.iscoroutine(result):
            await result


class SandboxLauncher:
    """Jails every server. ``start()`` must run before the first launch (it reconciles
    what a crashed run left and installs the firewall)."""

    def __init__(self, config: SandboxConfig, limits: jail.JailLimits | None = None) -> None:
        self.config = config
        self.limits = limits or jail.JailLimits()
        self.network = SandboxNetwork(config.subnet, [config.proxy_port], config.pool_size)
        self.identities = SourceTable()
        self.cgroups = cgroups.CgroupManager()
        self._plans: dict[tuple[tuple[str, ...], str | None], runtime.RuntimePlan] = {}
        self._seq = 0
        self._live: set[_JailedProcess] = set()

    async def start(self) -> dict[str, list[str]]:
        problems = [p for p in (seccomp.available(), cgroups.available()) if p]
        if problems:
            raise LaunchError("; ".join(problems))
        leftovers = await asyncio.to_thread(self.cgroups.reconcile)
        links = await self.network.start()
        return {"cgroups": leftovers, "links": links}

    async def aclose(self) -> None:
        """Kill whatever is still jailed and clean every instance up, then the network."""
        for process in list(self._live):
            process.kill()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5):
                    await process.wait()
            with contextlib.suppress(Exception):
                await process.cleanup()
        await self.network.aclose()

    async def _plan(self, spec: LaunchSpec) -> runtime.RuntimePlan:
        key = (spec.command, spec.cwd)
        found = self._plans.get(key)
        if found is None:
            try:
                found = await asyncio.to_thread(runtime.plan, spec.command, spec.cwd)
            except runtime.RuntimeError_ as exc:
                raise LaunchError(f"cannot jail {spec.key.server_name}: {exc}") from exc
            self._plans[key] = found
        return found

    async def launch(self, spec: LaunchSpec) -> LaunchedProcess:
        plan = await self._plan(spec)
        limits = spec.limits if isinstance(spec.limits, jail.JailLimits) else self.limits
        lease = await self.network.acquire()
        self._seq += 1
        name = f"{spec.key.server_name}-p{spec.key.profile_id}-{os.getpid()}-{self._seq}"[:64]
        cgroup: cgroups.Cgroup | None = None
        identity: Identity | None = None
        try:
            cgroup = self.cgroups.create(
                name,
                cgroups.Limits(
                    memory_bytes=limits.memory_bytes,
                    pids=limits.pids,
                    cpu_weight=limits.cpu_weight,
                ),
            )
            identity = Identity(
                spec.key,
                spec.key.server_name,
                spec.key.profile_id,
                spec.owner_id,
                lease.slot.host_ip,
                lease.slot.sandbox_ip,
                lease.slot.host_ifname,
            )
            self.identities.add(identity)
            process = await self._spawn(spec, plan, limits, lease, cgroup)
        except BaseException:
            if identity is not None:
                self.identities.remove(identity.sandbox_ip)
            if cgroup is not None:
                with contextlib.suppress(Exception):
                    cgroup.remove()
            await self.network.release(lease)
            raise

        async def cleanup() -> None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(cgroup.remove)
            self.identities.remove(lease.slot.sandbox_ip)
            await self.network.release(lease)

        process._cleanup = cleanup
        return process

    async def _spawn(
        self,
        spec: LaunchSpec,
        plan: runtime.RuntimePlan,
        limits: jail.JailLimits,
        lease: NetLease,
        cgroup: cgroups.Cgroup,
    ) -> _JailedProcess:
        net = jail.JailNetwork(lease.slot.host_ip, lease.slot.sandbox_ip, self.config.proxy_port)
        env = jail.environment(spec.env, net)
        child_fds: list[int] = []
        parent_fds: list[int] = []
        try:
            data_fds = {}
            for dest, content in jail.etc_files(net, self.config.ca_bundle).items():
                fd = jail.memfd(os.path.basename(dest), content)
                child_fds.append(fd)
                data_fds[dest] = fd
            seccomp_fd = seccomp.filter_fd()
            child_fds.append(seccomp_fd)
            info_r, info_w = os.pipe()
            parent_fds.append(info_r)
            child_fds.append(info_w)
            block_r, block_w = os.pipe()
            parent_fds.append(block_w)
            child_fds.append(block_r)
            args = jail.bwrap_args(
                plan,
                env,
                limits,
                data_fds,
                seccomp_fd,
                info_w,
                block_r,
                hostname=spec.key.server_name[:63] or "sandbox",
            )
            args = with_rlimits(args, limits)
            # The spawn: this thread enters the namespace, forks, and comes straight back.
            self.network.enter(lease)
            try:
                # Synchronous on purpose: see the module docstring.
                proc = subprocess.Popen(  # noqa: ASYNC220
                    args,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    pass_fds=tuple(child_fds),
                    env={},
                    user=jail.SANDBOX_UID,
                    group=jail.SANDBOX_GID,
                    extra_groups=[],
                    start_new_session=True,
                )
            finally:
                self.network.leave()
        finally:
            for fd in child_fds:
                os.close(fd)
        try:
            child_pid = await self._read_info(proc, info_r)
            parent_fds.remove(info_r)
            try:
                cgroup.add(proc.pid)
                cgroup.add(child_pid)
                os.write(block_w, b"1")
            except (ProcessLookupError, BrokenPipeError):
                raise LaunchError(f"bubblewrap failed: {_stderr_of(proc)}") from None
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            with contextlib.suppress(Exception):
                await asyncio.to_thread(proc.wait, 5)
            raise
        finally:
            for fd in parent_fds:
                os.close(fd)
        return await _wrap(proc, cgroup, limits)

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
            raise LaunchError(f"bubblewrap failed: {_stderr_of(proc)}") from None


def _stderr_of(proc: subprocess.Popen[bytes]) -> str:
    """What bwrap said before it died (it prints one line and exits at once)."""
    assert proc.stderr is not None
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)
    if proc.returncode is None:
        return "it did not start its sandbox"
    message = proc.stderr.read(4096).decode(errors="replace").strip()
    return message.splitlines()[-1] if message else f"exit status {proc.returncode}"


def with_rlimits(args: list[str], limits: jail.JailLimits) -> list[str]:
    """Prefix bwrap with prlimit(1), which lowers its own limits and execs: lowering is
    always allowed, while setting another process's limits would need CAP_SYS_RESOURCE,
    which containers often drop. Hard and soft alike, so the jail cannot raise them."""
    n, f = limits.nofile, limits.fsize_bytes
    return [PRLIMIT, f"--nofile={n}:{n}", "--core=0:0", f"--fsize={f}:{f}", "--", *args]


async def _wrap(
    proc: subprocess.Popen[bytes], cgroup: cgroups.Cgroup, limits: jail.JailLimits
) -> _JailedProcess:
    loop = asyncio.get_running_loop()
    assert proc.stdin is not None
    assert proc.stdout is not None
    assert proc.stderr is not None
    stdout = asyncio.StreamReader(limit=STREAM_LIMIT)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdout), proc.stdout)
    stderr = asyncio.StreamReader(limit=STREAM_LIMIT)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stderr), proc.stderr)
    transport, protocol = await loop.connect_write_pipe(
        lambda: asyncio.StreamReaderProtocol(asyncio.StreamReader()), proc.stdin
    )
    stdin = asyncio.StreamWriter(transport, protocol, None, loop)
    return _JailedProcess(proc, stdin, stdout, stderr, lambda: None, cgroup, limits)
