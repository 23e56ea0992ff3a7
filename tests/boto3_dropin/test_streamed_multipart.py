"""Multipart uploads through the drop-in stream into the chosen backend's own upload.

Every kind of backend (S3 on moto, Azure on Azurite, GCS on the emulator, a local folder, memory):
boto3's managed upload and explicit parts sent out of order from several threads arrive whole with
the carbon values of their real size; an abort leaves nothing on the backend. The object is placed at
``create_multipart_upload`` and fails over only until the first part is accepted. A large upload
uses no local disk (the temporary folder is watched while it runs).
"""

from __future__ import annotations

import contextlib
import io
import os
import random
import tempfile
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import gcsfs
import pytest
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError
from tests.boto3_dropin.conftest import AZURE, MB, NORTH, PREFIX, Fleet, create_bucket, unique
from tests.servers.fixtures import gcs_server, moto_server_factory  # noqa: F401
from tests.servers.local import MOTO_KEY, MOTO_SECRET, LocalServer, create_gcs_bucket

from greenroute.adapters.boto3.client import GreenS3Client
from greenroute.ports import METADATA_KEYS

PART = 5 * MB
KINDS = ("s3", "azure", "gcs", "file", "memory")
GCS_ID, FILE_ID, MEMORY_ID = "gcs-europe-north1", "file-local", "memory-local"
BACKEND = {"s3": NORTH, "azure": AZURE, "gcs": GCS_ID, "file": FILE_ID, "memory": MEMORY_ID}
GCS_PROJECT = "greenroute-test"


class Kinds:
    """Clients whose placement may choose only one kind of backend, over the fleet plus GCS, file and memory."""

    def __init__(self, fleet: Fleet, gcs: LocalServer) -> None:
        self.fleet = fleet
        self.gcs_endpoint = gcs.endpoint
        self.gcs_bucket = unique("gcs")
        create_gcs_bucket(gcs.endpoint, self.gcs_bucket)
        self.file_root = fleet.tmp / "filestore"
        self.memory_root = f"memory://{unique('memory')}"
        gcs_options = f'{{ endpoint_url = "{gcs.endpoint}", token = "anon", project = "{GCS_PROJECT}" }}'
        self.extra = f"""[[backends]]
id = "{GCS_ID}"
provider = "gcs"
region = "europe-north1"
root = "gs://{self.gcs_bucket}/{PREFIX}"
storage_options = {gcs_options}

[[backends]]
id = "{FILE_ID}"
provider = "file"
region = "eu-north-1"
root = "file://{self.file_root}"

[[backends]]
id = "{MEMORY_ID}"
provider = "memory"
region = "eu-north-1"
root = "{self.memory_root}"
"""

    def client(self, kind: str, **kwargs: Any) -> GreenS3Client:
        return self.fleet.client(f"{kind}.toml", allowed_providers=[kind], extra_backends=self.extra, **kwargs)

    def s3_uploads(self) -> list[str]:
        """The keys of the multipart uploads in progress on the S3 backend."""
        uploads = self.fleet.plain(NORTH).list_multipart_uploads(Bucket=self.fleet.buckets[NORTH])
        return [u["Key"] for u in uploads.get("Uploads", [])]

    def objects(self, kind: str) -> dict[str, int]:
        """Every object (staged parts included) the backend holds, by physical name, with its size."""
        fleet = self.fleet
        if kind == "s3":
            client = fleet.plain(NORTH)
            bucket = fleet.buckets[NORTH]
            return {o["Key"]: int(o["Size"]) for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])}
        if kind == "azure":
            container = fleet.blob_service().get_container_client(fleet.buckets[AZURE])
            return {b.name: int(b.size) for b in container.list_blobs()}
        if kind == "gcs":
            fs = gcsfs.GCSFileSystem(endpoint_url=self.gcs_endpoint, token="anon", project=GCS_PROJECT,
                                     skip_instance_cache=True)
            found = fs.find(self.gcs_bucket, detail=True)
            return {name.removeprefix(self.gcs_bucket + "/"): int(info["size"]) for name, info in found.items()}
        if kind == "file":
            return {str(p.relative_to(self.file_root)): p.stat().st_size
                    for p in self.file_root.rglob("*") if p.is_file()} if self.file_root.exists() else {}
        from fsspec.implementations.memory import MemoryFileSystem

        root = self.memory_root.removeprefix("memory://")
        return {name: len(item.getvalue()) for name, item in MemoryFileSystem.store.items()
                if name.startswith(f"/{root}/")}


@pytest.fixture
def kinds(fleet: Fleet, gcs_server: LocalServer) -> Kinds:  # noqa: F811
    return Kinds(fleet, gcs_server)


def payload(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


def check_stored(kinds: Kinds, kind: str, s3: GreenS3Client, key: str, data: bytes, team: str) -> None:
    """The object reads back whole, with its metadata for the real size, and is the backend's only object."""
    path = f"media/{key}"
    entry = s3.router.lookup(path)
    assert entry is not None and entry.backend_id == BACKEND[kind] and entry.size == len(data)
    got = s3.get_object(Bucket="media", Key=key)
    assert got["Body"].read() == data
    assert got["ResponseMetadata"]["GreenrouteBackend"] == BACKEND[kind]
    metadata = got["Metadata"]
    assert set(METADATA_KEYS) <= set(metadata) and metadata["team"] == team
    assert metadata["greenroute_decision"] == entry.decision_id
    assert float(metadata["greenroute_gco2e"]) == pytest.approx(entry.write_gco2e, rel=1e-5)
    real = s3.router.placement.carbon_model.estimate(
        len(data), provider=entry_backend(s3, entry.backend_id).provider, pue=entry_backend(s3, entry.backend_id).pue,
        carbon_intensity_g_per_kwh=entry.carbon_intensity_g_per_kwh, retention_days=None)
    assert entry.write_gco2e == pytest.approx(real.write_gco2e)
    assert kind != "s3" or kinds.s3_uploads() == []
    stored = kinds.objects(kind)
    # nothing else: no staged part is left (a local target may keep metadata in a sidecar file)
    assert {name.rpartition("/")[2]: size for name, size in stored.items()
            if not name.endswith(".greenroute.json")} == {key.rpartition("/")[2]: len(data)}


def entry_backend(s3: GreenS3Client, backend_id: str) -> Any:
    return s3.router.placement.backend(backend_id)


@pytest.mark.parametrize("kind", KINDS)
def test_a_managed_upload_streams_into_each_kind_of_backend(kinds: Kinds, kind: str) -> None:
    s3 = kinds.client(kind)
    data = payload(17 * MB + 5, 1)
    config = TransferConfig(multipart_threshold=PART, multipart_chunksize=PART, max_concurrency=4)
    sent: list[int] = []
    s3.upload_fileobj(io.BytesIO(data), "media", "films/a.bin", ExtraArgs={"Metadata": {"team": "film"}},
                      Config=config, Callback=sent.append)
    assert sum(sent) == len(data)
    check_stored(kinds, kind, s3, "films/a.bin", data, "film")


@pytest.mark.parametrize("kind", KINDS)
def test_explicit_parts_out_of_order_from_threads(kinds: Kinds, kind: str) -> None:
    s3 = kinds.client(kind)
    parts = [payload(PART, n) for n in range(1, 4)] + [payload(3 * MB + 1, 4)]
    created = s3.create_multipart_upload(Bucket="media", Key="raw/b.bin", Metadata={"team": "raw"})
    upload_id = created["UploadId"]
    assert created["ResponseMetadata"]["GreenrouteBackend"] == BACKEND[kind]  # placed at create

    def send(number: int) -> dict[str, Any]:
        response = s3.upload_part(Bucket="media", Key="raw/b.bin", UploadId=upload_id, PartNumber=number,
                                  Body=io.BytesIO(parts[number - 1]))
        assert response["ResponseMetadata"]["GreenrouteBackend"] == BACKEND[kind]
        return {"PartNumber": number, "ETag": response["ETag"]}

    s3.upload_part(Bucket="media", Key="raw/b.bin", UploadId=upload_id, PartNumber=2, Body=b"stale" * MB)
    with ThreadPoolExecutor(max_workers=4) as pool:
        listed = sorted(pool.map(send, [4, 3, 2, 1]), key=lambda p: p["PartNumber"])
    with pytest.raises(ClientError) as missing:  # nothing is visible before completion
        s3.head_object(Bucket="media", Key="raw/b.bin")
    assert missing.value.response["Error"]["Code"] == "404"
    assert s3.router.lookup("media/raw/b.bin") is None and s3.router.catalog.pending() == []
    assert [n for n in kinds.objects(kind) if n.endswith("raw/b.bin")] == []
    done = s3.complete_multipart_upload(Bucket="media", Key="raw/b.bin", UploadId=upload_id,
                                        MultipartUpload={"Parts": listed})
    assert done["ResponseMetadata"]["GreenrouteBackend"] == BACKEND[kind]
    check_stored(kinds, kind, s3, "raw/b.bin", b"".join(parts), "raw")


@pytest.mark.parametrize("kind", KINDS)
def test_abort_leaves_nothing_on_the_backend(kinds: Kinds, kind: str) -> None:
    s3 = kinds.client(kind)
    upload_id = s3.create_multipart_upload(Bucket="media", Key="gone.bin")["UploadId"]
    s3.upload_part(Bucket="media", Key="gone.bin", UploadId=upload_id, PartNumber=1, Body=payload(PART, 1))
    s3.upload_part(Bucket="media", Key="gone.bin", UploadId=upload_id, PartNumber=2, Body=b"tail")
    s3.abort_multipart_upload(Bucket="media", Key="gone.bin", UploadId=upload_id)
    # Azure keeps staged blocks invisible until it discards them; every other backend holds nothing at all.
    assert kinds.objects(kind) == {}
    assert kind != "s3" or kinds.s3_uploads() == []
    assert s3.router.lookup("media/gone.bin") is None and s3.router.catalog.pending() == []
    with pytest.raises(s3.exceptions.NoSuchUpload):
        s3.upload_part(Bucket="media", Key="gone.bin", UploadId=upload_id, PartNumber=3, Body=b"late")


# -- failover ------------------------------------------------------------------------------------------


def doomed_client(fleet: Fleet, start: Callable[[], LocalServer]) -> tuple[GreenS3Client, LocalServer]:
    """A client whose best backend is a moto server of its own, which the test can kill."""
    doomed = start()
    bucket = unique("doomed")
    create_bucket(doomed.endpoint, bucket, "eu-north-1")
    extra = f"""[[backends]]
id = "s3-doomed"
provider = "s3"
region = "eu-north-1"
root = "s3://{bucket}/{PREFIX}"
renewable_pct = 100
pue = 1.05
storage_options = {{ endpoint_url = "{doomed.endpoint}", key = "{MOTO_KEY}", secret = "{MOTO_SECRET}", retries = 1, \
config_kwargs = {{ connect_timeout = 2, read_timeout = 5, retries = {{ max_attempts = 1, mode = "standard" }} }} }}
"""
    s3 = fleet.client(f"doomed-{bucket}.toml", extra_backends=extra, allowed_providers=["s3"],
                      client_kwargs={"default_backend": NORTH})
    return s3, doomed


def test_a_managed_upload_fails_over_at_create(fleet: Fleet, moto_server_factory: Callable[[], LocalServer],  # noqa: F811
                                               ) -> None:
    s3, doomed = doomed_client(fleet, moto_server_factory)
    doomed.kill()
    data = payload(12 * MB, 2)
    s3.upload_fileobj(io.BytesIO(data), "media", "moved.bin",
                      Config=TransferConfig(multipart_threshold=PART, multipart_chunksize=PART))
    entry = s3.router.lookup("media/moved.bin")
    assert entry is not None and entry.backend_id == NORTH
    assert [f.split(":")[0] for f in entry.failovers] == ["s3-doomed"]
    assert fleet.head(NORTH, "media/moved.bin")[0] == len(data)


def test_explicit_parts_fail_over_before_the_first_part_is_accepted(
        fleet: Fleet, moto_server_factory: Callable[[], LocalServer]) -> None:  # noqa: F811
    s3, doomed = doomed_client(fleet, moto_server_factory)
    upload_id = s3.create_multipart_upload(Bucket="media", Key="late.bin")["UploadId"]
    doomed.kill()  # after placement, before any part: S3 begins an upload without a size with its first part
    parts = [payload(PART, 3), b"end"]
    with ThreadPoolExecutor(max_workers=2) as pool:
        sent = list(pool.map(lambda n: s3.upload_part(Bucket="media", Key="late.bin", UploadId=upload_id,
                                                      PartNumber=n, Body=parts[n - 1]), [1, 2]))
    assert {r["ResponseMetadata"]["GreenrouteBackend"] for r in sent} == {NORTH}
    done = s3.complete_multipart_upload(Bucket="media", Key="late.bin", UploadId=upload_id, MultipartUpload={
        "Parts": [{"PartNumber": n, "ETag": r["ETag"]} for n, r in enumerate(sent, 1)]})
    assert [f.split(":")[0] for f in done["ResponseMetadata"]["GreenrouteFailovers"]] == ["s3-doomed"]
    assert s3.get_object(Bucket="media", Key="late.bin")["Body"].read() == b"".join(parts)
    assert fleet.head(NORTH, "media/late.bin")[0] == PART + 3


def test_no_failover_once_a_part_is_accepted(fleet: Fleet,
                                             moto_server_factory: Callable[[], LocalServer]) -> None:  # noqa: F811
    s3, doomed = doomed_client(fleet, moto_server_factory)
    upload_id = s3.create_multipart_upload(Bucket="media", Key="stuck.bin")["UploadId"]
    first = s3.upload_part(Bucket="media", Key="stuck.bin", UploadId=upload_id, PartNumber=1, Body=payload(PART, 4))
    assert first["ResponseMetadata"]["GreenrouteBackend"] == "s3-doomed"
    doomed.kill()
    with pytest.raises(ClientError) as down:
        s3.upload_part(Bucket="media", Key="stuck.bin", UploadId=upload_id, PartNumber=2, Body=b"more")
    error = down.value.response
    assert (error["Error"]["Code"], error["ResponseMetadata"]["HTTPStatusCode"]) == ("ServiceUnavailable", 503)
    assert "cannot move to another backend" in error["Error"]["Message"]
    assert error["ResponseMetadata"]["GreenrouteBackend"] == "s3-doomed"
    with pytest.raises(ClientError) as cannot_abort:  # the parts are on the dead backend
        s3.abort_multipart_upload(Bucket="media", Key="stuck.bin", UploadId=upload_id)
    assert cannot_abort.value.response["Error"]["Code"] == "ServiceUnavailable"
    assert s3.router.lookup("media/stuck.bin") is None and s3.router.catalog.pending() == []
    assert fleet.stored() == []


# -- local disk ----------------------------------------------------------------------------------------


def folder_bytes(folder: str) -> int:
    """Bytes in files under ``folder``, counting files this process holds open there after unlinking them
    (``tempfile.TemporaryFile`` and a spool that rolled over to disk are such files, never listed)."""
    total, seen = 0, set()
    for root, _, files in os.walk(folder):
        for name in files:
            with contextlib.suppress(FileNotFoundError):
                st = os.stat(os.path.join(root, name))
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/self/fd/{fd}").startswith(folder + "/"):
                st = os.stat(f"/proc/self/fd/{fd}")
                if (st.st_dev, st.st_ino) not in seen:
                    seen.add((st.st_dev, st.st_ino))
                    total += st.st_size
    return total


class FolderWatch:
    """The largest total size of the files under ``folder`` seen while it runs (sampled every 5 ms)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, folder_bytes(str(self.folder)))
            self.samples += 1
            self._stop.wait(0.005)

    def __enter__(self) -> FolderWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@pytest.fixture
def watched_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The process's temporary folder, pointed at an empty folder of the test's own."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setenv("TMPDIR", str(folder))
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    yield folder


def test_a_large_multipart_upload_uses_no_local_disk(fleet: Fleet, tmp_path: Path, watched_tmp: Path) -> None:
    s3 = fleet.client(client_kwargs={"spool_dir": str(watched_tmp)})
    source = tmp_path / "source.bin"
    with open(source, "wb") as out:
        for i in range(12):
            out.write(payload(8 * MB, i + 10))
    size = source.stat().st_size
    config = TransferConfig(multipart_threshold=8 * MB, multipart_chunksize=8 * MB, max_concurrency=4)
    with FolderWatch(watched_tmp) as watch:
        s3.upload_file(str(source), "media", "large.bin", Config=config)
    assert watch.samples > 10
    assert watch.peak == 0, f"{watch.peak} bytes were written to the local temporary folder"
    assert fleet.head(NORTH, "media/large.bin")[0] == size
    entry = s3.router.lookup("media/large.bin")
    assert entry is not None and entry.size == size
    body = s3.get_object(Bucket="media", Key="large.bin")["Body"]
    assert body.read(8 * MB) == source.read_bytes()[:8 * MB]
    body.close()


def test_a_managed_upload_gives_s3_the_final_values_at_create(fleet: Fleet, tmp_path: Path) -> None:
    """boto3's upload knows the file's size, so S3 gets the final carbon values with CreateMultipartUpload:
    the object keeps its multipart ETag (``md5-N``), which a metadata fix-up by copy would replace."""
    s3 = fleet.client()
    source = tmp_path / "sized.bin"
    source.write_bytes(payload(11 * MB, 5))
    s3.upload_file(str(source), "media", "sized.bin",
                   Config=TransferConfig(multipart_threshold=PART, multipart_chunksize=PART))
    entry = s3.router.lookup("media/sized.bin")
    assert entry is not None and entry.size == 11 * MB
    head = fleet.plain(NORTH).head_object(Bucket=fleet.buckets[NORTH], Key=fleet.physical_key("media/sized.bin"))
    assert head["ETag"].strip('"').endswith("-3")
    assert head["ETag"].strip('"') == entry.etag
    assert float(head["Metadata"]["greenroute_gco2e"]) == pytest.approx(entry.write_gco2e, rel=1e-5)


def test_an_explicit_upload_without_a_size_gets_its_real_values_without_a_copy(fleet: Fleet) -> None:
    """S3 gets the first part's estimate at create; the real values follow as tags (the S3 target's rule),
    so the object keeps its multipart ETag, and the drop-in's reads show the real values."""
    s3 = fleet.client()
    upload_id = s3.create_multipart_upload(Bucket="media", Key="est.bin", Metadata={"team": "est"})["UploadId"]
    parts = [payload(PART, 7), payload(PART, 8), b"end"]
    listed = [{"PartNumber": n, "ETag": s3.upload_part(Bucket="media", Key="est.bin", UploadId=upload_id,
                                                       PartNumber=n, Body=body)["ETag"]}
              for n, body in enumerate(parts, 1)]
    s3.complete_multipart_upload(Bucket="media", Key="est.bin", UploadId=upload_id, MultipartUpload={"Parts": listed})
    entry = s3.router.lookup("media/est.bin")
    assert entry is not None and entry.size == 2 * PART + 3
    head = s3.head_object(Bucket="media", Key="est.bin")
    assert head["ETag"].strip('"').endswith("-3") and head["ETag"].strip('"') == entry.etag
    assert float(head["Metadata"]["greenroute_gco2e"]) == pytest.approx(entry.write_gco2e, rel=1e-5)
    assert "greenroute_late" not in head["Metadata"] and head["Metadata"]["team"] == "est"
    got = s3.get_object(Bucket="media", Key="est.bin")
    assert float(got["Metadata"]["greenroute_gco2e"]) == pytest.approx(entry.write_gco2e, rel=1e-5)
    assert got["Body"].read() == b"".join(parts)
    # The object itself was created with the first part's estimate: the real values are not in its metadata.
    _, raw = fleet.head(NORTH, "media/est.bin")
    assert float(raw["greenroute_gco2e"]) != pytest.approx(entry.write_gco2e, rel=1e-3)
