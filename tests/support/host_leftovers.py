"""What jailed instances leave on the host, for the tests that say nothing is left.

``sandbox_links`` are the sandboxes' veth ends (``gmv*``), ``gigmcp_cgroups`` the
instances' cgroups under a ``gigmcp`` folder anywhere in /sys/fs/cgroup, and
``table_elements`` the lines of the host table's sets that still name a ``gmv`` link.
Read only: it must never delete what it finds.
"""

from __future__ import annotations

import os

from pyroute2 import IPRoute

from gigmcp.sandbox.firewall import TABLE
from gigmcp.sandbox.nft import Nft


def sandbox_links() -> set[str]:
    with IPRoute() as ipr:
        names = {str(link.get_attr("IFLA_IFNAME")) for link in ipr.get_links()}
    return {n for n in names if n.startswith("gmv")}


def gigmcp_cgroups() -> list[str]:
    found = []
    for root, dirs, _files in os.walk("/sys/fs/cgroup"):
        if os.path.basename(root) == "gigmcp":
            found.extend(os.path.join(root, d) for d in dirs)
            dirs.clear()
    return found


def table_elements() -> str:
    with Nft() as n:
        if TABLE not in n.run("list tables"):
            return ""
        listing = n.run(f"list table inet {TABLE}")
    return "\n".join(line for line in listing.splitlines() if "elements" in line and "gmv" in line)
