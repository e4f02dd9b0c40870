"""Start a real gateway process for tests: temp data dir, CLI-made profiles, tokens.

Everything goes through the real command line (``gigmcp``) and a real ``gigmcp serve``
listening on a free loopback port; nothing is mocked. Processes are always stopped.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
GIGMCP = str(VENV_BIN / "gigmcp")
PEERS = ROOT / "tests" / "peers" / "node_modules"
NODE = shutil.which("node") or "/usr/bin/node"
NODE22 = str(PEERS / ".bin" / "node")
SERVERS = ROOT / "tests" / "servers"

EVERYTHING = (
    NODE,
    str(PEERS / "@modelcontextprotocol" / "server-everything" / "dist" / "index.js"),
    "stdio",
)
MEMORY = (NODE, str(PEERS / "@modelcontextprotocol" / "server-memory" / "dist" / "index.js"))
TIME = (str(VENV_BIN / "mcp-server-time"),)


def _die_with_parent() -> None:
    """Even when pytest itself is killed (no finalizers run), the gateway gets SIGTERM
    and shuts its servers down."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class GatewayProc:
    data_dir: Path
    env: dict[str, str]
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    tokens: dict[str, str] = field(default_factory=dict)
    # The core's suites test routing, not isolation: they run servers unjailed, so they
    # also run where namespaces are not available. tests/sandbox runs them jailed.
    jailed: bool = False
    # A command the gateway runs under (setpriv with a reduced capability set, say).
    wrapper: tuple[str, ...] = ()
    # Everything the gateway wrote to stdout/stderr, read as it comes: a pipe nobody
    # drains fills at 64 KiB and then blocks the gateway's next log write, freezing it.
    _output: bytearray = field(default_factory=bytearray, repr=False)
    _drain: threading.Thread | None = field(default=None, repr=False)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, profile: str) -> str:
        return f"{self.base}/mcp/p/{profile}"

    def cli(
        self, *args: str, check: bool = True, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [GIGMCP, *args], env=self.env, capture_output=True, text=True, input=stdin, timeout=60
        )
        if check and result.returncode != 0:
            raise AssertionError(f"gigmcp {' '.join(args)} failed: {result.stderr}")
        return result

    def add_server(self, name: str, command: tuple[str, ...], *extra: str) -> None:
        self.cli("server", "add", name, *extra, "--", *command)

    def profile(self, slug: str, *servers: str) -> str:
        self.cli("profile", "create", slug)
        for server in servers:
            self.cli("profile", "assign", slug, server)
        token = self.cli("token", "mint", slug).stdout.strip()
        self.tokens[slug] = token
        return token

    def start(self, listen_host: str = "127.0.0.1", port: int | None = None, **env: str) -> None:
        """Start ``gigmcp serve``; ``listen_host``: where it listens (tests still reach
        it on loopback: 0.0.0.0 covers it); ``port``: one chosen beforehand (an identity
        provider must know the callback URL before the gateway starts)."""
        self.port = port or free_port()
        # The command line of this gateway sees where it listens (login links name it).
        self.env["GIG_LISTEN"] = f"{listen_host}:{self.port}"
        run_env = dict(self.env, **env)
        self.proc = subprocess.Popen(
            [*self.wrapper, GIGMCP, "serve", *(() if self.jailed else ("--insecure-no-sandbox",))],
            env=run_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        self._output = bytearray()
        self._drain = threading.Thread(
            target=self._read_output, args=(self.proc.stdout,), daemon=True
        )
        self._drain.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._drain.join(10)
                raise AssertionError(f"gateway exited at start: {self.output()}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 0.2),
            ):
                return
            time.sleep(0.05)
        raise AssertionError("gateway did not start listening within 30 s")

    def _read_output(self, stream: IO[bytes]) -> None:
        with contextlib.suppress(OSError, ValueError):
            while chunk := stream.read1(65536):  # type: ignore[attr-defined]
                self._output += chunk

    def output(self) -> str:
        """What the gateway wrote to stdout/stderr so far (all of it, once stopped)."""
        return bytes(self._output).decode(errors="replace")

    def server_logs(self, server: str, profile: str) -> str:
        """What ``gigmcp server logs`` shows for one server of one profile."""
        return self.cli("server", "logs", server, "--profile", profile, check=False).stdout

    def wait_for_server_log(
        self, server: str, profile: str, needle: str, timeout: float = 60.0
    ) -> bool:
        """Wait for ``needle`` to appear in a server's log. Tests wait for such events
        instead of sleeping; the timeout only bounds a hung gateway, so it is generous
        (a busy machine makes the event late, never absent)."""
        deadline = time.monotonic() + timeout
        while True:
            if needle in self.server_logs(server, profile):
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.2)

    def descendants(self) -> list[int]:
        """Pids of every process below the gateway (its MCP servers and theirs)."""
        if self.proc is None:
            return []
        parents: dict[int, int] = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    stat = Path(f"/proc/{entry}/stat").read_text()
                except OSError:
                    continue
                parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
        found: list[int] = []
        frontier = [self.proc.pid]
        while frontier:
            pid = frontier.pop()
            kids = [child for child, parent in parents.items() if parent == pid]
            found.extend(kids)
            frontier.extend(kids)
        return found

    def stop(self) -> str:
        out = ""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        if self._drain is not None:
            self._drain.join(10)  # the gateway exited: its output ends
            out = self.output()
        if self.proc is not None and self.proc.stdout is not None and not self.proc.stdout.closed:
            self.proc.stdout.close()
        # Anything the gateway left behind in its session is a bug; kill it so tests
        # after this one start clean, and let the caller assert on it.
        with contextlib.suppress(ProcessLookupError):
            if self.proc is not None:
                os.killpg(self.proc.pid, signal.SIGKILL)
        return out


@contextlib.contextmanager
def gateway(tmp_path: Path, jailed: bool = False, **env: str) -> Iterator[GatewayProc]:
    data_dir = tmp_path / "data"
    base_env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "GIG_DATA_DIR": str(data_dir),
        "GIG_MASTER_KEY": "ab" * 32,
        **env,
    }
    gw = GatewayProc(data_dir, base_env, jailed=jailed)
    try:
        yield gw
    finally:
        gw.stop()
