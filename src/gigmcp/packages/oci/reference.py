"""Image references and pinned digests, parsed strictly.

Owns turning a manifest's ``image.ref`` (``host[:port]/path/name[:tag]``) and
``image.digest`` (``sha256:<64 lowercase hex>``) into typed values. The grammar is the
distribution project's (lowercase path components separated by ``.``, ``_``, ``__`` or
dashes; tags of word characters, dots and dashes), with three deliberate refusals: the
registry host is always explicit (no implied Docker Hub: what was signed is where we
go), credentials (``user@host``) are never accepted in a reference, and the digest is
never taken from the reference itself (``name@sha256:...``): it comes pinned,
separately, from the signed manifest.

It must never resolve a name, touch the network, or accept a reference it would have
to guess about; every refusal says what was wrong.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from gigmcp.packages.oci.errors import BadReference

# The distribution project's limit on the name (host and path), in characters.
MAX_NAME_LENGTH = 255
_PATH_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_DOMAIN_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_ALGORITHM = re.compile(r"([A-Za-z0-9+._-]+):")
# Printable ASCII without space: anything else (control characters, unicode look-alikes,
# whitespace) has no place in a reference and could mislead a person reading it.
_VISIBLE = re.compile(r"[\x21-\x7e]+")


@dataclass(frozen=True, slots=True)
class ImageRef:
    """A parsed reference: where the image lives and, informatively, its tag."""

    host: str  # lowercase DNS name, IPv4 literal, or bracketed IPv6 literal
    port: int | None
    repository: str  # path/name, lowercase components
    tag: str | None

    @property
    def registry(self) -> str:
        """``host[:port]``, as used in URLs."""
        return self.host if self.port is None else f"{self.host}:{self.port}"

    def __str__(self) -> str:
        tail = f":{self.tag}" if self.tag else ""
        return f"{self.registry}/{self.repository}{tail}"


def parse_digest(digest: str) -> str:
    """A pinned digest, as given; only ``sha256:`` with 64 lowercase hex digits."""
    if not isinstance(digest, str) or not digest:
        raise BadReference("the image digest is missing (expected sha256:<64 hex digits>)")
    if _DIGEST.fullmatch(digest):
        return digest
    algo = _ALGORITHM.match(digest)
    if algo is None:
        raise BadReference("the image digest must look like sha256:<64 hex digits>")
    if algo.group(1) != "sha256":
        raise BadReference(f"digest algorithm {algo.group(1)!r} is not supported (only sha256)")
    raise BadReference("the image digest must be sha256: followed by 64 lowercase hex digits")


def digest_hex(digest: str) -> str:
    """The hex part of a valid digest (used as a file name: validated first)."""
    return parse_digest(digest).split(":", 1)[1]


def parse_reference(ref: str) -> ImageRef:
    """Parse ``host[:port]/path/name[:tag]``; BadReference says what is wrong."""
    if not isinstance(ref, str) or not ref:
        raise BadReference("the image reference is empty")
    if len(ref) > MAX_NAME_LENGTH + 129:
        raise BadReference("the image reference is too long")
    if "://" in ref:
        raise BadReference(
            f"image reference {_show(ref)} must not have a scheme: write host/path/name"
        )
    if not _VISIBLE.fullmatch(ref):
        raise BadReference(
            f"image reference {_show(ref)} has bad characters (spaces, control or non-ASCII)"
        )
    first, sep, rest = ref.partition("/")
    if "@" in first:
        raise BadReference("an image reference must not carry credentials (user@host)")
    if "@" in ref:
        raise BadReference(
            f"image reference {_show(ref)} must not contain '@': the digest is pinned "
            "separately (image.digest)"
        )
    if not sep or not rest:
        raise BadReference(f"image reference {_show(ref)} needs a registry host and a path")
    host, port = _parse_host(first, ref)
    path, tag = rest, None
    last_slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > last_slash:
        path, tag = rest[:colon], rest[colon + 1 :]
        if not _TAG.fullmatch(tag):
            raise BadReference(f"image reference {_show(ref)} has an invalid tag {tag!r}")
    if path != path.lower():
        raise BadReference(f"image reference {_show(ref)}: the repository path must be lowercase")
    for component in path.split("/"):
        if not _PATH_COMPONENT.fullmatch(component):
            raise BadReference(
                f"image reference {_show(ref)}: invalid path component {component!r} "
                "(lowercase letters and digits, separated by '.', '_', '__' or '-')"
            )
    if len(first) + 1 + len(path) > MAX_NAME_LENGTH:
        raise BadReference(f"image name is longer than {MAX_NAME_LENGTH} characters")
    return ImageRef(host, port, path, tag)


def _parse_host(text: str, ref: str) -> tuple[str, int | None]:
    port: int | None = None
    host = text
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise BadReference(f"image reference {_show(ref)}: unterminated IPv6 address")
        host, tail = text[: end + 1], text[end + 1 :]
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise BadReference(f"image reference {_show(ref)}: invalid IPv6 address") from None
        if tail:
            if not tail.startswith(":"):
                raise BadReference(f"image reference {_show(ref)}: invalid registry host")
            port = _parse_port(tail[1:], ref)
        return host.lower(), port
    if ":" in text:
        host, _, port_text = text.partition(":")
        port = _parse_port(port_text, ref)
    elif "." not in host and host != "localhost":
        # Docker would read "owner/name" as Docker Hub's; a signed manifest names its
        # registry, so a first component that is not a host is a mistake, not a default.
        raise BadReference(
            f"image reference {_show(ref)} needs a registry host (e.g. ghcr.io/owner/name)"
        )
    if host != host.lower():
        raise BadReference(f"image reference {_show(ref)}: the registry host must be lowercase")
    if len(host) > 253 or not all(_DOMAIN_LABEL.fullmatch(label) for label in host.split(".")):
        raise BadReference(f"image reference {_show(ref)}: invalid registry host {host!r}")
    return host, port


def _parse_port(text: str, ref: str) -> int:
    if not text.isdigit() or len(text) > 5 or not 0 < int(text) < 65536:
        raise BadReference(f"image reference {_show(ref)}: invalid registry port {text!r}")
    return int(text)


def _show(text: str) -> str:
    """A reference quoted for a message, cut short: it is the operator's input, but
    a megabyte of it is not a message."""
    return repr(text if len(text) <= 120 else text[:117] + "...")
