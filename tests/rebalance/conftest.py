"""The local storage servers for the rebalance tests (see tests/servers)."""

from tests.servers.fixtures import azurite_server, moto_server, moto_server_factory  # noqa: F401
