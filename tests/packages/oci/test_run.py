"""An image built here, pushed to the real registry, installed, and run in the real
sandbox with its root as ``/``: the whole path from registry to jail.

The image is made as tests/sandbox/test_rootfs.py makes its root: the host's ``cat``
(a stdio program: it answers each line it is sent) and ``ls`` with the libraries they
load, the merged-/usr links, and a second layer that adds the entrypoint and whites
out a file of the first.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest

from gigmcp.core.instances import InstanceKey
from gigmcp.core.launch import LaunchSpec
from gigmcp.packages.oci.pull import install_image
from gigmcp.sandbox import runtime
from gigmcp.sandbox.launcher import SandboxConfig, SandboxLauncher
from tests.support.oci_images import (
    Pusher,
    copy_host_tree,
    directory,
    file,
    foreign_stub,
    image,
    index,
    tar,
)
from tests.support.oci_pull import CacheBox, plain_options
from tests.support.oci_registry import RunningRegistry

pytestmark = pytest.mark.root


def runnable_image() -> tuple[bytes, bytes]:
    """(base layer, app layer) of an image whose /app/server is the host's cat."""
    paths = {
        p for tool in ("cat", "ls") for p in runtime.plan((f"/usr/bin/{tool}",), None).ro_paths
    }
    keep = [
        p for p in sorted(paths)
        if p != "/bin/sh" and not (p.startswith("/usr/bin/") and p.rsplit("/", 1)[1] not in {"ls", "cat"})
    ]  # fmt: skip
    links = list(runtime.plan(("/usr/bin/ls",), None).symlinks)
    base = tar([
        *copy_host_tree(keep, links),
        file("etc/os-release", "NAME=gigmcp-oci-test\n"),
        directory("data"),
        file("data/keep", "kept\n"),
        file("data/gone", "whited out by the next layer\n"),
    ])  # fmt: skip
    with open("/usr/bin/cat", "rb") as f:
        server = f.read()
    app = tar([directory("app"), file("app/server", server, 0o755), file("data/.wh.gone")])
    return base, app


@pytest.fixture
async def sandbox() -> AsyncIterator[SandboxLauncher]:
    launcher = SandboxLauncher(SandboxConfig(subnet="10.214.5.0/24", pool_size=0))
    await launcher.start()
    try:
        yield launcher
    finally:
        await launcher.aclose()


async def run(
    sandbox: SandboxLauncher, rootfs: str, command: tuple[str, ...], stdin: bytes
) -> tuple[int, bytes, bytes]:
    proc = await sandbox.launch(LaunchSpec(InstanceKey(1, "oci-image"), command, rootfs=rootfs))
    try:
        proc.stdin.write(stdin)
        await proc.stdin.drain()
        proc.stdin.close()
        async with asyncio.timeout(20):
            out = await proc.stdout.read()
            err = await proc.stderr.read()
            code = await proc.wait()
    finally:
        proc.kill()
        await proc.wait()
        await proc.cleanup()
    return code, out, err


async def test_an_installed_image_runs_in_the_sandbox(
    registry: RunningRegistry, pusher: Pusher, repo: str, box: CacheBox, sandbox: SandboxLauncher
) -> None:
    base, app = runnable_image()
    digest = pusher.push(repo, index([image([base, app]), foreign_stub()]), chunked=True)
    root = await install_image(
        f"{registry.host}/{repo}",
        digest,
        "/app/server",
        box.cache,
        options=plain_options(registry.host),
    )

    # The entrypoint is a stdio program: what it reads, it answers, from inside the jail.
    request = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping"}).encode() + b"\n"
    code, out, err = await run(sandbox, str(root), ("/app/server",), request)
    assert code == 0, err
    assert json.loads(out) == {"jsonrpc": "2.0", "id": 1, "method": "ping"}

    # The image's own files are its root; the whited-out one is gone; the host is absent.
    code, out, err = await run(sandbox, str(root), ("ls", "/data"), b"")
    assert code == 0, err
    assert out == b"keep\n"
    code, out, err = await run(sandbox, str(root), ("ls", "/"), b"")
    assert code == 0, err
    entries = set(out.decode().split())
    assert {"app", "data", "etc", "usr"} <= entries
    assert not entries & {"work", "root", "var", "opt"}
    code, out, err = await run(sandbox, str(root), ("/app/server", "/etc/os-release"), b"")
    assert code == 0 and out == b"NAME=gigmcp-oci-test\n", err
