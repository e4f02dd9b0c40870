"""The OpenAPI document is checked in (docs/openapi.json) and is exactly what the API
serves at /api/v1/openapi.json: a route changed without the document, or the reverse,
fails here. Regenerate with: .venv/bin/python -m tests.support.openapi > docs/openapi.json
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.openapi import ROOT, document


def test_the_checked_in_openapi_document_is_what_the_api_serves(tmp_path: Path) -> None:
    served = document(tmp_path)
    checked_in = json.loads((ROOT / "docs" / "openapi.json").read_text())
    assert served == checked_in, "docs/openapi.json is stale: regenerate it (see this module)"
    assert served["openapi"].startswith("3.1")
    paths = set(served["paths"])
    assert {"/api/v1/me", "/api/v1/profiles", "/api/v1/audit", "/api/auth/callback"} <= paths
