"""fsspec's own abstract test suites, run against greenroute:// (as s3fs runs them against s3://).

The fixtures mixin gives the suites a greenroute:// over two memory backends, and again over two moto
S3 buckets. ``supports_empty_directories`` is ``False``: directories are implied by the catalog's
paths, as on any object store. Every case runs; none needs skipping.
"""

from __future__ import annotations

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

    @pytest.fixture(scope="class")
    @classmethod
    def router(cls, config: Path) -> Iterator[GreenRouter]:
        with GreenRouter.from_config(config) as router:
            yield router

    @pytest.fixture
    def fs(self, router: GreenRouter) -> Iterator[GreenRouteFileSystem]:
        fs = GreenRouteFileSystem(router=router)
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
