"""``gigmcp credential`` and ``gigmcp vault`` as an operator runs them: values only from
standard input, never shown, never on disk in clear; a rotation while keys change."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.credentials_cli import CRED, NEW, OLD, SECRET, add_server, run


def test_a_value_is_read_from_stdin_and_never_shown(tmp_path: Path) -> None:
    add_server(tmp_path)
    out = run(tmp_path, "credential", "set", "github", "github_token", stdin=SECRET + "\n")
    assert out.returncode == 0, out.stderr
    listing = run(tmp_path, "credential", "list")
    assert listing.stdout.split() == ["github", "github_token", "sealed", "set"]
    for o in (out, listing):
        assert SECRET not in o.stdout + o.stderr
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def test_a_credential_the_server_does_not_declare_is_refused(tmp_path: Path) -> None:
    add_server(tmp_path)
    out = run(tmp_path, "credential", "set", "github", "aws", stdin=SECRET)
    assert out.returncode == 1 and "declares no credential 'aws'" in out.stderr
    assert SECRET not in out.stderr


def test_bad_definitions_are_refused_with_one_line(tmp_path: Path) -> None:
    for args in (
        ["--egress", "1.2.3.4"],
        ["--egress", "*.com"],
        ["--egress", "api.github.com", "--credential", "{not json"],
        ["--egress", "api.github.com", "--credential", json.dumps({**CRED, "type": "password"})],
        ["--credential", json.dumps(CRED)],  # a credential with nowhere to go
    ):
        out = run(tmp_path, "server", "add", "bad", *args, "--", "/bin/cat")
        assert out.returncode != 0 and out.stderr.count("\n") == 1, (args, out.stderr)
    assert "bad" not in run(tmp_path, "server", "list").stdout


def test_rotating_the_master_key(tmp_path: Path) -> None:
    add_server(tmp_path)
    run(tmp_path, "credential", "set", "github", "github_token", stdin=SECRET)
    # The new key alone cannot read what the old one sealed: it says which key is missing.
    refused = run(tmp_path, "vault", "rotate-master-key", GIG_MASTER_KEY=NEW)
    assert refused.returncode == 1 and "GIG_MASTER_KEY_PREVIOUS" in refused.stderr
    done = run(
        tmp_path, "vault", "rotate-master-key", GIG_MASTER_KEY=NEW, GIG_MASTER_KEY_PREVIOUS=OLD
    )
    assert done.returncode == 0 and "re-wrapped 1 value(s)" in done.stderr, done.stderr
    status = run(tmp_path, "vault", "status", GIG_MASTER_KEY=NEW).stdout
    assert "NOT CONFIGURED" not in status and status.count("current") == 2
    # The value now opens with the new key alone.
    listing = run(tmp_path, "credential", "list", GIG_MASTER_KEY=NEW)
    assert "set" in listing.stdout
    for o in (refused, done):
        assert OLD not in o.stderr and NEW not in o.stderr
