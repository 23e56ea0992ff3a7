"""The file objects and boundary errors of ``greenroute://`` (see :mod:`greenroute.adapters.fsspec.filesystem`).

* :class:`GreenRouteWriteFile`: the router's placed-at-open, committed-at-close write, as an fsspec
  file (``tell``, ``commit``/``discard`` for transactions), abandoned on an exception or when dropped.
* :class:`GreenRouteReadFile`: a committed object read through its backend's own file object.
* :class:`GreenRouteAsyncReadFile`: the same for ``await fs.open_async(path)``, read with the router's coroutines.
* Text and compression layers whose failure abandons the write, and an upload reader that reports
  progress to an fsspec callback.
* :func:`oserrors`: greenroute's errors as builtin ``OSError`` subclasses, keeping ``__cause__``.
"""

from __future__ import annotations

import contextlib
import errno
import io
from collections.abc import Iterator
from types import TracebackType
from typing import Any, BinaryIO, Protocol

from fsspec.asyn import AbstractAsyncStreamedFile  # type: ignore[import-untyped]

from greenroute.errors import GreenrouteError, InvalidMetadataError, InvalidPathError, NoEligibleBackendError
from greenroute.model import CarbonPlacementDecision, CatalogEntry
from greenroute.router import WriteResult
from greenroute.streams import AbandonableWriter

__all__ = [
    "CodecFile",
    "GreenRouteAsyncReadFile",
    "GreenRouteReadFile",
    "GreenRouteWriteFile",
    "InvalidFsMetadataError",
    "InvalidFsPathError",
    "NoEligibleBackendFsError",
    "ProgressReader",
    "RouterStream",
    "TextWriter",
    "copy_stream",
    "oserrors",
]

PROTOCOL = "greenroute"


# -- errors ---------------------------------------------------------------------------------------


class InvalidFsPathError(InvalidPathError, OSError):
    """A path (or metadata) greenroute will not store, at the filesystem boundary.

    It is an ``OSError`` (``errno.EINVAL``) as callers of a filesystem expect, a ``ValueError`` as s3fs
    raises for paths that cannot name an object, and still a :class:`~greenroute.errors.InvalidPathError`.
    """

    def __init__(self, path: str, why: str) -> None:
        super().__init__(path, why)
        self.errno = errno.EINVAL
        self.strerror = str(self.args[0])
        self.filename = path

    def __str__(self) -> str:
        return str(self.args[0])

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.path, self.why)


class InvalidFsMetadataError(InvalidMetadataError, OSError):
    """Caller metadata greenroute will not store, at the filesystem boundary (``errno.EINVAL``; also a ValueError)."""

    def __init__(self, key: str, why: str) -> None:
        super().__init__(key, why)
        self.errno = errno.EINVAL
        self.strerror = str(self.args[0])

    def __str__(self) -> str:
        return str(self.args[0])

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.key, self.why)


class NoEligibleBackendFsError(NoEligibleBackendError, OSError):
    """No backend may take this write (each candidate's reason is kept in :attr:`reasons`)."""

    def __str__(self) -> str:
        return str(self.args[0])

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.reasons,)


@contextlib.contextmanager
def oserrors(path: str) -> Iterator[None]:
    """Let ``OSError`` through; turn greenroute's other errors into ``OSError`` subclasses (keeping the cause)."""
    try:
        yield
    except OSError:
        raise
    except InvalidPathError as exc:
        raise InvalidFsPathError(exc.path, exc.why) from exc
    except InvalidMetadataError as exc:
        raise InvalidFsMetadataError(exc.key, exc.why) from exc
    except NoEligibleBackendError as exc:
        raise NoEligibleBackendFsError(exc.reasons) from exc
    except GreenrouteError as exc:
        raise OSError(errno.EIO, f"{path}: {exc}") from exc


# -- files ----------------------------------------------------------------------------------------


class RouterStream(Protocol):
    """What :meth:`GreenRouter.open` returns for ``"wb"``: commits on close, or discards."""

    decision: CarbonPlacementDecision

    @property
    def closed(self) -> bool: ...

    @property
    def info(self) -> WriteResult | None: ...

    def write(self, data: Any) -> int: ...

    def close(self) -> None: ...

    def discard(self) -> None: ...


class GreenRouteWriteFile(AbandonableWriter, io.BufferedIOBase):
    """A write to ``greenroute://``: placed at open, committed with its carbon values at close.

    Leaving a ``with`` block by an exception, calling :meth:`discard`, or dropping the file without
    closing it abandons the write. Inside ``fs.transaction`` the commit waits for the transaction.

    Attributes:
        fs: The filesystem that opened the file (fsspec files carry it as ``.fs``).
        path: The logical path.
        mode: ``"wb"`` or ``"xb"``.
        decision: The placement decision made at open (``decision.backend_id`` is where it goes).
        result: The router's :class:`~greenroute.router.WriteResult`, once committed.
    """

    def __init__(self, fs: Any, path: str, mode: str, stream: RouterStream, *,
                 autocommit: bool = True) -> None:
        super().__init__()
        self.fs = fs
        self.path = path
        self.mode = mode
        self.autocommit = autocommit
        self.decision = stream.decision
        self.result: WriteResult | None = None
        self._stream = stream
        self._size = 0

    def __repr__(self) -> str:
        return f"<GreenRouteWriteFile {PROTOCOL}://{self.path} -> {self.decision.backend_id}>"

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        if self.closed:
            raise ValueError("write to a closed file")
        size = memoryview(data).nbytes
        with oserrors(self.path):
            self._stream.write(data)
        self._size += size
        return size

    def tell(self) -> int:
        return self._size

    def flush(self) -> None:
        """Nothing to do: the backend uploads whole blocks as they fill."""

    def close(self) -> None:
        if self.closed:
            return
        if not self.autocommit:
            super().close()  # the transaction commits or discards it
            return
        try:
            self.commit()
        finally:
            super().close()

    def commit(self) -> None:
        """Make the object visible and record it (``close()`` does this outside a transaction)."""
        if self._stream.closed:
            return
        with oserrors(self.path):
            self._stream.close()
        self.result = self._stream.info

    def discard(self) -> None:
        """Abandon the write: nothing is committed and nothing becomes visible."""
        try:
            if not self._stream.closed:
                self._stream.discard()
        finally:
            super().close()



class GreenRouteReadFile(io.BufferedIOBase):
    """A read of a committed object, through its backend's own file object (ranged, seekable).

    Attributes:
        fs: The filesystem that opened the file (fsspec files carry it as ``.fs``).
        path: The logical path.
        size: The object's size, from the catalog.
        details: The object's :meth:`GreenRouteFileSystem.info`.
    """

    mode = "rb"

    def __init__(self, fs: Any, entry: CatalogEntry, inner: BinaryIO,
                 details: dict[str, Any]) -> None:
        super().__init__()
        self.fs = fs
        self.path = entry.path
        self.size = entry.size
        self.details = details
        self._inner = inner

    def __repr__(self) -> str:
        return f"<GreenRouteReadFile {PROTOCOL}://{self.path} on {self.details['greenroute_backend']}>"

    def info(self) -> dict[str, Any]:
        return dict(self.details)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return self._inner.seekable()

    def read(self, size: int | None = -1) -> bytes:
        return self._inner.read(-1 if size is None else size)

    def read1(self, size: int = -1) -> bytes:
        return self._inner.read(size)

    # readinto and readinto1: io.BufferedIOBase's own, which copy what read and read1 return

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._inner.seek(offset, whence)

    def tell(self) -> int:
        return self._inner.tell()

    def close(self) -> None:
        if not self.closed:
            try:
                self._inner.close()
            finally:
                super().close()


class GreenRouteAsyncReadFile(AbstractAsyncStreamedFile):  # type: ignore[misc]
    """A committed object read from an event loop (``await f.read(n)``, ``seek``, ``tell``).

    It reads the object of the entry found at open, with the router's coroutines: on the backend
    library's own loop where it has one, else a worker thread.

    Attributes:
        fs: The filesystem that opened the file.
        path: The logical path.
        size: The object's size, from the catalog.
        details: The object's :meth:`GreenRouteFileSystem.info`.
    """

    def __init__(self, fs: Any, entry: CatalogEntry, details: dict[str, Any]) -> None:
        super().__init__(fs, entry.path, mode="rb", size=entry.size)
        self.entry = entry
        self.details = details

    def __repr__(self) -> str:
        return f"<GreenRouteAsyncReadFile {PROTOCOL}://{self.path} on {self.entry.backend_id}>"

    async def _fetch_range(self, start: int, end: int) -> bytes:
        with oserrors(self.path):
            data: bytes = await self.fs.router.aread_entry(self.entry, start, end)
            return data


class TextWriter(io.TextIOWrapper):
    """Text mode over a :class:`GreenRouteWriteFile`: an exception in the ``with`` block abandons the write."""

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is not None and not self.closed:
            discard = getattr(self.buffer, "discard", None)
            if discard is not None:
                discard()
        super().__exit__(exc_type, exc, tb)


class CodecFile(AbandonableWriter, io.BufferedIOBase):
    """A compression codec over a greenroute file; closing it also closes (and so commits) the file."""

    def __init__(self, codec: Any, raw: Any) -> None:
        super().__init__()
        self._codec = codec
        self._raw = raw

    def readable(self) -> bool:
        return bool(self._codec.readable())

    def writable(self) -> bool:
        return bool(self._codec.writable())

    def seekable(self) -> bool:
        return bool(self._codec.seekable())

    def read(self, size: int | None = -1) -> bytes:
        return bytes(self._codec.read(-1 if size is None else size))

    def read1(self, size: int = -1) -> bytes:
        reader = getattr(self._codec, "read1", self._codec.read)
        return bytes(reader(size))

    def readinto(self, buffer: Any) -> int:
        return int(self._codec.readinto(buffer))

    def write(self, data: Any) -> int:
        return int(self._codec.write(data))

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return int(self._codec.seek(offset, whence))

    def tell(self) -> int:
        return int(self._codec.tell())

    def flush(self) -> None:
        """Nothing to do: a codec flush would only add sync blocks; ``close()`` writes everything."""

    def close(self) -> None:
        if self.closed:
            return
        try:
            self._codec.close()
        except BaseException:
            self.discard()
            raise
        try:
            self._raw.close()
        finally:
            super().close()

    def discard(self) -> None:
        """Abandon the underlying write (or just close a read)."""
        try:
            discard = getattr(self._raw, "discard", None)
            if discard is not None:
                discard()
            else:
                self._raw.close()
            with contextlib.suppress(Exception):
                self._codec.close()
        finally:
            super().close()



class ProgressReader(io.RawIOBase):
    """A local file that reports what is read from it to an fsspec callback."""

    def __init__(self, inner: BinaryIO, callback: Any) -> None:
        super().__init__()
        self._inner = inner
        self._callback = callback

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return self._inner.seekable()

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._inner.seek(offset, whence)

    def tell(self) -> int:
        return self._inner.tell()

    def read(self, size: int = -1) -> bytes:
        data = self._inner.read(size)
        self._callback.relative_update(len(data))
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(memoryview(buffer).nbytes)
        memoryview(buffer).cast("B")[:len(data)] = data
        return len(data)


def copy_stream(src: BinaryIO, dst: Any, chunk: int, callback: Any) -> None:
    """Copy ``src`` to ``dst`` in ``chunk``-sized reads, reporting each to an fsspec ``callback``."""
    while True:
        data = src.read(chunk)
        if not data:
            return
        dst.write(data)
        callback.relative_update(len(data))
