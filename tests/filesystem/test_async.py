"""The async greenroute://: coroutines, concurrency of bulk calls, exclusive creates, failover under a pipe.

Concurrency is proven without timing anything: a :class:`CountingProxy` between the filesystem and
moto counts requests in flight, and its gate holds requests until N are in flight at once, which
only a concurrent client can reach. Which thread runs the catalog and placement is observed through
a catalog subclass and the event bus, never by replacing greenroute's own functions.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest
from tests.filesystem.conftest import GREENEST, OTHER, unique_name, write_config
from tests.filesystem.proxy import CountingProxy
from tests.servers.fixtures import gcs_server, moto_server_factory  # noqa: F401
from tests.servers.local import (
    MOTO_KEY,
    MOTO_SECRET,
    LocalServer,
    azure_storage_options,
    create_azure_container,
    create_gcs_bucket,
    create_s3_bucket,
    gcs_storage_options,
    s3_storage_options,
)

from greenroute import GreenRouter, load_config
from greenroute.adapters.catalog.sqlite import SqliteCatalog
from greenroute.adapters.fsspec.filesystem import GreenRouteAsyncReadFile, GreenRouteFileSystem
from greenroute.events import PLACEMENT_DECISION


def s3_config(tmp_path: Path, s3_admin: Any, endpoint: str) -> tuple[Path, dict[str, str]]:
    """Two fresh moto buckets reached through ``endpoint`` (a proxy in front of moto)."""
    buckets = {b: unique_name() for b in (GREENEST, OTHER)}
    for bucket in buckets.values():
        s3_admin.create_bucket(Bucket=bucket)
    config = write_config(tmp_path, {b: ("s3", f"s3://{buckets[b]}", s3_storage_options(endpoint))
                                     for b in (GREENEST, OTHER)})
    return config, buckets


def payloads(n: int, prefix: str = "lake/many") -> dict[str, bytes]:
    return {f"{prefix}/{i:03d}.bin": os.urandom(1000 + i) for i in range(n)}


# -- the coroutines, asynchronous=True --------------------------------------------------------


def test_coroutines_round_trip_from_an_event_loop(memory_config: Path, tmp_path: Path) -> None:
    local = tmp_path / "up.bin"
    local.write_bytes(b"uploaded " * 100)

    async def main() -> None:
        fs = GreenRouteFileSystem(config=str(memory_config), asynchronous=True, metadata={"team": "data"})
        assert fs.asynchronous and fs.async_impl
        await fs._pipe_file("greenroute://lake/a/1.bin", bytes(range(256)))
        await fs._pipe_file("lake/a/b/2.bin", b"22", candidates=[OTHER])
        await fs._put_file(str(local), "lake/up.bin")
        assert await fs._cat_file("lake/a/1.bin", start=10, end=13) == bytes([10, 11, 12])
        assert await fs._cat_file("lake/a/1.bin", start=-2) == bytes([254, 255])
        assert await fs._cat_ranges(["lake/a/1.bin", "lake/a/b/2.bin"], [0, 1], [2, 2]) == [b"\x00\x01", b"2"]
        info = await fs._info("lake/a/b/2.bin")
        assert info["greenroute_backend"] == OTHER and info["size"] == 2
        assert info == fs.info("lake/a/b/2.bin")  # the blocking method says the same
        assert (await fs._info("lake/up.bin"))["size"] == 900
        assert await fs._ls("lake/a", detail=False) == ["lake/a/1.bin", "lake/a/b"]
        assert await fs._find("lake") == ["lake/a/1.bin", "lake/a/b/2.bin", "lake/up.bin"]
        assert [d async for d, _, _ in fs._walk("lake")] == ["lake", "lake/a", "lake/a/b"]
        assert await fs._du("lake") == 256 + 2 + 900
        assert await fs._isdir("lake/a") and await fs._isfile("lake/up.bin") and not await fs._exists("lake/zz")
        with pytest.raises(FileExistsError):
            await fs._makedirs("lake/a")
        with pytest.raises(FileNotFoundError):
            await fs._cat_file("lake/missing")
        with pytest.raises(IsADirectoryError):
            await fs._cat_file("lake/a")
        await fs._cp_file("lake/a/1.bin", "lake/copy.bin", candidates=[OTHER])
        assert (await fs._info("lake/copy.bin"))["greenroute_backend"] == OTHER
        await fs._get_file("lake/copy.bin", str(tmp_path / "down.bin"))
        assert (tmp_path / "down.bin").read_bytes() == bytes(range(256))
        f = await fs.open_async("lake/a/1.bin")
        assert isinstance(f, GreenRouteAsyncReadFile) and f.size == 256
        assert await f.read(4) == bytes(range(4))
        f.seek(250)
        assert await f.read() == bytes(range(250, 256)) and f.tell() == 256
        await f.close()
        with pytest.raises(NotImplementedError):
            await fs.open_async("lake/new.bin", "wb")
        await fs._rm_file("lake/copy.bin")
        with pytest.raises(IsADirectoryError):
            await fs._rm("lake/a")
        await fs._rm("lake/a", recursive=True)
        assert await fs._find("lake") == ["lake/up.bin"]
        entry = fs.router.lookup("lake/up.bin")
        assert entry is not None
        metadata = fs.router.target(entry.backend_id).stat("lake/up.bin").metadata
        assert metadata["team"] == "data" and metadata["greenroute_decision"] == entry.decision_id

    asyncio.run(main())


def test_catalog_and_placement_never_run_on_the_event_loop(memory_config: Path, tmp_path: Path) -> None:
    threads: set[int] = set()

    class ObservedCatalog(SqliteCatalog):
        """The real SQLite catalog, noting which thread calls it."""

        def placement(self, *args: Any, **kwargs: Any) -> Any:
            threads.add(threading.get_ident())
            return super().placement(*args, **kwargs)

        def commit(self, *args: Any, **kwargs: Any) -> Any:
            threads.add(threading.get_ident())
            return super().commit(*args, **kwargs)

        def lookup(self, *args: Any, **kwargs: Any) -> Any:
            threads.add(threading.get_ident())
            return super().lookup(*args, **kwargs)

        def list(self, *args: Any, **kwargs: Any) -> Any:
            threads.add(threading.get_ident())
            return super().list(*args, **kwargs)

        def remove(self, *args: Any, **kwargs: Any) -> Any:
            threads.add(threading.get_ident())
            return super().remove(*args, **kwargs)

    service = load_config(memory_config).build_service()
    service.bus.subscribe(PLACEMENT_DECISION, lambda _: threads.add(threading.get_ident()))
    router = GreenRouter(service, ObservedCatalog(tmp_path / "observed.db"))

    async def main() -> int:
        fs = GreenRouteFileSystem(router=router, asynchronous=True)
        await fs._pipe(payloads(20))
        await fs._pipe_file("lake/x", b"x", mode="create")
        assert len(await fs._cat([f"lake/many/{i:03d}.bin" for i in range(20)])) == 20
        await fs._cp_file("lake/x", "lake/y")
        await fs._info("lake/y")
        await fs._rm("lake", recursive=True)
        assert await fs._find("") == []
        return threading.get_ident()

    try:
        loop_thread = asyncio.run(main())
    finally:
        router.close()
    assert len(threads) > 1  # calls happened, on the worker threads
    assert loop_thread not in threads


def test_exclusive_creates_race_and_exactly_one_wins(memory_config: Path) -> None:
    async def main() -> list[BaseException | None]:
        fs = GreenRouteFileSystem(config=str(memory_config), asynchronous=True)
        return await asyncio.gather(*(fs._pipe_file("lake/once", b"%d" % i, mode="create") for i in range(10)),
                                    return_exceptions=True)

    outcomes = asyncio.run(main())
    assert outcomes.count(None) == 1
    assert all(isinstance(o, FileExistsError) for o in outcomes if o is not None)
    fs = GreenRouteFileSystem(config=str(memory_config))
    assert fs.cat_file("lake/once") == b"%d" % outcomes.index(None)
    assert fs.router.catalog.pending() == []


def test_xb_reserves_the_path_while_the_stream_is_open(memory_config: Path) -> None:
    fs = GreenRouteFileSystem(config=str(memory_config))
    first = fs.open("lake/x.bin", "xb")
    with pytest.raises(FileExistsError):  # nothing is committed yet, but the path is taken
        fs.open("lake/x.bin", "xb")
    with pytest.raises(FileExistsError):
        fs.pipe_file("lake/x.bin", b"other", mode="create")
    first.write(b"mine")
    first.close()
    assert fs.cat_file("lake/x.bin") == b"mine"
    dropped = fs.open("lake/y.bin", "xb")
    dropped.discard()  # the reservation goes with it
    with fs.open("lake/y.bin", "xb") as again:
        again.write(b"second try")
    assert fs.cat_file("lake/y.bin") == b"second try" and fs.router.catalog.pending() == []


def test_gcs_and_azure_store_and_read_with_their_own_coroutines(tmp_path: Path, gcs_server: LocalServer,  # noqa: F811
                                                                  azurite_server: LocalServer) -> None:
    bucket, container = unique_name(), unique_name()
    create_gcs_bucket(gcs_server.endpoint, bucket)
    create_azure_container(azurite_server.endpoint, container)
    config = write_config(tmp_path, {GREENEST: ("gcs", f"gs://{bucket}/data", gcs_storage_options(gcs_server.endpoint)),
                                     OTHER: ("azure", f"az://{container}/data",
                                             azure_storage_options(azurite_server.endpoint))})
    objects = payloads(12, "lake/clouds")

    async def main() -> dict[str, bytes]:
        fs = GreenRouteFileSystem(config=str(config), asynchronous=True, metadata={"team": "data"})
        await asyncio.gather(*(fs._pipe_file(p, v, candidates=[(GREENEST, OTHER)[i % 2]])
                               for i, (p, v) in enumerate(objects.items())))
        assert await fs._cat_file("lake/clouds/001.bin", start=5, end=9) == objects["lake/clouds/001.bin"][5:9]
        return dict(await fs._cat(list(objects)))

    assert asyncio.run(main()) == objects
    fs = GreenRouteFileSystem(config=str(config))
    for i, path in enumerate(objects):
        entry = fs.router.lookup(path)
        assert entry is not None and entry.backend_id == (GREENEST, OTHER)[i % 2]
        metadata = fs.router.target(entry.backend_id).stat(path).metadata  # asked of GCS and Azure themselves
        assert metadata["greenroute_decision"] == entry.decision_id and metadata["team"] == "data"


# -- concurrency, counted at the server -------------------------------------------------------


def test_cat_and_pipe_of_100_paths_run_concurrently(tmp_path: Path, moto_server: LocalServer,
                                                     s3_admin: Any) -> None:
    objects = payloads(100)
    with CountingProxy(moto_server.endpoint, gate=8) as proxy:
        config, buckets = s3_config(tmp_path, s3_admin, proxy.endpoint)
        fs = GreenRouteFileSystem(config=str(config))
        fs.pipe(objects)
        assert proxy.gate_opened and proxy.gate_timeouts == 0 and proxy.max_in_flight >= 8
        written = {e.path: e for e in fs.router.list("lake/many/")}
        assert set(written) == set(objects)
        proxy.reset()
        assert fs.cat(list(objects)) == objects
        assert proxy.gate_opened and proxy.gate_timeouts == 0 and proxy.max_in_flight >= 8
    listed = s3_admin.list_objects_v2(Bucket=buckets[GREENEST], Prefix="lake/many/")
    assert listed["KeyCount"] == 100
    head = s3_admin.head_object(Bucket=buckets[GREENEST], Key="lake/many/042.bin")
    assert head["Metadata"]["greenroute_decision"] == written["lake/many/042.bin"].decision_id


def test_the_same_from_an_event_loop_of_the_callers_own(tmp_path: Path, moto_server: LocalServer,
                                                        s3_admin: Any) -> None:
    objects = payloads(40)
    with CountingProxy(moto_server.endpoint, gate=8) as proxy:
        config, _ = s3_config(tmp_path, s3_admin, proxy.endpoint)

        async def main() -> dict[str, bytes]:
            fs = GreenRouteFileSystem(config=str(config), asynchronous=True)
            await fs._pipe(objects)
            return dict(await fs._cat(list(objects)))

        assert asyncio.run(main()) == objects  # s3fs's requests still run on its own loop
        assert proxy.gate_opened and proxy.gate_timeouts == 0 and proxy.max_in_flight >= 8


def test_batch_size_bounds_the_requests_in_flight(tmp_path: Path, moto_server: LocalServer, s3_admin: Any) -> None:
    objects = payloads(30)
    with CountingProxy(moto_server.endpoint, gate=3) as proxy:
        config, _ = s3_config(tmp_path, s3_admin, proxy.endpoint)
        fs = GreenRouteFileSystem(config=str(config), batch_size=3)
        fs.pipe(objects)
        assert proxy.gate_opened and proxy.max_in_flight == 3
        proxy.reset()
        proxy.gate = 2
        assert fs.cat(list(objects), batch_size=2) == objects
        assert proxy.gate_opened and proxy.max_in_flight == 2


def test_a_loop_of_single_calls_has_one_request_in_flight(tmp_path: Path, moto_server: LocalServer,
                                                          s3_admin: Any) -> None:
    objects = payloads(20)
    with CountingProxy(moto_server.endpoint) as proxy:
        config, _ = s3_config(tmp_path, s3_admin, proxy.endpoint)
        fs = GreenRouteFileSystem(config=str(config))
        for path, data in objects.items():
            fs.pipe_file(path, data)
        assert {p: fs.cat_file(p) for p in objects} == objects
        assert proxy.requests >= 40 and proxy.max_in_flight == 1  # the measure tells sequential apart


def test_a_cancelled_exclusive_create_leaves_no_reservation(tmp_path: Path, moto_server: LocalServer,
                                                            s3_admin: Any) -> None:
    release = threading.Event()
    with CountingProxy(moto_server.endpoint, on_request=lambda n: release.wait(30) if n == 1 else None) as proxy:
        config, buckets = s3_config(tmp_path, s3_admin, proxy.endpoint)

        async def main() -> None:
            fs = GreenRouteFileSystem(config=str(config), asynchronous=True)
            task = asyncio.create_task(fs._pipe_file("lake/held.bin", b"held", mode="create"))
            for _ in range(1000):  # until the store is held at the proxy
                if proxy.requests:
                    break
                await asyncio.sleep(0.01)
            assert proxy.requests == 1 and fs.router.catalog.pending() != []  # reserved, storing
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert fs.router.catalog.pending() == [] and not await fs._exists("lake/held.bin")
            release.set()
            await fs._pipe_file("lake/held.bin", b"again", mode="create")
            assert await fs._cat_file("lake/held.bin") == b"again"

        try:
            asyncio.run(main())
        finally:
            release.set()
    head = s3_admin.head_object(Bucket=buckets[GREENEST], Key="lake/held.bin")
    assert head["ContentLength"] == len(b"again")


# -- failover under an async pipe --------------------------------------------------------------

REGIONS = ("eu-north-1", "us-west-2", "us-east-1")  # best to worst on the embedded averages


def _three_region_config(tmp_path: Path, endpoints: dict[str, str]) -> Path:
    lines = ['[placement]\nsources = ["embedded"]\n', f'[catalog]\nurl = "sqlite:///{tmp_path}/catalog.db"\n',
             "[router]\nfailover_cooldown_seconds = 600\n"]
    for region, endpoint in endpoints.items():
        lines.append(f"""
[[backends]]
id = "s3-{region}"
provider = "s3"
region = "{region}"
root = "s3://gr-{region}/data"
renewable_pct = 100
pue = 1.15
[backends.storage_options]
endpoint_url = "{endpoint}"
key = "{MOTO_KEY}"
secret = "{MOTO_SECRET}"
retries = 1
config_kwargs = {{ connect_timeout = 2, read_timeout = 10, retries = {{ max_attempts = 1, mode = "standard" }} }}
""")
    path = tmp_path / "greenroute.toml"
    path.write_text("".join(lines))
    return path


def test_a_region_killed_during_a_200_object_pipe(tmp_path: Path,
                                                  moto_server_factory: Callable[[], LocalServer]) -> None:  # noqa: F811
    servers = {region: moto_server_factory() for region in REGIONS}
    for region, server in servers.items():
        create_s3_bucket(server.endpoint, f"gr-{region}")
    dead = servers["eu-north-1"]

    def kill(number: int) -> None:
        if number == 1:  # the pipe's first request to the greenest region: it never gets there
            dead.kill()
            proxy.close()  # and nothing listens there any more

    proxy = CountingProxy(dead.endpoint, on_request=kill)
    endpoints = {region: proxy.endpoint if server is dead else server.endpoint for region, server in servers.items()}
    config = _three_region_config(tmp_path, endpoints)
    objects = {f"events/day-{i % 7}/event-{i:03d}.json": b'{"i": %d}' % i for i in range(200)}

    async def main() -> None:
        fs = GreenRouteFileSystem(config=str(config), asynchronous=True, metadata={"run": "failover"})
        assert fs.router.placement.select_greenest_backend(None, 1).backend_id == "s3-eu-north-1"
        await fs._pipe(objects)

    try:
        asyncio.run(main())
    finally:
        proxy.close()
    assert not dead.running() and proxy.requests >= 1

    fs = GreenRouteFileSystem(config=str(config))
    entries = {e.path: e for e in fs.router.list("events/")}
    assert set(entries) == set(objects)
    assert {e.backend_id for e in entries.values()} <= {"s3-us-west-2", "s3-us-east-1"}
    failed_over = [e for e in entries.values() if e.failovers]
    assert failed_over and all(f.startswith("s3-eu-north-1: ") for e in failed_over for f in e.failovers)
    assert fs.router.catalog.pending() == []

    stored: dict[str, tuple[str, dict[str, str]]] = {}
    for region in ("us-west-2", "us-east-1"):
        client = boto3.client("s3", endpoint_url=servers[region].endpoint, aws_access_key_id=MOTO_KEY,
                              aws_secret_access_key=MOTO_SECRET, region_name="us-east-1")
        try:
            keys = [o["Key"] for o in client.list_objects_v2(Bucket=f"gr-{region}", Prefix="data/").get("Contents", [])]
            for key in keys:
                path = key.removeprefix("data/")
                assert path not in stored, f"{path} is on two regions"
                head = client.head_object(Bucket=f"gr-{region}", Key=key)
                body = client.get_object(Bucket=f"gr-{region}", Key=key)["Body"].read()
                assert body == objects[path]
                stored[path] = (f"s3-{region}", head["Metadata"])
        finally:
            client.close()
    assert set(stored) == set(objects)  # every object landed once, on a live region
    for path, entry in entries.items():  # and the catalog agrees with each object
        backend, metadata = stored[path]
        assert entry.backend_id == backend == metadata["greenroute_backend"]
        assert metadata["greenroute_decision"] == entry.decision_id and metadata["run"] == "failover"
