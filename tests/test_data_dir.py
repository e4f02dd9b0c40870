"""Attacks on what the gateway keeps on disk and in its environment: a data directory or
database other users can read, key files readable by others, secrets left in the
environment for every child to inherit. End to end through the real ``gigmcp`` command
and a real ``gigmcp serve`` (tests/support/gateway.py); the environment is checked with
a real child process."""

from __future__ import annotations

import os
import stat
import subprocess
import time
from pathlib import Path

import pytest

from gigmcp.config import load_settings
from tests.support.gateway import GatewayProc, gateway

KEY = "ab" * 32
OTHER_KEY = "cd" * 32


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def refused(out: subprocess.CompletedProcess[str]) -> str:
    """The one line a refused command prints (exit 2, no traceback)."""
    assert out.returncode == 2, out
    assert "Traceback" not in out.stderr, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    return lines[0]


def wait_for(path: Path, gw: GatewayProc) -> None:
    """Until ``path`` exists (an event, not a duration: the deadline only ends a hang)."""
    deadline = time.monotonic() + 60
    while not path.exists():
        assert gw.proc is not None and gw.proc.poll() is None, "the gateway died"
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def test_attack_a_data_dir_left_0755_is_repaired_and_the_database_files_are_0600(
    tmp_path: Path,
) -> None:
    with gateway(tmp_path) as gw:
        gw.data_dir.mkdir()
        os.chmod(gw.data_dir, 0o755)
        out = gw.cli("profile", "create", "dev")
        assert mode(gw.data_dir) == 0o700
        assert "was mode 0755" in out.stderr and str(gw.data_dir) in out.stderr
        db = gw.data_dir / "gigmcp.db"
        assert mode(db) == 0o600
        gw.start()
        # The running gateway holds the database open: SQLite's -wal and -shm exist while
        # it does, and a write from the command line goes through them.
        gw.cli("profile", "create", "two")
        for suffix in ("-wal", "-shm"):
            companion = db.with_name(db.name + suffix)
            wait_for(companion, gw)
            assert mode(companion) == 0o600, suffix


def test_attack_a_database_left_0644_by_an_old_umask_is_repaired_with_a_loud_line(
    tmp_path: Path,
) -> None:
    with gateway(tmp_path) as gw:
        gw.cli("profile", "create", "dev")
        db = gw.data_dir / "gigmcp.db"
        journal = db.with_name(db.name + "-journal")
        journal.touch()
        for path in (db, journal):
            os.chmod(path, 0o644)
        out = gw.cli("profile", "list")
        assert out.stdout.startswith("dev")
        assert mode(db) == 0o600 and mode(journal) == 0o600
        assert f"{db} was mode 0644" in out.stderr


def test_a_data_dir_holding_the_packages_is_0711_so_the_jails_reach_them_but_cannot_list_it(
    tmp_path: Path,
) -> None:
    with gateway(tmp_path) as gw:
        packages, logs = gw.data_dir / "packages", gw.data_dir / "logs"
        for folder in (gw.data_dir, packages, logs):
            folder.mkdir()
            os.chmod(folder, 0o755)
        gw.env["GIG_PACKAGES_DIR"] = str(packages)
        gw.cli("profile", "list")
        assert mode(gw.data_dir) == 0o711
        assert mode(packages) == 0o755, "the jails' folder is left as it is"
        assert mode(logs) == 0o700, "reachable by name: private on its own"
        assert mode(gw.data_dir / "gigmcp.db") == 0o600


@pytest.mark.parametrize("what", ["data dir", "database"])
def test_attack_a_data_dir_or_database_writable_by_others_is_refused_with_one_line(
    tmp_path: Path, what: str
) -> None:
    with gateway(tmp_path) as gw:
        gw.cli("profile", "create", "dev")
        target = gw.data_dir if what == "data dir" else gw.data_dir / "gigmcp.db"
        os.chmod(target, 0o777 if what == "data dir" else 0o666)
        line = refused(gw.cli("profile", "list", check=False))
        assert f"{target} is writable by group or others" in line
        assert "refusing" in line
        assert mode(target) in (0o777, 0o666), "not silently repaired"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give the folder to another user")
def test_attack_a_data_dir_owned_by_another_user_is_refused_with_one_line(
    tmp_path: Path,
) -> None:
    with gateway(tmp_path) as gw:
        gw.data_dir.mkdir(mode=0o700)
        os.chown(gw.data_dir, 65534, 65534)
        line = refused(gw.cli("profile", "list", check=False))
        assert line.startswith("gigmcp: GIG_DATA_DIR: ")
        assert "owned by uid 65534" in line
        assert not (gw.data_dir / "gigmcp.db").exists()


@pytest.mark.parametrize("where", ["data dir", "GIG_MASTER_KEY_FILE"])
def test_attack_a_master_key_file_readable_by_others_is_refused_with_one_line(
    tmp_path: Path, where: str
) -> None:
    with gateway(tmp_path) as gw:
        del gw.env["GIG_MASTER_KEY"]
        if where == "data dir":
            gw.cli("vault", "status")  # generates <data dir>/master.key, 0600
            key = gw.data_dir / "master.key"
        else:
            key = tmp_path / "master.key"
            key.write_text(KEY + "\n")
            gw.env["GIG_MASTER_KEY_FILE"] = str(key)
        os.chmod(key, 0o644)
        out = gw.cli("vault", "status", check=False)
        line = refused(out)
        assert f"chmod 600 {key}" in line and "mode 0644" in line
        if where != "data dir":
            assert line.startswith("gigmcp: GIG_MASTER_KEY_FILE: ")
        secret = key.read_text().strip()
        assert secret not in out.stderr and secret not in out.stdout


@pytest.mark.parametrize("variable", ["GIG_DATABASE_URL_FILE", "GIG_OIDC_CLIENT_SECRET_FILE"])
def test_attack_any_secret_file_readable_by_others_is_refused(
    tmp_path: Path, variable: str
) -> None:
    secret = tmp_path / "secret"
    secret.write_text(f"sqlite:///{tmp_path / 'x.db'}" if "DATABASE" in variable else "s3cr3t")
    os.chmod(secret, 0o640)
    env = {"GIG_DATA_DIR": str(tmp_path / "data"), variable: str(secret)}
    if "OIDC" in variable:
        env |= {
            "GIG_OIDC_ISSUER": "https://id.example",
            "GIG_OIDC_CLIENT_ID": "gig",
            "GIG_OIDC_REDIRECT_URL": "https://gig.example/cb",
        }
    with pytest.raises(Exception, match=rf"^{variable}: .* \(mode 0640\); .*chmod 600 {secret}$"):
        load_settings(env)
    os.chmod(secret, 0o600)
    load_settings(env)


def test_the_gateway_runs_under_umask_077(tmp_path: Path) -> None:
    with gateway(tmp_path) as gw:
        gw.start()
        assert gw.proc is not None
        status = Path(f"/proc/{gw.proc.pid}/status").read_text()
        assert "\nUmask:\t0077\n" in status


def test_attack_secrets_loaded_from_the_environment_do_not_reach_any_child(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret_file = tmp_path / "previous.key"
    secret_file.write_text(OTHER_KEY)
    os.chmod(secret_file, 0o600)
    env = {
        "GIG_DATA_DIR": str(tmp_path),
        "GIG_MASTER_KEY": KEY,
        "GIG_MASTER_KEY_PREVIOUS_FILE": str(secret_file),
        "GIG_DATABASE_URL": "postgresql://gig:db-password-canary@db.example/gig",
        "GIG_OIDC_ISSUER": "https://id.example",
        "GIG_OIDC_CLIENT_ID": "gig",
        "GIG_OIDC_REDIRECT_URL": "https://gig.example/cb",
        "GIG_OIDC_CLIENT_SECRET": "oidc-secret-canary",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    assert settings.master_key == bytes.fromhex(KEY)
    assert settings.master_key_previous == bytes.fromhex(OTHER_KEY)
    assert "db-password-canary" in settings.database_url
    for name in (
        "GIG_MASTER_KEY",
        "GIG_MASTER_KEY_PREVIOUS_FILE",
        "GIG_DATABASE_URL",
        "GIG_OIDC_CLIENT_SECRET",
    ):
        assert name not in os.environ, name
    assert os.environ["GIG_OIDC_ISSUER"] == "https://id.example"  # not a secret: kept
    # Any child the gateway starts without an explicit environment inherits os.environ.
    child = subprocess.run(["/usr/bin/env"], capture_output=True, text=True, check=True).stdout
    for canary in (KEY, "db-password-canary", "oidc-secret-canary", str(secret_file)):
        assert canary not in child
