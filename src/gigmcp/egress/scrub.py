"""Finding secrets and placeholders in streams: scrubbing responses, spotting exfiltration.

A real credential value must never reach a sandbox, even when an upstream echoes it:
:class:`Scrubber` replaces every spelling of each value (raw, percent-encoded, JSON-
escaped, base64 at each of the three byte alignments, standard and URL-safe) with the
same spelling of its placeholder, across chunk boundaries, holding back no more than the
longest spelling minus one byte. :class:`Detector` looks for placeholders (in the same
spellings) in what a sandbox sends, without holding anything back.

Base64 is matched on the characters that depend on the secret's bytes alone; the one
character at each edge that mixes a secret byte with its neighbour can keep a few bits
of the first and last byte. That is accepted: those bits do not make a key.

Owns matching and replacing bytes. It must never show a secret in a repr or an error.
A compiled alternation of literals, longest first, is fast enough here (C speed in
``re``), so no automaton library is needed.
"""

from __future__ import annotations

import base64
import json
import re
import urllib.parse
from collections.abc import Mapping

MIN_FORM = 8  # shorter spellings would match innocent bytes


def _b64_cores(data: bytes, urlsafe: bool) -> list[bytes]:
    """For each alignment k, the base64 characters that depend on ``data`` alone."""
    encode = base64.urlsafe_b64encode if urlsafe else base64.b64encode
    out = []
    n = len(data)
    for k in range(3):
        enc = encode(b"\0" * k + data)
        start = -(-8 * k // 6)  # ceil: the first character with no prefix bits
        end = (8 * (k + n)) // 6  # floor: the last character with no following bits
        out.append(enc[start:end])
    return out


def _forms(value: bytes) -> list[tuple[str, bytes]]:
    forms: list[tuple[str, bytes]] = [("raw", value)]
    pct = urllib.parse.quote(value, safe="").encode()
    forms.append(("pct", pct))
    forms.append(("pct-lower", re.sub(rb"%[0-9A-F]{2}", lambda m: m[0].lower(), pct)))
    forms.append(("pct-plus", urllib.parse.quote_plus(value, safe="").encode()))
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None:
        forms.append(("json", json.dumps(text)[1:-1].encode()))
        forms.append(("json-utf8", json.dumps(text, ensure_ascii=False)[1:-1].encode()))
        # JSON may also escape "/" as "\/".
        forms.append(("json-slash", json.dumps(text)[1:-1].replace("/", "\\/").encode()))
    for urlsafe in (False, True):
        for k, core in enumerate(_b64_cores(value, urlsafe)):
            forms.append((f"b64{'u' if urlsafe else ''}{k}", core))
    return forms


def encoded_forms(secret: bytes) -> list[bytes]:
    """Every spelling of ``secret`` worth looking for (deduplicated, ≥ 8 bytes)."""
    out: list[bytes] = []
    for _kind, form in _forms(secret):
        if len(form) >= MIN_FORM and form not in out:
            out.append(form)
    return out


def _compile(forms: list[bytes]) -> re.Pattern[bytes]:
    ordered = sorted(set(forms), key=len, reverse=True)
    return re.compile(b"|".join(re.escape(f) for f in ordered))


class ScrubRules:
    """The compiled spellings of a set of secrets: built once (per instance), shared by
    every :class:`Scrubber` of its streams."""

    def __init__(self, pairs: Mapping[bytes, bytes]) -> None:
        self.replace: dict[bytes, bytes] = {}
        for secret, placeholder in pairs.items():
            if not secret:
                continue
            mine = dict(_forms(placeholder))
            for kind, form in _forms(secret):
                if len(form) >= MIN_FORM and form not in self.replace:
                    self.replace[form] = mine[kind]
        self.pattern = _compile(list(self.replace)) if self.replace else None
        self.hold = max((len(f) for f in self.replace), default=1) - 1
        self.by_first: dict[int, list[bytes]] = {}
        for form in self.replace:
            self.by_first.setdefault(form[0], []).append(form)

    def __repr__(self) -> str:
        return f"ScrubRules({len(self.replace)} spellings)"


class Scrubber:
    def __init__(self, pairs: Mapping[bytes, bytes] | ScrubRules) -> None:
        rules = pairs if isinstance(pairs, ScrubRules) else ScrubRules(pairs)
        self._replace = rules.replace
        self._pattern = rules.pattern
        self._hold = rules.hold
        self._by_first = rules.by_first
        self._tail = b""
        self.replaced = 0

    def _sub(self, m: re.Match[bytes]) -> bytes:
        self.replaced += 1
        return self._replace[m[0]]

    def replace_all(self, data: bytes) -> bytes:
        if self._pattern is None or not any(form in data for form in self._replace):
            return data
        return self._pattern.sub(self._sub, data)

    def feed(self, chunk: bytes) -> bytes:
        if self._pattern is None:
            return chunk
        data = self._tail + chunk
        if not any(form in data for form in self._replace):
            # The common case, checked with substring search (far faster than the
            # regex on large bodies): no whole spelling here; hold only a possible start.
            keep = self._could_begin(data, max(0, len(data) - self._hold))
            self._tail = data[keep:]
            return data[:keep]
        # A match is certain only where every spelling had room to be tried in full.
        limit = len(data) - self._hold
        out: list[bytes] = []
        pos = 0
        for m in self._pattern.finditer(data):
            if m.start() >= limit and self._longer_may_follow(data, m.start(), len(m[0])):
                break
            out.append(data[pos : m.start()])
            out.append(self._replace[m[0]])
            self.replaced += 1
            pos = m.end()
        cut = max(pos, limit)
        # Hold back only from where a spelling could really begin: streams that wait
        # for an answer (server-sent events, WebSocket) must not stall on bytes that
        # cannot be the start of a secret.
        keep = self._could_begin(data, cut)
        out.append(data[pos:keep])
        self._tail = data[keep:]
        return b"".join(out)

    def _longer_may_follow(self, data: bytes, p: int, length: int) -> bool:
        """Whether a longer spelling than the one matched at ``p`` could still match
        there once more bytes arrive (the longest must win)."""
        rest = data[p:]
        return any(len(f) > length and f.startswith(rest) for f in self._by_first.get(data[p], ()))

    def _could_begin(self, data: bytes, start: int) -> int:
        for p in range(start, len(data)):
            forms = self._by_first.get(data[p])
            if forms is None:
                continue
            rest = data[p:]
            if any(f.startswith(rest) or rest.startswith(f) for f in forms):
                return p
        return len(data)

    def flush(self) -> bytes:
        data, self._tail = self._tail, b""
        return self.replace_all(data)

    @property
    def held(self) -> int:
        return len(self._tail)

    def __repr__(self) -> str:
        return f"Scrubber({len(self._replace)} spellings, {self.replaced} replaced)"


class Detector:
    def __init__(self, needles: Mapping[bytes, str] | Detector) -> None:
        self._ids: dict[bytes, str]
        self._pattern: re.Pattern[bytes] | None
        self._keep: int
        self._tail = b""
        if isinstance(needles, Detector):  # a fresh stream over the same compiled needles
            self._ids, self._pattern, self._keep = needles._ids, needles._pattern, needles._keep
            return
        self._ids = {}
        for needle, ident in needles.items():
            for form in encoded_forms(needle):
                self._ids.setdefault(form, ident)
        self._pattern = _compile(list(self._ids)) if self._ids else None
        self._keep = max((len(f) for f in self._ids), default=1) - 1

    def scan(self, data: bytes) -> set[str]:
        if self._pattern is None or not any(form in data for form in self._ids):
            return set()
        return {self._ids[m[0]] for m in self._pattern.finditer(data)}

    def feed(self, chunk: bytes) -> set[str]:
        if self._pattern is None:
            return set()
        data = self._tail + chunk
        found = self.scan(data)
        self._tail = data[-self._keep :] if self._keep else b""
        return found

    def __repr__(self) -> str:
        return f"Detector({len(self._ids)} spellings)"
