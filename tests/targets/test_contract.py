"""The StorageTarget contract, run against every target: memory, file (xattr and sidecar), S3 (moto),
GCS (gcp-storage-emulator) and Azure (Azurite)."""

from __future__ import annotations

import contextlib
import gc
import hashlib
import io
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from tests.servers.local import AZURITE_KEY
from tests.targets.conftest import CLOUD_KINDS, cloud_target, unique_name

from greenroute.adapters.storage._fsspec_target import FsspecTarget
from greenroute.errors import MetadataNotSupportedError, StorageError, TargetUnavailableError
from greenroute.ports import METADATA_KEYS, ObjectInfo

pytestmark = pytest.mark.filterwarnings("ignore:Sending a large body directly with raw bytes:ResourceWarning")

MiB = 2**20
#: Every greenroute key plus a caller's key; the path value is not ASCII on purpose.
METADATA: dict[str, str] = {
    "greenroute_gco2e": "0.000123",
    "greenroute_gco2e_month": "4.5e-05",
    "greenroute_intensity": "231",
    "greenroute_signal": "average",
    "greenroute_source": "embedded",
    "greenroute_backend": "contract-test",
    "greenroute_decision": "0194f2a7-7c1e-7d3b-9a55-2f9c1d0e8b42",
    "greenroute_path": "lake/données/naïve.parquet",
    "greenroute_model": "greenroute-carbon/1",
    "team": "data",
}
assert set(METADATA_KEYS) <= set(METADATA)


def _payload(size: int, seed: int = 0) -> bytes:
    block = hashlib.sha256(f"greenroute-{seed}".encode()).digest() * 2048  # 64 KiB
    return (block * (size // len(block) + 1))[:size]


def test_write_and_read_bytes(target: FsspecTarget) -> None:
    data = _payload(100_000)
    info = target.write("ns/obj.bin", data, METADATA)
    assert isinstance(info, ObjectInfo)
    assert (info.path, info.size, info.url) == ("ns/obj.bin", len(data), target.url("ns/obj.bin"))
    assert info.url == target.backend.root.rstrip("/") + "/ns/obj.bin"
    assert dict(info.metadata) == METADATA
    assert target.read("ns/obj.bin") == data
    with target.open_read("ns/obj.bin") as stream:
        assert stream.read() == data


def test_write_file_object_streams(target: FsspecTarget) -> None:
    data = _payload(3 * MiB + 17, seed=1)
    info = target.write("ns/deep/er/file.bin", io.BytesIO(data), METADATA)
    assert info.size == len(data)
    assert target.read("ns/deep/er/file.bin") == data
    assert dict(target.stat("ns/deep/er/file.bin").metadata) == METADATA


def test_metadata_reads_back_identically(target: FsspecTarget) -> None:
    target.write("ns/md.bin", b"x", METADATA)
    assert dict(target.stat("ns/md.bin").metadata) == METADATA
    listed = {i.path: dict(i.metadata) for i in target.list("ns/")}
    assert listed == {"ns/md.bin": METADATA}


def test_awkward_metadata_values_round_trip(target: FsspecTarget) -> None:
    awkward = {"spaced": "  padded value ", "looks_encoded": "=?utf-8?b?Zm9v?=", "empty": "", "emoji": "🌍 low"}
    target.write("ns/awkward.bin", b"x", awkward)
    assert dict(target.stat("ns/awkward.bin").metadata) == awkward


def test_invalid_metadata_is_refused_not_dropped(target: FsspecTarget) -> None:
    with pytest.raises(MetadataNotSupportedError):
        target.write("ns/bad.bin", b"x", {"Bad-Key": "v"})
    with pytest.raises(MetadataNotSupportedError):
        target.write("ns/bad.bin", b"x", {"count": 3})  # type: ignore[dict-item]
    with pytest.raises(FileNotFoundError):
        target.stat("ns/bad.bin")


def test_streamed_write_binds_metadata_at_close(target: FsspecTarget) -> None:
    """12 MiB in 1 MiB writes with 5 MiB blocks: S3 goes multipart, GCS starts a resumable upload."""
    size = 12 * MiB + 12345
    data = _payload(size, seed=2)
    seen: list[int] = []

    def at_close(n: int) -> dict[str, str]:
        seen.append(n)
        return {**METADATA, "greenroute_gco2e": f"{n * 1e-9:.6g}", "size": str(n)}

    stream = target.open_write("ns/big.bin", at_close, block_size=5 * MiB)
    for start in range(0, size, MiB):
        stream.write(data[start:start + MiB])
    stream.close()
    expected = {**METADATA, "greenroute_gco2e": f"{size * 1e-9:.6g}", "size": str(size)}
    assert seen[-1] == size
    assert seen[:-1] in ([], [0])  # S3 creates its upload with the values for size 0, then binds these
    info = stream.info  # type: ignore[attr-defined]
    assert info.size == size
    assert dict(info.metadata) == expected
    stat = target.stat("ns/big.bin")
    assert stat.size == size
    assert dict(stat.metadata) == expected
    assert hashlib.sha256(target.read("ns/big.bin")).digest() == hashlib.sha256(data).digest()


@pytest.mark.parametrize("size", [0, 10])
def test_small_streamed_write_binds_metadata_at_close(target: FsspecTarget, size: int) -> None:
    with target.open_write("ns/small.bin", lambda n: {**METADATA, "size": str(n)}) as stream:
        stream.write(_payload(size))
    assert target.read("ns/small.bin") == _payload(size)
    assert dict(target.stat("ns/small.bin").metadata) == {**METADATA, "size": str(size)}


def test_streamed_write_abandoned_on_error_leaves_nothing(target: FsspecTarget) -> None:
    with pytest.raises(RuntimeError), target.open_write("ns/abandoned.bin", lambda n: METADATA) as stream:
        stream.write(_payload(1000))
        raise RuntimeError("caller failed mid-write")
    with pytest.raises(FileNotFoundError):
        target.stat("ns/abandoned.bin")
    assert list(target.list("ns/")) == []


def test_dropped_stream_is_not_committed(target: FsspecTarget) -> None:
    stream = target.open_write("ns/dropped.bin", lambda n: METADATA, block_size=5 * MiB)
    stream.write(_payload(6 * MiB))
    del stream
    gc.collect()
    with pytest.raises(FileNotFoundError):
        target.stat("ns/dropped.bin")


def test_range_reads(target: FsspecTarget) -> None:
    data = bytes(range(256)) * 40
    target.write("ns/range.bin", data, METADATA)
    assert target.read("ns/range.bin", 10, 20) == data[10:20]
    assert target.read("ns/range.bin", start=10_000) == data[10_000:]
    assert target.read("ns/range.bin", end=5) == data[:5]
    with target.open_read("ns/range.bin", block_size=1024) as stream:
        stream.seek(3000)
        assert stream.read(100) == data[3000:3100]


def test_stat(target: FsspecTarget) -> None:
    before = datetime.now(UTC) - timedelta(minutes=5)
    target.write("ns/stat.bin", b"hello", METADATA)
    info = target.stat("ns/stat.bin")
    assert (info.path, info.url, info.size) == ("ns/stat.bin", target.url("ns/stat.bin"), 5)
    assert info.modified is not None and info.modified.tzinfo is not None
    assert before <= info.modified <= datetime.now(UTC) + timedelta(minutes=5)
    if target.backend.provider.value in CLOUD_KINDS:
        assert info.etag and '"' not in info.etag


def test_overwrite_replaces_data_and_metadata(target: FsspecTarget) -> None:
    target.write("ns/over.bin", b"first", {**METADATA, "old": "yes"})
    target.write("ns/over.bin", b"second!", METADATA)
    assert target.read("ns/over.bin") == b"second!"
    assert dict(target.stat("ns/over.bin").metadata) == METADATA


def test_delete(target: FsspecTarget) -> None:
    target.write("ns/gone.bin", b"x", METADATA)
    target.delete("ns/gone.bin")
    with pytest.raises(FileNotFoundError):
        target.stat("ns/gone.bin")
    with pytest.raises(FileNotFoundError):
        target.read("ns/gone.bin")
    with pytest.raises(FileNotFoundError):
        target.delete("ns/gone.bin")


def test_list_with_prefix_is_recursive_with_metadata(target: FsspecTarget) -> None:
    paths = ["a/b/1.bin", "a/b/2.bin", "a/c/d/3.bin", "ab/4.bin", "x/5.bin"]
    for i, path in enumerate(paths):
        target.write(path, _payload(10 + i), {**METADATA, "n": str(i)})

    def listed(prefix: str) -> dict[str, tuple[int, str]]:
        return {i.path: (i.size, i.metadata["n"]) for i in target.list(prefix)}

    assert listed("a/") == {"a/b/1.bin": (10, "0"), "a/b/2.bin": (11, "1"), "a/c/d/3.bin": (12, "2")}
    assert set(listed("a")) == {"a/b/1.bin", "a/b/2.bin", "a/c/d/3.bin", "ab/4.bin"}
    assert set(listed("a/b/2")) == {"a/b/2.bin"}
    assert set(listed("")) == set(paths)
    assert listed("nothing/") == {}
    every = list(target.list())
    assert all(dict(i.metadata) == {**METADATA, "n": i.metadata["n"]} for i in every)
    assert all(i.url == target.url(i.path) for i in every)


def test_copy_replaces_metadata(target: FsspecTarget) -> None:
    data = _payload(50_000, seed=3)
    target.write("ns/src.bin", data, METADATA)
    replaced = {**METADATA, "greenroute_decision": "another-decision", "team": "ml"}
    info = target.copy("ns/src.bin", "other/dst.bin", replaced)
    assert (info.path, info.size) == ("other/dst.bin", len(data))
    assert dict(info.metadata) == replaced
    assert target.read("other/dst.bin") == data
    assert dict(target.stat("other/dst.bin").metadata) == replaced
    assert dict(target.stat("ns/src.bin").metadata) == METADATA
    fewer = {"greenroute_path": "other/dst.bin"}
    target.copy("ns/src.bin", "other/dst.bin", fewer)
    assert dict(target.stat("other/dst.bin").metadata) == fewer


def test_missing_object_raises_file_not_found(target: FsspecTarget) -> None:
    target.write("ns/here.bin", b"x", METADATA)
    for call in (lambda: target.read("ns/missing.bin"), lambda: target.stat("ns/missing.bin"),
                 lambda: target.open_read("ns/missing.bin"), lambda: target.delete("ns/missing.bin"),
                 lambda: target.copy("ns/missing.bin", "ns/copy.bin", METADATA),
                 lambda: target.stat("ns")):  # a "directory" is not an object
        with pytest.raises(FileNotFoundError) as caught:
            call()
        assert caught.value.__cause__ is not None or caught.value.__context__ is not None


@pytest.mark.parametrize("kind", CLOUD_KINDS)
def test_missing_bucket_is_a_client_error(kind: str, server_for: Callable[[str], object]) -> None:
    server = server_for(kind)
    target = cloud_target(kind, server.endpoint, bucket=unique_name(), create=False)  # type: ignore[attr-defined]
    with pytest.raises(FileNotFoundError):
        target.stat("ns/x.bin")
    with pytest.raises((FileNotFoundError, PermissionError)) as caught:
        target.write("ns/x.bin", b"x", METADATA)
    assert not isinstance(caught.value, TargetUnavailableError)


@pytest.mark.parametrize("kind", CLOUD_KINDS)
def test_unreachable_endpoint_is_target_unavailable(kind: str, unreachable_target: Callable[[str], FsspecTarget]
                                                    ) -> None:
    target = unreachable_target(kind)
    started = time.monotonic()
    calls = (lambda: target.write("ns/x.bin", b"x", METADATA), lambda: target.read("ns/x.bin"),
             lambda: target.stat("ns/x.bin"), lambda: list(target.list("ns/")),
             lambda: target.open_write("ns/y.bin", lambda n: METADATA).close())
    for call in calls:
        with pytest.raises(TargetUnavailableError) as caught:
            call()
        error = caught.value
        assert isinstance(error, ConnectionError) and isinstance(error, OSError)
        assert error.backend_id == target.backend.id
        assert error.__cause__ is not None
    assert time.monotonic() - started < 20


def test_no_secret_in_reprs_errors_or_logs(kind: str, target: FsspecTarget,
                                           unreachable_target: Callable[[str], FsspecTarget],
                                           caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    targets = [target] + ([unreachable_target(kind)] if kind in CLOUD_KINDS else [])
    for subject in targets:
        secrets = [v for k, v in _flatten(subject.backend.storage_options).items()
                   if any(word in k for word in ("key", "secret", "connection_string"))]
        if kind in ("s3", "azure"):
            assert secrets, "the test must have secrets to look for"
        texts = [repr(subject), str(subject), repr(subject.backend)]
        with contextlib.suppress(OSError):
            subject.write("ns/ok.bin", b"x", METADATA)
        for call in (lambda: subject.read("ns/missing.bin"), lambda: subject.stat("ns/missing.bin"),  # noqa: B023
                     lambda: subject.write("ns/bad.bin", b"x", {"Bad": "x"})):  # noqa: B023
            with pytest.raises(OSError) as caught:
                call()
            texts += [str(caught.value), repr(caught.value)]
        for text in texts:
            for secret in secrets:
                assert secret not in text
            assert "AccountKey=" not in text or "AccountKey=***" in text
        # botocore's own DEBUG log shows the access key *id* in the Authorization header; secret
        # keys, account keys and connection strings must never appear.
        logged = caplog.text
        for secret in secrets:
            assert secret == subject.backend.storage_options.get("key") or secret not in logged
        assert AZURITE_KEY not in logged


def test_path_limits(target: FsspecTarget) -> None:
    assert isinstance(target.max_path_bytes, int)
    if target.backend.provider.value in CLOUD_KINDS or target.backend.provider.value == "memory":
        assert target.max_path_bytes == 1024 - len("pre/fix/")
    else:
        root = target.backend.root.removeprefix("file://")
        assert target.max_path_bytes == 4095 - len(root.encode()) - 1
        assert target.max_segment_bytes is not None and target.max_segment_bytes <= 255


def test_errors_are_oserrors_with_backend(target: FsspecTarget) -> None:
    with pytest.raises(MetadataNotSupportedError) as caught:
        target.write("ns/x.bin", b"x", {"k": "v" * 10_000}) if target.max_metadata_bytes else \
            target.write("ns/x.bin", b"x", {"K": "v"})
    assert isinstance(caught.value, StorageError) and isinstance(caught.value, OSError)
    assert caught.value.backend_id == target.backend.id


def _flatten(options: object, prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    if isinstance(options, dict) or hasattr(options, "items"):
        for key, value in options.items():  # type: ignore[attr-defined]
            out.update(_flatten(value, f"{prefix}{key}."))
    elif isinstance(options, str):
        out[prefix.rstrip(".")] = options
    return out


# -- conditional deletes: an old copy is removed only while it holds the replaced write's bytes ------------


def test_delete_if_removes_only_the_decision_it_names(target: FsspecTarget) -> None:
    target.write("ns/cond.bin", b"old", METADATA)
    assert target.delete_if("ns/cond.bin", "another-decision") is False
    assert target.read("ns/cond.bin") == b"old"
    assert target.delete_if("ns/cond.bin", METADATA["greenroute_decision"]) is True
    assert [i.path for i in target.list("ns/")] == []
    assert target.delete_if("ns/cond.bin", METADATA["greenroute_decision"]) is False  # missing: nothing to do


# File targets hold a lock across the check and the delete instead (tests/test_write_stress.py races them), and
# gcp-storage-emulator ignores ifGenerationMatch on DELETE, which real GCS honours, so neither can be raced here.
@pytest.mark.parametrize("kind", ["memory", "s3", "azure"])
def test_delete_if_spares_an_object_overwritten_between_its_check_and_its_delete(target: FsspecTarget) -> None:
    """Another writer stores the same key after delete_if has checked it: the conditional delete must refuse."""
    newer = {**METADATA, "greenroute_decision": "newer-writer"}

    class Overtaken(type(target)):  # type: ignore[misc]
        def _delete_if_unchanged(self, full: str, info: Any) -> bool:
            self.write("ns/raced.bin", b"newer bytes", newer)  # lands between the check and the delete
            return super()._delete_if_unchanged(full, info)  # type: ignore[no-any-return]

    racer = Overtaken(target.backend)
    racer.write("ns/raced.bin", b"old bytes", METADATA)
    assert racer.delete_if("ns/raced.bin", METADATA["greenroute_decision"]) is False
    assert target.read("ns/raced.bin") == b"newer bytes"
    assert target.stat("ns/raced.bin").metadata["greenroute_decision"] == "newer-writer"


# -- an object and objects under its name ---------------------------------------------------------------------


@pytest.mark.parametrize("first", ["ns/a", "ns/a/b"])
def test_an_object_and_objects_under_its_name(target: FsspecTarget, kind: str, first: str) -> None:
    """Object stores (and memory) keep ``ns/a`` and ``ns/a/b`` as two objects; a folder cannot, and says so."""
    second = "ns/a" if first == "ns/a/b" else "ns/a/b"
    decision = {**METADATA, "greenroute_path": first}
    target.write(first, b"first", decision)
    if kind.startswith("file"):
        error = IsADirectoryError if second == "ns/a" else NotADirectoryError
        with pytest.raises(error, match="ns/a"):
            target.write(second, b"second", {**METADATA, "greenroute_path": second})
        with pytest.raises(error, match="ns/a"), target.open_write(second, lambda n: {**METADATA, "size": str(n)}) as s:
            s.write(b"second")
        assert [(i.path, target.read(i.path)) for i in target.list("ns/")] == [(first, b"first")]
        return
    target.write(second, b"second", {**METADATA, "greenroute_path": second})
    for path, data in ((first, b"first"), (second, b"second")):
        assert target.read(path) == data
        info = target.stat(path)
        assert (info.size, info.metadata["greenroute_path"]) == (len(data), path)
    assert sorted((i.path, i.metadata["greenroute_path"]) for i in target.list("ns/")) == [
        ("ns/a", "ns/a"), ("ns/a/b", "ns/a/b")]
    assert target.delete_if("ns/a", METADATA["greenroute_decision"]) is True
    assert target.read("ns/a/b") == (b"first" if first == "ns/a/b" else b"second")
    assert [i.path for i in target.list("ns/")] == ["ns/a/b"]
