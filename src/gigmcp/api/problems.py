"""Errors as RFC 9457 problem documents: the one shape every refusal of the API takes.

Owns the mapping from the error tree (``errors.py``) to a status and a problem type,
validation errors that name the field, and the generic answer for anything else. It
must never put a traceback, SQL, a header value or a secret in a response: the text of
an unexpected error is logged under a reference and the client gets the reference.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from gigmcp.errors import (
    ConfigurationError,
    Conflict,
    ControlError,
    Forbidden,
    GigError,
    InstallError,
    Invalid,
    NotFound,
    RateLimited,
    RegistryError,
    Unauthenticated,
)
from gigmcp.registry.errors import ManifestResolveError

log = logging.getLogger(__name__)

MEDIA_TYPE = "application/problem+json"
_STATUS: list[tuple[type[GigError], int, str]] = [
    (NotFound, 404, "not-found"),
    (Forbidden, 403, "forbidden"),
    (Conflict, 409, "conflict"),
    (Invalid, 422, "invalid"),
    (Unauthenticated, 401, "unauthenticated"),
    (RateLimited, 429, "rate-limited"),
    (ControlError, 400, "bad-request"),
    # The gateway is not set up for this (no registry, no vault): the operator's words,
    # which never carry a secret (errors.py).
    (ConfigurationError, 503, "not-configured"),
    # A ref the signed index does not have is the caller's mistake; anything else the
    # registry refused (signature, rollback, a broken index) or an install that failed
    # is the upstream's, in its own words.
    (ManifestResolveError, 404, "not-found"),
    (RegistryError, 502, "registry"),
    (InstallError, 502, "install-failed"),
]
_TITLES = {
    400: "Bad request",
    401: "Not signed in",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Request too large",
    415: "Unsupported media type",
    422: "Invalid request",
    429: "Too many requests",
    502: "Upstream refused",
    503: "Not available",
    500: "Internal error",
}


def problem(
    status: int,
    code: str,
    detail: str,
    *,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": f"urn:gigmcp:problem:{code}",
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "code": code,
        **extra,
    }
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


def status_of(exc: GigError) -> tuple[int, str] | None:
    """The status and problem code of an error of the tree; None for one that should
    not have reached a client (answered as unexpected). The dashboard maps alike."""
    for cls, status, code in _STATUS:
        if isinstance(exc, cls):
            return status, code
    return None


def title(status: int) -> str:
    return _TITLES.get(status, "Error")


async def gig_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, GigError)
    found = status_of(exc)
    if found is None:
        return await unexpected(request, exc)
    status, code = found
    headers = {"Retry-After": "60"} if status == 429 else None
    return problem(status, code, str(exc), headers=headers)


async def validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = []
    for err in exc.errors():
        # The location without "body"/"query" noise, and the message; never the input
        # (it may be a secret the client sent in the wrong field).
        where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body",))
        errors.append({"field": where, "message": str(err.get("msg", "invalid"))})
    fields = ", ".join(e["field"] for e in errors) or "the request"
    return problem(422, "invalid", f"invalid value for {fields}", errors=errors)


async def http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
    detail = exc.detail if isinstance(exc.detail, str) else _TITLES.get(exc.status_code, "")
    return problem(exc.status_code, code, detail)


async def unexpected(request: Request, exc: Exception) -> JSONResponse:
    ref = secrets.token_hex(4)
    log.error("API %s %s failed (ref %s)", request.method, request.url.path, ref, exc_info=exc)
    return problem(500, "internal", f"the gateway could not answer (ref {ref})")
