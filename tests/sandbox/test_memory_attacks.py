"""Attack list: a jailed server tries to grow the gateway's memory (outside its cgroup)
until every tenant is down. The gateway's resident set must stay under a stated bound.

The hostile server is tests/servers/flooder.py, jailed, behind a real ``gigmcp serve``.
Bound: the gateway's peak VmRSS over the attack stays under its baseline (measured in the
same run, after warm-up) plus ``BOUND_MIB``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import pytest

from tests.support.gateway import ROOT, GatewayProc, gateway
from tests.support.legacy_client import (
    RssSampler,
    call_body,
    open_session,
    rss_kib,
    sse_messages,
    wait_for_log,
)

pytestmark = pytest.mark.root

JAILED_PY = str(ROOT / "tests" / "peers" / "pyvenv" / "bin" / "python")
FLOODER = (JAILED_PY, str(ROOT / "tests" / "servers" / "flooder.py"))
SUBNET = "10.213.0.0/24"
BOUND_MIB = 64
MIB = 1 << 20
SERVER_REQUEST_CAP = 8


@pytest.fixture(scope="module")
def floodgw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProc]:
    tmp: Path = tmp_path_factory.mktemp("flood")
    with gateway(
        tmp,
        jailed=True,
        GIG_SANDBOX_SUBNET=SUBNET,
        GIG_SANDBOX_POOL="1",
        GIG_MAX_SERVER_REQUESTS=str(SERVER_REQUEST_CAP),
    ) as g:
        g.add_server("flooder", FLOODER)
        g.profile("flood", "flooder")
        g.start()
        yield g


def _log(gw: GatewayProc) -> Path:
    (found,) = list((gw.data_dir / "logs").glob("*/flooder.log"))
    return found


def _warm(gw: GatewayProc, client: httpx.Client, h: dict[str, str]) -> None:
    listed = client.post(
        gw.url("flood"), json={"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, headers=h
    )
    assert listed.status_code == 200
    assert {t["name"] for t in listed.json()["result"]["tools"]} >= {"flooder_flood"}


def test_notification_flood_at_a_client_that_does_not_read_keeps_gateway_rss_bounded(
    floodgw: GatewayProc,
) -> None:
    """The server writes 600 notifications of 1 MiB (logs, broadcast to the session's GET
    stream, and progress, on the call's own SSE stream) while the client reads neither."""
    assert floodgw.proc is not None
    url = floodgw.url("flood")
    with httpx.Client(timeout=60) as client, httpx.Client(timeout=60) as caller:
        h = open_session(client, url, floodgw.tokens["flood"])
        _warm(floodgw, client, h)
        baseline = rss_kib(floodgw.proc.pid)
        with (
            RssSampler(floodgw.proc.pid) as rss,
            client.stream("GET", url, headers=dict(h, Accept="text/event-stream")) as listen,
        ):
            assert listen.status_code == 200
            body = call_body(3, "flooder_flood", {"count": 600, "size": MIB}, progress="p-1")
            with caller.stream("POST", url, json=body, headers=h) as call:
                assert call.status_code == 200
                assert wait_for_log(_log(floodgw), "flooder: flood done", 180)
                # Whatever the gateway still reads from the pipe after the server is done.
                rss.interval = 0.02
                for _ in range(20):
                    rss.peak = max(rss.peak, rss_kib(floodgw.proc.pid))
                    threading.Event().wait(0.05)
    grown = (rss.peak - baseline) / 1024
    print(f"gateway RSS: baseline {baseline / 1024:.1f} MiB, peak {rss.peak / 1024:.1f} MiB")
    assert grown < BOUND_MIB, f"gateway grew by {grown:.0f} MiB during a notification flood"


def test_a_list_changed_flood_keeps_gateway_rss_bounded(floodgw: GatewayProc) -> None:
    """200 000 tools/list_changed notifications: no task, refresh or queued frame each."""
    assert floodgw.proc is not None
    url = floodgw.url("flood")
    with httpx.Client(timeout=60) as client, httpx.Client(timeout=60) as caller:
        h = open_session(client, url, floodgw.tokens["flood"])
        _warm(floodgw, client, h)
        baseline = rss_kib(floodgw.proc.pid)
        log = _log(floodgw)
        done_before = log.read_text(errors="replace").count("flooder: flood done")
        with (
            RssSampler(floodgw.proc.pid) as rss,
            client.stream("GET", url, headers=dict(h, Accept="text/event-stream")) as listen,
        ):
            assert listen.status_code == 200
            body = call_body(3, "flooder_flood", {"count": 200_000, "kind": "list_changed"})
            r = caller.post(url, json=body, headers=dict(h, Accept="application/json"))
            assert r.status_code == 200
            assert log.read_text(errors="replace").count("flooder: flood done") > done_before
            # Still listed after the storm (refreshes ran, the instance lives).
            _warm(floodgw, caller, h)
    grown = (rss.peak - baseline) / 1024
    print(f"gateway RSS: baseline {baseline / 1024:.1f} MiB, peak {rss.peak / 1024:.1f} MiB")
    assert grown < BOUND_MIB, f"gateway grew by {grown:.0f} MiB during a list_changed flood"


def test_an_oversized_line_ends_the_instance_with_a_clear_error_and_bounded_rss(
    floodgw: GatewayProc,
) -> None:
    """One JSON-RPC message of 256 MiB on one line."""
    assert floodgw.proc is not None
    url = floodgw.url("flood")
    with httpx.Client(timeout=120) as client:
        h = open_session(client, url, floodgw.tokens["flood"])
        _warm(floodgw, client, h)
        baseline = rss_kib(floodgw.proc.pid)
        with RssSampler(floodgw.proc.pid) as rss:
            r = client.post(
                url,
                json=call_body(3, "flooder_oversize", {"size": 256 * MIB}),
                headers=dict(h, Accept="application/json"),
            )
        # The instance was ended, and the next call gets a fresh one.
        listed = client.post(
            url, json={"jsonrpc": "2.0", "id": 4, "method": "tools/list"}, headers=h
        )
        assert listed.status_code == 200 and "result" in listed.json(), listed.text
    grown = (rss.peak - baseline) / 1024
    print(f"gateway RSS: baseline {baseline / 1024:.1f} MiB, peak {rss.peak / 1024:.1f} MiB")
    assert r.status_code == 200
    answer = r.json()
    assert "error" in answer, answer
    assert "larger than" in answer["error"]["message"], answer
    assert grown < BOUND_MIB, f"gateway grew by {grown:.0f} MiB reading one oversized line"


def test_a_burst_of_server_to_client_requests_is_capped_per_instance(
    floodgw: GatewayProc,
) -> None:
    """200 sampling requests at once: at most the cap are held for the client, the rest
    get a JSON-RPC error at once (no task each, held for the request timeout)."""
    url = floodgw.url("flood")
    with httpx.Client(timeout=60) as client, httpx.Client(timeout=60) as answers:
        h = open_session(client, url, floodgw.tokens["flood"], {"sampling": {}})
        body = call_body(3, "flooder_ask", {"count": 200})
        final = None
        with client.stream("POST", url, json=body, headers=h) as stream:
            for msg in sse_messages(stream):
                if msg.get("method") == "sampling/createMessage":
                    reply = {
                        "jsonrpc": "2.0",
                        "id": msg["id"],
                        "result": {
                            "role": "assistant",
                            "content": {"type": "text", "text": "ok"},
                            "model": "m",
                        },
                    }
                    assert answers.post(url, json=reply, headers=h).status_code == 202
                elif msg.get("id") == 3:
                    final = msg
                    break
    assert final is not None and "result" in final, final
    counts = json.loads(final["result"]["content"][0]["text"])
    assert counts["answered"] == 200
    refused = sum(counts["errors"].values())
    assert refused >= 200 - 4 * SERVER_REQUEST_CAP, counts
