"""The shape of an egress entry, and how an entry matches a host.

An egress entry is an exact hostname or ``*.suffix``, with the egress proxy's matching
semantics: case-insensitive exact host, or a true subdomain of the suffix (the bare
suffix itself does not match). The rules keep every entry matchable by that proxy:
lowercase labels only, a wildcard only as a leading ``*.`` that keeps at least two
labels, no scheme, port, path or IP literal (the reference's ``CheckEgressEntry``).

Owns ``check_egress_entry`` (None, or the reason an entry is refused) and
``egress_allows``. It must never resolve a name or touch the network.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable

NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")


def check_egress_entry(entry: str) -> str | None:
    """None if ``entry`` is a valid egress entry, else the reason (names the entry)."""
    host = entry
    if entry.startswith("*."):
        host = entry[2:]
        if host.count(".") < 1:
            return (
                f"egress {entry!r}: wildcard suffix must keep at least two labels "
                f"(*.{host} is too broad)"
            )
    if "*" in host:
        return f"egress {entry!r}: bare or embedded wildcard not allowed"
    if "://" in entry:
        return f"egress {entry!r}: a scheme is not allowed (hostnames only, no ports and paths)"
    if ":" in entry or "/" in entry:
        return f"egress {entry!r}: ports and paths not allowed (hostnames only)"
    if _is_ip_literal(host):
        return f"egress {entry!r}: raw IP literals not allowed"
    for label in host.split("."):
        if not NAME_RE.fullmatch(label):
            return f"egress {entry!r}: invalid label {label!r} (lowercase a-z0-9, hyphens inside)"
    return None


def _is_ip_literal(host: str) -> bool:
    # Go's net.ParseIP: dotted-quad IPv4 (IPv6 needs ":" and is refused above).
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        return False
    return True


def legacy_ip_notation(host: str) -> bool:
    """True if the C resolver would read ``host`` as an IPv4 address even though it
    is not a dotted quad (``10.1``, ``0x7f000001``, ``017.0.0.1``): such a "hostname"
    passes the label rules yet dials a raw address. Lint flags it."""
    try:
        socket.inet_aton(host)
    except OSError:
        return False
    return True


def egress_allows(entries: Iterable[str], host: str) -> bool:
    """The proxy's matching: exact host (case-insensitive) or a true subdomain of a
    ``*.suffix`` entry."""
    host = host.lower()
    for entry in entries:
        entry = entry.lower()
        if host == entry:
            return True
        if entry.startswith("*.") and host.endswith(entry[1:]):
            return True
    return False
