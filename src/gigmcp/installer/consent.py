"""What an operator is asked to allow before a registry server is installed or upgraded.

Owns turning a manifest (as the plain dict of its YAML fields) into the consent text —
tier, egress hosts and every port of the grant (what each port means: credentials only
over HTTPS whose upstream is verified by TLS, never on plain HTTP; a port beyond 443 and
80 only because the operator allowed it), each credential and how it reaches the
server, tools and which are on by default — and the rule for when consent is needed
again: when the manifest's runtime hash differs from the consented one
(presentation-only changes keep it). It must never leave out a host, a port, a
credential or a tool, and never call an entrusted credential anything but visible to
the server.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gigmcp.netpolicy.policy import DEFAULT_PORTS, NO_EXTRA_PORTS


def needs_consent(consented_runtime_hash: str | None, runtime_hash: str) -> bool:
    return consented_runtime_hash != runtime_hash


def describe(
    manifest: dict[str, Any], kind: str, package: str, ports: Sequence[int] = DEFAULT_PORTS
) -> list[str]:
    """The lines shown before ``[y/N]``. ``ports``: the grant's (a registry install
    grants 443 only: ``materialize.egress_grant``)."""
    name, version = manifest.get("name"), manifest.get("version")
    title = manifest.get("displayName") or name
    lines = [f"{title} ({name}@{version}), {kind}: {package}"]
    tier = manifest.get("tier")
    if tier == "sealed":
        lines.append("tier: sealed — credentials never enter the sandbox; the proxy injects them")
    else:
        lines.append(
            "tier: entrusted — credentials are handed to the server itself "
            "(it can read and misuse them within its allowed hosts)"
        )
    egress = (manifest.get("entitlements") or {}).get("egress") or []
    if egress:
        lines.append("may connect to (through the egress proxy):")
        lines.extend(f"  - {host}" for host in egress)
        lines.append("on:")
        lines.extend(f"  - {NO_EXTRA_PORTS.describe(p)}" for p in dict.fromkeys(ports))
        if 80 not in ports:
            lines.append("  (no plain HTTP)")
    else:
        lines.append("may connect to: nothing (no network)")
    creds = manifest.get("credentials") or []
    if creds:
        lines.append("credentials:")
    for cred in creds:
        inject = cred.get("inject") or {}
        scopes = cred.get("scopes") or []
        what = f"  - {cred.get('id')} ({cred.get('type')}, {cred.get('provider')})"
        if scopes:
            what += f", scopes: {', '.join(scopes)}"
        lines.append(what)
        if cred.get("type") == "oauth2" and cred.get("vendor"):
            lines.append(f"      the token of your connected {cred['vendor']} account")
        if inject.get("env"):
            lines.append(f"      given to the server in ${inject['env']}")
        else:
            lines.append(
                f"      injected by the proxy as {inject.get('header')}: {inject.get('format')}"
            )
    tools = manifest.get("tools") or []
    if tools:
        on = [t["name"] for t in tools if t.get("default")]
        off = [t["name"] for t in tools if not t.get("default")]
        lines.append(f"tools on by default ({len(on)}): {', '.join(on) or '-'}")
        lines.append(f"tools off until enabled per profile ({len(off)}): {', '.join(off) or '-'}")
    return lines
