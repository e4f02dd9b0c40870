"""The exchange's stages (injection, scrubbing, audit) and its HTTP/1 plumbing, each
driven over a flow built in memory (tests/support/flow.py): no namespace, no
network, no root. The same guarantees are shown end to end, through a real proxy, in
test_proxy.py; these pin each stage's part on its own."""

from __future__ import annotations

import base64
import json
import ssl
import zlib
from pathlib import Path

import h11
import pytest

from gigmcp.egress import http1
from gigmcp.egress.exchange import Exchange
from gigmcp.egress.flow import Flow
from gigmcp.egress.http1 import FLUSH_BYTES, Denied
from gigmcp.egress.stages.audit import AuditStage
from gigmcp.egress.stages.inject import InjectStage
from gigmcp.egress.stages.scrub import ScrubStage
from gigmcp.egress.upstream import UpstreamPool
from gigmcp.netpolicy.resolver import SystemResolver
from tests.support.flow import (
    PLACEHOLDER,
    REAL,
    MemoryStream,
    audit_log,
    client,
    clients,
    flow,
    upstream,
)

BEARER = [("Authorization", f"Bearer {PLACEHOLDER}")]


def response(headers: list[tuple[bytes, bytes]], status: int = 200) -> h11.Response:
    return h11.Response(status_code=status, headers=headers)


# -- injection -----------------------------------------------------------------------------


def test_the_key_is_injected_on_a_verified_tls_leg_toward_its_host() -> None:
    f = flow("https", "api.example.test", 443, headers=BEARER)
    InjectStage().on_request_headers(f)
    assert [(n.lower(), v) for n, v in f.headers if n.lower() == b"authorization"] == [
        (b"authorization", b"Bearer " + REAL)
    ]
    assert PLACEHOLDER.encode() not in b"".join(v for _n, v in f.headers)
    assert f.injected == ["api_key"]


@pytest.mark.parametrize(
    ("scheme", "host", "port"),
    [("http", "api.example.test", 80), ("https", "other.example.test", 443)],
    ids=["plain-http-toward-its-host", "tls-toward-another-host"],
)
def test_no_key_is_injected_on_a_plain_leg_or_toward_another_host(
    scheme: str, host: str, port: int
) -> None:
    f = flow(scheme, host, port)
    InjectStage().on_request_headers(f)
    assert REAL not in b"".join(v for _n, v in f.headers)
    assert f.injected == []


@pytest.mark.parametrize(
    ("scheme", "host", "port", "reason"),
    [
        ("http", "api.example.test", 80, "placeholder-over-plain-http"),
        ("https", "other.example.test", 443, "placeholder-exfiltration"),
    ],
)
def test_attack_a_placeholder_out_of_place_is_refused(
    scheme: str, host: str, port: int, reason: str
) -> None:
    f = flow(scheme, host, port, target=f"/q?k={PLACEHOLDER}")
    with pytest.raises(Denied) as caught:
        InjectStage().on_request_headers(f)
    assert (caught.value.status, caught.value.reason) == (403, reason)
    assert caught.value.credential == "api_key"
    assert PLACEHOLDER not in str(caught.value)


async def test_attack_a_placeholder_split_across_body_chunks_is_caught() -> None:
    f = flow("https", "other.example.test", 443, method="POST")
    stage = InjectStage()
    stage.on_request_headers(f)
    cut = len(PLACEHOLDER) // 2
    async with upstream(verified_tls=True) as f.upstream:
        stage.on_request_body_chunk(f, b'{"x": "' + PLACEHOLDER[:cut].encode())
        with pytest.raises(Denied) as caught:
            stage.on_request_body_chunk(f, PLACEHOLDER[cut:].encode() + b'"}')
    assert caught.value.reason == "placeholder-exfiltration"


async def test_attack_a_placeholder_in_a_body_is_refused_on_an_unverified_upstream() -> None:
    # Checked against the connection actually used, not the scheme asked for.
    f = flow("https", "api.example.test", 443, method="POST")
    stage = InjectStage()
    stage.on_request_headers(f)
    async with upstream(verified_tls=False) as f.upstream:
        with pytest.raises(Denied) as caught:
            stage.on_request_body_chunk(f, base64.b64encode(PLACEHOLDER.encode()))
    assert caught.value.reason == "placeholder-over-plain-http"


# -- scrubbing -------------------------------------------------------------------------------


def scrubbing_flow() -> tuple[ScrubStage, Flow]:
    f = flow("https", "api.example.test", 443, headers=[("Accept-Encoding", "br")])
    stage = ScrubStage()
    stage.on_request_headers(f)
    return stage, f


def test_an_answer_the_scrubber_can_read_is_asked_for() -> None:
    _stage, f = scrubbing_flow()
    assert [v for n, v in f.headers if n == b"accept-encoding"] == [b"identity"]


@pytest.mark.parametrize("cut", [1, 7, 20, len(REAL) - 1])
def test_the_scrubber_replaces_a_key_split_across_chunks(cut: int) -> None:
    stage, f = scrubbing_flow()
    stage.on_response_headers(f, response([]))
    body = b"echo: " + REAL + b" and " + REAL + b"!"
    at = body.index(REAL) + cut
    out = b"".join(stage.on_response_body_chunk(f, body[:at]))
    out += b"".join(stage.on_response_body_chunk(f, body[at:]))
    out += stage.on_response_end(f)
    assert out == body.replace(REAL, PLACEHOLDER.encode())


def test_a_compressed_answer_is_decoded_in_bounded_steps_and_scrubbed() -> None:
    stage, f = scrubbing_flow()
    stage.on_response_headers(f, response([(b"content-encoding", b"gzip")]))
    plain = REAL + b"\0" * (4 * 1024 * 1024) + REAL
    packer = zlib.compressobj(wbits=31)
    packed = packer.compress(plain) + packer.flush()
    pieces = list(stage.on_response_body_chunk(f, packed))
    tail = stage.on_response_end(f)
    hold = len(REAL)  # at most a spelling's length is held back from one step to the next
    assert max(len(p) for p in pieces) <= FLUSH_BYTES + hold
    out = b"".join(pieces) + tail
    assert REAL not in out and out.count(PLACEHOLDER.encode()) == 2
    assert len(out) == len(plain) - 2 * len(REAL) + 2 * len(PLACEHOLDER)


def test_an_answer_the_scrubber_cannot_read_is_refused() -> None:
    stage, f = scrubbing_flow()
    with pytest.raises(Denied) as caught:
        stage.on_response_headers(f, response([(b"content-encoding", b"br")]))
    assert (caught.value.status, caught.value.reason) == (502, "undecodable-encoding")


def test_a_header_name_holding_a_key_is_dropped_and_values_scrubbed() -> None:
    stage, f = scrubbing_flow()
    headers = [
        (b"x-echo", b"Bearer " + REAL),
        (b"x-" + REAL.lower(), b"1"),
        (b"x-gigmcp-denied", b"forged"),
        (b"content-length", b"10"),
    ]
    passed = http1.response_headers(headers, keep_length=False)
    assert stage.headers(f, passed) == [(b"x-echo", b"Bearer " + PLACEHOLDER.encode())]


def test_without_a_key_to_scrub_an_answer_passes_untouched_but_still_named_once() -> None:
    f = flow("https", "other.example.test", 443, the_client=client(keyless=True))
    stage = ScrubStage()
    stage.on_request_headers(f)
    assert f.scrubber is None
    stage.on_response_headers(f, response([(b"content-encoding", b"br")]))
    assert f.decoder is None
    with pytest.raises(Denied) as caught:
        stage.on_response_headers(
            f, response([(b"content-encoding", b"gzip"), (b"content-encoding", b"br")])
        )
    assert caught.value.status == 400


# -- HTTP/1 plumbing -----------------------------------------------------------------------


def test_the_status_line_carries_the_standard_reason_phrase() -> None:
    assert http1.reason_phrase(401) == b"Unauthorized"
    assert http1.reason_phrase(599) == b""


async def test_a_refusal_is_a_fixed_json_answer() -> None:
    f = flow("https", "api.example.test", 443)
    await http1.write_refusal(f.conn, f.stream, Denied(403, "host-not-allowed", "no"))
    assert isinstance(f.stream, MemoryStream)
    head, _, body = bytes(f.stream.written).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 403 ")
    assert b"x-gigmcp-denied: host-not-allowed" in head and b"connection: close" in head
    assert json.loads(body) == {
        "error": "egress_denied",
        "reason": "host-not-allowed",
        "message": "no",
    }


# -- audit -------------------------------------------------------------------------------------


async def test_an_exchange_fills_its_audit_row(tmp_path: Path) -> None:
    with audit_log(tmp_path) as log:
        stage = AuditStage(log.audit)
        f = flow("https", "api.example.test", 443, target="/a/b?token=hunter2", headers=BEARER)
        stage.on_request(f)
        InjectStage().on_request_headers(f)
        stage.on_request_headers(f)
        async with upstream(verified_tls=True) as f.upstream:
            stage.on_request_body_chunk(f, b"12345")
            stage.on_response_headers(f, 201)
            stage.on_response_body_chunk(f, b"abc")
        stage.on_done(f)
        stage.on_done(f)  # once only
        rows = await log.rows()
    assert len(rows) == 1
    row = rows[0]
    assert (row.decision, row.reason, row.method, row.scheme, row.host, row.port) == (
        "allowed",
        "allowed",
        "GET",
        "https",
        "api.example.test",
        443,
    )
    assert (row.path, row.status, row.bytes_out, row.bytes_in) == ("/a/b", 201, 5, 3)
    assert row.credential == "api_key" and row.instance == "1/api" and row.owner_id == 7
    assert row.duration_ms is not None


async def test_a_refusal_after_the_dial_is_the_exchanges_row(tmp_path: Path) -> None:
    with audit_log(tmp_path) as log:
        stage = AuditStage(log.audit)
        f = flow("https", "api.example.test", 443, headers=BEARER)
        stage.on_request(f)
        InjectStage().on_request_headers(f)
        stage.on_request_headers(f)
        async with upstream(verified_tls=True) as f.upstream:
            stage.on_denied(f, Denied(504, "upstream-timeout", "late"))
        stage.on_done(f)
        rows = await log.rows()
    assert [(r.decision, r.reason, r.status, r.credential) for r in rows] == [
        ("denied", "upstream-timeout", 504, "api_key")
    ]
    assert rows[0].duration_ms is not None


async def test_attack_a_placeholder_on_plain_http_is_refused_audited_and_never_dialled(
    tmp_path: Path,
) -> None:
    # The whole exchange, in memory: the pool would fail the test if it were asked to
    # dial (its resolver is never reached: the refusal comes first).
    with audit_log(tmp_path) as log:
        stage = AuditStage(log.audit)
        table = clients()
        pool = UpstreamPool(SystemResolver(), ssl.create_default_context())
        exchange = Exchange(
            pool=pool, clients=table, inject=InjectStage(), scrub=ScrubStage(), audit=stage
        )
        f = flow("http", "api.example.test", 80, target="/p?x=1", headers=BEARER)
        assert await exchange.run(f) is False
        rows = await log.rows()
    assert pool.dialled == 0 and f.upstream is None
    assert isinstance(f.stream, MemoryStream)
    head, _, body = bytes(f.stream.written).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 403 ")
    assert json.loads(body)["reason"] == "placeholder-over-plain-http"
    assert PLACEHOLDER.encode() not in f.stream.written
    assert [
        (r.decision, r.reason, r.status, r.credential, r.host, r.port, r.path) for r in rows
    ] == [("denied", "placeholder-over-plain-http", 403, "api_key", "api.example.test", 80, "/p")]
    assert rows[0].duration_ms is None


async def test_an_exchange_without_an_allowing_decision_never_starts(tmp_path: Path) -> None:
    with audit_log(tmp_path) as log:
        pool = UpstreamPool(SystemResolver(), ssl.create_default_context())
        exchange = Exchange(
            pool=pool, clients=clients(), inject=InjectStage(), scrub=ScrubStage(),
            audit=AuditStage(log.audit),
        )  # fmt: skip
        f = flow("https", "evil.example.test", 443)
        assert f.decision is not None and not f.decision.allowed
        with pytest.raises(RuntimeError):
            await exchange.run(f)
        assert await log.rows() == []
    assert pool.dialled == 0


def test_a_flow_never_shows_a_header_or_a_target_in_its_repr() -> None:
    f = flow("https", "api.example.test", 443, target=f"/q?k={PLACEHOLDER}", headers=BEARER)
    InjectStage().on_request_headers(f)
    assert REAL in b"".join(v for _n, v in f.headers)
    assert repr(f) == "Flow(1/api, https, api.example.test:443)"
