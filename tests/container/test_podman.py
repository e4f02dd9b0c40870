"""The gateway image built and run for real with podman (opt-in: slow, root): a base image
made from the Debian mirror by mmdebstrap, the Dockerfile built FROM it, the image's
contents read from its mounted root file system, and a container started with
``--cap-add NET_ADMIN`` and only what ``ENGINE_NEEDS`` lists (plus what this host needs:
``host_quirks``, ``runtime``, and on cgroup v1 a delegated cgroup folder) whose gateway
jails a real MCP server and answers the official SDK client from the host through the
published port; doctor in the container; the image's health check.

Owns this end-to-end proof. The image is cached between runs by scripts/container-build
(tagged by a hash of everything the build reads), so a second run builds nothing. It
must never pull from a registry, and never leave a container, volume or cgroup folder
behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.gateway import GatewayProc, free_port
from tests.support.mcp_client import connect, text_of

pytestmark = [pytest.mark.slow, pytest.mark.root]

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "tests" / "servers" / "tiny.py"
# Exactly what the container gets beyond the engine's defaults (docs/containers.md says why,
# line by line): NET_ADMIN; seccomp = podman's default + sethostname/setdomainname; /proc
# unmasked (a new proc per jail; holders set their own netns's sysctls).
ENGINE_NEEDS = [
    "--cap-add", "NET_ADMIN",
    "--security-opt", f"seccomp={ROOT / 'deploy' / 'seccomp.json'}",
    "--security-opt", "unmask=/proc/*",
]  # fmt: skip
# Not the host tests' default (10.213.0.0/16): this gateway's sandboxes are its own.
SUBNET = "10.231.0.0/16"
COMPILER_PACKAGES = ("gcc", "g++", "cpp", "make", "build-essential", "libc6-dev", "python3-dev")
# The controllers the jail's cgroups use (sandbox/cgroups.py), for a cgroup v1 host.
V1_CONTROLLERS = ("memory", "pids", "cpu", "freezer")


def host_quirks() -> list[str]:
    """What this host, not the container, needs podman to be told (docs/containers.md,
    "Limits found"): runc where crun refuses hybrid cgroups, and rlimits no higher than
    the runtime's own where root lacks CAP_SYS_RESOURCE to raise them."""
    args: list[str] = []
    with open("/proc/self/status") as f:
        bounding = next(int(line.split()[1], 16) for line in f if line.startswith("CapBnd:"))
    if not bounding >> 24 & 1:  # CAP_SYS_RESOURCE
        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        nproc = min(resource.getrlimit(resource.RLIMIT_NPROC)[1], 32768)
        args += ["--ulimit", f"nofile={nofile}:{nofile}", "--ulimit", f"nproc={nproc}:{nproc}"]
    return args


def runtime() -> list[str]:
    """podman's global runtime choice: runc where crun refuses hybrid cgroups (as
    scripts/container-build chooses)."""
    hybrid = Path("/sys/fs/cgroup/unified/cgroup.controllers")
    if hybrid.exists() and hybrid.read_text().strip() and shutil.which("runc"):
        return ["--runtime", "runc"]
    return []


def cgroup_v1() -> bool:
    return not Path("/sys/fs/cgroup/cgroup.controllers").exists()


@contextlib.contextmanager
def delegated_cgroups(name: str) -> Iterator[list[str]]:
    """On a cgroup v1 host the engine mounts every hierarchy read-only: the operator
    delegates a folder per controller, bound over the container's view of it. On cgroup
    v2 (not tried here) the engine's own mount is made writable instead."""
    if not cgroup_v1():
        yield ["--cgroupns=private", "--security-opt", "unmask=/sys/fs/cgroup"]
        return
    folders = [Path("/sys/fs/cgroup") / c / name for c in V1_CONTROLLERS]
    for folder in folders:
        folder.mkdir()
    try:
        yield ["--cgroupns=private"] + [
            arg for f in folders for arg in ("-v", f"{f}:/sys/fs/cgroup/{f.parent.name}:rw")
        ]
    finally:
        for folder in folders:  # deepest first: cgroupfs removes empty folders one by one
            for sub in sorted(folder.rglob("*"), key=lambda p: len(p.parts), reverse=True):
                if sub.is_dir():
                    with contextlib.suppress(OSError):
                        sub.rmdir()
            with contextlib.suppress(OSError):
                folder.rmdir()


def missing_tools() -> str | None:
    for tool in ("podman", "mmdebstrap"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed: apt-get install podman crun uidmap mmdebstrap"
    return None


def podman(
    *args: str, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        ["podman", *runtime(), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"podman {' '.join(args)} failed ({result.returncode}): {result.stderr}"
        )
    return result


@pytest.fixture(scope="module")
def image() -> str:
    why = missing_tools()
    if why:
        pytest.skip(why)
    start = time.monotonic()
    built = subprocess.run(
        [str(ROOT / "scripts" / "container-build"), "--tag", "localhost/gigmcp:test"],
        capture_output=True, text=True, timeout=3600,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr[-4000:]
    tag = built.stdout.strip().splitlines()[-1]
    size = int(podman("image", "inspect", "--format", "{{.Size}}", tag).stdout)
    print(f"\nimage {tag}: {size / 1e6:.0f} MB, ready in {time.monotonic() - start:.1f} s")
    return tag


@dataclass
class Running:
    name: str
    port: int
    token: str
    started: float  # monotonic, just before `podman run`
    first_call_s: float = 0.0

    def exec(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return podman("exec", self.name, *args, check=check)


def key_file(folder: Path) -> Path:
    path = folder / "master.key"
    path.write_text(os.urandom(32).hex() + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def running(image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    tag = f"gigmcp-test-{os.getpid()}"
    key = key_file(tmp_path_factory.mktemp("secrets"))
    common = [
        *ENGINE_NEEDS,
        "-v", f"{tag}:/var/lib/gigmcp",
        "-v", f"{key}:/run/secrets/master_key:ro",
        "-v", f"{TINY}:/opt/servers/tiny.py:ro",
        "-e", "GIG_MASTER_KEY_FILE=/run/secrets/master_key",
        "-e", f"GIG_SANDBOX_SUBNET={SUBNET}",
    ]  # fmt: skip
    port = free_port()
    stack = contextlib.ExitStack()
    try:
        common = [*host_quirks(), *common, *stack.enter_context(delegated_cgroups(tag))]
        # The store, as an operator would make it: the image's own command line.
        setup = podman(
            "run", "--rm", *common, "--network", "none", "--entrypoint", "/bin/sh", image, "-c",
            "set -e; gigmcp server add tiny -- /usr/bin/python3 /opt/servers/tiny.py >&2; "
            "gigmcp profile create work >&2; gigmcp profile assign work tiny >&2; "
            "gigmcp token mint work --name host",
        )  # fmt: skip
        token = setup.stdout.strip().splitlines()[-1]
        started = time.monotonic()
        # slirp4netns: the container's own network namespace, published on loopback,
        # without the bridge's changes to the host (its firewall chains, ip_forward).
        podman(
            "run", "-d", "--name", tag, *common, "--network", "slirp4netns",
            "-p", f"127.0.0.1:{port}:8080", image,
        )  # fmt: skip
        yield Running(tag, port, token, started)
    finally:
        logs = podman("logs", tag, check=False)
        print(f"\n--- gateway log ({tag}) ---\n{logs.stdout}{logs.stderr}")
        podman("rm", "-f", "-t", "10", tag, check=False)
        podman("volume", "rm", "-f", tag, check=False)
        stack.close()


async def call_hello(run: Running, deadline_s: float = 120.0) -> str:
    gw = GatewayProc(Path("/nonexistent"), {}, port=run.port, tokens={"work": run.token})
    last: Exception | None = None
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            async with connect(gw, "work", "auto") as client:
                result = await client.call_tool("tiny_hello", {"name": "container"})
                return text_of(result)
        except Exception as exc:  # not up yet: the listener opens after start-up
            last = exc
            await asyncio.sleep(0.2)
    raise AssertionError(f"no answer from the container within {deadline_s} s: {last!r}")


def test_the_image_holds_the_wheel_and_no_compiler(image: str) -> None:
    mount = podman("image", "mount", image).stdout.strip()
    try:
        root = Path(mount)
        for binary in ("gcc", "cc", "g++", "c++", "cpp", "make", "ld"):
            assert not (root / "usr" / "bin" / binary).exists(), f"/usr/bin/{binary} in the image"
        status = (root / "var" / "lib" / "dpkg" / "status").read_text()
        installed = {
            block.split("\n", 1)[0].removeprefix("Package: ")
            for block in status.split("\n\n")
            if "Status: install ok installed" in block
        }
        assert not installed & set(COMPILER_PACKAGES), installed & set(COMPILER_PACKAGES)
        assert {"bubblewrap", "nftables", "iproute2", "tini", "python3"} <= installed
        site = root / "opt" / "gigmcp" / "lib" / "python3.11" / "site-packages"
        (dist,) = site.glob("gigmcp-*.dist-info")
        origin = json.loads((dist / "direct_url.json").read_text())
        assert origin["url"].startswith("file:///wheels/gigmcp-") and origin["url"].endswith(
            ".whl"
        ), origin
        assert not (root / "src").exists() and not (root / "wheels").exists()
        assert os.access(root / "usr" / "local" / "bin" / "gigmcp-entrypoint", os.X_OK)
        assert not (root / "usr" / "bin" / "bwrap").stat().st_mode & 0o6000, "bwrap not setuid"
    finally:
        podman("image", "unmount", image, check=False)
    config = json.loads(podman("image", "inspect", image).stdout)[0]["Config"]
    assert config["Entrypoint"] == ["/usr/bin/tini", "--", "/usr/local/bin/gigmcp-entrypoint"]
    assert config.get("User") in ("root", "", None)
    assert "/var/lib/gigmcp" in config["Volumes"]
    health = json.loads(
        podman("image", "inspect", "--format", "{{json .HealthCheck}}", image).stdout
    )
    assert health and "/usr/local/lib/gigmcp/healthcheck.py" in health["Test"], health


def test_a_jailed_tool_call_end_to_end_from_the_host(running: Running) -> None:
    answer = asyncio.run(call_hello(running))
    running.first_call_s = time.monotonic() - running.started
    print(f"\ncold start to the first tool call: {running.first_call_s:.2f} s")
    assert answer == "hello container"
    # It ran jailed, in userns mode: bwrap as an instance's own host uid, inside the
    # container, and the gateway said so at start.
    assert "userns mode" in podman("logs", running.name).stderr
    found = running.exec(
        "python3", "-c",
        "import os\n"
        "for p in filter(str.isdigit, os.listdir('/proc')):\n"
        "    try:\n"
        "        s = open(f'/proc/{p}/status').read()\n"
        "    except OSError:\n"
        "        continue\n"
        "    name = s.split('\\n', 1)[0].split()[1]\n"
        "    uid = [l for l in s.splitlines() if l.startswith('Uid:')][0].split()[1]\n"
        "    print(name, uid)\n",
    ).stdout  # fmt: skip
    uids = {
        int(uid) for line in found.splitlines() for name, uid in [line.split()] if name == "bwrap"
    }
    assert uids and min(uids) >= 2_000_000_000, found
    if cgroup_v1():
        # Its cgroup is in the delegated folder, with the server's default memory limit.
        delegated = Path("/sys/fs/cgroup/memory") / running.name / "gigmcp"
        jails = [p for p in delegated.iterdir() if p.is_dir()]
        limits = {int((p / "memory.limit_in_bytes").read_text()) for p in jails}
        assert 512 * 2**20 in limits, (jails, limits)


def test_doctor_in_the_container_says_userns_mode_and_why(running: Running) -> None:
    out = running.exec("gigmcp", "doctor", check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    privileges = next(line for line in out.stdout.splitlines() if "privileges" in line)
    assert "userns mode" in privileges and "CAP_SYS_ADMIN is not held" in privileges, privileges
    assert "MISSING" not in out.stdout


def test_the_healthcheck_says_healthy(running: Running) -> None:
    asyncio.run(call_hello(running))  # up
    check = podman("healthcheck", "run", running.name, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
