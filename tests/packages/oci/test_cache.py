"""The cache's own guarantees, on a real folder: all-or-nothing commits, staging areas
that never outlive a failure, and names that cannot point outside the cache."""

from __future__ import annotations

import os
import stat

import pytest

from gigmcp.packages.oci.cache import Staging
from gigmcp.packages.oci.errors import BadReference
from tests.support.oci_images import sha
from tests.support.oci_pull import CacheBox

DIGEST = sha(b"an image")


def test_layout_and_modes(box: CacheBox) -> None:
    def mode(rel: str) -> int:
        return stat.S_IMODE(os.stat(box.root / rel).st_mode)

    # The jail's user must reach rootfs/<digest>/, and nothing else of the cache.
    assert mode(".") == 0o755 and mode("rootfs") == 0o755
    assert mode("blobs") == 0o700 and mode("blobs/sha256") == 0o700
    assert mode("refs") == 0o700 and mode("tmp") == 0o700


def test_a_failed_install_leaves_no_staging_area(box: CacheBox) -> None:
    def half_install() -> None:
        with box.cache.staging() as stage:
            (stage.rootfs / "half-written").write_text("x")
            stage.blob(DIGEST).write_bytes(b"blob")
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        half_install()
    box.assert_clean()
    assert box.cache.installed(DIGEST) is None


def test_commit_is_one_rename_and_a_second_commit_keeps_the_first(box: CacheBox) -> None:
    blob = b"layer bytes"
    for content in ("first", "second"):
        with box.cache.staging() as stage:
            (stage.rootfs / "who").write_text(content)
            stage.blob(sha(blob)).write_bytes(blob)
            root = box.cache.commit(DIGEST, stage, [sha(blob)])
    assert (root / "who").read_text() == "first"
    assert box.cache.installed(DIGEST) == root
    assert box.cache.verified_blob(sha(blob), len(blob)) is not None
    assert os.listdir(box.root / "tmp") == []


def test_a_damaged_or_resized_blob_is_not_served(box: CacheBox) -> None:
    blob = b"good bytes"
    path = box.cache.blob(sha(blob))
    path.write_bytes(blob)
    assert box.cache.verified_blob(sha(blob), len(blob) + 1) is None
    assert not path.exists()  # dropped: it will be fetched again
    path.write_bytes(b"bad bytes!")
    assert box.cache.verified_blob(sha(blob), len(blob)) is None
    assert not path.exists()


def test_sweep_removes_what_a_crash_left(box: CacheBox) -> None:
    stage = box.cache.begin()
    (stage.rootfs / "x").write_text("left by a crash")
    (box.root / "tmp" / "stray-file").write_text("x")
    box.cache.sweep()
    box.assert_clean()


@pytest.mark.parametrize("digest", ["sha256:../../../etc", "sha256:" + "A" * 64, "md5:abc", ""])
def test_names_that_are_not_digests_never_reach_the_disk(box: CacheBox, digest: str) -> None:
    with pytest.raises(BadReference):
        box.cache.remove(digest)
    with pytest.raises(BadReference):
        box.cache.rootfs(digest)


def test_staging_areas_of_another_cache_are_not_discarded(box: CacheBox) -> None:
    elsewhere = box.root.parent / "not-the-cache"
    elsewhere.mkdir()
    with pytest.raises(ValueError, match="not a staging area of this cache"):
        box.cache.discard(Staging(elsewhere))
    assert elsewhere.is_dir()
