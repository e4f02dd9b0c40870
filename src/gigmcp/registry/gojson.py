"""Byte-exact reproduction of Go's ``encoding/json.Marshal`` for the values a registry
document holds, and Go's ``strconv.FormatFloat(f, 'g', -1, 32)``.

Why: the reference registry hashes a manifest as SHA-256 over Go's JSON encoding of it,
and publishes ``index.json`` as that same encoding. A consent decision compares those
hashes, so ours must produce the very same bytes, not merely equivalent JSON.

Owns: string escaping exactly as Go does it (HTML-safe ``\\u003c \\u003e \\u0026``,
``\\u2028 \\u2029``, short escapes for ``\\b \\f \\n \\r \\t`` as Go 1.22+ writes them,
``\\u00XX`` for the other control characters, U+FFFD for anything that is not a
Unicode scalar value), integers, booleans, ``null``, lists and objects without any
whitespace. Objects are written in the order given: a caller encoding a Go *map* sorts
its keys first (Go does), a caller encoding a Go *struct* keeps field order.

It must never encode a float (no registry document has one, and Go's float formatting
is a different algorithm), nor silently accept a type it does not know.
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Mapping, Sequence
from typing import Any

_HEX = "0123456789abcdef"

# Everything Go's HTML-safe encoder does not copy through unchanged.
_NEEDS_ESCAPE = re.compile('["\\\\\x00-\x1f<>&\u2028\u2029\ud800-\udfff]')

_SHORT = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
}


def _escape_one(match: re.Match[str]) -> str:
    ch = match.group(0)
    short = _SHORT.get(ch)
    if short is not None:
        return short
    code = ord(ch)
    if 0xD800 <= code <= 0xDFFF:
        # A lone surrogate cannot be UTF-8; Go writes the replacement character.
        return "\\ufffd"
    if code < 0x100:
        return "\\u00" + _HEX[code >> 4] + _HEX[code & 0xF]
    return f"\\u{code:04x}"  # U+2028, U+2029


def encode_string(text: str) -> str:
    """``text`` as Go's ``json.Marshal`` writes a string, quotes included."""
    return '"' + _NEEDS_ESCAPE.sub(_escape_one, text) + '"'


def encode(value: Any) -> bytes:
    """Go's ``json.Marshal`` output for ``value`` (str, int, bool, None, list/tuple,
    dict in the key order given)."""
    parts: list[str] = []
    _encode(value, parts)
    return "".join(parts).encode("utf-8")


def _encode(value: Any, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        out.append(str(value))
    elif isinstance(value, str):
        out.append(encode_string(value))
    elif isinstance(value, Mapping):
        out.append("{")
        first = True
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"object keys must be strings, got {type(key).__name__}")
            if not first:
                out.append(",")
            first = False
            out.append(encode_string(key))
            out.append(":")
            _encode(item, out)
        out.append("}")
    elif isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _encode(item, out)
        out.append("]")
    else:
        raise TypeError(f"cannot encode {type(value).__name__} as registry JSON")


def _to_float32(value: float) -> float:
    try:
        return float(struct.unpack("<f", struct.pack("<f", value))[0])
    except OverflowError:
        return math.copysign(math.inf, value)


def format_float32_g(value: float) -> str:
    """Go's ``strconv.FormatFloat(value, 'g', -1, 32)``.

    The YAML layer the reference uses turns a YAML number given for a string field into
    a string this way (``version: 1.10`` becomes ``"1.1"``), so we must do the same to
    parse a manifest into the same value.
    """
    if math.isnan(value):
        return "NaN"
    f32 = _to_float32(value)
    if math.isinf(f32):
        return "+Inf" if f32 > 0 else "-Inf"
    if f32 == 0:
        return "-0" if math.copysign(1.0, f32) < 0 else "0"
    negative = f32 < 0
    magnitude = abs(f32)
    # Shortest decimal that reads back as the same float32: the correctly rounded
    # p-digit form is the closest p-digit decimal, so the first p that round-trips wins.
    digits = ""
    exp10 = 0
    for precision in range(1, 10):
        text = f"{magnitude:.{precision - 1}e}"
        if _to_float32(float(text)) == magnitude:
            mantissa, _, exp_text = text.partition("e")
            digits = mantissa.replace(".", "").rstrip("0") or "0"
            exp10 = int(exp_text)
            break
    point = exp10 + 1  # Go's decimal-point position: value = 0.<digits> * 10**point
    sign = "-" if negative else ""
    # Go: with the shortest precision, %e is chosen when exp < -4 or exp >= 6.
    if exp10 < -4 or exp10 >= 6:
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        exp_sign = "+" if exp10 >= 0 else "-"
        return f"{sign}{mantissa}e{exp_sign}{abs(exp10):02d}"
    if point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return sign + digits + "0" * (point - len(digits))
    return f"{sign}{digits[:point]}.{digits[point:]}"
