"""The bubblewrap command line for one instance, and the files generated for its /etc.

Owns what the jail looks like from inside: namespaces, uid/gid 65534, no capabilities,
the read-only runtime, tmpfs ``/tmp`` and ``$HOME``, a private ``/proc``, a minimal
``/dev``, a generated ``/etc``, and the environment. It only builds arguments; it never
starts anything, and it must never put the gateway's environment, a host path that was
not planned, or a writable host path into a jail.
"""

from __future__ import annotations

import fcntl
import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass

from gigmcp.core.launch import JailLimits
from gigmcp.sandbox.runtime import RuntimePlan

SANDBOX_UID = 65534  # inside every jail
SANDBOX_GID = 65534
# Outside, each instance runs as a host uid of its own: HOST_UID_BASE + its network
# slot. Not the host's nobody: per-user kernel limits (inotify instances, pipe buffers,
# message queues, process counts) are counted per host uid, so a shared uid would let
# one instance starve the others, and a host process running as nobody could read
# /proc/<pid>/environ of every jail. The range sits above what distributions and
# subordinate-id ranges hand out, and maps to nothing on the host.
HOST_UID_BASE = 2_000_000_000


def host_uid(slot_index: int) -> int:
    """The host uid and gid of the instance in address slot ``slot_index``."""
    return HOST_UID_BASE + slot_index


HOME = "/home/sandbox"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
BWRAP = "/usr/bin/bwrap"
# bwrap takes its options from a descriptor (``--args``) but its command only from its
# own argv, which is fixed when a pooled bwrap is spawned. So every jail runs this
# fixed command, and the shell execs the server's argv, handed over in a variable that
# it unsets first: the server never sees it, and no shell stays behind.
EXEC_VAR = "GIGMCP_EXEC"
TRAMPOLINE = ("/bin/sh", "-c", f'eval "${EXEC_VAR}"')


@dataclass(frozen=True, slots=True)
class JailNetwork:
    host_ip: str
    sandbox_ip: str
    proxy_port: int


def environment(declared: Mapping[str, str], net: JailNetwork) -> dict[str, str]:
    """The whole environment of a jailed server: declared values, then ours on top, so a
    server definition cannot point its proxy or CA variables elsewhere."""
    proxy = f"http://{net.host_ip}:{net.proxy_port}"
    env = dict(declared)
    env.update(
        {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": HOME,
            "TMPDIR": "/tmp",  # noqa: S108 - the jail's own tmpfs
            "LANG": "C.UTF-8",
            "HTTP_PROXY": proxy,
            "HTTPS_PROXY": proxy,
            "http_proxy": proxy,
            "https_proxy": proxy,
            "NO_PROXY": "localhost,127.0.0.1",
            "no_proxy": "localhost,127.0.0.1",
            "NODE_USE_ENV_PROXY": "1",
            "SSL_CERT_FILE": CA_BUNDLE,
            "NODE_EXTRA_CA_CERTS": CA_BUNDLE,
            "REQUESTS_CA_BUNDLE": CA_BUNDLE,
        }
    )
    return env


def etc_files(net: JailNetwork, ca_bundle: bytes) -> dict[str, bytes]:
    """Everything the jail's /etc holds."""
    return {
        "/etc/passwd": (
            "root:x:0:0:root:/nonexistent:/usr/sbin/nologin\n"
            f"sandbox:x:{SANDBOX_UID}:{SANDBOX_GID}:sandbox:{HOME}:/usr/sbin/nologin\n"
        ).encode(),
        "/etc/group": f"root:x:0:\nsandbox:x:{SANDBOX_GID}:\n".encode(),
        "/etc/hosts": b"127.0.0.1 localhost\n",
        # The proxy answers: names of the server's allowlist only, each with an address
        # that the namespace sends to the proxy anyway (its walls redirect UDP 53 there).
        "/etc/resolv.conf": f"nameserver {net.host_ip}\noptions timeout:2 attempts:2\n".encode(),
        "/etc/nsswitch.conf": b"passwd: files\ngroup: files\nhosts: files dns\n",
        CA_BUNDLE: ca_bundle,
    }


def bwrap_args(
    plan: RuntimePlan,
    env: Mapping[str, str],
    limits: JailLimits,
    data_fds: Mapping[str, int],
    seccomp_fd: int,
    info_fd: int,
    hostname: str = "sandbox",
    trampoline: bool = True,
) -> list[str]:
    """bwrap's arguments, without the program name: the launcher hands them to a bwrap
    that is already running, in its namespace and cgroup, through ``--args FD``."""
    args = [
        # The network namespace is not bwrap's: the launcher spawns bwrap inside one it
        # prepared, so every other namespace is new and the net one is already private.
        "--unshare-user",
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup",
        "--disable-userns",
        "--assert-userns-disabled",
        "--uid",
        str(SANDBOX_UID),
        "--gid",
        str(SANDBOX_GID),
        "--hostname",
        hostname,
        "--cap-drop",
        "ALL",
        "--new-session",
        "--die-with-parent",
        "--clearenv",
    ]
    for name, value in sorted(env.items()):
        args += ["--setenv", name, value]
    # The jail's own mounts first, the runtime on top: a server installed under /tmp (a
    # checkout there, say) must stay visible, not be hidden by the jail's tmpfs.
    args += ["--proc", "/proc", "--dev", "/dev"]
    # POSIX shared memory and semaphores live here: a sized tmpfs of its own, because
    # /dev itself is made read-only below.
    args += ["--size", str(limits.tmp_bytes), "--perms", "1777", "--tmpfs", "/dev/shm"]  # noqa: S108
    args += ["--size", str(limits.tmp_bytes), "--perms", "1777", "--tmpfs", "/tmp"]  # noqa: S108
    args += ["--size", str(limits.home_bytes), "--perms", "0700", "--tmpfs", HOME]
    for target, link in plan.symlinks:
        args += ["--symlink", target, link]
    for path in plan.ro_paths:
        args += ["--ro-bind", path, path]
    for src, dest in plan.binds:
        args += ["--ro-bind", src, dest]
    for dest, fd in sorted(data_fds.items()):
        args += ["--perms", "0444", "--ro-bind-data", str(fd), dest]
    # bwrap builds the new root and /dev on tmpfs of its own, writable by the sandbox
    # user: only /tmp, $HOME and /dev/shm may stay writable (bwrap's remount is not
    # recursive, so those keep their own flags).
    args += ["--remount-ro", "/dev", "--remount-ro", "/"]
    args += ["--seccomp", str(seccomp_fd), "--info-fd", str(info_fd)]
    if trampoline:
        exec_line = f"unset {EXEC_VAR}; exec " + " ".join(shlex.quote(a) for a in plan.argv)
        args += ["--setenv", EXEC_VAR, exec_line]
    args += ["--chdir", plan.workdir or HOME]
    # The options travel NUL-separated through --args: a NUL inside a value would start
    # a new option of its own choosing (a writable --bind of the host, say).
    if any("\0" in a for a in args):
        raise ValueError("a jail argument contains a NUL byte (an environment value or argv)")
    return args


def memfd(name: str, data: bytes) -> int:
    """A sealed anonymous file for bwrap to copy from. Sealed because a pooled zygote
    holds it for a while: nothing, not even a process of the same uid opening
    /proc/<pid>/fd/N, may change what the jail will get."""
    fd = os.memfd_create(name, os.MFD_ALLOW_SEALING)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        seals = fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seals)
        os.lseek(fd, 0, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd
