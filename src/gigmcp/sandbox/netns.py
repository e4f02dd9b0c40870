"""The network of one instance: a fresh network namespace wired to the host by a veth.

Owns creating, wiring and destroying those namespaces, the pool of ready ones, and
reconciling what a crashed earlier run left. Every netlink and nftables call runs on one
long-lived thread: ``setns`` changes the namespace of the calling *thread* only, so that
thread can step into a new namespace to configure it while the event loop stays where it
is. Namespaces are held as file descriptors, never bind-mounted under /run/netns, so the
kernel frees a namespace (and its veth) as soon as its last process and our descriptor
are gone: a gateway killed with SIGKILL leaves no namespace behind.

Two modes, for the two ways the gateway may be run. *root* (``CAP_SYS_ADMIN``): the
namespaces belong to the host's user namespace, made and entered as described above.
*userns* (``CAP_NET_ADMIN`` without ``CAP_SYS_ADMIN``, a container's usual grant): each
namespace is made inside a user namespace of the instance's own host uid by a
:class:`~gigmcp.sandbox.holder.NamespaceHolder`, and the launcher joins it with
``nsenter``; the host side (veth, addresses, the host table) is the same in both.

Inside: ``lo`` up, ``eth0`` with the sandbox address, a default route to the host end,
IPv6 off, and an nftables wall of its own (``firewall.inside_ruleset``) that lets out
only TCP to the proxy, so the host table is not the only thing between a sandbox and the
world. It must never give a sandbox any route but the one to its host end, and never
hand the same namespace or address to two instances.
"""

from __future__ import annotations

import asyncio
import ctypes
import fcntl
import ipaddress
import logging
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from pyroute2 import IPRoute

from gigmcp.errors import LaunchError
from gigmcp.sandbox import mode as sandbox_mode
from gigmcp.sandbox.addresses import IFNAME_PREFIX, AddressPool, PoolExhausted, Slot
from gigmcp.sandbox.firewall import Firewall, inside_ruleset
from gigmcp.sandbox.holder import NamespaceHolder
from gigmcp.sandbox.jail import host_uid
from gigmcp.sandbox.nft import Nft

CLONE_NEWNET = 0x40000000
# One gateway per host owns the sandbox network: the firewall table and the interface
# names are host-wide, and a second gateway reconciling them would cut the first off.
LOCK_PATH = "/run/gigmcp-sandbox.lock"
_T = TypeVar("_T")
# How often the host table is checked for having been removed behind our back.
WATCH_INTERVAL_S = 5.0
log = logging.getLogger(__name__)
_libc = ctypes.CDLL(None, use_errno=True)


class NetworkError(LaunchError):
    pass


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise NetworkError(f"{what}: {os.strerror(err)}")


@dataclass(slots=True)
class NetLease:
    """One ready namespace. Root mode: ``netns_fd`` is ours and the launcher enters it
    to spawn. Userns mode: ``holder`` holds it and ``spawn_prefix`` joins it."""

    slot: Slot
    netns_fd: int
    closed: bool = False
    holder: NamespaceHolder | None = None

    @property
    def spawn_prefix(self) -> list[str]:
        return self.holder.nsenter() if self.holder is not None else []


class SandboxNetwork:
    """Builds and tears down sandbox namespaces on its own thread, with a small pool.

    ``pool_size`` namespaces are kept ready so that a cold start costs only the jail;
    they hold addresses but no identity, and nothing can reach them.
    """

    def __init__(
        self,
        subnet: str,
        proxy_ports: Iterable[int],
        pool_size: int = 2,
        redirect: tuple[int, int, int] | None = None,
        mode: str = "root",
    ) -> None:
        if mode not in sandbox_mode.NEEDED:
            raise ValueError(f"sandbox network mode must be root or userns, not {mode!r}")
        self.mode = mode
        self.addresses = AddressPool(subnet)
        self.proxy_ports = tuple(proxy_ports)
        self.redirect = redirect
        self.pool_size = pool_size
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gigmcp-net")
        self._ready: list[NetLease] = []
        self._leased: dict[int, NetLease] = {}
        self._refill: asyncio.Task[None] | None = None
        self._watch: asyncio.Task[None] | None = None
        self._host_fd = -1
        self._ipr: IPRoute | None = None
        self._firewall: Firewall | None = None
        self._started = False
        self._lock_fd = -1

    # -- life cycle --------------------------------------------------------------------
    async def start(self) -> list[str]:
        """Install the firewall, remove what an earlier run left; return what was removed."""
        self._lock_fd = os.open(LOCK_PATH, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            self._lock_fd = -1
            raise NetworkError(
                f"another gateway on this host runs the sandbox network ({LOCK_PATH} is "
                "locked); run one gateway per host"
            ) from None
        try:
            removed = await self._call(self._start_sync)
        except BaseException:
            os.close(self._lock_fd)
            self._lock_fd = -1
            raise
        self._started = True
        self._schedule_refill()
        self._watch = asyncio.get_running_loop().create_task(self._watch_table())
        return removed

    async def aclose(self) -> None:
        for task in (self._refill, self._watch):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        for lease in [*self._ready, *self._leased.values()]:
            await self.release(lease)
        self._ready.clear()
        if self._started:
            await self._call(self._stop_sync)
        self._thread.shutdown(wait=True)
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    async def acquire(self) -> NetLease:
        if not self._started:
            raise NetworkError("sandbox network is not started")
        if self._ready:
            lease = self._ready.pop()
        else:
            slot = self.addresses.allocate()
            try:
                lease = await self._call(self._build_sync, slot)
            except BaseException:
                self.addresses.release(slot)
                raise
        self._leased[lease.slot.index] = lease
        self._schedule_refill()
        return lease

    async def release(self, lease: NetLease) -> None:
        if lease.closed:
            return
        lease.closed = True
        self._leased.pop(lease.slot.index, None)
        try:
            await self._call(self._destroy_sync, lease)
        finally:
            self.addresses.release(lease.slot)

    def enter(self, lease: NetLease) -> None:
        """Move the *calling thread* into the lease's namespace (for a spawn; root mode:
        in userns mode the spawn is prefixed with ``lease.spawn_prefix`` instead)."""
        if lease.holder is not None:
            raise NetworkError("a userns-mode namespace is joined with nsenter, not setns")
        _check(_libc.setns(lease.netns_fd, CLONE_NEWNET), "setns into sandbox netns")

    def leave(self) -> None:
        _check(_libc.setns(self._host_fd, CLONE_NEWNET), "setns back to the host netns")

    @property
    def in_use(self) -> int:
        return len(self._leased)

    def firewall_listing(self) -> str:
        assert self._firewall is not None
        return self._thread.submit(self._firewall.listing).result()

    async def check_table(self) -> bool:
        """Put the host table back if something removed it; True if it had to.

        The wall inside each namespace holds meanwhile; this restores the second one
        (and the anti-spoofing the proxy's identities rest on) within one interval."""
        # The lease lists belong to the event loop: read them here, not on the thread.
        slots = [lease.slot for lease in [*self._ready, *self._leased.values()] if not lease.closed]
        return await self._call(self._restore_sync, slots)

    async def _watch_table(self) -> None:
        while True:
            await asyncio.sleep(WATCH_INTERVAL_S)
            try:
                await self.check_table()
            except Exception:
                log.exception("cannot check the sandbox firewall table")

    # -- the network thread ------------------------------------------------------------
    async def _call(self, fn: Callable[..., _T], *args: Any) -> _T:
        result: _T = await asyncio.wrap_future(self._thread.submit(fn, *args))
        return result

    def _schedule_refill(self) -> None:
        if self.pool_size <= 0 or (self._refill is not None and not self._refill.done()):
            return
        if len(self._ready) < self.pool_size:
            self._refill = asyncio.get_running_loop().create_task(self._fill())

    async def _fill(self) -> None:
        while len(self._ready) < self.pool_size:
            try:
                slot = self.addresses.allocate()
            except PoolExhausted:
                return  # the pool is for speed only; a full address pool is not an error here
            try:
                self._ready.append(await self._call(self._build_sync, slot))
            except BaseException:
                self.addresses.release(slot)
                raise

    def _start_sync(self) -> list[str]:
        self._host_fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        self._ipr = IPRoute()
        removed: list[str] = []
        for link in self._ipr.get_links():
            name = str(link.get_attr("IFLA_IFNAME") or "")
            if name.startswith(IFNAME_PREFIX) and name[len(IFNAME_PREFIX) :].isdigit():
                self._ipr.link("del", index=link["index"])
                removed.append(name)
        self._check_overlap()
        self._firewall = Firewall(self.proxy_ports, self.redirect[2:] if self.redirect else ())
        self._firewall.install()
        return removed

    def _restore_sync(self, slots: list[Slot]) -> bool:
        assert self._firewall is not None
        if self._firewall.present():
            return False
        log.error(
            "the sandbox firewall table (inet %s) was removed from the host ruleset; "
            "putting it back (something flushed the ruleset: exclude our table from it)",
            "gigmcp",
        )
        self._firewall.install()
        for slot in slots:
            self._firewall.admit(slot)
        return True

    def _check_overlap(self) -> None:
        assert self._ipr is not None
        net = self.addresses.network
        for addr in self._ipr.get_addr(family=2):
            ip = addr.get_attr("IFA_ADDRESS")
            if ip and ipaddress.ip_address(ip) in net:
                raise NetworkError(
                    f"GIG_SANDBOX_SUBNET {net} overlaps the host address {ip}; "
                    "choose a subnet no host interface uses"
                )

    def _stop_sync(self) -> None:
        if self._firewall is not None:
            self._firewall.remove()
            self._firewall.close()
        if self._ipr is not None:
            self._ipr.close()
        if self._host_fd >= 0:
            os.close(self._host_fd)
            self._host_fd = -1

    def _build_sync(self, slot: Slot) -> NetLease:
        if self.mode == "userns":
            return self._build_userns_sync(slot)
        assert self._ipr is not None
        assert self._firewall is not None
        netns_fd = -1
        inner: IPRoute | None = None
        try:
            _check(_libc.unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET)")
            try:
                netns_fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
                # Written while this thread is inside: /proc/sys/net is per namespace.
                for knob in ("all", "default"):
                    with open(f"/proc/sys/net/ipv6/conf/{knob}/disable_ipv6", "w") as f:
                        f.write("1")
                # A libnftables context talks to the namespace it was created in: make it
                # here, use it, free it, all before leaving.
                with Nft() as nft:
                    nft.run(inside_ruleset(slot.host_ip, self.proxy_ports, self.redirect))
                inner = IPRoute()
            finally:
                self.leave()
            self._ipr.link(
                "add",
                ifname=slot.host_ifname,
                kind="veth",
                peer={"ifname": "eth0", "net_ns_fd": netns_fd},
            )
            self._wire_host_end(slot)
            lo = inner.link_lookup(ifname="lo")[0]
            inner.link("set", index=lo, state="up")
            eth = inner.link_lookup(ifname="eth0")[0]
            inner.addr("add", index=eth, address=slot.sandbox_ip, prefixlen=slot.prefixlen)
            inner.link("set", index=eth, state="up")
            inner.route("add", dst="0.0.0.0/0", gateway=slot.host_ip)
            self._firewall.admit(slot)
            return NetLease(slot, netns_fd)
        except Exception as exc:
            self._destroy_sync(NetLease(slot, netns_fd))
            if isinstance(exc, NetworkError):
                raise
            raise NetworkError(f"cannot build the network of {slot.host_ifname}: {exc}") from exc
        finally:
            if inner is not None:
                inner.close()

    def _build_userns_sync(self, slot: Slot) -> NetLease:
        assert self._ipr is not None
        assert self._firewall is not None
        lease = NetLease(slot, -1)
        try:
            batch = (
                "link set lo up\n"
                f"addr add {slot.sandbox_ip}/{slot.prefixlen} dev eth0\n"
                "link set eth0 up\n"
                f"route add default via {slot.host_ip}\n"
            )
            lease.holder = NamespaceHolder(
                host_uid(slot.index),
                batch,
                inside_ruleset(slot.host_ip, self.proxy_ports, self.redirect),
            )
            # By pid: opening /proc/<pid>/ns/net of another uid would need CAP_SYS_PTRACE.
            # The holder is our unreaped child, so its pid cannot be reused meanwhile.
            self._ipr.link(
                "add",
                ifname=slot.host_ifname,
                kind="veth",
                peer={"ifname": "eth0", "net_ns_pid": lease.holder.pid},
            )
            self._wire_host_end(slot)
            lease.holder.configure()
            self._firewall.admit(slot)
            return lease
        except Exception as exc:
            self._destroy_sync(lease)
            raise NetworkError(f"cannot build the network of {slot.host_ifname}: {exc}") from exc

    def _wire_host_end(self, slot: Slot) -> None:
        assert self._ipr is not None
        with open(f"/proc/sys/net/ipv6/conf/{slot.host_ifname}/disable_ipv6", "w") as f:
            f.write("1")
        host_index = self._ipr.link_lookup(ifname=slot.host_ifname)[0]
        self._ipr.addr("add", index=host_index, address=slot.host_ip, prefixlen=slot.prefixlen)
        self._ipr.link("set", index=host_index, state="up")

    def _destroy_sync(self, lease: NetLease) -> None:
        assert self._ipr is not None
        assert self._firewall is not None
        self._firewall.forget(lease.slot)
        # Deleting the host end removes both ends now, rather than when the kernel gets
        # round to freeing the namespace, so the slot can be reused at once.
        try:
            for index in self._ipr.link_lookup(ifname=lease.slot.host_ifname):
                self._ipr.link("del", index=index)
        except Exception:  # noqa: S110 - already gone with its namespace
            pass
        if lease.netns_fd >= 0:
            os.close(lease.netns_fd)
            lease.netns_fd = -1
        if lease.holder is not None:
            lease.holder.stop()
            lease.holder = None
