"""What the file and memory targets do beyond the contract: where metadata lives, hidden files."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
from tests.targets.conftest import build_target, unique_name

from greenroute.adapters.storage.file import FileTarget
from greenroute.errors import ConfigError, InvalidPathError, MetadataNotSupportedError

MD = {"greenroute_gco2e": "1.5", "greenroute_path": "ns/a.bin", "team": "data"}


def _file_target(tmp_path: Path, store: str = "auto") -> FileTarget:
    target = build_target("file", (tmp_path / "root").as_uri(), {"metadata_store": store})
    assert isinstance(target, FileTarget)
    return target


def test_xattr_names(tmp_path: Path) -> None:
    target = _file_target(tmp_path)
    target.write("ns/a.bin", b"x", MD)
    names = set(os.listxattr(tmp_path / "root" / "ns" / "a.bin"))
    assert names == {"user.greenroute_gco2e", "user.greenroute_path", "user.greenroute_user.team"}
    assert sorted(os.listdir(tmp_path / "root" / "ns")) == ["a.bin"]  # no sidecar, no temporary file


def test_sidecar_is_hidden_json(tmp_path: Path) -> None:
    target = _file_target(tmp_path, "sidecar")
    target.write("ns/a.bin", b"x", MD)
    sidecar = tmp_path / "root" / "ns" / ".a.bin.greenroute.json"
    assert json.loads(sidecar.read_text()) == MD
    assert os.listxattr(tmp_path / "root" / "ns" / "a.bin") == []
    assert [i.path for i in target.list()] == ["ns/a.bin"]
    target.delete("ns/a.bin")
    assert not sidecar.exists()


def test_falls_back_to_sidecar_without_xattrs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def unsupported(*args: object) -> None:
        raise OSError(errno.ENOTSUP, "Operation not supported")

    monkeypatch.setattr(os, "setxattr", unsupported)
    target = _file_target(tmp_path)
    target.write("ns/a.bin", b"x", MD)
    assert dict(target.stat("ns/a.bin").metadata) == MD
    assert (tmp_path / "root" / "ns" / ".a.bin.greenroute.json").exists()
    strict = _file_target(tmp_path, "xattr")
    with pytest.raises(MetadataNotSupportedError):
        strict.write("ns/b.bin", b"x", MD)
    assert sorted(os.listdir(tmp_path / "root" / "ns")) == [".a.bin.greenroute.json", "a.bin"]


def test_xattr_write_replaces_an_older_sidecar(tmp_path: Path) -> None:
    _file_target(tmp_path, "sidecar").write("ns/a.bin", b"old", {"team": "old"})
    target = _file_target(tmp_path)
    target.write("ns/a.bin", b"new", MD)
    assert dict(target.stat("ns/a.bin").metadata) == MD
    assert not (tmp_path / "root" / "ns" / ".a.bin.greenroute.json").exists()


def test_reserved_names_are_refused(tmp_path: Path) -> None:
    target = _file_target(tmp_path)
    for path in ("ns/.a.bin.greenroute.json", "ns/.gr-tmp-0123", ".gr-tmp-x/a.bin"):
        with pytest.raises(InvalidPathError):
            target.write(path, b"x", MD)


def test_abandoned_stream_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = _file_target(tmp_path)
    target.write("ns/keep.bin", b"x", MD)
    stream = target.open_write("ns/a.bin", lambda n: MD)
    stream.write(b"partial")
    assert len(os.listdir(tmp_path / "root" / "ns")) == 2  # keep.bin and the hidden temporary file
    assert [i.path for i in target.list()] == ["ns/keep.bin"]
    stream.discard()  # type: ignore[attr-defined]
    assert os.listdir(tmp_path / "root" / "ns") == ["keep.bin"]


def test_file_root_must_be_an_absolute_file_url() -> None:
    for root in ("file://relative/x", "/abs/path", "s3://bucket"):
        with pytest.raises(ConfigError):
            build_target("file", root)


def test_memory_roots_are_separate_namespaces() -> None:
    name = unique_name()
    first = build_target("memory", f"memory://{name}/one")
    second = build_target("memory", f"memory://{name}/two")
    first.write("ns/a.bin", b"1", MD)
    second.write("ns/a.bin", b"2", {"team": "other"})
    assert first.read("ns/a.bin") == b"1"
    assert dict(first.stat("ns/a.bin").metadata) == MD
    assert [i.path for i in second.list()] == ["ns/a.bin"]


def test_memory_readers_are_independent() -> None:
    target = build_target("memory", f"memory://{unique_name()}")
    target.write("ns/a.bin", b"abcdef", MD)
    one, two = target.open_read("ns/a.bin"), target.open_read("ns/a.bin")
    assert one.read(3) == b"abc"
    assert two.read(2) == b"ab"
    assert one.read() == b"def"


def test_memory_stream_is_invisible_until_close() -> None:
    target = build_target("memory", f"memory://{unique_name()}")
    with target.open_write("ns/a.bin", lambda n: {**MD, "size": str(n)}) as stream:
        stream.write(b"abc")
        with pytest.raises(FileNotFoundError):
            target.stat("ns/a.bin")
    assert target.stat("ns/a.bin").metadata["size"] == "3"
