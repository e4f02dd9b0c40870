"""The registry library's errors: each carries every problem found, not just the first.

Owns the exception types callers catch. A message names the field or input at fault
and what would be right; it must never quote a secret (the registry handles none: a
signing key is never echoed back, only its expected shape).
"""

from __future__ import annotations

from collections.abc import Iterable

from gigmcp.errors import RegistryError


class RegistryDataError(RegistryError):
    """Base: ``problems`` lists each problem; ``str()`` joins them one per line."""

    def __init__(self, problems: str | Iterable[str], *, context: str = "") -> None:
        items = (problems,) if isinstance(problems, str) else tuple(problems)
        if not items:
            raise ValueError("a RegistryDataError needs at least one problem")
        self.problems: tuple[str, ...] = items
        self.context = context
        head = f"{context}: " if context else ""
        if len(items) == 1:
            text = head + items[0]
        else:
            text = head + f"{len(items)} problems:\n" + "\n".join(f"  - {p}" for p in items)
        super().__init__(text)


class ManifestError(RegistryDataError):
    """A manifest does not parse or breaks a schema rule."""


class ToolSpecError(RegistryDataError):
    """A toolspec does not parse, breaks a schema rule, or does not pair with its
    manifest."""


class RegistryIndexError(RegistryDataError):
    """An index cannot be built, or a received one is malformed."""


class ManifestResolveError(RegistryDataError, LookupError):
    """A ref does not name exactly one manifest of the index."""


class SignatureError(RegistryDataError):
    """A key or signature is malformed, or the signature does not verify."""


class DraftError(RegistryDataError):
    """A server.json cannot be turned into a manifest draft."""
