"""Attacks from inside the jail, each asserted to fail. A hostile "server" (hostile/
attack.py) runs through the real SandboxLauncher — bwrap, its own network namespace,
cgroup, seccomp — and reports what happened; cases the filter kills die with SIGSYS.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gigmcp.sandbox.jail import JailLimits
from gigmcp.sandbox.launcher import SandboxConfig, SandboxLauncher
from gigmcp.supervisor.launcher import LaunchedProcess, LaunchSpec
from gigmcp.upstream.types import InstanceKey
from tests.sandbox.test_network import listener, outside_namespace

pytestmark = pytest.mark.root

ATTACK = str(Path(__file__).parent / "hostile" / "attack.py")
PY = "/usr/bin/python3"
CANARY = "gig-canary-4f1c9e"
PROXY_PORT = 3128
SIGSYS_EXIT = 128 + signal.SIGSYS  # bwrap's pid 1 reports a child killed by a signal so


@pytest.fixture
async def launcher(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[SandboxLauncher]:
    # A secret in the gateway's own environment must never reach a jail.
    monkeypatch.setenv("GIG_TEST_SECRET", CANARY)
    sandbox = SandboxLauncher(SandboxConfig(subnet="10.213.0.0/24", pool_size=0))
    await sandbox.start()
    try:
        yield sandbox
    finally:
        await sandbox.aclose()


async def start(
    sandbox: SandboxLauncher, *args: str, limits: JailLimits | None = None, name: str = "hostile"
) -> LaunchedProcess:
    spec = LaunchSpec(InstanceKey(1, name), (PY, ATTACK, *args), limits=limits)
    return await sandbox.launch(spec)


async def attack(
    sandbox: SandboxLauncher, *args: str, limits: JailLimits | None = None
) -> tuple[int, dict[str, Any] | None]:
    proc = await start(sandbox, *args, limits=limits)
    try:
        async with asyncio.timeout(30):
            out = await proc.stdout.read()
            code = await proc.wait()
    finally:
        proc.kill()
        await proc.wait()
        await proc.cleanup()
    lines = out.decode().strip().splitlines()
    return code, (json.loads(lines[-1]) if lines else None)


async def test_attack_read_host_files(launcher: SandboxLauncher, tmp_path: Path) -> None:
    db = tmp_path / "gigmcp.db"
    key = tmp_path / "master.key"
    db.write_text(CANARY)
    key.write_text(CANARY)
    paths = [
        str(db),
        str(key),
        "/etc/shadow",
        "/root/.bashrc",
        "/proc/1/environ",
        "/work/main/pyproject.toml",
    ]
    code, result = await attack(launcher, "read", *paths)
    assert code == 0 and result is not None
    for path in paths[:-2]:
        assert result[path] == "ENOENT", (path, result[path])
    # /proc/1 inside is the jail's own init, not the host's.
    assert result["/work/main/pyproject.toml"] == "ENOENT"


async def test_attack_read_another_instances_files(launcher: SandboxLauncher) -> None:
    first = await start(launcher, "write_file_then_wait", "/tmp/instance-a", name="victim")
    try:
        line = await asyncio.wait_for(first.stdout.readline(), 20)
        assert json.loads(line) == {"written": "/tmp/instance-a"}
        code, result = await attack(
            launcher, "read", "/tmp/instance-a", f"/proc/{first.pid}/root/tmp/instance-a"
        )
        assert code == 0 and result is not None
        assert set(result.values()) == {"ENOENT"}, result
    finally:
        first.kill()
        await first.wait()
        await first.cleanup()


async def test_attack_write_outside_the_tmpfs(launcher: SandboxLauncher) -> None:
    code, result = await attack(
        launcher,
        "write",
        "/usr/x",
        "/etc/passwd",
        "/x",
        "/work/x",
        "/dev/x",
        "/dev/null2",
        "/tmp/ok",
        "/home/sandbox/ok",
        "/dev/shm/ok",
    )
    assert code == 0 and result is not None
    for path in ("/tmp/ok", "/home/sandbox/ok", "/dev/shm/ok"):
        assert result[path] == "succeeded", (path, result[path])
    for path in ("/usr/x", "/etc/passwd", "/x", "/work/x", "/dev/x", "/dev/null2"):
        assert result[path] in {"EROFS", "EACCES", "ENOENT"}, (path, result[path])


@pytest.mark.parametrize(
    "call",
    [
        ("unshare", "0x10000000"),  # CLONE_NEWUSER
        ("unshare", "0x40000000"),  # CLONE_NEWNET
        ("setns", "0", "0"),
        ("mount", "0", "0", "0", "0", "0"),
        ("open_tree", "0", "0", "0"),
        ("fsopen", "0", "0"),
        ("ptrace", "0", "0", "0", "0"),  # PTRACE_TRACEME
        ("keyctl", "0", "0"),
        ("add_key", "0", "0", "0", "0", "0"),
        ("bpf", "0", "0", "0"),
        ("perf_event_open", "0", "0", "0", "0", "0"),
        ("userfaultfd", "0"),
        ("process_vm_readv", "1", "0", "0", "0", "0", "0"),
        ("chroot", "0"),
        ("pivot_root", "0", "0"),
        ("clone", "0x40000011"),  # CLONE_NEWNET | SIGCHLD
        ("kexec_load", "0", "0", "0", "0"),
        ("init_module", "0", "0", "0"),
    ],
    ids=lambda c: c[0] if isinstance(c, tuple) else str(c),
)
async def test_attack_escape_syscalls_are_killed(
    launcher: SandboxLauncher, call: tuple[str, ...]
) -> None:
    code, result = await attack(launcher, "syscall", *call)
    assert result is None, f"{call[0]} returned {result} instead of killing the process"
    assert code == SIGSYS_EXIT, f"{call[0]}: exit {code}"


async def test_attack_tiocsti_keystroke_injection_is_killed(launcher: SandboxLauncher) -> None:
    code, result = await attack(launcher, "tiocsti")
    assert result is None and code == SIGSYS_EXIT


async def test_attack_signal_or_see_host_processes(launcher: SandboxLauncher) -> None:
    code, result = await attack(launcher, "kill", str(os.getpid()))
    assert code == 0 and result == {"result": "ESRCH"}
    code, seen = await attack(launcher, "processes")
    assert code == 0 and seen is not None
    assert len(seen["pids"]) <= 3, seen["cmdlines"]  # bwrap's init and the server itself
    assert not any("pytest" in c for c in seen["cmdlines"].values())
    assert seen["uid"] == 65534 and seen["gid"] == 65534
    status = dict(line.split(":\t", 1) for line in seen["status"].splitlines() if ":\t" in line)
    for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(status[cap], 16) == 0, (cap, status[cap])
    assert status["NoNewPrivs"].strip() == "1"
    assert status["Seccomp"].strip() == "2"


async def test_attack_find_a_secret_in_the_environment(launcher: SandboxLauncher) -> None:
    code, result = await attack(launcher, "env")
    assert code == 0 and result is not None
    assert CANARY not in json.dumps(result)
    assert "GIG_TEST_SECRET" not in result["env"]
    assert result["env"]["HOME"] == "/home/sandbox"
    assert result["env"]["HTTPS_PROXY"].endswith(f":{PROXY_PORT}")
    assert set(result["env"]) <= {
        "PATH", "HOME", "TMPDIR", "LANG", "HTTP_PROXY", "HTTPS_PROXY", "http_proxy",
        "https_proxy", "NO_PROXY", "no_proxy", "NODE_USE_ENV_PROXY", "SSL_CERT_FILE",
        "NODE_EXTRA_CA_CERTS", "REQUESTS_CA_BUNDLE", "PWD",
    }  # fmt: skip
    # Nothing of the launcher leaks in as an open descriptor (3 is listdir's own).
    assert result["fds"] == ["0", "1", "2", "3"], result["fds"]


async def test_attack_sockets_of_other_families(launcher: SandboxLauncher) -> None:
    code, result = await attack(launcher, "sockets")
    assert code == 0 and result is not None
    # Refused by the filter before the kernel could even check CAP_NET_RAW.
    # (Raw type and ICMP protocol are both refused: whichever rule wins names it.)
    assert result["raw"] in ("ESOCKTNOSUPPORT", "EPROTONOSUPPORT")
    assert result["raw6"] in ("ESOCKTNOSUPPORT", "EPROTONOSUPPORT")
    assert result["ping"] == "EPROTONOSUPPORT"
    assert result["sctp"] == "EPROTONOSUPPORT"
    for fam in ("packet", "netlink", "vsock", "alg"):
        assert result[fam] == "EAFNOSUPPORT", (fam, result[fam])


async def test_attack_reach_the_host_other_sandboxes_or_outside(launcher: SandboxLauncher) -> None:
    # The gateway's API and other host services, on loopback and on every host address.
    with listener("127.0.0.1", 18181) as api_seen:
        _code, r = await attack(launcher, "connect", "127.0.0.1", "18181", "tcp")
        assert r == {"result": "ECONNREFUSED"}  # the jail's own loopback, empty
    assert api_seen == []
    victim = await start(launcher, "write_file_then_wait", "/tmp/x", name="victim")
    try:
        await asyncio.wait_for(victim.stdout.readline(), 20)
        other = next(
            i for i in launcher.identities.snapshot().values() if i.server_name == "victim"
        )
        with (
            listener(other.host_ip, PROXY_PORT) as seen,
            listener(other.host_ip, 8080, "udp") as useen,
        ):
            for host, port, proto in (
                (other.host_ip, PROXY_PORT, "tcp"),  # another sandbox's proxy address
                (other.sandbox_ip, 22, "tcp"),
                (other.host_ip, 8080, "udp"),
                ("::1", PROXY_PORT, "tcp"),
                ("fe80::1%eth0", PROXY_PORT, "tcp"),
            ):
                _code, r = await attack(launcher, "connect", host, str(port), proto)
                assert r is not None and r["result"] != "succeeded", (host, port, proto)
        assert seen == [] and useen == []
    finally:
        victim.kill()
        await victim.wait()
        await victim.cleanup()
    with outside_namespace():
        _code, r = await attack(launcher, "connect", "10.250.9.2", "4443", "tcp")
        assert r is not None and r["result"] != "succeeded"


async def test_a_jailed_server_reaches_the_proxy_named_in_its_environment(
    launcher: SandboxLauncher,
) -> None:
    """The positive side of the walls: the one way out, HTTPS_PROXY, is open."""
    with listener("0.0.0.0", PROXY_PORT) as seen:
        _code, r = await attack(launcher, "connect_proxy")
    assert r == {"result": "succeeded"}
    assert len(seen) == 1 and seen[0].startswith("10.213.0.")


async def test_attack_fill_the_tmpfs(launcher: SandboxLauncher) -> None:
    code, result = await attack(launcher, "fill_tmp", limits=JailLimits(tmp_bytes=8 << 20))
    assert code == 0 and result is not None
    assert result["error"] == "ENOSPC"
    assert result["written"] <= 8 << 20


async def test_attack_memory_hog_dies_alone_and_says_why(launcher: SandboxLauncher) -> None:
    t0 = time.monotonic()
    proc = await start(launcher, "memory_hog", limits=JailLimits(memory_bytes=64 << 20))
    try:
        async with asyncio.timeout(30):
            code = await proc.wait()
        assert code != 0
        assert proc.exit_reason() == "memory limit (64 MiB) exceeded: oom-killed"
    finally:
        proc.kill()
        await proc.cleanup()
    assert time.monotonic() - t0 < 20


async def test_attack_fork_bomb_is_contained_and_cleaned_up(launcher: SandboxLauncher) -> None:
    proc = await start(launcher, "fork_bomb", "2", limits=JailLimits(pids=32))
    cgroup = proc.cgroup  # type: ignore[attr-defined]
    try:
        first = json.loads(await asyncio.wait_for(proc.stdout.readline(), 20))
        assert first == {"started": True}
        done = json.loads(await asyncio.wait_for(proc.stdout.readline(), 20))
        assert done["fork_failures"] > 0
        assert len(cgroup.pids()) <= 32
        assert proc.exit_reason() is None  # still alive: pids hit the limit, forks failed
        assert cgroup.died_of() == "process limit (32) reached"
        # The gateway's loop was never starved.
        t = time.monotonic()
        await asyncio.sleep(0.01)
        assert time.monotonic() - t < 1
    finally:
        proc.kill()
        await proc.wait()
        await proc.cleanup()
    assert cgroup.pids() == set()
