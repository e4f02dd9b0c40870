"""Which of the two ways to build a sandbox network this gateway can use, and what each
needs.

*root*: the gateway holds ``CAP_SYS_ADMIN`` (root, or a container granted it) and makes
each network namespace itself. *userns*: the gateway holds ``CAP_NET_ADMIN`` but not
``CAP_SYS_ADMIN`` (the usual container grant, ``--cap-add NET_ADMIN``); each namespace is
made inside a user namespace of the instance's own uid (see ``sandbox/holder.py``), which
needs unprivileged user namespaces. ``auto`` picks root when it can.

Owns reading the effective capabilities and the list each mode needs. It must never
pick a mode whose capabilities are not all held.
"""

from __future__ import annotations

MODES = ("auto", "root", "userns")

_BITS = {"DAC_OVERRIDE": 1, "KILL": 5, "SETGID": 6, "SETUID": 7, "NET_ADMIN": 12, "SYS_ADMIN": 21}

# dac_override: create the gigmcp cgroups (cgroupfs roots are mode 0555, even for root);
# kill: signal jails, which run as other uids; setuid/setgid: start each jail as its
# instance's own uid; net_admin: veths, addresses, nftables. Root mode adds sys_admin
# (a network namespace per instance, setns into it). Nothing else, in either mode.
NEEDED = {
    "userns": ("DAC_OVERRIDE", "KILL", "SETGID", "SETUID", "NET_ADMIN"),
    "root": ("DAC_OVERRIDE", "KILL", "SETGID", "SETUID", "NET_ADMIN", "SYS_ADMIN"),
}


def effective_caps() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    return 0


def missing(mode: str, caps: int | None = None) -> list[str]:
    """The capabilities ``mode`` needs that this process does not hold."""
    held = effective_caps() if caps is None else caps
    return [name for name in NEEDED[mode] if not held >> _BITS[name] & 1]


def resolve(setting: str, caps: int | None = None) -> str:
    """``auto`` → root when CAP_SYS_ADMIN is held, else userns; others as they are."""
    if setting not in MODES:
        raise ValueError(f"sandbox mode must be one of {', '.join(MODES)}: {setting!r}")
    if setting != "auto":
        return setting
    held = effective_caps() if caps is None else caps
    return "root" if held >> _BITS["SYS_ADMIN"] & 1 else "userns"
