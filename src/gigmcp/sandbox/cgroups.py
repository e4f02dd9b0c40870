"""Resource limits of one jailed instance: a cgroup per instance, v2 or v1.

Owns the instance cgroups under a ``gigmcp`` directory inside the gateway's own cgroup,
in every hierarchy it uses (nesting under our own cgroup keeps us inside whatever limits
the host put on the gateway, and is what a delegated systemd unit allows). Per
controller it uses cgroup v2 where the controller is available there, else the v1
hierarchy that has it: hosts that mount v1 controllers next to an empty ``unified``
v2 tree get both, the v2 tree still serving for ``cgroup.kill``.

Memory (swap limited to nothing, so the limit is a limit), pids and CPU weight are set
before any process joins. It must never touch a cgroup outside its ``gigmcp``
directories, never leave a directory behind, and never report a limit as the cause of
a death it did not cause.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import signal
import time
from dataclasses import dataclass

from gigmcp.errors import LaunchError

NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
PARENT = "gigmcp"
KILL_DEADLINE = 2.0


class CgroupError(LaunchError):
    pass


@dataclass(frozen=True, slots=True)
class Limits:
    memory_bytes: int = 512 * 2**20
    pids: int = 256
    cpu_weight: int = 100


@dataclass(frozen=True, slots=True)
class _Hierarchy:
    version: int  # 1 or 2
    mount: str
    own: str  # our own cgroup's directory in this hierarchy
    controllers: frozenset[str]
    # Mounted read-only: what an unprivileged container is given by its engine.
    read_only: bool = False

    @property
    def parent(self) -> str:
        return os.path.join(self.own, PARENT)


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def _write(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _discover() -> list[_Hierarchy]:
    own: dict[str, str] = {}  # controller list (v1) or "" (v2) -> path
    for line in _read("/proc/self/cgroup").splitlines():
        _id, ctrls, path = line.split(":", 2)
        own[ctrls] = path
    # By mount point, the last mount wins: it is the one visible there (a container's
    # delegated, writable cgroup folder bound over the engine's read-only hierarchy).
    found: dict[str, _Hierarchy] = {}
    for line in _read("/proc/self/mounts").splitlines():
        _dev, mount, fstype, opts, *_ = line.split()
        if fstype == "cgroup2":
            v2_ctrls = frozenset(_read(os.path.join(mount, "cgroup.controllers")).split())
            rel = own.get("", "/").lstrip("/")
            found[mount] = _Hierarchy(2, mount, os.path.join(mount, rel), v2_ctrls, _ro(opts))
        elif fstype == "cgroup":
            names = frozenset(o for o in opts.split(",") if o in _V1_CONTROLLERS)
            key = next((k for k in own if k and frozenset(k.split(",")) == names), None)
            if names and key is not None:
                rel = own[key].lstrip("/")
                found[mount] = _Hierarchy(1, mount, os.path.join(mount, rel), names, _ro(opts))
    return list(found.values())


def _ro(opts: str) -> bool:
    return "ro" in opts.split(",")


_V1_CONTROLLERS = {"memory", "pids", "cpu", "cpuacct", "freezer", "cpuset", "devices", "blkio"}


def _plan() -> tuple[dict[str, _Hierarchy], _Hierarchy | None]:
    """Which hierarchy serves each controller we use, and the v2 tree (for kill)."""
    hierarchies = _discover()
    v2 = next((h for h in hierarchies if h.version == 2), None)
    chosen: dict[str, _Hierarchy] = {}
    for ctrl in ("memory", "pids", "cpu", "freezer"):
        if v2 is not None and ctrl in v2.controllers:
            chosen[ctrl] = v2
            continue
        v1 = next((h for h in hierarchies if h.version == 1 and ctrl in h.controllers), None)
        if v1 is not None:
            chosen[ctrl] = v1
    return chosen, v2


def available() -> str | None:
    try:
        chosen, _ = _plan()
    except OSError as exc:
        return f"cannot read the cgroup mounts: {exc.strerror}"
    missing = [c for c in ("memory", "pids") if c not in chosen]
    if missing:
        return (
            f"no usable cgroup controller for {', '.join(missing)} (mount cgroup2 with "
            "them enabled, or the v1 hierarchies)"
        )
    read_only = sorted({h.mount for h in chosen.values() if h.read_only})
    if read_only:
        # Said here, before the first launch fails on it: a container's engine mounts
        # cgroups read-only unless given a writable (delegated) one.
        return (
            f"the cgroup hierarchy is mounted read-only at {', '.join(read_only)}: the jails "
            "cannot get cgroups of their own (in a container: docs/containers.md, cgroups)"
        )
    if os.geteuid() != 0:
        return "creating cgroups needs root"
    return None


def swap_accounted() -> bool:
    """Whether the memory controller can keep swap out of an instance's reach (v2
    ``memory.swap.max``, v1 ``memory.memsw.*``, both absent without swap accounting)."""
    try:
        chosen, _ = _plan()
    except OSError:
        return False
    mem = chosen.get("memory")
    if mem is None:
        return False
    name = "memory.swap.max" if mem.version == 2 else "memory.memsw.limit_in_bytes"
    return os.path.exists(os.path.join(mem.own, name))


class Cgroup:
    def __init__(self, name: str, dirs: dict[str, str], v2_dir: str | None, limits: Limits):
        self.name = name
        self._dirs = dirs  # controller -> directory
        self._v2 = v2_dir
        self.limits = limits
        self.paths = tuple(sorted({*dirs.values(), *([v2_dir] if v2_dir else [])}))
        self.procs_files = tuple(os.path.join(d, "cgroup.procs") for d in self.paths)

    def add(self, pid: int) -> None:
        for path in self.procs_files:
            _write(path, str(pid))

    def pids(self) -> set[int]:
        out: set[int] = set()
        for path in self.procs_files:
            with contextlib.suppress(FileNotFoundError):
                out.update(int(p) for p in _read(path).split())
        return out

    def kill(self) -> None:
        """Kill everything inside. cgroup.kill (v2) is atomic; elsewhere freeze first so
        nothing can fork between our reading the list and our signals landing."""
        deadline = time.monotonic() + KILL_DEADLINE
        kill_file = os.path.join(self._v2, "cgroup.kill") if self._v2 else None
        while True:
            pids = self.pids()
            if not pids:
                return
            if kill_file and os.path.exists(kill_file):
                with contextlib.suppress(FileNotFoundError):
                    _write(kill_file, "1")
            else:
                freezer = self._dirs.get("freezer")
                state = os.path.join(freezer, "freezer.state") if freezer else None
                if state:
                    with contextlib.suppress(OSError):
                        _write(state, "FROZEN")
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                if state:
                    with contextlib.suppress(OSError):
                        _write(state, "THAWED")
            if time.monotonic() > deadline:
                raise CgroupError(f"cgroup {self.name}: processes survive SIGKILL: {sorted(pids)}")
            time.sleep(0.005)

    def died_of(self) -> str | None:
        mem = self._dirs.get("memory")
        if mem is not None:
            events = _counters(os.path.join(mem, "memory.events"))
            events.update(_counters(os.path.join(mem, "memory.oom_control")))
            if events.get("oom_kill", 0) > 0:
                return (
                    f"memory limit ({self.limits.memory_bytes // 2**20} MiB) exceeded: oom-killed"
                )
        pids_dir = self._dirs.get("pids")
        if (
            pids_dir is not None
            and _counters(os.path.join(pids_dir, "pids.events")).get("max", 0) > 0
        ):
            return f"process limit ({self.limits.pids}) reached"
        return None

    def memory_peak(self) -> int | None:
        mem = self._dirs.get("memory")
        if mem is None:
            return None
        for name in ("memory.peak", "memory.max_usage_in_bytes"):
            with contextlib.suppress(OSError, ValueError):
                return int(_read(os.path.join(mem, name)))
        return None

    def remove(self) -> None:
        with contextlib.suppress(CgroupError):
            self.kill()
        for path in self.paths:
            _rmdir(path)


def _counters(path: str) -> dict[str, int]:
    out: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in _read(path).splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1].isdigit():
                out[parts[0]] = int(parts[1])
    return out


def _rmdir(path: str) -> None:
    # A cgroup whose last process just died may stay busy for a moment.
    for _ in range(200):
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY:
                raise
            time.sleep(0.005)
    os.rmdir(path)


class CgroupManager:
    def __init__(self, parent: str = PARENT) -> None:
        if parent != PARENT:
            raise ValueError("the cgroup parent is fixed: reconcile must find it again")
        self._chosen, self._v2 = _plan()
        self._prepared = False

    def _prepare(self) -> None:
        if self._prepared:
            return
        for h in {*self._chosen.values(), *([self._v2] if self._v2 else [])}:
            os.makedirs(h.parent, exist_ok=True)
        if self._v2 is not None:
            wanted = [c for c, h in self._chosen.items() if h is self._v2]
            for directory in (self._v2.own, self._v2.parent):
                for ctrl in wanted:
                    try:
                        _write(os.path.join(directory, "cgroup.subtree_control"), f"+{ctrl}")
                    except OSError as exc:
                        raise CgroupError(
                            f"cannot enable the {ctrl} controller in {directory}: "
                            f"{exc.strerror} (a delegated cgroup must have no processes "
                            "of its own: run the gateway in a leaf cgroup)"
                        ) from exc
        self._prepared = True

    def create(self, name: str, limits: Limits) -> Cgroup:
        if not NAME.match(name):
            raise CgroupError(f"invalid cgroup name {name!r}: a-z, 0-9 and '-', at most 64")
        self._prepare()
        dirs: dict[str, str] = {}
        made: list[str] = []
        try:
            targets = {h.parent for h in self._chosen.values()}
            if self._v2 is not None:
                targets.add(self._v2.parent)
            for parent in sorted(targets):
                path = os.path.join(parent, name)
                os.mkdir(path)
                made.append(path)
            for ctrl, h in self._chosen.items():
                dirs[ctrl] = os.path.join(h.parent, name)
            v2_dir = os.path.join(self._v2.parent, name) if self._v2 else None
            cg = Cgroup(name, dirs, v2_dir, limits)
            self._limit(cg, limits)
            return cg
        except OSError as exc:
            for path in reversed(made):
                with contextlib.suppress(OSError):
                    os.rmdir(path)
            raise CgroupError(f"cannot create cgroup {name}: {exc}") from exc

    def set_limits(self, cg: Cgroup, limits: Limits) -> None:
        """Change the limits of a cgroup (a pooled one, given the server's own)."""
        self._limit(cg, limits)
        cg.limits = limits

    def _limit(self, cg: Cgroup, limits: Limits) -> None:
        mem = self._chosen["memory"]
        mdir = cg._dirs["memory"]
        if mem.version == 2:
            _write(os.path.join(mdir, "memory.max"), str(limits.memory_bytes))
            # Without this the limit only moves the excess to swap.
            swap = os.path.join(mdir, "memory.swap.max")
            if os.path.exists(swap):
                _write(swap, "0")
        else:
            # v1 keeps memsw >= limit at every step: raise memsw first, lower it last.
            limit = os.path.join(mdir, "memory.limit_in_bytes")
            memsw = os.path.join(mdir, "memory.memsw.limit_in_bytes")
            files = [limit, memsw] if os.path.exists(memsw) else [limit]
            current = int(_read(limit))
            for path in files if limits.memory_bytes <= current else files[::-1]:
                _write(path, str(limits.memory_bytes))
            with contextlib.suppress(OSError):
                _write(os.path.join(mdir, "memory.swappiness"), "0")
        _write(os.path.join(cg._dirs["pids"], "pids.max"), str(limits.pids))
        cpu = self._chosen.get("cpu")
        if cpu is not None:
            cdir = cg._dirs["cpu"]
            if cpu.version == 2:
                _write(os.path.join(cdir, "cpu.weight"), str(limits.cpu_weight))
            else:
                shares = max(2, limits.cpu_weight * 1024 // 100)
                _write(os.path.join(cdir, "cpu.shares"), str(shares))

    def close(self) -> None:
        """At a clean shutdown: remove our parent directories if no instance is left."""
        for h in {*self._chosen.values(), *([self._v2] if self._v2 else [])}:
            with contextlib.suppress(OSError):
                os.rmdir(h.parent)  # fails while an instance cgroup remains: fine
        self._prepared = False

    def reconcile(self) -> list[str]:
        """Kill and remove every instance cgroup a crashed earlier run left behind."""
        names: set[str] = set()
        hierarchies = {*self._chosen.values(), *([self._v2] if self._v2 else [])}
        for h in hierarchies:
            if os.path.isdir(h.parent):
                names.update(e.name for e in os.scandir(h.parent) if e.is_dir())
        for name in sorted(names):
            dirs = {c: os.path.join(h.parent, name) for c, h in self._chosen.items()}
            v2_dir = os.path.join(self._v2.parent, name) if self._v2 else None
            Cgroup(name, dirs, v2_dir, Limits()).remove()
        return sorted(names)
