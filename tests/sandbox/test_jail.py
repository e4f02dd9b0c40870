"""What the jail is handed: sealed data files and the order of its mounts."""

from __future__ import annotations

import os

import pytest

from gigmcp.core.launch import JailLimits
from gigmcp.sandbox import jail


def test_attack_a_pooled_jails_etc_cannot_be_rewritten_before_it_is_used() -> None:
    # A zygote holds these descriptors until its server arrives; anyone who can open
    # /proc/<pid>/fd/N (root here, stronger than the same uid) still cannot change them.
    fd = jail.memfd("passwd", b"sandbox:x:65534:65534::/home/sandbox:/usr/sbin/nologin\n")
    try:
        other = os.open(f"/proc/self/fd/{fd}", os.O_RDWR)
        try:
            with pytest.raises(PermissionError):
                os.write(other, b"root::0:0::/:/bin/sh\n")
            with pytest.raises(PermissionError):
                os.ftruncate(other, 0)
            with pytest.raises(PermissionError):
                os.pwrite(other, b"x" * 4096, 1 << 20)  # grow
        finally:
            os.close(other)
        assert os.pread(fd, 7, 0) == b"sandbox"
        assert os.lseek(fd, 0, os.SEEK_CUR) == 0, "bwrap reads from the start"
    finally:
        os.close(fd)


def test_dev_is_read_only_but_dev_shm_is_a_sized_tmpfs() -> None:
    plan = jail.RuntimePlan(
        argv=("/bin/true",), kind="binary", ro_paths=(), symlinks=(), workdir=None
    )
    args = jail.bwrap_args(plan, {}, JailLimits(tmp_bytes=1 << 20), {}, 3, 4)
    shm = args.index("/dev/shm")
    assert args[shm - 1] == "--tmpfs" and args[shm - 5 : shm - 3] == ["--size", str(1 << 20)]
    assert args.index("--dev") < shm < args.index("--remount-ro")
    remounts = [args[i + 1] for i, a in enumerate(args) if a == "--remount-ro"]
    assert remounts == ["/dev", "/"]
