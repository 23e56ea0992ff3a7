"""greenroute:// behaviour: configuration, caching, writes, reads, listings, probing, errors.

Most tests run over two memory backends; those about backends' own fast paths (ranged reads, bulk
delete, presigned URLs, the 100 MiB streamed write) run over two moto S3 buckets and check what
landed with boto3.
"""

from __future__ import annotations

import errno
import gzip
import io
import os
import pickle
import subprocess
import sys
import time
import urllib.request
from dataclasses import replace
from pathlib import Path
from typing import Any

import fsspec
import pytest
from fsspec.callbacks import Callback
from tests.filesystem.conftest import GREENEST, OTHER, S3Setup, unique_name, write_config
from tests.servers.local import closed_port, s3_storage_options

from greenroute import InvalidPathError, NoEligibleBackendError, load_config
from greenroute.adapters.fsspec.filesystem import (
    GreenRouteFileSystem,
    GreenRouteWriteFile,
    InvalidFsMetadataError,
    InvalidFsPathError,
    NoEligibleBackendFsError,
)


@pytest.fixture
def fs(memory_config: Path) -> GreenRouteFileSystem:
    return GreenRouteFileSystem(config=str(memory_config))


def expected_gco2e(config: Path, backend_id: str, size: int, intensity: float) -> str:
    """What greenroute_gco2e must say for ``size`` bytes on ``backend_id``, from the carbon model itself."""
    cfg = load_config(config)
    backend = next(b for b in cfg.backends if b.id == backend_id)
    estimate = cfg.carbon_model.estimate(size, provider=backend.provider, pue=backend.pue,
                                         carbon_intensity_g_per_kwh=intensity)
    return f"{estimate.write_gco2e:.6g}"


def object_metadata(fs: GreenRouteFileSystem, path: str) -> dict[str, str]:
    """The metadata stored on the object itself (asked of its backend, not the catalog)."""
    entry = fs.router.lookup(path)
    assert entry is not None
    return dict(fs.router.target(entry.backend_id).stat(path).metadata)


# -- configuration and instances -------------------------------------------------------------


def test_entry_point_serves_greenroute_urls_without_an_import(memory_config: Path, tmp_path: Path) -> None:
    code = (
        "import fsspec, sys\n"
        "with fsspec.open('greenroute://lake/ep.txt', 'wt') as f:\n"
        "    f.write('hello')\n"
        "fs = fsspec.filesystem('greenroute')\n"
        "info = fs.info('lake/ep.txt')\n"
        "print(type(fs).__module__, fs.cat_file('lake/ep.txt').decode(), info['greenroute_backend'])\n"
        "print('greenroute.adapters.fsspec.filesystem' in sys.modules)\n"
    )
    env = {**os.environ, "GREENROUTE_CONFIG": str(memory_config)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env,
                         cwd=tmp_path)
    assert out.stdout.split() == ["greenroute.adapters.fsspec.filesystem", "hello", GREENEST, "True"]


def test_config_comes_from_option_then_env_then_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tags = {}
    for name in ("option", "env", "cwd"):
        folder = tmp_path / name
        folder.mkdir()
        tags[name] = unique_name()
        write_config(folder, {b: ("memory", f"memory://{tags[name]}/{b}", {}) for b in (GREENEST, OTHER)})
    monkeypatch.chdir(tmp_path / "cwd")
    assert GreenRouteFileSystem().router.catalog.path == str(tmp_path / "cwd" / "catalog.db")
    monkeypatch.setenv("GREENROUTE_CONFIG", str(tmp_path / "env" / "greenroute.toml"))
    assert GreenRouteFileSystem().router.catalog.path == str(tmp_path / "env" / "catalog.db")
    explicit = GreenRouteFileSystem(config=str(tmp_path / "option" / "greenroute.toml"))
    assert explicit.router.catalog.path == str(tmp_path / "option" / "catalog.db")
    explicit.pipe_file("lake/x", b"1")
    assert explicit.info("lake/x")["url"] == f"memory://{tags['option']}/{GREENEST}/lake/x"


def test_missing_config_file_is_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as info:
        GreenRouteFileSystem(config=str(tmp_path / "nope.toml"))
    assert info.value.__cause__ is not None


def test_per_call_options_share_one_router_and_cache_no_instances(memory_config: Path) -> None:
    GreenRouteFileSystem.clear_instance_cache()
    made = [fsspec.filesystem("greenroute", config=str(memory_config), metadata={"run": str(i)}) for i in range(5)]
    assert len({id(f) for f in made}) == 5
    assert len({id(f.router) for f in made}) == 1
    assert len(GreenRouteFileSystem._cache) == 0
    for i, f in enumerate(made):
        f.pipe_file(f"lake/run{i}", b"x")
        assert object_metadata(f, f"lake/run{i}")["run"] == str(i)
    with fsspec.open("greenroute://lake/opened", "wb", config=str(memory_config), metadata={"run": "open"}) as out:
        out.write(b"y")
    assert object_metadata(made[0], "lake/opened")["run"] == "open"
    assert len(GreenRouteFileSystem._cache) == 0


def test_filesystem_and_its_errors_pickle_for_workers(memory_config: Path) -> None:
    fs = GreenRouteFileSystem(config=str(memory_config), candidates=[OTHER], metadata={"team": "data"})
    clone = pickle.loads(pickle.dumps(fs))  # as dask ships it to a worker
    assert clone.router is fs.router and clone.hints == fs.hints
    clone.pipe_file("lake/p", b"x")
    assert fs.info("lake/p")["greenroute_backend"] == OTHER
    for error in (InvalidFsPathError("x", "why"), NoEligibleBackendFsError({"a": "read-only"})):
        again = pickle.loads(pickle.dumps(error))
        assert type(again) is type(error) and str(again) == str(error)


def test_unknown_storage_option_is_refused(memory_config: Path) -> None:
    with pytest.raises(TypeError, match="unknown storage option"):
        GreenRouteFileSystem(config=str(memory_config), Metadata={"a": "b"})
    assert GreenRouteFileSystem(config=str(memory_config), use_listings_cache=False).probe is False


@pytest.mark.parametrize(("hint", "error"), [({"size_hint": -1}, ValueError), ({"size_hint": "10"}, TypeError),
                                              ({"retention_days": -2}, ValueError), ({"metadata": ["a"]}, TypeError),
                                              ({"candidates": [1]}, TypeError)])
def test_bad_hints_are_refused(memory_config: Path, hint: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        GreenRouteFileSystem(config=str(memory_config), **hint)


# -- writes ----------------------------------------------------------------------------------


def test_open_wb_places_at_open_and_binds_carbon_at_close(fs: GreenRouteFileSystem, memory_config: Path) -> None:
    f = fs.open("greenroute://lake/stream.bin", "wb", metadata={"team": "data"})
    assert isinstance(f, GreenRouteWriteFile)
    assert f.decision.backend_id == GREENEST and f.decision.data_size_bytes == 0
    assert not fs.exists("lake/stream.bin")  # nothing visible before close
    for _ in range(10):
        f.write(b"x" * 1000)
    assert f.tell() == 10_000
    f.close()
    assert f.result is not None and f.result.size == 10_000
    md = object_metadata(fs, "lake/stream.bin")
    info = fs.info("lake/stream.bin")
    assert md["team"] == "data" and md["greenroute_backend"] == GREENEST == info["greenroute_backend"]
    assert md["greenroute_gco2e"] == expected_gco2e(memory_config, GREENEST, 10_000, info["greenroute_intensity"])
    assert md["greenroute_gco2e"] != expected_gco2e(memory_config, GREENEST, 0, info["greenroute_intensity"])
    assert info["size"] == 10_000 and info["greenroute_gco2e"] == pytest.approx(float(md["greenroute_gco2e"]), 1e-5)


def test_size_hint_drives_placement_at_open(fs: GreenRouteFileSystem) -> None:
    with fs.open("lake/hinted", "wb", size_hint=5_000_000, retention_days=30) as f:
        assert f.decision.data_size_bytes == 5_000_000 and f.decision.retention_days == 30
        f.write(b"small")
    assert fs.cat_file("lake/hinted") == b"small" and fs.info("lake/hinted")["size"] == 5


def test_candidates_hint_picks_the_other_backend(memory_config: Path) -> None:
    fs = GreenRouteFileSystem(config=str(memory_config), candidates=OTHER)
    fs.pipe_file("lake/a", b"a")
    fs.pipe_file("lake/b", b"b", candidates=[GREENEST])
    assert fs.info("lake/a")["greenroute_backend"] == OTHER
    assert fs.info("lake/b")["greenroute_backend"] == GREENEST


def test_metadata_from_options_and_call_is_merged(memory_config: Path) -> None:
    fs = GreenRouteFileSystem(config=str(memory_config), metadata={"team": "data", "stage": "raw"})
    fs.pipe_file("lake/m", b"1", metadata={"stage": "clean"})
    md = object_metadata(fs, "lake/m")
    assert (md["team"], md["stage"]) == ("data", "clean")


def test_exception_in_with_block_commits_nothing(fs: GreenRouteFileSystem) -> None:
    with pytest.raises(RuntimeError), fs.open("lake/broken", "wb") as f:
        f.write(b"half")
        raise RuntimeError("boom")
    with pytest.raises(RuntimeError), fs.open("lake/broken.txt", "w") as t:
        t.write("half")
        raise RuntimeError("boom")
    assert not fs.exists("lake/broken") and not fs.exists("lake/broken.txt")
    assert fs.router.catalog.pending() == []


def test_dropped_writer_is_abandoned(fs: GreenRouteFileSystem) -> None:
    f = fs.open("lake/dropped", "wb")
    f.write(b"never closed")
    del f
    assert not fs.exists("lake/dropped") and fs.router.catalog.pending() == []


def test_text_mode_and_compression(fs: GreenRouteFileSystem, memory_config: Path) -> None:
    with fs.open("lake/t.txt", "w", encoding="utf-8") as t:
        t.write("grüße\n")
    assert fs.cat_file("lake/t.txt") == "grüße\n".encode()
    with fs.open("lake/c.txt.gz", "wb", compression="gzip") as g:
        g.write(b"zipped " * 100)
    assert gzip.decompress(fs.cat_file("lake/c.txt.gz")) == b"zipped " * 100
    with fs.open("lake/c.txt.gz", "rb", compression="infer") as r:
        assert r.read() == b"zipped " * 100
    with fsspec.open("greenroute://lake/d.csv.gz", "wt", compression="infer", config=str(memory_config)) as t:
        t.write("a,b\n1,2\n")
    with fsspec.open("greenroute://lake/d.csv.gz", "rt", compression="infer", config=str(memory_config)) as t:
        assert t.read() == "a,b\n1,2\n"
    assert fs.info("lake/d.csv.gz")["size"] < 60


def test_exclusive_modes_refuse_existing_paths(fs: GreenRouteFileSystem) -> None:
    fs.pipe_file("lake/x", b"1", mode="create")
    with pytest.raises(FileExistsError):
        fs.pipe_file("lake/x", b"2", mode="create")
    with pytest.raises(FileExistsError):
        fs.open("lake/x", "xb")
    with fs.open("lake/y", "xb") as f:
        f.write(b"new")
    assert fs.cat(["lake/x", "lake/y"]) == {"lake/x": b"1", "lake/y": b"new"}


def test_append_and_update_modes_are_refused(fs: GreenRouteFileSystem) -> None:
    fs.pipe_file("lake/x", b"1")
    for mode in ("ab", "r+b"):
        with pytest.raises(ValueError, match="written whole"):
            fs.open("lake/x", mode)


def test_put_file_places_for_the_real_size_and_reports_progress(fs: GreenRouteFileSystem, tmp_path: Path) -> None:
    local = tmp_path / "upload.bin"
    local.write_bytes(os.urandom(300_000))
    seen: list[int] = []

    class Progress(Callback):  # type: ignore[misc]
        def call(self, *args: Any, **kwargs: Any) -> None:
            seen.append(self.value)

    progress = Progress()
    fs.put_file(str(local), "lake/up.bin", callback=progress, metadata={"source": "disk"})
    assert progress.size == 300_000 and seen[-1] == 300_000
    assert fs.cat_file("lake/up.bin") == local.read_bytes()
    assert object_metadata(fs, "lake/up.bin")["source"] == "disk"


def test_transaction_commits_at_the_end_or_not_at_all(fs: GreenRouteFileSystem) -> None:
    with fs.transaction:
        with fs.open("lake/t1", "wb") as f:
            f.write(b"1")
        assert not fs.exists("lake/t1")
    assert fs.cat_file("lake/t1") == b"1"
    with pytest.raises(RuntimeError), fs.transaction:
        with fs.open("lake/t2", "wb") as f:
            f.write(b"2")
        raise RuntimeError("roll back")
    assert not fs.exists("lake/t2") and fs.router.catalog.pending() == []


def test_makedirs_and_mkdir_never_contact_a_backend(tmp_path: Path) -> None:
    dead = s3_storage_options(f"http://127.0.0.1:{closed_port()}", retries=1)
    config = write_config(tmp_path, {GREENEST: ("s3", "s3://gr-unreachable", dead),
                                     OTHER: ("s3", "s3://gr-unreachable-too", dead)})
    fs = GreenRouteFileSystem(config=str(config))
    started = time.perf_counter()
    for i in range(200):
        fs.makedirs(f"lake/deep/{i}/er", exist_ok=True)
        fs.mkdir(f"lake/other/{i}")
    assert time.perf_counter() - started < 0.5
    assert not fs.isdir("lake/deep")  # directories exist only while they hold objects
    with pytest.raises(OSError):  # while a write does try the (dead) backend
        fs.pipe_file("lake/deep/file", b"x")


# -- reads -----------------------------------------------------------------------------------


def test_reads_resolve_through_the_catalog(fs: GreenRouteFileSystem) -> None:
    fs.pipe_file("lake/r.bin", bytes(range(256)))
    fs.pipe_file("lake/o.bin", b"other", candidates=[OTHER])
    assert fs.cat_file("lake/r.bin", start=10, end=20) == bytes(range(10, 20))
    assert fs.cat_file("lake/r.bin", start=-6) == bytes(range(250, 256))
    with fs.open("greenroute://lake/r.bin", "rb") as f:
        assert f.size == 256 and f.details["greenroute_backend"] == GREENEST
        f.seek(100)
        assert f.read(3) == bytes([100, 101, 102]) and f.tell() == 103
    ranges = fs.cat_ranges(["lake/r.bin", "lake/o.bin", "lake/missing"], [0, 1, 0], [2, 3, 1])
    assert ranges[:2] == [b"\x00\x01", b"th"] and isinstance(ranges[2], FileNotFoundError)
    assert fs.head("lake/o.bin", 2) == b"ot" and fs.tail("lake/o.bin", 2) == b"er"


def test_missing_paths_and_directories(fs: GreenRouteFileSystem) -> None:
    fs.pipe_file("lake/sub/x", b"1")
    with pytest.raises(FileNotFoundError):
        fs.cat_file("lake/none")
    with pytest.raises(FileNotFoundError):
        fs.open("lake/none", "rb")
    with pytest.raises(IsADirectoryError):
        fs.open("lake/sub", "rb")
    with pytest.raises(FileNotFoundError):
        fs.info("nothing/here")


def test_get_file_streams_to_disk_and_to_a_file_object(fs: GreenRouteFileSystem, tmp_path: Path) -> None:
    payload = os.urandom(9 * 2**20 + 7)  # more than two of get_file's chunks
    fs.pipe_file("lake/big.bin", payload)
    fs.get_file("lake/big.bin", str(tmp_path / "deep" / "big.bin"))
    assert (tmp_path / "deep" / "big.bin").read_bytes() == payload
    sink = io.BytesIO()
    fs.get_file("lake/big.bin", sink)
    assert sink.getvalue() == payload


# -- listing ---------------------------------------------------------------------------------


def test_listing_is_the_union_of_all_backends(fs: GreenRouteFileSystem) -> None:
    fs.pipe_file("lake/a/1.csv", b"1")
    fs.pipe_file("lake/a/b/2.csv", b"22", candidates=[OTHER])
    fs.pipe_file("lake/c.csv", b"333")
    fs.pipe_file("other/x", b"4")
    assert fs.ls("", detail=False) == ["lake", "other"]
    listing = fs.ls("greenroute://lake/a")
    assert [(e["name"], e["type"]) for e in listing] == [("lake/a/1.csv", "file"), ("lake/a/b", "directory")]
    file_info = listing[0]
    assert file_info["greenroute_backend"] == GREENEST and file_info["url"].endswith(f"/{GREENEST}/lake/a/1.csv")
    assert fs.info("lake/a/b/2.csv")["greenroute_backend"] == OTHER
    assert fs.info("lake/a") == {"name": "lake/a", "size": 0, "type": "directory"}
    assert fs.ls("lake/c.csv", detail=False) == ["lake/c.csv"]
    assert fs.find("lake") == ["lake/a/1.csv", "lake/a/b/2.csv", "lake/c.csv"]
    assert fs.find("lake", maxdepth=1) == ["lake/c.csv"]
    assert fs.find("lake", withdirs=True) == ["lake", "lake/a", "lake/a/1.csv", "lake/a/b", "lake/a/b/2.csv",
                                              "lake/c.csv"]
    assert fs.glob("greenroute://lake/**/*.csv") == ["lake/a/1.csv", "lake/a/b/2.csv", "lake/c.csv"]
    assert fs.glob("lake/*") == ["lake/a", "lake/c.csv"]
    assert list(fs.walk("lake")) == [("lake", ["a"], ["c.csv"]), ("lake/a", ["b"], ["1.csv"]),
                                     ("lake/a/b", [], ["2.csv"])]
    assert [d for d, _, _ in fs.walk("lake", topdown=False)] == ["lake/a/b", "lake/a", "lake"]
    assert fs.du("lake") == 6 and fs.du("lake", total=False)["lake/a/b/2.csv"] == 2
    assert fs.isdir("lake/a") and not fs.isdir("lake/c.csv") and fs.isfile("lake/c.csv")
    assert fs.exists("lake") and not fs.exists("lake/zzz") and not fs.isfile("lake/a")


def test_ls_pages_through_a_large_directory_and_skips_subtrees(fs: GreenRouteFileSystem) -> None:
    fs.pipe_file("big/seed", b"x")
    seed = fs.router.lookup("big/seed")
    assert seed is not None
    names = [f"big/f{i:04d}" for i in range(1500)] + [f"big/sub/deep/{i}" for i in range(300)]
    for i, name in enumerate(names):  # catalog entries alone: listing never touches the objects
        fs.router.catalog.put(replace(seed, path=name, decision_id=f"bulk{i}"))
    listing = fs.ls("big", detail=False)
    assert len(listing) == 1502 and listing[-1] == "big/sub" and listing[:2] == ["big/f0000", "big/f0001"]
    assert fs.info("big/sub")["type"] == "directory" and len(fs.find("big/sub")) == 300


def test_walk_can_be_pruned_top_down(fs: GreenRouteFileSystem) -> None:
    for p in ("ns/keep/1", "ns/skip/2", "ns/skip/deeper/3"):
        fs.pipe_file(p, b"x")
    seen = []
    for folder, dirs, _ in fs.walk("ns"):
        seen.append(folder)
        if "skip" in dirs:
            dirs.remove("skip")
    assert seen == ["ns", "ns/keep"]


def test_times_and_checksums_follow_the_catalog(fs: GreenRouteFileSystem) -> None:
    fs.pipe_file("lake/v", b"1")
    created, modified, checksum = fs.created("lake/v"), fs.modified("lake/v"), fs.checksum("lake/v")
    assert created.tzinfo is not None and modified >= created
    assert fs.checksum("lake/v") == checksum
    fs.pipe_file("lake/v", b"2")
    assert fs.modified("lake/v") > modified and fs.checksum("lake/v") != checksum
    with pytest.raises(IsADirectoryError):
        fs.modified("lake")


# -- copies, moves, deletes ------------------------------------------------------------------


def test_copy_and_move_keep_user_metadata(fs: GreenRouteFileSystem) -> None:
    fs.pipe_file("lake/src", b"data", metadata={"team": "data"})
    fs.cp_file("lake/src", "lake/copy")
    fs.copy("lake/src", "lake/other-copy", candidates=[OTHER])
    fs.mv("lake/copy", "lake/moved")
    assert fs.cat(["lake/src", "lake/moved", "lake/other-copy"]) == {
        "lake/src": b"data", "lake/moved": b"data", "lake/other-copy": b"data"}
    assert not fs.exists("lake/copy")
    assert fs.info("lake/other-copy")["greenroute_backend"] == OTHER
    assert object_metadata(fs, "lake/moved")["team"] == "data"
    with pytest.raises(TypeError, match="keeps the source's metadata"):
        fs.cp_file("lake/src", "lake/x", metadata={"a": "b"})


def test_rm_files_and_trees(fs: GreenRouteFileSystem) -> None:
    for p in ("lake/t/1", "lake/t/2", "lake/t/u/3", "lake/keep"):
        fs.pipe_file(p, b"x", candidates=[OTHER] if p.endswith("2") else None)
    with pytest.raises(IsADirectoryError):
        fs.rm("lake/t")
    with pytest.raises(IsADirectoryError):
        fs.rm_file("lake/t")
    fs.rm_file("lake/t/1")
    fs.rm("lake/t", recursive=True)
    assert fs.find("lake") == ["lake/keep"] and not fs.exists("lake/t")
    with pytest.raises(FileNotFoundError):
        fs.rm("lake/t")
    with pytest.raises(FileNotFoundError):
        fs.rm_file("lake/gone")


# -- probing ---------------------------------------------------------------------------------


def test_probe_finds_uncatalogued_objects_and_repairs_the_catalog(memory_config: Path) -> None:
    fs = GreenRouteFileSystem(config=str(memory_config))
    fs.pipe_file("lake/lost.bin", b"found me", candidates=[OTHER], metadata={"team": "data"})
    written = fs.info("lake/lost.bin")
    fs.router.catalog.remove("lake/lost.bin")  # as if the catalog had been lost
    with pytest.raises(FileNotFoundError):
        fs.cat_file("lake/lost.bin")
    prober = GreenRouteFileSystem(config=str(memory_config), probe=True)
    assert prober.cat_file("lake/lost.bin") == b"found me"
    repaired = fs.info("lake/lost.bin")  # the catalog itself was repaired
    for key in ("greenroute_backend", "url", "size", "greenroute_decision"):
        assert repaired[key] == written[key]
    assert repaired["greenroute_gco2e"] == pytest.approx(written["greenroute_gco2e"], rel=1e-5)


def test_probe_leaves_foreign_objects_alone(memory_config: Path) -> None:
    fs = GreenRouteFileSystem(config=str(memory_config), probe=True)
    target = fs.router.target(GREENEST)
    target.write("lake/foreign", b"not ours", {})  # no greenroute metadata: not written by a router
    with pytest.raises(FileNotFoundError):
        fs.cat_file("lake/foreign")
    assert fs.router.lookup("lake/foreign") is None
    assert not fs.exists("lake/never-written")


# -- errors ----------------------------------------------------------------------------------


def test_invalid_paths_are_oserrors_and_valueerrors(fs: GreenRouteFileSystem) -> None:
    for bad in ("onlynamespace", "lake/a/../b"):
        with pytest.raises(InvalidFsPathError) as info:
            fs.pipe_file(bad, b"x")
        assert isinstance(info.value, OSError) and isinstance(info.value, ValueError)
        assert isinstance(info.value.__cause__, InvalidPathError) and info.value.errno == 22
    with pytest.raises(InvalidFsMetadataError, match="invalid metadata 'Bad-Key': metadata keys") as bad_md:
        fs.pipe_file("lake/x", b"x", metadata={"Bad-Key": "v"})
    assert isinstance(bad_md.value, OSError) and isinstance(bad_md.value, ValueError) and bad_md.value.errno == 22


def test_no_eligible_backend_is_an_oserror(fs: GreenRouteFileSystem) -> None:
    with pytest.raises(NoEligibleBackendFsError) as info:
        fs.pipe_file("lake/x", b"x", candidates=["nowhere"])
    assert isinstance(info.value, OSError) and isinstance(info.value.__cause__, NoEligibleBackendError)
    assert info.value.reasons == {"nowhere": "not a configured backend"}


def test_an_object_on_a_backend_no_longer_configured_is_an_oserror(memory_config: Path, tmp_path: Path) -> None:
    GreenRouteFileSystem(config=str(memory_config)).pipe_file("lake/old", b"x", candidates=[OTHER])
    narrower = tmp_path / "narrower"
    narrower.mkdir()
    config = write_config(narrower, {GREENEST: ("memory", f"memory://{unique_name()}/{GREENEST}", {})})
    text = config.read_text().replace(str(narrower / "catalog.db"), str(memory_config.parent / "catalog.db"))
    config.write_text(text)  # the same catalog, without the backend holding lake/old
    fs = GreenRouteFileSystem(config=str(config))
    assert fs.info("lake/old")["greenroute_backend"] == OTHER
    with pytest.raises(OSError) as info:
        fs.cat_file("lake/old")
    assert info.value.errno == errno.ENODEV and isinstance(info.value.__cause__, KeyError)


def test_unknown_keywords_are_refused(fs: GreenRouteFileSystem) -> None:
    with pytest.raises(TypeError, match="ContentType"):
        fs.open("lake/x", "wb", ContentType="text/csv")
    with pytest.raises(TypeError, match="Metadata"):
        fs.pipe_file("lake/x", b"x", Metadata={"a": "b"})
    with pytest.raises(TypeError, match="takes bytes"):
        fs.pipe_file("lake/x", "text")


# -- on local directories -------------------------------------------------------------------


def test_local_directory_backends_hold_real_files(file_config: Path, tmp_path: Path) -> None:
    fs = GreenRouteFileSystem(config=str(file_config))
    with fs.open("lake/notes/a.txt", "w", encoding="utf-8", metadata={"team": "data"}) as f:
        f.write("on disk")
    fs.pipe_file("lake/notes/b.txt", b"elsewhere", candidates=[OTHER])
    assert (tmp_path / GREENEST / "lake" / "notes" / "a.txt").read_text() == "on disk"
    assert (tmp_path / OTHER / "lake" / "notes" / "b.txt").read_bytes() == b"elsewhere"
    assert fs.info("lake/notes/a.txt")["url"] == f"{(tmp_path / GREENEST).as_uri()}/lake/notes/a.txt"
    assert object_metadata(fs, "lake/notes/a.txt")["team"] == "data"
    assert fs.cat_ranges(["lake/notes/a.txt", "lake/notes/b.txt"], [3, 0], [7, 4]) == [b"disk", b"else"]
    fs.get("lake/notes", str(tmp_path / "out"), recursive=True)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.txt", "b.txt"]
    fs.rm("lake", recursive=True)
    assert not (tmp_path / GREENEST / "lake" / "notes" / "a.txt").exists() and fs.find("") == []


# -- on S3 (moto): the backends' own fast paths ----------------------------------------------


def test_s3_round_trip_uses_the_backends_fast_paths(s3_setup: S3Setup, tmp_path: Path) -> None:
    fs = GreenRouteFileSystem(config=str(s3_setup.config))
    fs.pipe_file("lake/a.bin", b"0123456789", metadata={"team": "data"})
    fs.pipe_file("lake/b.bin", b"abcdefghij", candidates=[OTHER])
    client = s3_setup.client()
    try:
        head = client.head_object(Bucket=s3_setup.buckets[GREENEST], Key="lake/a.bin")
        assert head["Metadata"]["team"] == "data" and head["Metadata"]["greenroute_backend"] == GREENEST
        assert client.get_object(Bucket=s3_setup.buckets[OTHER], Key="lake/b.bin")["Body"].read() == b"abcdefghij"
        assert fs.cat_ranges(["lake/a.bin", "lake/b.bin", "lake/a.bin"], [0, 2, 8], [2, 4, 10]) == [
            b"01", b"cd", b"89"]
        with fs.open("lake/b.bin", "rb", cache_type="blockcache", cache_options={"maxblocks": 2}) as f:
            f.seek(5)
            assert f.read(2) == b"fg"
        fs.get_file("lake/b.bin", str(tmp_path / "b.bin"))
        assert (tmp_path / "b.bin").read_bytes() == b"abcdefghij"
        with urllib.request.urlopen(fs.sign("lake/a.bin", expiration=60), timeout=10) as presigned:
            assert presigned.read() == b"0123456789"
        for i in range(5):
            fs.pipe_file(f"lake/many/{i}", b"x", candidates=[GREENEST, OTHER][i % 2:i % 2 + 1])
        fs.rm("lake", recursive=True)  # each object through the router, concurrently
        for bucket in s3_setup.buckets.values():
            assert client.list_objects_v2(Bucket=bucket).get("KeyCount") == 0
        assert fs.find("") == []
    finally:
        client.close()


def test_100_mib_streamed_write_gets_carbon_values_for_its_real_size(s3_setup: S3Setup) -> None:
    fs = GreenRouteFileSystem(config=str(s3_setup.config))
    chunk = os.urandom(2**20)
    with fs.open("lake/big.bin", "wb") as f:  # no size hint: placed for 0 bytes
        assert f.decision.data_size_bytes == 0
        for _ in range(100):
            f.write(chunk)
    size = 100 * 2**20
    info = fs.info("lake/big.bin")
    client = s3_setup.client()
    try:
        head = client.head_object(Bucket=s3_setup.buckets[GREENEST], Key="lake/big.bin")
        # With no size hint the real values are bound after the upload as object tags (no self-copy).
        tags = {t["Key"]: t["Value"] for t in client.get_object_tagging(
            Bucket=s3_setup.buckets[GREENEST], Key="lake/big.bin")["TagSet"]}
    finally:
        client.close()
    assert head["ContentLength"] == size == info["size"]
    stamped = tags["greenroute_gco2e"]
    assert stamped == expected_gco2e(s3_setup.config, GREENEST, size, info["greenroute_intensity"])
    assert float(stamped) > 0 and stamped != expected_gco2e(s3_setup.config, GREENEST, 0,
                                                            info["greenroute_intensity"])
    assert info["greenroute_gco2e"] == pytest.approx(float(stamped), rel=1e-5)
    with fs.open("lake/big.bin", "rb") as f:
        f.seek(size - 2**20)
        assert f.read() == chunk



def test_rm_leaves_a_newer_write_of_the_same_key_alone(s3_setup: S3Setup) -> None:
    fs = GreenRouteFileSystem(config=str(s3_setup.config))
    fs.pipe({"lake/old.bin": b"old", "lake/plain.bin": b"plain"})
    closed = fs.info("lake/old.bin")["greenroute_decision"]
    # Another writer's object lands on the key, not committed yet (its write is still in flight).
    newer = {"greenroute_decision": "f" * 32, "greenroute_path": "lake/old.bin", "greenroute_backend": GREENEST}
    fs.router.target(GREENEST).write("lake/old.bin", b"newer", newer)
    fs.rm("lake", recursive=True)
    assert fs.find("lake") == [] and fs.router.catalog.decision(closed) is not None  # closed, kept as history
    client = s3_setup.client()
    try:
        bucket = s3_setup.buckets[GREENEST]
        head = client.head_object(Bucket=bucket, Key="lake/old.bin")  # the newer write survived
        assert head["Metadata"]["greenroute_decision"] == "f" * 32
        assert client.get_object(Bucket=bucket, Key="lake/old.bin")["Body"].read() == b"newer"
        assert [o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]] == ["lake/old.bin"]
    finally:
        client.close()
