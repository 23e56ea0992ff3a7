"""fsspec's own abstract test suites, run against greenroute:// (as s3fs runs them against s3://).

The fixtures mixin gives the suites a greenroute:// over two memory backends, and again over two moto
S3 buckets. ``supports_empty_directories`` is ``False``: directories are implied by the catalog's
paths, as on any object store. Every case runs; none needs skipping.

fsspec's suites call the blocking API, so they cannot drive an ``asynchronous=True`` instance
themselves. The "OwnLoop" classes run them once more with ``loop=`` an event loop of the test's own,
in its own thread, as an asynchronous caller's loop: every bulk call (put, get, copy, pipe, cat, rm)
is then a coroutine of the filesystem running on a loop other than the one the backends' libraries
(s3fs) run on, which is what ``asynchronous=True`` callers such as zarr do. The coroutines called
directly with ``asynchronous=True`` are tested in ``test_async.py``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fsspec.tests.abstract import AbstractFixtures
from fsspec.tests.abstract.copy import AbstractCopyTests
from fsspec.tests.abstract.get import AbstractGetTests
from fsspec.tests.abstract.open import AbstractOpenTests
from fsspec.tests.abstract.pipe import AbstractPipeTests
from fsspec.tests.abstract.put import AbstractPutTests
from tests.filesystem.conftest import GREENEST, OTHER, unique_name, write_config
from tests.servers.local import LocalServer, s3_storage_options

from greenroute import GreenRouter
from greenroute.adapters.fsspec.filesystem import GreenRouteFileSystem


class _GreenRouteFixtures(AbstractFixtures):  # type: ignore[misc]
    """One router (config, catalog, buckets) per test class, as s3fs's suites share one bucket.

    The suites remove what most cases make; ``fs`` removes the rest, so every case starts empty.
    """

    #: Run the bulk calls on an event loop of the test's own (``loop=``) instead of fsspec's.
    own_loop = False

    @pytest.fixture(scope="class")
    @classmethod
    def router(cls, config: Path) -> Iterator[GreenRouter]:
        with GreenRouter.from_config(config) as router:
            yield router

    @pytest.fixture
    def fs(self, router: GreenRouter, request: pytest.FixtureRequest) -> Iterator[GreenRouteFileSystem]:
        loop = request.getfixturevalue("callers_loop") if self.own_loop else None
        fs = GreenRouteFileSystem(router=router, loop=loop)
        assert fs.loop is not None and (fs.loop is loop or loop is None)
        yield fs
        if fs.exists("conformance"):  # a few cases leave files of their own behind
            fs.rm("conformance", recursive=True)

    @pytest.fixture
    def fs_join(self) -> Callable[..., str]:
        return lambda *parts: "/".join(parts)

    @pytest.fixture
    def fs_path(self) -> str:
        return "conformance"  # the namespace

    @pytest.fixture
    def supports_empty_directories(self) -> bool:
        return False


@pytest.fixture(scope="session")
def callers_loop() -> Iterator[asyncio.AbstractEventLoop]:
    """An event loop running in a thread of its own, as an application's would."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="callers-loop", daemon=True)
    thread.start()
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.run_until_complete(loop.shutdown_default_executor())
    loop.close()


class MemoryFixtures(_GreenRouteFixtures):
    @pytest.fixture(scope="class")
    @classmethod
    def config(cls, tmp_path_factory: pytest.TempPathFactory) -> Path:
        tag = unique_name()
        return write_config(tmp_path_factory.mktemp("memory"),
                            {b: ("memory", f"memory://{tag}/{b}", {}) for b in (GREENEST, OTHER)})


class S3Fixtures(_GreenRouteFixtures):
    @pytest.fixture(scope="class")
    @classmethod
    def config(cls, tmp_path_factory: pytest.TempPathFactory, moto_server: LocalServer, s3_admin: Any) -> Path:
        buckets = {b: unique_name() for b in (GREENEST, OTHER)}
        for bucket in buckets.values():
            s3_admin.create_bucket(Bucket=bucket)
        options = s3_storage_options(moto_server.endpoint)
        return write_config(tmp_path_factory.mktemp("s3"),
                            {b: ("s3", f"s3://{buckets[b]}", options) for b in (GREENEST, OTHER)})


class TestMemoryPipe(AbstractPipeTests, MemoryFixtures):  # type: ignore[misc]
    pass


class TestMemoryOpen(AbstractOpenTests, MemoryFixtures):  # type: ignore[misc]
    pass


class TestMemoryPut(AbstractPutTests, MemoryFixtures):  # type: ignore[misc]
    pass


class TestMemoryGet(AbstractGetTests, MemoryFixtures):  # type: ignore[misc]
    pass


class TestMemoryCopy(AbstractCopyTests, MemoryFixtures):  # type: ignore[misc]
    pass


class TestS3Pipe(AbstractPipeTests, S3Fixtures):  # type: ignore[misc]
    pass


class TestS3Open(AbstractOpenTests, S3Fixtures):  # type: ignore[misc]
    pass


class TestS3Put(AbstractPutTests, S3Fixtures):  # type: ignore[misc]
    pass


class TestS3Get(AbstractGetTests, S3Fixtures):  # type: ignore[misc]
    pass


class TestS3Copy(AbstractCopyTests, S3Fixtures):  # type: ignore[misc]
    pass


class MemoryOwnLoopFixtures(MemoryFixtures):
    own_loop = True


class S3OwnLoopFixtures(S3Fixtures):
    own_loop = True


class TestMemoryOwnLoopPipe(AbstractPipeTests, MemoryOwnLoopFixtures):  # type: ignore[misc]
    pass


class TestMemoryOwnLoopOpen(AbstractOpenTests, MemoryOwnLoopFixtures):  # type: ignore[misc]
    pass


class TestMemoryOwnLoopPut(AbstractPutTests, MemoryOwnLoopFixtures):  # type: ignore[misc]
    pass


class TestMemoryOwnLoopGet(AbstractGetTests, MemoryOwnLoopFixtures):  # type: ignore[misc]
    pass


class TestMemoryOwnLoopCopy(AbstractCopyTests, MemoryOwnLoopFixtures):  # type: ignore[misc]
    pass


class TestS3OwnLoopPipe(AbstractPipeTests, S3OwnLoopFixtures):  # type: ignore[misc]
    pass


class TestS3OwnLoopOpen(AbstractOpenTests, S3OwnLoopFixtures):  # type: ignore[misc]
    pass


class TestS3OwnLoopPut(AbstractPutTests, S3OwnLoopFixtures):  # type: ignore[misc]
    pass


class TestS3OwnLoopGet(AbstractGetTests, S3OwnLoopFixtures):  # type: ignore[misc]
    pass


class TestS3OwnLoopCopy(AbstractCopyTests, S3OwnLoopFixtures):  # type: ignore[misc]
    pass
