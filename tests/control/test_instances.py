"""Instance status, from the supervisor to the service layer: real child processes (the
``mcp-server-time`` MCP server, run unjailed by the PlainLauncher: this is about what the
gateway reports, not isolation), a real supervisor and a real migrated store.

What must hold:
- the supervisor reports each instance's state — running, starting, idle (no process;
  the next call starts one), crashed (with its last error) — its restarts, memory and
  last use (wall-clock), and keeps an instance the reaper stopped as idle (or crashed)
  until it is used again, while one retired by a change is forgotten;
- a failed start's status carries only the reference; the cause is on the log's line
  with that reference;
- memory is the instance cgroup's figure when there is one, and None for a process that
  is in no instance cgroup (an unjailed one);
- the service layer shows a user the instances of their own profiles only, and an
  administrator all of them; another user's server, profile or instance is not found,
  in the words a missing one gets.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from gigmcp.control import instances, profiles, servers
from gigmcp.control.actor import Actor
from gigmcp.core.instances import InstanceKey, InstanceView
from gigmcp.core.views import ServerDef
from gigmcp.errors import NotFound
from gigmcp.sandbox.cgroups import PARENT
from gigmcp.supervisor.launcher import PlainLauncher
from gigmcp.supervisor.logs import tail
from gigmcp.supervisor.supervisor import Supervisor, cgroup_memory
from gigmcp.upstream.types import InstanceUnavailable
from tests.support.gateway import TIME
from tests.support.supervisor import Peer

WAIT = 20.0


def server(name: str, command: tuple[str, ...] = TIME) -> ServerDef:
    return ServerDef(0, name, 0, command)


def view(sup: Supervisor, key: InstanceKey) -> InstanceView:
    (found,) = [v for v in sup.status() if v.key == key]
    return found


async def until(check: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for: {what}")
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def supervisor(logs: Path, **kw: object) -> AsyncIterator[Supervisor]:
    sup = Supervisor(PlainLauncher(), Peer(), logs_dir=logs, **kw)  # type: ignore[arg-type]
    try:
        yield sup
    finally:
        await sup.shutdown()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def near_now(at: datetime | None) -> bool:
    return (
        at is not None
        and at.tzinfo is not None
        and abs(datetime.now(UTC) - at) < timedelta(seconds=WAIT)
    )


# --- the supervisor's status ---------------------------------------------------------------


async def test_a_running_instance_reports_its_process_start_and_last_use(tmp_path: Path) -> None:
    async with supervisor(tmp_path / "logs") as sup:
        key = InstanceKey(1, "clock")
        await sup.get(key, server("clock"))
        v = view(sup, key)
        assert v.state == "running"
        assert v.pid is not None and alive(v.pid)
        assert v.restarts == 0 and v.last_error is None
        assert near_now(v.started_at) and near_now(v.last_used)
        # Unjailed, the process is in no instance cgroup: its cgroup's figure would be
        # the gateway's (or the test runner's), so none is reported.
        assert v.memory_bytes is None
        first_use = v.last_used
        await asyncio.sleep(0.05)
        await sup.get(key, server("clock"))
        later = view(sup, key).last_used
        assert first_use is not None and later is not None and later > first_use


async def test_a_crash_while_in_use_is_restarted_and_its_error_kept(tmp_path: Path) -> None:
    async with supervisor(tmp_path / "logs", restart_backoff=(0.05, 0.1)) as sup:
        key = InstanceKey(1, "clock")
        await sup.get(key, server("clock"))
        first = view(sup, key).pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        await until(
            lambda: view(sup, key).state == "running" and view(sup, key).pid != first,
            "the restarted instance",
        )
        v = view(sup, key)
        assert v.restarts == 1
        # Running again, and still saying why it had to be restarted.
        assert v.last_error == "killed by signal 9"


async def test_a_failed_start_is_crashed_with_a_reference_to_its_log_line(
    tmp_path: Path,
) -> None:
    logs = tmp_path / "logs"
    # Starts once, then refuses to: the restart after the crash fails.
    flag = tmp_path / "started-once"
    once = (
        "/bin/sh",
        "-c",
        f'if [ -e "{flag}" ]; then echo "cannot start twice" >&2; exit 3; fi; '
        f'touch "{flag}"; exec "{TIME[0]}"',
    )
    async with supervisor(logs, restart_backoff=(0.05, 0.1)) as sup:
        key = InstanceKey(7, "once")
        await sup.get(key, server("once", once))
        pid = view(sup, key).pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        await until(
            lambda: (view(sup, key).last_error or "").startswith("start failed"),
            "the failed restart",
        )
        v = view(sup, key)
        assert v.state == "crashed" and v.pid is None and v.memory_bytes is None
        assert v.restarts == 1
        ref = v.last_error.removeprefix("start failed (ref ").removesuffix(")")  # type: ignore[union-attr]
        assert len(ref) == 8
        # The status names the reference only; the log has the cause on its line.
        lines = tail(logs, 7, "once", 100)
        assert any(f"start failed (ref {ref})" in line for line in lines), lines
        assert any("cannot start twice" in line for line in lines), lines
        # A first use that cannot start at all is crashed too, and its caller told so.
        bad = InstanceKey(7, "never")
        with pytest.raises(InstanceUnavailable):
            await sup.get(bad, server("never", ("/bin/sh", "-c", "exit 4")))
        assert view(sup, bad).state == "crashed"
        assert (view(sup, bad).last_error or "").startswith("start failed (ref ")


async def test_an_instance_stopped_for_idling_is_reported_idle_until_used_again(
    tmp_path: Path,
) -> None:
    async with supervisor(tmp_path / "logs", idle_timeout=0.3) as sup:
        key = InstanceKey(2, "clock")
        await sup.get(key, server("clock"))
        pid = view(sup, key).pid
        assert pid is not None
        await until(lambda: view(sup, key).state == "idle", "the idle reaper")
        v = view(sup, key)
        assert v.pid is None and v.memory_bytes is None
        assert near_now(v.last_used) and near_now(v.started_at)
        await until(lambda: not alive(pid), "the idle process to end")
        await sup.get(key, server("clock"))
        again = view(sup, key)
        assert again.state == "running" and again.pid not in (None, pid)
        assert again.restarts == 0  # a start after idling is no restart


async def test_an_instance_retired_by_a_change_is_forgotten(tmp_path: Path) -> None:
    async with supervisor(tmp_path / "logs") as sup:
        keep, retire = InstanceKey(3, "keep"), InstanceKey(3, "retire")
        await sup.get(keep, server("keep"))
        await sup.get(retire, server("retire"))
        await sup.stop(retire)
        assert [v.key for v in sup.status()] == [keep]


async def test_status_can_be_read_from_a_worker_thread(tmp_path: Path) -> None:
    """The control plane's routes run in worker threads and read the snapshot there."""
    async with supervisor(tmp_path / "logs") as sup:
        keys = [InstanceKey(4, f"clock-{n}") for n in range(3)]
        await asyncio.gather(*(sup.get(k, server(k.server_name)) for k in keys))
        seen = await asyncio.to_thread(sup.status)
        assert [v.key for v in seen] == keys
        assert {v.state for v in seen} == {"running"}


# --- memory from the instance's cgroup ---------------------------------------------------


def _memory_hierarchy() -> tuple[Path, str] | str:
    """Where this process may make a cgroup with the memory controller, and the file
    that reports its charge; or why it may not (the test then says so)."""
    if os.geteuid() != 0:
        return "making a cgroup needs root"
    try:
        own = dict(
            (line.split(":", 2)[1], line.split(":", 2)[2])
            for line in Path("/proc/self/cgroup").read_text().splitlines()
        )
        mounts = [line.split() for line in Path("/proc/self/mounts").read_text().splitlines()]
    except OSError as exc:
        return f"cannot read this process's cgroups: {exc}"
    for m in mounts:
        if m[2] == "cgroup" and "memory" in m[3].split(",") and "memory" in own:
            base = Path(m[1]) / own["memory"].lstrip("/")
            if os.access(base, os.W_OK):
                return base, "memory.usage_in_bytes"
    for m in mounts:
        if m[2] == "cgroup2" and "" in own:
            base = Path(m[1]) / own[""].lstrip("/")
            subtree = base / "cgroup.subtree_control"
            if subtree.exists() and "memory" in subtree.read_text().split():
                return base, "memory.current"
    return "no cgroup hierarchy with the memory controller that this process may write"


def make_instance_cgroup(base: Path) -> list[Path]:
    """A cgroup laid out as the sandbox lays out an instance's (``…/gigmcp/<name>``), in
    a folder of this test's own beside the sandbox's, so that neither touches the other:
    the folders made, outermost first (the last is the instance's)."""
    top = base / f"gigmcp-status-test-{os.getpid()}"
    made: list[Path] = []
    try:
        for path in (top, top / PARENT, top / PARENT / "jail-status-1"):
            path.mkdir()
            made.append(path)
            subtree = path / "cgroup.subtree_control"
            if path.name != "jail-status-1" and subtree.exists():
                subtree.write_text("+memory")  # v2: hand the controller down
    except OSError:
        remove_cgroups(made)
        raise
    return made


def remove_cgroups(made: list[Path]) -> None:
    for path in reversed(made):
        for _ in range(100):  # a cgroup whose last process just died may stay busy
            try:
                path.rmdir()
                break
            except OSError:
                time.sleep(0.02)


async def test_memory_is_read_from_the_instances_cgroup(tmp_path: Path) -> None:
    assert cgroup_memory(os.getpid()) is None  # the test runner is in no instance cgroup
    assert cgroup_memory(2**22 + 12345) is None  # no such process
    found = _memory_hierarchy()
    if isinstance(found, str):
        pytest.skip(f"memory from a cgroup not tested here: {found}")
    try:
        made = make_instance_cgroup(found[0])
    except OSError as exc:
        pytest.skip(f"memory from a cgroup not tested here: cannot make one ({exc})")
    try:
        # The server moves itself into the cgroup before it execs, as a jail's first
        # process is born in its cgroup: everything it allocates is charged there.
        joined = ("/bin/sh", "-c", f'echo $$ > "{made[-1]}/cgroup.procs" && exec "{TIME[0]}"')
        async with supervisor(tmp_path / "logs") as sup:
            key = InstanceKey(5, "measured")
            await sup.get(key, server("measured", joined))
            v = view(sup, key)
            assert v.state == "running"
            assert v.memory_bytes is not None and v.memory_bytes > 1024 * 1024, v
    finally:
        remove_cgroups(made)


# --- the service layer: who sees which instance ----------------------------------------


def _profile_id(engine: Engine, slug: str) -> int:
    from gigmcp.store.models import Profile

    with Session(engine) as s:
        return s.scalars(select(Profile.id).where(Profile.slug == slug)).one()


async def test_each_actor_sees_the_instances_of_their_own_profiles_only(
    engine: Engine, admin: Actor, alice: Actor, bob: Actor, tmp_path: Path
) -> None:
    servers.add_server(engine, admin, "clock", list(TIME), {}, [], None)
    servers.add_server(engine, alice, "alices", list(TIME), {}, [], None)
    profiles.create_profile(engine, alice, "alice-p")
    profiles.create_profile(engine, bob, "bob-p")
    profiles.assign(engine, alice, "alice-p", "clock", True)
    profiles.assign(engine, alice, "alice-p", "alices", True)
    profiles.assign(engine, bob, "bob-p", "clock", True)
    alice_p = _profile_id(engine, "alice-p")
    async with supervisor(tmp_path / "logs") as sup:
        await sup.get(InstanceKey(alice_p, "clock"), server("clock"))
        await sup.get(InstanceKey(alice_p, "alices"), server("alices"))
        # An instance whose profile is gone (being retired) is nobody's to see.
        await sup.get(InstanceKey(999, "clock"), server("clock"))
        snapshot = sup.status()

        def seen(who: Actor, name: str | None = None) -> list[tuple[str, str, str]]:
            return [
                (i.server, i.profile, i.state)
                for i in instances.visible(engine, who, snapshot, name)
            ]

        assert seen(alice) == [
            ("alices", "alice-p", "running"),
            ("clock", "alice-p", "running"),
        ]
        # Bob's assignment has not run: idle, its first call starts it.
        assert seen(bob) == [("clock", "bob-p", "idle")]
        assert seen(admin) == [
            ("alices", "alice-p", "running"),
            ("clock", "alice-p", "running"),
            ("clock", "bob-p", "idle"),
        ]
        assert seen(bob, "clock") == [("clock", "bob-p", "idle")]
        running = instances.find(engine, alice, snapshot, "clock", "alice-p")
        assert running.memory_bytes is None and near_now(running.last_used)

        # Another user's private server, and another user's instance of a shared one,
        # read exactly as a missing server or profile does.
        def refused(call: Callable[[], object]) -> str:
            with pytest.raises(NotFound) as caught:
                call()
            return str(caught.value)

        assert refused(lambda: instances.of_server(engine, bob, snapshot, "alices")) == refused(
            lambda: instances.of_server(engine, bob, snapshot, "alices-not")
        ).replace("alices-not", "alices")
        assert refused(
            lambda: instances.find(engine, bob, snapshot, "clock", "alice-p")
        ) == refused(lambda: instances.find(engine, bob, snapshot, "clock", "no-such")).replace(
            "no-such", "alice-p"
        )
        assert [
            i.profile for i in instances.of_server(engine, admin, snapshot, "alices").instances
        ] == ["alice-p"]
        # Without a supervisor there is no instance at all.
        assert instances.visible(engine, admin, None) == []
