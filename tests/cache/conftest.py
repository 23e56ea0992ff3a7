"""Fixtures for the shared-cache tests: the run's Redis, throwaway servers, fake grid APIs."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from tests.fakes import FakeElectricityMaps, FakeWattTime
from tests.servers.fixtures import require_integration
from tests.servers.local import LocalServer, ServerUnavailable
from tests.servers.redis import TestRedis, redis_for_tests, start_redis_server


def _unavailable(exc: ServerUnavailable) -> None:
    reason = f"redis unavailable: {exc}"
    if require_integration():
        pytest.fail(reason + " (GREENROUTE_REQUIRE_INTEGRATION=1)")
    print(reason)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def redis_run() -> Iterator[TestRedis]:
    """The Redis for this run (its keys are deleted at the end; a throwaway server is stopped)."""
    try:
        target = redis_for_tests()
    except ServerUnavailable as exc:
        _unavailable(exc)
        raise
    yield target
    target.stop()


@pytest.fixture
def prefix(redis_run: TestRedis, request: pytest.FixtureRequest) -> Iterator[str]:
    """A key prefix for one test; its keys are deleted afterwards."""
    name = request.node.name.replace("[", "-").replace("]", "")
    value = redis_run.prefix(name)
    yield value
    redis_run.delete_keys(value)


@pytest.fixture
def redis_server_factory() -> Iterator[Callable[..., LocalServer]]:
    """Start throwaway servers that a test may kill; all are stopped at the end of the test."""
    started: list[LocalServer] = []

    def start(port: int | None = None) -> LocalServer:
        try:
            server = start_redis_server(port)
        except ServerUnavailable as exc:
            _unavailable(exc)
            raise
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def em() -> Iterator[FakeElectricityMaps]:
    with FakeElectricityMaps() as server:
        yield server


@pytest.fixture
def wt() -> Iterator[FakeWattTime]:
    with FakeWattTime() as server:
        yield server
