"""A hostile MCP server: runs one attack inside the jail and prints what happened as JSON.

Usage inside a jail: python3 attack.py CASE [ARGS...]. Each case tries something a
malicious server would, and reports the outcome (an errno name, or "succeeded"); cases
the seccomp filter answers with SIGSYS never print, and the test sees the signal.
"""

import contextlib
import ctypes
import errno
import glob
import json
import os
import socket
import sys
import threading
import time

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
NR = {  # x86_64
    "unshare": 272, "setns": 308, "mount": 165, "ptrace": 101, "keyctl": 250, "bpf": 321,
    "open_tree": 428, "fsopen": 430, "perf_event_open": 298, "userfaultfd": 323,
    "clone": 56, "ioctl": 16, "add_key": 248, "process_vm_readv": 310, "chroot": 161,
    "pivot_root": 155, "kexec_load": 246, "init_module": 175,
}  # fmt: skip
if os.uname().machine == "aarch64":
    NR.update(unshare=97, setns=268, mount=40, ptrace=117, keyctl=219, bpf=280, open_tree=428,
              fsopen=430, perf_event_open=241, userfaultfd=282, clone=220, ioctl=29, add_key=217,
              process_vm_readv=270, chroot=51, pivot_root=41, kexec_load=104, init_module=105)  # fmt: skip


def report(**kw):
    print(json.dumps(kw), flush=True)


def outcome(fn):
    try:
        fn()
        return "succeeded"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))


def sys_call(name, *args):
    rc = libc.syscall(NR[name], *[ctypes.c_long(a) for a in args])
    err = ctypes.get_errno()
    return "succeeded" if rc >= 0 else errno.errorcode.get(err, str(err))


def read(path):
    with open(path, "rb") as f:
        return f.read(4096)


def case_read(*paths):
    report(**{p: outcome(lambda p=p: read(p)) for p in paths})


def case_find(canary, *patterns):
    """For each path (globs expanded, as an attacker would walk /proc): the error that
    stopped the read, or whether the canary was in what it read."""
    out = {}
    for pattern in patterns:
        for path in sorted(glob.glob(pattern)) or [pattern]:
            try:
                out[path] = "found" if canary.encode() in read_all(path) else "absent"
            except OSError as e:
                out[path] = errno.errorcode.get(e.errno, str(e.errno))
    report(**out)


def read_all(path):
    with open(path, "rb") as f:
        return f.read()


def case_listen_then_wait(port):
    """A service inside this jail, on all its addresses; proves it answers itself."""
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", int(port)))
    srv.listen()

    def serve():
        while True:
            conn, _ = srv.accept()
            with conn:
                conn.recv(16)
                conn.sendall(b"pong")

    threading.Thread(target=serve, daemon=True).start()
    # The address routing picks toward the proxy is this jail's own (a UDP connect
    # sends nothing).
    proxy_host = os.environ["HTTPS_PROXY"].removeprefix("http://").rsplit(":", 1)[0]
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.connect((proxy_host, 9))
    mine = probe.getsockname()[0]
    c = socket.create_connection((mine, int(port)), timeout=2)
    c.sendall(b"ping")
    report(listening=mine, self=c.recv(16).decode())
    sys.stdin.read()


def case_write(*paths):
    def w(p):
        with open(p, "w") as f:
            f.write("x")

    report(**{p: outcome(lambda p=p: w(p)) for p in paths})


def case_syscall(name, *args):
    # Killed by the filter before this prints, for the calls it kills.
    report(result=sys_call(name, *(int(a, 0) for a in args)))


def case_tiocsti():
    c = ctypes.c_char(b"x")
    rc = libc.ioctl(0, ctypes.c_ulong(0x5412), ctypes.byref(c))
    report(result="succeeded" if rc == 0 else errno.errorcode.get(ctypes.get_errno()))


def case_kill(pid):
    report(result=outcome(lambda: os.kill(int(pid), 0)))


def case_env():
    report(
        env=dict(os.environ),
        proc_self=read("/proc/self/environ").decode(errors="replace"),
        proc_1=outcome(lambda: read("/proc/1/environ")),
        fds=sorted(os.listdir("/proc/self/fd")),
    )


def case_processes():
    pids = [p for p in os.listdir("/proc") if p.isdigit()]
    cmdlines = {}
    for p in pids:
        with contextlib.suppress(OSError):
            cmdlines[p] = read(f"/proc/{p}/cmdline").replace(b"\0", b" ").decode()
    report(
        pids=pids,
        cmdlines=cmdlines,
        uid=os.getuid(),
        gid=os.getgid(),
        status=read("/proc/self/status").decode(),
    )


def case_connect(host, port, proto):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    kind = {"tcp": socket.SOCK_STREAM, "udp": socket.SOCK_DGRAM}[proto]

    def go():
        s = socket.socket(fam, kind)
        s.settimeout(1.5)
        if proto == "tcp":
            s.connect((host, int(port)))
            s.sendall(b"ping")
            if not s.recv(16):
                raise OSError(errno.ECONNRESET, "closed")
        else:
            s.sendto(b"ping", (host, int(port)))
            s.recvfrom(16)

    report(result=outcome(go))


def case_connect_proxy():
    host, port = os.environ["HTTPS_PROXY"].removeprefix("http://").rsplit(":", 1)
    case_connect(host, port, "tcp")


def case_sockets():
    out = {}
    for name, fam, kind, proto in (
        ("raw", socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP),
        ("raw6", socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6),
        ("ping", socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP),
        ("sctp", socket.AF_INET, socket.SOCK_STREAM, 132),
        ("packet", 17, socket.SOCK_RAW, 0),
        ("netlink", 16, socket.SOCK_RAW, 0),
        ("vsock", 40, socket.SOCK_STREAM, 0),
        ("alg", 38, socket.SOCK_SEQPACKET, 0),
    ):
        out[name] = outcome(
            lambda fam=fam, kind=kind, proto=proto: socket.socket(fam, kind, proto).close()
        )
    report(**out)


def case_fill_tmp():
    written = 0
    chunk = b"x" * (1 << 20)
    try:
        with open("/tmp/fill", "wb") as f:
            while written < (1 << 34):
                f.write(chunk)
                f.flush()
                written += len(chunk)
    except OSError as e:
        report(written=written, error=errno.errorcode.get(e.errno))
        return
    report(written=written, error=None)


def case_memory_hog():
    hog = []
    while True:
        hog.append(bytearray(16 << 20))
        for i in range(0, len(hog[-1]), 4096):
            hog[-1][i] = 1


def case_fork_bomb(seconds):
    report(started=True)
    end = time.monotonic() + float(seconds)
    failures = 0
    while time.monotonic() < end:
        try:
            if os.fork() == 0:
                time.sleep(60)
                os._exit(0)
        except OSError:
            failures += 1
    report(fork_failures=failures)
    time.sleep(60)


def case_write_file_then_wait(path):
    with open(path, "w") as f:
        f.write("instance secret")
    report(written=path)
    sys.stdin.read()


if __name__ == "__main__":
    globals()["case_" + sys.argv[1]](*sys.argv[2:])
