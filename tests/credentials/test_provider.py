"""The credential seam hands a server only what it declared, and nothing by default."""

from __future__ import annotations

from gigmcp.core.instances import InstanceKey
from gigmcp.core.views import ServerDef
from gigmcp.credentials.provider import NoCredentials, launch_environment

SERVER = ServerDef(1, "srv", 1, ("x",), env=(("MODE", "fast"),), env_names=("API_KEY",))
KEY = InstanceKey(1, "srv")


class Generous:
    def environment_for(self, key: InstanceKey, server: ServerDef) -> dict[str, str]:
        return {"API_KEY": "placeholder-123", "HOME_SECRET": "must-not-pass"}


def test_by_default_declared_names_stay_unset() -> None:
    assert launch_environment(NoCredentials(), KEY, SERVER) == {"MODE": "fast"}


def test_a_provider_cannot_add_undeclared_variables() -> None:
    env = launch_environment(Generous(), KEY, SERVER)
    assert env == {"MODE": "fast", "API_KEY": "placeholder-123"}
