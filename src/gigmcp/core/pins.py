"""Tool pinning against rug pulls: a tool that changes after consent is hidden.

The first time a server advertises a tool after its owner consented to the server, the
tool's name, description and input schema are pinned (a SHA-256 fingerprint of their
canonical JSON, and the snapshot itself for showing what changed). If the server later
advertises that tool with a different fingerprint — a description that now asks the
model to read ~/.ssh, say — the tool is hidden from every profile and flagged, an audit
row says so, and it stays hidden until the owner approves the new version
(``gigmcp server tools NAME --approve TOOL``). A tool seen for the first time is pinned
as it is: the manifest's tool list and per-profile selection decide whether it is
exposed at all.

Owns the fingerprints, the in-memory pins of every server (shared by all profiles'
hubs, loaded from the store and kept in step with it), and the decision per tool. It
must never expose a tool whose current fingerprint differs from its pin, and never
block the event loop: changes go to the store through the catalog's batched writer.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from gigmcp.core.jsontypes import JSON


def snapshot(tool: JSON) -> JSON:
    """The parts of a tool a model reads and that consent covers."""
    return {
        "name": tool.get("name"),
        "description": tool.get("description"),
        "inputSchema": tool.get("inputSchema"),
    }


def fingerprint(tool: JSON) -> str:
    canonical = json.dumps(snapshot(tool), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Pin:
    fingerprint: str
    flagged: str | None = None  # the changed fingerprint awaiting approval


@dataclass(frozen=True, slots=True)
class PinChange:
    """One write for the store: a new pin (``flagged`` False) or a flagged change."""

    server_id: int
    server: str
    tool: str
    fingerprint: str
    snapshot: JSON
    flagged: bool


class PinBook:
    """Every server's pins. ``persist`` receives each change, to be written in the
    background; ``load`` replaces the pins with the store's (after an approval)."""

    def __init__(self, persist: Callable[[PinChange], None]) -> None:
        self._pins: dict[int, dict[str, Pin]] = {}
        # What the server advertises now differs from its pin: hidden, calls refused.
        self._hidden: set[tuple[int, str]] = set()
        # Fingerprints of the tool objects seen last, per server: hubs screen their
        # cached lists at every tools/list, so the same dicts come back and are not
        # serialised and hashed again (the identity check makes reuse safe).
        self._seen: dict[int, dict[int, tuple[JSON, str]]] = {}
        self._persist = persist

    def load(
        self,
        rows: Iterable[tuple[int, str, str, str | None]],
        pending: Iterable[PinChange] = (),
    ) -> None:
        """Replace the pins with the store's ``rows``, then apply ``pending``: the
        changes not written yet. A reload between a first sight (or a flag) and its
        write must not forget it: the tool would be pinned anew as it is then, or a
        flagged one shown and callable until its next listing."""
        pins: dict[int, dict[str, Pin]] = {}
        hidden = set()
        for server_id, tool, fp, flagged in rows:
            pins.setdefault(server_id, {})[tool] = Pin(fp, flagged)
            if flagged is not None:
                hidden.add((server_id, tool))
        for change in pending:
            server = pins.setdefault(change.server_id, {})
            pin = server.get(change.tool)
            if not change.flagged:
                if pin is None:
                    server[change.tool] = Pin(change.fingerprint)
            elif pin is not None and pin.fingerprint != change.fingerprint:
                # (Approved since: the store's pin is that fingerprint, nothing to hide.)
                server[change.tool] = Pin(pin.fingerprint, change.fingerprint)
                hidden.add((change.server_id, change.tool))
        self._pins = pins
        self._hidden = hidden

    def screen(self, server_id: int, server: str, tools: list[JSON]) -> list[JSON]:
        """The tools that may be shown; pins new ones, flags changed ones. The tool dicts
        must not be changed afterwards (their fingerprints are remembered by identity)."""
        pins = self._pins.setdefault(server_id, {})
        before = self._seen.get(server_id, {})
        seen: dict[int, tuple[JSON, str]] = {}
        shown: list[JSON] = []
        for tool in tools:
            name = tool.get("name")
            if not isinstance(name, str):
                continue
            known = before.get(id(tool))
            fp = known[1] if known is not None and known[0] is tool else fingerprint(tool)
            seen[id(tool)] = (tool, fp)
            pin = pins.get(name)
            if pin is None:
                pins[name] = Pin(fp)
                self._persist(PinChange(server_id, server, name, fp, snapshot(tool), False))
                shown.append(tool)
            elif pin.fingerprint == fp and pin.flagged is None:
                shown.append(tool)
            else:
                # Once flagged, hidden until approved: even a tool that changes back has
                # shown it will change, and the owner decides.
                self._hidden.add((server_id, name))
                if pin.flagged != fp and pin.fingerprint != fp:
                    # Changed (again): said once per new version.
                    pins[name] = Pin(pin.fingerprint, fp)
                    self._persist(PinChange(server_id, server, name, fp, snapshot(tool), True))
        self._seen[server_id] = seen
        return shown

    def hidden(self, server_id: int, tool: str) -> bool:
        """A flagged tool: its calls are refused as if it did not exist."""
        return (server_id, tool) in self._hidden
