"""Frozen dataclasses that decode and encode like the reference's Go structs.

A registry type is a frozen dataclass whose fields are declared with ``gofield(json
name, omitempty=...)``: the JSON name and the ``omitempty`` flag of the Go struct tag it
mirrors. From those declarations this module:

* decodes a plain value (from ``goyaml`` or ``json``) strictly, as
  ``sigs.k8s.io/yaml.UnmarshalStrict`` into the Go struct does: every field optional
  (absent or ``null`` = zero value), an unknown field anywhere is an error naming its
  path, a wrong type is an error naming the field and the expected type, and (YAML only)
  a number or boolean given for a string field becomes that string as the reference
  makes it. One deliberate difference: Go matches field names case-insensitively
  (``Egress:`` would count as ``egress``); we refuse any spelling but the exact one, so
  a near-miss in a security field is reported instead of guessed.
* encodes an instance to the plain value Go's ``json.Marshal`` would produce (field
  order, ``omitempty`` per field, structs never omitted), which ``gojson`` turns into
  the exact bytes.

It must never accept a field it does not know, nor coerce between types in any way the
reference does not.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass
from typing import Any, TypeVar

from gigmcp.registry.gojson import format_float32_g

T = TypeVar("T")

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


def tag(name: str, *, omitempty: bool = False) -> dict[str, Any]:
    """Field metadata mirroring a Go struct tag ``json:"name[,omitempty]"``, for
    ``dataclasses.field(..., metadata=tag(...))``."""
    return {"json": name, "omitempty": omitempty}


def gofield(name: str, *, default: Any, omitempty: bool = False) -> Any:
    """Shorthand for a field with an immutable default and its Go struct tag."""
    return dataclasses.field(default=default, metadata=tag(name, omitempty=omitempty))


# --- what each field holds ---------------------------------------------------------


@dataclass(frozen=True)
class _Str:
    pass


@dataclass(frozen=True)
class _Int:
    pass


@dataclass(frozen=True)
class _Bool:
    pass


@dataclass(frozen=True)
class _Seq:
    item: _Kind


@dataclass(frozen=True)
class _Struct:
    cls: type


@dataclass(frozen=True)
class _Ptr:
    target: _Kind


_Kind = _Str | _Int | _Bool | _Seq | _Struct | _Ptr


@dataclass(frozen=True)
class _Field:
    attr: str
    json: str
    omitempty: bool
    kind: _Kind


_PLANS: dict[type, tuple[_Field, ...]] = {}


def _kind_of(hint: Any, owner: type) -> _Kind:
    if hint is str:
        return _Str()
    if hint is bool:
        return _Bool()
    if hint is int:
        return _Int()
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return _Seq(_kind_of(args[0], owner))
    if origin in (types.UnionType, typing.Union) and len(args) == 2 and type(None) in args:
        inner = args[0] if args[1] is type(None) else args[1]
        return _Ptr(_kind_of(inner, owner))
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _Struct(hint)
    raise TypeError(f"{owner.__name__}: unsupported field type {hint!r}")


def _plan(cls: type) -> tuple[_Field, ...]:
    plan = _PLANS.get(cls)
    if plan is None:
        hints = typing.get_type_hints(cls)
        plan = tuple(
            _Field(
                f.name, f.metadata["json"], f.metadata["omitempty"], _kind_of(hints[f.name], cls)
            )
            for f in dataclasses.fields(cls)
        )
        _PLANS[cls] = plan
    return plan


# --- decoding ----------------------------------------------------------------------


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__  # pragma: no cover - goyaml/json produce nothing else


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


class _Decoder:
    def __init__(self, *, coerce_scalars: bool) -> None:
        # YAML input: numbers/booleans for string fields become strings, as the
        # reference's YAML layer does. JSON input (the index): no coercion, as Go's json.
        self.coerce_scalars = coerce_scalars
        self.problems: list[str] = []

    def fail(self, path: str, message: str) -> None:
        self.problems.append(f"{path or '(document)'}: {message}")

    def struct(self, cls: type, value: Any, path: str) -> Any:
        plan = _plan(cls)
        if value is None:
            return cls()
        if not isinstance(value, dict):
            self.fail(path, f"expected a mapping, got {_describe(value)}")
            return cls()
        by_name = {f.json: f for f in plan}
        folded = {f.json.lower(): f.json for f in plan}
        args: dict[str, Any] = {}
        for key, item in value.items():
            spec = by_name.get(key)
            where = _join(path, key)
            if spec is None:
                near = folded.get(str(key).lower())
                if near is not None:
                    self.fail(where, f"unknown field (field names are case-sensitive: {near!r})")
                else:
                    self.fail(where, "unknown field")
                continue
            if item is None:
                continue  # null leaves the zero value, as Go does
            args[spec.attr] = self.value(spec.kind, item, where)
        return cls(**args)

    def value(self, kind: _Kind, value: Any, path: str) -> Any:
        if isinstance(kind, _Str):
            return self.string(value, path)
        if isinstance(kind, _Int):
            return self.integer(value, path)
        if isinstance(kind, _Bool):
            if isinstance(value, bool):
                return value
            self.fail(path, f"expected a boolean, got {_describe(value)}")
            return False
        if isinstance(kind, _Seq):
            if not isinstance(value, list):
                self.fail(path, f"expected a list, got {_describe(value)}")
                return ()
            return tuple(
                self.zero(kind.item)
                if item is None
                else self.value(kind.item, item, f"{path}[{i}]")
                for i, item in enumerate(value)
            )
        if isinstance(kind, _Struct):
            return self.struct(kind.cls, value, path)
        return None if value is None else self.value(kind.target, value, path)

    def zero(self, kind: _Kind) -> Any:
        if isinstance(kind, _Str):
            return ""
        if isinstance(kind, _Int):
            return 0
        if isinstance(kind, _Bool):
            return False
        if isinstance(kind, _Seq):
            return ()
        if isinstance(kind, _Struct):
            return kind.cls()
        return None

    def string(self, value: Any, path: str) -> str:
        if isinstance(value, str):
            return value
        if self.coerce_scalars:
            if isinstance(value, bool):
                return "true" if value else "false"
            if isinstance(value, int):
                return str(value)
            if isinstance(value, float):
                return format_float32_g(value)
        self.fail(path, f"expected a string, got {_describe(value)}")
        return ""

    def integer(self, value: Any, path: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(path, f"expected an integer, got {_describe(value)}")
            return 0
        if isinstance(value, float):
            # Through the reference's YAML→JSON step a whole float below 1e21 is
            # written as an integer literal (1.0 → 1) and then accepted; JSON input
            # keeps its literal (1.0), which Go refuses for an int.
            whole = math.isfinite(value) and value.is_integer() and abs(value) < 1e21
            if not (self.coerce_scalars and whole):
                self.fail(path, f"expected an integer, got {value!r}")
                return 0
        number = int(value)
        if not INT64_MIN <= number <= INT64_MAX:
            self.fail(path, f"integer {number} out of range")
            return 0
        return number


def decode(cls: type[T], value: Any, *, coerce_scalars: bool) -> tuple[T, list[str]]:
    """Decode ``value`` into ``cls``; returns the instance and every problem found (the
    instance holds zero values where a problem was)."""
    decoder = _Decoder(coerce_scalars=coerce_scalars)
    result = decoder.struct(cls, value, "")
    return result, decoder.problems


# --- encoding ----------------------------------------------------------------------


def to_plain(obj: Any) -> dict[str, Any]:
    """The plain value Go's ``json.Marshal`` would produce for this struct, keys in
    field order (feed it to ``gojson.encode`` for the bytes)."""
    out: dict[str, Any] = {}
    for spec in _plan(type(obj)):
        item = getattr(obj, spec.attr)
        if spec.omitempty and _empty(spec.kind, item):
            continue
        out[spec.json] = _plain(spec.kind, item)
    return out


def _empty(kind: _Kind, value: Any) -> bool:
    if isinstance(kind, _Struct):
        return False  # Go never omits a struct value
    if isinstance(kind, _Ptr):
        return value is None
    if isinstance(kind, _Seq):
        return len(value) == 0
    return not value  # "", 0, False


def _plain(kind: _Kind, value: Any) -> Any:
    if isinstance(kind, _Struct):
        return to_plain(value)
    if isinstance(kind, _Seq):
        return [_plain(kind.item, item) for item in value]
    if isinstance(kind, _Ptr):
        return None if value is None else _plain(kind.target, value)
    return value
