"""The distribution client against a hostile registry on loopback: where it agrees to
send requests (token realms, redirects), what it sends, and how it stops a blob that
runs past its descriptor."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest

from gigmcp.netpolicy.resolver import DnsResolver
from gigmcp.packages.oci.distribution import ClientOptions, parse_challenge
from gigmcp.packages.oci.errors import OciRegistryError, VerificationError
from gigmcp.packages.oci.pull import PullOptions, install_image
from tests.support.egress_lab import HOST_IP, HOST_NAMES, Lab, host_address, lab
from tests.support.hosts_table import HostsTable
from tests.support.oci_images import app_layer, image, index, sha
from tests.support.oci_pull import CacheBox, plain_options
from tests.support.oci_registry import FakeRegistry, Reply, Seen, fake_registry


async def install(
    fake: FakeRegistry, repo: str, digest: str, box: CacheBox, **kw: object
) -> object:
    options = kw.pop("options", None) or plain_options(fake.host)
    return await install_image(
        f"{fake.host}/{repo}", digest, "/app/server", box.cache, options=options
    )  # type: ignore[arg-type]


def challenge(realm: str, service: str = "fake") -> Reply:
    return Reply(401, {"WWW-Authenticate": f'Bearer realm="{realm}",service="{service}",scope="x"'})


def test_challenges_are_parsed_with_quotes_commas_and_escapes() -> None:
    got = parse_challenge(
        'Bearer realm="https://a/t?x=1,2",service="s\\"q",scope="repository:a/b:pull,push"'
    )
    assert got == (
        "bearer",
        {"realm": "https://a/t?x=1,2", "service": 's"q', "scope": "repository:a/b:pull,push"},
    )
    assert parse_challenge('Basic realm="r"') == ("basic", {"realm": "r"})
    assert parse_challenge("") is None
    assert parse_challenge("Bearer " + "x" * 10000) is None


# -- what is sent ---------------------------------------------------------------------


async def test_requests_ask_for_every_manifest_type_and_no_compression(
    repo: str, box: CacheBox
) -> None:
    with fake_registry() as fake:
        digest = fake.serve(repo, index([image([app_layer()])]))
        await install(fake, repo, digest, box)
        first = fake.seen[0]
        assert first.path == f"/v2/{repo}/manifests/{digest}"  # by digest, never by tag
        for media in ("application/vnd.oci.image.index.v1+json",
                      "application/vnd.oci.image.manifest.v1+json",
                      "application/vnd.docker.distribution.manifest.list.v2+json",
                      "application/vnd.docker.distribution.manifest.v2+json"):  # fmt: skip
            assert media in first.headers["accept"]
        assert all(s.headers.get("accept-encoding") == "identity" for s in fake.seen)
        assert all("authorization" not in s.headers for s in fake.seen)


async def test_https_is_the_default(repo: str, box: CacheBox) -> None:
    with fake_registry() as fake:  # plain http, not listed as such
        digest = fake.serve(repo, index([image([app_layer()])]))
        with pytest.raises(
            OciRegistryError, match=f"cannot reach {fake.host.split(':')[0]} over https"
        ):
            await install(
                fake, repo, digest, box, options=PullOptions(client=ClientOptions(read_timeout_s=5))
            )
        assert fake.seen == []  # no plain-text request ever reached it
    box.assert_clean()


async def test_registry_errors_name_the_code_but_never_quote_the_body(
    repo: str, box: CacheBox
) -> None:
    with fake_registry() as fake:
        fake.routes[f"/v2/{repo}/manifests/{sha(b'x')}"] = Reply(
            500, {}, b'{"errors":[{"code":"INTERNAL_ERROR","message":"db password is hunter2"}]}'
        )
        with pytest.raises(OciRegistryError, match="answered 500 INTERNAL_ERROR") as info:
            await install(fake, repo, sha(b"x"), box)
        assert "hunter2" not in str(info.value)


# -- blobs that do not stop -------------------------------------------------------------


async def test_a_blob_that_runs_past_its_descriptor_is_cut_mid_stream(
    repo: str, box: CacheBox
) -> None:
    layer = app_layer()
    with fake_registry() as fake:
        digest = fake.serve(repo, index([image([layer])]))
        # No Content-Length, and zeros until the client hangs up (256 MiB at most).
        fake.routes[f"/v2/{repo}/blobs/{sha(layer)}"] = Reply(200, {}, endless=True)
        with pytest.raises(
            VerificationError, match="larger than its descriptor says .* refused mid-stream"
        ):
            await install(fake, repo, digest, box)
        for _ in range(100):
            if fake.hung_up:
                break
            await asyncio.sleep(0.05)
        assert fake.hung_up == 1
        assert fake.sent_bytes < 64 * 1024 * 1024
    box.assert_clean()


async def test_a_content_length_over_the_descriptor_is_refused_before_reading(
    repo: str, box: CacheBox
) -> None:
    layer = app_layer()
    with fake_registry() as fake:
        digest = fake.serve(repo, index([image([layer])]))
        fake.routes[f"/v2/{repo}/blobs/{sha(layer)}"] = Reply(200, {}, layer + b"\0" * 100)
        with pytest.raises(
            VerificationError, match=f"is {len(layer) + 100} bytes by the registry's account"
        ):
            await install(fake, repo, digest, box)
    box.assert_clean()


async def test_a_transfer_cut_short_is_a_clear_error(repo: str, box: CacheBox) -> None:
    layer = app_layer()
    with fake_registry() as fake:
        digest = fake.serve(repo, index([image([layer])]))
        fake.routes[f"/v2/{repo}/blobs/{sha(layer)}"] = Reply(
            200, {}, layer[:50], declared_length=len(layer)
        )
        with pytest.raises(OciRegistryError, match=f"blob {sha(layer)}: the transfer broke off"):
            await install(fake, repo, digest, box)
    box.assert_clean()


async def test_a_manifest_over_the_cap_is_refused(repo: str, box: CacheBox) -> None:
    with fake_registry() as fake:
        big = json.dumps({"schemaVersion": 2, "manifests": [], "pad": "x" * 5000}).encode()
        fake.routes[f"/v2/{repo}/manifests/{sha(big)}"] = Reply(200, {}, big)
        client = ClientOptions(
            plain_http_registries=frozenset({fake.host}), max_manifest_bytes=4096
        )
        with pytest.raises(VerificationError, match=r"larger than the cap \(4096 bytes\)"):
            await install(fake, repo, sha(big), box, options=PullOptions(client=client))
    box.assert_clean()


# -- the token challenge ----------------------------------------------------------------


async def test_a_same_host_realm_is_used_and_its_token_goes_only_to_the_registry(
    repo: str, box: CacheBox
) -> None:
    with fake_registry() as fake, fake_registry() as auth:
        token = "tok.en-123_abc"
        auth.routes["/token"] = Reply(200, {"Content-Type": "application/json"},
                                      json.dumps({"token": token}).encode())  # fmt: skip
        digest = fake.serve(repo, index([image([app_layer()])]))
        honest = dict(fake.routes)

        def guarded(path: str) -> object:
            def answer(seen: Seen) -> Reply:
                if seen.headers.get("authorization") != f"Bearer {token}":
                    return challenge(f"http://127.0.0.1:{auth.port}/token", "svc")
                route = honest[path]
                assert isinstance(route, Reply)
                return route

            return answer

        for path in honest:
            fake.routes[path] = guarded(path)  # type: ignore[assignment]
        await install(fake, repo, digest, box)
        assert len(auth.seen) == 1
        asked = auth.seen[0]
        assert (
            asked.path.startswith("/token?")
            and f"scope=repository%3A{repo.replace('/', '%2F')}%3Apull" in asked.path
        )
        assert "service=svc" in asked.path
        assert "authorization" not in asked.headers  # anonymous: nothing to send to a realm
        assert all(s.headers.get("authorization") == f"Bearer {token}" for s in fake.seen[1:])


@pytest.mark.parametrize(
    ("realm", "message"),
    [
        ("https://169.254.169.254/latest/meta-data/iam", "a cloud-metadata address"),
        ("https://10.0.0.1/token", "a private address"),
        ("https://[::ffff:127.0.0.1]/token", "refused realm URL"),
        ("https://localhost:{port}/token", "resolves to a blocked address \\(loopback\\)"),
        ("http://example.com/token", "another host must use https"),
        ("file:///etc/passwd", "scheme 'file' is not https"),
        ("https://user:pw@example.com/token", "carries credentials"),
        ("/relative/token", "not an absolute URL"),
    ],
)
async def test_hostile_realms_are_refused_before_any_connection(
    repo: str, box: CacheBox, realm: str, message: str
) -> None:
    with fake_registry() as fake, fake_registry("127.0.0.2") as bystander:
        fake.routes[f"/v2/{repo}/manifests/{sha(b'i')}"] = challenge(
            realm.format(port=bystander.port)
        )
        with pytest.raises(OciRegistryError, match=message):
            await install(fake, repo, sha(b"i"), box)
        assert bystander.seen == []
    box.assert_clean()


async def test_a_realm_on_another_loopback_address_is_refused(repo: str, box: CacheBox) -> None:
    with fake_registry() as fake, fake_registry("127.0.0.2") as internal:
        internal.routes["/token"] = Reply(200, {}, b'{"token": "internal-secret"}')
        fake.routes[f"/v2/{repo}/manifests/{sha(b'i')}"] = challenge(
            f"https://127.0.0.2:{internal.port}/token"
        )
        with pytest.raises(
            OciRegistryError, match="refused realm URL to 127.0.0.2: a loopback address"
        ):
            await install(fake, repo, sha(b"i"), box)
        plain = f"http://127.0.0.2:{internal.port}/token"
        fake.routes[f"/v2/{repo}/manifests/{sha(b'i')}"] = challenge(plain)
        with pytest.raises(OciRegistryError, match="another host must use https"):
            await install(fake, repo, sha(b"i"), box)
        assert internal.seen == []  # the internal service was never asked anything


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (
            Reply(401, {"WWW-Authenticate": 'Basic realm="registry"'}),
            "asks for a username and password",
        ),
        (Reply(401, {}), "without a usable challenge"),
        (Reply(401, {"WWW-Authenticate": 'Bearer service="x"'}), "without a bearer realm"),
    ],
)
async def test_unusable_challenges(repo: str, box: CacheBox, reply: Reply, message: str) -> None:
    with fake_registry() as fake:
        fake.routes[f"/v2/{repo}/manifests/{sha(b'i')}"] = reply
        with pytest.raises(OciRegistryError, match=message):
            await install(fake, repo, sha(b"i"), box)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (json.dumps({"token": "ok\r\nX-Injected: 1"}).encode(), "no usable token"),
        (json.dumps({"token": ""}).encode(), "no usable token"),
        (json.dumps({"nothing": 1}).encode(), "no usable token"),
        (b"[1, 2]", "not a JSON object"),
        (json.dumps({"token": "x" * 70000}).encode(), "answer is too large"),
    ],
)
async def test_bad_token_answers(repo: str, box: CacheBox, body: bytes, message: str) -> None:
    with fake_registry() as fake:
        fake.routes["/token"] = Reply(200, {}, body)
        fake.routes[f"/v2/{repo}/manifests/{sha(b'i')}"] = challenge(
            f"http://127.0.0.1:{fake.port}/token"
        )
        with pytest.raises(OciRegistryError, match=message) as info:
            await install(fake, repo, sha(b"i"), box)
        assert "X-Injected" not in str(info.value)
        assert all("x-injected" not in s.headers for s in fake.seen)


async def test_a_token_the_registry_still_refuses(repo: str, box: CacheBox) -> None:
    with fake_registry() as fake:
        fake.routes["/token"] = Reply(200, {}, b'{"token": "sekrit-token"}')
        fake.routes[f"/v2/{repo}/manifests/{sha(b'i')}"] = challenge(
            f"http://127.0.0.1:{fake.port}/token"
        )
        with pytest.raises(
            OciRegistryError, match="answered 401 .*refused anonymous access"
        ) as info:
            await install(fake, repo, sha(b"i"), box)
        assert "sekrit" not in str(info.value)
        assert (
            len([s for s in fake.seen if s.path.startswith("/token")]) == 1
        )  # asked once, not in a loop


# -- redirects ---------------------------------------------------------------------------


async def test_a_blob_redirect_on_the_same_host_is_followed(repo: str, box: CacheBox) -> None:
    layer = app_layer()
    with fake_registry() as fake, fake_registry() as cdn:
        digest = fake.serve(repo, index([image([layer])]))
        cdn.routes["/cdn/layer"] = Reply(200, {}, layer)
        fake.routes[f"/v2/{repo}/blobs/{sha(layer)}"] = Reply(
            307, {"Location": f"http://127.0.0.1:{cdn.port}/cdn/layer"}
        )
        root = await install(fake, repo, digest, box)
        assert cdn.paths() == ["/cdn/layer"]
        assert root is not None


@pytest.mark.parametrize(
    ("location", "message"),
    [
        (
            "http://127.0.0.2:{port}/blob",
            "refused redirect URL to 127.0.0.2: another host must use https",
        ),
        ("https://127.0.0.2:{port}/blob", "a loopback address"),
        ("https://192.168.1.1/blob", "a private address"),
        ("https://[fd00:ec2::254]/blob", "cloud-metadata"),
        ("ftp://example.com/blob", "scheme 'ftp'"),
        ("/v2/{repo}/blobs/{digest}", "too many redirects"),
    ],
)
async def test_blob_redirects_outside_the_rule_are_refused(
    repo: str, box: CacheBox, location: str, message: str
) -> None:
    layer = app_layer()
    with fake_registry() as fake, fake_registry("127.0.0.2") as bystander:
        digest = fake.serve(repo, index([image([layer])]))
        target = location.format(port=bystander.port, repo=repo, digest=sha(layer))
        fake.routes[f"/v2/{repo}/blobs/{sha(layer)}"] = Reply(302, {"Location": target})
        with pytest.raises(OciRegistryError, match=message):
            await install(fake, repo, digest, box)
        assert bystander.seen == []
    box.assert_clean()


@pytest.mark.parametrize(
    ("answers", "message"),
    [
        (["93.184.216.34", "127.0.0.1"], "resolves to a blocked address \\(loopback\\)"),
        (["2606:2800:220:1::1", "fd12::1"], "resolves to a blocked address \\(unique-local\\)"),
        (["169.254.169.254"], "cloud-metadata"),
        ([], "cannot resolve auth.example.test"),
    ],
)
async def test_a_realm_name_must_resolve_only_to_public_addresses(
    repo: str, box: CacheBox, answers: list[str], message: str
) -> None:
    # Every answer counts: one private address among public ones is enough to refuse
    # (a rebinding name would otherwise win half the time).
    hosts = HostsTable({"auth.example.test": answers} if answers else {})
    with fake_registry() as fake:
        fake.routes[f"/v2/{repo}/manifests/{sha(b'i')}"] = challenge(
            "https://auth.example.test/token"
        )
        client = ClientOptions(plain_http_registries=frozenset({fake.host}), resolver=hosts)
        with pytest.raises(OciRegistryError, match=message):
            await install(fake, repo, sha(b"i"), box, options=PullOptions(client=client))
    assert hosts.asked == ["auth.example.test"]
    box.assert_clean()


# -- the gateway host's own addresses ------------------------------------------------------


@pytest.fixture
def host_lab() -> Iterator[Lab]:
    """The egress lab (needs root): this thread steps into a namespace of its own whose
    primary address (11.1.0.1) is public-looking, with recording host services on it;
    the fake registries below are made in that namespace."""
    with lab() as built:
        yield built


@pytest.mark.root
async def test_attack_a_realm_on_the_hosts_own_primary_address_is_refused_before_any_connection(
    host_lab: Lab, repo: str, box: CacheBox
) -> None:
    # 11.1.0.1 passes every special-purpose table: only the kernel knows it is this
    # host's, where the gateway's API or a container engine may listen. The "token"
    # such a service answered would go back to the registry in the next request.
    with fake_registry() as fake:
        fake.routes[f"/v2/{repo}/manifests/{sha(b'i')}"] = challenge(f"https://{HOST_IP}/token")
        with pytest.raises(
            OciRegistryError, match=rf"refused realm URL to {HOST_IP}: an address of this host"
        ):
            await install(fake, repo, sha(b"i"), box)
    assert host_lab.host_hits() == [], "a host service was reached"
    box.assert_clean()


@pytest.mark.root
async def test_attack_a_realm_name_resolving_to_another_interface_of_the_host_is_refused(
    host_lab: Lab, repo: str, box: CacheBox
) -> None:
    # The address is added to an interface of its own, after the namespace was built.
    with host_address(host_lab, HOST_NAMES["hostsvc.example.test"]), fake_registry() as fake:
        fake.routes[f"/v2/{repo}/manifests/{sha(b'i')}"] = challenge(
            "https://hostsvc.example.test/token"
        )
        client = ClientOptions(
            plain_http_registries=frozenset({fake.host}), resolver=DnsResolver(host_lab.dns)
        )
        with pytest.raises(
            OciRegistryError, match=r"resolves to a blocked address \(host-address\)"
        ):
            await install(fake, repo, sha(b"i"), box, options=PullOptions(client=client))
        assert host_lab.host_hits() == [], "a host service was reached"
    box.assert_clean()
