"""The admin CLI end to end, as an operator runs it: clear errors, nothing half-written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

GIGMCP = str(Path(sys.executable).parent / "gigmcp")


def run(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ["PATH"], "GIG_DATA_DIR": str(tmp), "HOME": str(tmp)}
    return subprocess.run([GIGMCP, *args], env=env, capture_output=True, text=True, timeout=60)


def test_help_reads_well(tmp_path: Path) -> None:
    out = run(tmp_path, "--help")
    assert out.returncode == 0
    for word in ("profile", "server", "token", "tool", "serve"):
        assert word in out.stdout


def test_full_flow_and_token_printed_once(tmp_path: Path) -> None:
    assert run(tmp_path, "profile", "create", "dev").returncode == 0
    assert run(tmp_path, "server", "add", "echo", "--env", "A=1", "--", "cat", "-u").returncode == 0
    assert run(tmp_path, "profile", "assign", "dev", "echo").returncode == 0
    assert run(tmp_path, "tool", "disable", "dev", "echo", "rm").returncode == 0
    shown = run(tmp_path, "profile", "show", "dev").stdout
    assert "echo" in shown and "rm: disabled" in shown
    minted = run(tmp_path, "token", "mint", "dev", "--name", "laptop", "--expires-in", "30d")
    token = minted.stdout.strip()
    assert minted.returncode == 0 and token.startswith("gig_pt_") and "\n" not in token
    listing = run(tmp_path, "token", "list").stdout
    assert "laptop" in listing and token not in listing
    token_id = listing.split()[0]
    assert run(tmp_path, "token", "revoke", token_id).returncode == 0
    assert "revoked" in run(tmp_path, "token", "list", "dev").stdout


def test_bad_input_is_one_clear_line_and_nonzero(tmp_path: Path) -> None:
    cases = [
        (("profile", "create", "Bad_Slug"), "invalid profile slug"),
        (("server", "add", "a_b", "--", "x"), "no '_'"),
        (("server", "add", "nocmd"), "missing command"),
        (("server", "add", "e", "--env", "NOVALUE", "--", "x"), "KEY=VALUE"),
        (("profile", "assign", "ghost", "srv"), "no profile named"),
        (("token", "mint", "ghost"), "no profile named"),
        (("token", "revoke", "42"), "no token with id 42"),
        (("token", "mint", "x", "--expires-in", "soon"), None),
    ]
    for args, expected in cases:
        out = run(tmp_path, *args)
        assert out.returncode != 0, args
        assert "Traceback" not in out.stderr, (args, out.stderr)
        if expected:
            assert expected in out.stderr, (args, out.stderr)
    assert run(tmp_path, "profile", "list").stdout.strip() == ""
    assert run(tmp_path, "server", "list").stdout.strip() == ""


def test_bad_configuration_is_reported_by_name(tmp_path: Path) -> None:
    env = {"PATH": os.environ["PATH"], "GIG_DATA_DIR": str(tmp_path), "GIG_LISTEN": "nope"}
    out = subprocess.run([GIGMCP, "serve"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "GIG_LISTEN" in out.stderr and "Traceback" not in out.stderr
