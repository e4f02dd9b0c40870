"""The seccomp filter on its own, under a bare bubblewrap jail: what it kills, what it
refuses with an errno so runtimes fall back, and that ordinary programs still run."""

from __future__ import annotations

import os
import signal
import subprocess
import textwrap

import pytest

from gigmcp.sandbox import seccomp

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(seccomp.available() is not None, reason=str(seccomp.available())),
    pytest.mark.skipif(os.uname().machine != "x86_64", reason="probes use x86_64 syscall numbers"),
]

PRELUDE = """
import ctypes, errno, json, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def call(nr, *args):
    rc = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) for a in args])
    return 'ok' if rc >= 0 else errno.errorcode[ctypes.get_errno()]
"""


def run(code: str) -> subprocess.CompletedProcess[str]:
    fd = seccomp.filter_fd()
    try:
        return subprocess.run(
            [
                "/usr/bin/bwrap", "--unshare-all", "--uid", "65534", "--gid", "65534",
                "--ro-bind", "/usr", "/usr", "--symlink", "usr/lib", "/lib",
                "--symlink", "usr/lib64", "/lib64", "--symlink", "usr/bin", "/bin",
                "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp",
                "--new-session", "--die-with-parent", "--seccomp", str(fd),
                "--", "/usr/bin/python3", "-I", "-c", PRELUDE + textwrap.dedent(code),
            ],
            pass_fds=(fd,), capture_output=True, text=True, timeout=30,
            user=65534, group=65534, extra_groups=[],
        )  # fmt: skip
    finally:
        os.close(fd)


KILLED = 128 + signal.SIGSYS


def test_the_program_is_stable_and_well_formed() -> None:
    program = seccomp.build_filter()
    assert program and len(program) % 8 == 0  # struct sock_filter is 8 bytes
    assert len(program) // 8 < 4096  # BPF_MAXINSNS
    assert seccomp.build_filter() == program


def test_ordinary_life_goes_on() -> None:
    out = run(
        """
        import socket, subprocess, threading
        socket.socket(socket.AF_INET, socket.SOCK_STREAM).close()
        socket.socket(socket.AF_INET6, socket.SOCK_DGRAM).close()
        a, b = socket.socketpair(socket.AF_UNIX); a.close(); b.close()
        open('/usr/lib/os-release').read()
        t = threading.Thread(target=lambda: None); t.start(); t.join()  # clone3 -> clone
        print(subprocess.run(['/bin/true']).returncode, os.getpid())
        """
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[0] == "0"


def test_clone3_and_io_uring_fail_with_enosys_so_runtimes_fall_back() -> None:
    out = run(
        "print(call(435, 0, 0), call(425, 8, 0), call(426, 0, 0, 0, 0, 0), call(427, 0, 0, 0, 0))"
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["ENOSYS"] * 4


def test_attack_personality_flags_are_refused_but_the_query_works() -> None:
    out = run(
        """
        libc.personality.restype = ctypes.c_int
        def p(v):
            rc = libc.personality(ctypes.c_ulong(v))
            return 'ok' if rc >= 0 else errno.errorcode[ctypes.get_errno()]
        print(p(0xFFFFFFFF), p(0), p(0x0040000), p(0x0400000), p(0x8000000), p(0x80000000))
        """
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["ok", "ok", "EPERM", "EPERM", "EPERM", "EPERM"]


@pytest.mark.parametrize(
    ("family", "expected"),
    [(16, "EAFNOSUPPORT"), (17, "EAFNOSUPPORT"), (38, "EAFNOSUPPORT"), (40, "EAFNOSUPPORT"),
     (45, "EAFNOSUPPORT"), (0x80000001, "EAFNOSUPPORT"), (0x100000010, "EAFNOSUPPORT")],
    ids=["netlink", "packet", "alg", "vsock", "mctp", "high-bit", "netlink-with-high-word"],
)  # fmt: skip
def test_attack_socket_families_other_than_unix_and_inet(family: int, expected: str) -> None:
    out = run(f"print(call(41, {family}, 3, 0), call(53, {family}, 1, 0, 0))")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [expected, expected]


@pytest.mark.parametrize(
    "request_",
    [0x5412, 0xFFFFFFFF00005412, 0x541C],
    ids=["TIOCSTI", "TIOCSTI-high-bits", "TIOCLINUX"],
)
def test_attack_terminal_injection_ioctls_are_killed(request_: int) -> None:
    out = run(f"c = ctypes.c_char(b'x'); print(call(16, 0, {request_}, ctypes.addressof(c)))")
    assert out.returncode == KILLED and out.stdout == ""


def test_attack_x32_syscall_abi_is_killed() -> None:
    out = run("print(call(0x40000000 | 39))")  # x32 getpid
    assert out.returncode == KILLED and out.stdout == ""


def test_attack_32_bit_int80_abi_is_killed() -> None:
    # mov eax, 20 (i386 getpid); int 0x80; ret — run from an executable page.
    out = run(
        """
        import mmap
        code = bytes([0xB8, 20, 0, 0, 0, 0xCD, 0x80, 0xC3])
        page = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
        page.write(code)
        addr = ctypes.addressof(ctypes.c_char.from_buffer(page))
        print(ctypes.CFUNCTYPE(ctypes.c_int)(addr)())
        """
    )
    assert out.returncode == KILLED and out.stdout == "", (out.returncode, out.stdout, out.stderr)
