"""Naming a server instance, the references that tie a client's error to a log line, and
what a snapshot of an instance says.

Owns :class:`InstanceKey` (DESIGN: one instance per server × profile), :func:`new_ref`
and :class:`InstanceView` (an instance's state, restarts, last error, memory and last
use, as the supervisor reports it and the service layer filters it per actor). It must
never carry more than a key or a view needs: no process handle, no owner, no secret.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

# starting: a process is being launched and handshaken (first use, or a restart);
# running: a live, handshaken connection;
# idle: no process, and none wanted: never used yet, or stopped after going unused;
#   the next call starts one;
# crashed: the last process ended on its own or could not start, and none runs since
#   (a restart may be under way, with backoff, while the instance is in use).
InstanceState = Literal["starting", "running", "idle", "crashed"]
INSTANCE_STATES: tuple[InstanceState, ...] = ("starting", "running", "idle", "crashed")


@dataclass(frozen=True, slots=True)
class InstanceKey:
    """One running server instance: a server for a profile (DESIGN: one per server × profile)."""

    profile_id: int
    server_name: str

    def __str__(self) -> str:
        return f"{self.server_name}@profile-{self.profile_id}"


@dataclass(frozen=True, slots=True)
class InstanceView:
    """One instance at the moment of a snapshot. Times are wall-clock (UTC)."""

    key: InstanceKey
    state: InstanceState
    # The process, while there is one (for the operator; the skins do not show it).
    pid: int | None
    # Restarts after a crash since the gateway started (a start after idling is none).
    restarts: int
    # The last crash or failed start, in the log's words: an exit status and the limit
    # that killed it, or "start failed (ref …)" whose cause is on the log's line with
    # that reference. Kept while it runs again, so a flapping server shows why.
    last_error: str | None
    # What the instance's cgroup is charged (memory.current) when it runs jailed; None
    # when unknown (not running, or run unjailed, where no figure is the instance's own).
    memory_bytes: int | None
    started_at: datetime | None
    last_used: datetime | None


def new_ref() -> str:
    """A correlation id joining a client's error to the log line with its cause."""
    return secrets.token_hex(4)
