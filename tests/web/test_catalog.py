"""The catalog page and installing with consent, in-process over the real control plane,
a real store (SQLite and PostgreSQL) and a real signed index built and signed by the
`gigmcp registry` commands from real catalog entries (toolspec servers: installing one
fetches nothing from the network).

Attacks:
- a user who is not an administrator sees no install, upgrade or uninstall button, and
  their forged posts (with a valid CSRF token) are refused by the service layer, with
  nothing installed, upgraded or removed;
- an administrator viewing the gateway as another user cannot install either;
- an install posted with a digest that is not the consent text's (stale: the entry
  changed after it was shown; or made up) is refused and nothing is installed; the
  same for an upgrade waiting for consent;
- an install posted without the CSRF field, or from another origin, is refused;
- a registry entry whose description holds markup is shown escaped, never as markup;
- an unknown entry, a bad server name or a gateway without a registry gets a clear page,
  never a traceback.
"""

from __future__ import annotations

import html
import re
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gigmcp.control import impersonation, installs, servers, websessions
from gigmcp.control.actor import Actor
from gigmcp.installer.index_fetch import RegistrySource
from gigmcp.installer.materialize import Target
from tests.support.dashboard import ORIGIN, Browser, Dash, dashboard

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT.parent / "shared" / "registry-catalog" / "manifests"
GIGMCP = str(Path(sys.executable).parent / "gigmcp")
# ably: sealed, dev-tools, a header credential, some tools off by default;
# alchemy: entrusted, dev-tools, an env credential; discord: sealed, comms.
ENTRIES = ("ably", "alchemy", "discord")
SCRIPT = "<script>alert(1)</script> & <b>bold</b>"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


@dataclass
class Registry:
    """A registry folder: manifests, an index signed by the real CLI, its key."""

    root: Path
    pubkey: str
    env: dict[str, str]
    generation: int = 0

    @property
    def ably(self) -> Path:
        return self.root / "manifests" / "ably"

    def publish(self) -> None:
        """Build and sign the index from the manifests as they are now; each one is
        generated later than the last (the fetcher refuses a rollback)."""
        self.generation += 1
        idx = self.root / "index" / "index.json"
        generated = f"2026-11-18T00:00:{self.generation:02d}Z"
        for args in (
            ("registry", "build-index", str(self.root / "manifests"), "--out", str(idx)),
            ("registry", "sign", str(idx), "--key", str(self.root / "key")),
        ):
            extra = ("--generated", generated) if args[1] == "build-index" else ()
            subprocess.run([GIGMCP, *args, *extra], env=self.env, check=True, capture_output=True)

    def source(self, cache: Path) -> RegistrySource:
        return RegistrySource(f"file://{self.root / 'index' / 'index.json'}", self.pubkey, cache)

    def new_version(self, version: str, extra_host: str | None = None) -> None:
        """ably at ``version``: the same entry, and its spec, with one more host."""
        text = (
            (self.ably / "0.1.0.yaml")
            .read_text()
            .replace("version: 0.1.0", f"version: {version}", 1)
        )
        if extra_host:
            text = text.replace("    - rest.ably.io", f"    - rest.ably.io\n    - {extra_host}", 1)
        (self.ably / f"{version}.yaml").write_text(text)
        spec = (self.ably / "0.1.0.toolspec.yaml").read_text()
        (self.ably / f"{version}.toolspec.yaml").write_text(
            spec.replace("version: 0.1.0", f"version: {version}", 1)
        )

    def describe_ably(self, description: str) -> None:
        """A presentation-only change of ably@0.1.0: its description."""
        manifest = self.ably / "0.1.0.yaml"
        text = re.sub(r"(?m)^description: .*\n", "", manifest.read_text())
        quoted = description.replace("\\", "\\\\").replace('"', '\\"')
        manifest.write_text(
            text.replace("displayName: Ably\n", f'displayName: Ably\ndescription: "{quoted}"\n', 1)
        )


@pytest.fixture(scope="module")
def signed_once(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    """The key made and the first index built and signed once per module (the CLI takes
    seconds to start); each test works on its own copy."""
    if not all((MANIFESTS / e).is_dir() for e in ENTRIES):
        pytest.skip(f"the registry catalog is not at {MANIFESTS}")
    tmp = tmp_path_factory.mktemp("signed")
    env = {"PATH": "/usr/bin:/bin", "GIG_DATA_DIR": str(tmp / "cli"), "HOME": str(tmp)}
    root = tmp / "registry"
    (root / "index").mkdir(parents=True)
    for e in ENTRIES:
        shutil.copytree(MANIFESTS / e, root / "manifests" / e)
    keygen = [GIGMCP, "registry", "keygen", "--out", str(root / "key")]
    pub = subprocess.run(keygen, env=env, check=True, capture_output=True, text=True).stdout
    reg = Registry(root, pub.strip(), env)
    reg.describe_ably(SCRIPT)
    reg.publish()
    return reg


@pytest.fixture
def registry(signed_once: Registry, tmp_path: Path) -> Registry:
    root = tmp_path / "registry"
    shutil.copytree(signed_once.root, root)
    env = dict(signed_once.env, GIG_DATA_DIR=str(tmp_path / "cli"), HOME=str(tmp_path))
    return Registry(root, signed_once.pubkey, env, signed_once.generation)


@pytest.fixture
async def dash(database_url: str, tmp_path: Path, registry: Registry) -> AsyncIterator[Dash]:
    async with dashboard(
        database_url,
        tmp_path,
        registry=registry.source(tmp_path / "cache"),
        install_target=Target(tmp_path / "packages"),
        impersonation=True,
    ) as d:
        yield d


def installed(dash: Dash) -> dict[str, installs.InstalledEntry]:
    return {e.server: e for e in installs.installed_entries(dash.engine, dash.admin)}


def server_names(dash: Dash) -> list[str]:
    return [s.name for s in servers.list_servers(dash.engine, dash.admin)]


def consent_block(page: str) -> str:
    """The consent text as the page shows it, unescaped: what a reader sees."""
    found = re.search(r'<pre class="catalog-consent"><code>(.*?)</code></pre>', page, re.S)
    assert found, "no consent text on the page"
    return html.unescape(found.group(1))


def digest_of(page: str) -> str:
    found = re.search(r'name="digest" value="([0-9a-f]{64})"', page)
    assert found, "no digest in the page's form"
    return found.group(1)


def assert_safe_page(r: Any) -> None:
    h = {k.lower(): v for k, v in r.headers.items()}
    assert h["content-security-policy"] == CSP
    assert h["cache-control"] == "no-store"
    assert "Traceback" not in r.text
    # Nothing the strict policy would block, so nothing that needs it relaxed.
    assert not re.search(r"\sstyle=|\son[a-z]+=|hx-on|javascript:", r.text, re.I)
    assert all("src=" in tag for tag in re.findall(r"<script\b[^>]*>", r.text))


async def plan_for(dash: Dash, who: Actor, ref: str = "ably") -> installs.InstallPlan:
    return await installs.plan_from_registry(dash.engine, who, dash.cfg.registry, ref)


# --- Browsing --------------------------------------------------------------------


async def test_the_catalog_lists_searches_and_filters(dash: Dash) -> None:
    alice = dash.browser(dash.alice)
    r = await alice.get("/catalog")
    assert r.status_code == 200, r.text
    assert_safe_page(r)
    for e in ENTRIES:
        assert f'href="/catalog/{e}"' in r.text
    assert 'aria-current="page">Catalog</a>' in r.text  # in the navigation, as here

    by_text = await alice.get("/catalog", params={"q": "ALCHEMY"})
    assert 'href="/catalog/alchemy"' in by_text.text
    assert 'href="/catalog/ably"' not in by_text.text
    assert 'value="ALCHEMY"' in by_text.text  # the search is kept in its field

    comms = await alice.get("/catalog", params={"category": "comms"})
    assert 'href="/catalog/discord"' in comms.text
    assert 'href="/catalog/ably"' not in comms.text
    assert '<option value="comms" selected>' in comms.text

    entrusted = await alice.get("/catalog", params={"tier": "entrusted"})
    assert 'href="/catalog/alchemy"' in entrusted.text
    assert 'href="/catalog/ably"' not in entrusted.text and "/catalog/discord" not in entrusted.text

    both = await alice.get("/catalog", params={"category": "dev-tools", "tier": "sealed"})
    assert 'href="/catalog/ably"' in both.text and "/catalog/alchemy" not in both.text

    none = await alice.get("/catalog", params={"q": "nothing-like-this"})
    assert none.status_code == 200 and "No server matches this search." in none.text


async def test_an_entrys_page_shows_what_it_may_do(dash: Dash) -> None:
    r = await dash.browser(dash.alice).get("/catalog/ably")
    assert r.status_code == 200, r.text
    assert_safe_page(r)
    page = html.unescape(r.text)
    assert "Sealed" in page and "the egress proxy injects them" in page
    assert "<code>rest.ably.io</code>" in page
    assert "<code>ably_api_key</code>" in page
    assert "injected by the proxy as Authorization: Basic {token}" in page
    assert "0.1.0" in page
    assert "sha256:84686ed00e0498e40c2071a7fdbe668c99815fffd05802e3b34b5962b4ca0873" in page
    # Tools, and which start off.
    rows = dict(re.findall(r"<th scope=\"row\"><code>(\w+)</code></th>\s*<td>(.*?)</td>", r.text))
    assert rows["list_channels"] == "on"
    assert "off until enabled" in rows["publish_message_to_channel"]
    assert "off until enabled" in rows["batch_publish_messages"]

    entrusted = html.unescape((await dash.browser(dash.alice).get("/catalog/alchemy")).text)
    assert "Entrusted" in entrusted and "handed to the server itself" in entrusted
    assert "handed to the server in $ALCHEMY_API_KEY" in entrusted


async def test_attack_registry_markup_is_shown_escaped(dash: Dash) -> None:
    alice = dash.browser(dash.alice)
    for path in ("/catalog", "/catalog/ably", "/catalog?q=script"):
        r = await alice.get(path)
        assert r.status_code == 200, r.text
        assert "<script>alert(1)</script>" not in r.text and "<b>bold</b>" not in r.text
        assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;" in r.text
    # A search for markup is echoed into its field as text.
    r = await alice.get("/catalog", params={"q": '"><script>x()</script>'})
    assert "<script>x()</script>" not in r.text
    assert 'value="&#34;&gt;&lt;script&gt;x()&lt;/script&gt;"' in r.text


async def test_an_unknown_entry_is_not_found_with_a_clear_page(dash: Dash) -> None:
    admin = dash.browser(dash.admin)
    for path in ("/catalog/no-such-thing", "/catalog/ably@9.9.9", "/catalog/no-such-thing/install"):
        r = await admin.get(path)
        assert r.status_code == 404, (path, r.text)
        assert_safe_page(r)
        assert "No such entry in the catalog" in r.text


async def test_without_a_registry_the_catalog_says_so(database_url: str, tmp_path: Path) -> None:
    async with dashboard(database_url, tmp_path) as d:
        admin = d.browser(d.admin)
        for path in ("/catalog", "/catalog/ably", "/catalog/ably/install"):
            r = await admin.get(path)
            assert r.status_code == 503, (path, r.text)
            assert_safe_page(r)
            assert "No registry is configured" in r.text
            assert "GIG_REGISTRY_INDEX_URL" in r.text and "GIG_REGISTRY_PUBKEY" in r.text
        refused = await admin.post_form("/catalog/ably/install", {"digest": "0" * 64})
        assert refused.status_code == 503 and "No registry is configured" in refused.text


async def test_a_broken_index_is_a_clear_page_not_an_error(dash: Dash, registry: Registry) -> None:
    sig = registry.root / "index" / "index.json.sig"
    assert sig.is_file()
    sig.write_text("0" * 128)  # not the index's signature
    for path in ("/catalog", "/catalog/ably"):
        r = await dash.browser(dash.alice).get(path)
        assert r.status_code == 502, r.text
        assert_safe_page(r)
        assert "The registry&#39;s index could not be used" in r.text
        assert "signature" in r.text  # the registry's own words: what to look at


async def test_attack_browsing_does_not_make_the_gateway_fetch_the_index_each_time(
    dash: Dash, registry: Registry
) -> None:
    """Any signed-in user could make the gateway download and verify the index at every
    page view (and hold its workers while a slow registry answers): browsing reuses an
    index verified within the last minute; installing fetches anew."""
    alice = dash.browser(dash.alice)
    assert (await alice.get("/catalog")).status_code == 200
    sig = registry.root / "index" / "index.json.sig"
    sig.write_text("0" * 128)  # from now on, a fetch would fail
    for path in ("/catalog", "/catalog/ably", "/catalog?q=ably"):
        assert (await alice.get(path)).status_code == 200, path
    assert (await dash.browser(dash.admin).get("/catalog/ably")).status_code == 200
    # Acting fetches anew, and the broken signature is seen at once.
    admin = dash.browser(dash.admin)
    consent = await admin.get("/catalog/ably/install")
    assert consent.status_code == 502 and "signature" in consent.text


# --- Installing ------------------------------------------------------------------


async def test_install_shows_the_service_layers_consent_and_acts_on_its_digest(
    dash: Dash,
) -> None:
    admin = dash.browser(dash.admin)
    entry = await admin.get("/catalog/ably")
    # An administrator's button, for the version on the page.
    assert 'href="/catalog/ably%400.1.0/install"' in entry.text

    shown = await admin.get("/catalog/ably/install")
    assert shown.status_code == 200, shown.text
    assert_safe_page(shown)
    plan = await plan_for(dash, dash.admin)
    # Exactly the service layer's text, and its digest in the form.
    assert consent_block(shown.text) == "\n".join(plan.consent)
    assert digest_of(shown.text) == installs.consent_digest(plan)
    assert f'name="csrf" value="{admin.csrf}"' in shown.text

    r = await admin.post_form("/catalog/ably/install", {"digest": digest_of(shown.text)})
    assert r.status_code == 303, r.text
    assert r.headers["location"] == "/catalog/ably?done=installed"
    assert installed(dash)["ably"].version == "0.1.0"

    after = await admin.get(r.headers["location"])
    assert "Installed. Assign it to a profile to use it." in after.text
    assert "<code>ably</code></th>" in after.text and "up to date" in after.text
    listed = await dash.browser(dash.alice).get("/catalog")
    assert "installed</span>" in listed.text

    # Installing it again under its name is refused (it exists), nothing changes.
    again = await admin.post_form("/catalog/ably/install", {"digest": digest_of(shown.text)})
    assert again.status_code == 409 and "already exists" in again.text
    assert server_names(dash) == ["ably"]


async def test_install_under_another_name(dash: Dash) -> None:
    admin = dash.browser(dash.admin)
    shown = await admin.get("/catalog/ably/install", params={"name": "ably-two"})
    assert shown.status_code == 200
    assert 'name="name" value="ably-two"' in shown.text
    plan = await installs.plan_from_registry(
        dash.engine, dash.admin, dash.cfg.registry, "ably", "ably-two"
    )
    assert digest_of(shown.text) == installs.consent_digest(plan)
    # The consent for one name is not the consent for another.
    wrong = await admin.post_form(
        "/catalog/ably/install", {"digest": digest_of(shown.text), "name": "ably-three"}
    )
    assert wrong.status_code == 409 and server_names(dash) == []
    ok = await admin.post_form(
        "/catalog/ably/install", {"digest": digest_of(shown.text), "name": "ably-two"}
    )
    assert ok.status_code == 303 and server_names(dash) == ["ably-two"]
    assert installed(dash)["ably-two"].name == "ably"


async def test_a_bad_name_gets_a_clear_error_and_is_kept(dash: Dash) -> None:
    admin = dash.browser(dash.admin)
    r = await admin.get("/catalog/ably/install", params={"name": "Not_A<Name>"})
    assert r.status_code == 422, r.text
    assert_safe_page(r)
    assert "invalid server name" in html.unescape(r.text)
    assert 'value="Not_A&lt;Name&gt;"' in r.text  # kept, escaped, to be corrected
    assert 'aria-invalid="true"' in r.text
    assert 'name="digest"' not in r.text  # nothing to agree to
    posted = await admin.post_form("/catalog/ably/install", {"digest": "0" * 64, "name": "B A D"})
    assert posted.status_code == 422 and 'value="B A D"' in posted.text
    assert server_names(dash) == []


async def test_attack_a_stale_digest_installs_nothing(dash: Dash, registry: Registry) -> None:
    admin = dash.browser(dash.admin)
    shown = await admin.get("/catalog/ably/install")
    old_digest = digest_of(shown.text)
    # The entry changes after the consent was shown: one more host.
    manifest = registry.ably / "0.1.0.yaml"
    manifest.write_text(
        manifest.read_text().replace("    - rest.ably.io", "    - rest.ably.io\n    - evil.example")
    )
    registry.publish()
    r = await admin.post_form("/catalog/ably/install", {"digest": old_digest})
    assert r.status_code == 409, r.text
    assert_safe_page(r)
    assert "changed since the consent was shown" in r.text
    assert server_names(dash) == []
    # The page shows the text as it is now, with its own digest, to read again.
    assert "  - evil.example" in consent_block(r.text)
    assert digest_of(r.text) != old_digest
    # A made-up digest fares no better.
    made_up = await admin.post_form("/catalog/ably/install", {"digest": "f" * 64})
    assert made_up.status_code == 409 and server_names(dash) == []
    missing = await admin.post_form("/catalog/ably/install", {})
    assert missing.status_code == 409 and server_names(dash) == []
    # Agreeing to the new text installs it.
    ok = await admin.post_form("/catalog/ably/install", {"digest": digest_of(r.text)})
    assert ok.status_code == 303 and server_names(dash) == ["ably"]


async def test_attack_a_user_sees_no_buttons_and_cannot_install(dash: Dash) -> None:
    alice = dash.browser(dash.alice)
    entry = await alice.get("/catalog/ably")
    assert entry.status_code == 200
    assert "/install" not in entry.text and 'method="post" action="/catalog' not in entry.text
    assert (await alice.get("/catalog/ably/install")).status_code == 403
    # A forged post, with Alice's valid CSRF token and the digest an administrator saw.
    digest = installs.consent_digest(await plan_for(dash, dash.admin))
    r = await alice.post_form("/catalog/ably/install", {"digest": digest})
    assert r.status_code == 403, r.text
    assert_safe_page(r)
    assert "administrators only" in r.text
    assert server_names(dash) == []


async def test_attack_an_impersonating_administrator_cannot_install(dash: Dash) -> None:
    admin = dash.browser(dash.admin)
    digest = digest_of((await admin.get("/catalog/ably/install")).text)
    current = websessions.resolve(
        dash.engine, admin.client.cookies[dash.cfg.cookie_name], dash.cfg.lifetimes
    )
    assert current is not None
    impersonation.start(dash.engine, current, dash.bob.user_id, 10)
    assert "/install" not in (await admin.get("/catalog/ably")).text
    r = await admin.post_form("/catalog/ably/install", {"digest": digest})
    assert r.status_code == 403 and server_names(dash) == []


async def test_attack_an_install_without_csrf_or_from_elsewhere_is_refused(dash: Dash) -> None:
    admin = dash.browser(dash.admin)
    digest = digest_of((await admin.get("/catalog/ably/install")).text)
    attempts = [
        await admin.post_form("/catalog/ably/install", {"digest": digest}, csrf=False),
        await admin.post_form(
            "/catalog/ably/install", {"digest": digest}, origin="https://evil.example"
        ),
        await admin.post_form("/catalog/ably/install", {"digest": digest}, origin=None),
        await admin.client.post(
            "/catalog/ably/install",
            data={"digest": digest, "csrf": dash.browser(dash.admin).csrf},  # another session's
            headers={"Origin": ORIGIN},
        ),
    ]
    for r in attempts:
        assert r.status_code == 403, r.text
        assert_safe_page(r)
    assert server_names(dash) == []


# --- Upgrading and uninstalling --------------------------------------------------


async def install_ably(dash: Dash, admin: Browser) -> None:
    shown = await admin.get("/catalog/ably/install")
    r = await admin.post_form("/catalog/ably/install", {"digest": digest_of(shown.text)})
    assert r.status_code == 303, r.text


async def test_a_presentation_only_change_applies_quietly(dash: Dash, registry: Registry) -> None:
    admin = dash.browser(dash.admin)
    await install_ably(dash, admin)
    up = await admin.post_form("/catalog/installed/ably/upgrade", {})
    assert up.status_code == 303 and up.headers["location"] == "/catalog/ably?done=current"

    registry.describe_ably("Realtime messaging, now described better.")
    registry.publish()
    entry = await admin.get("/catalog/ably")
    assert "a newer version is in the index" in entry.text
    assert 'action="/catalog/installed/ably/upgrade"' in entry.text
    up = await admin.post_form("/catalog/installed/ably/upgrade", {})
    assert up.status_code == 303, up.text
    assert up.headers["location"] == "/catalog/ably?done=quiet"
    assert installed(dash)["ably"].pending_version is None
    page = await admin.get(up.headers["location"])
    assert "Upgraded quietly" in page.text and "up to date" in page.text


async def test_an_upgrade_that_changes_what_it_may_do_waits_for_consent(
    dash: Dash, registry: Registry
) -> None:
    admin, alice = dash.browser(dash.admin), dash.browser(dash.alice)
    await install_ably(dash, admin)
    registry.new_version("0.2.0", extra_host="realtime.ably.io")
    registry.publish()

    up = await admin.post_form("/catalog/installed/ably/upgrade", {})
    assert up.status_code == 303, up.text
    assert up.headers["location"] == "/catalog/installed/ably/upgrade"
    # Staged, not applied: 0.1.0 keeps running.
    assert (installed(dash)["ably"].version, installed(dash)["ably"].pending_version) == (
        "0.1.0",
        "0.2.0",
    )
    entry = await admin.get("/catalog/ably")
    assert "upgrade to 0.2.0 waits for consent" in entry.text

    review = await admin.get(up.headers["location"])
    assert review.status_code == 200, review.text
    assert_safe_page(review)
    shown = installs.review_upgrade(dash.engine, dash.admin, "ably")
    added = re.search(r'<ul class="catalog-changes catalog-added">(.*?)</ul>', review.text, re.S)
    assert added and "  - realtime.ably.io" in html.unescape(added.group(1))
    assert consent_block(review.text) == "\n".join(shown.pending.consent)
    assert digest_of(review.text) == shown.digest

    # Alice can neither see the review nor apply it with the digest.
    assert (await alice.get("/catalog/installed/ably/upgrade")).status_code == 404
    forged = await alice.post_form(
        "/catalog/installed/ably/upgrade/consent", {"digest": shown.digest}
    )
    assert forged.status_code == 403
    assert (await alice.post_form("/catalog/installed/ably/upgrade", {})).status_code == 403
    # A digest that is not the one shown applies nothing.
    stale = await admin.post_form("/catalog/installed/ably/upgrade/consent", {"digest": "0" * 64})
    assert stale.status_code == 409 and "changed since it was shown" in stale.text
    assert installed(dash)["ably"].version == "0.1.0"
    no_csrf = await admin.post_form(
        "/catalog/installed/ably/upgrade/consent", {"digest": shown.digest}, csrf=False
    )
    assert no_csrf.status_code == 403 and installed(dash)["ably"].version == "0.1.0"

    ok = await admin.post_form("/catalog/installed/ably/upgrade/consent", {"digest": shown.digest})
    assert ok.status_code == 303, ok.text
    assert ok.headers["location"] == "/catalog/ably?done=upgraded"
    assert (installed(dash)["ably"].version, installed(dash)["ably"].pending_version) == (
        "0.2.0",
        None,
    )
    # Nothing waits any more: the review says so instead of offering a stale form.
    gone = await admin.get("/catalog/installed/ably/upgrade")
    assert gone.status_code == 409 and 'name="digest"' not in gone.text


async def test_uninstall_is_for_administrators_and_asks_first(dash: Dash) -> None:
    admin, alice = dash.browser(dash.admin), dash.browser(dash.alice)
    await install_ably(dash, admin)
    forged = await alice.post_form("/catalog/installed/ably/uninstall", {})
    assert forged.status_code == 403 and server_names(dash) == ["ably"]
    assert (await alice.get("/catalog/installed/ably/uninstall")).status_code == 404
    no_csrf = await admin.post_form(
        "/catalog/installed/ably/uninstall", {"confirm": "1"}, csrf=False
    )
    assert no_csrf.status_code == 403 and server_names(dash) == ["ably"]

    ask = await admin.get("/catalog/installed/ably/uninstall")
    assert ask.status_code == 200
    assert_safe_page(ask)
    assert 'action="/catalog/installed/ably/uninstall"' in ask.text
    assert server_names(dash) == ["ably"]  # asking removes nothing
    r = await admin.post_form("/catalog/installed/ably/uninstall", {})
    assert r.status_code == 303 and r.headers["location"] == "/catalog?done=uninstalled"
    assert server_names(dash) == []
    assert "Uninstalled." in (await admin.get(r.headers["location"])).text
