"""An in-process storage target (``memory://name/prefix``), for tests, demos and dry runs.

It uses fsspec's memory filesystem, whose store is shared by the whole process: targets are kept
apart by their root, so two backends must not share one. Metadata lives on the stored object
itself, so replacing, copying or deleting the object carries it along. A streamed write becomes
visible only at close, with its metadata, and so does a multipart upload (its parts are kept in
memory until :meth:`MemoryUpload.complete`).
"""

from __future__ import annotations

import errno
import io
import threading
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from fsspec.implementations.memory import MemoryFile, MemoryFileSystem  # type: ignore[import-untyped]

from greenroute.errors import ConfigError
from greenroute.model import Backend, Provider

from ._fsspec_target import FsspecTarget, Stamp
from ._multipart import StagedUpload

__all__ = ["MemoryTarget", "MemoryUpload", "from_backend"]

_ATTR = "greenroute_metadata"
_LOCK = threading.Lock()


class MemoryTarget(FsspecTarget):
    """Objects in this process's memory, under ``memory://name/prefix``."""

    provider = Provider.MEMORY

    def __init__(self, backend: Backend) -> None:
        if not backend.root.startswith("memory://") or not backend.root[len("memory://"):].strip("/"):
            raise ConfigError(f"root must look like memory://name[/prefix], got {backend.root!r}",
                              key=f"backends.{backend.id}.root")
        fs = MemoryFileSystem()
        super().__init__(backend, fs, fs._strip_protocol(backend.root))

    def _put(self, full: str, data: bytes, metadata: dict[str, str]) -> Stamp:
        item = MemoryFile(self.fs, full, data)
        return self._commit(item, full, metadata, len(data), None)

    def _open_inner(self, full: str, block_size: int | None, metadata: dict[str, str] | None) -> Any:
        return MemoryFile(self.fs, full)  # not in the store until committed

    def _commit(self, inner: Any, full: str, metadata: dict[str, str], size: int,
                upfront: dict[str, str] | None) -> Stamp:
        setattr(inner, _ATTR, dict(metadata))
        with _LOCK:
            inner.commit()
        return None, inner.modified

    def _discard(self, inner: Any, full: str) -> None:
        """Nothing was stored."""

    def _delete_if_unchanged(self, full: str, info: Mapping[str, Any]) -> bool:
        with _LOCK:  # the same lock as a commit's: no write can land between the check and the delete
            item = self.fs.store.get(full)
            if item is None or getattr(item, "created", None) != info.get("created"):
                return False
            del self.fs.store[full]
            return True

    def _open_read(self, full: str, block_size: int | None) -> Any:
        return io.BytesIO(self.fs.cat_file(full))  # the store's object must not share a position

    def _stat(self, full: str) -> tuple[Mapping[str, Any], Mapping[str, Any]]:
        # The store itself, not fs.info(), which calls ``a`` a directory once ``a/b`` exists: as in an
        # object store, ``a`` and ``a/b`` are two objects.
        item = self.fs.store.get(full)
        if item is None:
            raise FileNotFoundError(errno.ENOENT, "no such object", full)
        info = {"name": full, "size": item.size, "type": "file", "created": getattr(item, "created", None)}
        return info, dict(getattr(item, _ATTR, {}))

    def _raw_metadata(self, full: str, info: Mapping[str, Any]) -> Mapping[str, Any]:
        item = self.fs.store.get(full)
        if item is None:
            raise FileNotFoundError(errno.ENOENT, "no such object", full)
        return dict(getattr(item, _ATTR, {}))

    def _copy(self, source: str, target: str, metadata: dict[str, str]) -> None:
        item = self.fs.store.get(source)
        if item is None:
            raise FileNotFoundError(errno.ENOENT, "no such object", source)
        self._commit(MemoryFile(self.fs, target, item.getvalue()), target, metadata, item.size, None)

    def _modified(self, full: str, info: Mapping[str, Any]) -> datetime | None:
        item = self.fs.store.get(full)
        return item.modified if item is not None else super()._modified(full, info)

    def open_multipart(self, path: str, metadata_at_close: Callable[[int], Mapping[str, str]], *,
                       size_hint: int | None = None) -> MemoryUpload:
        """A multipart upload whose parts wait in memory until it completes."""
        return MemoryUpload(self, path, metadata_at_close, size_hint)


class MemoryUpload(StagedUpload):
    """A multipart upload to a :class:`MemoryTarget`: parts in a dict, joined into one object at complete."""

    def __init__(self, target: MemoryTarget, path: str, metadata_at_close: Callable[[int], Mapping[str, str]],
                 size_hint: int | None) -> None:
        super().__init__(target, path, metadata_at_close, size_hint)
        self._memory = target
        self._parts: dict[int, bytes] = {}

    def _send(self, number: int, data: bytes) -> str | None:
        with self._lock:
            self._parts[number] = bytes(data)
        return None

    def _join(self, numbers: list[int], stored: dict[str, str], size: int) -> Stamp:
        with self._lock:
            data = b"".join(self._parts[n] for n in numbers)
        return self._memory._commit(MemoryFile(self._memory.fs, self._full, data), self._full, stored, size, None)

    def _drop(self) -> None:
        with self._lock:
            self._parts.clear()


def from_backend(backend: Backend) -> MemoryTarget:
    """The ``greenroute.targets`` entry point for ``provider = "memory"``."""
    return MemoryTarget(backend)
