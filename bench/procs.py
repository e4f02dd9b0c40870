"""Starting and stopping the processes under test, and the CPU pinning of both sides.

Owns every child the benchmark starts: each runs in its own session (process group) on
the cores given to the system under test, is recorded here, and is stopped by
``stop_all`` (TERM to the group, then KILL) however the run ends. It must never signal a
process it did not start.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from bench import procstat

_started: list[subprocess.Popen[bytes]] = []
_pgids: set[int] = set()


def cpu_split() -> tuple[set[int], set[int]]:
    """(load generator cores, system-under-test cores): disjoint when there are two or more."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return set(cpus), set(cpus)
    return {cpus[0]}, set(cpus[1:])


def pin_self(cpus: set[int]) -> None:
    os.sched_setaffinity(0, cpus)


_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def preexec(cpus: set[int]) -> Callable[[], None]:
    """Runs in the child before exec: pin it, and have the kernel TERM it if the benchmark
    itself dies (even by SIGKILL), so no server outlives a crashed run."""

    def run() -> None:
        os.sched_setaffinity(0, cpus)
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)

    return run


def register_pgid(pgid: int) -> None:
    """Remember a process group started elsewhere (the asyncio stdio client) for cleanup."""
    _pgids.add(pgid)


def forget_pgid(pgid: int) -> None:
    """The group ended on its own (a stdio server that exited at end of input)."""
    _pgids.discard(pgid)


def spawn(
    argv: Sequence[str],
    cpus: set[int],
    log: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start a long-running server pinned to ``cpus``, output to ``log``."""
    with log.open("ab") as out:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
            preexec_fn=preexec(cpus),
        )
    _started.append(proc)
    _pgids.add(proc.pid)
    return proc


def _kill_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _start_time(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _descendants(pgid: int) -> dict[int, str]:
    """The tree below a started process, with start times so a reused pid is never hit."""
    found: dict[int, str] = {}
    for pid in procstat.tree(pgid):
        started = _start_time(pid)
        if started is not None:
            found[pid] = started
    return found


def _signal_tree(tree: dict[int, str], sig: int) -> None:
    for pid, started in tree.items():
        if _start_time(pid) == started:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)


def _alive(tree: dict[int, str]) -> bool:
    return any(_start_time(pid) == started and not _zombie(pid) for pid, started in tree.items())


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def _reap() -> None:
    for proc in _started:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(0)


def stop_group(pgid: int, grace: float = 5.0) -> None:
    """TERM the process group and every descendant (a peer may put its children in a
    session of their own), wait up to ``grace`` seconds, then KILL whatever is left."""
    tree = _descendants(pgid)
    _kill_group(pgid, signal.SIGTERM)
    _signal_tree(tree, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        _reap()
        if not _alive(tree):
            break
        time.sleep(0.05)
    _kill_group(pgid, signal.SIGKILL)
    _signal_tree(tree, signal.SIGKILL)
    for proc in _started:
        if proc.pid == pgid:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(2)
    _pgids.discard(pgid)


def stop_all() -> None:
    for pgid in list(_pgids):
        stop_group(pgid, grace=3.0)
    _started.clear()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(
    connect: Callable[[], socket.socket],
    proc: subprocess.Popen[bytes],
    log: Path,
    timeout: float = 60.0,
) -> None:
    """Block until ``connect()`` succeeds; fail with the server's log if it exits or stalls."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode} at start:\n{_tail(log)}")
        try:
            connect().close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"not listening after {timeout:.0f} s:\n{_tail(log)}")


def _tail(log: Path, lines: int = 30) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
