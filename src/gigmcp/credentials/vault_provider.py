"""The vault-backed credential provider: what each instance gets, and what the proxy
swaps back.

At every launch an instance gets, for each *sealed* credential of its server, a fresh
high-entropy placeholder in the credential's variable; the real value, read from the
vault for the profile owner (or, for an oauth2 credential with no value pasted, the
owner's connected account at its vendor, asked of the token broker at each request),
stays here for the egress proxy to inject toward the credential's hosts and to scrub
from whatever comes back. *Entrusted* credentials go
into the environment as they are (the egress allowlist still applies to them).

Owns the per-instance table instance → (placeholder, real value, definition). Values of
running instances are held in memory because the proxy needs them on every request and
to scrub responses; they are dropped when the instance is forgotten: when it is retired
(a changed value, allowlist or assignment retires it at once, before its process is told
to stop: app.py) and again when it ends. A changed value therefore never reaches a
running instance; its next launch reads the vault afresh. It must never hand a value to
another owner's instance, reuse a placeholder, or show a value in a repr.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

from sqlalchemy import Engine

from gigmcp.core.definitions import CredentialDef
from gigmcp.core.instances import InstanceKey
from gigmcp.core.placeholders import InstanceCredentials, Sealed, TokenSource, new_placeholder
from gigmcp.core.views import ServerDef
from gigmcp.errors import VaultError
from gigmcp.store import oauth as store_oauth
from gigmcp.store import secrets as vault_store
from gigmcp.vault.keys import Keyring

log = logging.getLogger(__name__)


class VaultCredentials:
    """A :class:`~gigmcp.credentials.provider.CredentialProvider` backed by the vault."""

    def __init__(
        self,
        engine: Engine,
        keyring: Keyring,
        owner_of: Callable[[InstanceKey], int | None],
        tokens: TokenSource | None = None,
    ) -> None:
        self._engine = engine
        self._keyring = keyring
        self._owner_of = owner_of
        self._tokens = tokens
        self._instances: dict[InstanceKey, InstanceCredentials] = {}

    def environment_for(self, key: InstanceKey, server: ServerDef) -> dict[str, str]:
        if not server.credentials:
            self._instances.pop(key, None)
            return {}
        owner = self._owner_of(key)
        values: dict[str, bytes] = {}
        if owner is not None:
            try:
                values = vault_store.owner_values(self._engine, self._keyring, owner, server.id)
            except VaultError as exc:
                # The instance starts without its credentials rather than not at all;
                # the log says why (never with a value).
                log.error("credentials of %s for owner %s: %s", server.name, owner, exc)
        env: dict[str, str] = {}
        sealed: list[Sealed] = []
        for cred in server.credentials:
            value = values.get(cred.id)
            if cred.sealed:
                ph = new_placeholder()
                account = self._account(cred, server) if value is None else None
                if account is not None:
                    # No value pasted: the owner's connected account supplies the token,
                    # asked at each request (a refresh needs no relaunch), toward the
                    # hosts the credential and the vendor's app both name.
                    sealed.append(Sealed(account, ph, None, vendor=account.vendor))
                else:
                    sealed.append(Sealed(cred, ph, value))
                env[cred.env] = ph
            elif value is not None:
                env[cred.env] = value.decode("utf-8", "replace")
        self._instances[key] = InstanceCredentials(
            key, owner or 0, server, tuple(sealed), self._tokens
        )
        return env

    def _account(self, cred: CredentialDef, server: ServerDef) -> CredentialDef | None:
        """``cred`` narrowed to the hosts its vendor's app lists as its API, when a
        connected account can supply it; None when it cannot (no token source, not an
        oauth2 credential with a vendor, or no host in common: a server naming a vendor
        never gets that vendor's token toward a host of its own choosing)."""
        if not cred.connected or cred.vendor is None or self._tokens is None:
            return None
        allowed = store_oauth.api_hosts(self._engine, cred.vendor)
        hosts = narrow(cred.hosts or server.egress.hosts, allowed)
        if not hosts:
            log.warning(
                "%s: credential %s names vendor %s, whose app lists none of its hosts as "
                "an API host: no token is injected",
                server.name, cred.id, cred.vendor,
            )  # fmt: skip
            return None
        return dataclasses.replace(cred, hosts=hosts)

    async def check_accounts(self, key: InstanceKey, server: ServerDef, owner_id: int) -> None:
        """Before a tool call: the connected accounts of a launched instance (or of a
        remote server, whose session carries its token itself) can give a token now (the
        broker's answer is cached, so this costs nothing while a token is fresh); raises
        the broker's AccountError otherwise. A local instance not launched yet is not
        checked here: the proxy refuses its request with the same words."""
        if server.remote_url is not None:
            if self._tokens is not None:
                for c in server.credentials:
                    if c.connected and c.vendor is not None:
                        await self._tokens.access_token(owner_id, c.vendor)
            return
        creds = self._instances.get(key)
        if creds is None or creds.tokens is None:
            return
        for s in creds.sealed:
            if s.vendor:
                await creds.tokens.access_token(creds.owner_id, s.vendor)

    def for_instance(self, key: InstanceKey) -> InstanceCredentials | None:
        return self._instances.get(key)

    def forget(self, key: InstanceKey) -> None:
        self._instances.pop(key, None)

    def __repr__(self) -> str:
        return f"VaultCredentials({len(self._instances)} instances, {self._keyring!r})"


def narrow(hosts: tuple[str, ...], allowed: tuple[str, ...]) -> tuple[str, ...]:
    """The hosts (canonical patterns) that both lists cover: an exact host either list
    names and the other covers, the narrower of two wildcards that overlap."""

    def covers(pattern: str, host: str) -> bool:
        if pattern == host:
            return True
        if pattern.startswith("*."):
            suffix = pattern[2:]
            if host.startswith("*."):
                return host[2:] == suffix
            _first, dot, parent = host.partition(".")
            return bool(dot) and parent == suffix
        return False

    out: list[str] = []
    for h in hosts:
        for a in allowed:
            if covers(a, h):
                out.append(h)
            elif covers(h, a):
                out.append(a)
    return tuple(dict.fromkeys(out))
