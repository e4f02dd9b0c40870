"""Bounded per-instance log files fed from a server's stderr.

``<logs_dir>/<profile_id>/<server>.log`` rotates to ``.log.1`` at a byte limit, so a
chatty or hostile server can never fill the disk. The CLI reads the same files.
It must never block the event loop for long: writes are small appends.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from pathlib import Path

from gigmcp.core.instances import InstanceKey

DEFAULT_LIMIT = 256 * 1024


def log_path(logs_dir: Path, profile_id: int, server: str) -> Path:
    return logs_dir / str(profile_id) / f"{server}.log"


class InstanceLog:
    def __init__(self, logs_dir: Path, key: InstanceKey, limit: int = DEFAULT_LIMIT) -> None:
        self.path = log_path(logs_dir, key.profile_id, key.server_name)
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._limit = limit

    def write(self, text: str) -> None:
        line = f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {text.rstrip()}\n"
        data = line.encode("utf-8", "replace")[: self._limit // 4]
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            size = 0
        if size + len(data) > self._limit:
            os.replace(self.path, self.path.with_suffix(".log.1"))
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)

    async def pump(self, stream: asyncio.StreamReader) -> None:
        """Copy a server's stderr into the log until it closes."""
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            while True:
                try:
                    line = await stream.readline()
                except ValueError:
                    line = await stream.read(4096)
                if not line:
                    return
                self.write("stderr: " + line.decode("utf-8", "replace"))


def tail(logs_dir: Path, profile_id: int, server: str, lines: int) -> list[str]:
    path = log_path(logs_dir, profile_id, server)
    out: list[str] = []
    for p in (path.with_suffix(".log.1"), path):
        with contextlib.suppress(FileNotFoundError):
            out.extend(p.read_text("utf-8", "replace").splitlines())
    return out[-lines:] if lines > 0 else out
