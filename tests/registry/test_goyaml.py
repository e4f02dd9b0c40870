"""YAML read with go-yaml v2's scalar rules, and strictly."""

from __future__ import annotations

import math
import re

import pytest

from gigmcp.registry.goyaml import YamlError, load, resolve_plain


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("y", True),
        ("Yes", True),
        ("ON", True),
        ("n", False),
        ("off", False),
        ("", None),
        ("~", None),
        ("Null", None),
        ("12", 12),
        ("-12", -12),
        ("+5", 5),
        ("1_000", 1000),
        ("0x1F", 31),
        ("0o17", 15),
        ("017", 15),
        ("0b101", 5),
        ("-0b101", -5),
        ("18446744073709551615", 18446744073709551615),
        ("09", 9.0),  # not octal: a float, as Go's ParseFloat reads it
        ("1.5", 1.5),
        (".5", 0.5),
        ("+.5", 0.5),
        ("1e3", 1000.0),
        ("1e400", "1e400"),  # out of range: stays a string
        ("1:30", "1:30"),  # no sexagesimal numbers
        ("2024-01-31", "2024-01-31"),  # dates stay strings
        ("1.4.2", "1.4.2"),
        ("0x1p-2", "0x1p-2"),
        ("TRUE", True),
        ("tRue", "tRue"),
        ("chat:write", "chat:write"),
    ],
)
def test_plain_scalars_resolve_as_go_yaml_v2(text: str, want: object) -> None:
    got = resolve_plain(text)
    assert got == want
    assert type(got) is type(want)


def test_special_floats() -> None:
    assert math.isnan(resolve_plain(".nan"))
    assert resolve_plain("-.Inf") == -math.inf


def test_quoted_scalars_are_strings_and_keys_become_strings() -> None:
    doc = load(b"a: \"1\"\nb: 'y'\n1: x\ntrue: z\n1.5: w\n")
    assert doc == {"a": "1", "b": "y", "1": "x", "true": "z", "1.5": "w"}


def test_explicit_tags() -> None:
    assert load(b"a: !!str 12\nb: !!int '7'\nc: !!float 2\nd: !!bool yes\n") == {
        "a": "12",
        "b": 7,
        "c": 2.0,
        "d": True,
    }


def test_empty_documents_are_none() -> None:
    assert load(b"") is None
    assert load(b"# only a comment\n") is None


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"a: 1\na: 2\n", "duplicate key 'a' (line 2, column 1)"),
        (b'1: x\n"1": y\n', "duplicate key '1'"),
        (b"a: &x 1\n", "anchors are not supported"),
        (b"a: [1]\nb: *x\n", "aliases are not supported"),
        (b"<<: {a: 1}\n", "merge keys (<<) are not supported"),
        (b"a: 1\n---\nb: 2\n", "expected a single YAML document"),
        (b"a: !custom x\n", "unsupported tag '!custom'"),
        (b"a: !!binary aGk=\n", "unsupported tag"),
        (b"a: !!int abc\n", "cannot decode 'abc' as !!int"),
        (b"? [1, 2]\n: x\n", "mapping keys must be scalars"),
        (b"a: [\n", "not valid YAML"),
        (b"[" * 100 + b"]" * 100, "nested too deeply"),
    ],
)
def test_strictness(data: bytes, message: str) -> None:
    with pytest.raises(YamlError, match=re.escape(message)):
        load(data)


def test_lone_surrogate_escape_is_refused() -> None:
    # libyaml refuses it while scanning; the pure-Python scanner lets it through to us.
    with pytest.raises(YamlError, match="surrogate|invalid Unicode character escape"):
        load(b'a: "\\ud800"\n')
