"""Reading registry YAML into plain values the way the reference registry reads it.

The reference parses manifests with ``sigs.k8s.io/yaml`` (``UnmarshalStrict``) over
go-yaml v2, whose YAML 1.1 scalar rules differ from PyYAML's: ``y``/``n`` are booleans,
``1:30`` is a string (PyYAML: sexagesimal 90), ``0o17`` is an int, ``09`` is the float
9, a date stays a string. Whether a manifest parses, and the value it parses to (hence
its hash), depends on those rules, so this module resolves every plain scalar as go-yaml
v2 does, using PyYAML only for the syntax.

Owns: turning YAML bytes into ``dict``/``list``/``str``/``int``/``float``/``bool``/
``None`` with mapping keys made strings as the reference does (``1`` → ``"1"``,
``true`` → ``"true"``). Strict: a duplicate key, an anchor or alias, a merge key
(``<<``), a tag it does not know, several documents, or a lone surrogate is an error
(``YamlError`` with the position).

It must never construct objects (only the parser's event stream is read), and never
follow an alias (no billion-laughs expansion).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from typing import Any

import yaml  # type: ignore[import-untyped]  # no stubs pinned; only its event stream is used

from gigmcp.errors import RegistryError
from gigmcp.registry.gojson import format_float32_g

_TAG = "tag:yaml.org,2002:"
MAX_DEPTH = 64  # far more than any manifest needs; bounds recursion on hostile input
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
UINT64_MAX = 2**64 - 1

# go-yaml v2's table of words (exact spellings only).
_WORDS: dict[str, Any] = {}
for _spellings, _meaning in (
    (("y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"), True),
    (("n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF"), False),
    (("", "~", "null", "Null", "NULL"), None),
    ((".nan", ".NaN", ".NAN"), math.nan),
    ((".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF"), math.inf),
    (("-.inf", "-.Inf", "-.INF"), -math.inf),
):
    for _spelling in _spellings:
        _WORDS[_spelling] = _meaning

_YAML_STYLE_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")
_DOT_FLOAT = re.compile(r"^\.[0-9]+([eE][-+]?[0-9]+)?$")
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class YamlError(RegistryError):
    """The bytes are not YAML this registry accepts; the message says where and why."""


def _where(event: Any) -> str:
    mark = getattr(event, "start_mark", None)
    if mark is None:
        return ""
    return f" (line {mark.line + 1}, column {mark.column + 1})"


def load(data: bytes) -> Any:
    """Parse one YAML document into plain values; an empty document is ``None``."""
    try:
        events: Iterator[Any] = iter(yaml.parse(data, Loader=_LOADER))
        return _stream(events)
    except YamlError:
        raise
    except yaml.YAMLError as exc:
        raise YamlError(f"not valid YAML: {exc}") from None


def _stream(events: Iterator[Any]) -> Any:
    first = next(events)
    if not isinstance(first, yaml.StreamStartEvent):  # pragma: no cover - parser contract
        raise YamlError("not a YAML stream")
    event = next(events)
    if isinstance(event, yaml.StreamEndEvent):
        return None
    # DocumentStartEvent
    value = _node(events, next(events), 0)
    next(events)  # DocumentEndEvent
    after = next(events)
    if not isinstance(after, yaml.StreamEndEvent):
        raise YamlError(f"expected a single YAML document{_where(after)}")
    return value


def _node(events: Iterator[Any], event: Any, depth: int) -> Any:
    if isinstance(event, yaml.AliasEvent):
        raise YamlError(f"aliases are not supported{_where(event)}")
    if getattr(event, "anchor", None) is not None:
        raise YamlError(f"anchors are not supported{_where(event)}")
    if depth > MAX_DEPTH:
        raise YamlError(f"YAML nested too deeply{_where(event)}")
    if isinstance(event, yaml.ScalarEvent):
        return _scalar(event)
    if isinstance(event, yaml.SequenceStartEvent):
        _collection_tag(event, "seq")
        items = []
        while not isinstance(item := next(events), yaml.SequenceEndEvent):
            items.append(_node(events, item, depth + 1))
        return items
    if isinstance(event, yaml.MappingStartEvent):
        _collection_tag(event, "map")
        return _mapping(events, depth)
    raise YamlError(f"unexpected YAML event{_where(event)}")  # pragma: no cover


def _collection_tag(event: Any, kind: str) -> None:
    if event.tag not in (None, "!", _TAG + kind):
        raise YamlError(f"unsupported tag {event.tag!r}{_where(event)}")


def _mapping(events: Iterator[Any], depth: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    seen: set[tuple[type, Any]] = set()
    while not isinstance(key_event := next(events), yaml.MappingEndEvent):
        if not isinstance(key_event, yaml.ScalarEvent):
            if isinstance(key_event, yaml.AliasEvent):
                raise YamlError(f"aliases are not supported{_where(key_event)}")
            raise YamlError(f"mapping keys must be scalars{_where(key_event)}")
        if key_event.anchor is not None:
            raise YamlError(f"anchors are not supported{_where(key_event)}")
        if _is_plain(key_event) and key_event.value == "<<":
            raise YamlError(f"merge keys (<<) are not supported{_where(key_event)}")
        key = _scalar(key_event)
        identity = (type(key), key)
        if identity in seen:
            raise YamlError(f"duplicate key {key_event.value!r}{_where(key_event)}")
        seen.add(identity)
        text = key_string(key, key_event)
        if text in out:
            # Two keys the reference would silently merge into one (1 and "1").
            raise YamlError(f"duplicate key {key_event.value!r}{_where(key_event)}")
        out[text] = _node(events, next(events), depth + 1)
    return out


def _is_plain(event: Any) -> bool:
    return event.tag is None and bool(event.implicit[0])


def key_string(key: Any, event: Any) -> str:
    """A mapping key as the string the reference turns it into."""
    if isinstance(key, str):
        return key
    if key is True:
        return "true"
    if key is False:
        return "false"
    if isinstance(key, int):
        return str(key)
    if isinstance(key, float):
        text = format_float32_g(key)
        return {"+Inf": ".inf", "-Inf": "-.inf", "NaN": ".nan"}.get(text, text)
    raise YamlError(f"unsupported mapping key {event.value!r}{_where(event)}")


def _scalar(event: Any) -> Any:
    text: str = event.value
    if any(0xD800 <= ord(ch) <= 0xDFFF for ch in text):
        raise YamlError(f"invalid Unicode escape (surrogate){_where(event)}")
    if _is_plain(event):
        return resolve_plain(text)
    tag = event.tag
    if tag in (None, "!", _TAG + "str"):
        return text
    if tag in (_TAG + "int", _TAG + "float", _TAG + "bool", _TAG + "null"):
        value = resolve_plain(text)
        kind = tag[len(_TAG) :]
        if kind == "float" and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if _kind_of(value) != kind:
            raise YamlError(f"cannot decode {text!r} as !!{kind}{_where(event)}")
        return value
    raise YamlError(f"unsupported tag {tag!r}{_where(event)}")


def _kind_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    return "str"


def resolve_plain(text: str) -> Any:
    """An unquoted scalar's value by go-yaml v2's rules."""
    if text in _WORDS:
        return _WORDS[text]
    first = text[0]
    if first == ".":
        if _DOT_FLOAT.fullmatch(text):
            return _finite_or_text(text)
        return text
    if first not in "+-0123456789":
        return text
    # A date (2024-01-31) is left as the original string by the reference; none of
    # the number rules below can match it, so it falls through to text.
    plain = text.replace("_", "")
    number = _go_parse_int(plain)
    if number is not None and INT64_MIN <= number <= UINT64_MAX:
        return number
    if _YAML_STYLE_FLOAT.fullmatch(plain):
        return _finite_or_text(plain, fallback=text)
    if plain.startswith("0b") or plain.startswith("-0b"):
        negative = plain.startswith("-")
        body = plain[3:] if negative else plain[2:]
        if body and all(ch in "01" for ch in body):
            value = int(body, 2)
            value = -value if negative else value
            if INT64_MIN <= value <= (INT64_MAX if negative else UINT64_MAX):
                return value
    return text


def _finite_or_text(number: str, fallback: str | None = None) -> Any:
    value = float(number)
    # Go's ParseFloat reports out-of-range values as errors, so they stay strings.
    if math.isinf(value):
        return number if fallback is None else fallback
    return value


_INT_BODY = {
    16: re.compile(r"^[0-9a-fA-F]+$"),
    8: re.compile(r"^[0-7]+$"),
    2: re.compile(r"^[01]+$"),
    10: re.compile(r"^[0-9]+$"),
}


def _go_parse_int(text: str) -> int | None:
    """Go's ``strconv.ParseInt(text, 0, 64)`` then ``ParseUint(text, 0, 64)``: the
    value, or None if neither accepts it (ranges are checked by the caller)."""
    sign = 1
    body = text
    if body[:1] in ("+", "-"):
        sign = -1 if body[0] == "-" else 1
        body = body[1:]
    if not body:
        return None
    lowered = body[:2].lower()
    if lowered == "0x":
        base, digits = 16, body[2:]
    elif lowered == "0o":
        base, digits = 8, body[2:]
    elif lowered == "0b":
        base, digits = 2, body[2:]
    elif body[0] == "0" and len(body) > 1:
        base, digits = 8, body[1:]
    else:
        base, digits = 10, body
    if not _INT_BODY[base].fullmatch(digits):
        return None
    value = sign * int(digits, base)
    if sign < 0 and value < INT64_MIN:
        return None
    if sign > 0 and value > UINT64_MAX:
        return None
    if value > INT64_MAX and text[:1] == "+":
        return None  # ParseUint takes no sign
    return value
