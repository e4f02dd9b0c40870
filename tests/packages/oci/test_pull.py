"""Installing images from the real registry on loopback: the index by digest, this
host's manifest, verified blobs, the token challenge, the cache and its removal."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
from pathlib import Path

import httpx2

from gigmcp.packages.oci.pull import install_image
from tests.support.oci_images import (
    HOST_ARCH,
    Pusher,
    app_layer,
    file,
    foreign_stub,
    image,
    index,
    sha,
    single,
    tar,
)
from tests.support.oci_pull import CacheBox, plain_options
from tests.support.oci_registry import SERVICE, RunningRegistry, fake_registry


async def install(reg: str, repo: str, digest: str, box: CacheBox, **kw: object) -> Path:
    opts = kw.pop("options", None) or plain_options(reg)
    return await install_image(
        f"{reg}/{repo}", digest, "/app/server", box.cache, options=opts, **kw
    )  # type: ignore[arg-type]


async def test_an_index_installs_this_hosts_image(
    registry: RunningRegistry, pusher: Pusher, repo: str, box: CacheBox
) -> None:
    base = tar([file("etc/os-release", "NAME=test\n"), file("data/hello", "hi")])
    mine = image([base, app_layer()])
    foreign = foreign_stub()
    digest = pusher.push(repo, index([foreign, mine]))
    seen: list[tuple[int, int]] = []
    root = await install(
        registry.host, repo, digest, box, progress=lambda d, t: seen.append((d, t))
    )

    assert root == box.cache.rootfs(digest) == box.root / "rootfs" / digest.split(":")[1]
    assert (root / "data/hello").read_text() == "hi"
    assert (root / "app/server").read_bytes()[:4] == b"\x7fELF"
    # Every blob of this host's image is cached, verified; none of the foreign one's.
    assert set(os.listdir(box.root / "blobs/sha256")) == {d.split(":")[1] for d in mine.blobs}
    for name in os.listdir(box.root / "blobs/sha256"):
        assert sha((box.root / "blobs/sha256" / name).read_bytes()) == f"sha256:{name}"
    record = json.loads((box.root / "refs" / f"{digest.split(':')[1]}.json").read_text())
    assert sorted(record["blobs"]) == sorted(mine.blobs)
    total = sum(len(b) for b in mine.blobs.values())
    assert seen[0] == (0, total) and seen[-1] == (total, total)
    assert all(a[0] <= b[0] for a, b in itertools.pairwise(seen))
    assert os.listdir(box.root / "tmp") == []


async def test_a_pinned_single_platform_manifest_installs(
    registry: RunningRegistry, pusher: Pusher, repo: str, box: CacheBox
) -> None:
    digest = pusher.push(repo, single(image([app_layer()])), chunked=True)
    root = await install(registry.host, repo, digest, box)
    assert (root / "app/server").is_file()


async def test_the_token_challenge_with_the_real_registry(
    token_registry: RunningRegistry, repo: str, box: CacheBox
) -> None:
    assert token_registry.token_server is not None
    p = Pusher(token_registry.url, token_registry.token_server.pusher)
    try:
        digest = p.push(repo, index([image([app_layer()]), foreign_stub()]), chunked=True)
    finally:
        p.close()
    # The registry really refuses anonymous reads without a token.
    direct = httpx2.get(f"{token_registry.url}/v2/{repo}/manifests/{digest}", trust_env=False)
    assert direct.status_code == 401
    assert direct.headers["www-authenticate"].startswith("Bearer realm=")

    before = len(token_registry.token_server.requests)
    root = await install(token_registry.host, repo, digest, box)
    assert (root / "app/server").is_file()
    asked = token_registry.token_server.requests[before:]
    # One anonymous token, for pulling this repository only, reused for every request.
    assert len(asked) == 1
    assert asked[0].anonymous and asked[0].service == SERVICE
    assert asked[0].scopes == [f"repository:{repo}:pull"]


async def test_a_cached_image_installs_again_without_any_network(
    registry: RunningRegistry, pusher: Pusher, repo: str, box: CacheBox
) -> None:
    images = index([image([app_layer()]), foreign_stub()])
    with fake_registry() as fake:
        digest = fake.serve(repo, images)
        first = await install(fake.host, repo, digest, box)
        assert len(fake.seen) >= 4  # index, manifest, config, layer
        count = len(fake.seen)
        again = await install(fake.host, repo, digest, box)
        assert again == first and len(fake.seen) == count
    # The registry is gone: a cached image still installs.
    assert await install(fake.host, repo, digest, box) == first


async def test_concurrent_installs_of_one_image_share_one_root(
    registry: RunningRegistry, pusher: Pusher, repo: str, box: CacheBox
) -> None:
    digest = pusher.push(repo, index([image([app_layer()])]))
    roots = await asyncio.gather(*(install(registry.host, repo, digest, box) for _ in range(3)))
    assert len(set(roots)) == 1
    assert os.listdir(box.root / "rootfs") == [digest.split(":")[1]]
    assert os.listdir(box.root / "tmp") == []


async def test_blobs_are_shared_reused_and_rechecked(
    registry: RunningRegistry, pusher: Pusher, repo: str, box: CacheBox
) -> None:
    base = tar([file("usr/share/base", "b" * 5000)])
    a = image([base, app_layer()], config_extra={"author": "a"})
    b = image([base, app_layer(extra=[file("b", "b")])], config_extra={"author": "b"})
    da = pusher.push(repo, index([a]), tag="a")
    db = pusher.push(repo, index([b]), tag="b")
    await install(registry.host, repo, da, box)
    seen: list[tuple[int, int]] = []
    await install(registry.host, repo, db, box, progress=lambda d, t: seen.append((d, t)))
    # The shared base layer came from the cache, not the network.
    assert seen[-1][1] == sum(len(v) for k, v in b.blobs.items() if k not in a.blobs)

    # A damaged cached blob is not trusted: it is fetched again.
    (box.root / "blobs/sha256" / sha(base).split(":")[1]).write_bytes(b"rot" * 10)
    c = image([base, app_layer()], config_extra={"author": "c"})
    dc = pusher.push(repo, index([c]), tag="c")
    seen.clear()
    root = await install(registry.host, repo, dc, box, progress=lambda d, t: seen.append((d, t)))
    assert (root / "usr/share/base").read_text() == "b" * 5000
    assert seen[-1][1] >= len(base)
    assert (box.root / "blobs/sha256" / sha(base).split(":")[1]).read_bytes() == base


async def test_remove_drops_the_root_and_the_blobs_no_one_else_uses(
    registry: RunningRegistry, pusher: Pusher, repo: str, box: CacheBox
) -> None:
    base = tar([file("shared", "s")])
    a = image([base, app_layer(extra=[file("a", "a")])])
    b = image([base, app_layer(extra=[file("b", "b")])])
    da = pusher.push(repo, index([a]), tag="a")
    db = pusher.push(repo, index([b]), tag="b")
    await install(registry.host, repo, da, box)
    await install(registry.host, repo, db, box)

    assert box.cache.remove(da)
    assert box.cache.installed(da) is None and box.cache.installed(db) is not None
    left = set(os.listdir(box.root / "blobs/sha256"))
    assert left == {d.split(":")[1] for d in b.blobs}  # the shared base layer stays
    assert box.cache.remove(db)
    assert not box.cache.remove(db)
    box.assert_clean()


async def test_docker_media_types_install_too(
    registry: RunningRegistry, pusher: Pusher, repo: str, box: CacheBox
) -> None:
    img = image([app_layer()], layer_media="application/vnd.docker.image.rootfs.diff.tar.gzip")
    manifest = json.loads(img.manifest)
    manifest["mediaType"] = "application/vnd.docker.distribution.manifest.v2+json"
    manifest["config"]["mediaType"] = "application/vnd.docker.container.image.v1+json"
    data = json.dumps(manifest).encode()
    for blob in img.blobs.values():
        pusher.blob(repo, blob)
    pusher.manifest(repo, data, manifest["mediaType"], sha(data))
    lst = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
        "manifests": [{"mediaType": manifest["mediaType"], "digest": sha(data), "size": len(data),
                       "platform": {"os": "linux", "architecture": HOST_ARCH}}],
    }  # fmt: skip
    lst_data = json.dumps(lst).encode()
    pusher.manifest(repo, lst_data, lst["mediaType"], "latest")
    root = await install(registry.host, repo, sha(lst_data), box)
    assert (root / "app/server").is_file()
