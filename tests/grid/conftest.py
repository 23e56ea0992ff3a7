"""Fixtures for the grid adapter tests: running fake servers, fast retry policies, sleep recorders."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.fakes import FakeElectricityMaps, FakeUkCarbonIntensity, FakeWattTime

from greenroute.adapters.grid._http import RetryPolicy


class SleepRecorder:
    """Stands in for ``time.sleep`` in retry policies: records each wait, sleeps not at all."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
def sleeps() -> SleepRecorder:
    return SleepRecorder()


@pytest.fixture
def fast_retry(sleeps: SleepRecorder) -> RetryPolicy:
    """Three retries with millisecond backoff, waits recorded instead of slept."""
    return RetryPolicy(max_retries=3, backoff_initial_seconds=0.001, backoff_max_seconds=0.004,
                       jitter_seconds=0.001, retry_after_cap_seconds=30.0, sleep=sleeps)


@pytest.fixture
def wt_server() -> Iterator[FakeWattTime]:
    with FakeWattTime() as server:
        yield server


@pytest.fixture
def em_server() -> Iterator[FakeElectricityMaps]:
    with FakeElectricityMaps() as server:
        yield server


@pytest.fixture
def uk_server() -> Iterator[FakeUkCarbonIntensity]:
    with FakeUkCarbonIntensity() as server:
        yield server
