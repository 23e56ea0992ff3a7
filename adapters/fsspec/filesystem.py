"""``greenroute://``: the routing fsspec filesystem, so any fsspec-speaking tool gets carbon-aware placement.

pandas, pyarrow, polars, duckdb, dask and xarray open ``greenroute://namespace/key`` through the
``fsspec.specs`` entry point, with no import. Every write is placed by :class:`~greenroute.GreenRouter`
on the greenest eligible backend and stamped with its carbon values; every read and listing is
resolved through the catalog, so ``ls`` and ``info`` show the union of all backends.

Delegation follows fsspec's ``DirFileSystem``: map the logical path to the backend's physical one,
call the backend's own filesystem, map names back. Reads (``open``, ``cat_ranges``, ``get_file``)
therefore keep each backend's fast paths, such as s3fs's ranged reads and concurrent downloads.

Where this differs from a plain object store, on purpose:

* Directories are implied by the catalog's paths. ``mkdir`` and ``makedirs`` cost nothing (so
  ``fsspec.open(..., "wb")``'s ``auto_mkdir`` adds no round trip) and an empty directory cannot exist.
* Objects are immutable: ``"ab"`` and ``"r+b"`` are refused. ``"xb"`` and ``mode="create"`` check the
  catalog first (not atomic against a concurrent writer of the same path).
* A write leaving a ``with`` block by an exception, or dropped without ``close()``, is abandoned:
  nothing is committed. (``fsspec.open``'s ``OpenFile`` closes its layers whatever happens, as it does
  for every filesystem.)

Errors are builtin ``OSError`` subclasses that keep ``__cause__``: ``FileNotFoundError``,
``IsADirectoryError``, ``FileExistsError``, greenroute's ``StorageError`` family (already ``OSError``),
:class:`InvalidFsPathError` (also a ``ValueError``, as s3fs raises for non-key paths) and
:class:`NoEligibleBackendFsError`.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import io
import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any, BinaryIO, cast

from fsspec.callbacks import DEFAULT_CALLBACK  # type: ignore[import-untyped]
from fsspec.compression import compr  # type: ignore[import-untyped]
from fsspec.core import get_compression  # type: ignore[import-untyped]
from fsspec.spec import AbstractFileSystem  # type: ignore[import-untyped]
from fsspec.utils import isfilelike, stringify_path, tokenize  # type: ignore[import-untyped]

from greenroute.config import find_config
from greenroute.errors import ConfigError, InvalidPathError
from greenroute.model import CatalogEntry, Provider
from greenroute.ports import StorageTarget
from greenroute.router import GreenRouter

from ..storage._fsspec_target import FsspecTarget
from .files import (
    PROTOCOL,
    CodecFile,
    GreenRouteReadFile,
    GreenRouteWriteFile,
    InvalidFsPathError,
    NoEligibleBackendFsError,
    ProgressReader,
    RouterStream,
    TextWriter,
    copy_stream,
    oserrors,
)

__all__ = [
    "GreenRouteFileSystem",
    "GreenRouteReadFile",
    "GreenRouteWriteFile",
    "InvalidFsPathError",
    "NoEligibleBackendFsError",
    "WriteHints",
    "close_routers",
]

log = logging.getLogger(__name__)

_HINT_KEYS = frozenset({"size_hint", "retention_days", "candidates", "metadata"})
#: Generic fsspec options that mean nothing here (there is no listings cache to configure).
_IGNORED_OPTIONS = frozenset({"use_listings_cache", "listings_expiry_time", "max_paths"})
_TEXT_KEYS = ("encoding", "errors", "newline")
#: S3's ``DeleteObjects`` limit.
_S3_DELETE_BATCH = 1000
_POOL_WORKERS = 8
#: Catalog entries read per query when listing one directory.
_LIST_PAGE = 1000


# -- per-write hints ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WriteHints:
    """What a write may tell the router beyond its bytes.

    Each comes from the filesystem's ``storage_options`` and can be overridden per call (``open()``,
    ``pipe_file``, ``put_file``, ``cp_file`` keyword arguments).

    Attributes:
        size_hint: The expected size in bytes, for placement at open. Defaults to unknown (0); the
            carbon values are bound at close from the real size either way.
        retention_days: How long the object will be kept, for the at-rest estimate. Defaults to none.
        candidates: Backend ids to choose from. Defaults to all; a string is a comma-separated list.
        metadata: The caller's own metadata keys, kept on the object beside greenroute's. Per-call
            metadata is merged over the filesystem's.
    """

    size_hint: int | None = None
    retention_days: float | None = None
    candidates: tuple[str, ...] | None = None
    metadata: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def parse(cls, options: Mapping[str, Any], base: WriteHints | None = None) -> WriteHints:
        """``base`` with the hints in ``options`` applied (other keys are ignored).

        Raises:
            TypeError: A hint of the wrong type.
            ValueError: A negative size or retention.
        """
        hints = base or cls()
        if options.get("size_hint") is not None:
            size = options["size_hint"]
            if isinstance(size, bool) or not isinstance(size, int):
                raise TypeError(f"size_hint must be an int, got {type(size).__name__}")
            if size < 0:
                raise ValueError(f"size_hint must not be negative, got {size}")
            hints = replace(hints, size_hint=size)
        if options.get("retention_days") is not None:
            days = options["retention_days"]
            if isinstance(days, bool) or not isinstance(days, int | float):
                raise TypeError(f"retention_days must be a number, got {type(days).__name__}")
            if days < 0:
                raise ValueError(f"retention_days must not be negative, got {days}")
            hints = replace(hints, retention_days=float(days))
        if options.get("candidates") is not None:
            raw = options["candidates"]
            ids = [c.strip() for c in raw.split(",")] if isinstance(raw, str) else list(raw)
            if not ids or not all(isinstance(c, str) and c for c in ids):
                raise TypeError(f"candidates must be backend ids, got {raw!r}")
            hints = replace(hints, candidates=tuple(ids))
        if options.get("metadata") is not None:
            md = options["metadata"]
            if not isinstance(md, Mapping):
                raise TypeError(f"metadata must be a mapping of str to str, got {type(md).__name__}")
            hints = replace(hints, metadata=MappingProxyType({**hints.metadata, **md}))
        return hints

    def as_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for :meth:`GreenRouter.write` and :meth:`GreenRouter.open`."""
        return {"size_hint": self.size_hint, "retention_days": self.retention_days,
                "candidates": self.candidates, "metadata": dict(self.metadata) or None}


def _pop_hints(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {k: kwargs.pop(k) for k in list(kwargs) if k in _HINT_KEYS}


def _refuse_extra(kwargs: Mapping[str, Any], operation: str) -> None:
    if kwargs:
        raise TypeError(f"greenroute {operation}: unexpected keyword argument(s) {', '.join(sorted(kwargs))} "
                        f"(accepted: {', '.join(sorted(_HINT_KEYS))})")


# -- one router per configuration -----------------------------------------------------------------

_ROUTERS: dict[tuple[int, str], GreenRouter] = {}
_ROUTERS_LOCK = threading.Lock()


def _shared_router(config: str | os.PathLike[str] | None) -> GreenRouter:
    """The process's router for ``config`` (explicit path, else ``$GREENROUTE_CONFIG``, else ``./greenroute.toml``)."""
    try:
        found = find_config(config)
    except ConfigError as exc:
        raise FileNotFoundError(errno.ENOENT, f"greenroute config not found ({exc})",
                                str(exc.path or config)) from exc
    key = (os.getpid(), str(found.resolve()) if found is not None else f"<defaults in {Path.cwd()}>")
    with _ROUTERS_LOCK:
        router = _ROUTERS.get(key)
        if router is None:
            router = _ROUTERS[key] = GreenRouter.from_config(found)
        return router


def close_routers() -> None:
    """Close and forget every router the filesystem opened (they are made again on next use).

    Call it after changing a configuration file, or to release catalogs in tests.
    """
    with _ROUTERS_LOCK:
        routers = [r for (pid, _), r in _ROUTERS.items() if pid == os.getpid()]
        _ROUTERS.clear()
    for router in routers:
        try:
            router.close()
        except Exception as exc:  # noqa: BLE001 (closing is best effort)
            log.warning("could not close %r: %s", router, exc)


atexit.register(close_routers)


# -- the filesystem -------------------------------------------------------------------------------


class GreenRouteFileSystem(AbstractFileSystem):  # type: ignore[misc]
    """``greenroute://namespace/key``: writes go to the greenest backend, reads and listings through the catalog.

    Args:
        config: The greenroute.toml to use; else ``$GREENROUTE_CONFIG``, else ``./greenroute.toml``,
            else the pre-registered in-memory profiles. One router is shared per configuration file.
        router: A router to use instead of one built from ``config`` (not picklable).
        probe: When a path is not in the catalog, look for it on the backends in score order and,
            if found with greenroute's metadata, repair the catalog. Defaults to ``False``.
        size_hint: Default expected size of writes, for placement at open (see :class:`WriteHints`).
        retention_days: Default retention of written objects, for the at-rest estimate.
        candidates: Default backend ids writes may go to (a list, or a comma-separated string).
        metadata: Default user metadata stamped on written objects.

    Instances are not cached (``cachable = False``): per-call hints may be passed as storage
    options, and must not each make a cached instance. Building one is cheap, because the router
    (catalog connections, grid signals, targets) is shared per configuration file.

    Example:
        >>> from greenroute import GreenPlacementService
        >>> from greenroute.adapters.catalog.sqlite import SqliteCatalog
        >>> from greenroute.profiles import default_backends
        >>> router = GreenRouter(GreenPlacementService(default_backends()), SqliteCatalog(":memory:"))
        >>> fs = GreenRouteFileSystem(router=router)
        >>> fs.pipe_file("greenroute://demo/hello.txt", b"hello", metadata={"team": "docs"})
        >>> fs.cat_file("greenroute://demo/hello.txt"), fs.info("demo/hello.txt")["greenroute_backend"]
        (b'hello', 'aws-eu-north-1')
        >>> fs.ls("demo", detail=False)
        ['demo/hello.txt']
    """

    protocol = PROTOCOL
    root_marker = ""
    cachable = False
    #: Chunk size of the streamed copies in ``get_file``.
    blocksize = 4 * 2**20
    #: How many objects one ``copy``/``mv``/``put``/``get`` call handles at once (at most 8).
    max_concurrency = 8

    def __init__(self, config: str | os.PathLike[str] | None = None, *, router: GreenRouter | None = None,
                 probe: bool = False, size_hint: int | None = None, retention_days: float | None = None,
                 candidates: Sequence[str] | str | None = None, metadata: Mapping[str, str] | None = None,
                 **storage_options: Any) -> None:
        unknown = set(storage_options) - _IGNORED_OPTIONS
        if unknown:
            raise TypeError(f"greenroute: unknown storage option(s) {', '.join(sorted(unknown))} (accepted: config, "
                            "router, probe, size_hint, retention_days, candidates, metadata)")
        super().__init__()
        self._local = threading.local()
        self.router = router if router is not None else _shared_router(config)
        self.probe = bool(probe)
        self.hints = WriteHints.parse({"size_hint": size_hint, "retention_days": retention_days,
                                       "candidates": candidates, "metadata": metadata})

    def __repr__(self) -> str:
        return f"GreenRouteFileSystem(catalog={self.router.catalog!r}, probe={self.probe})"

    @property
    def fsid(self) -> str:
        """Filesystems over the same catalog see the same objects."""
        return f"{PROTOCOL}-{tokenize(repr(self.router.catalog))}"

    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:
        if isinstance(path, list):
            return [cls._strip_protocol(p) for p in path]
        text = str(stringify_path(path))
        for prefix in (f"{PROTOCOL}://", f"{PROTOCOL}::"):
            if text.startswith(prefix):
                text = text[len(prefix):]
                break
        return text.strip("/")

    # -- lookups ----------------------------------------------------------------------------

    def _lookup(self, path: str) -> CatalogEntry | None:
        """The committed entry for ``path`` (without probing)."""
        return self.router.lookup(path) if path else None

    def _has_children(self, path: str) -> bool:
        return path == "" or bool(self.router.list(path + "/", limit=1))

    def _children(self, path: str) -> dict[tuple[str, str], dict[str, Any]]:
        """The files and directories directly under ``path``, keyed by ``(name, type)``.

        Paged through the catalog; after each subdirectory the listing resumes past its contents, so
        a directory's deep subtrees are never read.
        """
        base = path + "/" if path else ""
        children: dict[tuple[str, str], dict[str, Any]] = {}
        after: str | None = None
        while True:
            page = self.router.list(base, start_after=after, limit=_LIST_PAGE)
            for item in page:
                head, sep, _ = item.path[len(base):].partition("/")
                name = base + head
                if sep:
                    children.setdefault((name, "directory"), self._dir_info(name))
                    after = name + "/\U0010ffff"  # past everything under it
                    break
                children[(name, "file")] = self._file_info(item)
                after = item.path
            else:
                if len(page) < _LIST_PAGE:
                    return children

    def _entry(self, path: str) -> CatalogEntry:
        """The entry of a file, probing the backends when enabled.

        Raises:
            IsADirectoryError: ``path`` is a directory.
            FileNotFoundError: Neither the catalog nor (when probing) any backend has it.
        """
        entry = self._lookup(path)
        if entry is not None:
            return entry
        if self._has_children(path):
            raise IsADirectoryError(errno.EISDIR, "is a directory", path)
        if self.probe:
            entry = self._probe(path)
            if entry is not None:
                return entry
        raise FileNotFoundError(errno.ENOENT, "not in the greenroute catalog", path)

    def _require(self, path: str) -> CatalogEntry:
        """:meth:`_entry` of a raw path, with greenroute's errors made ``OSError``."""
        path = self._strip_protocol(path)
        with oserrors(path):
            return self._entry(path)

    def _probe(self, path: str) -> CatalogEntry | None:
        """Find ``path`` on the backends, best score first, and put it back in the catalog."""
        try:
            return self.router.probe(path)
        except InvalidPathError:
            return None

    def _file_info(self, entry: CatalogEntry) -> dict[str, Any]:
        return {
            "name": entry.path, "size": entry.size, "type": "file", "etag": entry.etag,
            "created": entry.created_at, "mtime": entry.updated_at, "url": entry.url,
            "greenroute_backend": entry.backend_id, "greenroute_gco2e": entry.write_gco2e,
            "greenroute_gco2e_month": entry.gco2e_month, "greenroute_intensity": entry.carbon_intensity_g_per_kwh,
            "greenroute_signal": entry.signal.value, "greenroute_source": entry.source.value,
            "greenroute_decision": entry.decision_id,
        }

    @staticmethod
    def _dir_info(path: str) -> dict[str, Any]:
        return {"name": path, "size": 0, "type": "directory"}

    def _target(self, entry: CatalogEntry) -> StorageTarget:
        """The target holding ``entry``.

        Raises:
            OSError: ``ENODEV``: the catalog names a backend the configuration no longer has.
        """
        try:
            return self.router.target(entry.backend_id)
        except KeyError as exc:
            raise OSError(errno.ENODEV, f"catalogued on backend {entry.backend_id!r}, which is not configured",
                          entry.path) from exc

    def _physical(self, entry: CatalogEntry) -> tuple[FsspecTarget, str] | None:
        """The backend's own filesystem target and physical path of ``entry``, when it has one."""
        target = self._target(entry)
        if isinstance(target, FsspecTarget):
            return target, target._full(entry.path)
        return None

    # -- listing ----------------------------------------------------------------------------

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        """A file's catalog entry (size, times, backend, gCO2e, physical ``url``), or a directory.

        Raises:
            FileNotFoundError: Nothing is at ``path``.
        """
        path = self._strip_protocol(path)
        with oserrors(path):
            entry = self._lookup(path)
            if entry is not None:
                return self._file_info(entry)
            if self._has_children(path):
                return self._dir_info(path)
            if self.probe:
                entry = self._probe(path)
                if entry is not None:
                    return self._file_info(entry)
        raise FileNotFoundError(errno.ENOENT, "not in the greenroute catalog", path)

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        """The files and directories directly under ``path``, across every backend.

        Raises:
            FileNotFoundError: ``path`` is neither a file nor a directory.
        """
        path = self._strip_protocol(path)
        entry = self._lookup(path)
        if entry is not None:
            found = [self._file_info(entry)]
        else:
            children = self._children(path)
            if not children and path:
                raise FileNotFoundError(errno.ENOENT, "no such file or directory", path)
            found = [children[k] for k in sorted(children)]
        return found if detail else [f["name"] for f in found]

    def _tree(self, path: str) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
        """Every directory under ``path`` (itself included) with its subdirectories and files, from one listing."""
        base = path + "/" if path else ""
        tree: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
        for item in self.router.list(base):
            parts = item.path[len(base):].split("/")
            folder = path
            tree.setdefault(folder, ({}, {}))
            for part in parts[:-1]:
                child = f"{folder}/{part}" if folder else part
                tree[folder][0].setdefault(part, self._dir_info(child))
                folder = child
                tree.setdefault(folder, ({}, {}))
            tree[folder][1][parts[-1]] = self._file_info(item)
        return tree

    def walk(self, path: str, maxdepth: int | None = None, topdown: bool = True, on_error: Any = "omit",
             **kwargs: Any) -> Iterator[tuple[str, Any, Any]]:
        """Like :meth:`fsspec.AbstractFileSystem.walk`, from one catalog listing instead of one per directory."""
        if maxdepth is not None and maxdepth < 1:
            raise ValueError("maxdepth must be at least 1")
        path = self._strip_protocol(path)
        detail = kwargs.pop("detail", False)
        tree = self._tree(path)
        if path not in tree:
            entry = self._lookup(path)
            if entry is not None:
                tree[path] = ({}, {"": self._file_info(entry)})
            else:
                error = FileNotFoundError(errno.ENOENT, "no such file or directory", path)
                if on_error == "raise":
                    raise error
                if callable(on_error):
                    on_error(error)
                return
        yield from self._walk_tree(tree, path, maxdepth, topdown, detail)

    def _walk_tree(self, tree: dict[str, tuple[dict[str, Any], dict[str, Any]]], path: str, maxdepth: int | None,
                   topdown: bool, detail: bool) -> Iterator[tuple[str, Any, Any]]:
        folders, files = tree.get(path, ({}, {}))
        dirs: Any = dict(folders) if detail else list(folders)
        names: Any = dict(files) if detail else list(files)
        if topdown:
            yield path, dirs, names
        if maxdepth is None or maxdepth > 1:
            for name in list(dirs):  # after a top-down yield, the caller may have pruned ``dirs``
                child = f"{path}/{name}" if path else name
                yield from self._walk_tree(tree, child, None if maxdepth is None else maxdepth - 1, topdown, detail)
        if not topdown:
            yield path, dirs, names

    def find(self, path: str, maxdepth: int | None = None, withdirs: bool = False, detail: bool = False,
             **kwargs: Any) -> Any:
        """Every file under ``path`` (and directories with ``withdirs``), from one catalog listing."""
        path = self._strip_protocol(path)
        base = path + "/" if path else ""
        out: dict[str, dict[str, Any]] = {}
        for item in self.router.list(base):
            parts = item.path[len(base):].split("/")
            if withdirs:
                for depth in range(1, len(parts)):
                    if maxdepth is not None and depth > maxdepth:
                        break
                    name = base + "/".join(parts[:depth])
                    out.setdefault(name, self._dir_info(name))
            if maxdepth is None or len(parts) <= maxdepth:
                out[item.path] = self._file_info(item)
        if out and withdirs and path:
            out[path] = self._dir_info(path)
        if not out:
            entry = self._lookup(path)
            if entry is not None:
                out[path] = self._file_info(entry)
        names = sorted(out)
        return {n: out[n] for n in names} if detail else names

    def du(self, path: str, total: bool = True, maxdepth: int | None = None, withdirs: bool = False,
           **kwargs: Any) -> Any:
        """Bytes used under ``path`` (directories count 0), from one catalog listing."""
        sizes = {name: info["size"] for name, info in
                 self.find(path, maxdepth=maxdepth, withdirs=withdirs, detail=True).items()}
        return sum(sizes.values()) if total else sizes

    def isdir(self, path: str) -> bool:
        return bool(self._has_children(self._strip_protocol(path)))

    def isfile(self, path: str) -> bool:
        try:
            return bool(self.info(path)["type"] == "file")
        except (OSError, ValueError):
            return False

    def exists(self, path: str, **kwargs: Any) -> bool:
        try:
            self.info(path)
        except (OSError, ValueError):
            return False
        return True

    def created(self, path: str) -> datetime:
        """When the current version of the object was begun (timezone-aware)."""
        return self._require(path).created_at

    def modified(self, path: str) -> datetime:
        """When the current version of the object was committed (timezone-aware)."""
        return self._require(path).updated_at

    def checksum(self, path: str) -> int:
        """Changes whenever the object may have changed: backend, physical URL and etag (or decision)."""
        entry = self._require(path)
        return int(tokenize(entry.backend_id, entry.url, entry.etag or entry.decision_id, entry.size), 16)

    def ukey(self, path: str) -> str:
        return hex(self.checksum(path))

    # -- directories (implied by paths) -----------------------------------------------------

    def mkdir(self, path: str, create_parents: bool = True, **kwargs: Any) -> None:
        """Nothing to do: directories exist while they hold objects. No backend is contacted."""

    def makedirs(self, path: str, exist_ok: bool = False) -> None:
        """Nothing to do (see :meth:`mkdir`); ``exist_ok=False`` still refuses an existing directory."""
        if not exist_ok:
            path = self._strip_protocol(path)
            if path and self._has_children(path):
                raise FileExistsError(errno.EEXIST, "directory exists", path)

    def rmdir(self, path: str) -> None:
        """Nothing to do for an empty directory; a non-empty one is refused."""
        path = self._strip_protocol(path)
        if self._has_children(path):
            raise OSError(errno.ENOTEMPTY, "directory not empty", path)

    # -- reads ------------------------------------------------------------------------------

    def open(self, path: str, mode: str = "rb", block_size: int | None = None, cache_options: Any = None,
             compression: str | None = None, **kwargs: Any) -> Any:
        """Open a logical path: ``"rb"`` through the catalog, ``"wb"``/``"xb"`` placed now and committed at close.

        Text modes and ``compression=`` (a codec name or ``"infer"``) wrap the binary file; closing the
        outermost layer commits the write. Per-call :class:`WriteHints` may be given as keywords.
        """
        path = self._strip_protocol(path)
        if "b" not in mode:
            text = {k: kwargs.pop(k) for k in _TEXT_KEYS if k in kwargs}
            binary = self.open(path, mode.replace("t", "") + "b", block_size=block_size,
                               cache_options=cache_options, compression=compression, **kwargs)
            return (TextWriter if "r" not in mode else io.TextIOWrapper)(binary, **text)
        f = super().open(path, mode, block_size=block_size, cache_options=cache_options, **kwargs)
        codec = get_compression(path, compression) if compression is not None else None
        if codec is None:
            return f
        return CodecFile(compr[codec](f, mode=mode[0]), f)

    def _open(self, path: str, mode: str = "rb", block_size: int | None = None, autocommit: bool = True,
              cache_options: Any = None, **kwargs: Any) -> Any:
        path = self._strip_protocol(path)
        hints = _pop_hints(kwargs)
        if mode == "rb":
            cache_type = kwargs.pop("cache_type", None)
            _refuse_extra(kwargs, "open")
            return self._open_read(path, block_size, cache_type, cache_options)
        if mode not in ("wb", "xb"):
            raise ValueError(f"greenroute objects are written whole: mode must be 'rb', 'wb' or 'xb', got {mode!r}")
        _refuse_extra(kwargs, "open")
        options = WriteHints.parse(hints, self.hints)
        with oserrors(path):
            if mode == "xb" and self._lookup(path) is not None:
                raise FileExistsError(errno.EEXIST, "already in the greenroute catalog", path)
            stream = self.router.open(path, "wb", block_size=block_size, **options.as_kwargs())
        return GreenRouteWriteFile(self, path, mode, cast(RouterStream, stream), autocommit=autocommit)

    def _open_read(self, path: str, block_size: int | None, cache_type: str | None,
                   cache_options: Any) -> GreenRouteReadFile:
        with oserrors(path):
            entry = self._entry(path)
            tuned = cache_type is not None or cache_options is not None
            physical = self._physical(entry) if tuned else None
            if physical is not None and type(physical[0])._open_read is FsspecTarget._open_read:
                # The caller tunes the backend file's cache: open it through the backend's filesystem.
                target, full = physical
                extra = {"cache_type": cache_type} if cache_type is not None else {}
                with target._errors("read", entry.path):
                    inner: BinaryIO = target.fs.open(full, "rb", block_size=block_size, cache_options=cache_options,
                                                     **extra)
            else:
                inner = self._target(entry).open_read(entry.path, block_size=block_size)
        return GreenRouteReadFile(self, entry, inner, self._file_info(entry))

    def cat_file(self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any) -> bytes:
        """The object's bytes, or ``[start, end)`` (negative values count from the end)."""
        path = self._strip_protocol(path)
        _refuse_extra(kwargs, "cat_file")
        with oserrors(path):
            entry = self._entry(path)
            return self._target(entry).read(entry.path, start, end)

    def cat_ranges(self, paths: list[str], starts: Any, ends: Any, max_gap: int | None = None,
                   on_error: str = "return", **kwargs: Any) -> list[Any]:
        """Byte ranges of many objects, handed to each backend's own ``cat_ranges`` (concurrent on s3fs)."""
        if not isinstance(paths, list):
            raise TypeError("paths must be a list")
        starts = starts if isinstance(starts, list) else [starts] * len(paths)
        ends = ends if isinstance(ends, list) else [ends] * len(paths)
        if len(starts) != len(paths) or len(ends) != len(paths):
            raise ValueError("paths, starts and ends must have the same length")
        out: list[Any] = [None] * len(paths)
        groups: dict[str, tuple[FsspecTarget, list[tuple[int, str, str]]]] = {}
        for i, raw in enumerate(paths):
            path = self._strip_protocol(raw)
            try:
                with oserrors(path):
                    entry = self._entry(path)
                    physical = self._physical(entry)
            except OSError as exc:
                if on_error != "return":
                    raise
                out[i] = exc
                continue
            if physical is None:
                try:
                    out[i] = self.cat_file(path, starts[i], ends[i])
                except OSError as exc:
                    if on_error != "return":
                        raise
                    out[i] = exc
                continue
            groups.setdefault(entry.backend_id, (physical[0], []))[1].append((i, entry.path, physical[1]))
        extra = {"max_gap": max_gap} if max_gap is not None else {}
        for target, items in groups.values():
            with target._errors("read", ""):
                results = target.fs.cat_ranges([full for _, _, full in items], [starts[i] for i, _, _ in items],
                                               [ends[i] for i, _, _ in items], on_error=on_error, **extra)
            for (i, logical, _), result in zip(items, results, strict=True):
                failed = isinstance(result, Exception) and not isinstance(result, OSError)
                out[i] = target._map_error(result, "read", logical) if failed else result
        return out

    def get_file(self, rpath: str, lpath: Any, callback: Any = DEFAULT_CALLBACK, outfile: Any = None,
                 **kwargs: Any) -> None:
        """Download one object to ``lpath`` (by the backend's own ``get_file`` where that is async, as on s3fs)."""
        path = self._strip_protocol(rpath)
        _refuse_extra(kwargs, "get_file")
        if outfile is None and isfilelike(lpath):
            outfile = lpath
        with oserrors(path):
            found = self._lookup(path)
            if found is None and outfile is None and self._has_children(path):
                os.makedirs(lpath, exist_ok=True)
                return
            entry = found or self._entry(path)

        def download() -> None:
            with oserrors(path):
                physical = self._physical(entry)
                if outfile is None and physical is not None and getattr(physical[0].fs, "async_impl", False):
                    target, full = physical
                    os.makedirs(os.path.dirname(os.path.abspath(lpath)), exist_ok=True)
                    with target._errors("read", entry.path):
                        target.fs.get_file(full, lpath, callback=callback)
                    return
                callback.set_size(entry.size)
                with self._target(entry).open_read(entry.path, block_size=self.blocksize) as src:
                    if outfile is not None:
                        copy_stream(src, outfile, self.blocksize, callback)
                        return
                    os.makedirs(os.path.dirname(os.path.abspath(lpath)), exist_ok=True)
                    with open(lpath, "wb") as out:
                        copy_stream(src, out, self.blocksize, callback)

        self._run_or_defer(download)

    def get(self, rpath: Any, lpath: Any, recursive: bool = False, callback: Any = DEFAULT_CALLBACK,
            maxdepth: int | None = None, **kwargs: Any) -> None:
        """fsspec's ``get`` (same paths, same rules), with up to :attr:`max_concurrency` downloads at once."""
        with self._batched() as calls:
            super().get(rpath, lpath, recursive=recursive, callback=callback, maxdepth=maxdepth, **kwargs)
        _run_all(calls, self.max_concurrency, ignore_missing=False)

    def sign(self, path: str, expiration: int = 100, **kwargs: Any) -> str:
        """A presigned URL for the object, from its backend's filesystem (where that can sign, as s3fs can)."""
        path = self._strip_protocol(path)
        with oserrors(path):
            entry = self._entry(path)
            physical = self._physical(entry)
        if physical is None:
            raise NotImplementedError(f"backend {entry.backend_id} cannot sign URLs")
        target, full = physical
        with target._errors("sign", entry.path):
            return str(target.fs.sign(full, expiration=expiration, **kwargs))

    # -- writes -----------------------------------------------------------------------------

    def pipe_file(self, path: str, value: bytes, mode: str = "overwrite", **kwargs: Any) -> None:
        """Write ``value`` to the greenest eligible backend (``mode="create"`` refuses an existing path)."""
        path = self._strip_protocol(path)
        if not isinstance(value, bytes | bytearray | memoryview):
            raise TypeError(f"pipe_file takes bytes, got {type(value).__name__}")
        options = WriteHints.parse(_pop_hints(kwargs), self.hints)
        _refuse_extra(kwargs, "pipe_file")
        with oserrors(path):
            if mode == "create" and self._lookup(path) is not None:
                raise FileExistsError(errno.EEXIST, "already in the greenroute catalog", path)
            self.router.write(path, value, **options.as_kwargs())

    def put_file(self, lpath: Any, rpath: str, callback: Any = DEFAULT_CALLBACK, mode: str = "overwrite",
                 **kwargs: Any) -> None:
        """Upload one local file, placed for its real size (a local directory is nothing to upload)."""
        path = self._strip_protocol(rpath)
        options = WriteHints.parse(_pop_hints(kwargs), self.hints)
        _refuse_extra(kwargs, "put_file")
        if os.path.isdir(lpath):
            return
        with oserrors(path):
            if mode == "create" and self._lookup(path) is not None:
                raise FileExistsError(errno.EEXIST, "already in the greenroute catalog", path)

        def upload() -> None:
            with oserrors(path), open(lpath, "rb") as local:
                size = os.fstat(local.fileno()).st_size
                callback.set_size(size)
                reader = cast(BinaryIO, ProgressReader(cast(BinaryIO, local), callback))
                self.router.write(path, reader, **replace(options, size_hint=size).as_kwargs())

        self._run_or_defer(upload)

    def cp_file(self, path1: str, path2: str, **kwargs: Any) -> None:
        """Copy an object (server-side when it stays on its backend). Directories are implied, so skipped."""
        src, dst = self._strip_protocol(path1), self._strip_protocol(path2)
        hints = _pop_hints(kwargs)
        _refuse_extra(kwargs, "cp_file")
        if "metadata" in hints or "size_hint" in hints:
            raise TypeError("cp_file keeps the source's metadata and size; only candidates and retention_days apply")
        options = WriteHints.parse(hints, replace(self.hints, metadata=MappingProxyType({})))
        with oserrors(src):
            if self._lookup(src) is None and self._has_children(src):
                return
            self._entry(src)  # probes when enabled

        def copy() -> None:
            with oserrors(src):
                self.router.copy(src, dst, candidates=options.candidates, retention_days=options.retention_days)

        self._run_or_defer(copy)

    def copy(self, path1: Any, path2: Any, recursive: bool = False, maxdepth: int | None = None,
             on_error: str | None = None, **kwargs: Any) -> None:
        """fsspec's ``copy`` (same paths, same rules), with up to :attr:`max_concurrency` copies at once."""
        with self._batched() as calls:
            super().copy(path1, path2, recursive=recursive, maxdepth=maxdepth, on_error=on_error, **kwargs)
        _run_all(calls, self.max_concurrency, ignore_missing=(on_error or ("ignore" if recursive else "raise"))
                 == "ignore")

    def put(self, lpath: Any, rpath: Any, recursive: bool = False, callback: Any = DEFAULT_CALLBACK,
            maxdepth: int | None = None, **kwargs: Any) -> None:
        """fsspec's ``put`` (same paths, same rules), with up to :attr:`max_concurrency` uploads at once."""
        with self._batched() as calls:
            super().put(lpath, rpath, recursive=recursive, callback=callback, maxdepth=maxdepth, **kwargs)
        _run_all(calls, self.max_concurrency, ignore_missing=False)

    @contextlib.contextmanager
    def _batched(self) -> Iterator[list[Callable[[], None]]]:
        """Collect the single-object calls fsspec's bulk methods make, to run them concurrently."""
        calls: list[Callable[[], None]] = []
        outer = getattr(self._local, "calls", None)
        self._local.calls = calls
        try:
            yield calls
        finally:
            self._local.calls = outer

    def _run_or_defer(self, call: Callable[[], None]) -> None:
        calls: list[Callable[[], None]] | None = getattr(self._local, "calls", None)
        if calls is None:
            call()
        else:
            calls.append(call)

    def rm_file(self, path: str) -> None:
        """Delete one object and its catalog entry.

        Raises:
            IsADirectoryError: ``path`` is a directory (use ``rm(path, recursive=True)``).
            FileNotFoundError: Nothing is at ``path``.
        """
        path = self._strip_protocol(path)
        with oserrors(path):
            if self._lookup(path) is None:
                self._entry(path)  # raises IsADirectoryError or FileNotFoundError (or probes it back)
            self.router.delete(path)

    def _rm(self, path: str) -> None:
        self.rm_file(path)

    def rm(self, path: Any, recursive: bool = False, maxdepth: int | None = None) -> None:
        """Delete objects; with ``recursive``, everything under directories (which then no longer exist).

        Objects on S3 backends go in one ``DeleteObjects`` request per 1000 keys (s3fs's bulk delete);
        others one by one through the router.
        """
        entries: list[CatalogEntry] = []
        for p in reversed(self.expand_path(path, recursive=recursive, maxdepth=maxdepth)):
            entry = self._lookup(p)
            if entry is not None:
                entries.append(entry)
            elif not recursive:
                self.rm_file(p)  # IsADirectoryError, FileNotFoundError, or a probed object
            # else: a directory found by the expansion; it goes with its last object
        bulk: dict[str, tuple[FsspecTarget, list[CatalogEntry]]] = {}
        for entry in entries:
            with oserrors(entry.path):
                target = self._target(entry)
                if isinstance(target, FsspecTarget) and target.backend.provider is Provider.S3:
                    bulk.setdefault(entry.backend_id, (target, []))[1].append(entry)
                else:
                    self.router.delete(entry.path)
        for target, group in bulk.values():
            self._delete_s3(target, group)

    def _delete_s3(self, target: FsspecTarget, entries: list[CatalogEntry]) -> None:
        """Delete S3 objects 1000 keys per request, then their entries (keys named exactly: never globbed)."""
        keys: dict[str, dict[str, CatalogEntry]] = {}
        for entry in entries:
            bucket, key, _ = target.fs.split_path(target._full(entry.path))
            keys.setdefault(bucket, {})[key] = entry
        failed: list[tuple[str, str, str]] = []
        for bucket, named in keys.items():
            batch = list(named)
            for start in range(0, len(batch), _S3_DELETE_BATCH):
                chunk = batch[start:start + _S3_DELETE_BATCH]
                with target._errors("delete", named[chunk[0]].path):
                    out = target.fs.call_s3("delete_objects", Bucket=bucket,
                                            Delete={"Objects": [{"Key": k} for k in chunk], "Quiet": True})
                errors = {e.get("Key", ""): e for e in out.get("Errors") or ()}
                for key in chunk:
                    if key in errors:
                        failed.append((named[key].path, str(errors[key].get("Code", "")),
                                       str(errors[key].get("Message", ""))))
                    else:  # as GreenRouter.delete does: the object first, then its entry
                        self.router.catalog.remove(named[key].path)
        if failed:
            path, code, message = failed[0]
            kind = PermissionError if code in ("AccessDenied", "AllAccessDisabled") else OSError
            raise kind(errno.EACCES if kind is PermissionError else errno.EIO,
                       f"{target.backend.id}: could not delete {len(failed)} object(s) ({code}: {message})", path)


_POOLS: dict[int, ThreadPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    """This process's worker threads for bulk calls.

    One long-lived pool (per process: a forked child makes its own), so each catalog opens at most
    one SQLite connection per worker thread.
    """
    with _POOLS_LOCK:
        pool = _POOLS.get(os.getpid())
        if pool is None:
            pool = _POOLS[os.getpid()] = ThreadPoolExecutor(_POOL_WORKERS, thread_name_prefix="greenroute-fs")
        return pool


def _run_all(calls: list[Callable[[], None]], concurrency: int, *, ignore_missing: bool) -> None:
    """Run ``calls``, at most ``concurrency`` (and the pool's size) at once; then raise the first error.

    A ``FileNotFoundError`` is ignored when ``ignore_missing`` (fsspec's ``on_error="ignore"``).
    """

    def settle(call: Callable[[], None]) -> BaseException | None:
        try:
            call()
        except FileNotFoundError as exc:
            return None if ignore_missing else exc
        except Exception as exc:  # noqa: BLE001 (raised below, after the others have finished)
            return exc
        return None

    width = max(1, min(concurrency, _POOL_WORKERS))
    outcomes: list[BaseException | None] = []
    if len(calls) <= 1 or width == 1:
        outcomes = [settle(call) for call in calls]
    else:
        pool = _pool()
        for start in range(0, len(calls), width):
            outcomes += [f.result() for f in [pool.submit(settle, c) for c in calls[start:start + width]]]
    first = next((o for o in outcomes if o is not None), None)
    if first is not None:
        raise first
