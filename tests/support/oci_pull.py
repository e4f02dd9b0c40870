"""What the OCI pull tests share: an image cache in a folder of its own, and pull options.

:class:`CacheBox` is an :class:`ImageCache` with its root, and a snapshot of what is in
it, so a test can assert a refused install left nothing (the ``box`` fixture of
tests/packages/oci/conftest.py makes one); ``plain_options`` are pull options for
registries on loopback over plain http, each listed explicitly.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from gigmcp.packages.oci.cache import ImageCache
from gigmcp.packages.oci.distribution import ClientOptions
from gigmcp.packages.oci.pull import PullOptions


@dataclass
class CacheBox:
    cache: ImageCache
    root: Path

    def snapshot(self) -> dict[str, list[str]]:
        return {
            name: sorted(os.listdir(self.root / name))
            for name in ("rootfs", "refs", "tmp", "blobs/sha256")
        }

    def assert_clean(self, before: dict[str, list[str]] | None = None) -> None:
        """Nothing left by a refused install: no root, no record, no staging, and no
        blob that was not there before."""
        empty = {"rootfs": [], "refs": [], "tmp": [], "blobs/sha256": []}
        assert self.snapshot() == (before or empty)


def plain_options(*hosts: str, **kw: object) -> PullOptions:
    """Options for loopback registries over plain http (explicitly listed, as in tests)."""
    client = ClientOptions(plain_http_registries=frozenset(hosts), read_timeout_s=10)
    return PullOptions(client=client, **kw)  # type: ignore[arg-type]
