"""The seccomp filter every jailed server runs under, compiled with libseccomp.

Owns the policy below and its compilation to classic BPF for ``bwrap --seccomp FD``.
It binds libseccomp with ctypes because the Debian bindings exist only for the system
Python, and a filter hand-assembled in BPF would lose libseccomp's knowledge of each
architecture's syscall numbers and of its quirks (x32, multiplexed socketcall).

Policy, default *allow* (the namespaces, the cgroup and uid 65534 are the walls; the
filter removes the kernel surface a server has no reason to touch):

- kill the process (SIGSYS) for what only an escape or an attack would call: namespace
  and mount syscalls (unshare, setns, mount, umount2, open_tree, move_mount, fsopen,
  fsconfig, fsmount, fspick, mount_setattr, pivot_root, chroot), ptrace and
  process_vm_readv/writev, the keyring (keyctl, add_key, request_key), bpf,
  perf_event_open, userfaultfd, kexec_load/kexec_file_load, module loading, swap,
  reboot, acct, quotactl, iopl/ioperm, open_by_handle_at, clone with any namespace flag,
  and the TIOCSTI and TIOCLINUX ioctls (compared on the low 32 bits, as the kernel
  does, so high bits cannot smuggle them past);
- fail with ENOSYS, not kill, for clone3 (its flags live in memory a filter cannot read:
  glibc then falls back to clone, whose flags we check) and io_uring (Node's libuv
  probes it and must fall back, not die);
- fail with EAFNOSUPPORT for sockets of any family but AF_UNIX, AF_INET and AF_INET6
  (no packet, netlink, vsock, alg, ... sockets);
- fail with EPERM for personality() other than the default persona or a query, so
  ADDR_NO_RANDOMIZE and friends cannot be set;
- kill anything made through a foreign syscall ABI (32-bit int 0x80, x32): only the
  host's native architecture is in the filter.

It must never weaken this policy at run time and never load the filter itself: bwrap
loads it after building the jail, so the jail's own set-up is not filtered.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import threading

_KILL_PROCESS = 0x80000000
_ALLOW = 0x7FFF0000
_FLTATR_ACT_BADARCH = 2
_CMP_MASKED_EQ = 7


def _errno(code: int) -> int:
    return 0x00050000 | (code & 0xFFFF)


_EAFNOSUPPORT = _errno(errno.EAFNOSUPPORT)
_EPERM = _errno(errno.EPERM)


class SeccompError(RuntimeError):
    pass


class _ArgCmp(ctypes.Structure):
    _fields_ = [
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    ]


KILLED = (
    "unshare", "setns", "mount", "umount2", "open_tree", "move_mount", "fsopen",
    "fsconfig", "fsmount", "fspick", "mount_setattr", "pivot_root", "chroot",
    "ptrace", "process_vm_readv", "process_vm_writev",
    "keyctl", "add_key", "request_key",
    "bpf", "perf_event_open", "userfaultfd",
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
    "swapon", "swapoff", "reboot", "acct", "quotactl", "quotactl_fd",
    "iopl", "ioperm", "open_by_handle_at", "lookup_dcookie", "nfsservctl",
)  # fmt: skip
ENOSYS_CALLS = ("clone3", "io_uring_setup", "io_uring_enter", "io_uring_register")
NAMESPACE_FLAGS = {
    "CLONE_NEWNS": 0x00020000,
    "CLONE_NEWCGROUP": 0x02000000,
    "CLONE_NEWUTS": 0x04000000,
    "CLONE_NEWIPC": 0x08000000,
    "CLONE_NEWUSER": 0x10000000,
    "CLONE_NEWPID": 0x20000000,
    "CLONE_NEWNET": 0x40000000,
    "CLONE_NEWTIME": 0x00000080,
}
TIOCSTI = 0x5412
TIOCLINUX = 0x541C
ALLOWED_FAMILIES = (1, 2, 10)  # AF_UNIX, AF_INET, AF_INET6
_AF_MAX_CHECKED = 64
SUPPORTED_ARCHES = ("x86_64", "aarch64")

_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_program: bytes | None = None


def _library() -> ctypes.CDLL:
    global _lib
    if _lib is None:
        name = ctypes.util.find_library("seccomp") or "libseccomp.so.2"
        try:
            lib = ctypes.CDLL(name, use_errno=True)
        except OSError as exc:
            raise SeccompError("libseccomp is not installed (apt-get install libseccomp2)") from exc
        lib.seccomp_init.restype = ctypes.c_void_p
        lib.seccomp_init.argtypes = [ctypes.c_uint32]
        lib.seccomp_release.argtypes = [ctypes.c_void_p]
        lib.seccomp_arch_native.restype = ctypes.c_uint32
        lib.seccomp_arch_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
        lib.seccomp_arch_remove.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
        lib.seccomp_arch_exist.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
        lib.seccomp_attr_set.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32]
        lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
        lib.seccomp_syscall_resolve_name.restype = ctypes.c_int
        lib.seccomp_rule_add_array.argtypes = [
            ctypes.c_void_p,
            ctypes.c_uint32,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.POINTER(_ArgCmp),
        ]
        lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
        _lib = lib
    return _lib


def available() -> str | None:
    machine = os.uname().machine
    if machine not in SUPPORTED_ARCHES:
        return f"seccomp filter is built for {'/'.join(SUPPORTED_ARCHES)} only, not {machine}"
    try:
        _library()
    except SeccompError as exc:
        return str(exc)
    return None


class _Filter:
    def __init__(self, lib: ctypes.CDLL) -> None:
        self.lib = lib
        ctx = lib.seccomp_init(_ALLOW)
        if not ctx:
            raise SeccompError("seccomp_init failed")
        self.ctx = ctypes.c_void_p(ctx)

    def check(self, rc: int, what: str) -> None:
        if rc < 0:
            raise SeccompError(f"{what}: {os.strerror(-rc)}")

    def nr(self, name: str) -> int | None:
        n = int(self.lib.seccomp_syscall_resolve_name(name.encode()))
        return None if n < 0 else n  # not on this architecture (iopl on aarch64, ...)

    def rule(self, action: int, name: str, *cmps: tuple[int, int, int, int]) -> None:
        n = self.nr(name)
        if n is None:
            return
        array = (_ArgCmp * max(1, len(cmps)))(*[_ArgCmp(*c) for c in cmps])
        self.check(self.lib.seccomp_rule_add_array(self.ctx, action, n, len(cmps), array), name)

    def release(self) -> None:
        self.lib.seccomp_release(self.ctx)


def _compile() -> bytes:
    problem = available()
    if problem:
        raise SeccompError(problem)
    lib = _library()
    f = _Filter(lib)
    try:
        # Only the native ABI: a seccomp_init context holds exactly it, and everything
        # else (i386 via int 0x80, x32 numbers with bit 30 set) hits the bad-arch action.
        f.check(lib.seccomp_attr_set(f.ctx, _FLTATR_ACT_BADARCH, _KILL_PROCESS), "badarch")
        for name in KILLED:
            f.rule(_KILL_PROCESS, name)
        for name in ENOSYS_CALLS:
            f.rule(_errno(errno.ENOSYS), name)
        for flag in NAMESPACE_FLAGS.values():
            f.rule(_KILL_PROCESS, "clone", (0, _CMP_MASKED_EQ, flag, flag))
        for request in (TIOCSTI, TIOCLINUX):
            f.rule(_KILL_PROCESS, "ioctl", (1, _CMP_MASKED_EQ, 0xFFFFFFFF, request))
        # Families are ints: the kernel reads the low 32 bits only, so compare those.
        for call in ("socket", "socketpair"):
            for fam in range(_AF_MAX_CHECKED):
                if fam not in ALLOWED_FAMILIES:
                    f.rule(_EAFNOSUPPORT, call, (0, _CMP_MASKED_EQ, 0xFFFFFFFF, fam))
            # No family exists at 64 or beyond today; refuse them all, so that a future
            # one is not allowed by default: any of bits 6..31 set.
            for bit in range(6, 32):
                f.rule(_EAFNOSUPPORT, call, (0, _CMP_MASKED_EQ, 1 << bit, 1 << bit))
        # personality(): only the default persona (0) and the query (0xffffffff).
        # libseccomp allows one comparison per argument in a rule, so "neither 0 nor
        # all ones" is spelled with single masked comparisons on the low 32 bits:
        # "bit k set, bit 31 clear" and "bit 31 set, bit k clear", for every k < 31.
        top = 1 << 31
        for bit in range(31):
            k = 1 << bit
            f.rule(_EPERM, "personality", (0, _CMP_MASKED_EQ, k | top, k))
            f.rule(_EPERM, "personality", (0, _CMP_MASKED_EQ, k | top, top))
        r, w = os.pipe()
        try:
            f.check(lib.seccomp_export_bpf(f.ctx, w), "seccomp_export_bpf")
            os.close(w)
            w = -1
            chunks = []
            while chunk := os.read(r, 65536):
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            os.close(r)
            if w >= 0:
                os.close(w)
    finally:
        f.release()


def build_filter() -> bytes:
    global _program
    with _lock:
        if _program is None:
            _program = _compile()
        return _program


def filter_fd() -> int:
    """A fresh memfd holding the program, positioned at 0, for ``bwrap --seccomp``."""
    from gigmcp.sandbox.jail import memfd

    return memfd("gigmcp-seccomp", build_filter())
