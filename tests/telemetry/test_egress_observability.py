"""The egress proxy observed, with every real part (as root: the jail and the egress
lab's namespace, tests/support/egress_lab.py): a jailed server's HTTPS requests through
the proxy are counted by decision and by the proxy's own denial reasons on the metrics
listener, and each is a span, child of the gateway's span for the tool call that caused
it, in the client's trace, received by a real OTLP receiver. The upstream API never sees
trace context: no ``traceparent`` goes to a third-party host."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.egress_lab import Lab, lab
from tests.support.gateway import ROOT, GatewayProc, free_port, gateway
from tests.support.mcp_http import modern_body, modern_headers, post
from tests.support.otlp import Receiver, by_name, receiver
from tests.support.scrape import scrape, value

pytestmark = pytest.mark.root

FETCHER = (
    str(ROOT / "tests" / "peers" / "pyvenv" / "bin" / "python"),
    str(ROOT / "tests" / "servers" / "fetcher.py"),
)
CREDENTIAL = {
    "id": "api_key", "type": "api_key", "env": "API_KEY", "hosts": ["api.example.test"],
    "inject": {"header": "Authorization", "format": "Bearer {token}"},
}  # fmt: skip


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Lab, GatewayProc, Receiver, str]]:
    tmp: Path = tmp_path_factory.mktemp("egress-obs")
    with lab() as the_lab, receiver() as rx:  # the receiver listens in the lab's namespace
        ca = tmp / "upstream-ca.pem"
        ca.write_bytes(the_lab.ca_pem)
        metrics = f"127.0.0.1:{free_port()}"
        with gateway(
            tmp, jailed=True, GIG_SANDBOX_SUBNET="10.214.0.0/24", GIG_SANDBOX_POOL="0",
            GIG_EGRESS_DNS=the_lab.dns, GIG_EGRESS_CA_BUNDLE=str(ca),
            GIG_METRICS_LISTEN=metrics, GIG_OTLP_ENDPOINT=rx.endpoint,
        ) as g:  # fmt: skip
            g.add_server(
                "fetcher", FETCHER, "--egress", "api.example.test",
                "--egress", "other.example.test", "--credential", json.dumps(CREDENTIAL),
            )  # fmt: skip
            g.cli("credential", "set", "fetcher", "api_key", stdin="sk_test_observed\n")
            g.profile("e2e", "fetcher")
            g.start()
            yield the_lab, g, rx, metrics


def _fetch(g: GatewayProc, trace_id: str, url: str) -> dict[str, object]:
    body = modern_body("tools/call", {"name": "fetcher_fetch", "arguments": {"url": url}})
    body["params"]["_meta"]["traceparent"] = f"00-{trace_id}-{secrets.token_hex(8)}-01"
    answer = post(g, "e2e", body, modern_headers(g.tokens["e2e"], "tools/call", "fetcher_fetch"))
    assert answer.status_code == 200, answer.text
    return json.loads(answer.json()["result"]["content"][0]["text"])  # type: ignore[no-any-return]


def test_egress_requests_are_counted_by_decision_and_reason(
    world: tuple[Lab, GatewayProc, Receiver, str],
) -> None:
    the_lab, g, _rx, metrics = world
    before = scrape(metrics)
    assert _fetch(g, secrets.token_hex(16), "https://api.example.test/v1/me")["status"] == 200
    # The placeholder toward a host outside the credential's: refused by the proxy.
    refused = _fetch(g, secrets.token_hex(16), "https://other.example.test/collect")
    assert refused["status"] == 403 and "placeholder-exfiltration" in str(refused["body"])
    # A host off the allowlist.
    assert _fetch(g, secrets.token_hex(16), "https://evil.example.test/x")["status"] != 200
    after = scrape(metrics)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("gigmcp_egress_requests_total", server="fetcher", decision="allowed") == 1
    assert moved("gigmcp_egress_denials_total", server="fetcher",
                 reason="placeholder-exfiltration") == 1  # fmt: skip
    assert moved("gigmcp_egress_denials_total", server="fetcher", reason="host-not-allowed") == 1
    assert moved("gigmcp_egress_request_duration_seconds_count", decision="allowed") == 1
    # And the upstream got the key, but no trace context.
    hits = the_lab.hits_on("11.0.0.1")
    assert hits and not any(k in hits[-1].headers for k in ("traceparent", "tracestate"))


def test_an_egress_request_is_a_span_under_the_tool_call(
    world: tuple[Lab, GatewayProc, Receiver, str],
) -> None:
    the_lab, g, rx, _metrics = world
    trace_id = secrets.token_hex(16)
    the_lab.reset()
    assert _fetch(g, trace_id, "https://api.example.test/v1/me?page=2")["status"] == 200
    spans = rx.wait(lambda ss: any(s.trace_id == trace_id and s.name == "egress GET" for s in ss))
    mine = [s for s in spans if s.trace_id == trace_id]
    [call] = by_name(mine, "tools/call fetcher_fetch")
    [egress] = by_name(mine, "egress GET")
    assert egress.kind == "client" and egress.parent_id == call.span_id
    assert egress.attributes["server.address"] == "api.example.test"
    assert egress.attributes["http.response.status_code"] == 200
    assert egress.attributes["gigmcp.egress.decision"] == "allowed"
    # No path, no query, no key in the span.
    flat = json.dumps(egress.attributes)
    assert "page=2" not in flat and "/v1/me" not in flat and "sk_test_observed" not in flat
    assert call.start_ns <= egress.start_ns and egress.end_ns <= call.end_ns + 5_000_000
    assert not any("traceparent" in h.headers for h in the_lab.hits_on("11.0.0.1"))
