"""A remote MCP server's world, shared by its end-to-end test and its benchmark.

Inside the egress lab (tests/support/egress_lab.py): oidc-provider as the server's
authorization server at https://auth.example.test (TLS from the lab's CA, dynamic client
registration, resource indicators, refresh-token rotation, access tokens of ``ttl``
seconds), the official Python SDK's server (tests/servers/remote_sdk.py) as a protected
resource at https://mcp.example.test/mcp (and, claiming to be that resource, at
mcp2.example.test), and a jailed gateway that trusts the lab's CA and asks the lab's DNS.
The gateway sits behind a TLS front (tests/support/tls_front.py), as deployments have
it: its public URL is https://localhost:<port>, the front listening on that port both
on this side and on the world's loopback, so that the vendor reads the gateway's client
metadata documents from the gateway itself. (localhost: the one public URL on which
the gateway's one-time sign-in links work; the vendor is told it may fetch from
loopback, as its own SSRF check would refuse it.) A user connects the server's account
in Debian's Chromium (Playwright), through the vendor's own forms.

Owns building that world and its browser step; it must never stand in for any of them.
"""

from __future__ import annotations

import contextlib
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2 as httpx

from gigmcp.store import oauth as oauth_store
from gigmcp.store.db import make_engine
from gigmcp.vault.keys import Keyring, MasterKey
from tests.support import browser as chrome
from tests.support.egress_lab import SERVICES, Lab, in_world, lab, mint_cert, world_command
from tests.support.gateway import ROOT, GatewayProc, free_port, gateway
from tests.support.oidc import Account, Client, OidcProvider, start_provider
from tests.support.tls_front import listening, tls_front

AUTH = "auth.example.test"
MCP_URL = "https://mcp.example.test/mcp"
LEGACY_URL = "https://mcp3.example.test/mcp"  # a server of the 2025 generation only
ISSUER = f"https://{AUTH}"
SCOPE = "mcp:tools"
ALICE = Account("alice", "alice-pw")
# A client an administrator registered by hand at the vendor, for the server "manual".
MANUAL = ("gigmcp-by-hand", "by-hand-secret-7f3a")
SERVER = ROOT / "tests" / "servers" / "remote_sdk.py"
PYTHON = str(ROOT / ".venv" / "bin" / "python")


def lab_request(url: str, ca: Path, method: str = "GET", **kw: Any) -> httpx.Response:
    """A request from this process to a lab host by name (this process's resolver does
    not know the lab's names): to its address, with the name for TLS and Host."""
    host = url.split("//", 1)[1].split("/", 1)[0]
    with httpx.Client(verify=ssl.create_default_context(cafile=str(ca))) as c:
        request = c.build_request(
            method, url.replace(host, SERVICES[host], 1), headers={"Host": host},
            extensions={"sni_hostname": host}, **kw,
        )  # fmt: skip
        return c.send(request)


@dataclass
class RemoteWorld:
    lab: Lab
    g: GatewayProc
    vendor: OidcProvider
    ca: Path
    server_log: Path
    deny: Path  # SHA-256 digests of tokens the SDK server refuses anyway
    describe: Path  # when it has text, the SDK servers' echo tool says that of itself
    public: str  # the gateway's public URL: its TLS front

    def http(self) -> httpx.Client:
        """A client of the gateway's public URL (the front, trusting the lab's CA)."""
        return httpx.Client(
            base_url=self.public, verify=ssl.create_default_context(cafile=str(self.ca))
        )

    def state(self, vendor: str = "mcp-remote") -> oauth_store.ConnectionState:
        """The local administrator's connection, as the gateway stores it (read with
        its master key: the test's way to know which token is current)."""
        engine = make_engine(f"sqlite:///{self.g.data_dir / 'gigmcp.db'}")
        try:
            st = oauth_store.load_state(
                engine, Keyring(MasterKey(bytes.fromhex("ab" * 32))), 1, vendor
            )
        finally:
            engine.dispose()
        assert st is not None
        return st

    def refreshes(self) -> int:
        return self.vendor.log().count("(refresh_token)")


def _serve(
    the_lab: Lab, name: str, url: str, tmp: Path, log: Path, deny: Path, jwks: Path,
    *extra: str,
) -> subprocess.Popen[bytes]:  # fmt: skip
    cert, key = mint_cert(the_lab, name, tmp)
    proc = subprocess.Popen(
        world_command(PYTHON, str(SERVER), "--host", SERVICES[name], "--port", "443",
                      "--cert", str(cert), "--key", str(key), "--url", url,
                      "--issuer", ISSUER, "--jwks", str(jwks), "--scope", SCOPE,
                      "--deny", str(deny), *extra),
        stdout=subprocess.PIPE, stderr=log.open("ab"),
    )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line.strip() != b"ready":
        proc.kill()
        raise RuntimeError(f"the SDK server did not start: {log.read_text()[-2000:]}")
    return proc


@contextlib.contextmanager
def remote_world(tmp: Path, ttl: int) -> Iterator[RemoteWorld]:
    """The world, torn down at the end (every process, namespace and file)."""
    tmp.chmod(0o755)
    with lab() as the_lab:
        ca = tmp / "lab-ca.pem"
        ca.write_bytes(the_lab.ca_pem)
        cert, key = mint_cert(the_lab, AUTH, tmp)
        front_port = free_port()
        public = f"https://localhost:{front_port}"
        manual = Client(MANUAL[0], [f"{public}/connections/mcp-manual/callback"], MANUAL[1])
        resources = {url: {"scope": SCOPE, "ttl": ttl}
                     for url in (MCP_URL, "https://mcp2.example.test/mcp", LEGACY_URL)}  # fmt: skip
        with start_provider(
            tmp, clients=[manual], accounts=[ALICE], resources=resources,
            rotate_refresh_tokens=True, dynamic_registration=True,
            client_id_metadata_documents=True, extra_ca=ca,
            tls=(cert, key), host=SERVICES[AUTH], port=443, issuer=ISSUER,
            prefix=world_command(),
        ) as vendor:  # fmt: skip
            jwks = tmp / "jwks.json"
            jwks.write_text(lab_request(f"{ISSUER}/jwks", ca).text)
            log, deny, describe = tmp / "remote.log", tmp / "deny.txt", tmp / "describe.txt"
            deny.write_text("")
            describe.write_text("")
            procs: list[subprocess.Popen[bytes]] = []
            try:
                with gateway(
                    tmp, jailed=True, GIG_SANDBOX_SUBNET="10.214.0.0/24", GIG_SANDBOX_POOL="0",
                    GIG_EGRESS_DNS=the_lab.dns, GIG_EGRESS_CA_BUNDLE=str(ca),
                    GIG_PUBLIC_URL=public,
                ) as g:  # fmt: skip
                    # The real one, one that claims to be it (its metadata names it), and
                    # one of the 2025 generation only.
                    for name in ("mcp.example.test", "mcp2.example.test"):
                        procs.append(_serve(the_lab, name, MCP_URL, tmp, log, deny, jwks,
                                            "--describe", str(describe)))  # fmt: skip
                    procs.append(
                        _serve(the_lab, "mcp3.example.test", LEGACY_URL, tmp, log, deny, jwks,
                               "--legacy")
                    )  # fmt: skip
                    g.cli("server", "list")
                    port = free_port()
                    g.start(port=port)
                    front_cert, front_key = mint_cert(the_lab, "localhost", tmp)
                    listeners = [listening("127.0.0.1", front_port),
                                 in_world(lambda: listening("127.0.0.1", front_port))]  # fmt: skip
                    with tls_front(front_cert, front_key, port, listeners):
                        yield RemoteWorld(the_lab, g, vendor, ca, log, deny, describe, public)
            finally:
                for p in procs:
                    p.kill()
                    p.wait()


def signed_in(w: RemoteWorld) -> tuple[httpx.Client, dict[str, str]]:
    """The local administrator's API client, on the public URL (a session from a
    one-time link; its cookies are Secure, as on any https gateway)."""
    client = w.http()
    link = w.g.cli("login-link").stdout.strip().split()[-1]
    if client.get(link, follow_redirects=False).status_code != 303:
        raise RuntimeError("the one-time sign-in link did not sign in")
    return client, {"X-CSRF-Token": client.cookies["__Host-gig_csrf"], "Origin": w.public}


@contextlib.contextmanager
def dashboard(w: RemoteWorld) -> Iterator[chrome.Watched]:
    """Chromium signed in to the gateway's dashboard, at its public URL."""
    link = w.g.cli("login-link").stdout.strip().split()[-1]
    rules = ", ".join(f"MAP {name} {address}" for name, address in SERVICES.items())
    with chrome.chromium(f"--host-resolver-rules={rules}") as browser:
        # The lab's CA is not the system's: its names' certificates are taken here only.
        watched = chrome.Watched.open(browser, ignore_https_errors=True)
        watched.page.goto(link)
        try:
            yield watched
        finally:
            watched.close()


def connect_account(w: RemoteWorld, watched: chrome.Watched, vendor: str) -> list[str]:
    """The Accounts page's Connect, the vendor's login and consent, back connected.
    Returns the CSP violations the pages reported (none expected)."""
    page = watched.page
    page.goto(f"{w.public}/connections")
    page.locator(f"#conn-{vendor} form[action$='/connect'] button").click()
    # Consent is asked once per account and client; a client seen before goes straight
    # back (the vendor's session cookie is this browser's).
    page.wait_for_url(lambda url: "/interaction/" in url or "done=" in url)
    if "/interaction/" in page.url and page.locator("form#login").count():
        page.fill("form#login input[name=login]", ALICE.sub)
        page.fill("form#login input[name=password]", ALICE.password)
        page.click("form#login button[type=submit]")
    if "/interaction/" in page.url:
        page.click("form#consent button[type=submit]")
    page.wait_for_url(f"{w.public}/connections?done=connected")
    if "Connected" not in page.inner_text(f"#conn-{vendor}"):
        raise RuntimeError("the Accounts page does not say connected")
    return watched.csp_violations()


def connect_in_browser(w: RemoteWorld, vendor: str = "mcp-remote") -> list[str]:
    """Sign in, then :func:`connect_account`, in a browser of its own."""
    with dashboard(w) as watched:
        return connect_account(w, watched, vendor)
