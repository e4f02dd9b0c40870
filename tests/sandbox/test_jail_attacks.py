"""Attacks from inside the jail, each asserted to fail. A hostile "server" (hostile/
attack.py) runs through the real SandboxLauncher — bwrap, its own network namespace,
cgroup, seccomp — and reports what happened; cases the filter kills die with SIGSYS.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from gigmcp.core.instances import InstanceKey
from gigmcp.core.launch import JailLimits, LaunchedProcess, LaunchSpec
from gigmcp.sandbox.launcher import SandboxConfig, SandboxLauncher
from tests.support.sandbox_network import listener, outside_namespace

pytestmark = pytest.mark.root

ATTACK = str(Path(__file__).parent / "hostile" / "attack.py")
PY = "/usr/bin/python3"
CANARY = "gig-canary-4f1c9e"
PROXY_PORT = 3128
SIGSYS_EXIT = 128 + signal.SIGSYS  # bwrap's pid 1 reports a child killed by a signal so


@pytest.fixture(params=["root", "userns"])
async def launcher(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[SandboxLauncher]:
    """Every attack runs against both modes: the jail is the same, its namespaces are
    built differently (userns mode: bwrap runs inside the holder's user namespace)."""
    # A secret in the gateway's own environment must never reach a jail.
    monkeypatch.setenv("GIG_TEST_SECRET", CANARY)
    config = SandboxConfig(subnet="10.213.0.0/24", pool_size=0, mode=request.param)
    sandbox = SandboxLauncher(config)
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


@pytest.fixture
def host_secrets() -> Iterator[Path]:
    """The gateway's database and master key, with a canary inside, readable by anyone:
    only the jail's view of the filesystem can keep them out. Not under /tmp, which the
    jail covers with its own tmpfs (a canary there would prove nothing)."""
    folder = Path(tempfile.mkdtemp(prefix="gigmcp-canary-", dir="/var/lib"))
    try:
        folder.chmod(0o755)
        for name in ("gigmcp.db", "master.key"):
            (folder / name).write_text(CANARY)
            (folder / name).chmod(0o644)
        yield folder
    finally:
        shutil.rmtree(folder)


async def test_attack_read_host_files(launcher: SandboxLauncher, host_secrets: Path) -> None:
    db, key = host_secrets / "gigmcp.db", host_secrets / "master.key"
    assert CANARY in db.read_text(), "control: the canary is there for the reading"
    paths = [str(db), str(key), "/etc/shadow", "/root/.bashrc", "/work/main/pyproject.toml"]
    code, result = await attack(launcher, "find", CANARY, *paths, "/proc/*/environ")
    assert code == 0 and result is not None
    for path in paths:
        assert result[path] == "ENOENT", (path, result[path])
    # /proc inside is the jail's own: its processes' environments, never the host's.
    environs = {p: r for p, r in result.items() if p.startswith("/proc/")}
    assert environs and "found" not in environs.values(), environs
    numbered = sorted(p.split("/")[2] for p in environs if p.split("/")[2].isdigit())
    assert numbered == ["1", "2"], environs  # the jail's init and the server: no host pid


async def test_attack_read_another_instances_files(launcher: SandboxLauncher) -> None:
    first = await start(launcher, "write_file_then_wait", "/tmp/instance-a", name="victim")
    try:
        line = await asyncio.wait_for(first.stdout.readline(), 20)
        assert json.loads(line) == {"written": "/tmp/instance-a"}
        # Through /tmp, or through any process's root or cwd that /proc shows.
        code, result = await attack(
            launcher,
            "find",
            "instance secret",
            "/tmp/instance-a",
            "/proc/*/root/tmp/instance-a",
            "/proc/*/cwd/tmp/instance-a",
        )
        assert code == 0 and result is not None
        assert "found" not in result.values() and "absent" not in result.values(), result
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
    # Another sandbox, with a service that answers (it proves so to itself).
    victim = await start(launcher, "listen_then_wait", "4000", name="victim")
    try:
        ready = json.loads(await asyncio.wait_for(victim.stdout.readline(), 20))
        other = next(
            i for i in launcher.identities.snapshot().values() if i.server_name == "victim"
        )
        assert ready == {"listening": other.sandbox_ip, "self": "pong"}
        with (
            listener(other.host_ip, PROXY_PORT) as seen,
            listener(other.host_ip, 8080, "udp") as useen,
        ):
            for host, port, proto in (
                (other.host_ip, PROXY_PORT, "tcp"),  # another sandbox's proxy address
                (other.sandbox_ip, 4000, "tcp"),  # another sandbox's own service
                (other.host_ip, 8080, "udp"),
            ):
                _code, r = await attack(launcher, "connect", host, str(port), proto)
                assert r is not None and r["result"] != "succeeded", (host, port, proto)
        assert seen == [] and useen == []
    finally:
        victim.kill()
        await victim.wait()
        await victim.cleanup()


async def test_attack_reach_a_server_outside_with_the_host_forwarding(
    launcher: SandboxLauncher,
) -> None:
    # A listener in a namespace of the test's own, routed from the host, and the host set
    # to forward for every new interface: only the walls stand between.
    default = Path("/proc/sys/net/ipv4/conf/default/forwarding")
    before = default.read_text()
    with outside_namespace() as outside:
        Path("/proc/sys/net/ipv4/conf/gmtout0/forwarding").write_text("1")
        server = subprocess.Popen(
            ["ip", "netns", "exec", outside, PY, "-c", TCP_PONG, "10.250.9.2"],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert server.stdout is not None and server.stdout.readline().strip() == "up"
            assert _connect_from_host("10.250.9.2", 4443) == b"pong", "control: it answers"
            default.write_text("1")
            try:
                _code, r = await attack(launcher, "connect", "10.250.9.2", "4443", "tcp")
            finally:
                default.write_text(before)
            assert r is not None and r["result"] != "succeeded", r
        finally:
            server.kill()
            server.wait()


TCP_PONG = (
    "import socket,sys;s=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);"
    "s.bind((sys.argv[1],4443));s.listen();print('up',flush=True)\n"
    "while True:\n c,_=s.accept();c.recv(16);c.sendall(b'pong');c.close()"
)


def _connect_from_host(host: str, port: int) -> bytes:
    with socket.create_connection((host, port), timeout=2) as c:
        c.sendall(b"ping")
        return c.recv(16)


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
    proc = await start(launcher, "memory_hog", limits=JailLimits(memory_bytes=64 << 20))
    try:
        async with asyncio.timeout(30):
            code = await proc.wait()
        assert code != 0
        assert proc.exit_reason() == "memory limit (64 MiB) exceeded: oom-killed"
    finally:
        proc.kill()
        await proc.cleanup()


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
