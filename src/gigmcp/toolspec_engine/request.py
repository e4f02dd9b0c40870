"""Checked call arguments to the HTTP request a toolspec tool describes.

Owns the mapping of each argument to its place: path params percent-encoded into their
``{placeholder}`` (every reserved character encoded, so a ``/`` in a value stays inside
its segment), query params appended, header params set, body params encoded as JSON or
``application/x-www-form-urlencoded``; and the credential headers, built from each
credential's format with ``{token}`` replaced by the placeholder found in the
environment. How a value becomes text:

- strings as they are, booleans ``true``/``false``, numbers in JSON notation;
- in a path or a header, an array of scalars comma-joined, anything else nested as JSON;
- in a query or a form, an array of scalars repeats the key once per element (an empty
  array sends nothing), anything else nested is sent once, as JSON.

It must never send a request that differs from what the spec and the arguments say: a
value that cannot be carried faithfully (a line break in a header, ``..`` as a path
segment) is refused with a message. It must never put a credential value in an error.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from . import ENGINE_NAME, ENGINE_VERSION
from .spec import PLACEHOLDER, Credential, Origin, Tool

# Header values the engine sends: visible ASCII, space and tab. Anything else is either
# a way to split the request (CR, LF, NUL) or has no agreed encoding in a header.
HEADER_VALUE: Final = re.compile(r"[\t\x20-\x7e]*")
USER_AGENT: Final = f"{ENGINE_NAME}/{ENGINE_VERSION}"
ACCEPT: Final = "application/json, */*;q=0.5"


class CallError(Exception):
    """A call cannot become a request; the message is safe to show to the model."""


@dataclass(frozen=True, slots=True)
class HttpRequest:
    method: str
    origin: Origin
    target: str  # path and query, encoded
    headers: tuple[tuple[str, str], ...]
    body: bytes | None

    @property
    def path(self) -> str:
        return self.target.partition("?")[0]


def _is_scalar(value: object) -> bool:
    return isinstance(value, str | int | float)  # bool is an int


def _scalar(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    return json.dumps(value)


def _nested(value: object, *, ascii_only: bool = False) -> str:
    return json.dumps(value, ensure_ascii=ascii_only, separators=(",", ":"))


def as_text(value: object, *, ascii_only: bool = False) -> str:
    """A value as one piece of text (a path segment or a header value)."""
    if _is_scalar(value):
        return _scalar(value)
    if isinstance(value, list) and all(_is_scalar(v) for v in value):
        return ",".join(_scalar(v) for v in value)
    return _nested(value, ascii_only=ascii_only)


def as_pairs(name: str, value: object) -> list[tuple[str, str]]:
    """A value as query or form fields."""
    if _is_scalar(value):
        return [(name, _scalar(value))]
    if isinstance(value, list) and all(_is_scalar(v) for v in value):
        return [(name, _scalar(v)) for v in value]
    return [(name, _nested(value))]


def _path(tool: Tool, values: Mapping[str, Any]) -> str:
    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        text = as_text(values[name])
        if text in ("", ".", ".."):
            # An empty segment or a dot segment would make the URL name another resource
            # once normalised (``/a/../b`` is ``/b``), not the one the spec describes.
            raise CallError(f"argument {name!r}: a path segment cannot be empty, '.' or '..'")
        return urllib.parse.quote(text, safe="")

    return PLACEHOLDER.sub(fill, tool.path)


def _credential_headers(
    credentials: tuple[Credential, ...], environ: Mapping[str, str]
) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for c in credentials:
        token = environ.get(c.env, "")
        if not token:
            raise CallError(
                f"the credential variable {c.env} is not set: the gateway gave this server "
                "no credential"
            )
        if not HEADER_VALUE.fullmatch(token):
            # The value itself is never quoted: it is a placeholder, but still a secret's
            # stand-in, and it may be a real key on a misconfigured host.
            raise CallError(
                f"the credential variable {c.env} holds characters a header cannot carry"
            )
        out.append((c.header, c.format.replace("{token}", token)))
    return out


def build_request(
    tool: Tool,
    values: Mapping[str, Any],
    credentials: tuple[Credential, ...],
    environ: Mapping[str, str],
) -> HttpRequest:
    """The request for ``tool`` called with checked ``values``."""
    target = _path(tool, values)
    fixed_query = ""
    if "?" in target:
        # A template may carry a fixed query (``/search?type=track``); arguments follow it.
        target, _, fixed_query = target.partition("?")
    query: list[tuple[str, str]] = []
    body_json: dict[str, Any] = {}
    body_form: list[tuple[str, str]] = []
    headers: list[tuple[str, str]] = [
        ("Accept", ACCEPT),
        ("Accept-Encoding", "identity"),
        ("User-Agent", USER_AGENT),
    ]
    params: list[tuple[str, str]] = []
    for p in tool.params:
        if p.name not in values or p.location == "path":
            continue
        value = values[p.name]
        if p.location == "query":
            query += as_pairs(p.name, value)
        elif p.location == "header":
            text = as_text(value, ascii_only=True)
            if not HEADER_VALUE.fullmatch(text):
                raise CallError(
                    f"argument {p.name!r} goes into a header and must be printable ASCII "
                    "without line breaks"
                )
            params.append((p.name, text))
        elif tool.encoding == "form":
            body_form += as_pairs(p.name, value)
        else:
            body_json[p.name] = value

    body: bytes | None = None
    if any(p.location == "body" for p in tool.params):
        # The endpoint takes a body: send one even when every body param is optional and
        # none was given, so that the content type is what the API expects.
        if tool.encoding == "form":
            body = urllib.parse.urlencode(body_form).encode("ascii")
            headers.append(("Content-Type", "application/x-www-form-urlencoded"))
        else:
            body = _nested(body_json).encode("utf-8")
            headers.append(("Content-Type", "application/json"))
    headers += _credential_headers(credentials, environ)
    headers += params

    encoded = urllib.parse.urlencode(query, quote_via=urllib.parse.quote)
    joined = "&".join(q for q in (fixed_query, encoded) if q)
    if joined:
        target = f"{target}?{joined}"
    return HttpRequest(tool.method, tool.origin, target, tuple(headers), body)
