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


def test_sandbox_limits_are_checked_stored_and_changed(tmp_path: Path) -> None:
    add = run(tmp_path, "server", "add", "big", "--memory", "1G", "--pids", "64", "--", "cat")
    assert add.returncode == 0, add.stderr
    bad = [
        (("server", "add", "x1", "--memory", "lots", "--", "cat"), "--memory: expected a size"),
        (
            ("server", "add", "x2", "--memory", "1M", "--", "cat"),
            "memory_bytes: 1048576 is outside",
        ),
        (("server", "add", "x3", "--pids", "0", "--", "cat"), "pids: 0 is outside"),
        (("server", "add", "x4", "--cpu-weight", "20000", "--", "cat"), "cpu_weight"),
        (("server", "limits", "big"), "nothing to change"),
        (("server", "limits", "ghost", "--pids", "10"), "no server named"),
    ]
    for args, expected in bad:
        out = run(tmp_path, *args)
        assert out.returncode != 0 and expected in out.stderr, (args, out.stderr)
        assert "Traceback" not in out.stderr
    changed = run(tmp_path, "server", "limits", "big", "--tmp-size", "16M")
    assert changed.returncode == 0, changed.stderr
    # Nothing half-written by the refused commands.
    assert [line.split()[0] for line in run(tmp_path, "server", "list").stdout.splitlines()] == [
        "big"
    ]


def test_doctor_names_every_check(tmp_path: Path) -> None:
    out = run(tmp_path, "doctor")
    for check in (
        "privileges",
        "bubblewrap",
        "user namespaces",
        "network namespaces",
        "nftables",
        "cgroups",
        "seccomp",
    ):
        assert check in out.stdout
    if os.geteuid() == 0:
        assert out.returncode == 0, out.stdout
    else:
        assert out.returncode == 1 and "MISSING" in out.stdout and "fix:" in out.stdout
