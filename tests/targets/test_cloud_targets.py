"""What the S3, GCS and Azure targets store on the wire, and how they behave when a server dies."""

from __future__ import annotations

import time
from collections.abc import Callable

import boto3
import pytest
from azure.storage.blob import BlobServiceClient
from tests.servers.local import MOTO_KEY, MOTO_SECRET, LocalServer, azure_connection_string
from tests.targets.conftest import build_target, cloud_target

from greenroute.errors import ConfigError, InvalidPathError, TargetUnavailableError

MD = {"greenroute_gco2e": "1.5", "greenroute_path": "ns/é.bin", "team": "data"}
ENCODED_PATH = "=?utf-8?b?bnMvw6kuYmlu?="


def test_s3_stores_underscore_keys_and_encoded_values(moto_server: LocalServer) -> None:
    target = cloud_target("s3", moto_server.endpoint)
    target.write("ns/a.bin", b"x", MD)
    bucket = target.backend.root.split("/")[2]
    client = boto3.client("s3", endpoint_url=moto_server.endpoint, aws_access_key_id=MOTO_KEY,
                          aws_secret_access_key=MOTO_SECRET, region_name="us-east-1")
    try:
        raw = client.head_object(Bucket=bucket, Key="pre/fix/ns/a.bin")["Metadata"]
    finally:
        client.close()
    assert raw == {"greenroute_gco2e": "1.5", "greenroute_path": ENCODED_PATH, "team": "data"}


def test_s3_reads_dashed_keys_as_underscores(moto_server: LocalServer) -> None:
    target = cloud_target("s3", moto_server.endpoint)
    bucket = target.backend.root.split("/")[2]
    client = boto3.client("s3", endpoint_url=moto_server.endpoint, aws_access_key_id=MOTO_KEY,
                          aws_secret_access_key=MOTO_SECRET, region_name="us-east-1")
    try:
        client.put_object(Bucket=bucket, Key="pre/fix/ns/b.bin", Body=b"x", Metadata={"Greenroute-Gco2e": "2"})
    finally:
        client.close()
    assert dict(target.stat("ns/b.bin").metadata) == {"greenroute_gco2e": "2"}


def test_azure_keeps_adlfs_key_out_of_metadata(azurite_server: LocalServer) -> None:
    target = cloud_target("azure", azurite_server.endpoint)
    target.write("ns/a.bin", b"x", MD)
    stream = target.open_write("ns/b.bin", lambda n: MD)
    stream.write(b"y" * 10)
    stream.close()
    container = target.backend.root.split("/")[2]
    with BlobServiceClient.from_connection_string(azure_connection_string(azurite_server.endpoint)) as client:
        for name in ("a.bin", "b.bin"):
            raw = client.get_blob_client(container, f"pre/fix/ns/{name}").get_blob_properties().metadata
            assert raw == {"greenroute_gco2e": "1.5", "greenroute_path": ENCODED_PATH, "team": "data",
                           "is_directory": "false"}
    assert dict(target.stat("ns/b.bin").metadata) == MD


def test_gcs_stores_unicode_values_as_is(gcs_server: LocalServer) -> None:
    target = cloud_target("gcs", gcs_server.endpoint)
    target.write("ns/a.bin", b"x", MD)
    fs = target.fs
    assert fs.info(f"{target.backend.root[5:]}/ns/a.bin")["metadata"] == MD


def test_a_killed_moto_server_is_target_unavailable(moto_server_factory: Callable[[], LocalServer]) -> None:
    server = moto_server_factory()
    target = cloud_target("s3", server.endpoint, retries=1)
    target.write("ns/a.bin", b"x", MD)
    stream = target.open_write("ns/b.bin", lambda n: MD, block_size=5 * 2**20)
    stream.write(b"z" * (6 * 2**20))  # the multipart upload has started
    server.kill()
    assert not server.running()
    started = time.monotonic()
    with pytest.raises(TargetUnavailableError):
        target.read("ns/a.bin")
    with pytest.raises(TargetUnavailableError):
        stream.close()
    with pytest.raises(TargetUnavailableError):
        target.write("ns/c.bin", b"x", MD)
    assert time.monotonic() - started < 15


@pytest.mark.parametrize("root", ["s3://", "gs:///prefix", "az://", "https://bucket/x"])
def test_cloud_root_needs_scheme_and_bucket(root: str) -> None:
    kind = {"s3": "s3", "gs": "gcs", "az": "azure", "https": "s3"}[root.split(":", maxsplit=1)[0]]
    with pytest.raises(ConfigError):
        build_target(kind, root)


def test_s3_streams_bind_late_values_without_a_self_copy_unless_the_hint_was_wrong(moto_server: LocalServer) -> None:
    target = cloud_target("s3", moto_server.endpoint)
    size = 12 * 1024 * 1024
    chunk = b"h" * (1024 * 1024)

    def metadata(n: int) -> dict[str, str]:
        return {"greenroute_gco2e": str(n), "greenroute_path": "ns/hinted.bin"}

    def stream(path: str, hint: int | None) -> str | None:
        writer = target.open_write(path, metadata, block_size=5 * 1024 * 1024, size_hint=hint)
        for _ in range(12):
            writer.write(chunk)
        writer.close()
        assert target.stat(path).metadata["greenroute_gco2e"] == str(size)  # bound for the real size
        return target.stat(path).etag

    hinted = stream("ns/hinted.bin", size)
    unhinted = stream("ns/unhinted.bin", None)
    wrong = stream("ns/wrong-hint.bin", 1)
    assert hinted is not None and hinted.endswith("-3")  # still the 3-part multipart object: no copy
    assert unhinted is not None and unhinted.endswith("-3")  # bound at close with tags: no copy
    assert wrong is not None and "-" not in wrong  # a wrong hint is rebound by a self-copy


def test_azure_refuses_names_its_xml_listings_cannot_carry(azurite_server: LocalServer,
                                                           moto_server: LocalServer) -> None:
    """U+FFFE/U+FFFF are not XML 1.0: one such blob made Azurite's listing of the container fail."""
    target = cloud_target("azure", azurite_server.endpoint)
    target.write("ns/ok.bin", b"x", MD)
    for name in ("ns/a\ufffe.bin", "ns/\uffff/b.bin"):
        with pytest.raises(InvalidPathError, match="U\\+FFF"):
            target.write(name, b"y", MD)
        with pytest.raises(InvalidPathError):
            target.open_write(name, lambda n: MD)
    assert [i.path for i in target.list("ns/")] == ["ns/ok.bin"]
    # S3's listings escape keys (EncodingType=url, which botocore asks for and undoes), so S3 keeps such names.
    s3 = cloud_target("s3", moto_server.endpoint)
    s3.write("ns/a\ufffe.bin", b"y", MD)
    assert [(i.path, s3.read(i.path)) for i in s3.list("ns/")] == [("ns/a\ufffe.bin", b"y")]
