"""Instance cgroups: limits in place before anything runs, limits that kill alone and say
so, kill() that reaches every descendant, and nothing left behind — also after a crash."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gigmcp.sandbox import cgroups

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(cgroups.available() is not None, reason=str(cgroups.available())),
]


@pytest.fixture
def manager() -> Iterator[cgroups.CgroupManager]:
    m = cgroups.CgroupManager()
    try:
        yield m
    finally:
        m.reconcile()  # whatever a failed test left


def _paused_child(code: str) -> subprocess.Popen[bytes]:
    """A child that waits for a byte on stdin before doing anything, so the test can put
    it in the cgroup first (as the launcher does with bwrap's --block-fd)."""
    return subprocess.Popen(
        ["/usr/bin/python3", "-c", "import sys; sys.stdin.read(1)\n" + code],
        stdin=subprocess.PIPE,
    )


def _go(proc: subprocess.Popen[bytes]) -> None:
    assert proc.stdin is not None
    proc.stdin.write(b"x")
    proc.stdin.close()


def test_limits_are_written_before_anything_joins(manager: cgroups.CgroupManager) -> None:
    cg = manager.create(
        "limits-test", cgroups.Limits(memory_bytes=96 << 20, pids=40, cpu_weight=50)
    )
    try:
        values = {}
        for path in cg.paths:
            for name in (
                "memory.max",
                "memory.limit_in_bytes",
                "pids.max",
                "cpu.weight",
                "cpu.shares",
            ):
                if os.path.exists(os.path.join(path, name)):
                    values[name] = Path(path, name).read_text().strip()
        assert values.get("memory.max", values.get("memory.limit_in_bytes")) == str(96 << 20)
        assert values["pids.max"] == "40"
        assert values.get("cpu.weight", values.get("cpu.shares")) in {"50", str(50 * 1024 // 100)}
        assert cg.pids() == set()
    finally:
        cg.remove()
    assert not any(os.path.exists(p) for p in cg.paths)


def test_attack_memory_hog_is_oom_killed_alone(manager: cgroups.CgroupManager) -> None:
    cg = manager.create("hog-test", cgroups.Limits(memory_bytes=64 << 20))
    child = _paused_child("x = bytearray(300 << 20)\nfor i in range(0, len(x), 4096): x[i] = 1")
    try:
        cg.add(child.pid)
        _go(child)
        assert child.wait(30) == -9
        assert cg.died_of() == "memory limit (64 MiB) exceeded: oom-killed"
        assert (cg.memory_peak() or 0) <= 64 << 20
    finally:
        child.kill()
        cg.remove()


def test_attack_fork_bomb_hits_the_pid_limit(manager: cgroups.CgroupManager) -> None:
    cg = manager.create("bomb-test", cgroups.Limits(pids=16))
    child = _paused_child(
        "import os, time\nend = time.monotonic() + 2\nfails = 0\n"
        "while time.monotonic() < end:\n"
        "    try:\n        pid = os.fork()\n    except OSError:\n        fails += 1\n        continue\n"
        "    if pid == 0:\n        time.sleep(30)\n        os._exit(0)\n"
        "print(fails, flush=True)\ntime.sleep(30)\n"
    )
    try:
        cg.add(child.pid)
        _go(child)
        time.sleep(2.5)
        assert 1 < len(cg.pids()) <= 16
        assert cg.died_of() == "process limit (16) reached"
        cg.kill()
        assert cg.pids() == set()
    finally:
        child.kill()
        child.wait()
        cg.remove()


def test_kill_reaches_every_descendant_even_a_new_session(manager: cgroups.CgroupManager) -> None:
    cg = manager.create("tree-test", cgroups.Limits())
    child = _paused_child(
        "import os, subprocess, time\n"
        "subprocess.Popen(['/usr/bin/python3', '-c', "
        '\'import os, subprocess, time; os.setsid(); subprocess.Popen(["sleep", "60"]); time.sleep(60)\'])\n'
        "time.sleep(60)\n"
    )
    try:
        cg.add(child.pid)
        _go(child)
        deadline = time.monotonic() + 10
        while len(cg.pids()) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        tree = cg.pids()
        assert len(tree) >= 3
        cg.kill()
        assert cg.pids() == set()
        child.wait(5)
        time.sleep(0.1)
        assert not [p for p in tree if os.path.exists(f"/proc/{p}") and _state(p) != "Z"]
    finally:
        child.kill()
        cg.remove()


def _state(pid: int) -> str:
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def test_remove_is_idempotent_and_leaves_no_directory(manager: cgroups.CgroupManager) -> None:
    cg = manager.create("idem-test", cgroups.Limits())
    cg.remove()
    cg.remove()
    assert not any(os.path.exists(p) for p in cg.paths)


def test_reconcile_kills_and_removes_what_a_crashed_run_left(
    manager: cgroups.CgroupManager,
) -> None:
    cg = manager.create("crashed-run", cgroups.Limits())
    child = subprocess.Popen(["sleep", "60"])
    cg.add(child.pid)
    # A new manager, as a restarted gateway would make.
    removed = cgroups.CgroupManager().reconcile()
    assert "crashed-run" in removed
    assert child.wait(5) == -9
    assert not any(os.path.exists(p) for p in cg.paths)


@pytest.mark.parametrize("name", ["", "UPPER", "../escape", "a/b", "x" * 65, "-lead"])
def test_invalid_names_are_refused(manager: cgroups.CgroupManager, name: str) -> None:
    with pytest.raises(cgroups.CgroupError, match="invalid cgroup name"):
        manager.create(name, cgroups.Limits())
