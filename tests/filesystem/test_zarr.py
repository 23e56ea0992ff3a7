"""Zarr v3 and xarray through greenroute:// over two moto S3 backends, checked against the buckets.

zarr's ``FsspecStore`` accepts only an async filesystem and drives it from zarr's own event loop
(``asynchronous=True``): every chunk is one ``_pipe_file``/``_cat_file``. After each round trip every
object in the buckets is looked up with boto3: it must carry greenroute's metadata, and the catalog
must hold exactly those objects, each with the decision its object carries.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from tests.filesystem.conftest import GREENEST, S3Setup

from greenroute.adapters.fsspec.filesystem import GreenRouteFileSystem

Loader = Callable[[str], ModuleType]


def assert_catalogued_with_metadata(setup: S3Setup, s3_admin: Any, prefix: str) -> set[str]:
    """Every object under ``prefix`` in the buckets is greenroute's and in the catalog, and nothing else is."""
    fs = GreenRouteFileSystem(config=str(setup.config))
    entries = {e.path: e for e in fs.router.list(prefix)}
    found: set[str] = set()
    for backend, bucket in setup.buckets.items():
        for item in s3_admin.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", []):
            key = item["Key"]
            metadata = s3_admin.head_object(Bucket=bucket, Key=key)["Metadata"]
            assert metadata["greenroute_path"] == key and metadata["greenroute_backend"] == backend
            assert float(metadata["greenroute_gco2e"]) > 0
            assert key in entries, f"{key} is not in the catalog"
            assert entries[key].decision_id == metadata["greenroute_decision"]
            assert entries[key].backend_id == backend and entries[key].size == item["Size"]
            found.add(key)
    assert found == set(entries)
    return found


def test_zarr_v3_array_of_64_chunks_round_trips(s3_setup: S3Setup, s3_admin: Any, tmp_path: Path,
                                               require_module: Loader) -> None:
    zarr = require_module("zarr")
    np = require_module("numpy")
    url = "greenroute://lake/cube.zarr"
    store = zarr.storage.FsspecStore.from_url(url, storage_options={"config": str(s3_setup.config)})
    assert isinstance(store.fs, GreenRouteFileSystem) and store.fs.asynchronous
    data = np.random.default_rng(7).normal(size=(80, 96)).astype("float32")
    array = zarr.create_array(store, shape=data.shape, chunks=(10, 12), dtype="float32",
                              attributes={"units": "K"})
    assert array.nchunks == 64
    array[:] = data

    dump = tmp_path / "read.npy"
    code = (
        "import sys, numpy, zarr\n"
        "store = zarr.storage.FsspecStore.from_url(sys.argv[1], storage_options={'config': sys.argv[2]},"
        " read_only=True)\n"
        "array = zarr.open_array(store, mode='r')\n"
        "assert array.attrs['units'] == 'K', array.attrs\n"
        "numpy.save(sys.argv[3], array[:])\n"
    )
    subprocess.run([sys.executable, "-c", code, url, str(s3_setup.config), str(dump)], check=True, cwd=tmp_path,
                   capture_output=True, text=True, timeout=300)
    assert np.array_equal(np.load(dump), data)

    keys = assert_catalogued_with_metadata(s3_setup, s3_admin, "lake/cube.zarr/")
    chunks = {k for k in keys if k.startswith("lake/cube.zarr/c/")}
    assert len(chunks) == 64 and "lake/cube.zarr/zarr.json" in keys
    listed = s3_admin.list_objects_v2(Bucket=s3_setup.buckets[GREENEST], Prefix="lake/cube.zarr/c/")
    assert listed["KeyCount"] == 64  # unhinted writes go to the greenest backend


def test_xarray_to_zarr_and_open_zarr(s3_setup: S3Setup, s3_admin: Any, require_module: Loader) -> None:
    xr = require_module("xarray")
    np = require_module("numpy")
    pd = require_module("pandas")
    url = "greenroute://lake/weather.zarr"
    options = {"config": str(s3_setup.config), "metadata": {"team": "climate"}}
    rng = np.random.default_rng(3)
    ds = xr.Dataset(
        {"temperature": (("time", "station"), rng.normal(15, 5, size=(24, 10))),
         "rain": (("time", "station"), rng.gamma(1.0, 2.0, size=(24, 10)).astype("float32"))},
        coords={"time": pd.date_range("2026-11-01", periods=24, freq="h"), "station": np.arange(10)},
        attrs={"source": "greenroute test"},
    )
    encoding = {"temperature": {"chunks": (6, 5)}, "rain": {"chunks": (12, 10)}}
    ds.to_zarr(url, storage_options=options, zarr_format=3, consolidated=False, encoding=encoding)
    back = xr.open_zarr(url, storage_options={"config": str(s3_setup.config)}, consolidated=False)
    xr.testing.assert_identical(back.load(), ds)

    keys = assert_catalogued_with_metadata(s3_setup, s3_admin, "lake/weather.zarr/")
    assert sum(k.startswith("lake/weather.zarr/temperature/c/") for k in keys) == 8
    head = s3_admin.head_object(Bucket=s3_setup.buckets[GREENEST], Key="lake/weather.zarr/rain/c/0/0")
    assert head["Metadata"]["team"] == "climate"
