"""Go's json.Marshal string escaping and FormatFloat('g', -1, 32), reproduced exactly."""

from __future__ import annotations

import pytest

from gigmcp.registry.gojson import encode, encode_string, format_float32_g


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("plain", '"plain"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("back\\slash", '"back\\\\slash"'),
        ("<a href='x'>&</a>", "\"\\u003ca href='x'\\u003e\\u0026\\u003c/a\\u003e\""),
        ("\n\r\t", '"\\n\\r\\t"'),
        # Go 1.22+ writes \b and \f short (older Go: \u0008, \u000c).
        ("\b\f", '"\\b\\f"'),
        ("\x00\x01\x1f", '"\\u0000\\u0001\\u001f"'),
        ("\x7f", '"\x7f"'),  # DEL is not escaped
        ("\u2028\u2029", '"\\u2028\\u2029"'),
        ("é😀", '"é😀"'),  # other non-ASCII passes through as UTF-8
        ("\ud800", '"\\ufffd"'),  # not a scalar value: Go writes U+FFFD
    ],
)
def test_string_escaping_matches_go(text: str, want: str) -> None:
    assert encode_string(text) == want


def test_encode_keeps_key_order_and_no_whitespace() -> None:
    value = {"b": 1, "a": [True, False, None, "x"], "c": {}}
    assert encode(value) == b'{"b":1,"a":[true,false,null,"x"],"c":{}}'


def test_encode_refuses_floats_and_unknown_types() -> None:
    with pytest.raises(TypeError, match="cannot encode float"):
        encode({"x": 1.5})
    with pytest.raises(TypeError, match="keys must be strings"):
        encode({1: "x"})


@pytest.mark.parametrize(
    ("value", "want"),
    [
        (1.0, "1"),
        (1.1, "1.1"),
        (0.1, "0.1"),
        (1e6, "1e+06"),
        (123456.0, "123456"),
        (1234567.0, "1.234567e+06"),
        (0.0001, "0.0001"),
        (0.00001, "1e-05"),
        (1e-7, "1e-07"),
        (3.14159, "3.14159"),
        (16777217.0, "1.6777216e+07"),  # rounded to float32 first
        (-2.5, "-2.5"),
        (0.0, "0"),
        (-0.0, "-0"),
        (1e300, "+Inf"),
        (float("-inf"), "-Inf"),
        (float("nan"), "NaN"),
        (1e21, "1e+21"),
    ],
)
def test_format_float32_g_matches_go(value: float, want: str) -> None:
    assert format_float32_g(value) == want
