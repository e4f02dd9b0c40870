"""Small asyncio helpers every layer shares.

Owns :func:`stop`, the one way a part ends a background task of its own (a flusher, a
watcher, a reader). It must never swallow an error the task ended with, only the
cancellation it asked for.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


async def stop(task: asyncio.Task[Any] | None) -> None:
    """Cancel ``task`` (if any) and wait until it has ended, so that nothing it does
    overlaps what the caller does next (a last flush, closing a connection)."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
