"""The seccomp filter every jailed server runs under, compiled with libseccomp.

Owns the policy below and its compilation to classic BPF for ``bwrap --seccomp FD``.
It binds libseccomp with ctypes because the Debian bindings (python3-seccomp) exist only
for the system Python, not for our venv, and a filter hand-assembled in BPF would lose
libseccomp's knowledge of each architecture's syscall numbers and of its quirks (x32).

Policy, default *allow* (the namespaces, the cgroup and an unprivileged uid are the walls; the
filter removes the kernel surface a server has no reason to touch, which is where the
privilege escalations of the last decade were found):

- kill the process (SIGSYS) for what only an escape or an attack would call: namespace
  and mount syscalls (unshare, setns, mount, umount2, open_tree, move_mount, fsopen,
  fsconfig, fsmount, fspick, mount_setattr, pivot_root, chroot), ptrace and
  process_vm_readv/writev, the keyring (keyctl, add_key, request_key), bpf,
  perf_event_open, userfaultfd, kexec_load/kexec_file_load, module loading, swap,
  reboot, acct, quotactl/quotactl_fd, lookup_dcookie, nfsservctl, iopl/ioperm (x86),
  open_by_handle_at, modify_ldt (x86), uselib, syslog (the kernel log holds kernel
  addresses), clone with any namespace flag, and the TIOCSTI, TIOCLINUX and TIOCSETD
  ioctls (compared on the low 32 bits, as the kernel reads them, so high bits cannot
  smuggle them past; TIOCSETD attaches a line discipline, old and often exploited
  kernel code, to a pty the jail can open). Killing rather than failing: no honest
  server calls these, so one that does is compromised and should not get a second try;
- fail with ENOSYS, not kill, for clone3 (its flags live in memory a filter cannot read:
  glibc then falls back to clone, whose flags we check) and io_uring (Node's libuv
  probes it and must fall back, not die);
- fail with EAFNOSUPPORT for sockets of any family but AF_UNIX, AF_INET and AF_INET6
  (no packet, netlink, vsock, alg, ... sockets: rarely used code, often exploited);
  an errno because runtimes probe families and must carry on. Inside AF_INET/AF_INET6,
  only stream and datagram sockets (ESOCKTNOSUPPORT otherwise) of protocol 0, TCP or
  UDP (EPROTONOSUPPORT otherwise): no SCTP, DCCP, UDP-Lite, MPTCP, ICMP or raw, whose
  kernel code a server does not need and whose traffic the proxy could not vet anyway;
- fail with EPERM for fanotify_init, kcmp and the NUMA memory-policy calls (mbind,
  set_mempolicy, migrate_pages, move_pages): nothing a server needs, but runtimes may
  probe them;
- fail with EPERM for personality() other than the default persona (0) or a query
  (0xffffffff), so ADDR_NO_RANDOMIZE and friends cannot switch off hardening;
- kill anything made through a foreign syscall ABI (32-bit int 0x80, x32 with bit
  0x40000000 set): only the host's architecture (x86_64 or aarch64) is in the filter,
  and the bad-arch action is kill. Rules written for the native numbers would not
  match the other ABIs' numbers, so those ABIs must not be reachable at all. With
  only native ABIs there is no multiplexed socketcall to get around the socket rules.

It must never weaken this policy at run time and never load the filter itself: bwrap
loads it after building the jail, so the jail's own set-up is not filtered.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import threading

from gigmcp.errors import LaunchError
from gigmcp.sandbox.jail import memfd

# Values from <seccomp.h> and <linux/audit.h>; ABI, so they never change.
_KILL_PROCESS = 0x80000000
_ALLOW = 0x7FFF0000
_FLTATR_ACT_BADARCH = 2
_CMP_MASKED_EQ = 7
_ARCH_X86_64 = 0xC000003E
_ARCH_AARCH64 = 0xC00000B7
_ARCH_X86 = 0x40000003
_ARCH_X32 = 0x4000003E
_ARCH_ARM = 0x40000028
_NR_SCMP_ERROR = -1  # seccomp_syscall_resolve_name: "no such syscall anywhere"

SUPPORTED_ARCHES = {_ARCH_X86_64: "x86_64", _ARCH_AARCH64: "aarch64"}
_KNOWN_ARCHES = (_ARCH_X86, _ARCH_X32, _ARCH_ARM, _ARCH_X86_64, _ARCH_AARCH64)


def _errno(code: int) -> int:
    return 0x00050000 | (code & 0xFFFF)


class SeccompError(LaunchError):
    """libseccomp is missing, the host is unsupported, or a step of the build failed."""


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
    "modify_ldt", "uselib", "syslog",
)  # fmt: skip
EPERM_CALLS = ("fanotify_init", "kcmp", "mbind", "set_mempolicy", "migrate_pages", "move_pages")
ENOSYS_CALLS = ("clone3", "io_uring_setup", "io_uring_enter", "io_uring_register")
NAMESPACE_FLAGS = {
    "CLONE_NEWNS": 0x00020000,
    "CLONE_NEWCGROUP": 0x02000000,
    "CLONE_NEWUTS": 0x04000000,
    "CLONE_NEWIPC": 0x08000000,
    "CLONE_NEWUSER": 0x10000000,
    "CLONE_NEWPID": 0x20000000,
    "CLONE_NEWNET": 0x40000000,
    # In clone() this bit is part of the exit-signal byte, so the kernel never reads it
    # as a flag there; the rule only kills an exit signal >= 128, which no program uses.
    "CLONE_NEWTIME": 0x00000080,
}
TIOCSTI = 0x5412
TIOCLINUX = 0x541C
TIOCSETD = 0x5423
ALLOWED_FAMILIES = (1, 2, 10)  # AF_UNIX, AF_INET, AF_INET6
INET_FAMILIES = (2, 10)
INET_TYPES = (1, 2)  # SOCK_STREAM, SOCK_DGRAM (the low 4 bits; the rest are flags)
INET_PROTOCOLS = (0, 6, 17)  # default, IPPROTO_TCP, IPPROTO_UDP
_SOCK_TYPE_MASK = 0xF
_AF_MAX_CHECKED = 64
_LOW32 = 0xFFFFFFFF

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
        # Only non-variadic entry points: seccomp_rule_add passes its 24-byte comparison
        # structs by value through "...", which ctypes cannot declare; the _array form
        # takes a plain pointer.
        lib.seccomp_init.restype = ctypes.c_void_p
        lib.seccomp_init.argtypes = [ctypes.c_uint32]
        lib.seccomp_release.restype = None
        lib.seccomp_release.argtypes = [ctypes.c_void_p]
        lib.seccomp_arch_native.restype = ctypes.c_uint32
        lib.seccomp_arch_native.argtypes = []
        lib.seccomp_arch_exist.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
        lib.seccomp_arch_remove.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
        lib.seccomp_attr_set.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32]
        lib.seccomp_syscall_resolve_name.restype = ctypes.c_int
        lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
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


def _native_arch(lib: ctypes.CDLL) -> int:
    token = int(lib.seccomp_arch_native())
    if token not in SUPPORTED_ARCHES:
        raise SeccompError(
            f"the seccomp filter is written for {'/'.join(SUPPORTED_ARCHES.values())} only,"
            f" not {os.uname().machine} (libseccomp arch token {token:#x})"
        )
    return token


def available() -> str | None:
    """None if the filter can be built here, else a one-line reason it cannot."""
    try:
        _native_arch(_library())
    except SeccompError as exc:
        return str(exc)
    return None


class _Filter:
    def __init__(self, lib: ctypes.CDLL) -> None:
        self.lib = lib
        ctx = lib.seccomp_init(_ALLOW)
        if not ctx:
            raise SeccompError("seccomp_init failed (out of memory?)")
        self.ctx = ctypes.c_void_p(ctx)

    def check(self, rc: int, what: str) -> None:
        if rc < 0:
            raise SeccompError(f"{what}: {os.strerror(-rc)}")

    def nr(self, name: str) -> int | None:
        n = int(self.lib.seccomp_syscall_resolve_name(name.encode()))
        if n == _NR_SCMP_ERROR:
            # A name libseccomp has never heard of: a typo, or a libseccomp older than the
            # syscall. Failing is safer than a kill list that silently shrinks.
            raise SeccompError(f"libseccomp does not know the syscall {name!r}: upgrade it")
        # Other negative numbers are libseccomp's pseudo-syscalls: the call does not
        # exist on this architecture (iopl on aarch64), so there is nothing to refuse.
        return None if n < 0 else n

    def rule(self, action: int, name: str, *cmps: tuple[int, int, int, int]) -> None:
        n = self.nr(name)
        if n is None:
            return
        array = (_ArgCmp * max(1, len(cmps)))(*[_ArgCmp(*c) for c in cmps])
        rc = self.lib.seccomp_rule_add_array(self.ctx, action, n, len(cmps), array)
        self.check(rc, f"seccomp_rule_add_array({name}, {cmps})")

    def release(self) -> None:
        self.lib.seccomp_release(self.ctx)


def _host_abi_only(f: _Filter, native: int) -> None:
    # seccomp_init already holds just the native ABI; say so explicitly, so that a
    # libseccomp build that adds companions (x32 next to x86_64, arm next to aarch64)
    # cannot reopen a second syscall table that our rules, written for native numbers,
    # would not cover.
    for token in _KNOWN_ARCHES:
        if token != native and f.lib.seccomp_arch_exist(f.ctx, token) == 0:
            f.check(f.lib.seccomp_arch_remove(f.ctx, token), f"seccomp_arch_remove({token:#x})")
    f.check(f.lib.seccomp_arch_exist(f.ctx, native), "native architecture missing from filter")
    # Everything else (i386 via int 0x80; x32, whose numbers have bit 30 set under the
    # x86_64 token and which libseccomp routes to this action too) is killed.
    f.check(
        f.lib.seccomp_attr_set(f.ctx, _FLTATR_ACT_BADARCH, _KILL_PROCESS),
        "seccomp_attr_set(ACT_BADARCH)",
    )


def _policy(f: _Filter) -> None:
    for name in KILLED:
        f.rule(_KILL_PROCESS, name)
    for name in ENOSYS_CALLS:
        f.rule(_errno(errno.ENOSYS), name)
    # clone's flags are arg 0 on both supported architectures (not on s390, say).
    for flag in NAMESPACE_FLAGS.values():
        f.rule(_KILL_PROCESS, "clone", (0, _CMP_MASKED_EQ, flag, flag))
    # The request is an unsigned int to the kernel: match the low 32 bits only, or
    # 0xffffffff00005412 would be "not TIOCSTI" to the filter and TIOCSTI to the tty.
    for request in (TIOCSTI, TIOCLINUX, TIOCSETD):
        f.rule(_KILL_PROCESS, "ioctl", (1, _CMP_MASKED_EQ, _LOW32, request))
    # A rule compares each argument once, so "not in {1, 2, 10}" is spelled as one rule
    # per refused value. Families are ints: the kernel reads the low 32 bits only, so
    # every comparison masks with those.
    eafnosupport = _errno(errno.EAFNOSUPPORT)
    for call in ("socket", "socketpair"):
        for fam in range(_AF_MAX_CHECKED):
            if fam not in ALLOWED_FAMILIES:
                f.rule(eafnosupport, call, (0, _CMP_MASKED_EQ, _LOW32, fam))
        # No family exists at 64 or beyond today (AF_MAX is 46); refuse them all, so a
        # future one is not allowed by default: any of bits 6..31 set. Negative ints
        # have bit 31 set and land here too.
        for bit in range(6, 32):
            f.rule(eafnosupport, call, (0, _CMP_MASKED_EQ, 1 << bit, 1 << bit))
    # Inside the INET families: the type's low four bits (the rest are SOCK_NONBLOCK and
    # SOCK_CLOEXEC) must be stream or datagram, the protocol 0, TCP or UDP. Protocols
    # are ints read on their low 32 bits: "not 0, 6 or 17" is every other value below
    # 32 by equality, and any of bits 5..31 set.
    esocktnosupport = _errno(errno.ESOCKTNOSUPPORT)
    eprotonosupport = _errno(errno.EPROTONOSUPPORT)
    for fam in INET_FAMILIES:
        family = (0, _CMP_MASKED_EQ, _LOW32, fam)
        for kind in range(_SOCK_TYPE_MASK + 1):
            if kind not in INET_TYPES:
                f.rule(
                    esocktnosupport, "socket", family, (1, _CMP_MASKED_EQ, _SOCK_TYPE_MASK, kind)
                )
        for proto in range(32):
            if proto not in INET_PROTOCOLS:
                f.rule(eprotonosupport, "socket", family, (2, _CMP_MASKED_EQ, _LOW32, proto))
        for bit in range(5, 32):
            f.rule(eprotonosupport, "socket", family, (2, _CMP_MASKED_EQ, 1 << bit, 1 << bit))
    for name in EPERM_CALLS:
        f.rule(_errno(errno.EPERM), name)
    # personality(): only the default persona (0) and the query (0xffffffff). "Neither
    # 0 nor all ones" in single masked comparisons on the low 32 bits (the kernel takes
    # an unsigned int): "bit k set, bit 31 clear" or "bit 31 set, bit k clear", k < 31.
    eperm = _errno(errno.EPERM)
    top = 1 << 31
    for bit in range(31):
        k = 1 << bit
        f.rule(eperm, "personality", (0, _CMP_MASKED_EQ, k | top, k))
        f.rule(eperm, "personality", (0, _CMP_MASKED_EQ, k | top, top))


def _export(f: _Filter) -> bytes:
    # Into a memfd rather than a pipe: libseccomp writes the whole program before we
    # read, and a pipe would block it once the program outgrew the pipe buffer.
    fd = os.memfd_create("gigmcp-seccomp-export", os.MFD_CLOEXEC)
    try:
        f.check(f.lib.seccomp_export_bpf(f.ctx, fd), "seccomp_export_bpf")
        size = os.fstat(fd).st_size
        os.lseek(fd, 0, os.SEEK_SET)
        program = os.read(fd, size) if size else b""
    finally:
        os.close(fd)
    if not program or len(program) % 8 or len(program) != size:
        raise SeccompError(f"seccomp_export_bpf produced {len(program)} bytes, not a program")
    return program


def _compile() -> bytes:
    lib = _library()
    native = _native_arch(lib)
    f = _Filter(lib)
    try:
        _host_abi_only(f, native)
        _policy(f)
        return _export(f)
    finally:
        f.release()


def build_filter() -> bytes:
    """The compiled BPF program (struct sock_filter[]), built once per process."""
    global _program
    with _lock:
        if _program is None:
            _program = _compile()
        return _program


def filter_fd() -> int:
    """A fresh memfd holding the program, positioned at 0, for ``bwrap --seccomp``.

    The caller hands it to bwrap with ``pass_fds`` and closes it afterwards.
    """
    return memfd("gigmcp-seccomp", build_filter())
