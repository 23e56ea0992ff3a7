"""The shared base of greenroute's storage targets: one fsspec filesystem under one root URL.

:class:`FsspecTarget` implements :class:`greenroute.ports.StorageTarget` once: it maps logical
paths under the backend's root, reads, lists, deletes and copies, validates metadata, maps the
libraries' errors to builtin ``OSError`` subclasses, and wraps streams. Each provider module fills
in a few hooks:

* ``_put`` writes bytes and metadata, in one request where the backend allows;
* ``_open_inner`` / ``_commit_started`` / ``_discard`` stream a write and bind metadata at close
  (a stream that has sent nothing yet goes up in one ``_put`` at close);
* ``_raw_metadata`` reads metadata back (made canonical here), ``_copy`` copies server-side;
* ``_classify`` recognises the provider's missing / denied / unavailable errors;
* ``_aput``, optional, is ``_put`` as a coroutine of the library (s3fs, gcsfs, adlfs are async
  underneath), for the router's async entry points.

:meth:`FsspecTarget.awrite` and :meth:`FsspecTarget.aread` are the coroutines of ``write`` and
``read``: on the library's own event loop when it is async (``aread`` through its ``_cat_file``,
``awrite`` through ``_aput``), otherwise the blocking call on a worker thread (memory, local files).

Errors keep their cause (``raise ... from exc``) and never carry a secret from ``storage_options``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import builtins
import contextlib
import email.header
import errno
import io
import re
import shutil
from collections.abc import Callable, Coroutine, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import IO, Any, BinaryIO, ClassVar, Literal, TypeVar, cast
from urllib.parse import urlsplit

from greenroute.errors import (
    ConfigError,
    GreenrouteError,
    InvalidPathError,
    MetadataNotSupportedError,
    StorageError,
    TargetUnavailableError,
)
from greenroute.model import Backend, Provider
from greenroute.ports import ObjectInfo, StorageTarget
from greenroute.streams import AbandonableWriter

__all__ = [
    "FsspecTarget",
    "ObjectReader",
    "ObjectWriter",
    "canonical_metadata",
    "cloud_filesystem",
    "redact",
    "secret_values",
    "split_root",
]

Fault = Literal["missing", "denied", "unavailable"]
_T = TypeVar("_T")
#: (etag, modified) as far as a write's response tells them.
Stamp = tuple[str | None, datetime | None]

#: Metadata keys greenroute stores: lowercase identifiers (Azure accepts only C# identifiers,
#: S3 lowercases keys). The router applies the same rule to callers' keys.
_KEY = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
#: A whole RFC 2047 encoded word, as S3 itself returns non-ASCII values.
_ENCODED_WORD = re.compile(r"^=\?[^?]+\?[bBqQ]\?[^?]*\?=$")
_COPY_CHUNK = 1024 * 1024
_UNAVAILABLE_ERRNOS = frozenset({
    errno.ECONNREFUSED, errno.ECONNRESET, errno.ECONNABORTED, errno.ETIMEDOUT, errno.EHOSTUNREACH,
    errno.ENETUNREACH, errno.ENETDOWN, errno.EPIPE,
})
_SECRET_OPTION = re.compile(r"key|secret|token|password|credential|connection_string|sas|signature", re.I)
_NOT_SECRET = frozenset({"anon", "google_default", "cloud", "browser", "cache"})
_SECRET_PARAM = re.compile(
    r"(?i)\b(AccountKey|SharedAccessSignature|sig|X-Amz-Signature|X-Amz-Credential|X-Amz-Security-Token|"
    r"access_token|client_secret|password)=([^;&\s'\"]+)"
)


def split_root(backend: Backend, schemes: Iterable[str]) -> tuple[str, str]:
    """``(bucket, prefix)`` of a cloud root URL such as ``s3://bucket/some/prefix``.

    Raises:
        ConfigError: The root has another scheme or no bucket.
    """
    parts = urlsplit(backend.root)
    if parts.scheme not in schemes or not parts.netloc:
        raise ConfigError(f"root must look like {next(iter(schemes))}://bucket[/prefix], got {backend.root!r}",
                          key=f"backends.{backend.id}.root")
    return parts.netloc, parts.path.strip("/")


def cloud_filesystem(backend: Backend, schemes: Iterable[str], factory: Callable[..., Any]) -> tuple[Any, str]:
    """A cloud backend's fsspec filesystem, built by ``factory`` from its ``storage_options``, and its root.

    The filesystem's listings cache is off unless the options turn it on (the catalog, not a
    listing, is what greenroute trusts). The root is ``bucket`` or ``bucket/prefix``.

    Raises:
        ConfigError: The backend's root has another scheme or no bucket.
    """
    bucket, prefix = split_root(backend, schemes)
    options = dict(backend.storage_options)
    options.setdefault("use_listings_cache", False)
    return factory(**options), f"{bucket}/{prefix}" if prefix else bucket


def secret_values(options: Mapping[str, Any]) -> tuple[str, ...]:
    """The strings in ``options`` that may be credentials (by key name), longest first."""
    found: set[str] = set()

    def walk(key: str, value: Any) -> None:
        if isinstance(value, Mapping):
            for k, v in value.items():
                walk(str(k), v)
        elif isinstance(value, str) and _SECRET_OPTION.search(key) and value not in _NOT_SECRET and len(value) >= 4:
            found.add(value)
            found.update(m.group(2) for m in _SECRET_PARAM.finditer(value))

    for k, v in options.items():
        walk(str(k), v)
    return tuple(sorted(found, key=len, reverse=True))


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every known secret and every ``AccountKey=``/``sig=``-style value replaced by ``***``."""
    for secret in secrets:
        text = text.replace(secret, "***")
    return _SECRET_PARAM.sub(lambda m: f"{m.group(1)}=***", text)


def canonical_metadata(raw: Mapping[str, Any]) -> dict[str, str]:
    """Metadata as read from a store, in canonical form.

    Keys are lowercased with ``-`` turned into ``_`` (s3fs reports ``_`` as ``-``); values that are
    one RFC 2047 encoded word (how non-ASCII values are stored on S3 and Azure) are decoded.
    """
    return {str(k).lower().replace("-", "_"): _decode_value(str(v)) for k, v in raw.items()}


def _decode_value(value: str) -> str:
    if not _ENCODED_WORD.match(value):
        return value
    try:
        (raw, charset), = email.header.decode_header(value)
        return raw.decode(charset or "ascii") if isinstance(raw, bytes) else raw
    except (ValueError, LookupError, UnicodeDecodeError, binascii.Error):
        return value


def _encode_value(value: str, ascii_only: bool) -> str:
    if not ascii_only and not value.startswith("=?"):
        return value  # every write's every value: the common case first
    plain = value.isascii() and value.isprintable() and value == value.strip()
    if (plain or not ascii_only) and not value.startswith("=?"):
        return value
    return "=?utf-8?b?" + base64.b64encode(value.encode()).decode() + "?="


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    first = first if len(first) <= 200 else first[:197] + "..."
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def _as_datetime(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return _as_datetime(datetime.fromisoformat(value.replace("Z", "+00:00")))
    return None


class ObjectWriter(AbandonableWriter, io.BufferedIOBase):
    """A target's writable stream. ``close()`` binds the metadata and sets :attr:`info`.

    Leaving a ``with`` block by an exception, or calling :meth:`discard`, abandons the upload:
    nothing becomes visible.
    """

    def __init__(self, path: str, write: Callable[[memoryview], object], finish: Callable[[int], ObjectInfo],
                 abort: Callable[[], None]) -> None:
        super().__init__()
        self.path = path
        #: What was stored, after a successful close.
        self.info: ObjectInfo | None = None
        self._write = write
        self._finish = finish
        self._abort = abort
        self._size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        if self.closed:
            raise ValueError("write to a closed stream")
        view = memoryview(data)
        self._write(view)
        self._size += view.nbytes
        return view.nbytes

    def tell(self) -> int:
        return self._size

    def flush(self) -> None:
        """Nothing to do: the target uploads whole blocks as they fill."""

    def close(self) -> None:
        if self.closed:
            return
        try:
            self.info = self._finish(self._size)
        except BaseException:
            with contextlib.suppress(Exception):
                self._abort()
            raise
        finally:
            super().close()

    def discard(self) -> None:
        """Abandon the upload; nothing becomes visible."""
        if self.closed:
            return
        try:
            self._abort()
        finally:
            super().close()



class ObjectReader(io.BufferedIOBase):
    """A target's readable stream: the library's file object, with its errors mapped."""

    def __init__(self, inner: Any, guard: Callable[[], contextlib.AbstractContextManager[None]]) -> None:
        super().__init__()
        self._inner = inner
        self._guard = guard

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return bool(self._inner.seekable())

    def read(self, size: int | None = -1) -> bytes:
        with self._guard():
            return bytes(self._inner.read(-1 if size is None else size))

    def read1(self, size: int = -1) -> bytes:
        return self.read(size)

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read(view.nbytes)
        view[:len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        with self._guard():
            return int(self._inner.seek(offset, whence))

    def tell(self) -> int:
        return int(self._inner.tell())

    def close(self) -> None:
        if not self.closed:
            try:
                with self._guard():
                    self._inner.close()
            finally:
                super().close()


class FsspecTarget:
    """A :class:`~greenroute.ports.StorageTarget` over an fsspec filesystem rooted at ``root``.

    Attributes:
        backend: The backend this target stores to.
        fs: The fsspec filesystem.
        max_path_bytes: The longest logical path accepted, in UTF-8 bytes.
        max_segment_bytes: The longest path segment accepted, or ``None`` when only the whole
            path is limited.
    """

    provider: ClassVar[Provider]
    #: The store's limit for a whole object key or file path, in bytes.
    max_key_bytes: ClassVar[int] = 1024
    #: Whether metadata values must be printable ASCII on the wire (S3 and Azure send them as headers).
    ascii_metadata: ClassVar[bool] = False
    #: The store's limit for all user metadata (keys plus values), or ``None``.
    max_metadata_bytes: ClassVar[int | None] = None
    max_segment_bytes: int | None = None

    def __init__(self, backend: Backend, fs: Any, root: str) -> None:
        self.backend = backend
        self.fs = fs
        self._root = root.rstrip("/")
        self._secrets = secret_values(backend.storage_options)
        _bucket, _, prefix = self._root.lstrip("/").partition("/")
        self.max_path_bytes: int = self.max_key_bytes - (len(prefix.encode()) + 1 if prefix else 0)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(backend={self.backend.id!r}, root={self.backend.root!r})"

    __str__ = __repr__

    # -- the StorageTarget protocol ---------------------------------------------------------

    def url(self, path: str) -> str:
        return f"{self.backend.root.rstrip('/')}/{path}"

    def write(self, path: str, data: bytes | IO[bytes], metadata: Mapping[str, str]) -> ObjectInfo:
        stored = self._prepare_metadata(metadata)
        if isinstance(data, bytes | bytearray | memoryview):
            payload = bytes(data)
            full = self._full(path)
            with self._errors("write", path):
                etag, modified = self._put(full, payload, stored)
            return ObjectInfo(path, self.url(path), len(payload), etag, dict(metadata), modified)
        writer = self._writer(path, lambda _size: metadata, None, stored)
        try:
            shutil.copyfileobj(data, writer, _COPY_CHUNK)
        except BaseException:
            writer.discard()
            raise
        writer.close()
        return cast(ObjectInfo, writer.info)

    def open_write(self, path: str, metadata_at_close: Callable[[int], Mapping[str, str]],
                   *, block_size: int | None = None, size_hint: int | None = None) -> ObjectWriter:
        upfront = None if size_hint is None else self._prepare_metadata(dict(metadata_at_close(size_hint)))
        return self._writer(path, metadata_at_close, block_size, upfront)

    def open_read(self, path: str, *, block_size: int | None = None) -> BinaryIO:
        full = self._full(path)
        with self._errors("read", path):
            inner = self._open_read(full, block_size)
        return cast(BinaryIO, ObjectReader(inner, lambda: self._errors("read", path)))

    def read(self, path: str, start: int | None = None, end: int | None = None) -> bytes:
        full = self._full(path)
        with self._errors("read", path):
            return bytes(self.fs.cat_file(full, start=start, end=end))

    def stat(self, path: str) -> ObjectInfo:
        full = self._full(path)
        with self._errors("stat", path):
            info, raw = self._stat(full)
        return self._object_info(path, full, info, raw)

    def delete(self, path: str) -> None:
        full = self._full(path)
        with self._errors("delete", path):
            self._delete(full)

    def delete_if(self, path: str, decision_id: str) -> bool:
        full = self._full(path)
        with self._errors("delete", path):
            try:
                info, raw = self._stat(full)
            except FileNotFoundError:
                return False
            if self._object_info(path, full, info, raw).metadata.get("greenroute_decision") != decision_id:
                return False
            try:
                return self._delete_if_unchanged(full, info)
            except FileNotFoundError:
                return False

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        folder = prefix.rpartition("/")[0]
        where = f"{self._root}/{folder}" if folder else self._root
        with self._errors("list", folder):
            found = self.fs.find(where, detail=True)
        entries = []
        for name, info in sorted(found.items()):
            if info.get("type", "file") != "file" or not name.startswith(self._root + "/"):
                continue
            logical = name[len(self._root) + 1:]
            if logical.startswith(prefix) and not self._hidden(logical):
                entries.append((logical, name, info))
        for start in range(0, len(entries), 64):
            batch = entries[start:start + 64]
            with self._errors("list", folder):
                raws = self._list_metadata([(name, info) for _, name, info in batch])
            for (logical, name, info), raw in zip(batch, raws, strict=True):
                if raw is not None:  # None: deleted since it was listed
                    yield self._object_info(logical, name, info, raw)

    def copy(self, src: str, dst: str, metadata: Mapping[str, str]) -> ObjectInfo:
        stored = self._prepare_metadata(metadata)
        source, target = self._full(src), self._full(dst)
        with self._errors("copy", src):
            self._copy(source, target, stored)
        return self.stat(dst)

    # -- coroutines (the router's async entry points) ---------------------------------------

    async def awrite(self, path: str, data: bytes, metadata: Mapping[str, str]) -> ObjectInfo:
        """:meth:`write` of bytes as a coroutine: the provider's ``_aput`` on its library's event loop,
        or, for a provider without one, the blocking :meth:`write` on a worker thread."""
        if type(self)._aput is FsspecTarget._aput:
            return await asyncio.to_thread(self.write, path, data, metadata)
        stored = self._prepare_metadata(metadata)
        full = self._full(path)
        with self._errors("write", path):
            etag, modified = await self._on_library_loop(self._aput(full, data, stored))
        return ObjectInfo(path, self.url(path), len(data), etag, dict(metadata), modified)

    async def aread(self, path: str, start: int | None = None, end: int | None = None) -> bytes:
        """:meth:`read` as a coroutine: the library's ``_cat_file`` where it is async, else a worker thread."""
        if not getattr(self.fs, "async_impl", False):
            return await asyncio.to_thread(self.read, path, start, end)
        full = self._full(path)
        with self._errors("read", path):
            return bytes(await self._on_library_loop(self.fs._cat_file(full, start=start, end=end)))

    async def _on_library_loop(self, coro: Coroutine[Any, Any, _T]) -> _T:
        """Await ``coro`` on the event loop the library's sessions belong to, from whichever loop runs this."""
        loop = self.fs.loop
        if loop is asyncio.get_running_loop():
            return await coro
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, loop))

    # -- provider hooks -----------------------------------------------------------------------

    async def _aput(self, full: str, data: bytes, metadata: dict[str, str]) -> Stamp:
        """:meth:`_put` as a coroutine of the library, run on ``self.fs.loop`` (optional)."""
        raise NotImplementedError

    def _delete_if_unchanged(self, full: str, info: Mapping[str, Any]) -> bool:
        """Delete ``full`` only if it is still the object ``info`` describes; whether it was deleted.

        This default checks and deletes in two steps; providers with a conditional delete override it.
        """
        self._delete(full)
        return True

    def _delete_checked(self, full: str, delete: Callable[[], object],
                        changed: Callable[[Exception], bool]) -> bool:
        """Run a provider's conditional delete of ``full``; ``False`` when ``changed`` says the store refused it.

        The store checks and deletes in one step, so a newer object under the name survives.
        """
        try:
            delete()
        except Exception as exc:
            if changed(exc):
                return False
            raise
        finally:
            self.fs.invalidate_cache(full)
        return True

    def _put(self, full: str, data: bytes, metadata: dict[str, str]) -> Stamp:
        """Store ``data`` with ``metadata`` (already encoded), in one request where possible."""
        raise NotImplementedError

    def _open_inner(self, full: str, block_size: int | None, metadata: dict[str, str] | None) -> Any:
        """The library's write stream; ``metadata`` is given when it is known up front."""
        raise NotImplementedError

    def _commit(self, inner: Any, full: str, metadata: dict[str, str], size: int,
                upfront: dict[str, str] | None) -> Stamp:
        """Finish the upload of ``inner`` so that the object carries ``metadata``.

        While an fsspec buffered file has uploaded nothing (``offset is None``), all its bytes are
        still in its buffer: they go up with the metadata in one :meth:`_put`. Otherwise
        :meth:`_commit_started` finishes the upload the provider's way.
        """
        if getattr(inner, "offset", 0) is None:
            data = inner.buffer.getvalue()
            inner.closed = True  # nothing was sent, so there is nothing to cancel
            return self._put(full, data, metadata)
        return self._commit_started(inner, full, metadata, upfront)

    def _commit_started(self, inner: Any, full: str, metadata: dict[str, str],
                        upfront: dict[str, str] | None) -> Stamp:
        """Finish an upload that has begun (``upfront`` is the metadata it was opened with)."""
        raise NotImplementedError

    def _discard(self, inner: Any, full: str) -> None:
        """Abandon the upload of ``inner``."""
        try:
            inner.discard()
        finally:
            inner.closed = True  # never let the library's __del__ commit a partial upload

    def _raw_metadata(self, full: str, info: Mapping[str, Any]) -> Mapping[str, Any]:
        """The object's metadata as the store reports it (``info`` is its listing or info entry)."""
        raise NotImplementedError

    def _copy(self, source: str, target: str, metadata: dict[str, str]) -> None:
        """Copy server-side, replacing the metadata."""
        raise NotImplementedError

    def _open_read(self, full: str, block_size: int | None) -> Any:
        return self.fs.open(full, "rb", block_size=block_size)

    def _stat(self, full: str) -> tuple[Mapping[str, Any], Mapping[str, Any]]:
        info = self.fs.info(full)
        if info.get("type") != "file":
            raise FileNotFoundError(errno.ENOENT, "not an object", full)
        return info, self._raw_metadata(full, info)

    def _delete(self, full: str) -> None:
        self.fs.rm_file(full)

    def _list_metadata(self, entries: builtins.list[tuple[str, Mapping[str, Any]]]
                       ) -> builtins.list[Mapping[str, Any] | None]:
        out: builtins.list[Mapping[str, Any] | None] = []
        for name, info in entries:
            try:
                out.append(self._raw_metadata(name, info))
            except FileNotFoundError:
                out.append(None)
        return out

    def _hidden(self, logical: str) -> bool:
        """Whether a stored name is greenroute's own bookkeeping, never listed."""
        return False

    def _etag(self, info: Mapping[str, Any]) -> str | None:
        value = info.get("ETag") or info.get("etag")
        return str(value).strip('"') if value else None

    def _modified(self, full: str, info: Mapping[str, Any]) -> datetime | None:
        for key in ("LastModified", "last_modified", "mtime", "updated", "created"):
            if info.get(key) is not None:
                return _as_datetime(info[key])
        return None

    def _classify(self, exc: BaseException) -> Fault | None:
        """What kind of fault ``exc`` is, without looking at its causes."""
        if isinstance(exc, FileNotFoundError):
            return "missing"
        if isinstance(exc, PermissionError):
            return "denied"
        if isinstance(exc, ConnectionError | TimeoutError):
            return "unavailable"
        if isinstance(exc, OSError) and exc.errno in _UNAVAILABLE_ERRNOS:
            return "unavailable"
        return None

    # -- shared machinery ---------------------------------------------------------------------

    def _full(self, path: str) -> str:
        if not path or path.startswith("/") or "\x00" in path or ".." in path.split("/"):
            raise InvalidPathError(path, "not a logical path")
        return f"{self._root}/{path}"

    def _prepare_metadata(self, metadata: Mapping[str, str]) -> dict[str, str]:
        """Check ``metadata`` and return it as stored (values encoded where the wire needs it)."""
        stored: dict[str, str] = {}
        for key, value in metadata.items():
            if not isinstance(key, str) or not _KEY.match(key):
                raise MetadataNotSupportedError(
                    f"{self.backend.id}: metadata key {key!r} is not a lowercase identifier "
                    "(a-z, 0-9, '_', starting with a letter, at most 64)", backend_id=self.backend.id)
            if not isinstance(value, str):
                raise MetadataNotSupportedError(
                    f"{self.backend.id}: metadata value of {key!r} is a {type(value).__name__}, not a str",
                    backend_id=self.backend.id)
            stored[key] = _encode_value(value, self.ascii_metadata)
        limit = self.max_metadata_bytes
        size = 0 if limit is None else len("".join(stored).encode()) + len("".join(stored.values()).encode())
        if limit is not None and size > limit:
            raise MetadataNotSupportedError(
                f"{self.backend.id}: metadata takes {size} bytes, over this store's {self.max_metadata_bytes}",
                backend_id=self.backend.id)
        return stored

    def _writer(self, path: str, metadata_at_close: Callable[[int], Mapping[str, str]], block_size: int | None,
                upfront: dict[str, str] | None) -> ObjectWriter:
        full = self._full(path)
        with self._errors("write", path):
            inner = self._open_inner(full, block_size, upfront)

        def write(data: memoryview) -> None:
            with self._errors("write", path):
                inner.write(data)

        def finish(size: int) -> ObjectInfo:
            metadata = dict(metadata_at_close(size))
            stored = self._prepare_metadata(metadata)
            with self._errors("write", path):
                etag, modified = self._commit(inner, full, stored, size, upfront)
            return ObjectInfo(path, self.url(path), size, etag, metadata, modified)

        def abort() -> None:
            with self._errors("discard", path):
                self._discard(inner, full)

        return ObjectWriter(path, write, finish, abort)

    def _after_commit(self, full: str, action: Callable[[], object]) -> None:
        """Run ``action`` on a just-committed object; if it fails, remove the object and raise.

        An object never stays behind without its metadata.
        """
        try:
            action()
        except BaseException:
            with contextlib.suppress(Exception):
                self.fs.rm_file(full)
            raise

    def _object_info(self, logical: str, full: str, info: Mapping[str, Any], raw: Mapping[str, Any]) -> ObjectInfo:
        return ObjectInfo(path=logical, url=self.url(logical), size=int(info.get("size") or 0),
                          etag=self._etag(info), metadata=canonical_metadata(raw),
                          modified=self._modified(full, info))

    @contextlib.contextmanager
    def _errors(self, operation: str, path: str) -> Iterator[None]:
        """Map any library error raised inside to greenroute's errors (keeping the cause)."""
        try:
            yield
        except GreenrouteError:
            raise
        except Exception as exc:
            if getattr(exc, "greenroute_mapped", False):
                raise
            raise self._map_error(exc, operation, path) from exc

    def _map_error(self, exc: BaseException, operation: str, path: str) -> OSError:
        fault = self._fault(exc)
        where = self.url(path) if path else self.backend.root
        detail = redact(_describe(exc), self._secrets)
        bid = self.backend.id
        mapped: OSError
        if fault == "missing":
            mapped = FileNotFoundError(errno.ENOENT, f"{bid}: no such object ({detail})", where)
        elif fault == "denied":
            mapped = PermissionError(errno.EACCES, f"{bid}: access denied ({detail})", where)
        elif fault == "unavailable":
            mapped = TargetUnavailableError(f"{bid}: {operation} {where}: target unavailable ({detail})",
                                            backend_id=bid)
        else:
            mapped = StorageError(f"{bid}: {operation} {where} failed ({detail})", backend_id=bid)
        setattr(mapped, "greenroute_mapped", True)  # noqa: B010 (a plain attribute on builtin errors)
        return mapped

    def _fault(self, exc: BaseException) -> Fault | None:
        """The first recognised fault along ``exc``'s chain of causes and contexts."""
        queue: builtins.list[BaseException] = [exc]
        seen: set[int] = set()
        while queue and len(seen) < 16:
            current = queue.pop(0)
            if id(current) in seen:
                continue
            seen.add(id(current))
            fault = self._classify(current)
            if fault is not None:
                return fault
            queue.extend(e for e in (current.__cause__, current.__context__) if e is not None)
        return None


def _conforms(target: FsspecTarget) -> StorageTarget:
    return target  # mypy checks that every target satisfies the port
