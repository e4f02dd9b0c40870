"""Collision-free names for what several servers expose through one profile endpoint.

Tools and prompts become ``<server>_<name>``: server names cannot contain ``_`` (registry
rule), so the first ``_`` always separates them. Resource URIs and templates become
``<server>+<uri>``: server names cannot contain ``+`` either, and ``a+b:`` is still a
well-formed URI scheme. Nothing here knows which servers exist.
"""

from __future__ import annotations


def join_name(server: str, name: str) -> str:
    return f"{server}_{name}"


def split_name(qualified: str) -> tuple[str, str] | None:
    server, sep, name = qualified.partition("_")
    if not sep or not server or not name:
        return None
    return server, name


def join_uri(server: str, uri: str) -> str:
    return f"{server}+{uri}"


def split_uri(qualified: str) -> tuple[str, str] | None:
    server, sep, uri = qualified.partition("+")
    if not sep or not server or not uri:
        return None
    return server, uri
