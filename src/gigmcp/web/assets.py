"""The dashboard's static files: its stylesheet, its small script and the vendored htmx.

Owns naming each file by its content (``/static/app.3f2a9c1b0d4e.css``), so a page can
let browsers keep it for a year and a new release is fetched at once; the Subresource
Integrity value of each script; and answering ``/static/<hashed name>`` from memory. The
files are read once, at start-up. It must never serve a file that is not in the
package's static folder (a name is looked up in a table, never joined to a path), and
never serve a vendored file whose content differs from the hash VENDOR.toml pins.
"""

from __future__ import annotations

import base64
import hashlib
import mimetypes
import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable

from gigmcp.errors import ConfigurationError

YEAR = 365 * 24 * 3600
TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}


@dataclass(frozen=True, slots=True)
class Asset:
    name: str  # as the templates ask for it: "app.css", "vendor/htmx-2.0.11.min.js"
    url: str  # /static/<stem>.<hash><suffix>
    body: bytes
    content_type: str
    integrity: str  # sha384-…


@dataclass(frozen=True, slots=True)
class Assets:
    by_name: dict[str, Asset]
    by_url: dict[str, Asset]

    def url(self, name: str) -> str:
        return self.by_name[name].url

    def integrity(self, name: str) -> str:
        return self.by_name[name].integrity


@cache
def assets() -> Assets:
    return load(resources.files("gigmcp.web") / "static")


def load(root: Traversable) -> Assets:
    pinned = _pinned(root)
    by_name: dict[str, Asset] = {}
    for name in ("app.css", "app.js", *pinned):
        body = (root / name).read_bytes()
        digest = base64.b64encode(hashlib.sha384(body).digest()).decode()
        if name in pinned and pinned[name] != digest:
            raise ConfigurationError(f"static/{name} differs from the hash VENDOR.toml pins")
        stem, dot, suffix = name.rpartition("/")[2].rpartition(".")
        short = hashlib.sha256(body).hexdigest()[:12]
        url = f"/static/{stem}.{short}{dot}{suffix}"
        kind = (
            TYPES.get(f".{suffix}") or mimetypes.guess_type(name)[0] or "application/octet-stream"
        )
        by_name[name] = Asset(name, url, body, kind, f"sha384-{digest}")
    return Assets(by_name, {a.url: a for a in by_name.values()})


def _pinned(root: Traversable) -> dict[str, str]:
    manifest = tomllib.loads((root / "vendor" / "VENDOR.toml").read_text())
    return {f"vendor/{f['name']}": f["sha384"] for f in manifest["file"]}
