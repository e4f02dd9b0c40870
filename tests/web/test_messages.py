"""All of the dashboard's words are in its message catalogue: a template holds markup and
keys, never text of its own (so a translation never touches a template); every key a
template or a page module uses exists; every key in the catalogue is used."""

from __future__ import annotations

import re
from pathlib import Path

from gigmcp.web import messages

WEB = Path(messages.__file__).parent
TEMPLATES = sorted((WEB / "templates").glob("*.html"))
PYTHON = sorted(WEB.rglob("*.py"))
LITERAL = re.compile(r"""\bt\(\s*'([a-z_]+\.[a-z0-9_.]+)'\s*[,)]""")
DYNAMIC = re.compile(r"""\bt\(\s*'([a-z_]+\.[a-z0-9_.]*)'\s*\+""")
# In a page module, a key is any string literal that starts with a catalogue file's name.
IN_PYTHON = re.compile(r"""["']([a-z_]+\.[a-z0-9_]+)["']""")
# Not language: commands and settings shown as code, separators.
CODE = re.compile(r"<(pre|code)\b.*?</\1>", re.S)
ALLOWED_LEFTOVER = re.compile(r"^[\s·—:/|()\-.,]*$")


def used() -> tuple[set[str], set[str]]:
    keys: set[str] = set()
    prefixes: set[str] = set()
    for path in TEMPLATES:
        text = path.read_text()
        keys |= set(LITERAL.findall(text))
        prefixes |= set(DYNAMIC.findall(text))
    sections = {k.split(".")[0] for k in messages.catalogue()}
    for path in PYTHON:
        found = IN_PYTHON.findall(path.read_text())
        keys |= {k for k in found if k.split(".")[0] in sections and not k.endswith(".html")}
    return keys, prefixes


def test_every_key_used_is_in_the_catalogue() -> None:
    keys, _ = used()
    missing = sorted(keys - set(messages.catalogue()))
    assert not missing, f"keys used but not in messages/en: {missing}"


def test_every_key_in_the_catalogue_is_used() -> None:
    keys, prefixes = used()
    unused = sorted(
        k for k in messages.catalogue() if k not in keys and not k.startswith(tuple(prefixes))
    )
    assert not unused, f"keys in messages/en that nothing uses: {unused}"


def test_templates_hold_no_text_of_their_own() -> None:
    for path in TEMPLATES:
        text = CODE.sub("", path.read_text())
        text = re.sub(r"\{#.*?#\}|\{%.*?%\}|\{\{.*?\}\}", "", text, flags=re.S)
        text = re.sub(r"<[^>]*>", "", text)
        for line in text.splitlines():
            assert ALLOWED_LEFTOVER.match(line), (
                f"{path.name}: text outside the catalogue: {line!r}"
            )


def test_a_message_fills_its_fields_and_a_missing_key_is_an_error() -> None:
    assert messages.translate("error.reference", reference="ab12").startswith("Reference: ab12")
    try:
        messages.translate("no.such_key")
    except KeyError:
        return
    raise AssertionError("a missing key must not render as an empty string")
