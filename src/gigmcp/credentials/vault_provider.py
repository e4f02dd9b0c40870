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

import logging
from collections.abc import Callable

from sqlalchemy import Engine

from gigmcp.core.instances import InstanceKey
from gigmcp.core.placeholders import InstanceCredentials, Sealed, TokenSource, new_placeholder
from gigmcp.core.views import ServerDef
from gigmcp.errors import VaultError
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
                if value is None and cred.connected and self._tokens is not None:
                    # No value pasted: the owner's connected account supplies the token,
                    # asked at each request (a refresh needs no relaunch).
                    sealed.append(Sealed(cred, ph, None, vendor=cred.vendor))
                else:
                    sealed.append(Sealed(cred, ph, value))
                env[cred.env] = ph
            elif value is not None:
                env[cred.env] = value.decode("utf-8", "replace")
        self._instances[key] = InstanceCredentials(
            key, owner or 0, server, tuple(sealed), self._tokens
        )
        return env

    async def check_accounts(self, key: InstanceKey) -> None:
        """Before a tool call: the connected accounts of a launched instance can give a
        token now (the broker's answer is cached, so this costs nothing while a token
        is fresh); raises the broker's AccountError otherwise. An instance not launched
        yet is not checked here: the proxy refuses its request with the same words."""
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
