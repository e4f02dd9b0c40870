"""One spelling per host: canonicalisation before allowlist, routing and injection.

Owns turning what a sandbox wrote (a CONNECT target, a Host header, a TLS server name, a
URL authority) into a :class:`Host` whose ``name`` is the only spelling the rest of the
proxy compares: DNS names lowercase, without a trailing dot, IDN as punycode A-labels;
IPv4 as a dotted quad whatever numeric form it came in (``127.1``, ``0x7f.0.0.1``,
``2130706433``, ``0177.0.0.1``: everything ``inet_aton`` and browsers accept); IPv6
compressed, without brackets. A name whose last label looks numeric is an IPv4 attempt
(as the WHATWG URL parser decides), never a DNS name.

It must never accept what it cannot spell one way: ports, userinfo, percent-encoding,
zone ids, control characters, wildcards and underscores are errors, not guesses.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import unicodedata
from dataclasses import dataclass

import idna

from gigmcp.errors import EgressError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
MAX_NAME = 253
_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
_NUMERIC_PART = re.compile(r"0[xX][0-9a-fA-F]*|[0-9]+")
_FORBIDDEN = frozenset("%@/\\*_?#[]")
# Controls (C0, DEL, C1) and every kind of space or line separator, in any Unicode spelling.
_INVISIBLE = frozenset({"Cc", "Zs", "Zl", "Zp"})
# idna's messages quote the offending input, sometimes all of it.
_QUOTED = re.compile(r"['\"].*['\"]")


class HostError(EgressError):
    """Not a host the proxy can route; the message says why in one line."""


def _show(raw: str) -> str:
    # At most 100 characters of what a sandbox wrote, escaped: one line, whatever it holds.
    return repr(raw[:100] + ("…" if len(raw) > 100 else ""))


@dataclass(frozen=True, slots=True)
class Host:
    name: str
    ip: IPAddress | None = None

    @property
    def is_ip(self) -> bool:
        return self.ip is not None

    def __str__(self) -> str:
        return self.name


def _ipv4_numeric(parts: list[str]) -> ipaddress.IPv4Address:
    """inet_aton: 1 to 4 parts, each decimal, octal (leading 0) or hex (0x); the last
    part fills every byte the others left."""
    if not 1 <= len(parts) <= 4:
        raise HostError("an IPv4 address has 1 to 4 parts")
    values: list[int] = []
    for part in parts:
        if part[:2].lower() == "0x":
            digits = part[2:]
            value = int(digits, 16) if digits else 0
        elif len(part) > 1 and part.startswith("0"):
            if any(c not in "01234567" for c in part):
                raise HostError("an IPv4 part with a leading 0 is octal, and this one is not")
            value = int(part, 8)
        else:
            value = int(part, 10)
        values.append(value)
    *head, last = values
    if any(v > 255 for v in head):
        raise HostError("an IPv4 part is larger than 255")
    if last >= 256 ** (5 - len(values)):
        raise HostError("the last IPv4 part is too large")
    number = last
    for i, v in enumerate(head):
        number += v << (8 * (3 - i))
    return ipaddress.IPv4Address(number)


def _looks_ipv4(labels: list[str]) -> bool:
    last = labels[-1] if labels[-1] else (labels[-2] if len(labels) > 1 else "")
    return bool(_NUMERIC_PART.fullmatch(last))


def canonical_host(raw: str) -> Host:
    """The canonical :class:`Host` for ``raw``; HostError if it has none."""
    return _named(raw, raw)


def _named(raw: str, shown: str) -> Host:
    # Every message names what the caller was given (an authority, an allowlist entry),
    # once and cut short; the reasons below never quote the input themselves.
    if not isinstance(raw, str) or not raw:
        raise HostError(f"{_show(shown)}: an empty host")
    if len(raw) > 1024:
        raise HostError(f"{_show(shown)}: a host longer than 1024 characters")
    try:
        return _canonical_cached(raw)
    except HostError as exc:
        raise HostError(f"{_show(shown)}: {exc}") from None


@functools.lru_cache(maxsize=4096)
def _canonical_cached(raw: str) -> Host:
    # Every request repeats the same few host spellings; the answer (or the error,
    # which is not cached) depends on the string alone.
    if any(unicodedata.category(c) in _INVISIBLE for c in raw):
        raise HostError("a control or space character")
    if raw.startswith("[") or raw.endswith("]"):
        if not (raw.startswith("[") and raw.endswith("]")):
            raise HostError("unbalanced brackets")
        inner = raw[1:-1]
        if "%" in inner:
            raise HostError("an IPv6 zone id is not routable")
        try:
            v6 = ipaddress.IPv6Address(inner)
        except ValueError:
            raise HostError("only an IPv6 address goes in brackets") from None
        return Host(v6.compressed, v6)
    if ":" in raw:
        if "%" in raw:
            raise HostError("an IPv6 zone id is not routable")
        try:
            v6 = ipaddress.IPv6Address(raw)
        except ValueError:
            raise HostError("a ':' in a host (a port belongs in the authority)") from None
        return Host(v6.compressed, v6)
    bad = sorted({c for c in raw if c in _FORBIDDEN})
    if bad:
        raise HostError(f"characters a host name cannot hold: {bad!r}")
    labels = raw.split(".")
    if _looks_ipv4(labels):
        parts = labels[:-1] if labels[-1] == "" else labels
        if not all(_NUMERIC_PART.fullmatch(p) for p in parts):
            raise HostError("ends like an IPv4 address but is not one")
        v4 = _ipv4_numeric(parts)
        return Host(str(v4), v4)
    name = raw[:-1] if raw.endswith(".") else raw
    if not name or name.startswith(".") or ".." in name:
        raise HostError("an empty label")
    try:
        ascii_name = idna.encode(name, uts46=True).decode("ascii")
    except idna.IDNAError as exc:
        detail = _QUOTED.sub("…", str(exc))[:80]
        raise HostError(f"not a valid host name ({detail})") from None
    ascii_name = ascii_name.lower()
    if len(ascii_name) > MAX_NAME:
        raise HostError(f"a host name longer than {MAX_NAME} characters")
    labels = ascii_name.split(".")
    for label in labels:
        if not _LABEL.fullmatch(label):
            raise HostError("a label is not 1-63 of a-z, 0-9 and '-' (not at either end)")
    if _looks_ipv4(labels):
        # IDN mapping can turn full-width digits into ASCII ones: judge the result too.
        raise HostError("spells an IPv4 address once mapped")
    return Host(ascii_name)


def split_authority(authority: str, default_port: int | None) -> tuple[Host, int]:
    """``host``, ``host:port`` or ``[v6]:port`` → (Host, port)."""
    if not isinstance(authority, str) or not authority:
        raise HostError("an empty authority")
    shown = _show(authority)
    if authority.startswith("["):
        end = authority.find("]")
        if end < 0:
            raise HostError(f"{shown}: unbalanced brackets")
        host_part, rest = authority[: end + 1], authority[end + 1 :]
        if rest and not rest.startswith(":"):
            raise HostError(f"{shown}: junk after the IPv6 address")
        port_part = rest[1:] if rest else None
    elif authority.count(":") > 1:
        # "::1:443" could be ::1 port 443 or ::1:443 with no port: never guess.
        raise HostError(f"{shown}: more than one ':' (an IPv6 address must be in brackets)")
    else:
        host_part, sep, port_text = authority.partition(":")
        port_part = port_text if sep else None
    if port_part is None:
        if default_port is None:
            raise HostError(f"{shown}: a port is required")
        port = default_port
    else:
        if not port_part.isascii() or not port_part.isdigit() or len(port_part) > 5:
            raise HostError(f"{shown}: the port is not 1 to 5 decimal digits")
        port = int(port_part)
        if not 0 < port < 65536:
            raise HostError(f"{shown}: port {port} is out of range (1-65535)")
    return _named(host_part, authority), port


def canonical_pattern(raw: str) -> str:
    """An allowlist entry: an exact host, or ``*.suffix`` matching exactly one label
    more. Never an IP address, a port or a path."""
    if not isinstance(raw, str) or not raw.strip():
        raise HostError("an empty allowlist entry")
    # Entries come from manifests and configuration, where stray spaces are common and
    # unambiguous; inside the entry, spaces are still refused.
    entry = raw.strip()
    wildcard = entry.startswith("*.")
    rest = entry[2:] if wildcard else entry
    if "*" in rest:
        raise HostError(f"{_show(raw)}: '*' is allowed only as a leading '*.'")
    host = _named(rest, raw)
    if host.is_ip:
        raise HostError(f"{_show(raw)}: an IP address cannot be allowed, only host names")
    if wildcard and host.name.count(".") < 1:
        raise HostError(f"{_show(raw)}: '*.' needs at least two labels after it")
    return f"*.{host.name}" if wildcard else host.name
