"""Egress and credential definitions, as the registry manifest spells them: parsed
strictly, one clear error per mistake."""

from __future__ import annotations

from typing import Any

import pytest

from gigmcp.core.definitions import DefinitionError, parse_credentials, parse_egress

EGRESS = parse_egress({"hosts": ["api.example.com", "*.svc.example.com"]})
SEALED = {
    "id": "api_key",
    "type": "api_key",
    "inject": {"header": "Authorization", "format": "Bearer {token}"},
}


def test_a_sealed_and_an_entrusted_credential() -> None:
    entrusted = {"id": "other_key", "type": "custom_env", "inject": {"env": "OTHER_KEY"}}
    sealed, trusted = parse_credentials([SEALED, entrusted], EGRESS)
    assert sealed.sealed and sealed.env == "API_KEY" and sealed.header == "Authorization"
    assert sealed.render("v4lue") == "Bearer v4lue"
    assert not trusted.sealed and trusted.env == "OTHER_KEY"
    assert parse_credentials([sealed.to_json(), trusted.to_json()], EGRESS) == (sealed, trusted)


def test_egress_defaults_to_443_only_and_canonicalises_hosts() -> None:
    egress = parse_egress({"hosts": ["API.Example.COM.", "*.Svc.example.com"]})
    assert egress.hosts == ("api.example.com", "*.svc.example.com")
    assert egress.ports == (443,)  # plain HTTP only when listed


def test_a_credential_narrowed_to_some_hosts() -> None:
    (cred,) = parse_credentials([{**SEALED, "hosts": ["api.example.com"]}], EGRESS)
    assert cred.hosts == ("api.example.com",)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"id": "Bad-Id"}, "credential id"),
        ({"type": "password"}, "type must be one of"),
        ({"inject": {}}, "inject needs"),
        ({"inject": {"header": "Authorization", "format": "Bearer token"}}, "exactly once"),
        ({"inject": {"header": "Authorization", "format": "{token} {token}"}}, "exactly once"),
        (
            {"inject": {"header": "Authorization", "format": "Bearer {token}\r\nX: y"}},
            "line break",
        ),
        ({"inject": {"header": "Bad Header", "format": "{token}"}}, "not a header name"),
        ({"inject": {"header": "Host", "format": "{token}"}}, "proxy owns"),
        ({"inject": {"header": "Proxy-Authorization", "format": "{token}"}}, "proxy owns"),
        ({"inject": {"env": "X", "header": "Authorization"}}, "either env"),
        ({"env": "1BAD"}, "environment variable"),
        ({"hosts": ["evil.example.net"]}, "not in the server's egress allowlist"),
        ({"hosts": ["1.2.3.4"]}, "IP address"),
        ({"secret": "x"}, "unknown field"),
    ],
)
def test_attack_malformed_credentials_are_refused(change: dict[str, Any], message: str) -> None:
    bad = {**SEALED, **change}
    with pytest.raises(DefinitionError, match=message):
        parse_credentials([bad], EGRESS)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"hosts": ["*.com"]}, "two labels"),
        ({"hosts": ["api.example.com:443"]}, "port"),
        ({"hosts": ["10.0.0.1"]}, "IP address"),
        ({"hosts": ["ok.example"], "ports": [0]}, "1-65535"),
        ({"hosts": ["ok.example"], "ports": []}, "non-empty"),
        ({"hosts": ["ok.example"], "paths": ["/"]}, "unknown field"),
    ],
)
def test_attack_loose_egress_is_refused(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(DefinitionError, match=message):
        parse_egress(raw)


def test_two_credentials_in_one_variable_are_refused() -> None:
    twin = {**SEALED, "id": "other", "env": "API_KEY"}
    with pytest.raises(DefinitionError, match="the same variable twice"):
        parse_credentials([SEALED, twin], EGRESS)


def test_credentials_without_an_allowlist_are_refused() -> None:
    with pytest.raises(DefinitionError, match="need an egress allowlist"):
        parse_credentials([SEALED], parse_egress({}))


def test_a_catalog_style_id_with_a_dash_gets_a_valid_variable() -> None:
    # As the reference registry's google-analytics and zoho-* manifests spell them.
    egress = parse_egress({"hosts": ["analyticsdata.googleapis.com"]})
    (cred,) = parse_credentials(
        [
            {
                "id": "google-analytics_token",
                "type": "oauth2",
                "provider": "google-analytics",
                "inject": {"header": "Authorization", "format": "Bearer {token}"},
            }
        ],
        egress,
    )
    assert cred.id == "google-analytics_token" and cred.env == "GOOGLE_ANALYTICS_TOKEN"
