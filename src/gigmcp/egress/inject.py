"""Credentials at the boundary: what a request toward one host carries, and what comes
back scrubbed.

For one instance and one destination: each sealed credential whose hosts include the
destination has its header set to the real value in the manifest's format (whatever
the sandbox put there is dropped); a placeholder found anywhere else in the request
(target, any header, the body) for a credential whose hosts do *not* include the
destination is an exfiltration attempt, and the request is refused. Responses are
scrubbed of every real value of the instance, also in encoded forms.

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

from collections.abc import Iterable
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


class InstanceKeys:
    """Everything about one instance's credentials the proxy needs per request, built
    once per launch (the real values are held here for the instance's lifetime)."""

    def __init__(self, creds: InstanceCredentials | None, egress_hosts: Iterable[str]) -> None:
        server_hosts = tuple(egress_hosts)
        self._creds: dict[str, _Cred] = {}
        needles: dict[bytes, str] = {}
        if creds is not None:
            for s in creds.sealed:
                hosts = s.credential.hosts or server_hosts
                self._creds[s.credential.id] = _Cred(s, EgressPolicy(hosts))
                needles[s.placeholder.encode()] = s.credential.id
            pairs = creds.scrub_pairs()
        else:
            pairs = {}
        # Compiled once per launch; each stream gets a cheap scrubber/detector of its own.
        self._rules = ScrubRules(pairs)
        self._scrubs = bool(pairs)
        self._detector = Detector(needles) if needles else None

    @property
    def scrubs(self) -> bool:
        return self._scrubs

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
        self, host: Host, target: bytes, headers: Headers, *, verified_tls: bool
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
            if s.value is None or s.credential.header is None:
                continue
            if s.credential.value_problem(s.value) is not None:
                raise UnusableValue(s.credential.id)
            out.append((s.credential.header.encode(), s.credential.render_bytes(s.value)))
            injected.append(s.credential.id)
        return out, injected

    def __repr__(self) -> str:
        return f"InstanceKeys({sorted(self._creds)})"
