"""A real OTLP/HTTP trace receiver for tests: what an OpenTelemetry collector's
``otlphttp`` receiver does for traces, and nothing else.

``receiver()`` serves ``POST /v1/traces`` on a free loopback port (in the network
namespace of the thread that starts it), decodes each body as an
``ExportTraceServiceRequest`` with the official protobuf definitions (the
``opentelemetry-proto`` package; gzip bodies too), answers with an
``ExportTraceServiceResponse`` as the collector does, and keeps every span it received
as a :class:`Span`. ``Receiver.wait`` polls for spans a test expects, since exporters
send in batches.
"""

from __future__ import annotations

import contextlib
import gzip
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as SpanPb

KINDS = {
    SpanPb.SPAN_KIND_INTERNAL: "internal",
    SpanPb.SPAN_KIND_SERVER: "server",
    SpanPb.SPAN_KIND_CLIENT: "client",
    SpanPb.SPAN_KIND_PRODUCER: "producer",
    SpanPb.SPAN_KIND_CONSUMER: "consumer",
}


@dataclass(frozen=True)
class Span:
    name: str
    trace_id: str  # hex, 32
    span_id: str  # hex, 16
    parent_id: str  # hex, "" for a root
    kind: str
    attributes: dict[str, Any]
    service: str
    status: int  # 0 unset, 1 ok, 2 error
    start_ns: int
    end_ns: int
    links: tuple[tuple[str, str], ...] = ()  # (trace id, span id)


def _value(v: AnyValue) -> Any:
    which = v.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [_value(x) for x in v.array_value.values]
    return getattr(v, which)


@dataclass
class Receiver:
    port: int = 0
    spans: list[Span] = field(default_factory=list)
    requests: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def endpoint(self) -> str:
        """The base URL, as GIG_OTLP_ENDPOINT takes it (``/v1/traces`` is added)."""
        return f"http://127.0.0.1:{self.port}"

    def take(self, body: bytes) -> None:
        req = ExportTraceServiceRequest()
        req.ParseFromString(body)
        got: list[Span] = []
        for rs in req.resource_spans:
            attrs = {a.key: _value(a.value) for a in rs.resource.attributes}
            service = str(attrs.get("service.name", ""))
            for ss in rs.scope_spans:
                for s in ss.spans:
                    got.append(
                        Span(
                            name=s.name,
                            trace_id=s.trace_id.hex(),
                            span_id=s.span_id.hex(),
                            parent_id=s.parent_span_id.hex(),
                            kind=KINDS.get(s.kind, "unspecified"),
                            attributes={a.key: _value(a.value) for a in s.attributes},
                            service=service,
                            status=s.status.code,
                            start_ns=s.start_time_unix_nano,
                            end_ns=s.end_time_unix_nano,
                            links=tuple((x.trace_id.hex(), x.span_id.hex()) for x in s.links),
                        )
                    )
        with self._lock:
            self.spans.extend(got)
            self.requests += 1

    def snapshot(self) -> list[Span]:
        with self._lock:
            return list(self.spans)

    def wait(self, found: Callable[[list[Span]], bool], timeout: float = 20.0) -> list[Span]:
        """The spans received once ``found`` holds for them (the exporter sends once a
        second); fails with what did arrive."""
        deadline = time.monotonic() + timeout
        while True:
            spans = self.snapshot()
            if found(spans):
                return spans
            if time.monotonic() > deadline:
                names = sorted(f"{s.name} [{s.kind}]" for s in spans)
                raise AssertionError(f"expected spans never arrived; received: {names}")
            time.sleep(0.1)


def _handler(rx: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            if self.path != "/v1/traces":
                self.send_error(404)
                return
            if self.headers.get("content-encoding") == "gzip":
                body = gzip.decompress(body)
            if self.headers.get("content-type") != "application/x-protobuf":
                self.send_error(415)
                return
            rx.take(body)
            out = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.send_header("content-length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

    return Handler


@contextlib.contextmanager
def receiver() -> Iterator[Receiver]:
    rx = Receiver()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(rx))
    rx.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield rx
    finally:
        server.shutdown()
        server.server_close()


def by_name(spans: list[Span], name: str) -> list[Span]:
    return [s for s in spans if s.name == name]
