"""The one error tree of the gateway.

Owns: the base class every error the gateway raises on purpose derives from, and its
branches. An edge (the CLI, the MCP endpoint; the REST API once it is built) catches a
branch, or ``GigError`` itself, instead of listing classes from seven packages, and
turns it into its own shape: one line on a terminal, a JSON-RPC error, a problem
document.

Must never: import anything (every package may import this module, so it stands below
all of them), carry a secret in a message (messages reach terminals, logs and
clients), or do work in a constructor.

The toolspec engine is not on this tree on purpose: it runs inside the jail with the
standard library alone and never imports the gateway.
"""

from __future__ import annotations


class GigError(Exception):
    """Something the gateway refuses or cannot do, said in words an operator can act on."""


# --- What an operator or user asked for, judged by the service layer ----------------


class ControlError(GigError):
    """A request to the service layer that cannot be carried out as asked."""


class NotFound(ControlError, LookupError):
    """The named row does not exist, or the acting user may not know that it does."""


class Forbidden(ControlError, PermissionError):
    """The acting user may not do this to this row."""


class Conflict(ControlError):
    """The request contradicts what exists (a name taken, a state already reached)."""


class Invalid(ControlError, ValueError):
    """The request itself is malformed: a bad name, value, duration or definition."""


class Unauthenticated(ControlError):
    """No valid sign-in, session or API token came with the request (or it has ended)."""


class RateLimited(ControlError):
    """Too many attempts from this client or user; try again later."""


# --- The branches of the planes ---------------------------------------------------


class ConfigurationError(GigError):
    """A setting, file or folder the gateway was given cannot be used."""


class RegistryError(GigError, ValueError):
    """A manifest, toolspec, signature or index of the registry is not acceptable, or
    the index could not be fetched."""


class InstallError(GigError):
    """A package or server could not be installed, verified or laid out."""


class LaunchError(GigError):
    """A server instance could not be started, or its jail could not be built. The
    message is for the operator (host paths, bubblewrap's words): clients get only a
    reference to it."""


class EgressError(GigError):
    """Outbound traffic was refused or could not be completed: by the egress proxy, or
    by the host rules and vetted resolution the package installers share with it."""


class VaultError(GigError):
    """A secret could not be sealed, opened or rotated, or a master key is unusable. The
    message never holds key material or plaintext."""


class AccountError(GigError):
    """A connected account (an OAuth grant at a vendor) cannot give a token now. The
    message names the vendor and what to do; it never holds a token."""

    def __init__(self, vendor: str, message: str) -> None:
        super().__init__(message)
        self.vendor = vendor


class ConnectionNeeded(AccountError):
    """The user has no connection to the vendor, or must connect again (the vendor
    refused the refresh token: revoked, expired, rotated away)."""


class TokenUnavailable(AccountError):
    """The vendor's token endpoint could not be reached or failed; a later try may work."""


class UpstreamError(GigError):
    """An MCP server connection failed, closed, or sent what the gateway will not take."""


# The MCP endpoint and the JSON-RPC layer raise errors already in their skin's shape (a
# JSON-RPC code, an HTTP status). They are refusals made on purpose, so they are on the
# tree, on a branch of their own that no edge mistakes for a plane's failure.
class ProtocolError(GigError):
    """A message broke the wire protocol, or a request is refused in the protocol's own
    terms; the error carries what its answer needs (a JSON-RPC code, an HTTP status)."""
