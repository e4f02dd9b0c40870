"""An extracted image as the jail's root: its files, its command, and nothing of the
host's; the jail's own /etc entries, /proc, /dev and tmpfs on top. The image here is
made by the test from the host's `ls` and its libraries, so no registry is needed;
tests/packages/oci/test_run.py runs one pulled from a registry."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator

import pytest

from gigmcp.core.instances import InstanceKey
from gigmcp.core.launch import LaunchSpec
from gigmcp.errors import LaunchError
from gigmcp.sandbox import runtime
from gigmcp.sandbox.launcher import SandboxConfig, SandboxLauncher

pytestmark = pytest.mark.root


@pytest.fixture
def image() -> Iterator[str]:
    # Not under pytest's tmp dir: uid 65534 (which runs bwrap) must be able to read it.
    root = tempfile.mkdtemp(prefix="gigimg-")
    os.chmod(root, 0o755)
    try:
        paths = {
            p for tool in ("ls", "cat") for p in runtime.plan((f"/usr/bin/{tool}",), None).ro_paths
        }
        plan = runtime.plan(("/usr/bin/ls",), None)
        for path in sorted(paths):
            if path == "/bin/sh" or (
                path.startswith("/usr/bin/") and path.rsplit("/", 1)[1] not in {"ls", "cat"}
            ):
                continue  # no shell in this image: the jail must not need one
            dest = root + path
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            shutil.copy2(os.path.realpath(path), dest)
        for target, link in plan.symlinks:
            os.symlink(target, root + link)
        os.makedirs(f"{root}/etc")
        with open(f"{root}/etc/os-release", "w") as f:
            f.write("NAME=gigmcp-test-image\n")
        with open(f"{root}/etc/passwd", "w") as f:
            f.write("image-user:x:0:0::/:/bin/false\n")  # must be shadowed by the jail's
        os.makedirs(f"{root}/data")
        with open(f"{root}/data/hello", "w") as f:
            f.write("from the image\n")
        for dirpath, dirs, files in os.walk(root):
            for name in dirs + files:
                p = os.path.join(dirpath, name)
                if not os.path.islink(p):
                    os.chmod(p, 0o755)
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
async def sandbox() -> AsyncIterator[SandboxLauncher]:
    launcher = SandboxLauncher(SandboxConfig(subnet="10.213.0.0/24", pool_size=1))
    await launcher.start()
    try:
        yield launcher
    finally:
        await launcher.aclose()


async def run(sandbox: SandboxLauncher, image: str, *command: str) -> tuple[int, str, str]:
    proc = await sandbox.launch(LaunchSpec(InstanceKey(1, "image"), command, rootfs=image))
    try:
        out = (await proc.stdout.read()).decode()
        err = (await proc.stderr.read()).decode()
        code = await proc.wait()
    finally:
        proc.kill()
        await proc.wait()
        await proc.cleanup()
    return code, out, err


async def test_the_image_is_the_root_and_the_host_is_absent(
    sandbox: SandboxLauncher, image: str
) -> None:
    code, out, err = await run(sandbox, image, "ls", "-a", "/")
    assert code == 0, err
    entries = set(out.split())
    assert {"data", "etc", "usr", "proc", "dev", "tmp", "home"} <= entries
    assert not entries & {"work", "root", "var", "opt", "srv"}


async def test_image_files_are_readable_and_the_jails_etc_wins(
    sandbox: SandboxLauncher, image: str
) -> None:
    code, out, err = await run(sandbox, image, "ls", "/data", "/etc")
    assert code == 0, err
    assert "hello" in out and "os-release" in out and "passwd" in out
    # The image's passwd is shadowed: the command runs as the jail's user, by name.
    code, out, err = await run(sandbox, image, "ls", "-ln", "/data/hello")
    assert code == 0, err


async def test_a_command_missing_from_the_image_is_refused_clearly(
    sandbox: SandboxLauncher, image: str
) -> None:
    with pytest.raises(LaunchError, match="command not found in the image: python3"):
        await sandbox.launch(LaunchSpec(InstanceKey(1, "image"), ("python3",), rootfs=image))


def test_image_links_cannot_point_the_resolver_outside(image: str) -> None:
    # An absolute link inside the image resolves inside the image, never on the host.
    os.symlink("/usr/bin/python3", f"{image}/usr/bin/sneaky")
    with pytest.raises(runtime.RuntimeScanError, match="not found in the image"):
        runtime.plan_rootfs(image, ("sneaky",))


@pytest.mark.parametrize("root", ["/", "/usr", "/etc", "/tmp", "/./"])
def test_attack_the_hosts_own_folders_are_not_an_image(root: str) -> None:
    with pytest.raises(runtime.RuntimeScanError, match="host system folder"):
        runtime.plan_rootfs(root, ("/bin/sh",))
