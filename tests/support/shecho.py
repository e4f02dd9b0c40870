"""The shell-echo MCP server of the install tests, as an OCI image layer and a registry
manifest: dash, its libraries and tests/installer/shecho.sh (two tools, "hello" and
"wipe"; "hello" answers with an id written into the image), so a test knows which image
answered. Used by the install tests and the dashboard's journey."""

from __future__ import annotations

import os
from pathlib import Path

from gigmcp.sandbox import runtime
from tests.support import oci_images as images

SCRIPT = Path(__file__).resolve().parents[1] / "installer" / "shecho.sh"


def shecho_layer(image_id: str) -> bytes:
    """dash and its libraries, the server script, and an id the tool answers with."""
    plan = runtime.plan(("/bin/sh",), None)
    files = sorted(p for p in plan.ro_paths if os.path.isfile(p))
    entries = images.copy_host_tree(files, list(plan.symlinks))
    entries.append(images.file("server.sh", SCRIPT.read_bytes(), 0o755))
    entries.append(images.file("image-id", image_id + "\n"))
    return images.tar(entries)


def manifest(name: str, version: str, ref: str, digest: str, **extra: object) -> dict[str, object]:
    doc: dict[str, object] = {
        "schemaVersion": 1,
        "name": name,
        "version": version,
        "source": {"repo": "github.com/gigmcp/tests", "tag": f"v{version}"},
        "image": {"ref": ref, "digest": digest, "entrypoint": "/server.sh"},
        "tier": "sealed",
        "displayName": "Shell echo",
        "category": "dev-tools",
        "entitlements": {"egress": ["api.example.test"]},
        "tools": [{"name": "hello", "default": True}, {"name": "wipe", "default": False}],
    }
    doc.update(extra)
    return doc
