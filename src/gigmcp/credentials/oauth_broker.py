"""The token broker: the current access token of a user's connected account, refreshed
ahead of expiry, once, whoever asks.

The egress proxy asks for a token on every request toward an oauth2 credential's hosts
(and the router before a tool call, to fail early). The answer comes from memory while
it is more than ``REFRESH_AHEAD`` from expiry and was checked against the database in
the last ``RECHECK`` (one indexed read of the connection's generation: a disconnect or
another replica's refresh shows within that time). Otherwise the broker refreshes:

* single-flight in this process: one ``asyncio.Lock`` per (user, vendor);
* single-flight across replicas: the connection row's lease (``store/oauth.claim``), a
  database lock taken by a conditional update; a replica that does not get it waits for
  the holder's tokens (polling the row) and meanwhile serves the old token while it is
  still valid;
* a refresh token the vendor rotates is stored with the access token in one
  transaction, before the lease is freed;
* ``invalid_grant`` (the grant was revoked, expired, or its refresh token rotated away)
  marks the connection for reconnection: every later ask fails at once with
  :class:`ConnectionNeeded` naming the vendor and the page to reconnect on; never a
  retry loop;
* a vendor that cannot be reached is retried with exponential backoff (1 s doubling to
  five minutes, per connection, in the database so all replicas back off together);
  until then the old token serves while valid, then :class:`TokenUnavailable`.

Owns that logic. It must never log, raise or repr a token, refresh a connection whose
lease another holder has, or hold a database transaction across a network call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from gigmcp.errors import ConnectionNeeded, TokenUnavailable
from gigmcp.oauthclient.client import GrantRefused, ServerUnavailable, VendorClient
from gigmcp.oauthclient.outbound import Outbound, OutboundRefused
from gigmcp.store import oauth as store
from gigmcp.telemetry import probes
from gigmcp.vault.keys import Keyring

log = logging.getLogger(__name__)

REFRESH_AHEAD = timedelta(seconds=60)
RECHECK_S = 5.0
LEASE = timedelta(seconds=30)  # longer than a refresh can take (the client's 10 s timeout)
WAIT_S = 20.0  # for another holder's refresh
POLL_S = 0.1
MAX_BACKOFF_S = 300.0


@dataclass(slots=True)
class _Cached:
    conn_id: int
    generation: int
    token: bytes = field(repr=False)
    expires_at: datetime | None
    issued_at: datetime | None
    checked: float  # time.monotonic() of the last look at the database


def _now() -> datetime:
    return datetime.now(UTC)


def _ahead(expires_at: datetime | None, issued_at: datetime | None) -> timedelta:
    """How long before expiry a token is refreshed: a minute, or half its life if it
    lives less than two (a token of 30 seconds would otherwise never be fresh, and every
    request would spend a refresh grant)."""
    if expires_at is None or issued_at is None:
        return REFRESH_AHEAD
    return min(REFRESH_AHEAD, max(timedelta(0), (expires_at - issued_at) / 2))


def _fresh(expires_at: datetime | None, now: datetime, issued_at: datetime | None = None) -> bool:
    return expires_at is None or expires_at - _ahead(expires_at, issued_at) > now


def _valid(expires_at: datetime | None, now: datetime) -> bool:
    return expires_at is None or expires_at > now


class TokenBroker:
    def __init__(
        self, engine: Engine, keyring: Keyring, outbound: Outbound, reconnect_at: str
    ) -> None:
        self._engine = engine
        self._keyring = keyring
        self._outbound = outbound
        self._reconnect_at = reconnect_at  # the page where a user connects accounts
        self._cache: dict[tuple[int, str], _Cached] = {}
        self._locks: dict[tuple[int, str], asyncio.Lock] = {}
        self.holder = secrets.token_hex(8)  # this process, as a lease holder
        self.refreshes = 0  # refresh grants this process made (for the tests and metrics)

    async def access_token(self, user_id: int, vendor: str) -> bytes:
        """The user's current access token at ``vendor``; ConnectionNeeded or
        TokenUnavailable when there is none to give."""
        key = (user_id, vendor)
        hit = self._cache.get(key)
        fresh = hit is not None and _fresh(hit.expires_at, _now(), hit.issued_at)
        if fresh and hit is not None and time.monotonic() - hit.checked < RECHECK_S:
            return hit.token
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            hit = self._cache.get(key)
            if hit is not None and _fresh(hit.expires_at, _now(), hit.issued_at):
                if time.monotonic() - hit.checked < RECHECK_S:
                    return hit.token
                seen = await asyncio.to_thread(store.generation, self._engine, hit.conn_id)
                if seen == (hit.generation, store.CONNECTED):
                    hit.checked = time.monotonic()
                    return hit.token
            self._cache.pop(key, None)
            return await self._current(user_id, vendor)

    async def refused(self, user_id: int, vendor: str, token: bytes) -> None:
        """A server answered 401 to ``token``: if it is still the account's current
        token, it is marked expired, so that the next ask refreshes (once, across
        replicas, as any refresh)."""
        key = (user_id, vendor)
        async with self._locks.setdefault(key, asyncio.Lock()):
            hit = self._cache.get(key)
            if hit is not None and hit.token == token:
                del self._cache[key]
            st = await asyncio.to_thread(
                store.load_state, self._engine, self._keyring, user_id, vendor
            )
            if st is not None and st.access == token:
                await asyncio.to_thread(store.expire, self._engine, st.id, st.generation)

    def forget(self, user_id: int, vendor: str) -> None:
        """Drop a cached token (this process disconnected it)."""
        self._cache.pop((user_id, vendor), None)

    async def _current(self, user_id: int, vendor: str) -> bytes:
        deadline = time.monotonic() + WAIT_S
        while True:
            st = await asyncio.to_thread(
                store.load_state, self._engine, self._keyring, user_id, vendor
            )
            now = _now()
            if st is None:
                raise ConnectionNeeded(
                    vendor, f"no {vendor} account is connected: connect one at {self._reconnect_at}"
                )
            if st.status != store.CONNECTED:
                raise ConnectionNeeded(
                    vendor,
                    f"the {vendor} account must be connected again (the vendor refused its "
                    f"refresh token): reconnect at {self._reconnect_at}",
                )
            if st.access is not None and _fresh(st.expires_at, now, st.refreshed_at):
                return self._keep(
                    user_id, vendor, st.id, st.generation, st.access, st.expires_at,
                    st.refreshed_at,
                )  # fmt: skip
            if st.refresh is None:
                if st.access is not None and _valid(st.expires_at, now):
                    return st.access
                raise ConnectionNeeded(
                    vendor,
                    f"the {vendor} token expired and there is no refresh token: reconnect at "
                    f"{self._reconnect_at}",
                )
            if st.retry_at is not None and st.retry_at > now:
                if st.access is not None and _valid(st.expires_at, now):
                    return st.access
                wait = (st.retry_at - now).total_seconds()
                raise TokenUnavailable(
                    vendor, f"{vendor} could not refresh the token; trying again in {wait:.0f} s"
                )
            if await asyncio.to_thread(store.claim, self._engine, st.id, self.holder, LEASE):
                return await self._refresh(st)
            # Another replica (or an earlier holder's lapsing lease) is refreshing.
            if st.access is not None and _valid(st.expires_at, now):
                return st.access
            if time.monotonic() > deadline:
                raise TokenUnavailable(vendor, f"{vendor}: a token refresh did not finish in time")
            await asyncio.sleep(POLL_S)

    async def _refresh(self, st: store.ConnectionState) -> bytes:
        vendor = st.app.vendor
        assert st.refresh is not None
        client = VendorClient(st.app, self._outbound)
        now = _now()
        try:
            self.refreshes += 1
            tokens = await client.refresh(st.refresh)
        except GrantRefused as exc:
            probes.token_refresh(vendor, "refused")
            await asyncio.to_thread(
                store.record_failure, self._engine, st.id, self.holder,
                permanent=True, problem=f"refresh refused: {exc.error}", retry_in=0,
            )  # fmt: skip
            log.warning("connection %s (%s): refresh refused (%s)", st.id, vendor, exc.error)
            raise ConnectionNeeded(
                vendor,
                f"{vendor} refused the refresh token ({exc.error}): reconnect the account at "
                f"{self._reconnect_at}",
            ) from None
        except (ServerUnavailable, OutboundRefused) as exc:
            probes.token_refresh(vendor, "unavailable")
            backoff = min(2.0**st.failures, MAX_BACKOFF_S)
            await asyncio.to_thread(
                store.record_failure, self._engine, st.id, self.holder,
                permanent=False, problem=str(exc), retry_in=backoff,
            )  # fmt: skip
            log.warning("connection %s (%s): refresh failed: %s", st.id, vendor, exc)
            if st.access is not None and _valid(st.expires_at, now):
                return st.access
            raise TokenUnavailable(vendor, f"{vendor} could not refresh the token: {exc}") from None
        saved = await asyncio.to_thread(
            store.save_tokens, self._engine, self._keyring, st.id, self.holder,
            st.generation, tokens,
        )  # fmt: skip
        probes.token_refresh(vendor, "disconnected" if saved == "gone" else "ok")
        if saved == "gone":
            # Disconnected while the refresh ran: the grant the vendor just rotated is
            # nobody's now. Tell the vendor (best effort) and give nothing out.
            with contextlib.suppress(ServerUnavailable, OutboundRefused):
                for token, hint in ((tokens.refresh_token, "refresh_token"),
                                    (tokens.access_token, "access_token")):  # fmt: skip
                    if token is not None:
                        await client.revoke(token, hint)
            raise ConnectionNeeded(
                vendor, f"the {vendor} account was disconnected: connect it at {self._reconnect_at}"
            )
        if saved == "lost":
            # Another holder wrote newer tokens after our lease lapsed (cannot happen
            # within the client's timeout): ours is good for this request only.
            log.warning("connection %s (%s): refreshed after the lease lapsed", st.id, vendor)
            return tokens.access_token
        expires = store.expiry(now, tokens)
        return self._keep(
            st.user_id, vendor, st.id, st.generation + 1, tokens.access_token, expires, now
        )

    def _keep(
        self, user_id: int, vendor: str, conn_id: int, gen: int, token: bytes,
        expires_at: datetime | None, issued_at: datetime | None,
    ) -> bytes:  # fmt: skip
        self._cache[(user_id, vendor)] = _Cached(
            conn_id, gen, token, expires_at, issued_at, time.monotonic()
        )
        return token

    def __repr__(self) -> str:
        return f"TokenBroker({len(self._cache)} cached, holder={self.holder})"
