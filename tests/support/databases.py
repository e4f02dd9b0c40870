"""Both database backends for the tests that take ``database_url``: SQLite, and a real
PostgreSQL server that the fixture starts itself (a throwaway cluster on a Unix socket,
no TCP), one database per test. Without PostgreSQL's server binaries the PostgreSQL
cases skip, saying so. A pytest plugin (see tests/conftest.py), shared by the store's
and the vault's tests."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def _as_postgres(argv: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root.
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


@contextlib.contextmanager
def throwaway_postgres() -> Iterator[str]:
    """A PostgreSQL cluster of its own on a Unix socket (the socket's folder is
    yielded), removed at the end. Also used by bench/control.py."""
    bindir = _pg_bin()
    if bindir is None:
        raise RuntimeError("PostgreSQL server binaries are missing (apt-get install postgresql)")
    # Not under pytest's tmp dir: the postgres user must be able to reach it.
    root = tempfile.mkdtemp(prefix="gigpg-")
    data = os.path.join(root, "data")
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    proc = None
    try:
        subprocess.run(
            _as_postgres(
                [str(bindir / "initdb"), "-D", data, "-A", "trust", "-U", "gig", "--no-sync"]
            ),
            check=True,
            capture_output=True,
        )
        proc = subprocess.Popen(
            _as_postgres([
                str(bindir / "postgres"), "-D", data, "-k", root, "-c", "listen_addresses=",
                "-c", "fsync=off", "-c", "full_page_writes=off",
            ]),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while not os.path.exists(os.path.join(root, ".s.PGSQL.5432")):
            if proc.poll() is not None or time.monotonic() > deadline:
                err = proc.stderr.read().decode() if proc.stderr else ""
                raise RuntimeError(f"PostgreSQL did not start: {err[-500:]}")
            time.sleep(0.05)
        time.sleep(0.2)
        yield root
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(30)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_socket_dir() -> Iterator[str]:
    if _pg_bin() is None:
        pytest.skip("PostgreSQL server binaries are missing (apt-get install postgresql)")
    try:
        with throwaway_postgres() as root:
            yield root
    except RuntimeError as exc:
        pytest.fail(str(exc))


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'g.db'}"
    return _new_database(request.getfixturevalue("pg_socket_dir"))


def _new_database(socket_dir: str) -> str:
    """A new, empty database on the throwaway cluster: its URL."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(host=socket_dir, user="gig", dbname="postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"postgresql://gig@/{name}?host={socket_dir}"


@pytest.fixture
def migrated_engine(database_url: str) -> Iterator[Engine]:
    """An engine on each database (SQLite and PostgreSQL), migrated to the head."""
    from gigmcp.store.db import make_engine, migrate

    eng = make_engine(database_url)
    migrate(eng)
    try:
        yield eng
    finally:
        eng.dispose()


@pytest.fixture
def postgres_engine(pg_socket_dir: str) -> Iterator[Engine]:
    """PostgreSQL only, migrated: where replicas on several hosts meet (SQLite's users
    share one host and its clock), for the tests of what a replica's own clock must not
    decide."""
    from gigmcp.store.db import make_engine, migrate

    eng = make_engine(_new_database(pg_socket_dir))
    migrate(eng)
    try:
        yield eng
    finally:
        eng.dispose()
