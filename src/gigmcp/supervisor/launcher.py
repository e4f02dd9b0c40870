"""The plain launcher: a server process run directly, unjailed.

The supervisor asks a :class:`~gigmcp.core.launch.Launcher` for a process and talks to
it over stdio; it never knows whether the process is jailed. The sandbox is one
Launcher; the :class:`PlainLauncher` here runs the command directly and exists only for
development (``--insecure-no-sandbox``) and for tests of the gateway core. It must never
hand the server the gateway's own environment.
"""

from __future__ import annotations

import asyncio
import os

from gigmcp.core.launch import STREAM_LIMIT, LaunchedProcess, LaunchSpec


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
