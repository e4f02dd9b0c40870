"""Credentials at the boundary: what a request toward one host carries, and what comes
back scrubbed.

For one instance and one destination: each sealed credential whose hosts include the
destination has its header set to the real value in the manifest's format (whatever
the sandbox put there is dropped); a placeholder found anywhere else in the request
(target, any header, the body) for a credential whose hosts do *not* include the
destination is an exfiltration attempt, and the request is refused. Responses are
scrubbed of every real value of the instance, also in encoded forms. A connected
account's token (an oauth2 credential the owner connected instead of pasting a value) is
asked of the token broker for each request, so a refresh takes effect at the next one
without a relaunch; every token handed out is scrubbed like a pasted value.

Keys travel only on legs whose upstream the proxy verified by TLS: on a plain-HTTP leg
nothing is injected, and any placeholder there is refused as exfiltration (whoever is on
the path, or spoofs resolution upstream of the gateway, would read the key). A value
whose rendered header is not a valid HTTP field value is never sent: h11 would refuse
it with an error that quotes it.

Owns these decisions for one request. It must never inject toward a host outside the
credential's hosts or over a leg without verified TLS, never let a real value out toward
the sandbox, and never put a value in an error, an audit row or a log line.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from gigmcp.core.placeholders import InstanceCredentials, Sealed
from gigmcp.egress.scrub import Detector, Scrubber, ScrubRules
from gigmcp.errors import EgressError
from gigmcp.netpolicy.hosts import Host
from gigmcp.netpolicy.policy import EgressPolicy

Headers = list[tuple[bytes, bytes]]


class Exfiltration(EgressError):
    """A placeholder heading for a host its credential does not belong to."""

    reason = "placeholder-exfiltration"

    def __init__(self, credential_id: str, message: str | None = None) -> None:
        super().__init__(
            message or f"placeholder of {credential_id} sent to a host it does not belong to"
        )
        self.credential_id = credential_id


class PlainTextExfiltration(Exfiltration):
    """A placeholder on a request whose leg has no verified TLS."""

    reason = "placeholder-over-plain-http"

    def __init__(self, credential_id: str) -> None:
        super().__init__(
            credential_id,
            "credentials travel only over verified TLS: send this request with https://",
        )


class UnusableValue(EgressError):
    """A value whose rendered header cannot be sent (the message never quotes it)."""

    reason = "credential-unusable"

    def __init__(self, credential_id: str) -> None:
        super().__init__(
            f"the value of {credential_id} cannot be sent in its header: set it again "
            "(gigmcp credential set says what is wrong with it)"
        )
        self.credential_id = credential_id


@dataclass(frozen=True, slots=True)
class _Cred:
    sealed: Sealed
    hosts: EgressPolicy


# Connected-account tokens an instance has been given and are still scrubbed from what
# comes back, per credential (an older token may still be valid for a while).
KEPT_TOKENS = 8


class InstanceKeys:
    """Everything about one instance's credentials the proxy needs per request, built
    once per launch (the real values are held here for the instance's lifetime). A
    connected account's token is asked of the token source per request (``fetch``) and
    joins the scrubbed values when it is new."""

    def __init__(self, creds: InstanceCredentials | None, egress_hosts: Iterable[str]) -> None:
        server_hosts = tuple(egress_hosts)
        self._creds: dict[str, _Cred] = {}
        needles: dict[bytes, str] = {}
        self._owner = creds.owner_id if creds is not None else 0
        self._tokens = creds.tokens if creds is not None else None
        if creds is not None:
            for s in creds.sealed:
                hosts = s.credential.hosts or server_hosts
                self._creds[s.credential.id] = _Cred(s, EgressPolicy(hosts))
                needles[s.placeholder.encode()] = s.credential.id
            self._pairs = creds.scrub_pairs()
        else:
            self._pairs = {}
        self._learnt: dict[str, list[bytes]] = {}
        # Compiled once per launch (and again when a new token is learnt); each stream
        # gets a cheap scrubber/detector of its own.
        self._rules = ScrubRules(self._pairs)
        self._dynamic = any(c.sealed.vendor for c in self._creds.values())
        self._detector = Detector(needles) if needles else None

    @property
    def scrubs(self) -> bool:
        return bool(self._pairs) or self._dynamic

    async def fetch(self, host: Host, *, verified_tls: bool) -> dict[str, bytes]:
        """The current tokens of the connected-account credentials bound for ``host``
        (none on a leg without verified TLS: nothing is injected there). Raises the
        token source's ``AccountError`` when an account cannot give one."""
        if not self._dynamic or not verified_tls or self._tokens is None:
            return {}
        out: dict[str, bytes] = {}
        for cid, c in self._creds.items():
            vendor = c.sealed.vendor
            if vendor and c.hosts.matches(host):
                value = await self._tokens.access_token(self._owner, vendor)
                self._learn(cid, c.sealed.placeholder.encode(), value)
                out[cid] = value
        return out

    def _learn(self, cid: str, placeholder: bytes, value: bytes) -> None:
        kept = self._learnt.setdefault(cid, [])
        if value in kept:
            return
        kept.append(value)
        if len(kept) > KEPT_TOKENS:
            self._pairs.pop(kept.pop(0), None)
        self._pairs[value] = placeholder
        self._rules = ScrubRules(self._pairs)

    def scrubber(self) -> Scrubber:
        return Scrubber(self._rules)

    def detector(self) -> Detector | None:
        return Detector(self._detector) if self._detector is not None else None

    def belongs(self, credential_id: str, host: Host) -> bool:
        cred = self._creds.get(credential_id)
        return cred is not None and cred.hosts.matches(host)

    def check_found(self, found: Iterable[str], host: Host, *, verified_tls: bool) -> None:
        for cid in sorted(found):
            if not verified_tls:
                raise PlainTextExfiltration(cid)
            if not self.belongs(cid, host):
                raise Exfiltration(cid)

    def rewrite(
        self,
        host: Host,
        target: bytes,
        headers: Headers,
        *,
        verified_tls: bool,
        tokens: Mapping[str, bytes] | None = None,
    ) -> tuple[Headers, list[str]]:
        """The headers to send upstream, and the ids of the credentials injected
        (none unless ``verified_tls``: the upstream's certificate is checked on this leg).
        Raises Exfiltration when a placeholder is out of place, UnusableValue when a
        value cannot make a valid header."""
        detector = self.detector()
        if detector is not None:
            found = detector.scan(target)
            for name, value in headers:
                found |= detector.scan(name) | detector.scan(value)
            self.check_found(found, host, verified_tls=verified_tls)
        if not verified_tls:
            return headers, []
        inject = [c.sealed for c in self._creds.values() if c.hosts.matches(host)]
        if not inject:
            return headers, []
        owned = {s.credential.header.lower().encode() for s in inject if s.credential.header}
        out = [(n, v) for n, v in headers if n.lower() not in owned]
        injected: list[str] = []
        for s in inject:
            real = (tokens or {}).get(s.credential.id) if s.vendor else s.value
            if real is None or s.credential.header is None:
                continue
            if s.credential.value_problem(real) is not None:
                raise UnusableValue(s.credential.id)
            out.append((s.credential.header.encode(), s.credential.render_bytes(real)))
            injected.append(s.credential.id)
        return out, injected

    def __repr__(self) -> str:
        return f"InstanceKeys({sorted(self._creds)})"
