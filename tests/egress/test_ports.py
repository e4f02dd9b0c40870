"""Which ports a server may reach, attack by attack.

443 is the default and the only port a credential is ever sent on; 80 (plain HTTP) only
when a server's definition lists it; any other port only when the operator lists it in
GIG_EGRESS_EXTRA_PORTS. A grant of port 22 or 2375 without that setting is refused when
it is written (``gigmcp server add`` / ``server egress``, the real CLI) and again by the
proxy at run time (a row written earlier, or a setting withdrawn since).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from gigmcp.config import ConfigError, load_settings
from gigmcp.core.definitions import parse_egress
from gigmcp.netpolicy.hosts import canonical_host
from gigmcp.netpolicy.policy import EgressPolicy
from tests.support.egress_lab import Lab, lab
from tests.support.gateway import GatewayProc, gateway
from tests.support.proxy import running_proxy

HOST = canonical_host("api.example.test")


def test_attack_a_grant_that_names_no_port_gets_no_plain_http() -> None:
    assert parse_egress({"hosts": ["api.example.test"]}).ports == (443,)
    policy = EgressPolicy(["api.example.test"])
    assert policy.check(HOST, 443).allowed
    assert policy.check(HOST, 80).reason == "port-not-allowed"


def test_port_80_only_when_the_definition_lists_it() -> None:
    assert EgressPolicy(["api.example.test"], [443, 80]).check(HOST, 80).allowed


@pytest.mark.parametrize("port", [22, 2375, 8443, 10250])
def test_attack_a_stored_grant_of_another_port_is_refused_at_run_time(port: int) -> None:
    policy = EgressPolicy(["api.example.test"], [443, port])
    assert policy.check(HOST, port).reason == "port-not-permitted"
    assert policy.check(HOST, 443).allowed


def test_the_operators_extra_ports_permit_exactly_those() -> None:
    from gigmcp.netpolicy.policy import PortRules

    policy = EgressPolicy(["api.example.test"], [443, 2375, 22], PortRules([2375]))
    assert policy.check(HOST, 2375).allowed
    assert policy.check(HOST, 22).reason == "port-not-permitted"


# -- the operator's settings --------------------------------------------------------------


def _env(**extra: str) -> dict[str, str]:
    return {"GIG_DATA_DIR": "/tmp/gig-unused", **extra}


def test_extra_ports_and_allowed_host_addresses_are_read_and_validated() -> None:
    s = load_settings(
        _env(
            GIG_EGRESS_EXTRA_PORTS="2375, 8443",
            GIG_EGRESS_ALLOW_HOST_ADDRESSES="203.0.113.7,2001:db8::/64",
        )
    )
    assert s.egress_extra_ports == (2375, 8443)
    assert [str(n) for n in s.egress_allow_host_addresses] == ["203.0.113.7/32", "2001:db8::/64"]
    assert load_settings(_env()).egress_extra_ports == ()


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("GIG_EGRESS_EXTRA_PORTS", "22,ssh", "GIG_EGRESS_EXTRA_PORTS: expected port numbers"),
        ("GIG_EGRESS_EXTRA_PORTS", "0", "GIG_EGRESS_EXTRA_PORTS: expected port numbers"),
        ("GIG_EGRESS_EXTRA_PORTS", "65536", "GIG_EGRESS_EXTRA_PORTS: expected port numbers"),
        ("GIG_EGRESS_ALLOW_HOST_ADDRESSES", "host.example", "GIG_EGRESS_ALLOW_HOST_ADDRESSES:"),
        ("GIG_EGRESS_ALLOW_HOST_ADDRESSES", "10.0.0.1/8", "GIG_EGRESS_ALLOW_HOST_ADDRESSES:"),
    ],
)
def test_a_bad_port_or_address_setting_names_the_variable(name: str, value: str, says: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(_env(**{name: value}))
    assert str(info.value).startswith(says) and "\n" not in str(info.value)


# -- add time: the real command line ------------------------------------------------------


@pytest.fixture
def gw(tmp_path: Path) -> Iterator[GatewayProc]:
    with gateway(tmp_path) as g:
        yield g


@pytest.mark.parametrize("port", ["22", "2375"])
def test_attack_server_add_with_an_unlisted_port_is_refused(gw: GatewayProc, port: str) -> None:
    out = gw.cli(
        "server", "add", "docker", "--egress", "api.example.test", "--egress-port", "443",
        "--egress-port", port, "--", "/bin/true", check=False,
    )  # fmt: skip
    assert out.returncode != 0
    assert f"egress port {port}" in out.stderr and "GIG_EGRESS_EXTRA_PORTS" in out.stderr
    assert "docker" not in gw.cli("server", "list").stdout


def test_attack_server_egress_with_an_unlisted_port_is_refused(gw: GatewayProc) -> None:
    gw.cli("server", "add", "web", "--egress", "api.example.test", "--", "/bin/true")
    out = gw.cli(
        "server", "egress", "web", "--egress", "api.example.test", "--egress-port", "2375",
        check=False,
    )  # fmt: skip
    assert out.returncode != 0 and "GIG_EGRESS_EXTRA_PORTS" in out.stderr


def test_a_port_the_operator_lists_is_accepted(gw: GatewayProc) -> None:
    gw.env["GIG_EGRESS_EXTRA_PORTS"] = "2375"
    gw.cli(
        "server", "add", "docker", "--egress", "api.example.test", "--egress-port", "2375",
        "--", "/bin/true",
    )  # fmt: skip
    assert "docker" in gw.cli("server", "list").stdout


# -- run time: the real proxy in the egress lab -------------------------------------------


@pytest.fixture(scope="module")
def the_lab() -> Iterator[Lab]:
    with lab() as built:
        yield built


@pytest.mark.root
@pytest.mark.parametrize("port", [22, 2375])
async def test_attack_the_proxy_refuses_a_granted_port_the_operator_did_not_list(
    the_lab: Lab, tmp_path: Path, port: int
) -> None:
    async with running_proxy(the_lab, tmp_path, ["api.example.test"], [443, 80, port]) as run:
        status, body, _ = await run.curl(f"http://api.example.test:{port}/")
        assert status == 403 and json.loads(body)["reason"] == "port-not-permitted"
        assert [h for h in the_lab.hits if h.port == port] == []
        rows = await run.audit_rows()
        assert [(r.decision, r.reason) for r in rows] == [("denied", "port-not-permitted")]


@pytest.mark.root
async def test_a_port_the_operator_lists_reaches_the_upstream(the_lab: Lab, tmp_path: Path) -> None:
    async with running_proxy(
        the_lab, tmp_path, ["api.example.test"], [443, 2375], extra_ports=[2375]
    ) as run:
        status, body, err = await run.curl("http://api.example.test:2375/x")
        assert status == 200, err
        assert json.loads(body)["port"] == 2375


@pytest.mark.root
async def test_attack_plain_http_is_refused_when_the_grant_does_not_list_80(
    the_lab: Lab, tmp_path: Path
) -> None:
    async with running_proxy(the_lab, tmp_path, ["api.example.test"]) as run:
        status, body, _ = await run.curl("http://api.example.test/")
        assert status == 403 and json.loads(body)["reason"] == "port-not-allowed"
        assert the_lab.hits == []
