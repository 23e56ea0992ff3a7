"""Session-scoped pytest fixtures for the local storage servers.

Use them from a ``conftest.py`` by importing them::

    from tests.servers.fixtures import azurite_server, gcs_server, moto_server, moto_server_factory  # noqa: F401

A server that cannot be installed or started skips the tests that need it, printing why; with
``GREENROUTE_REQUIRE_INTEGRATION=1`` (as in CI) it fails them instead.

``moto_server_factory()`` starts an extra moto server of its own, independent of ``moto_server``,
so a test can kill it (``server.kill()``) mid-run to exercise failover; every server it started
is stopped at the end of the session.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest
from tests.servers.local import LocalServer, ServerUnavailable, start_azurite, start_gcs_emulator, start_moto

__all__ = ["azurite_server", "gcs_server", "moto_server", "moto_server_factory", "require_integration"]


def require_integration() -> bool:
    """Whether integration servers must be available (``GREENROUTE_REQUIRE_INTEGRATION=1``)."""
    return os.environ.get("GREENROUTE_REQUIRE_INTEGRATION", "") == "1"


def _server(start: Callable[[], LocalServer]) -> LocalServer:
    try:
        return start()
    except ServerUnavailable as exc:
        reason = f"local server unavailable: {exc}"
        if require_integration():
            pytest.fail(reason + " (GREENROUTE_REQUIRE_INTEGRATION=1)")
        print(reason)
        pytest.skip(reason)


@pytest.fixture(scope="session")
def moto_server() -> Iterator[LocalServer]:
    """A moto S3 server for the whole session."""
    server = _server(start_moto)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def moto_server_factory() -> Iterator[Callable[[], LocalServer]]:
    """Start extra, independently killable moto servers; all are stopped at the end of the session."""
    started: list[LocalServer] = []

    def start() -> LocalServer:
        server = _server(start_moto)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def gcs_server() -> Iterator[LocalServer]:
    """A GCS emulator for the whole session."""
    server = _server(start_gcs_emulator)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def azurite_server() -> Iterator[LocalServer]:
    """An Azurite blob server for the whole session."""
    server = _server(start_azurite)
    yield server
    server.stop()
