"""greenroute:// test setup: a greenroute.toml in tmp_path over memory, local-directory or moto S3 backends.

Every configuration has two backends. ``north`` (eu-north-1, 100 % renewable, PUE 1.1) is the greenest,
so unhinted writes land there; ``virginia`` (us-east-1, PUE 1.3) is reached with ``candidates``. The
catalog is SQLite in tmp_path and placement uses embedded grid data only, so nothing leaves the machine.
"""

from __future__ import annotations

import importlib
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from tests.servers.fixtures import azurite_server, moto_server, require_integration  # noqa: F401
from tests.servers.local import MOTO_KEY, MOTO_SECRET, LocalServer, s3_storage_options

from greenroute.adapters.fsspec.filesystem import close_routers

GREENEST = "north"
OTHER = "virginia"
_FIGURES = {GREENEST: {"region": "eu-north-1", "pue": 1.1, "renewable_pct": 100.0},
            OTHER: {"region": "us-east-1", "pue": 1.3, "renewable_pct": 0.0}}


def unique_name() -> str:
    """A fresh bucket or memory-root name (valid for S3, GCS and Azure)."""
    return f"gr-{uuid.uuid4().hex[:16]}"


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    raise TypeError(type(value))


def write_config(folder: Path, roots: Mapping[str, tuple[str, str, Mapping[str, Any]]]) -> Path:
    """Write ``folder/greenroute.toml`` with one backend per ``id: (provider, root, storage_options)``."""
    lines = ["[placement]", 'sources = ["embedded"]', "", "[catalog]",
             f"url = {_toml('sqlite:///' + str(folder / 'catalog.db'))}", ""]
    for backend_id, (provider, root, options) in roots.items():
        lines += ["[[backends]]", f"id = {_toml(backend_id)}", f"provider = {_toml(provider)}",
                  f"root = {_toml(root)}"]
        lines += [f"{k} = {_toml(v)}" for k, v in _FIGURES[backend_id].items()]
        if options:
            lines.append(f"storage_options = {_toml(dict(options))}")
        lines.append("")
    path = folder / "greenroute.toml"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


@dataclass(frozen=True)
class S3Setup:
    """A configuration over two moto buckets."""

    config: Path
    buckets: dict[str, str]
    endpoint: str

    def client(self) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=MOTO_KEY,
                            aws_secret_access_key=MOTO_SECRET, region_name="us-east-1")


@pytest.fixture(autouse=True)
def _fresh_routers() -> Iterator[None]:
    """Each test's routers (and their SQLite catalogs) are closed after it."""
    yield
    close_routers()


@pytest.fixture
def memory_config(tmp_path: Path) -> Path:
    """Two in-memory backends under fresh roots."""
    tag = unique_name()
    return write_config(tmp_path, {b: ("memory", f"memory://{tag}/{b}", {}) for b in (GREENEST, OTHER)})


@pytest.fixture
def file_config(tmp_path: Path) -> Path:
    """Two local-directory backends in tmp_path."""
    return write_config(tmp_path, {b: ("file", (tmp_path / b).as_uri(), {}) for b in (GREENEST, OTHER)})


@pytest.fixture(scope="session")
def s3_admin(request: pytest.FixtureRequest) -> Iterator[Any]:
    """One boto3 client for the session's moto server (making a client costs more than a request)."""
    import boto3

    server: LocalServer = request.getfixturevalue("moto_server")
    client = boto3.client("s3", endpoint_url=server.endpoint, aws_access_key_id=MOTO_KEY,
                          aws_secret_access_key=MOTO_SECRET, region_name="us-east-1")
    yield client
    client.close()


@pytest.fixture
def s3_setup(tmp_path: Path, request: pytest.FixtureRequest, s3_admin: Any) -> S3Setup:
    """Two fresh moto buckets, one per backend."""
    server: LocalServer = request.getfixturevalue("moto_server")
    buckets = {b: unique_name() for b in (GREENEST, OTHER)}
    for bucket in buckets.values():
        s3_admin.create_bucket(Bucket=bucket)
    options = s3_storage_options(server.endpoint)
    config = write_config(tmp_path, {b: ("s3", f"s3://{buckets[b]}", options) for b in (GREENEST, OTHER)})
    return S3Setup(config, buckets, server.endpoint)


@pytest.fixture
def require_module() -> Callable[[str], ModuleType]:
    """Import an optional library, or skip saying why (fail instead with GREENROUTE_REQUIRE_INTEGRATION=1)."""

    def load(name: str) -> ModuleType:
        try:
            return importlib.import_module(name)
        except ImportError as exc:
            reason = f"{name} is not installed ({exc}); pip install it to run this round trip"
            if require_integration():
                pytest.fail(reason + " (GREENROUTE_REQUIRE_INTEGRATION=1)")
            print(reason)
            pytest.skip(reason)

    return load
