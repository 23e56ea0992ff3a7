"""Every target's own multipart upload (``open_multipart``), against the real servers.

Parts go to the backend as they arrive, out of order and from several threads; a part sent twice
is replaced; a completion may leave parts out; the object carries the metadata of its real size; an
abort leaves nothing the backend lists (and on S3 no multipart upload in progress); staged parts are
never listed by the target.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from tests.servers.fixtures import azurite_server, gcs_server, moto_server  # noqa: F401
from tests.servers.local import LocalServer
from tests.targets.conftest import build_target, cloud_target

from greenroute.adapters.storage._fsspec_target import FsspecTarget
from greenroute.ports import MultipartTarget, MultipartWrite

MiB = 2**20
KINDS = ("memory", "file-xattr", "file-sidecar", "s3", "gcs", "azure")
_SERVERS = {"s3": "moto_server", "gcs": "gcs_server", "azure": "azurite_server"}


def make_target(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> FsspecTarget:
    if kind == "memory":
        return build_target(kind, f"memory://gr-mp-{os.urandom(6).hex()}/pre/fix")
    if kind.startswith("file"):
        return build_target(kind, (tmp_path / "root").as_uri(), {"metadata_store": kind.split("-")[1]})
    server: LocalServer = request.getfixturevalue(_SERVERS[kind])
    return cloud_target(kind, server.endpoint)


@pytest.fixture(params=KINDS)
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FsspecTarget]:
    yield make_target(str(request.param), request, tmp_path)


def sized(size: int) -> dict[str, str]:
    """The metadata a router would bind for ``size`` bytes (the size is what changes)."""
    return {"greenroute_gco2e": f"{size * 1e-9:.6g}", "greenroute_path": "media/clip.bin", "team": "video"}


def opener(target: FsspecTarget) -> Callable[..., MultipartWrite]:
    multipart: MultipartTarget = target  # type: ignore[assignment]  # every shipped target is one
    return multipart.open_multipart


def payload(size: int, seed: int) -> bytes:
    block = hashlib.sha256(f"mp-{seed}".encode()).digest() * 4096  # 128 KiB
    return (block * (size // len(block) + 1))[:size]


def part_size(target: FsspecTarget) -> int:
    return 5 * MiB if target.provider.value == "s3" else 256 * 1024  # S3's minimum for all but the last


def send_all(upload: MultipartWrite, parts: dict[int, bytes]) -> None:
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda n: upload.upload_part(n, parts[n]), sorted(parts, reverse=True)))


def test_parts_out_of_order_from_threads_become_one_object_with_the_real_sizes_metadata(
        target: FsspecTarget) -> None:
    size = part_size(target)
    parts = {n: payload(size if n < 4 else 1234, n) for n in range(1, 5)}
    upload = opener(target)("media/clip.bin", sized, size_hint=None)
    send_all(upload, parts)
    upload.upload_part(2, payload(size, 99))  # sent again: replaces part 2
    parts[2] = payload(size, 99)
    assert list(target.list("media/")) == []  # nothing visible, staged parts never listed
    info = upload.complete([1, 2, 3, 4])
    data = b"".join(parts[n] for n in range(1, 5))
    assert info.size == len(data)
    assert target.read("media/clip.bin") == data
    assert dict(target.stat("media/clip.bin").metadata) == sized(len(data))
    assert [i.path for i in target.list("")] == ["media/clip.bin"]  # staged parts are gone


def test_a_completion_may_leave_parts_out(target: FsspecTarget) -> None:
    size = part_size(target)
    upload = opener(target)("media/clip.bin", sized, size_hint=3 * size)
    parts = {n: payload(size, n) for n in (1, 2, 3)}
    send_all(upload, parts)
    info = upload.complete([1, 3])
    assert target.read("media/clip.bin") == parts[1] + parts[3]
    assert info.size == 2 * size
    assert dict(target.stat("media/clip.bin").metadata) == sized(2 * size)
    assert [i.path for i in target.list("")] == ["media/clip.bin"]


def test_abort_leaves_nothing_listed(target: FsspecTarget, tmp_path: Path) -> None:
    upload = opener(target)("media/gone.bin", sized, size_hint=None)
    upload.upload_part(1, payload(part_size(target), 1))
    upload.upload_part(2, b"tail")
    upload.abort()
    assert list(target.list("")) == []
    with pytest.raises(FileNotFoundError):
        target.stat("media/gone.bin")
    if target.provider.value == "file":
        assert [p.name for p in (tmp_path / "root").rglob("*") if p.is_file()] == []
    if target.provider.value == "s3":
        bucket = target.fs.split_path(target._full("media/gone.bin"))[0]
        assert target.fs.call_s3("list_multipart_uploads", Bucket=bucket).get("Uploads", []) == []
    if target.provider.value == "gcs":  # the part objects themselves, listed without the target's filter
        assert target.fs.find(target._root) == []


@pytest.mark.parametrize("kind", [k for k in KINDS if k != "s3"])  # S3's parts but the last are 5 MiB or more
def test_many_parts_join_in_order(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    target = make_target(kind, request, tmp_path)
    count = 33  # more than one GCS compose takes: composed in rounds
    parts = {n: payload(1000 + n, n) for n in range(1, count + 1)}
    upload = opener(target)("media/many.bin", sized, size_hint=None)
    send_all(upload, parts)
    info = upload.complete(list(range(1, count + 1)))
    data = b"".join(parts[n] for n in range(1, count + 1))
    assert info.size == len(data)
    assert target.read("media/many.bin") == data
    assert dict(target.stat("media/many.bin").metadata)["greenroute_gco2e"] == sized(len(data))["greenroute_gco2e"]
    assert [i.path for i in target.list("")] == ["media/many.bin"]


def test_bad_part_lists_are_refused_and_the_upload_stays_open(target: FsspecTarget) -> None:
    upload = opener(target)("media/bad.bin", sized, size_hint=None)
    upload.upload_part(1, b"only")
    for parts in ([], [2], [1, 1]):
        with pytest.raises(ValueError):
            upload.complete(parts)
    with pytest.raises(ValueError):
        upload.upload_part(0, b"x")
    assert upload.complete([1]).size == 4
    assert target.read("media/bad.bin") == b"only"


@pytest.mark.parametrize("kind", ["gcs", "file-xattr"])  # the targets that stage parts beside objects
def test_logical_paths_may_not_use_staging_names(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    target = make_target(kind, request, tmp_path)
    with pytest.raises(ValueError, match="keeps for itself"):
        target.write("media/.gr-tmp-x", b"x", {})
