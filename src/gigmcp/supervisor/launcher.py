"""The launcher seam: how a server process comes to exist.

The supervisor asks a :class:`Launcher` for a process and talks to it over stdio; it
never knows whether the process is jailed. The sandbox (issue 3) is a Launcher; the
:class:`PlainLauncher` here runs the command directly and exists only for development
(``--insecure-no-sandbox``) and for tests of the gateway core.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from typing import Protocol

from gigmcp.upstream.types import InstanceKey

# The stdout StreamReader's buffer (asyncio pauses the pipe at twice this). Lines are
# framed by upstream/connection.py, which bounds a message by GIG_MAX_MESSAGE_BYTES;
# this only decides how much may wait unread, and it is outside the jail's cgroup.
STREAM_LIMIT = 256 * 1024
# stderr is only ever a log: a server writing megabytes without a newline must not make
# the gateway hold them (the log pump reads on in chunks past this).
STDERR_LIMIT = 64 * 1024


class LaunchError(Exception):
    """The process could not be started; the message says why, for the operator: the
    gateway's log and the server's own. Clients never see it (they get a reference to
    it). Never carries a secret."""


@dataclass(frozen=True, slots=True)
class LaunchSpec:
    key: InstanceKey
    command: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None
    owner_id: int = 0
    # Launcher-specific resource limits (the sandbox's JailLimits); None = its defaults.
    limits: object | None = None
    # An extracted image to run as the jail's root (the command is resolved inside it).
    rootfs: str | None = None


class LaunchedProcess(Protocol):
    pid: int
    stdin: asyncio.StreamWriter
    stdout: asyncio.StreamReader
    stderr: asyncio.StreamReader

    async def wait(self) -> int: ...

    def terminate(self) -> None: ...

    def kill(self) -> None: ...

    def exit_reason(self) -> str | None:
        """Why the process died when a limit killed it (memory, pids), else None."""
        ...

    async def cleanup(self) -> None:
        """Release whatever the launch created besides the process (namespaces, veths,
        cgroups). Idempotent; called after the process has exited."""
        ...


class Launcher(Protocol):
    async def start(self) -> dict[str, list[str]]:
        """Get ready before the first launch; returns what an earlier run left behind
        and was removed, by kind."""
        ...

    async def launch(self, spec: LaunchSpec) -> LaunchedProcess: ...

    async def explain(self, spec: LaunchSpec) -> str | None:
        """Why ``spec`` cannot run, if the launcher can tell by looking (it runs
        nothing); None when it sees no reason."""
        ...

    async def aclose(self) -> None:
        """Release what :meth:`start` set up; every instance has ended by then."""
        ...


class _PlainProcess:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdin is not None
        assert proc.stdout is not None
        assert proc.stderr is not None
        self._proc = proc
        self.pid = proc.pid
        self.stdin = proc.stdin
        self.stdout = proc.stdout
        self.stderr = proc.stderr

    async def wait(self) -> int:
        return await self._proc.wait()

    def terminate(self) -> None:
        if self._proc.returncode is None:
            self._proc.terminate()

    def kill(self) -> None:
        if self._proc.returncode is None:
            self._proc.kill()

    def exit_reason(self) -> str | None:
        return None

    async def cleanup(self) -> None:
        return None


class PlainLauncher:
    """Runs the server unjailed with a cleared environment: only PATH-like basics plus
    what the spec declares. Never the gateway's own environment."""

    BASE_ENV_KEYS = ("PATH", "LANG", "TZ")

    async def start(self) -> dict[str, list[str]]:
        return {}

    async def explain(self, spec: LaunchSpec) -> str | None:
        return None

    async def aclose(self) -> None:
        return None

    async def launch(self, spec: LaunchSpec) -> LaunchedProcess:
        env = {k: os.environ[k] for k in self.BASE_ENV_KEYS if k in os.environ}
        env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
        env["HOME"] = spec.cwd or "/tmp"  # noqa: S108 - servers that want a HOME get a harmless one
        env.update(spec.env)
        proc = await asyncio.create_subprocess_exec(
            *spec.command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            cwd=spec.cwd,
            limit=STREAM_LIMIT,
            start_new_session=True,
            preexec_fn=_die_with_gateway,
        )
        return _PlainProcess(proc)


def _die_with_gateway() -> None:
    """Runs in the child before exec: SIGKILL when the thread that spawned it dies. We
    spawn from the event-loop thread, which lives as long as the gateway; a gateway killed
    with SIGKILL therefore takes its unjailed servers with it."""
    import ctypes
    import signal

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
