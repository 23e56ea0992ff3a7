"""Failover across real S3 servers: three moto servers stand in for three regions, and one dies.

The best-scoring region's server is killed once the router is running (targets built, buckets
reachable). Every one of 300 writes must then land on the other two, every acknowledged write
must be readable with correct metadata, and the failover must be recorded.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import boto3
import pytest
from tests.servers.fixtures import moto_server_factory  # noqa: F401
from tests.servers.local import MOTO_KEY, MOTO_SECRET, LocalServer, create_s3_bucket

from greenroute import GreenRouter, load_config

REGIONS = ("eu-north-1", "us-west-2", "us-east-1")  # best to worst on the embedded averages


def _config(tmp_path: Path, servers: dict[str, LocalServer]) -> Path:
    lines = ['[placement]\nsources = ["embedded"]\n', f'[catalog]\nurl = "sqlite:///{tmp_path}/catalog.db"\n',
             "[router]\nfailover_cooldown_seconds = 600\n"]
    for region, server in servers.items():
        lines.append(f"""
[[backends]]
id = "s3-{region}"
provider = "s3"
region = "{region}"
root = "s3://gr-{region}/data"
renewable_pct = 100
pue = 1.15
[backends.storage_options]
endpoint_url = "{server.endpoint}"
key = "{MOTO_KEY}"
secret = "{MOTO_SECRET}"
retries = 1
config_kwargs = {{ connect_timeout = 2, read_timeout = 5, retries = {{ max_attempts = 1, mode = "standard" }} }}
""")
    path = tmp_path / "greenroute.toml"
    path.write_text("".join(lines))
    return path


def test_300_writes_survive_a_dead_region(tmp_path: Path,
                                          moto_server_factory: Callable[[], LocalServer]) -> None:  # noqa: F811
    servers = {region: moto_server_factory() for region in REGIONS}
    for region, server in servers.items():
        create_s3_bucket(server.endpoint, f"gr-{region}")
    cfg = load_config(_config(tmp_path, servers))
    router = GreenRouter.from_config(cfg)
    assert router.placement.select_greenest_backend(None, 1).backend_id == "s3-eu-north-1"
    for backend in cfg.backends:
        router.target(backend.id)  # clients built and configured: the run has started

    servers["eu-north-1"].kill()

    results = {}
    errors: list[BaseException] = []
    lock = threading.Lock()

    def writer(n: int) -> None:
        for i in range(n, 300, 6):
            try:
                result = router.write(f"events/day-{i % 7}/event-{i:03d}.json", f'{{"i": {i}}}'.encode(),
                                      metadata={"seq": str(i)})
                with lock:
                    results[i] = result
            except BaseException as exc:
                errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    assert len(results) == 300
    landed = {r.backend_id for r in results.values()}
    assert landed == {"s3-us-west-2"}  # the next-best region took everything
    failed_over = [r for r in results.values() if r.failovers]
    assert failed_over, "the first writes to the dead region must record a failover"
    assert all(f.startswith("s3-eu-north-1: ") for r in failed_over for f in r.failovers)
    entries = {e.path: e for e in router.list("events/")}
    assert len(entries) == 300
    assert any(e.failovers for e in entries.values())
    assert router.catalog.pending() == []

    # Every acknowledged write is readable, through the router and straight from the bucket.
    direct = boto3.client("s3", endpoint_url=servers["us-west-2"].endpoint, aws_access_key_id=MOTO_KEY,
                          aws_secret_access_key=MOTO_SECRET, region_name="us-east-1")
    try:
        for i, result in results.items():
            path = f"events/day-{i % 7}/event-{i:03d}.json"
            assert router.read(path) == f'{{"i": {i}}}'.encode()
            head = direct.head_object(Bucket="gr-us-west-2", Key=f"data/{path}")
            md = head["Metadata"]
            assert md["seq"] == str(i)
            assert md["greenroute_backend"] == "s3-us-west-2"
            assert md["greenroute_path"] == path
            assert md["greenroute_decision"] == result.decision.decision_id
            assert float(md["greenroute_gco2e"]) == pytest.approx(result.write_gco2e, rel=1e-5)
        listed = direct.list_objects_v2(Bucket="gr-us-west-2", Prefix="data/events/")
        assert listed["KeyCount"] == 300
    finally:
        direct.close()
    router.close()
