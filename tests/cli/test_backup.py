"""``gigmcp backup``: a copy taken while a real gateway serves tool calls (writing audit
rows all along) is consistent, and restoring it gives a gateway with the same profiles,
tokens, sealed credential values and an audit chain that verifies, with the same master
key, which is not in the copy. Bad destinations and PostgreSQL get clear
answers and leave nothing behind."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import sys
import threading
from pathlib import Path

from tests.support.gateway import ROOT, gateway
from tests.support.mcp_client import connect, text_of

TINY = (sys.executable, str(ROOT / "tests" / "servers" / "tiny.py"))


def test_a_backup_taken_while_serving_restores_to_a_working_gateway(tmp_path: Path) -> None:
    copy = tmp_path / "copy.db"
    with gateway(tmp_path / "a") as g:
        g.add_server("tiny", TINY, "--egress", "api.example.test", "--credential",
                     '{"id": "k", "type": "api_key", "env": "K", "inject": {"header": "X-K", "format": "{token}"}}')  # fmt: skip
        g.cli("credential", "set", "tiny", "k", stdin="secret-value-42")
        g.profile("pp", "tiny")
        g.start()
        calls: list[str] = []
        stop = threading.Event()

        def busy() -> None:
            async def run() -> None:
                async with connect(g, "pp", "auto") as c:
                    while not stop.is_set():
                        calls.append(text_of(await c.call_tool("tiny_hello", {"name": "x"})))

            asyncio.run(run())

        worker = threading.Thread(target=busy)
        worker.start()
        try:
            while len(calls) < 20:
                threading.Event().wait(0.05)
            done = g.cli("backup", str(copy))  # while calls go on
            during = len(calls)
            while len(calls) < during + 20:
                threading.Event().wait(0.05)
        finally:
            stop.set()
            worker.join(30)
        assert "backed up to" in done.stderr and copy.stat().st_mode & 0o777 == 0o600
        # A second backup to the same file is refused: a backup never overwrites.
        again = g.cli("backup", str(copy), check=False)
        assert again.returncode != 0 and "exists" in again.stderr
    with sqlite3.connect(copy) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        copied_calls = db.execute(
            "SELECT count(*) FROM audit_events WHERE action = 'tools/call'"
        ).fetchone()[0]
        assert "secret-value-42" not in repr(
            db.execute("SELECT * FROM credential_values").fetchall()
        )
    assert copied_calls < len(calls), "the copy is the database as of one moment"
    # Restore: a new data dir with the copy as its database, the same master key.
    with gateway(tmp_path / "b") as h:
        h.data_dir.mkdir(parents=True, mode=0o700)
        shutil.copy(copy, h.data_dir / "gigmcp.db")
        (h.data_dir / "gigmcp.db").chmod(0o600)
        assert "pp" in h.cli("profile", "list").stdout
        assert "set" in h.cli("credential", "list").stdout
        assert "OK" in h.cli("audit", "verify").stdout
        # The restored gateway serves the profile with its token.
        h.tokens["pp"] = g.tokens["pp"]
        h.start()

        async def hello() -> str:
            async with connect(h, "pp", "auto") as c:
                return text_of(await c.call_tool("tiny_hello", {"name": "back"}))

        assert asyncio.run(hello()) == "hello back"
    # Neither the master key nor a value in clear is in the copy.
    raw = copy.read_bytes()
    assert b"ab" * 32 not in raw and bytes.fromhex("ab" * 32) not in raw
    assert b"secret-value-42" not in raw


def test_bad_destinations_and_postgresql_get_clear_answers(
    tmp_path: Path, database_url: str
) -> None:
    with gateway(tmp_path, GIG_DATABASE_URL=database_url) as g:
        g.cli("profile", "create", "pp")
        answer = g.cli("backup", str(tmp_path / "x.db"), check=False)
        if database_url.startswith("postgresql"):
            assert answer.returncode == 1 and "pg_dump" in answer.stderr, answer.stderr
            assert not (tmp_path / "x.db").exists()
        else:
            assert answer.returncode == 0, answer.stderr
        missing = g.cli("backup", str(tmp_path / "no" / "such" / "x.db"), check=False)
        assert missing.returncode == 1 and "Traceback" not in missing.stderr
        assert ("cannot create" in missing.stderr) or ("pg_dump" in missing.stderr)
