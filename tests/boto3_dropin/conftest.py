"""The boto3 drop-in's fleet: three moto servers standing in for three AWS regions, and one Azurite.

Each test gets fresh physical buckets (one per backend, each under a ``greenroute`` prefix), a fresh
SQLite catalog, and config files written in ``tmp_path``. ``Fleet.client()`` builds
``greenroute.boto3_client(config=...)``; ``Fleet.config(allowed_regions=...)`` writes a variant that
shares the same buckets and catalog but lets placement choose only some backends, so a test can
put objects on a backend other than the greenest. ``Fleet.stored()`` lists every backend
directly (plain boto3 against moto, azure-storage-blob against Azurite), never through greenroute.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient
from boto3.session import Session
from tests.servers.fixtures import azurite_server, moto_server_factory  # noqa: F401
from tests.servers.local import MOTO_KEY, MOTO_SECRET, LocalServer, azure_connection_string

import greenroute
from greenroute.adapters.boto3.client import GreenS3Client

# gcsfs reads this when imported: without it, a TLS gRPC probe precedes every call (a minute each against
# the HTTP emulator). The GCS target sets it too, but a test may import gcsfs first.
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

#: Best to worst on the embedded annual grid averages.
REGIONS = ("eu-north-1", "us-west-2", "us-east-1")
AZURE_REGION = "westeurope"
PREFIX = "greenroute"
NORTH, WEST, EAST = (f"s3-{r}" for r in REGIONS)
AZURE = f"azure-{AZURE_REGION}"
S3_IDS = (NORTH, WEST, EAST)
ALL_IDS = (*S3_IDS, AZURE)
MB = 2**20


#: One boto3 session for the plain clients (what ``boto3.client`` uses is a session like this one).
_SESSION = Session()


def plain_client(endpoint: str, region: str = "us-east-1") -> Any:
    """An ordinary boto3 S3 client for one moto server."""
    return _SESSION.client("s3", endpoint_url=endpoint, aws_access_key_id=MOTO_KEY, aws_secret_access_key=MOTO_SECRET,
                           region_name=region)


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    raise TypeError(type(value))


@dataclass
class Stored:
    """One object as a backend itself reports it."""

    backend_id: str
    path: str
    size: int
    metadata: dict[str, str]


@dataclass
class Fleet:
    """Physical buckets on the session's servers, a catalog, and the clients built over them."""

    tmp: Path
    servers: dict[str, LocalServer]
    azurite: LocalServer
    buckets: dict[str, str] = field(default_factory=dict)
    #: A client for tests to read with, when a fixture sets one.
    reader: Any = None
    _closers: list[Callable[[], object]] = field(default_factory=list)

    @property
    def catalog_url(self) -> str:
        return f"sqlite:///{self.tmp}/catalog.db"

    def server(self, backend_id: str) -> LocalServer:
        return self.servers[backend_id.removeprefix("s3-")]

    def config(self, name: str = "greenroute.toml", *, allowed_regions: list[str] | None = None,
               allowed_providers: list[str] | None = None, buckets: dict[str, str] | None = None,
               extra_backends: str = "") -> Path:
        """Write a config over the fleet (or a variant of it) and return its path."""
        placement = {"sources": ["embedded"]}
        if allowed_regions is not None:
            placement["allowed_regions"] = allowed_regions
        if allowed_providers is not None:
            placement["allowed_providers"] = allowed_providers
        lines = ["[placement]"] + [f"{k} = {_toml(v)}" for k, v in placement.items()]
        lines += ["", "[catalog]", f"url = {_toml(self.catalog_url)}", ""]
        chosen = {**self.buckets, **(buckets or {})}
        for region in REGIONS:
            backend_id = f"s3-{region}"
            options = {"endpoint_url": self.servers[region].endpoint, "key": MOTO_KEY, "secret": MOTO_SECRET,
                       "client_kwargs": {"region_name": region}}
            lines += ["[[backends]]", f"id = {_toml(backend_id)}", 'provider = "s3"', f"region = {_toml(region)}",
                      f"root = {_toml(f's3://{chosen[backend_id]}/{PREFIX}')}", "renewable_pct = 100",
                      "pue = 1.15", f"storage_options = {_toml(options)}", ""]
        options = {"connection_string": azure_connection_string(self.azurite.endpoint)}
        lines += ["[[backends]]", f"id = {_toml(AZURE)}", 'provider = "azure"', f"region = {_toml(AZURE_REGION)}",
                  f"root = {_toml(f'az://{chosen[AZURE]}/{PREFIX}')}", "renewable_pct = 79", "pue = 1.16",
                  f"storage_options = {_toml(options)}", "", extra_backends]
        path = self.tmp / name
        path.write_text("\n".join(lines))
        return path

    def client(self, name: str = "greenroute.toml", **config: Any) -> GreenS3Client:
        """``greenroute.boto3_client(config=...)`` over a config written by :meth:`config` (closed at teardown)."""
        client_kwargs = config.pop("client_kwargs", {})
        s3 = greenroute.boto3_client(config=str(self.config(name, **config)), **client_kwargs)
        assert isinstance(s3, GreenS3Client)
        self._closers.append(s3.close)
        return s3

    def plain(self, backend_id: str) -> Any:
        """A plain boto3 client for an S3 backend's server, in its region (closed at teardown)."""
        client = plain_client(self.server(backend_id).endpoint, backend_id.removeprefix("s3-"))
        self._closers.append(client.close)
        return client

    def blob_service(self) -> BlobServiceClient:
        service = BlobServiceClient.from_connection_string(azure_connection_string(self.azurite.endpoint))
        self._closers.append(service.close)
        return service

    def physical_key(self, path: str) -> str:
        """The physical key (or blob name) of a logical path: the backend's prefix plus the path."""
        return f"{PREFIX}/{path}"

    def head(self, backend_id: str, path: str) -> tuple[int, dict[str, str]]:
        """Size and raw metadata of one object, read from its backend directly."""
        if backend_id == AZURE:
            props = self.blob_service().get_blob_client(self.buckets[AZURE], self.physical_key(path)) \
                .get_blob_properties()
            return int(props.size), dict(props.metadata)
        head = self.plain(backend_id).head_object(Bucket=self.buckets[backend_id], Key=self.physical_key(path))
        return int(head["ContentLength"]), dict(head["Metadata"])

    def stored(self, with_metadata: bool = False) -> list[Stored]:
        """Every object on every backend, listed from the backends themselves."""
        found: list[Stored] = []
        for backend_id in S3_IDS:
            client = self.plain(backend_id)
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=self.buckets[backend_id]):
                for obj in page.get("Contents", []):
                    path = obj["Key"].removeprefix(PREFIX + "/")
                    md = dict(client.head_object(Bucket=self.buckets[backend_id], Key=obj["Key"])["Metadata"]) \
                        if with_metadata else {}
                    found.append(Stored(backend_id, path, int(obj["Size"]), md))
        container = self.blob_service().get_container_client(self.buckets[AZURE])
        for blob in container.list_blobs(include=["metadata"]):
            found.append(Stored(AZURE, blob.name.removeprefix(PREFIX + "/"), int(blob.size),
                                dict(blob.metadata or {}) if with_metadata else {}))
        return found

    def close(self) -> None:
        for close in reversed(self._closers):
            close()
        self._closers.clear()


def unique(kind: str) -> str:
    return f"gr-{kind}-{uuid.uuid4().hex[:12]}"


def create_bucket(endpoint: str, name: str, region: str) -> None:
    client = plain_client(endpoint, region)
    try:
        config = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
        client.create_bucket(Bucket=name, **config)
    finally:
        client.close()


@pytest.fixture(scope="session")
def region_servers(moto_server_factory: Callable[[], LocalServer]) -> dict[str, LocalServer]:  # noqa: F811
    """Three moto servers, one per region, for the whole session."""
    return {region: moto_server_factory() for region in REGIONS}


def make_fleet(tmp: Path, servers: dict[str, LocalServer], azurite: LocalServer) -> Fleet:
    """Fresh buckets on every server and a fresh catalog under ``tmp``; call ``close()`` when done."""
    fleet = Fleet(tmp, servers, azurite)
    for region, server in servers.items():
        name = unique(region.replace("-", ""))
        create_bucket(server.endpoint, name, region)
        fleet.buckets[f"s3-{region}"] = name
    fleet.buckets[AZURE] = unique("azure")
    fleet.blob_service().create_container(fleet.buckets[AZURE])
    return fleet


@pytest.fixture
def fleet(tmp_path: Path, region_servers: dict[str, LocalServer],
          azurite_server: LocalServer) -> Iterator[Fleet]:  # noqa: F811
    """Fresh buckets on every server, a fresh catalog, and teardown of every client built."""
    fleet = make_fleet(tmp_path, region_servers, azurite_server)
    yield fleet
    fleet.close()
