"""Storage targets for the contract tests: one fresh bucket, container or prefix per test."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

import pytest
from tests.servers.fixtures import azurite_server, gcs_server, moto_server, moto_server_factory  # noqa: F401
from tests.servers.local import (
    LocalServer,
    azure_storage_options,
    closed_port,
    create_azure_container,
    create_gcs_bucket,
    create_s3_bucket,
    gcs_storage_options,
    s3_storage_options,
)

from greenroute.adapters.storage import azure, file, gcs, memory, s3
from greenroute.adapters.storage._fsspec_target import FsspecTarget
from greenroute.model import Backend, Provider

LOCAL_KINDS = ("memory", "file-xattr", "file-sidecar")
CLOUD_KINDS = ("s3", "gcs", "azure")
KINDS = LOCAL_KINDS + CLOUD_KINDS

_SERVERS = {"s3": "moto_server", "gcs": "gcs_server", "azure": "azurite_server"}
_FACTORIES: dict[str, Callable[[Backend], FsspecTarget]] = {
    "memory": memory.from_backend, "file": file.from_backend, "s3": s3.from_backend, "gcs": gcs.from_backend,
    "azure": azure.from_backend,
}
_PROVIDERS = {"memory": Provider.MEMORY, "file": Provider.FILE, "s3": Provider.S3, "gcs": Provider.GCS,
              "azure": Provider.AZURE}
_OPTIONS = {"s3": s3_storage_options, "gcs": gcs_storage_options, "azure": azure_storage_options}
_SCHEMES = {"s3": "s3", "gcs": "gs", "azure": "az"}
_CREATE = {"s3": create_s3_bucket, "gcs": create_gcs_bucket, "azure": create_azure_container}


def unique_name() -> str:
    """A fresh bucket/container name (lowercase, 3-63 characters, valid everywhere)."""
    return f"gr-{uuid.uuid4().hex[:16]}"


def make_backend(kind: str, root: str, storage_options: Mapping[str, Any] | None = None) -> Backend:
    provider = kind.split("-", maxsplit=1)[0]
    return Backend(id=f"{kind}-test", provider=_PROVIDERS[provider], region="test", root=root, pue=1.1,
                   storage_options=MappingProxyType(dict(storage_options or {})))


def build_target(kind: str, root: str, storage_options: Mapping[str, Any] | None = None) -> FsspecTarget:
    return _FACTORIES[kind.split("-", maxsplit=1)[0]](make_backend(kind, root, storage_options))


def cloud_target(kind: str, endpoint: str, *, bucket: str | None = None, create: bool = True,
                 retries: int | None = None) -> FsspecTarget:
    """A target on the server at ``endpoint``, in a new bucket (or ``bucket``) under ``pre/fix``."""
    name = bucket or unique_name()
    if create:
        _CREATE[kind](endpoint, name)
    return build_target(kind, f"{_SCHEMES[kind]}://{name}/pre/fix", _OPTIONS[kind](endpoint, retries=retries))


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def server_for(request: pytest.FixtureRequest) -> Callable[[str], LocalServer]:
    """The session's server for a cloud kind (started on first use; skips when unavailable)."""

    def get(kind: str) -> LocalServer:
        server: LocalServer = request.getfixturevalue(_SERVERS[kind])
        return server

    return get


@pytest.fixture
def target(kind: str, tmp_path: Any, server_for: Callable[[str], LocalServer]) -> FsspecTarget:
    """A fresh, empty target of ``kind``."""
    if kind == "memory":
        return build_target(kind, f"memory://{unique_name()}/pre/fix")
    if kind.startswith("file"):
        store = kind.split("-")[1]
        return build_target(kind, (tmp_path / "root").as_uri(), {"metadata_store": store})
    return cloud_target(kind, server_for(kind).endpoint)


@pytest.fixture
def unreachable_target() -> Callable[[str], FsspecTarget]:
    """A cloud target whose endpoint is a closed loopback port, with one attempt per call."""

    def make(kind: str) -> FsspecTarget:
        endpoint = f"http://127.0.0.1:{closed_port()}"
        return cloud_target(kind, endpoint, bucket="gr-unreachable", create=False, retries=1)

    return make
