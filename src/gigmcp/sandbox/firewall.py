"""The host side of every sandbox network: one nftables table the project owns.

Owns ``table inet gigmcp``. What it enforces, for every interface named ``gmv*``:

- a sandbox may send only IPv4, only from the address assigned to its own interface
  (anti-spoofing: no instance can pass for another, so the proxy's source-IP identity
  holds);
- the host accepts from it only TCP to its own host-end address on the proxy's ports
  (and UDP on the proxy's DNS port, at most ``DNS_RATE_PER_S`` a second per interface;
  that port is never open to TCP: nothing of ours listens there), and accepts those
  ports from nowhere else (the proxy listens on every address);
  the API, the database, other host services and other sandboxes stay unreachable;
- nothing from or to a sandbox interface is forwarded, so there is no route anywhere
  but the proxy, whatever the host's ``ip_forward`` says;
- the host opens no new connection into a sandbox; only replies flow back.

Drops in our base chains are final whatever other tables accept, which is why the rules
are drops keyed on our interface prefix and not a policy. It must never touch another
table, and it must never accept anything that another table would drop.

A second wall stands inside every sandbox namespace (``inside_ruleset``): the same table
name, policy drop, letting out only TCP to the host end's proxy ports (and DNS at the
same rate) and in only what comes back from there. The host table can be flushed by
anyone with root on the host (``nft flush ruleset``, a firewall manager reloading); the
one inside cannot be touched by the jail (the namespace belongs to the host's user
namespace, where the jail holds no capability) and dies with the namespace.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

from gigmcp.sandbox.addresses import IFNAME_PREFIX, Slot
from gigmcp.sandbox.nft import Nft, NftError

TABLE = "gigmcp"
# DNS queries a sandbox may send per second, sustained and in a burst, counted per
# interface (so per instance) by both walls: a flood is cut inside its own namespace and
# at the host's door, before it reaches the resolver's socket that every jail shares,
# where it would crowd out the others' queries. A real client asks a handful of names.
DNS_RATE_PER_S = 100
DNS_BURST = 200
_DNS_LIMIT = f"{DNS_RATE_PER_S}/second burst {DNS_BURST} packets"


def ruleset(ports: Iterable[int], udp_ports: Iterable[int] = ()) -> str:
    # The DNS port is UDP only: nothing listens there over TCP, so a TCP connection to it
    # could only meet a listener some other program put there. Never open it for TCP,
    # whatever list of ports the caller passes.
    tcp = set(ports) - set(udp_ports)
    port_list = ", ".join(str(int(p)) for p in sorted(tcp))
    ports_decl = f"elements = {{ {port_list} }}" if port_list else ""
    udp_list = ", ".join(str(int(p)) for p in sorted(set(udp_ports)))
    udp_decl = f"elements = {{ {udp_list} }}" if udp_list else ""
    wildcard = f'"{IFNAME_PREFIX}*"'
    dns_limit = f"update @dns_rate {{ iifname limit rate over {_DNS_LIMIT} }}"
    return f"""
table inet {TABLE} {{
    set sources {{ type ifname . ipv4_addr; }}
    set host_ends {{ type ifname . ipv4_addr; }}
    set proxy_ports {{ type inet_service; {ports_decl} }}
    set dns_ports {{ type inet_service; {udp_decl} }}
    set dns_rate {{ type ifname; flags dynamic; timeout 1m; }}

    chain guard_prerouting {{
        type filter hook prerouting priority raw; policy accept;
        iifname {wildcard} meta nfproto != ipv4 drop
        iifname {wildcard} iifname . ip saddr != @sources drop
    }}
    chain guard_input {{
        type filter hook input priority filter - 10; policy accept;
        iifname {wildcard} iifname . ip daddr @host_ends tcp dport @proxy_ports accept
        iifname {wildcard} udp dport @dns_ports {dns_limit} drop
        iifname {wildcard} iifname . ip daddr @host_ends udp dport @dns_ports accept
        iifname {wildcard} drop
        tcp dport @proxy_ports drop
        udp dport @dns_ports drop
    }}
    chain guard_forward {{
        type filter hook forward priority filter - 10; policy accept;
        iifname {wildcard} drop
        oifname {wildcard} drop
    }}
    chain guard_output {{
        type filter hook output priority filter - 10; policy accept;
        oifname {wildcard} ct state established,related accept
        oifname {wildcard} drop
    }}
}}
"""


def inside_ruleset(
    host_ip: str, ports: Iterable[int], redirect: tuple[int, int, int] | None = None
) -> str:
    """The wall inside one sandbox namespace: out only to the proxy, in only from it.

    With ``redirect`` (the proxy's transparent HTTP, TLS and DNS ports), TCP to port 80 or
    443 anywhere is sent to the proxy instead, and DNS (UDP 53) to the proxy's resolver,
    so a client that ignores HTTPS_PROXY still resolves and meets the proxy rather than
    a dropped packet. Only the DNS port is reachable over UDP, and never over TCP."""
    tcp = set(ports)
    nat = ""
    udp = ""
    if redirect is not None:
        http, tls, dns = (int(p) for p in redirect)
        tcp.discard(dns)
        nat = f"""
    chain to_proxy {{
        type nat hook output priority -100; policy accept;
        ip daddr != {host_ip} tcp dport 80 dnat ip to {host_ip}:{http}
        ip daddr != {host_ip} tcp dport 443 dnat ip to {host_ip}:{tls}
        udp dport 53 dnat ip to {host_ip}:{dns}
    }}"""
        udp = f"\n        ip daddr {host_ip} udp dport {dns} limit rate {_DNS_LIMIT} accept"
    port_list = ", ".join(str(int(p)) for p in sorted(tcp)) or "0"
    return f"""
table inet {TABLE} {{{nat}
    chain output {{
        type filter hook output priority filter; policy drop;
        oifname "lo" accept
        ip daddr {host_ip} tcp dport {{ {port_list} }} accept{udp}
    }}
    chain input {{
        type filter hook input priority filter; policy drop;
        iifname "lo" accept
        ip saddr {host_ip} tcp sport {{ {port_list} }} accept
        ct state established,related accept
    }}
}}
"""


class Firewall:
    """Installs the table and keeps its sets in step with the running instances.

    Call from one thread only (the sandbox network thread): a libnftables context is
    not thread-safe.
    """

    def __init__(self, proxy_ports: Iterable[int], dns_ports: Iterable[int] = ()) -> None:
        self.proxy_ports = tuple(proxy_ports)
        self.dns_ports = tuple(dns_ports)
        self._nft = Nft()

    def install(self) -> None:
        """Replace whatever an earlier run left with a fresh table, atomically."""
        batch = f"table inet {TABLE}\ndelete table inet {TABLE}\n" + ruleset(
            self.proxy_ports, self.dns_ports
        )
        self._nft.run(batch)

    def remove(self) -> None:
        self._nft.run(f"table inet {TABLE}\ndelete table inet {TABLE}\n")

    def admit(self, slot: Slot) -> None:
        self._nft.run(
            f'add element inet {TABLE} sources {{ "{slot.host_ifname}" . {slot.sandbox_ip} }}\n'
            f'add element inet {TABLE} host_ends {{ "{slot.host_ifname}" . {slot.host_ip} }}\n'
        )

    def forget(self, slot: Slot) -> None:
        # Already gone (reconciled, or never admitted) is fine: the goal state holds.
        with contextlib.suppress(NftError):
            self._nft.run(
                f"delete element inet {TABLE} sources "
                f'{{ "{slot.host_ifname}" . {slot.sandbox_ip} }}\n'
                f"delete element inet {TABLE} host_ends "
                f'{{ "{slot.host_ifname}" . {slot.host_ip} }}\n'
            )

    def present(self) -> bool:
        """Whether our table is still in the host ruleset, with its guard chain."""
        try:
            self._nft.run(f"list chain inet {TABLE} guard_input")
        except NftError:
            return False
        return True

    def listing(self) -> str:
        return self._nft.run(f"list table inet {TABLE}")

    def close(self) -> None:
        self._nft.close()
