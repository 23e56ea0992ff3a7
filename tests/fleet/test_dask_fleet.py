"""Proof of a fleet (1): a Dask cluster of three worker processes writes one parquet dataset.

``distributed.LocalCluster`` starts three worker processes; each opens its own ``greenroute://``
filesystem, router and PostgreSQL connections from one ``greenroute.toml``. ``dd.to_parquet`` writes a
dataset partitioned by ``region`` (12 partitions x 3 regions = 36 files) over two moto S3 backends.
A fresh Python process then reads it back with ``dd.read_parquet`` and lists it through
``greenroute://``. The row counts must match, every file must be in the catalog exactly once, and each
object must carry greenroute's metadata for that very entry on its backend.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from tests.servers.fixtures import require_integration

from .conftest import REPO, Fleet, live_duplicates

ROWS = 12_000
PARTITIONS = 12
REGIONS = ("eu", "us", "ap")

_READ_BACK = """
import json, sys
import dask.dataframe as dd
import fsspec
config = sys.argv[1]
df = dd.read_parquet("greenroute://lake/events", storage_options={"config": config})
fs = fsspec.filesystem("greenroute", config=config)
files = sorted(p for p in fs.find("lake/events") if p.endswith(".parquet"))
# len(df) reads the parquet footers' statistics (fs.open(path, default_cache="none")); the partitions' own
# row counts read the data itself: both must agree.
rows = int(df.map_partitions(len).compute().sum())
assert len(df) == rows, (len(df), rows)
print(json.dumps({"rows": rows, "by_region": {str(k): int(v) for k, v in
                  df.groupby("region", observed=True).size().compute().items()},
                  "total": int(df["amount"].sum().compute()), "files": files}))
"""


def _require(name: str) -> None:
    try:
        __import__(name)
    except ImportError as exc:
        reason = f"{name} is not installed ({exc}); pip install 'dask[dataframe,distributed]'"
        if require_integration():
            pytest.fail(reason + " (GREENROUTE_REQUIRE_INTEGRATION=1)")
        print(reason)
        pytest.skip(reason)


def test_three_dask_workers_write_one_dataset_into_one_catalog(fleet: Fleet) -> None:
    _require("distributed")
    import dask.dataframe as dd
    import pandas as pd
    from distributed import Client, LocalCluster, get_task_stream

    config = fleet.config()
    frame = pd.DataFrame({"event": range(ROWS), "region": [REGIONS[i % 3] for i in range(ROWS)],
                          "amount": [i % 97 for i in range(ROWS)]})
    with LocalCluster(n_workers=3, threads_per_worker=1, processes=True, dashboard_address=None,
                      worker_dashboard_address=None) as cluster, Client(cluster) as client:
        workers = client.run(lambda: __import__("os").getpid())
        assert len(set(workers.values())) == 3
        with get_task_stream(client) as stream:
            dd.from_pandas(frame, npartitions=PARTITIONS).to_parquet(
                "greenroute://lake/events", partition_on=["region"], write_index=False,
                storage_options={"config": str(config)})
        writers = {t["worker"] for t in stream.data if "toparquetdata" in str(t["key"])}
        assert len(writers) >= 2, writers  # the files came from several processes

    done = subprocess.run([sys.executable, "-c", _READ_BACK, str(config)], capture_output=True, text=True,
                          timeout=300, cwd=REPO, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    back = json.loads(done.stdout.strip().splitlines()[-1])
    assert back["rows"] == ROWS
    assert back["by_region"] == {r: ROWS // 3 for r in REGIONS}
    assert back["total"] == int(frame["amount"].sum())
    files = back["files"]
    assert len(files) >= 30

    catalog = fleet.catalog()
    try:
        entries = catalog.list("lake/events/")
        assert sorted(e.path for e in entries) == files  # every file catalogued, nothing else
        assert catalog.pending() == []
        assert live_duplicates(fleet) == []
        history = list(catalog.history("lake/events/"))
        assert len(history) == len(files)  # each file written once: no closed duplicates either
    finally:
        catalog.close()
    stored = fleet.stored()
    assert {path for _, path in stored} == set(files)
    for entry in entries:
        metadata = fleet.head(entry.url)
        assert metadata["greenroute_decision"] == entry.decision_id
        assert metadata["greenroute_path"] == entry.path
        assert metadata["greenroute_backend"] == entry.backend_id
        assert float(metadata["greenroute_gco2e"]) == pytest.approx(entry.write_gco2e, rel=1e-5)
        assert stored[(entry.backend_id, entry.path)]["size"] == entry.size
