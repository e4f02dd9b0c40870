"""The errors an image install can end with, one class per stage.

Owns the exception hierarchy only. Every message is meant for an operator's screen and
the audit log: it names the image part at fault and what was wrong, and must never
carry a registry token, a response body or anything else the registry chose to send.
"""

from __future__ import annotations

from gigmcp.errors import InstallError


class ImageError(InstallError):
    """Base: the image was not installed, and nothing of it was left in the cache."""


class BadReference(ImageError):
    """The image reference or pinned digest is malformed."""


class OciRegistryError(ImageError):
    """The registry could not be talked to as the distribution API says, or refused."""


class VerificationError(ImageError):
    """Bytes do not match what was pinned: a digest, a size, a declared limit."""


class PlatformError(ImageError):
    """The image is not built for this host (platform, or the entrypoint's machine)."""


class ExtractError(ImageError):
    """A layer is unsafe or malformed: it would escape, link out, or exceed a cap."""
