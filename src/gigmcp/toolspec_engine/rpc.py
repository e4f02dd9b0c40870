"""MCP over stdio: newline-delimited JSON-RPC 2.0 on stdin and stdout.

Owns the protocol side of the engine: ``initialize`` (the client's protocol version
when it is one of ``PROTOCOL_VERSIONS``, else the latest), ``ping``, ``tools/list``,
``tools/call``, the ``initialized`` and ``cancelled`` notifications, and the JSON-RPC
errors: -32700 for a line that is not JSON, -32600 for a message that is not a request,
-32601 for an unknown method, -32602 for malformed params or an unknown tool. Arguments
that do not fit a tool's schema are a tool error (``isError``), as the 2025-11-25
specification asks, so that the model can correct itself; nothing is sent then.

Calls run on worker threads, so ``ping`` and other calls are answered while one waits
on a slow API; answers are written whole, one per line, under a lock. It must never
write anything to stdout but protocol messages, never let one bad message stop the
loop, and never log an argument value, a header or a body (logs name tools, statuses
and durations).
"""

from __future__ import annotations

import json
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, BinaryIO, Final

from .request import CallError, build_request
from .results import from_response, tool_error
from .schema import check_arguments, input_schema
from .spec import EngineInput, Tool
from .upstream import Client, OriginError

PROTOCOL_VERSIONS: Final = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")
LATEST: Final = PROTOCOL_VERSIONS[-1]
ANNOTATION_VERSIONS: Final = frozenset({"2025-03-26", "2025-06-18", "2025-11-25"})

MAX_LINE: Final = 8 * 2**20  # one JSON-RPC message; a longer line is refused and skipped
MAX_PENDING: Final = 64  # calls accepted but not answered yet
WORKERS: Final = 8

PARSE_ERROR: Final = -32700
INVALID_REQUEST: Final = -32600
METHOD_NOT_FOUND: Final = -32601
INVALID_PARAMS: Final = -32602
INTERNAL_ERROR: Final = -32603

_ABSENT: Final = object()

RequestId = str | int


class _Refusal(Exception):
    """A request answered with a JSON-RPC error."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _no_json_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def tool_descriptor(tool: Tool, version: str) -> dict[str, Any]:
    """The ``tools/list`` entry of ``tool`` as seen by a client speaking ``version``."""
    entry: dict[str, Any] = {
        "name": tool.name,
        "description": tool.description,
        "inputSchema": input_schema(tool),
    }
    if version in ANNOTATION_VERSIONS:
        # Facts about the HTTP method the engine will use, not claims taken from the spec.
        annotations: dict[str, Any] = {"readOnlyHint": tool.method == "GET", "openWorldHint": True}
        if tool.method in ("PUT", "DELETE"):
            annotations["idempotentHint"] = True
        entry["annotations"] = annotations
    return entry


class Server:
    """One engine process: reads requests, answers them."""

    def __init__(
        self,
        engine: EngineInput,
        client: Client,
        environ: Mapping[str, str],
        out: BinaryIO,
        log: Callable[[str], None],
    ) -> None:
        self._engine = engine
        self._client = client
        self._environ = environ
        self._out = out
        self._log = log
        self._version: str | None = None
        self._write_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._in_flight: set[tuple[type, RequestId]] = set()
        self._cancelled: set[tuple[type, RequestId]] = set()
        self._closed = False
        self._pool: ThreadPoolExecutor | None = None

    # -- the loop ---------------------------------------------------------------------

    def serve(self, stdin: BinaryIO) -> None:
        """Answer until stdin ends, then finish the calls under way."""
        with ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="call") as pool:
            self._pool = pool
            while not self._closed:
                line = stdin.readline(MAX_LINE + 1)
                if not line:
                    break
                if len(line) > MAX_LINE and not line.endswith(b"\n"):
                    self._skip_rest(stdin)
                    self._error(None, INVALID_REQUEST, f"message longer than {MAX_LINE} bytes")
                    continue
                self.handle(line)
        self._client.close()

    @staticmethod
    def _skip_rest(stdin: BinaryIO) -> None:
        while True:
            chunk = stdin.readline(MAX_LINE)
            if not chunk or chunk.endswith(b"\n"):
                return

    def handle(self, line: bytes) -> None:
        """One line of input."""
        if not line.strip():
            return
        try:
            message = json.loads(line.decode("utf-8"), parse_constant=_no_json_constants)
        except (UnicodeDecodeError, ValueError, RecursionError):
            self._error(None, PARSE_ERROR, "Parse error: the line is not a JSON text")
            return
        if isinstance(message, list):
            self._error(None, INVALID_REQUEST, "Invalid Request: batches are not supported")
            return
        if not isinstance(message, dict):
            self._error(None, INVALID_REQUEST, "Invalid Request: not a JSON-RPC message")
            return
        rid = message.get("id", _ABSENT)
        method = message.get("method")
        if method is None and ("result" in message or "error" in message):
            return  # an answer, but the engine never asks the client anything
        id_ok = rid is _ABSENT or (isinstance(rid, str | int) and not isinstance(rid, bool))
        if message.get("jsonrpc") != "2.0" or not isinstance(method, str) or not id_ok:
            if rid is not _ABSENT:
                self._error(rid if id_ok else None, INVALID_REQUEST, "Invalid Request")
            return
        params = message.get("params", {})
        if rid is _ABSENT:
            self._notification(method, params)
            return
        assert isinstance(rid, str | int)
        try:
            if params is not None and not isinstance(params, dict):
                raise _Refusal(INVALID_PARAMS, "Invalid params: params must be an object")
            self._request(rid, method, params or {})
        except _Refusal as refusal:
            self._error(rid, refusal.code, refusal.message)

    # -- requests and notifications --------------------------------------------------

    def _request(self, rid: RequestId, method: str, params: dict[str, Any]) -> None:
        if method == "initialize":
            self._respond(rid, self._initialize(params))
        elif method == "ping":
            self._respond(rid, {})
        elif method == "tools/list":
            if params.get("cursor") is not None:
                raise _Refusal(INVALID_PARAMS, "Invalid params: unknown cursor")
            version = self._version or LATEST
            tools = [tool_descriptor(t, version) for t in self._engine.tools]
            self._respond(rid, {"tools": tools})
        elif method == "tools/call":
            self._start_call(rid, params)
        else:
            raise _Refusal(METHOD_NOT_FOUND, f"Method not found: {method[:100]}")

    def _initialize(self, params: dict[str, Any]) -> dict[str, Any]:
        requested = params.get("protocolVersion")
        if not isinstance(requested, str):
            raise _Refusal(INVALID_PARAMS, "Invalid params: protocolVersion must be a string")
        version = requested if requested in PROTOCOL_VERSIONS else LATEST
        self._version = version
        return {
            "protocolVersion": version,
            "capabilities": {"tools": {"listChanged": False}},
            "serverInfo": {"name": self._engine.name, "version": self._engine.version},
        }

    def _notification(self, method: str, params: object) -> None:
        if method == "notifications/cancelled" and isinstance(params, dict):
            rid = params.get("requestId")
            if isinstance(rid, str | int) and not isinstance(rid, bool):
                key = (type(rid), rid)
                with self._state_lock:
                    # Only ids still under way: the set must not grow with stale ids.
                    if key in self._in_flight:
                        self._cancelled.add(key)
        # notifications/initialized needs nothing; unknown notifications are ignored.

    # -- tool calls ------------------------------------------------------------------

    def _start_call(self, rid: RequestId, params: dict[str, Any]) -> None:
        name = params.get("name")
        if not isinstance(name, str):
            raise _Refusal(INVALID_PARAMS, "Invalid params: name must be a string")
        tool = self._engine.tool(name)
        if tool is None:
            raise _Refusal(INVALID_PARAMS, f"Unknown tool: {name[:128]}")
        arguments = params.get("arguments")
        if arguments is None:
            arguments = {}
        if not isinstance(arguments, dict):
            raise _Refusal(INVALID_PARAMS, "Invalid params: arguments must be an object")
        key = (type(rid), rid)
        with self._state_lock:
            if len(self._in_flight) >= MAX_PENDING:
                raise _Refusal(INTERNAL_ERROR, f"more than {MAX_PENDING} calls under way")
            self._in_flight.add(key)
        version = self._version or LATEST
        assert self._pool is not None
        self._pool.submit(self._run_call, rid, tool, arguments, version)

    def _run_call(
        self, rid: RequestId, tool: Tool, arguments: dict[str, Any], version: str
    ) -> None:
        try:
            result = self.call(tool, arguments, version)
        except Exception as exc:
            # Frames only: an exception's message might quote a value.
            frames = "".join(traceback.format_tb(exc.__traceback__))
            self._log(f"{tool.name}: internal error {type(exc).__name__}\n{frames}")
            result = tool_error(f"internal error in the toolspec engine ({type(exc).__name__})")
        key = (type(rid), rid)
        with self._state_lock:
            self._in_flight.discard(key)
            cancelled = key in self._cancelled
            self._cancelled.discard(key)
        if not cancelled:
            self._respond(rid, result)

    def call(self, tool: Tool, arguments: dict[str, Any], version: str) -> dict[str, Any]:
        """The result of calling ``tool``: checked, sent, and turned into a result."""
        values, problems = check_arguments(tool, arguments)
        if problems:
            return tool_error(
                f"invalid arguments for {tool.name}: {'; '.join(problems)}. No request was sent."
            )
        try:
            request = build_request(tool, values, self._engine.credentials, self._environ)
        except CallError as exc:
            return tool_error(f"{exc}. No request was sent.")
        started = time.monotonic()
        try:
            response = self._client.send(request)
        except OriginError as exc:
            self._log(f"{tool.name}: {request.method} {request.origin.authority} failed: {exc}")
            return tool_error(str(exc))
        elapsed = (time.monotonic() - started) * 1000
        self._log(
            f"{tool.name}: {request.method} {request.origin.authority} -> "
            f"HTTP {response.status} in {elapsed:.0f} ms"
        )
        return from_response(response, request, version)

    # -- output ----------------------------------------------------------------------

    def _respond(self, rid: RequestId, result: dict[str, Any]) -> None:
        self._send({"jsonrpc": "2.0", "id": rid, "result": result})

    def _error(self, rid: RequestId | None, code: int, message: str) -> None:
        self._send({"jsonrpc": "2.0", "id": rid, "error": {"code": code, "message": message}})

    def _send(self, message: dict[str, Any]) -> None:
        try:
            text = json.dumps(message, ensure_ascii=False, separators=(",", ":"))
        except (ValueError, RecursionError):
            # An upstream answer too deep to write back: say so instead of dying.
            rid = message.get("id")
            fallback = tool_error("the answer could not be encoded as JSON-RPC")
            text = json.dumps({"jsonrpc": "2.0", "id": rid, "result": fallback})
        data = text.encode("utf-8", errors="replace") + b"\n"
        with self._write_lock:
            if self._closed:
                return
            try:
                self._out.write(data)
                self._out.flush()
            except (BrokenPipeError, ValueError, OSError):
                # The client is gone: stop reading; calls under way end unanswered.
                self._closed = True
