"""The manifest hash and the runtime hash, byte-compatible with the reference.

Both are SHA-256 (hex) over Go's ``encoding/json.Marshal`` of the parsed manifest
(``gostruct`` gives the field order and omissions, ``gojson`` the exact bytes), so
YAML formatting never changes them and a hash computed here equals the one the reference
registry and its gateway compute for the same manifest.

* ``manifest_hash``: everything; any change moves it.
* ``runtime_hash``: the basis for consent. It clears what does not change what runs or
  what it may do — ``image.digest`` (integrity comes from the pinned digest itself),
  ``displayName``, ``description``, ``category``, ``icon`` and every credential's
  ``vendor`` — and keeps everything else, so a field added later is covered unless it is
  cleared here on purpose. ``packages`` (extension) is kept whole, integrity included:
  a different artifact under the same version is a different thing to consent to.

Owns the two functions and ``canonical_json``. It must never hash anything but the
parsed value (never the raw YAML), and never mutate the manifest it is given.
"""

from __future__ import annotations

import dataclasses
import hashlib

from gigmcp.registry import gojson, gostruct
from gigmcp.registry.manifest import Manifest


def canonical_json(m: Manifest) -> bytes:
    """Go's ``json.Marshal`` of the manifest, byte for byte."""
    return gojson.encode(gostruct.to_plain(m))


def manifest_hash(m: Manifest) -> str:
    return hashlib.sha256(canonical_json(m)).hexdigest()


def runtime_view(m: Manifest) -> Manifest:
    """The manifest with the presentation and self-referential fields cleared."""
    return dataclasses.replace(
        m,
        image=dataclasses.replace(m.image, digest=""),
        display_name="",
        description="",
        category="",
        icon="",
        credentials=tuple(dataclasses.replace(c, vendor="") for c in m.credentials),
    )


def runtime_hash(m: Manifest) -> str:
    return manifest_hash(runtime_view(m))
