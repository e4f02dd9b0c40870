"""The launcher seam: what the supervisor asks for and what it gets back.

Owns :class:`LaunchSpec` (with the resource limits a jail enforces, typed),
:class:`LaunchedProcess` and :class:`Launcher` (the protocols the plain launcher and the
sandbox implement), the stream buffer sizes both use, and says that a failed launch raises
:class:`gigmcp.errors.LaunchError`. It must
never start anything itself: launching is the supervisor's plain launcher's or the
sandbox's job.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Protocol

from gigmcp.core.instances import InstanceKey

# The stdout StreamReader's buffer (asyncio pauses the pipe at twice this). Lines are
# framed by upstream/connection.py, which bounds a message by GIG_MAX_MESSAGE_BYTES;
# this only decides how much may wait unread, and it is outside the jail's cgroup.
STREAM_LIMIT = 256 * 1024
# stderr is only ever a log: a server writing megabytes without a newline must not make
# the gateway hold them (the log pump reads on in chunks past this).
STDERR_LIMIT = 64 * 1024


@dataclass(frozen=True, slots=True)
class JailLimits:
    """Per-server limits with safe defaults. Memory and pids are enforced by the cgroup;
    the rest by rlimits set on the jail's first process before it runs anything. The
    operator's values are checked against store/limits.py's bounds before they are
    stored; the plain launcher enforces none of them."""

    memory_bytes: int = 512 * 2**20
    pids: int = 256
    cpu_weight: int = 100
    nofile: int = 1024
    fsize_bytes: int = 256 * 2**20
    tmp_bytes: int = 64 * 2**20
    home_bytes: int = 64 * 2**20


@dataclass(frozen=True, slots=True)
class RemoteTarget:
    """A remote server's session instead of a process: its URL, the allowlist its
    traffic keeps to, and the vendor whose connected account authorizes it (None: no
    authorization)."""

    url: str
    hosts: tuple[str, ...]
    ports: tuple[int, ...]
    vendor: str | None = None


@dataclass(frozen=True, slots=True)
class LaunchSpec:
    key: InstanceKey
    command: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None
    owner_id: int = 0
    # Resource limits for the jail; None = the sandbox's defaults.
    limits: JailLimits | None = None
    # An extracted image to run as the jail's root (the command is resolved inside it).
    rootfs: str | None = None
    # A remote server: no process, a Streamable HTTP session (egress/remote.py).
    remote: RemoteTarget | None = None


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
