"""Remote MCP servers' rules that need no network: which URLs are taken, when a
protected-resource document speaks for the server (RFC 9728 §3.3), and the gateway's
Client ID Metadata Document as an authorization server reads it. Discovery, registration,
the browser step and calls against a real SDK server and a real authorization server are
tests/egress/test_remote_server_e2e.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from gigmcp.control import remote
from gigmcp.errors import Invalid
from gigmcp.store.models import OAuthApp
from tests.support.dashboard import ORIGIN, dashboard


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://mcp.example.test/mcp", "https"),
        ("https://10.0.0.5/mcp", "host name is needed"),
        ("https://[::1]/mcp", "host name is needed"),
        ("https://user:pw@mcp.example.test/mcp", "no user name"),
        ("https://mcp.example.test/mcp#frag", "fragment"),
        ("ftp://mcp.example.test/", "https"),
    ],
)
def test_a_remote_servers_url_is_https_to_a_host_name(url: str, words: str) -> None:
    with pytest.raises(Invalid, match=words) as caught:
        remote.check_url(url)
    assert "pw@" not in str(caught.value)


def test_resource_metadata_speaks_only_for_the_servers_own_url() -> None:
    url = "https://mcp.example.test/mcp"
    assert remote.same_resource("https://mcp.example.test/mcp/", url)
    assert remote.same_resource("https://MCP.example.test:443/mcp", url)
    for other in ("https://mcp2.example.test/mcp", "https://mcp.example.test/other",
                  "http://mcp.example.test/mcp", "https://mcp.example.test:8443/mcp",
                  "https://mcp.example.test/mcp?x=1"):  # fmt: skip
        assert not remote.same_resource(other, url), other


async def test_each_app_has_a_client_metadata_document_of_its_own(
    database_url: str, tmp_path: Path
) -> None:
    """An authorization server caches a document for minutes: one per app, so that an
    app added since is never missing from a cached copy."""
    async with dashboard(database_url, tmp_path) as d:
        with Session(d.engine) as s, s.begin():
            for vendor, cid in (("mcp-a", remote.cimd_url(ORIGIN, "mcp-a")),
                                ("mcp-b", remote.cimd_url(ORIGIN, "mcp-b")),
                                ("other", "someone-else"),
                                ("mcp-c", remote.cimd_url(ORIGIN, "mcp-a"))):  # fmt: skip
                s.add(OAuthApp(vendor=vendor, display_name=vendor, authorization_endpoint="https://a.test/a",
                               token_endpoint="https://a.test/t", client_id=cid, auth_method="none",
                               pkce=True, default_scopes=[], extra_params={}, api_hosts=[]))  # fmt: skip
        for vendor in ("mcp-a", "mcp-b"):
            # No sign-in: an authorization server reads it.
            r = await d.client().get(f"{remote.CIMD_PREFIX}{vendor}.json")
            assert r.status_code == 200
            doc = r.json()
            assert doc["client_id"] == f"{ORIGIN}/oauth/client-metadata/{vendor}.json"
            assert doc["redirect_uris"] == [f"{ORIGIN}/connections/{vendor}/callback"]
            assert doc["token_endpoint_auth_method"] == "none"
            assert set(doc["grant_types"]) == {"authorization_code", "refresh_token"}
            assert "client_secret" not in doc
        # An app with another client id, one naming another app's document, none at all.
        for vendor in ("other", "mcp-c", "nobody"):
            r = await d.client().get(f"{remote.CIMD_PREFIX}{vendor}.json")
            assert r.status_code == 404, vendor


@pytest.mark.parametrize(
    ("registration", "client", "words"),
    [
        ("sideways", None, "registration: one of auto"),
        ("dynamic", remote.PreRegistered("c1"), "takes none"),
        ("metadata-document", remote.PreRegistered("c1"), "takes none"),
        ("pre-registered", None, "give the client id"),
    ],
)
def test_a_registration_choice_that_cannot_hold_is_refused_before_any_request(
    registration: str, client: remote.PreRegistered | None, words: str
) -> None:
    with pytest.raises(Invalid, match=words):
        remote._registration(registration, client)
    assert remote._registration("auto", remote.PreRegistered("c1")) == "pre-registered"
