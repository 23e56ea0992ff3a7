"""A local-directory storage target (``file:///abs/path``).

Every write goes to a hidden temporary file in the destination directory, gets its metadata,
and is renamed into place, so an object appears whole and with its metadata or not at all.

Metadata is kept in extended attributes, ``user.greenroute_*`` for greenroute's own keys and
``user.greenroute_user.<key>`` for the caller's. Where the filesystem has no user extended
attributes (or they do not fit), it goes to a hidden sidecar, ``.<name>.greenroute.json``, beside
the object; ``metadata_store="sidecar"`` forces that. Temporary files and sidecars never show in
:meth:`FileTarget.list`, and logical paths may not use their names.

A multipart upload (:meth:`FileTarget.open_multipart`) keeps each part as a hidden temporary file in
the object's folder, on the target's own disk, and at completion concatenates the listed parts
(``copy_file_range``, which shares blocks where the filesystem can) into the temporary file that
becomes the object, as above.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import secrets
import shutil
from collections.abc import Callable, Iterator, Mapping
from typing import IO, Any, Literal
from urllib.parse import unquote, urlsplit

from fsspec.implementations.local import LocalFileSystem  # type: ignore[import-untyped]

from greenroute.errors import ConfigError, InvalidPathError, MetadataNotSupportedError
from greenroute.model import Backend, Provider

from ._fsspec_target import Fault, FsspecTarget, Stamp
from ._multipart import StagedUpload

__all__ = ["FileTarget", "FileUpload", "from_backend"]

MetadataStore = Literal["auto", "xattr", "sidecar"]

_TMP_PREFIX = ".gr-tmp-"
_SIDECAR_SUFFIX = ".greenroute.json"
_XATTR_PREFIX = "user.greenroute_"
_XATTR_USER = "user.greenroute_user."
#: errnos meaning "this filesystem cannot keep these extended attributes": use a sidecar.
_NO_XATTR = frozenset({errno.ENOTSUP, errno.EOPNOTSUPP, errno.E2BIG, errno.ERANGE, errno.ENOSPC, errno.EPERM})
#: errnos worth failing over on a local disk.
_LOCAL_UNAVAILABLE = frozenset({errno.EIO, errno.ENOSPC, errno.EDQUOT, errno.ESTALE, errno.EROFS, errno.ENODEV,
                                errno.ENXIO})


def _xattr_name(key: str) -> str:
    return "user." + key if key.startswith("greenroute_") else _XATTR_USER + key


def _key_of(name: str) -> str | None:
    if name.startswith(_XATTR_USER):
        return name[len(_XATTR_USER):]
    if name.startswith(_XATTR_PREFIX):
        return name[len("user."):]
    return None


class _Pending:
    """A write in progress: the open temporary file."""

    def __init__(self, full: str) -> None:
        self.directory = os.path.dirname(full)
        os.makedirs(self.directory, exist_ok=True)
        self.tmp = os.path.join(self.directory, _TMP_PREFIX + secrets.token_hex(8))
        fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
        self.file: IO[bytes] = os.fdopen(fd, "wb")

    def write(self, data: Any) -> None:
        self.file.write(data)


class FileTarget(FsspecTarget):
    """Objects as files under a local directory.

    Args:
        backend: Its ``root`` is a ``file:///absolute/path`` URL.
        metadata_store: ``"auto"`` (extended attributes, falling back to a sidecar file where
            they are not supported), ``"xattr"`` (extended attributes or
            :class:`~greenroute.errors.MetadataNotSupportedError`), or ``"sidecar"``.
    """

    provider = Provider.FILE
    max_key_bytes = 4095  # PATH_MAX includes the NUL
    #: NAME_MAX less the sidecar's affixes.
    max_segment_bytes = 255 - 1 - len(_SIDECAR_SUFFIX)

    def __init__(self, backend: Backend, *, metadata_store: MetadataStore = "auto") -> None:
        parts = urlsplit(backend.root)
        if parts.scheme != "file" or parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise ConfigError(f"root must look like file:///absolute/path, got {backend.root!r}",
                              key=f"backends.{backend.id}.root")
        if metadata_store not in ("auto", "xattr", "sidecar"):
            raise ConfigError(f"metadata_store must be auto, xattr or sidecar, got {metadata_store!r}",
                              key=f"backends.{backend.id}.storage_options.metadata_store")
        root = os.path.normpath(unquote(parts.path))
        super().__init__(backend, LocalFileSystem(), root)
        self.metadata_store: MetadataStore = metadata_store
        self.max_path_bytes = self.max_key_bytes - len(root.rstrip("/").encode()) - 1

    # -- writes ---------------------------------------------------------------------------------

    def _full(self, path: str) -> str:
        if any(self._reserved(segment) for segment in path.split("/")):
            raise InvalidPathError(path, "uses a name the file target keeps for itself "
                                         f"({_TMP_PREFIX}* or .*{_SIDECAR_SUFFIX})")
        return super()._full(path)

    def _put(self, full: str, data: bytes, metadata: dict[str, str]) -> Stamp:
        pending = self._open_inner(full, None, metadata)
        try:
            pending.write(data)
            return self._commit(pending, full, metadata, len(data), metadata)
        except BaseException:
            self._discard(pending, full)
            raise

    def _open_inner(self, full: str, block_size: int | None, metadata: dict[str, str] | None) -> _Pending:
        return self._pending(full)

    def _pending(self, full: str) -> _Pending:
        """A new temporary file in ``full``'s folder (made as needed)."""
        try:
            return _Pending(full)
        except (FileExistsError, NotADirectoryError) as exc:
            raise self._name_conflict(full) from exc

    def _commit(self, inner: Any, full: str, metadata: dict[str, str], size: int,
                upfront: dict[str, str] | None) -> Stamp:
        pending: _Pending = inner
        pending.file.close()
        with self._locked(full):
            self._bind(pending.tmp, full, metadata)
            try:
                os.replace(pending.tmp, full)
            except IsADirectoryError as exc:
                raise self._name_conflict(full) from exc
        return None, None

    def _name_conflict(self, full: str) -> OSError:
        """Why ``full`` cannot be an object here: it is a folder of others, or lies under another object.

        Object stores keep ``a`` and ``a/b`` side by side; in a folder one of them would have to be
        both a file and a folder. The error is the builtin one, with the logical names in its text.
        """
        logical = full[len(self._root) + 1:]
        parts = logical.split("/")
        bid = self.backend.id
        mapped: OSError
        above = next(("/".join(parts[:i]) for i in range(1, len(parts))
                      if os.path.isfile(f"{self._root}/{'/'.join(parts[:i])}")), None)
        if above is not None:
            mapped = NotADirectoryError(errno.ENOTDIR, f"{bid}: {above!r} is an object on this local target, so "
                                                       f"{logical!r} cannot be stored under it", self.url(logical))
        else:
            mapped = IsADirectoryError(errno.EISDIR, f"{bid}: {logical!r} is a folder of other objects on this "
                                                     "local target, so no object can take its name", self.url(logical))
        setattr(mapped, "greenroute_mapped", True)  # noqa: B010 (raised as is by _errors)
        return mapped

    @contextlib.contextmanager
    def _locked(self, full: str) -> Iterator[None]:
        """Lock the object's folder: its final rename and a conditional delete never interleave, across
        threads and processes (``flock`` on the folder itself, so no lock file is left beside the objects;
        flocks conflict between open file descriptions, so threads of one process exclude each other too)."""
        fd = os.open(os.path.dirname(full), os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def delete_if(self, path: str, decision_id: str) -> bool:
        full = self._full(path)
        with self._errors("delete", path):
            try:
                with self._locked(full):
                    if self.stat(path).metadata.get("greenroute_decision") != decision_id:
                        return False
                    self._delete(full)
                    return True
            except FileNotFoundError:
                return False

    def _discard(self, inner: Any, full: str) -> None:
        pending: _Pending = inner
        pending.file.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(pending.tmp)

    def _bind(self, tmp: str, full: str, metadata: dict[str, str]) -> None:
        """Give the temporary file ``tmp`` (about to become ``full``) its metadata."""
        sidecar = self._sidecar(full)
        if self.metadata_store != "sidecar":
            try:
                for key, value in metadata.items():
                    os.setxattr(tmp, _xattr_name(key), value.encode())
            except OSError as exc:
                if exc.errno not in _NO_XATTR:
                    raise
                if self.metadata_store == "xattr":
                    raise MetadataNotSupportedError(
                        f"{self.backend.id}: cannot keep metadata in extended attributes here "
                        f"({os.strerror(exc.errno or 0)}); use metadata_store='auto' or 'sidecar'",
                        backend_id=self.backend.id) from exc
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(sidecar)  # left by an earlier write in sidecar mode
                return
        side_tmp = os.path.join(os.path.dirname(full), _TMP_PREFIX + secrets.token_hex(8))
        try:
            with open(side_tmp, "w", encoding="utf-8") as out:
                json.dump(metadata, out, ensure_ascii=False, sort_keys=True)
            os.replace(side_tmp, sidecar)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(side_tmp)
            raise

    # -- reads ----------------------------------------------------------------------------------

    def _open_read(self, full: str, block_size: int | None) -> Any:
        return open(full, "rb", buffering=block_size or -1)

    def _raw_metadata(self, full: str, info: Mapping[str, Any]) -> Mapping[str, Any]:
        try:
            with open(self._sidecar(full), encoding="utf-8") as sidecar:
                loaded = json.load(sidecar)
            if not os.path.exists(full):
                raise FileNotFoundError(errno.ENOENT, "no such object", full)
            return {str(k): str(v) for k, v in loaded.items()}
        except FileNotFoundError:
            pass
        try:
            names = os.listxattr(full)
        except OSError as exc:
            if exc.errno in _NO_XATTR:
                return {}
            raise
        out: dict[str, str] = {}
        for name in names:
            key = _key_of(name)
            if key is not None:
                out[key] = os.getxattr(full, name).decode()
        return out

    def _delete(self, full: str) -> None:
        os.unlink(full)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._sidecar(full))

    def _copy(self, source: str, target: str, metadata: dict[str, str]) -> None:
        pending = self._pending(target)
        try:
            with open(source, "rb") as src:
                shutil.copyfileobj(src, pending.file, 1024 * 1024)
            self._commit(pending, target, metadata, 0, None)
        except BaseException:
            self._discard(pending, target)
            raise

    def _hidden(self, logical: str) -> bool:
        return self._reserved(logical.rpartition("/")[2])

    def _classify(self, exc: BaseException) -> Fault | None:
        if isinstance(exc, IsADirectoryError | NotADirectoryError):
            return "missing"  # a directory is never an object, nor is anything under a file
        if isinstance(exc, OSError) and exc.errno in _LOCAL_UNAVAILABLE:
            return "unavailable"
        return super()._classify(exc)

    def open_multipart(self, path: str, metadata_at_close: Callable[[int], Mapping[str, str]], *,
                       size_hint: int | None = None) -> FileUpload:
        """A multipart upload whose parts are hidden files in the object's folder until it completes."""
        return FileUpload(self, path, metadata_at_close, size_hint)

    @staticmethod
    def _sidecar(full: str) -> str:
        head, _, name = full.rpartition("/")
        return f"{head}/.{name}{_SIDECAR_SUFFIX}"

    @staticmethod
    def _reserved(name: str) -> bool:
        return name.startswith(_TMP_PREFIX) or (name.startswith(".") and name.endswith(_SIDECAR_SUFFIX))


class FileUpload(StagedUpload):
    """A multipart upload to a :class:`FileTarget`: part files beside the object, concatenated at complete."""

    def __init__(self, target: FileTarget, path: str, metadata_at_close: Callable[[int], Mapping[str, str]],
                 size_hint: int | None) -> None:
        super().__init__(target, path, metadata_at_close, size_hint)
        self._file = target
        self._folder = os.path.dirname(self._full)

    def _part(self, number: int) -> str:
        return os.path.join(self._folder, f"{_TMP_PREFIX}{self._token}-{number:05d}")

    def _send(self, number: int, data: bytes) -> str | None:
        # A fresh temporary file, renamed over the part: a resent part is whole.
        pending = self._file._pending(self._full)
        try:
            pending.write(data)
            pending.file.close()
            os.replace(pending.tmp, self._part(number))
        except BaseException:
            self._file._discard(pending, self._full)
            raise
        return None

    def _join(self, numbers: list[int], stored: dict[str, str], size: int) -> Stamp:
        pending = self._file._pending(self._full)
        try:
            for number in numbers:
                with open(self._part(number), "rb") as part:
                    _append(part, pending.file)
            return self._file._commit(pending, self._full, stored, size, stored)
        except BaseException:
            self._file._discard(pending, self._full)
            raise

    def _drop(self) -> None:
        mine = f"{_TMP_PREFIX}{self._token}-"
        try:
            names = os.listdir(self._folder)
        except FileNotFoundError:
            return
        for name in names:
            if name.startswith(mine):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(self._folder, name))


def _append(source: IO[bytes], out: IO[bytes]) -> None:
    """Copy all of ``source`` to the end of ``out``, in the kernel where it can (sharing blocks on CoW filesystems)."""
    out.flush()
    try:
        while os.copy_file_range(source.fileno(), out.fileno(), 1 << 30):
            pass
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
            raise
        shutil.copyfileobj(source, out, 1024 * 1024)


def from_backend(backend: Backend) -> FileTarget:
    """The ``greenroute.targets`` entry point for ``provider = "file"``.

    ``storage_options`` may set ``metadata_store`` (``auto``, ``xattr`` or ``sidecar``).
    """
    store = backend.storage_options.get("metadata_store", "auto")
    return FileTarget(backend, metadata_store=store)
