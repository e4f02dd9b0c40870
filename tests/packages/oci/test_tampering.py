"""Tampered and hostile images: each refused with a clear error, nothing left behind.

The real registry verifies digests on upload, so it stores only honest blobs; what it
does not check (a manifest's claimed sizes, which blob a descriptor names, what is
inside a tar) is tampered with through it. Bytes that differ from their digest come
from the hostile loopback registry (``FakeRegistry``), standing for a compromised one.
After every refusal the cache holds no root, no record, no staging folder and no blob.
"""

from __future__ import annotations

import gzip
import json
import tarfile

import pytest

from gigmcp.packages.oci.errors import (
    ExtractError,
    ImageError,
    OciRegistryError,
    PlatformError,
    VerificationError,
)
from gigmcp.packages.oci.extract import ExtractLimits
from gigmcp.packages.oci.pull import install_image
from tests.support.oci_images import (
    FOREIGN_ARCH,
    FOREIGN_ELF,
    HOST_ELF,
    OCI_INDEX,
    OCI_MANIFEST,
    Entry,
    Pusher,
    app_layer,
    device,
    directory,
    elf_header,
    fifo,
    file,
    foreign_stub,
    hardlink,
    huge_header_tar,
    image,
    index,
    sha,
    single,
    symlink,
    tar,
)
from tests.support.oci_pull import CacheBox, plain_options
from tests.support.oci_registry import Reply, RunningRegistry, fake_registry


async def refused(
    host: str, repo: str, digest: str, box: CacheBox, error: type[ImageError], match: str,
    *, entry: str = "/app/server", **opts: object,
) -> str:  # fmt: skip
    with pytest.raises(error, match=match) as info:
        await install_image(
            f"{host}/{repo}", digest, entry, box.cache, options=plain_options(host, **opts)
        )
    box.assert_clean()
    return str(info.value)


# -- digests and sizes ---------------------------------------------------------------


async def test_index_bytes_that_do_not_match_the_pin(repo: str, box: CacheBox) -> None:
    honest = index([image([app_layer()])])
    with fake_registry() as fake:
        pinned = fake.serve(repo, honest)
        # The registry answers the pinned digest with another index (one it prefers).
        evil = index([image([app_layer(extra=[file("backdoor", "x")])])])
        fake.routes[f"/v2/{repo}/manifests/{pinned}"] = Reply(
            200, {"Content-Type": OCI_INDEX}, evil.index or b""
        )
        message = await refused(fake.host, repo, pinned, box, VerificationError,
                                "do not match the pinned digest")  # fmt: skip
        assert sha(evil.index or b"") in message
        assert not any("/blobs/" in p for p in fake.paths())  # nothing fetched past it


async def test_a_platform_manifest_that_does_not_match_the_index(repo: str, box: CacheBox) -> None:
    img = image([app_layer()])
    with fake_registry() as fake:
        pinned = fake.serve(repo, index([img]))
        # Same size, one layer swapped for another blob: only the digest can tell.
        layer = json.loads(img.manifest)["layers"][0]["digest"]
        changed = img.manifest.replace(layer.encode(), sha(b"evil layer").encode())
        assert len(changed) == len(img.manifest) and changed != img.manifest
        fake.routes[f"/v2/{repo}/manifests/{img.digest}"] = Reply(
            200, {"Content-Type": OCI_MANIFEST}, changed
        )
        await refused(fake.host, repo, pinned, box, VerificationError,
                      f"manifest {img.digest}: the registry's bytes do not match")  # fmt: skip


async def test_a_layer_served_with_altered_bytes(repo: str, box: CacheBox) -> None:
    layer = app_layer()
    img = image([tar([file("lib/libc.so", "good")]), layer])
    with fake_registry() as fake:
        pinned = fake.serve(repo, index([img]))
        altered = bytearray(layer)
        altered[len(altered) // 2] ^= 0xFF  # same size, one bit pattern changed
        fake.routes[f"/v2/{repo}/blobs/{sha(layer)}"] = Reply(200, {}, bytes(altered))
        await refused(fake.host, repo, pinned, box, VerificationError,
                      f"blob {sha(layer)}: the registry's bytes do not match the digest")  # fmt: skip


async def test_a_config_served_with_altered_bytes(repo: str, box: CacheBox) -> None:
    img = image([app_layer()])
    config_digest = json.loads(img.manifest)["config"]["digest"]
    with fake_registry() as fake:
        pinned = fake.serve(repo, index([img]))
        fake.routes[f"/v2/{repo}/blobs/{config_digest}"] = Reply(
            200, {}, img.blobs[config_digest].replace(b'"linux"', b'"LINUX"')
        )
        await refused(fake.host, repo, pinned, box, VerificationError, "do not match the digest")
        assert not any(sha(app_layer()) in p for p in fake.paths())


async def test_a_descriptor_that_understates_a_layers_size(
    registry: RunningRegistry, pusher: Pusher, repo: str, box: CacheBox
) -> None:
    # An honest blob in the real registry, named by a descriptor with the right digest
    # but a smaller size: refused as soon as more bytes than declared arrive.
    layer = app_layer()
    digest = pusher.push(repo, index([image([layer], layer_sizes={0: len(layer) - 7})]))
    await refused(registry.host, repo, digest, box, VerificationError,
                  "larger than its descriptor says")  # fmt: skip


async def test_a_descriptor_that_overstates_a_layers_size(
    registry: RunningRegistry, pusher: Pusher, repo: str, box: CacheBox
) -> None:
    layer = app_layer()
    digest = pusher.push(repo, index([image([layer], layer_sizes={0: len(layer) + 7})]))
    await refused(registry.host, repo, digest, box, VerificationError,
                  f"ended after {len(layer)} bytes; its descriptor says {len(layer) + 7}")  # fmt: skip


async def test_an_index_entry_with_the_wrong_size(
    registry: RunningRegistry, pusher: Pusher, repo: str, box: CacheBox
) -> None:
    img = image([app_layer()])
    images = index([img])
    doc = json.loads(images.index or b"")
    doc["manifests"][0]["size"] += 1
    images.index = json.dumps(doc).encode()
    digest = pusher.push(repo, images)
    await refused(registry.host, repo, digest, box, VerificationError,
                  f"is {len(img.manifest)} bytes; its descriptor says {len(img.manifest) + 1}")  # fmt: skip


async def test_a_layer_swapped_for_another_honest_blob(
    registry: RunningRegistry, pusher: Pusher, repo: str, box: CacheBox
) -> None:
    # The manifest names another (honest, stored) blob where the config's diff_id says
    # what the layer must contain: the swap is caught after decompression.
    good, other = app_layer(), app_layer(extra=[file("backdoor", "x")])
    pusher.blob(repo, other)
    img = image([other], diff_ids=[sha(gzip.decompress(good))])
    digest = pusher.push(repo, index([img]))
    await refused(registry.host, repo, digest, box, ExtractError,
                  "does not match the image config's diff_id")  # fmt: skip


async def test_a_digest_the_registry_does_not_have(
    registry: RunningRegistry, repo: str, box: CacheBox
) -> None:
    message = await refused(registry.host, repo, sha(b"nothing"), box, OciRegistryError,
                            "the registry answered 404 MANIFEST_UNKNOWN")  # fmt: skip
    assert repo in message


# -- hostile tar contents, through the real registry ----------------------------------


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([file("../../../etc/cron.d/evil", "* * * * * root sh\n")], "contains '..'"),
        ([file("/etc/cron.d/evil", "x")], "is an absolute path"),
        ([hardlink("app/passwd", "../../../../etc/passwd")], "hard link out of the image"),
        ([hardlink("app/shadow", "/etc/shadow")], "hard link to the absolute path"),
        ([device("dev/kmem")], "device node"),
        ([device("dev/sda", tarfile.BLKTYPE)], "device node"),
        ([fifo("run/fifo")], "fifo"),
    ],
)
async def test_hostile_members_are_refused(
    registry: RunningRegistry, pusher: Pusher, repo: str, box: CacheBox,
    entries: list[Entry], message: str,
) -> None:  # fmt: skip
    digest = pusher.push(repo, index([image([tar(entries), app_layer()])]))
    await refused(registry.host, repo, digest, box, ExtractError, message)


async def test_a_symlink_out_then_a_write_through_it_in_a_later_layer(
    registry: RunningRegistry, pusher: Pusher, repo: str, box: CacheBox
) -> None:
    first = tar([directory("usr"), symlink("usr/lib", "/etc")])
    second = tar([file("usr/lib/cron.d/evil", "x")])
    digest = pusher.push(repo, index([image([first, second, app_layer()])]))
    await refused(registry.host, repo, digest, box, ExtractError,
                  "written through the symlink 'usr/lib'")  # fmt: skip


async def test_a_huge_file(
    registry: RunningRegistry, pusher: Pusher, repo: str, box: CacheBox
) -> None:
    digest = pusher.push(
        repo, index([image([huge_header_tar("data/huge", 64 * 1024**3), app_layer()])])
    )
    await refused(registry.host, repo, digest, box, ExtractError,
                  r"'data/huge' is 68719476736 bytes, over the \d+-byte file cap")  # fmt: skip


async def test_a_file_over_a_configured_cap(
    registry: RunningRegistry, pusher: Pusher, repo: str, box: CacheBox
) -> None:
    digest = pusher.push(repo, index([image([tar([file("big", b"z" * 300_000)]), app_layer()])]))
    await refused(registry.host, repo, digest, box, ExtractError, "over the 100000-byte file cap",
                  limits=ExtractLimits(max_file_bytes=100_000))  # fmt: skip


async def test_blob_and_layer_count_caps_refuse_before_downloading(
    repo: str, box: CacheBox
) -> None:
    big = tar([file("big", b"q" * 50_000)], compress=False)
    img = image([big, app_layer()], layer_media=["application/vnd.oci.image.layer.v1.tar",
                                                  "application/vnd.oci.image.layer.v1.tar+gzip"])  # fmt: skip
    with fake_registry() as fake:
        pinned = fake.serve(repo, index([img]))
        await refused(fake.host, repo, pinned, box, VerificationError,
                      f"blob {sha(big)} is {len(big)} bytes, over the 10000-byte cap",
                      max_blob_bytes=10_000)  # fmt: skip
        await refused(fake.host, repo, pinned, box, VerificationError,
                      "the image has 2 layers, over the cap of 1", max_layers=1)  # fmt: skip
        assert not any(sha(big) in p for p in fake.paths())


async def test_a_zstd_layer_is_refused_before_it_is_downloaded(repo: str, box: CacheBox) -> None:
    blob = b"\x28\xb5\x2f\xfd" + b"\0" * 64
    img = image(
        [blob], layer_media="application/vnd.oci.image.layer.v1.tar+zstd", diff_ids=[sha(b"")]
    )
    with fake_registry() as fake:
        pinned = fake.serve(repo, index([img]))
        await refused(fake.host, repo, pinned, box, ExtractError,
                      "zstd-compressed, which is not supported .* rebuild the image with gzip")  # fmt: skip
        assert not any(sha(blob) in p for p in fake.paths())


# -- platforms -----------------------------------------------------------------------


async def test_an_index_with_only_a_foreign_architecture(
    registry: RunningRegistry, pusher: Pusher, repo: str, box: CacheBox
) -> None:
    digest = pusher.push(repo, index([foreign_stub()]))
    await refused(registry.host, repo, digest, box, PlatformError,
                  f"has no manifest for this host's platform linux/.* offers: linux/{FOREIGN_ARCH}")  # fmt: skip


async def test_a_pinned_foreign_manifest_is_refused_before_its_layers(
    repo: str, box: CacheBox
) -> None:
    foreign = foreign_stub()
    with fake_registry() as fake:
        pinned = fake.serve(repo, single(foreign))
        await refused(fake.host, repo, pinned, box, PlatformError,
                      f"image is built for linux/{FOREIGN_ARCH} \\({FOREIGN_ELF}\\), this host is")  # fmt: skip
        layer_digest = json.loads(foreign.manifest)["layers"][0]["digest"]
        assert not any(layer_digest in p for p in fake.paths())


async def test_an_index_that_mislabels_a_foreign_image(
    registry: RunningRegistry, pusher: Pusher, repo: str, box: CacheBox
) -> None:
    # The index says "this host's arch" but the config inside says otherwise.
    liar = image([app_layer(FOREIGN_ARCH)], arch=FOREIGN_ARCH)
    images = index([liar])
    doc = json.loads(images.index or b"")
    doc["manifests"][0]["platform"]["architecture"] = {"arm64": "amd64", "amd64": "arm64"}[
        FOREIGN_ARCH
    ]
    images.index = json.dumps(doc).encode()
    digest = pusher.push(repo, images)
    await refused(registry.host, repo, digest, box, PlatformError,
                  f"image is built for linux/{FOREIGN_ARCH}")  # fmt: skip


async def test_a_foreign_elf_entrypoint_in_a_host_labelled_image(
    registry: RunningRegistry, pusher: Pusher, repo: str, box: CacheBox
) -> None:
    img = image([tar([directory("app"), file("app/server", elf_header(FOREIGN_ARCH), 0o755)])])
    digest = pusher.push(repo, index([img, foreign_stub()]))
    await refused(registry.host, repo, digest, box, PlatformError,
                  f"image is built for {FOREIGN_ELF}, this host is {HOST_ELF}")  # fmt: skip


async def test_an_entrypoint_missing_from_the_image(
    registry: RunningRegistry, pusher: Pusher, repo: str, box: CacheBox
) -> None:
    digest = pusher.push(repo, index([image([app_layer()])]))
    await refused(registry.host, repo, digest, box, PlatformError,
                  "entrypoint /app/other is not in the image", entry="/app/other")  # fmt: skip


async def test_a_refusal_leaves_earlier_installs_untouched(
    registry: RunningRegistry, pusher: Pusher, repo: str, box: CacheBox
) -> None:
    good = pusher.push(repo, index([image([app_layer()])]), tag="good")
    await install_image(f"{registry.host}/{repo}", good, "/app/server", box.cache,
                        options=plain_options(registry.host))  # fmt: skip
    before = box.snapshot()
    bad = pusher.push(repo, index([image([tar([file("../x", "y")]), app_layer()])]), tag="bad")
    with pytest.raises(ExtractError):
        await install_image(f"{registry.host}/{repo}", bad, "/app/server", box.cache,
                            options=plain_options(registry.host))  # fmt: skip
    box.assert_clean(before)
