"""The credential seam: values for the environment variables a server declares by name.

The supervisor asks a :class:`CredentialProvider` for each launch. The vault-backed
provider (vault_provider.py, given to a jailed gateway) answers with per-instance
placeholders for sealed credentials, so real keys never reach the process; the default
:class:`NoCredentials` (a gateway run without the sandbox) answers nothing, and a declared
variable stays unset. A provider must never return a value for a variable the
server did not declare, and never log a value.
"""

from __future__ import annotations

from typing import Protocol

from gigmcp.core.instances import InstanceKey
from gigmcp.core.views import ServerDef


class CredentialProvider(Protocol):
    def environment_for(self, key: InstanceKey, server: ServerDef) -> dict[str, str]:
        """Values for (a subset of) ``server.env_names`` for this instance."""
        ...


class NoCredentials:
    def environment_for(self, key: InstanceKey, server: ServerDef) -> dict[str, str]:
        return {}


def launch_environment(
    provider: CredentialProvider, key: InstanceKey, server: ServerDef
) -> dict[str, str]:
    """Literal values plus provided values for declared names, and nothing else."""
    env = dict(server.env)
    declared = set(server.env_names) | {c.env for c in server.credentials}
    for name, value in provider.environment_for(key, server).items():
        if name in declared:
            env[name] = value
    return env
