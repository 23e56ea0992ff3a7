"""Errors with S3's shapes, copies, deletes, presigned URLs, pass-through and failover.

Errors must be the ``ClientError`` (sub)classes boto3 raises, with S3's codes and statuses, so
existing ``except ClientError`` handlers keep working; greenroute's own error is the ``__cause__``.
"""

from __future__ import annotations

import doctest
import io
import urllib.request
from collections.abc import Callable

import pytest
from boto3.exceptions import S3UploadFailedError
from botocore.exceptions import ClientError, ParamValidationError
from tests.boto3_dropin.conftest import AZURE, EAST, NORTH, PREFIX, WEST, Fleet, create_bucket, unique
from tests.servers.fixtures import moto_server_factory  # noqa: F401
from tests.servers.local import MOTO_KEY, MOTO_SECRET, LocalServer

from greenroute.adapters.boto3 import client as boto3_client
from greenroute.errors import InvalidMetadataError, InvalidPathError


def test_missing_keys_fail_as_on_s3(fleet: Fleet) -> None:
    s3 = fleet.client()
    plain = fleet.plain(NORTH)
    with pytest.raises(s3.exceptions.NoSuchKey) as got:
        s3.get_object(Bucket="lake", Key="missing.txt")
    assert isinstance(got.value, ClientError)
    assert got.value.response["Error"]["Code"] == "NoSuchKey"
    assert got.value.response["Error"]["Key"] == "missing.txt"
    assert got.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert got.value.operation_name == "GetObject"

    # HEAD has no error body: S3 (here moto) answers a bare 404, and so does greenroute.
    with pytest.raises(ClientError) as real:
        plain.head_object(Bucket=fleet.buckets[NORTH], Key="missing.txt")
    with pytest.raises(ClientError) as head:
        s3.head_object(Bucket="lake", Key="missing.txt")
    for err in (real.value, head.value):
        assert err.response["Error"]["Code"] == "404"
        assert err.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert head.value.operation_name == "HeadObject"


def test_an_object_gone_from_its_backend_is_no_such_key_with_the_cause(fleet: Fleet) -> None:
    s3 = fleet.client()
    s3.put_object(Bucket="lake", Key="vanishing.txt", Body=b"soon gone")
    fleet.plain(NORTH).delete_object(Bucket=fleet.buckets[NORTH], Key=f"{PREFIX}/lake/vanishing.txt")
    with pytest.raises(s3.exceptions.NoSuchKey) as got:
        s3.get_object(Bucket="lake", Key="vanishing.txt")
    assert got.value.response["Error"]["Key"] == "vanishing.txt"
    assert got.value.response["ResponseMetadata"]["GreenrouteBackend"] == NORTH
    cause = got.value.__cause__
    assert isinstance(cause, ClientError)  # the physical client's own error
    assert cause.response["Error"]["Code"] == "NoSuchKey" and cause.operation_name == "GetObject"
    with pytest.raises(ClientError) as head:
        s3.head_object(Bucket="lake", Key="vanishing.txt")
    assert head.value.response["Error"]["Code"] == "404"


@pytest.mark.parametrize("key", ["a/../b.txt", "dir/", "a//b.txt", "./x.txt"])
def test_keys_greenroute_cannot_store_are_invalid_argument(fleet: Fleet, key: str) -> None:
    s3 = fleet.client()
    with pytest.raises(ClientError) as put:
        s3.put_object(Bucket="lake", Key=key, Body=b"x")
    error = put.value.response["Error"]
    assert error["Code"] == "InvalidArgument"
    assert put.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert error["ArgumentValue"] == key
    assert isinstance(put.value.__cause__, InvalidPathError)
    with pytest.raises(ClientError) as create:
        s3.create_multipart_upload(Bucket="lake", Key=key)
    assert create.value.response["Error"]["Code"] == "InvalidArgument"
    with pytest.raises(S3UploadFailedError, match="InvalidArgument"):  # boto3's own wrapping of upload_file
        s3.upload_file(__file__, "lake", key)
    with pytest.raises(ClientError) as managed:  # upload_fileobj lets the ClientError through, as boto3 does
        s3.upload_fileobj(io.BytesIO(b"x"), "lake", key)
    assert managed.value.response["Error"]["Code"] == "InvalidArgument"
    assert s3.router.list("") == [] and fleet.stored() == []


def test_metadata_and_parameters_greenroute_cannot_honour(fleet: Fleet) -> None:
    s3 = fleet.client()
    with pytest.raises(ClientError) as bad_key:
        s3.put_object(Bucket="lake", Key="m.txt", Body=b"x", Metadata={"uploaded-by": "etl"})
    assert bad_key.value.response["Error"]["Code"] == "InvalidArgument"
    assert isinstance(bad_key.value.__cause__, InvalidMetadataError)
    for refused in ({"ACL": "public-read"}, {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": "k" * 32},
                    {"IfMatch": '"0f343b0931126a20f133d67c2b018a3b"'}, {"IfNoneMatch": '"0f343b09"'},
                    {"ServerSideEncryption": "aws:kms"}):
        with pytest.raises(ClientError) as err:
            s3.put_object(Bucket="lake", Key="m.txt", Body=b"x", **refused)
        assert err.value.response["Error"]["Code"] == "NotImplemented"
        assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 501
    with pytest.raises(ParamValidationError):
        s3.put_object(Bucket="lake", Body=b"x")
    with pytest.raises(ParamValidationError):
        s3.put_object(Bucket="lake/sub", Key="k", Body=b"x")
    with pytest.raises(ParamValidationError):
        s3.put_object(Bucket="lake", Key="k", Body=b"x", Metadata={"n": 1})
    assert fleet.stored() == []
    # What S3 does anyway is accepted; mixed-case metadata keys are lowercased, as S3 does.
    s3.put_object(Bucket="lake", Key="ok.txt", Body=b"x", ACL="private", ContentType="text/plain",
                  Metadata={"Team": "a", "greenroute_gco2e": "0"})
    metadata = s3.head_object(Bucket="lake", Key="ok.txt")["Metadata"]
    assert metadata["team"] == "a" and float(metadata["greenroute_gco2e"]) > 0


def test_a_missing_backend_bucket_is_no_such_bucket(fleet: Fleet) -> None:
    s3 = fleet.client("gone.toml", allowed_regions=["eu-north-1"], buckets={NORTH: unique("never-created")})
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket="lake", Key="k.txt", Body=b"x")
    assert err.value.response["Error"]["Code"] == "NoSuchBucket"
    assert isinstance(err.value.__cause__, FileNotFoundError)
    assert s3.router.list("") == [] and s3.router.catalog.pending() == []


def test_copies_are_placed_and_keep_or_replace_metadata(fleet: Fleet) -> None:
    s3 = fleet.client()
    azure_only = fleet.client("azure.toml", allowed_providers=["azure"])
    azure_only.put_object(Bucket="src", Key="a.txt", Body=b"from azure", Metadata={"owner": "ops"})

    copied = s3.copy_object(CopySource={"Bucket": "src", "Key": "a.txt"}, Bucket="dst", Key="a-copy.txt")
    assert copied["ResponseMetadata"]["GreenrouteBackend"] == NORTH  # placed afresh, on the greenest
    assert copied["CopyObjectResult"]["ETag"].startswith('"')
    _, raw = fleet.head(NORTH, "dst/a-copy.txt")
    assert raw["owner"] == "ops" and raw["greenroute_path"] == "dst/a-copy.txt"

    s3.copy_object(CopySource="src/a.txt", Bucket="dst", Key="b.txt", MetadataDirective="REPLACE",
                   Metadata={"owner": "finance", "stage": "2"})
    got = s3.get_object(Bucket="dst", Key="b.txt")
    assert got["Body"].read() == b"from azure"
    assert got["Metadata"]["owner"] == "finance" and got["Metadata"]["stage"] == "2"

    # Changing an object's metadata in place, the S3 idiom, keeps it on its backend.
    s3.copy_object(CopySource="src/a.txt", Bucket="src", Key="a.txt", MetadataDirective="REPLACE",
                   Metadata={"owner": "audit"})
    _, raw = fleet.head(AZURE, "src/a.txt")
    assert raw["owner"] == "audit"
    with pytest.raises(ClientError) as itself:
        s3.copy_object(CopySource="src/a.txt", Bucket="src", Key="a.txt")
    assert itself.value.response["Error"]["Code"] == "InvalidRequest"
    with pytest.raises(s3.exceptions.NoSuchKey):
        s3.copy_object(CopySource="src/none.txt", Bucket="dst", Key="x.txt")

    sizes: list[int] = []
    s3.copy({"Bucket": "dst", "Key": "b.txt"}, "dst", "c.txt", Callback=sizes.append)
    assert sizes == [len(b"from azure")]
    assert s3.get_object(Bucket="dst", Key="c.txt")["Metadata"]["owner"] == "finance"

    # From a plain bucket into greenroute, with SourceClient (a migration).
    legacy, plain = unique("legacy"), fleet.plain(EAST)
    create_bucket(fleet.server(EAST).endpoint, legacy, "us-east-1")
    plain.put_object(Bucket=legacy, Key="old.csv", Body=b"1,2,3", Metadata={"origin": "legacy"})
    s3.copy({"Bucket": legacy, "Key": "old.csv"}, "lake", "migrated.csv", SourceClient=plain)
    migrated = s3.get_object(Bucket="lake", Key="migrated.csv")
    assert migrated["Body"].read() == b"1,2,3" and migrated["Metadata"]["origin"] == "legacy"


def test_deletes_remove_object_and_entry_and_are_idempotent(fleet: Fleet) -> None:
    s3 = fleet.client()
    for key in ("a", "b", "c"):
        s3.put_object(Bucket="tmp", Key=f"{key}.txt", Body=key.encode())
    gone = s3.delete_object(Bucket="tmp", Key="a.txt")
    assert gone["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert gone["ResponseMetadata"]["GreenrouteBackend"] == NORTH
    assert s3.delete_object(Bucket="tmp", Key="a.txt")["ResponseMetadata"]["HTTPStatusCode"] == 204
    result = s3.delete_objects(Bucket="tmp", Delete={"Objects": [{"Key": "b.txt"}, {"Key": "never.txt"},
                                                                 {"Key": "c.txt", "VersionId": "v1"}]})
    assert result["Deleted"] == [{"Key": "b.txt"}, {"Key": "never.txt"}]
    assert [e["Code"] for e in result["Errors"]] == ["NotImplemented"]
    assert {s.path for s in fleet.stored()} == {"tmp/c.txt"}
    assert [e.path for e in s3.router.list("")] == ["tmp/c.txt"]
    quiet = s3.delete_objects(Bucket="tmp", Delete={"Objects": [{"Key": "c.txt"}], "Quiet": True})
    assert "Deleted" not in quiet and "Errors" not in quiet
    assert fleet.stored() == [] and s3.router.list("") == []


def test_unrouted_methods_reach_the_default_backends_real_client(fleet: Fleet) -> None:
    s3 = fleet.client()
    assert s3.default_backend_id == NORTH
    assert s3.meta.region_name == "eu-north-1"
    assert s3.list_buckets.__self__ is s3.physical_client(NORTH)
    names = {b["Name"] for b in s3.list_buckets()["Buckets"]}
    assert fleet.buckets[NORTH] in names and fleet.buckets[WEST] not in names
    location = s3.get_bucket_location(Bucket=fleet.buckets[NORTH])
    assert location["LocationConstraint"] == "eu-north-1"

    west = fleet.client("west-default.toml", client_kwargs={"default_backend": WEST})
    assert fleet.buckets[WEST] in {b["Name"] for b in west.list_buckets()["Buckets"]}
    assert west.get_bucket_location(Bucket=fleet.buckets[WEST])["LocationConstraint"] == "us-west-2"

    assert s3.head_bucket(Bucket="any-logical-name")["ResponseMetadata"]["HTTPStatusCode"] == 200
    s3.put_object(Bucket="lake", Key="here.txt", Body=b"x")
    s3.get_waiter("object_exists").wait(Bucket="lake", Key="here.txt", WaiterConfig={"Delay": 1, "MaxAttempts": 2})


def test_presigned_urls_point_at_the_physical_object(fleet: Fleet) -> None:
    s3 = fleet.client()
    s3.put_object(Bucket="share", Key="public/report.pdf", Body=b"%PDF-1.7 fake")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": "share", "Key": "public/report.pdf"},
                                    ExpiresIn=300)
    assert url.startswith(f"{fleet.server(NORTH).endpoint}/{fleet.buckets[NORTH]}/{PREFIX}/share/public/report.pdf?")
    assert "eu-north-1" in url
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.read() == b"%PDF-1.7 fake"

    azure_only = fleet.client("azure.toml", allowed_providers=["azure"])
    azure_only.put_object(Bucket="share", Key="on-azure.txt", Body=b"x")
    with pytest.raises(ClientError) as not_s3:
        s3.generate_presigned_url("get_object", Params={"Bucket": "share", "Key": "on-azure.txt"})
    assert not_s3.value.response["Error"]["Code"] == "NotImplemented"
    with pytest.raises(ClientError) as write:
        s3.generate_presigned_url("put_object", Params={"Bucket": "share", "Key": "new.txt"})
    assert write.value.response["Error"]["Code"] == "NotImplemented"
    with pytest.raises(s3.exceptions.NoSuchKey):
        s3.generate_presigned_url("get_object", Params={"Bucket": "share", "Key": "absent.txt"})


def test_a_dead_region_fails_over_through_the_router(fleet: Fleet,
                                                     moto_server_factory: Callable[[], LocalServer]) -> None:  # noqa: F811
    doomed = moto_server_factory()
    bucket = unique("doomed")
    create_bucket(doomed.endpoint, bucket, "eu-north-1")
    extra = f"""[[backends]]
id = "s3-eu-north-1-b"
provider = "s3"
region = "eu-north-1"
root = "s3://{bucket}/{PREFIX}"
renewable_pct = 100
pue = 1.05
storage_options = {{ endpoint_url = "{doomed.endpoint}", key = "{MOTO_KEY}", secret = "{MOTO_SECRET}", retries = 1, \
config_kwargs = {{ connect_timeout = 2, read_timeout = 5, retries = {{ max_attempts = 1, mode = "standard" }} }} }}
"""
    s3 = fleet.client("doomed.toml", extra_backends=extra, client_kwargs={"default_backend": NORTH})
    first = s3.put_object(Bucket="lake", Key="before.txt", Body=b"1")
    assert first["ResponseMetadata"]["GreenrouteBackend"] == "s3-eu-north-1-b"

    doomed.kill()
    after = s3.put_object(Bucket="lake", Key="after.txt", Body=b"2", Metadata={"n": "2"})

    meta = after["ResponseMetadata"]
    assert meta["GreenrouteBackend"] == NORTH
    assert [f.split(":")[0] for f in meta["GreenrouteFailovers"]] == ["s3-eu-north-1-b"]
    size, raw = fleet.head(NORTH, "lake/after.txt")
    assert size == 1 and raw["n"] == "2" and raw["greenroute_backend"] == NORTH
    assert s3.get_object(Bucket="lake", Key="after.txt")["Body"].read() == b"2"
    with pytest.raises(ClientError) as down:  # its only copy is on the dead region
        s3.get_object(Bucket="lake", Key="before.txt")
    assert down.value.response["Error"]["Code"] == "ServiceUnavailable"
    assert down.value.response["ResponseMetadata"]["GreenrouteBackend"] == "s3-eu-north-1-b"


def test_the_documented_example_runs() -> None:
    result = doctest.testmod(boto3_client)
    assert result.attempted > 0 and result.failed == 0
