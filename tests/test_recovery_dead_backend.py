"""Recovery with a backend down: reindex, fsck and probe work on every reachable backend and keep the rest.

Three moto servers and Azurite hold 60 objects, 20 of them on one moto server that is then killed
(rclone union's "one upstream down breaks the mount", which greenroute must not repeat).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tests.servers.fixtures import azurite_server, moto_server_factory  # noqa: F401
from tests.servers.local import (
    LocalServer,
    azure_storage_options,
    closed_port,
    create_azure_container,
    create_s3_bucket,
    s3_storage_options,
)

from greenroute import Backend, GreenPlacementService, GreenRouter, Provider
from greenroute.adapters.catalog.sqlite import SqliteCatalog
from greenroute.cli import main

DEAD = "s3-dead"


@pytest.fixture
def fleet(tmp_path: Path, moto_server_factory: Callable[[], LocalServer],  # noqa: F811
          azurite_server: LocalServer) -> Iterator[tuple[GreenRouter, LocalServer, dict[str, list[str]]]]:  # noqa: F811
    servers = {DEAD: moto_server_factory(), "s3-one": moto_server_factory(), "s3-two": moto_server_factory()}
    backends = []
    for (name, server), region in zip(servers.items(), ("eu-north-1", "us-west-2", "us-east-1"), strict=True):
        bucket = f"gr-{name}-{uuid.uuid4().hex[:8]}"
        create_s3_bucket(server.endpoint, bucket)
        backends.append(Backend(id=name, provider=Provider.S3, region=region, root=f"s3://{bucket}/data", pue=1.15,
                                storage_options=s3_storage_options(server.endpoint, retries=1)))
    container = f"gr-az-{uuid.uuid4().hex[:8]}"
    create_azure_container(azurite_server.endpoint, container)
    backends.append(Backend(id="azure", provider=Provider.AZURE, region="westeurope", root=f"az://{container}/data",
                            pue=1.18, storage_options=azure_storage_options(azurite_server.endpoint, retries=1)))
    router = GreenRouter(GreenPlacementService(backends), SqliteCatalog(tmp_path / "catalog.db"))
    placed: dict[str, list[str]] = {b.id: [] for b in backends}
    live = ["s3-one", "s3-two", "azure"]
    for i in range(60):
        backend = DEAD if i < 20 else live[i % 3]
        path = f"ns/{backend}/obj-{i:02d}"
        assert router.write(path, f"object {i}".encode(), candidates=[backend]).backend_id == backend
        placed[backend].append(path)
    yield router, servers[DEAD], placed
    router.close()


def test_reindex_rebuilds_every_reachable_backend_and_keeps_the_dead_ones_entries(
        fleet: tuple[GreenRouter, LocalServer, dict[str, list[str]]]) -> None:
    router, dead, placed = fleet
    before = {e.path: e for e in router.list()}
    dead.kill()
    report = router.reindex()
    assert list(report.unreachable) == [DEAD]
    assert report.entries == 40 and report.kept == [] and report.foreign == []
    after = {e.path: e for e in router.list()}
    assert after.keys() == before.keys() and len(after) == 60
    for path in placed[DEAD]:
        assert after[path] == before[path]  # untouched, not dropped
    for backend in ("s3-one", "s3-two", "azure"):
        for path in placed[backend]:
            assert (after[path].backend_id, after[path].decision_id) == (backend, before[path].decision_id)
            assert router.read(path).startswith(b"object ")


def test_reindex_of_a_wiped_catalog_rebuilds_the_reachable_40_and_reports_the_dead_backend(
        fleet: tuple[GreenRouter, LocalServer, dict[str, list[str]]]) -> None:
    router, dead, placed = fleet
    dead.kill()
    router.catalog.clear()
    report = router.reindex()
    assert report.entries == 40 and list(report.unreachable) == [DEAD]
    assert report.unreachable[DEAD].startswith(f"{DEAD}: ")  # says which backend and why
    assert sorted(e.path for e in router.list()) == sorted(p for b, ps in placed.items() if b != DEAD for p in ps)


def test_fsck_and_probe_carry_on_past_a_dead_backend(
        fleet: tuple[GreenRouter, LocalServer, dict[str, list[str]]], tmp_path: Path) -> None:
    router, dead, _ = fleet
    # Two writes whose commits never reached this catalog (as after a crash): their objects describe themselves.
    elsewhere = GreenRouter(router.placement, SqliteCatalog(tmp_path / "other.db"))
    crashed = elsewhere.write("ns/crashed/a", b"stored, never committed here", candidates=["azure"])
    probed = elsewhere.write("ns/crashed/b", b"found on demand", candidates=["s3-one"])
    elsewhere.catalog.close()
    dead.kill()
    entry = router.probe("ns/crashed/b")
    assert entry is not None and (entry.backend_id, entry.decision_id) == ("s3-one", probed.decision.decision_id)
    report = router.fsck(older_than_seconds=0)
    assert list(report.unreachable) == [DEAD]
    assert report.committed == ["ns/crashed/a"]  # the live backends' crashed writes are still resolved
    assert router.lookup("ns/crashed/a").decision_id == crashed.decision.decision_id  # type: ignore[union-attr]
    assert router.read("ns/crashed/a") == b"stored, never committed here"


def test_the_cli_reports_the_dead_backend_and_fails_only_when_strict(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "greenroute.toml"
    config.write_text(f"""
[placement]
sources = ["embedded"]
[catalog]
url = "sqlite:///{tmp_path}/catalog.db"
[[backends]]
id = "disk"
provider = "file"
region = "eu-north-1"
root = "{(tmp_path / 'disk').as_uri()}"
[[backends]]
id = "gone"
provider = "s3"
region = "us-west-2"
root = "s3://gr-gone/data"
[backends.storage_options]
endpoint_url = "http://127.0.0.1:{closed_port()}"
key = "k"
secret = "s"
retries = 1
""")
    with GreenRouter.from_config(config) as router:
        router.write("ns/kept", b"on disk", candidates=["disk"])
    for command in ("reindex", "fsck"):
        assert main([command, "--config", str(config)]) == 0
        assert "skipped gone" in capsys.readouterr().out
        assert main([command, "--config", str(config), "--strict"]) == 2
        capsys.readouterr()
        assert main([command, "--config", str(config), "--json"]) == 0
        assert list(json.loads(capsys.readouterr().out)["unreachable"]) == ["gone"]
    with GreenRouter.from_config(config) as router:
        assert router.read("ns/kept") == b"on disk"
