"""The dashboard's words: every piece of text a page shows comes from one catalogue per
language (the folder ``messages/<language>/``, one TOML file per page, each file's name
the first part of its keys), so a translation is a new folder, never an edit of a
template.

Owns loading a catalogue (``messages/en/nav.toml``'s ``audit = …`` is ``nav.audit``,
and a table inside a file adds a part), looking a key up with its ``{field}`` parts
filled in, and checking that another language has exactly English's keys. A missing
key is an error at render time (tests render every page, so none ships). It must never
build markup: a message is plain text, and the templates escape it like any other value.
"""

from __future__ import annotations

import tomllib
from functools import cache
from importlib import resources
from typing import Any

DEFAULT = "en"


@cache
def catalogue(language: str = DEFAULT) -> dict[str, str]:
    folder = resources.files("gigmcp.web") / "messages" / language
    found: dict[str, str] = {}
    for item in sorted(folder.iterdir(), key=lambda i: i.name):
        if item.name.endswith(".toml"):
            page = item.name.removesuffix(".toml")
            found.update(_flatten(tomllib.loads(item.read_text()), f"{page}."))
    return found


def _flatten(table: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for key, value in table.items():
        if isinstance(value, dict):
            out.extend(_flatten(value, f"{prefix}{key}."))
        else:
            out.append((f"{prefix}{key}", str(value)))
    return out


def translate(key: str, /, **fields: object) -> str:
    """The text for ``key``, with ``{name}`` replaced by ``fields[name]`` (positional
    ``key``: a message may have a field of any name)."""
    return translate_in(DEFAULT, key, **fields)


def translate_in(language: str, key: str, /, **fields: object) -> str:
    text = catalogue(language)[key]
    return text.format(**fields) if fields else text


def missing_keys(language: str) -> set[str]:
    """English keys that ``language`` lacks, and keys it has that English does not."""
    return set(catalogue(DEFAULT)) ^ set(catalogue(language))
