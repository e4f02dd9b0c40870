"""Fan-out: one profile's change-notification listeners, and which resources each holds.

A listener is a client channel for what no request asked for (a legacy session's GET
stream, a modern ``subscriptions/listen`` stream). This module owns the listeners of one
profile and, per listener, the set of resource URIs it subscribed to. An upstream
subscription is shared by every client of the profile: it is made for the first holder
of a URI and released after the last one, and only a listener that holds a URI can
release it. A ``notifications/resources/updated`` goes to the holders of its URI; every
other notification to the listeners that want it.

It must never talk to an upstream itself (the hub does, on what this module answers),
never let one listener's unsubscribe or departure end another listener's subscription,
and never keep a listener, or anything it held, once the listener was removed.
"""

from __future__ import annotations

from collections.abc import Callable

from gigmcp.core.jsontypes import JSON
from gigmcp.router.context import Listener


class FanOut:
    def __init__(self, released: Callable[[list[str]], None]) -> None:
        """``released`` is told the URIs nobody holds any more after a listener left,
        for the hub to unsubscribe upstream."""
        self._released = released
        self._listeners: set[Listener] = set()
        self._held: dict[Listener, set[str]] = {}
        self._holders: dict[str, set[Listener]] = {}

    def __len__(self) -> int:
        return len(self._listeners)

    # ------------------------------------------------------------------ listeners

    def add(self, listener: Listener) -> None:
        self._listeners.add(listener)

    def remove(self, listener: Listener) -> None:
        """The listener is gone (its session ended, its stream closed): drop it and all
        it held; the URIs it was the last holder of are handed to ``released``."""
        self._listeners.discard(listener)
        last = [uri for uri in self._held.pop(listener, set()) if self._drop(listener, uri)]
        if last:
            self._released(sorted(last))

    # ------------------------------------------------------------------ subscriptions

    def hold(self, listener: Listener, uri: str) -> bool:
        """Record that ``listener`` subscribed to ``uri``. True when nobody held it
        before (the hub subscribes upstream); False when it is held already, by this
        listener or another, or when the listener is not (or no longer) listening."""
        if listener not in self._listeners:
            return False
        mine = self._held.setdefault(listener, set())
        if uri in mine:
            return False
        mine.add(uri)
        holders = self._holders.setdefault(uri, set())
        holders.add(listener)
        return len(holders) == 1

    def release(self, listener: Listener, uri: str) -> bool:
        """``listener`` unsubscribed from ``uri``. True when it held the URI and was its
        last holder (the hub unsubscribes upstream); False when others still hold it or
        when this listener never did, so one client cannot end another's subscription."""
        mine = self._held.get(listener)
        if mine is None or uri not in mine:
            return False
        mine.discard(uri)
        if not mine:
            del self._held[listener]
        return self._drop(listener, uri)

    def held(self, uri: str) -> bool:
        return uri in self._holders

    def _drop(self, listener: Listener, uri: str) -> bool:
        holders = self._holders.get(uri)
        if holders is None:
            return False
        holders.discard(listener)
        if holders:
            return False
        del self._holders[uri]
        return True

    # ------------------------------------------------------------------ delivery

    def broadcast(self, message: JSON, level: str | None = None) -> None:
        """A change notification for every listener that wants it (``level``: the log
        level of a ``notifications/message``)."""
        method = message["method"]
        for listener in list(self._listeners):
            if listener.wants(method, level):
                listener.deliver(message)

    def updated(self, message: JSON, uri: str) -> None:
        """A ``notifications/resources/updated`` for the holders of ``uri`` only."""
        for listener in list(self._holders.get(uri, ())):
            listener.deliver(message)
