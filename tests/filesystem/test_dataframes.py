"""Data tools through greenroute://, against real local servers, checked against the raw backends.

``north`` is a moto S3 bucket (the greenest backend: unhinted writes land there) and ``virginia`` an
Azurite container (reached with ``candidates``). After each round trip the object is looked up with
boto3 or azure-storage-blob directly: it must be where placement said, with greenroute's metadata
and the caller's. A missing library skips its test with the reason printed (or fails it with
``GREENROUTE_REQUIRE_INTEGRATION=1``).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import fsspec
import pytest
from tests.filesystem.conftest import GREENEST, OTHER, unique_name, write_config
from tests.servers.local import (
    LocalServer,
    azure_connection_string,
    azure_storage_options,
    create_azure_container,
    s3_storage_options,
)

from greenroute.adapters.fsspec.filesystem import GreenRouteFileSystem

Loader = Callable[[str], ModuleType]


@dataclass(frozen=True)
class Lake:
    """A greenroute.toml over one moto bucket (``north``) and one Azurite container (``virginia``)."""

    config: Path
    bucket: str
    container: str
    s3: Any
    azure: Any

    def stored(self, path: str) -> tuple[str, bytes, dict[str, str]]:
        """Where ``path`` really is, its bytes and its metadata, asked of the backends themselves."""
        try:
            head = self.s3.head_object(Bucket=self.bucket, Key=path)
        except self.s3.exceptions.ClientError:
            blob = self.azure.get_blob_client(self.container, path)
            return OTHER, blob.download_blob().readall(), dict(blob.get_blob_properties().metadata)
        body = self.s3.get_object(Bucket=self.bucket, Key=path)["Body"].read()
        return GREENEST, body, dict(head["Metadata"])

    def options(self, **hints: Any) -> dict[str, Any]:
        return {"config": str(self.config), **hints}


@pytest.fixture
def lake(tmp_path: Path, s3_admin: Any, moto_server: LocalServer, azurite_server: LocalServer) -> Iterator[Lake]:
    from azure.storage.blob import BlobServiceClient

    bucket, container = unique_name(), unique_name()
    s3_admin.create_bucket(Bucket=bucket)
    create_azure_container(azurite_server.endpoint, container)
    config = write_config(tmp_path, {
        GREENEST: ("s3", f"s3://{bucket}", s3_storage_options(moto_server.endpoint)),
        OTHER: ("azure", f"az://{container}", azure_storage_options(azurite_server.endpoint)),
    })
    with BlobServiceClient.from_connection_string(azure_connection_string(azurite_server.endpoint)) as azure:
        yield Lake(config, bucket, container, s3_admin, azure)


def assert_landed(lake: Lake, path: str, backend_id: str, **user: str) -> bytes:
    """Check ``path`` is on ``backend_id`` with greenroute's metadata and ``user``'s; return its bytes."""
    where, data, metadata = lake.stored(path)
    info = GreenRouteFileSystem(config=str(lake.config)).info(path)
    assert where == backend_id == info["greenroute_backend"] == metadata["greenroute_backend"]
    assert metadata["greenroute_path"] == path and metadata["greenroute_decision"] == info["greenroute_decision"]
    assert float(metadata["greenroute_gco2e"]) == pytest.approx(info["greenroute_gco2e"], rel=1e-5)
    assert info["greenroute_gco2e"] > 0
    assert len(data) == info["size"]
    for key, value in user.items():
        assert metadata[key] == value
    return data


def test_pandas_csv_round_trip(lake: Lake, require_module: Loader, monkeypatch: pytest.MonkeyPatch) -> None:
    pd = require_module("pandas")
    df = pd.DataFrame({"region": ["eu-north-1", "us-east-1"], "kwh": [1.5, 2.25]})
    df.to_csv("greenroute://lake/sales/2026-11.csv", index=False,
              storage_options=lake.options(metadata={"team": "sales"}))
    data = assert_landed(lake, "lake/sales/2026-11.csv", GREENEST, team="sales")
    assert data.decode().splitlines()[0] == "region,kwh"
    monkeypatch.setenv("GREENROUTE_CONFIG", str(lake.config))  # the one-line change: just the URL
    pd.testing.assert_frame_equal(pd.read_csv("greenroute://lake/sales/2026-11.csv"), df)


def test_pandas_parquet_round_trip(lake: Lake, require_module: Loader) -> None:
    pd = require_module("pandas")
    require_module("pyarrow")
    df = pd.DataFrame({"n": range(1000), "label": [f"row{i}" for i in range(1000)]})
    df.to_parquet("greenroute://lake/sales/2026-11.parquet",
                  storage_options=lake.options(candidates=[OTHER], metadata={"team": "sales"}))
    data = assert_landed(lake, "lake/sales/2026-11.parquet", OTHER, team="sales")
    assert data[:4] == b"PAR1"
    back = pd.read_parquet("greenroute://lake/sales/2026-11.parquet", storage_options=lake.options())
    pd.testing.assert_frame_equal(back, df)


def test_pyarrow_write_and_read_table(lake: Lake, require_module: Loader) -> None:
    pa = require_module("pyarrow")
    pq = require_module("pyarrow.parquet")
    table = pa.table({"x": list(range(500)), "y": [i * 0.5 for i in range(500)]})
    fs = GreenRouteFileSystem(config=str(lake.config), metadata={"source": "pyarrow"})
    pq.write_table(table, "lake/arrow/t.parquet", filesystem=fs)
    assert_landed(lake, "lake/arrow/t.parquet", GREENEST, source="pyarrow")
    assert pq.read_table("greenroute://lake/arrow/t.parquet", filesystem=fs).equals(table)
    dataset = pq.read_table("lake/arrow", filesystem=fs)  # a directory, listed through the catalog
    assert dataset.num_rows == 500


def test_polars_write_and_read_parquet(lake: Lake, require_module: Loader) -> None:
    pl = require_module("polars")
    require_module("pyarrow")
    df = pl.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]})
    url = "greenroute://lake/polars/df.parquet"
    with fsspec.open(url, "wb", **lake.options(candidates=[OTHER], metadata={"source": "polars"})) as f:
        df.write_parquet(f)
    assert_landed(lake, "lake/polars/df.parquet", OTHER, source="polars")
    assert pl.read_parquet(url, use_pyarrow=True, storage_options=lake.options()).equals(df)
    with fsspec.open(url, "rb", **lake.options()) as f:
        assert pl.read_parquet(f).equals(df)


def test_duckdb_reads_parquet_through_a_registered_filesystem(lake: Lake, require_module: Loader) -> None:
    duckdb = require_module("duckdb")
    pa = require_module("pyarrow")
    pq = require_module("pyarrow.parquet")
    fs = GreenRouteFileSystem(config=str(lake.config))
    for month, backend in ((10, GREENEST), (11, OTHER)):
        buffer = io.BytesIO()
        pq.write_table(pa.table({"month": [month] * 3, "kwh": [1.0, 2.0, 3.0]}), buffer)
        fs.pipe_file(f"lake/duck/{month}.parquet", buffer.getvalue(), candidates=[backend])
        assert_landed(lake, f"lake/duck/{month}.parquet", backend)
    connection = duckdb.connect()
    try:
        connection.register_filesystem(fs)
        rows = connection.sql("SELECT month, sum(kwh) FROM read_parquet('greenroute://lake/duck/*.parquet') "
                              "GROUP BY month ORDER BY month").fetchall()
    finally:
        connection.close()
    assert rows == [(10, 6.0), (11, 6.0)]  # one file from each backend, found by a glob over the catalog
