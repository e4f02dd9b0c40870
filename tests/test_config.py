"""Configuration: every bad value stops start-up with one line naming the variable."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from gigmcp.config import ConfigError, ensure_master_key, load_settings

KEY = "ab" * 32


def test_defaults_are_embedded(tmp_path: Path) -> None:
    s = load_settings({"GIG_DATA_DIR": str(tmp_path)})
    assert s.listen == "127.0.0.1:8080"
    assert s.database_url == f"sqlite:///{tmp_path / 'gigmcp.db'}"
    assert s.master_key is None and not s.oidc_enabled
    assert s.registry_refresh == 3600


def test_the_registry_refresh_is_seconds_or_off(tmp_path: Path) -> None:
    for raw, seconds in (("0", 0), ("60", 60), (" 900 ", 900), ("604800", 604800)):
        env = {"GIG_DATA_DIR": str(tmp_path), "GIG_REGISTRY_REFRESH": raw}
        assert load_settings(env).registry_refresh == seconds


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"GIG_MASTER_KEY": "short"}, "GIG_MASTER_KEY"),
        ({"GIG_MASTER_KEY": "zz" * 32}, "GIG_MASTER_KEY"),
        ({"GIG_MASTER_KEY": KEY, "GIG_MASTER_KEY_FILE": "/nonexistent"}, "GIG_MASTER_KEY_FILE"),
        ({"GIG_MASTER_KEY_FILE": "/nonexistent/key"}, "GIG_MASTER_KEY_FILE"),
        ({"GIG_LISTEN": "8080"}, "GIG_LISTEN"),
        ({"GIG_LISTEN": "127.0.0.1:99999"}, "GIG_LISTEN"),
        ({"GIG_LISTEN": "example.com:80"}, "GIG_LISTEN"),
        ({"GIG_DATABASE_URL": "mysql://x"}, "GIG_DATABASE_URL"),
        ({"GIG_OIDC_ISSUER": "https://idp"}, "GIG_OIDC_CLIENT_ID"),
        ({"GIG_SANDBOX_SUBNET": "10.0.0.1/16"}, "GIG_SANDBOX_SUBNET"),
        ({"GIG_SANDBOX_SUBNET": "10.0.0.0/30"}, "GIG_SANDBOX_SUBNET"),
        ({"GIG_ALLOWED_ORIGINS": "evil"}, "GIG_ALLOWED_ORIGINS"),
        ({"GIG_MAX_BODY_BYTES": "lots"}, "GIG_MAX_BODY_BYTES"),
        ({"GIG_REQUEST_TIMEOUT": "-1"}, "GIG_REQUEST_TIMEOUT"),
        ({"GIG_TASK_AFTER": "-1"}, "GIG_TASK_AFTER"),
        ({"GIG_REGISTRY_PUBKEY": "nothex"}, "GIG_REGISTRY_PUBKEY"),
        ({"GIG_REGISTRY_INDEX_URL": "ftp://x/index.json"}, "GIG_REGISTRY_INDEX_URL"),
        ({"GIG_ADMIN_EMAILS": "root"}, "GIG_ADMIN_EMAILS"),
        ({"GIG_LOG_LEVEL": "loud"}, "GIG_LOG_LEVEL"),
        ({"GIG_SANDBOX_POOL": "2.5"}, "GIG_SANDBOX_POOL"),
        ({"GIG_SANDBOX_POOL": "1000"}, "GIG_SANDBOX_POOL"),
        ({"GIG_SANDBOX_MODE": "rootless"}, "GIG_SANDBOX_MODE"),
        ({"GIG_REGISTRY_MAX_AGE": "2w"}, "GIG_REGISTRY_MAX_AGE"),
        ({"GIG_REGISTRY_MAX_AGE": "0d"}, "GIG_REGISTRY_MAX_AGE"),
        ({"GIG_REGISTRY_STALE": "ignore"}, "GIG_REGISTRY_STALE"),
        ({"GIG_REGISTRY_REFRESH": "59"}, "GIG_REGISTRY_REFRESH"),
        ({"GIG_REGISTRY_REFRESH": "1h"}, "GIG_REGISTRY_REFRESH"),
        ({"GIG_REGISTRY_REFRESH": "-1"}, "GIG_REGISTRY_REFRESH"),
        ({"GIG_REGISTRY_REFRESH": "604801"}, "GIG_REGISTRY_REFRESH"),
        ({"GIG_PACKAGES_DIR": "packages"}, "GIG_PACKAGES_DIR"),
        ({"GIG_OCI_PLAIN_HTTP": "http://localhost:5000"}, "GIG_OCI_PLAIN_HTTP"),
        ({"GIG_NPM_OFFLINE": "yes"}, "GIG_NPM_OFFLINE"),
        ({"GIG_NPM_CACHE": "/nonexistent/cache"}, "GIG_NPM_CACHE"),
        ({"GIG_PYPI_FIND_LINKS": "/nonexistent/wheels"}, "GIG_PYPI_FIND_LINKS"),
        ({"GIG_PYPI_INDEX_URL": "ftp://mirror"}, "GIG_PYPI_INDEX_URL"),
        ({"GIG_EGRESS_PORT": "0"}, "GIG_EGRESS_PORT"),
        ({"GIG_EGRESS_PORT": "http"}, "GIG_EGRESS_PORT"),
        ({"GIG_EGRESS_PORT": "65533"}, "next three"),
        ({"GIG_EGRESS_DNS": "dns.example.com"}, "GIG_EGRESS_DNS"),
        ({"GIG_EGRESS_DNS": "10.0.0.53:99999"}, "GIG_EGRESS_DNS"),
        ({"GIG_EGRESS_CA_BUNDLE": "/nonexistent/ca.pem"}, "GIG_EGRESS_CA_BUNDLE"),
        ({"GIG_EGRESS_CA_BUNDLE": "/etc/hostname"}, "no PEM certificate"),
        ({"GIG_MASTER_KEY_PREVIOUS": "short"}, "GIG_MASTER_KEY_PREVIOUS"),
    ],
)
def test_bad_values_name_the_variable(tmp_path: Path, env: dict[str, str], names: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings({"GIG_DATA_DIR": str(tmp_path), **env})
    message = str(err.value)
    assert names in message and "\n" not in message


def test_secret_values_are_never_echoed(tmp_path: Path) -> None:
    bad = "not-a-key-but-secret-looking-" + "q" * 20
    with pytest.raises(ConfigError) as err:
        load_settings({"GIG_DATA_DIR": str(tmp_path), "GIG_MASTER_KEY": bad})
    assert bad not in str(err.value)
    s = load_settings({"GIG_DATA_DIR": str(tmp_path), "GIG_MASTER_KEY": KEY})
    assert KEY not in repr(s) and "ab" * 8 not in repr(s.master_key)


def test_secret_from_file(tmp_path: Path) -> None:
    f = tmp_path / "k"
    f.write_text(KEY + "\n")
    f.chmod(0o600)  # a key file others can read is refused (tests/test_data_dir.py)
    s = load_settings({"GIG_DATA_DIR": str(tmp_path), "GIG_MASTER_KEY_FILE": str(f)})
    assert s.master_key == bytes.fromhex(KEY)


def test_generated_master_key_is_private_and_announced(tmp_path: Path) -> None:
    s = load_settings({"GIG_DATA_DIR": str(tmp_path / "d")})
    notice = ensure_master_key(s)
    assert notice and "master key" in notice
    key = tmp_path / "d" / "master.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert len(key.read_text().strip()) == 64
    assert ensure_master_key(s) is None  # second start: the same key, no notice


def test_a_world_readable_key_file_is_refused(tmp_path: Path) -> None:
    s = load_settings({"GIG_DATA_DIR": str(tmp_path)})
    ensure_master_key(s)
    (tmp_path / "master.key").chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        ensure_master_key(s)


def test_the_previous_master_key_must_differ_from_the_current_one(tmp_path: Path) -> None:
    from gigmcp.config import master_keys

    same = load_settings(
        {"GIG_DATA_DIR": str(tmp_path), "GIG_MASTER_KEY": KEY, "GIG_MASTER_KEY_PREVIOUS": KEY}
    )
    with pytest.raises(ConfigError, match="GIG_MASTER_KEY_PREVIOUS"):
        master_keys(same)
    other = "cd" * 32
    s = load_settings(
        {"GIG_DATA_DIR": str(tmp_path), "GIG_MASTER_KEY": KEY, "GIG_MASTER_KEY_PREVIOUS": other}
    )
    assert master_keys(s) == (bytes.fromhex(KEY), bytes.fromhex(other))
    assert other not in repr(s)


def test_the_public_origin_is_written_as_browsers_write_origin() -> None:
    base = {"GIG_DATA_DIR": "/tmp/gig-origin-test", "GIG_MASTER_KEY": "ab" * 32}
    cases = {
        "https://GW.Example.com:443/some/path": "https://gw.example.com",
        "http://gw.example.com:8080": "http://gw.example.com:8080",
        "https://[2001:DB8::1]:8443/": "https://[2001:db8::1]:8443",
    }
    for url, origin in cases.items():
        assert load_settings({**base, "GIG_PUBLIC_URL": url}).public_origin == origin
    listen = load_settings({**base, "GIG_LISTEN": "[::1]:8080"})
    assert listen.public_origin == "http://[::1]:8080"


def test_a_public_url_with_user_info_is_refused() -> None:
    env = {"GIG_DATA_DIR": "/tmp/gig-origin-test", "GIG_PUBLIC_URL": "https://u:p@gw.example.com"}
    with pytest.raises(ConfigError, match="user info"):
        load_settings(env)


def test_sign_in_links_need_loopback_for_the_listener_and_the_public_url() -> None:
    base = {"GIG_DATA_DIR": "/tmp/gig-origin-test"}
    assert load_settings({**base, "GIG_LISTEN": "127.0.0.1:8080"}).sign_in == "link"
    assert load_settings({**base, "GIG_LISTEN": "0.0.0.0:8080"}).sign_in == "off"
    behind_proxy = {
        **base,
        "GIG_LISTEN": "127.0.0.1:8080",
        "GIG_PUBLIC_URL": "https://gw.example.com",
    }
    assert load_settings(behind_proxy).sign_in == "off"
    local_url = {**base, "GIG_LISTEN": "127.0.0.1:8080", "GIG_PUBLIC_URL": "http://localhost:8080"}
    assert load_settings(local_url).sign_in == "link"
