from tests.endpoint.conftest import gw

__all__ = ["gw"]
