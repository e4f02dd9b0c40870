"""``gigmcp doctor``: can this host jail MCP servers, and if not, what to do about it.

Owns probing each thing the sandbox needs — root or the right capabilities, bubblewrap,
user namespaces, network namespaces, nftables, cgroups, seccomp — by trying it for real
in the smallest way, and saying for each what is missing and how to fix it. The gateway
runs the same probes at start-up and refuses to launch servers unjailed when one fails.
It must never change the host beyond what a probe creates and removes again.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import stat
import subprocess
import threading
from dataclasses import dataclass

from gigmcp.sandbox import cgroups, nft, seccomp
from gigmcp.sandbox.jail import BWRAP, SANDBOX_UID, host_uid
from gigmcp.sandbox.launcher import PRLIMIT

# What the gateway uses: dac_override (create its cgroups: cgroupfs roots are mode 0555
# even for root), kill (signal jails, which run as another uid), setgid/setuid (start
# bwrap as an instance's own uid), net_admin (veths, addresses, nftables), sys_admin (a
# network namespace per instance, setns into it). Nothing else.
NEEDED_CAPS = {
    "DAC_OVERRIDE": 1,
    "KILL": 5,
    "SETGID": 6,
    "SETUID": 7,
    "NET_ADMIN": 12,
    "SYS_ADMIN": 21,
}


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    problem: str | None  # None = fine
    fix: str = ""
    detail: str = ""
    warning: str = ""  # works, but weaker than it should be

    @property
    def ok(self) -> bool:
        return self.problem is None


def _effective_caps() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    return 0


def check_privileges() -> Check:
    caps = _effective_caps()
    missing = [n for n, bit in NEEDED_CAPS.items() if not caps >> bit & 1]
    if missing:
        return Check(
            "privileges",
            f"missing capabilities: {', '.join('CAP_' + m for m in missing)}",
            "run the gateway as root, or in a container with --cap-add NET_ADMIN "
            "--cap-add SYS_ADMIN (DAC_OVERRIDE, KILL, SETUID and SETGID are Docker defaults)",
        )
    return Check("privileges", None, detail="root" if os.geteuid() == 0 else "capabilities")


def check_bwrap() -> Check:
    if not os.path.exists(BWRAP) or not shutil.which(BWRAP):
        return Check("bubblewrap", f"{BWRAP} not found", "apt-get install bubblewrap")
    try:
        out = subprocess.run([BWRAP, "--version"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Check("bubblewrap", f"cannot run {BWRAP}: {exc}", "reinstall bubblewrap")
    mode = os.stat(BWRAP).st_mode
    if mode & (stat.S_ISUID | stat.S_ISGID):
        # A setuid bwrap builds the jail with host privileges and refuses some of the
        # options we rely on; ours is meant to run unprivileged in a user namespace.
        return Check(
            "bubblewrap",
            f"{BWRAP} is setuid/setgid: the jail would be built with host privileges",
            f"chmod u-s,g-s {BWRAP} (Debian's package is not setuid) and allow "
            "unprivileged user namespaces",
        )
    if not os.access(PRLIMIT, os.X_OK):
        return Check(
            "bubblewrap",
            f"{PRLIMIT} not found (it sets each jail's rlimits)",
            "apt-get install util-linux",
        )
    version = out.stdout.strip().removeprefix("bubblewrap ")
    parts = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
    if parts < (0, 8):
        return Check(
            "bubblewrap", f"version {version} is too old", "install bubblewrap 0.8 or newer"
        )
    return Check("bubblewrap", None, detail=version)


def check_user_namespaces() -> Check:
    """bwrap runs as an unprivileged uid and creates the user namespace itself: that
    needs unprivileged user namespaces. Probed with a real jail of the same shape."""
    try:
        out = subprocess.run(
            [
                BWRAP,
                "--unshare-user",
                "--uid",
                str(SANDBOX_UID),
                "--ro-bind",
                "/",
                "/",
                "--",
                "/bin/true",
            ],
            capture_output=True,
            text=True,
            timeout=10,
            user=host_uid(0),
            group=host_uid(0),
            extra_groups=[],
            env={},
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Check("user namespaces", f"probe failed: {exc}", "check bubblewrap")
    if out.returncode != 0:
        return Check(
            "user namespaces",
            f"an unprivileged user cannot create one ({out.stderr.strip()[:160]})",
            "sysctl -w kernel.unprivileged_userns_clone=1 (Debian) and "
            "user.max_user_namespaces > 0; in a container, allow the unshare/clone syscalls",
        )
    return Check("user namespaces", None)


def check_network_namespaces() -> Check:
    libc = ctypes.CDLL(None, use_errno=True)
    result: list[str | None] = []

    def probe() -> None:
        # A throwaway thread: unshare moves only this thread, which then dies.
        host = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        try:
            if libc.unshare(0x40000000) != 0:
                result.append(os.strerror(ctypes.get_errno()))
                return
            libc.setns(host, 0x40000000)
            result.append(None)
        finally:
            os.close(host)

    t = threading.Thread(target=probe)
    t.start()
    t.join()
    if not result:
        return Check("network namespaces", "the probe did not finish", "see the gateway's log")
    if result[0] is not None:
        return Check(
            "network namespaces",
            f"cannot create one: {result[0]}",
            "run as root (CAP_SYS_ADMIN is needed for unshare(CLONE_NEWNET))",
        )
    return Check("network namespaces", None)


def check_nftables() -> Check:
    problem = nft.available()
    if problem:
        return Check("nftables", problem, "apt-get install nftables")
    try:
        with nft.Nft() as n:
            n.run("list tables")
    except nft.NftError as exc:
        return Check("nftables", f"cannot read the ruleset: {exc}", "needs CAP_NET_ADMIN")
    return Check("nftables", None)


def check_cgroups() -> Check:
    problem = cgroups.available()
    if problem:
        return Check("cgroups", problem, "mount cgroup2 (or the v1 memory and pids hierarchies)")
    warning = ""
    if _swap_total() > 0 and not cgroups.swap_accounted():
        warning = (
            "swap is on but the memory cgroup does not account it: an instance can go past "
            "its memory limit into swap (boot with swapaccount=1, or turn swap off)"
        )
    return Check("cgroups", None, warning=warning)


def _swap_total() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("SwapTotal:"):
                return int(line.split()[1])
    return 0


def check_seccomp() -> Check:
    problem = seccomp.available()
    if problem:
        return Check("seccomp", problem, "apt-get install libseccomp2")
    try:
        seccomp.build_filter()
    except seccomp.SeccompError as exc:
        return Check("seccomp", f"cannot compile the filter: {exc}", "apt-get install libseccomp2")
    return Check("seccomp", None)


def run_checks() -> list[Check]:
    return [
        check_privileges(),
        check_bwrap(),
        check_user_namespaces(),
        check_network_namespaces(),
        check_nftables(),
        check_cgroups(),
        check_seccomp(),
    ]


def summary(checks: list[Check]) -> str:
    """One line naming what is missing, for the gateway's refusal to start."""
    bad = [f"{c.name}: {c.problem} (fix: {c.fix})" for c in checks if not c.ok]
    return "; ".join(bad)
