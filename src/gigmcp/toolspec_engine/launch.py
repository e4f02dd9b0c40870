"""What the gateway needs to start the engine in a jail.

Owns three facts: the folder to bind read-only (this package's own directory), the
command to run there, and the input document, checked with the engine's own loader so
that a spec the engine would refuse fails on the gateway's side, with the same message,
before a jail is built. It must never carry a credential value: the input names the
environment variables that will hold the placeholders, nothing more.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any, Final

from .spec import load_input

ENGINE_DIR: Final = os.path.dirname(os.path.abspath(__file__))


def command(python: str, engine_dir: str, input_path: str) -> tuple[str, ...]:
    """The argv that runs the engine bound at ``engine_dir`` on ``input_path``: a bare
    interpreter, isolated (``-I``: no PYTHON* variables, no script folder on the path)
    and without site-packages (``-S``)."""
    return (python, "-I", "-S", engine_dir, input_path)


def engine_input(
    spec: Mapping[str, Any],
    credentials: Sequence[Mapping[str, str]],
    tools: Sequence[str] | None,
    limits: Mapping[str, float | int] | None = None,
) -> bytes:
    """The engine's input file: the toolspec as a JSON object with the YAML's field
    names, the credential headers (``header``, ``format``, ``env``), the enabled tools
    (``None``: all). Raises ``InputError`` when the engine would refuse it."""
    doc: dict[str, Any] = {
        "spec": dict(spec),
        "credentials": [dict(c) for c in credentials],
        "tools": None if tools is None else list(tools),
    }
    if limits is not None:
        doc["limits"] = dict(limits)
    data = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    load_input(data)
    return data
