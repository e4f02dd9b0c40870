"""An HTTP answer, or a failure, as an MCP ``tools/call`` result.

Owns the shape of what the model sees: a 2xx JSON object as ``structuredContent`` with
the same JSON as text (protocol 2025-06-18 and later; before that, text only), other
JSON and text as text, images and audio as such, anything else binary as an embedded
resource; a non-2xx status as ``isError`` with the status line and at most
``ERROR_BODY_LIMIT`` bytes of the body and a marker when it was cut; a failure before
any answer as ``isError`` with the message it came with. It must never raise on what an
upstream sends (any bytes, any content type, any charset label), and never show more of
an error body than the limit.
"""

from __future__ import annotations

import base64
import codecs
import contextlib
import json
from typing import Any, Final

from .request import HttpRequest
from .upstream import HttpResponse

ERROR_BODY_LIMIT: Final = 4096
# structuredContent exists from this revision on.
STRUCTURED_VERSIONS: Final = frozenset({"2025-06-18", "2025-11-25"})
AUDIO_VERSIONS: Final = frozenset({"2025-03-26", "2025-06-18", "2025-11-25"})
TEXT_TYPES: Final = (
    "application/xml",
    "application/javascript",
    "application/x-www-form-urlencoded",
)


def tool_error(message: str) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": message}], "isError": True}


def _media(content_type: str) -> tuple[str, str]:
    """The media type and the charset of a Content-Type value (utf-8 when unusable)."""
    media, _, rest = content_type.partition(";")
    charset = "utf-8"
    for part in rest.split(";"):
        key, _, value = part.partition("=")
        if key.strip().lower() == "charset":
            label = value.strip().strip('"').lower()
            with contextlib.suppress(LookupError):
                charset = codecs.lookup(label).name
    return media.strip().lower(), charset


def _is_json_type(media: str) -> bool:
    return media == "application/json" or media.endswith("+json")


def _text(body: bytes, charset: str, limit: int | None = None) -> str:
    """``body`` decoded; cut at ``limit`` bytes without leaving half a character."""
    try:
        decoder = codecs.getincrementaldecoder(charset)(errors="replace")
    except LookupError:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    if limit is None:
        return decoder.decode(body, final=True)
    return decoder.decode(body[:limit], final=False)


def _no_json_constants(name: str) -> Any:
    raise ValueError(name)


def _status_line(response: HttpResponse) -> str:
    return f"HTTP {response.status} {response.reason}".rstrip()


def http_error(response: HttpResponse) -> dict[str, Any]:
    _, charset = _media(response.content_type)
    text = _status_line(response)
    shown = response.body[:ERROR_BODY_LIMIT]
    if shown:
        text += "\n" + _text(shown, charset, ERROR_BODY_LIMIT)
    if len(response.body) > ERROR_BODY_LIMIT or not response.complete:
        if response.size is not None:
            size = f"{response.size} bytes in total"
        elif response.complete:
            size = f"{len(response.body)} bytes in total"
        else:
            size = "the rest was not read"
        text += f"\n… [truncated: {size}]"
    return tool_error(text)


def from_response(response: HttpResponse, request: HttpRequest, version: str) -> dict[str, Any]:
    """The result for an answer that was read."""
    if not 200 <= response.status < 300:
        return http_error(response)
    body = response.body
    media, charset = _media(response.content_type)
    if not body:
        return {"content": [{"type": "text", "text": f"{_status_line(response)} (empty body)"}]}
    if media.startswith("image/") and media != "image/svg+xml":
        data = base64.b64encode(body).decode("ascii")
        return {"content": [{"type": "image", "data": data, "mimeType": media}]}
    if media.startswith("audio/") and version in AUDIO_VERSIONS:
        data = base64.b64encode(body).decode("ascii")
        return {"content": [{"type": "audio", "data": data, "mimeType": media}]}

    textual = (
        _is_json_type(media)
        or media.startswith("text/")
        or media in TEXT_TYPES
        or media == "image/svg+xml"
    )
    if not textual:
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            return _resource(response, request, media)
        charset = "utf-8"
    text = _text(body, charset)
    result: dict[str, Any] = {"content": [{"type": "text", "text": text}]}
    if _is_json_type(media) or text.lstrip().startswith(("{", "[")):
        try:
            parsed = json.loads(text, parse_constant=_no_json_constants)
        except (ValueError, RecursionError):
            parsed = None
        if isinstance(parsed, dict) and version in STRUCTURED_VERSIONS:
            result["structuredContent"] = parsed
    return result


def _resource(response: HttpResponse, request: HttpRequest, media: str) -> dict[str, Any]:
    uri = f"https://{request.origin.authority}{request.path}"
    blob = base64.b64encode(response.body).decode("ascii")
    resource = {"uri": uri, "mimeType": media or "application/octet-stream", "blob": blob}
    return {"content": [{"type": "resource", "resource": resource}]}
