"""``gigmcp doctor``: can this host jail MCP servers, and if not, what to do about it.

Owns probing each thing the sandbox needs — root or the right capabilities, bubblewrap,
user namespaces, network namespaces, nftables, cgroups, seccomp — by trying it for real
in the smallest way, and saying for each what is missing and how to fix it, and which
sandbox mode the gateway will use and why (``mode_reason``). The gateway
runs the same probes at start-up and refuses to launch servers unjailed when one fails.
It also checks a server's command the way a launch plans it (``check_server``: a path
the jail's user cannot read, a missing command or ELF interpreter), without running it.
It must never change the host beyond what a probe creates and removes again.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import stat
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from gigmcp.sandbox import cgroups, mode, nft, runtime, seccomp
from gigmcp.sandbox.jail import BWRAP, SANDBOX_UID, host_uid
from gigmcp.sandbox.launcher import PRLIMIT


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


def check_privileges(setting: str = "auto") -> Check:
    chosen = mode.resolve(setting)
    lacking = mode.missing(chosen)
    if lacking:
        return Check(
            "privileges",
            f"missing capabilities for {chosen} mode: {', '.join('CAP_' + m for m in lacking)}",
            "run the gateway as root, or in a container with --cap-add NET_ADMIN (userns "
            "mode; add SYS_ADMIN for root mode); DAC_OVERRIDE, KILL, SETUID and SETGID are "
            "Docker defaults",
        )
    who = "root" if os.geteuid() == 0 and chosen == "root" else "capabilities"
    return Check("privileges", None, detail=f"{chosen} mode ({who}): {mode_reason(setting)}")


def mode_reason(setting: str, caps: int | None = None) -> str:
    """Why ``setting`` gives the mode it gives on this process, in a few words: the
    doctor's answer to "which sandbox mode, and why" (a container sees it at once)."""
    chosen = mode.resolve(setting, caps)
    if setting != "auto":
        return f"GIG_SANDBOX_MODE={setting}"
    if chosen == "root":
        return "GIG_SANDBOX_MODE=auto and CAP_SYS_ADMIN is held"
    return (
        "GIG_SANDBOX_MODE=auto and CAP_SYS_ADMIN is not held (a container given NET_ADMIN "
        "only): each sandbox network is made inside a user namespace of its own"
    )


def check_bwrap() -> Check:
    if not os.path.exists(BWRAP) or not shutil.which(BWRAP):
        return Check("bubblewrap", f"{BWRAP} not found", "apt-get install bubblewrap")
    try:
        out = subprocess.run([BWRAP, "--version"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Check("bubblewrap", f"cannot run {BWRAP}: {exc}", "reinstall bubblewrap")
    bits = os.stat(BWRAP).st_mode
    if bits & (stat.S_ISUID | stat.S_ISGID):
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


def check_network_namespaces(setting: str = "auto") -> Check:
    if mode.resolve(setting) == "userns":
        return _check_userns_network()
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
            "run as root (CAP_SYS_ADMIN is needed for unshare(CLONE_NEWNET)), or grant "
            "NET_ADMIN without SYS_ADMIN for userns mode",
        )
    return Check("network namespaces", None, detail="root mode")


def _check_userns_network() -> Check:
    """Userns mode, probed for real: a holder as an instance uid, a veth moved into its
    namespace, the inside configured, then all of it removed."""
    from pyroute2 import IPRoute

    from gigmcp.sandbox.holder import HolderError, NamespaceHolder

    name = f"gmvprobe{os.getpid() % 100000}"
    try:
        holder = NamespaceHolder(
            host_uid(0),
            "link set lo up\nlink set eth0 up\n",
            "table inet gigmcp_probe { chain output { type filter hook output priority 0; "
            "policy accept; }; }\n",
        )
    except (HolderError, OSError) as exc:
        return Check(
            "network namespaces",
            f"userns mode: cannot create a user and network namespace: {exc}",
            "allow unprivileged user namespaces (kernel.unprivileged_userns_clone=1, "
            "user.max_user_namespaces > 0); in a container, allow unshare/clone/setns "
            "(Docker's default seccomp profile refuses them without SYS_ADMIN)",
        )
    try:
        with IPRoute() as ipr:
            peer = {"ifname": "eth0", "net_ns_pid": holder.pid}
            ipr.link("add", ifname=name, kind="veth", peer=peer)
            try:
                holder.configure()
            finally:
                for index in ipr.link_lookup(ifname=name):
                    ipr.link("del", index=index)
        joined = subprocess.run(
            [*holder.nsenter(), "/bin/true"],
            capture_output=True,
            text=True,
            timeout=10,
            user=host_uid(0),
            group=host_uid(0),
            extra_groups=[],
            env={},
        )
        if joined.returncode != 0:
            return Check(
                "network namespaces",
                f"userns mode: cannot join the namespace: {joined.stderr.strip()[:160]}",
                "allow setns in the container's seccomp profile",
            )
    except Exception as exc:  # any failure is the answer
        return Check(
            "network namespaces",
            f"userns mode: cannot wire a namespace: {exc}",
            "needs CAP_NET_ADMIN, iproute2 and nftables",
        )
    finally:
        holder.stop()
    return Check("network namespaces", None, detail="userns mode")


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


def check_server(
    name: str, command: tuple[str, ...], cwd: str | None, rootfs: str | None = None
) -> Check:
    """Whether the jail can run this server's command: planned exactly as a launch plans
    it (files read, nothing run); the problem names the path, the fix what to do."""
    try:
        if rootfs is not None:
            runtime.plan_rootfs(rootfs, command, cwd)
        else:
            runtime.plan(command, cwd)
    except runtime.RuntimeScanError as exc:
        return Check(f"server {name}", exc.problem, exc.fix or "see the problem")
    return Check(f"server {name}", None)


def run_checks(setting: str = "auto") -> list[Check]:
    return [
        check_privileges(setting),
        check_bwrap(),
        check_user_namespaces(),
        check_network_namespaces(setting),
        check_nftables(),
        check_cgroups(),
        check_seccomp(),
    ]


def recurring(
    setting: str = "auto", every_s: float = 600.0, first: list[Check] | None = None
) -> Callable[[], list[Check]]:
    """The checks, run again at most every ``every_s`` seconds (they start processes:
    a page that shows them must not run them); ``first``: a result found just now."""
    lock = threading.Lock()
    last: list[tuple[float, list[Check]]] = [(time.monotonic(), first)] if first else []

    def current() -> list[Check]:
        with lock:
            if not last or time.monotonic() - last[0][0] > every_s:
                last[:] = [(time.monotonic(), run_checks(setting))]
            return last[0][1]

    return current


def summary(checks: list[Check]) -> str:
    """One line naming what is missing, for the gateway's refusal to start."""
    bad = [f"{c.name}: {c.problem} (fix: {c.fix})" for c in checks if not c.ok]
    return "; ".join(bad)
