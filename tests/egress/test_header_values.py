"""A sealed value travels in a header the proxy renders: a value or a manifest format that
would make an invalid HTTP field value is refused where it enters (``gigmcp credential
set``, manifest parsing), with a message naming what is wrong and never quoting it. (h11
refuses such a header with an error quoting the whole value; the proxy's side of this is
in test_proxy.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from gigmcp.core.definitions import DefinitionError, parse_credentials, parse_egress
from tests.support.credentials_cli import SECRET, add_server, run

EGRESS = parse_egress({"hosts": ["api.example.com"]})


def sealed(fmt: str) -> dict[str, object]:
    return {
        "id": "api_key",
        "type": "api_key",
        "inject": {"header": "Authorization", "format": fmt},
    }


@pytest.mark.parametrize(
    "fmt", ["Bearer {token} ", " {token}", "{token}\t", "Bearer\x01{token}", "Bearer \x7f{token}"]
)
def test_attack_a_format_that_makes_an_invalid_header_is_refused_at_parse(fmt: str) -> None:
    with pytest.raises(DefinitionError, match="inject.format .* valid HTTP header value"):
        parse_credentials([sealed(fmt)], EGRESS)


@pytest.mark.parametrize("fmt", ["Bearer {token}", "Bearer\t{token}", "token={token}; v=1"])
def test_formats_with_inner_spaces_are_fine(fmt: str) -> None:
    (cred,) = parse_credentials([sealed(fmt)], EGRESS)
    assert cred.value_problem(b"k3y-v4lue") is None
    assert cred.value_problem(b"two words") is None


@pytest.mark.parametrize(
    "value", [b"key ", b" key", b"key\t", b"\tkey", b"a\x0bb", b"a\x0cb", b"a\x00b"]
)
def test_a_value_that_would_make_an_invalid_header_has_a_problem(value: bytes) -> None:
    (cred,) = parse_credentials([sealed("Bearer {token}")], EGRESS)
    problem = cred.value_problem(value)
    assert problem is not None and value.strip().decode() not in problem


@pytest.mark.parametrize("stdin", [SECRET + " ", " " + SECRET, SECRET + " \n"])
def test_attack_a_value_with_surrounding_space_is_refused_when_set(
    tmp_path: Path, stdin: str
) -> None:
    add_server(tmp_path)
    out = run(tmp_path, "credential", "set", "github", "github_token", stdin=stdin)
    assert out.returncode == 1, out.stderr
    assert "begins or ends with a space" in out.stderr
    assert SECRET not in out.stdout + out.stderr
    listing = run(tmp_path, "credential", "list")
    assert listing.stdout.split() == ["github", "github_token", "sealed", "not", "set"]
