"""Registry policy on top of validation (the reference's ``Manifest.Lint``).

Lint = every structural rule (``validate.py``, including the egress entry shape:
lowercase hostnames, ``*.`` only with at least two labels left, no scheme, port, path or
IP literal) + the exfiltration denylist: no egress entry may equal, or be a subdomain of,
a denylisted domain. The denylist is a text file, one domain a line, ``#`` comments and
blank lines ignored; its path is a parameter (the registry repo and the gateway each
ship their own copy).

Two findings beyond the reference, both about entries the reference lets through
(no catalog entry has either; see the corpus test):

* ``wildcard-covers-denylisted``: ``*.example.com`` when ``evil.example.com`` is
  denylisted — the wildcard grants the denylisted host even though its suffix is not it;
* ``ip-notation``: a "hostname" the C resolver reads as an IPv4 address (``10.1``,
  ``0x7f000001``), which the label rules accept.

Owns ``Denylist`` and ``lint_manifest`` (a list of ``Finding``; empty = lint-clean). It
must never fetch a denylist or resolve a name.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from gigmcp.registry.egress_rules import check_egress_entry, egress_allows, legacy_ip_notation
from gigmcp.registry.manifest import Manifest
from gigmcp.registry.validate import manifest_problems

__all__ = ["Denylist", "Finding", "check_egress_entry", "egress_allows", "lint_manifest"]

MAX_DENYLIST_BYTES = 1 << 20


@dataclass(frozen=True)
class Finding:
    rule: str  # "schema", "denylist", "wildcard-covers-denylisted", "ip-notation"
    message: str


@dataclass(frozen=True)
class Denylist:
    domains: tuple[str, ...]

    @classmethod
    def from_lines(cls, lines: Iterable[str]) -> Denylist:
        domains = []
        for line in lines:
            entry = line.strip().lower()
            if entry and not entry.startswith("#"):
                domains.append(entry)
        return cls(tuple(domains))

    @classmethod
    def load(cls, path: str | Path) -> Denylist:
        """Read the denylist file at ``path`` (UTF-8, at most 1 MiB)."""
        raw = Path(path).read_bytes()
        if len(raw) > MAX_DENYLIST_BYTES:
            raise ValueError(f"denylist {path}: larger than {MAX_DENYLIST_BYTES} bytes")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"denylist {path}: not UTF-8 text") from None
        return cls.from_lines(text.splitlines())

    def blocking(self, host: str) -> str | None:
        """The denylisted domain ``host`` equals or is a subdomain of, if any."""
        for bad in self.domains:
            if host == bad or host.endswith("." + bad):
                return bad
        return None


def lint_manifest(m: Manifest, denylist: Denylist) -> list[Finding]:
    """All findings for ``m``: its validation problems, then the registry policy."""
    findings = [Finding("schema", problem) for problem in manifest_problems(m)]
    for entry in m.entitlements.egress:
        host = entry.removeprefix("*.")
        bad = denylist.blocking(host)
        if bad is not None:
            findings.append(Finding("denylist", f"egress {entry!r} matches denylist entry {bad!r}"))
        elif entry.startswith("*."):
            covered = [d for d in denylist.domains if egress_allows([entry], d)]
            if covered:
                findings.append(
                    Finding(
                        "wildcard-covers-denylisted",
                        f"egress {entry!r} allows denylisted {', '.join(covered)}",
                    )
                )
        if check_egress_entry(entry) is None and legacy_ip_notation(host):
            findings.append(
                Finding("ip-notation", f"egress {entry!r}: resolves as an IPv4 address, not a name")
            )
    return findings
