"""``greenroute://``: the routing fsspec filesystem, so any fsspec-speaking tool gets carbon-aware placement.

pandas, pyarrow, polars, duckdb, dask and xarray open ``greenroute://namespace/key`` through the
``fsspec.specs`` entry point, with no import. Every write is placed by :class:`~greenroute.GreenRouter`
on the greenest eligible backend and stamped with its carbon values; every read and listing is
resolved through the catalog, so ``ls`` and ``info`` show the union of all backends.

Delegation follows fsspec's ``DirFileSystem``: map the logical path to the backend's physical one,
call the backend's own filesystem, map names back. Reads (``open``, ``cat_ranges``, ``get_file``)
therefore keep each backend's fast paths, such as s3fs's ranged reads and concurrent downloads.

It is an :class:`fsspec.asyn.AsyncFileSystem`, like s3fs: ``asynchronous=True`` (and ``loop=``) for
use from an event loop (zarr v3's ``FsspecStore``), and fsspec's bulk calls (``cat`` of many paths,
``pipe`` of a dict, ``put``, ``get``, ``copy``, ``rm``) run their objects concurrently, at most
``batch_size`` at once, across objects and backends. Writes and reads go through the router's
coroutines (:meth:`GreenRouter.awrite`, :meth:`GreenRouter.aread_entry`): placement and the catalog
run on worker threads, the bytes on the backend library's own event loop. Listings and other catalog
calls are the blocking methods, run on this process's worker threads. The blocking methods that
handle one object (``pipe_file``, ``cat_file``, ``info``, ``open``, ...) call the router directly,
with no event loop in between.

Where this differs from a plain object store, on purpose:

* Directories are implied by the catalog's paths. ``mkdir`` and ``makedirs`` cost nothing (so
  ``fsspec.open(..., "wb")``'s ``auto_mkdir`` adds no round trip) and an empty directory cannot exist.
* Objects are immutable: ``"ab"`` and ``"r+b"`` are refused. ``"xb"`` and ``mode="create"`` are the
  router's exclusive creates: of several concurrent creators of one path (in any process sharing the
  catalog) exactly one succeeds; the others get ``FileExistsError``.
* ``rm`` deletes each object through the router, which removes the catalog entry, then the object
  only while it still holds that entry's write (a newer write of the same key survives).
* A write leaving a ``with`` block by an exception, or dropped without ``close()``, is abandoned:
  nothing is committed. (``fsspec.open``'s ``OpenFile`` closes its layers whatever happens, as it does
  for every filesystem.)

Errors are builtin ``OSError`` subclasses that keep ``__cause__``: ``FileNotFoundError``,
``IsADirectoryError``, ``FileExistsError``, greenroute's ``StorageError`` family (already ``OSError``),
:class:`InvalidFsPathError` (also a ``ValueError``, as s3fs raises for non-key paths) and
:class:`NoEligibleBackendFsError`.
"""

from __future__ import annotations

import asyncio
import atexit
import errno
import functools
import io
import logging
import os
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any, BinaryIO, TypeVar, cast

from fsspec.asyn import AsyncFileSystem, _run_coros_in_chunks  # type: ignore[import-untyped]
from fsspec.callbacks import DEFAULT_CALLBACK  # type: ignore[import-untyped]
from fsspec.compression import compr  # type: ignore[import-untyped]
from fsspec.core import get_compression  # type: ignore[import-untyped]
from fsspec.utils import isfilelike, stringify_path, tokenize  # type: ignore[import-untyped]

from greenroute.config import find_config
from greenroute.errors import ConfigError, InvalidPathError
from greenroute.model import CatalogEntry
from greenroute.ports import StorageTarget
from greenroute.router import GreenRouter

from ..storage._fsspec_target import FsspecTarget
from .files import (
    PROTOCOL,
    CodecFile,
    GreenRouteAsyncReadFile,
    GreenRouteReadFile,
    GreenRouteWriteFile,
    InvalidFsMetadataError,
    InvalidFsPathError,
    NoEligibleBackendFsError,
    ProgressReader,
    RouterStream,
    TextWriter,
    copy_stream,
    oserrors,
)

__all__ = [
    "GreenRouteAsyncReadFile",
    "GreenRouteFileSystem",
    "GreenRouteReadFile",
    "GreenRouteWriteFile",
    "InvalidFsMetadataError",
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
#: Worker threads for the blocking catalog calls of the filesystem's coroutines (per process).
_POOL_WORKERS = 8
#: Catalog entries read per query when listing one directory.
_LIST_PAGE = 1000
_T = TypeVar("_T")


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


class GreenRouteFileSystem(AsyncFileSystem):  # type: ignore[misc]
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
        asynchronous: For use from a running event loop (call the ``_``-prefixed coroutines, as zarr
            v3 does). Defaults to ``False``: the blocking API, whose bulk calls run on fsspec's loop.
        loop: The event loop of the bulk calls, when not ``asynchronous`` (default: fsspec's own).
        batch_size: How many objects one bulk call handles at once (default: fsspec's
            ``gather_batch_size`` settings).

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
        >>> _ = fs.pipe({f"demo/{i}.txt": b"x" for i in range(3)})  # concurrently
        >>> sorted(fs.cat(["demo/0.txt", "demo/2.txt"]).items())
        [('demo/0.txt', b'x'), ('demo/2.txt', b'x')]
    """

    protocol = PROTOCOL
    root_marker = ""
    cachable = False
    #: Chunk size of the streamed copies in ``get_file``.
    blocksize = 4 * 2**20

    def __init__(self, config: str | os.PathLike[str] | None = None, *, router: GreenRouter | None = None,
                 probe: bool = False, size_hint: int | None = None, retention_days: float | None = None,
                 candidates: Sequence[str] | str | None = None, metadata: Mapping[str, str] | None = None,
                 asynchronous: bool = False, loop: Any = None, batch_size: int | None = None,
                 **storage_options: Any) -> None:
        unknown = set(storage_options) - _IGNORED_OPTIONS
        if unknown:
            raise TypeError(f"greenroute: unknown storage option(s) {', '.join(sorted(unknown))} (accepted: config, "
                            "router, probe, size_hint, retention_days, candidates, metadata, asynchronous, loop, "
                            "batch_size)")
        super().__init__(asynchronous=asynchronous, loop=loop, batch_size=batch_size)
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
        tree = self._walk_start(path, on_error)
        if tree is not None:
            yield from self._walk_tree(tree, path, maxdepth, topdown, bool(kwargs.get("detail", False)))

    def _walk_start(self, path: str, on_error: Any) -> dict[str, tuple[dict[str, Any], dict[str, Any]]] | None:
        """The tree :meth:`walk` walks, or ``None`` (after ``on_error``) when nothing is at ``path``."""
        tree = self._tree(path)
        if path not in tree:
            entry = self._lookup(path)
            if entry is None:
                error = FileNotFoundError(errno.ENOENT, "no such file or directory", path)
                if on_error == "raise":
                    raise error
                if callable(on_error):
                    on_error(error)
                return None
            tree[path] = ({}, {"": self._file_info(entry)})
        return tree

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
            # dask asks for the read cache as ``default_cache`` (s3fs takes both); ``cache_type`` wins.
            default_cache = kwargs.pop("default_cache", None)
            cache_type = kwargs.pop("cache_type", None) or default_cache
            _refuse_extra(kwargs, "open")
            return self._open_read(path, block_size, cache_type, cache_options)
        if mode not in ("wb", "xb"):
            raise ValueError(f"greenroute objects are written whole: mode must be 'rb', 'wb' or 'xb', got {mode!r}")
        _refuse_extra(kwargs, "open")
        options = WriteHints.parse(hints, self.hints)
        with oserrors(path):
            stream = self.router.open(path, mode, block_size=block_size, **options.as_kwargs())
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
        entry, target = self._located(path)
        with oserrors(path):
            return target.read(entry.path, start, end)

    def _located(self, path: str) -> tuple[CatalogEntry, StorageTarget]:
        """The entry of a file (see :meth:`_entry`) and its target, with greenroute's errors as ``OSError``."""
        with oserrors(path):
            entry = self._entry(path)
            return entry, self._target(entry)

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
        """Write ``value`` to the greenest eligible backend (``mode="create"``: an exclusive create)."""
        path, options = self._pipe_args(path, value, kwargs)
        with oserrors(path):
            self.router.write(path, value, exclusive=mode == "create", **options)

    def _pipe_args(self, path: str, value: Any, kwargs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        path = self._strip_protocol(path)
        if not isinstance(value, bytes | bytearray | memoryview):
            raise TypeError(f"pipe_file takes bytes, got {type(value).__name__}")
        options = WriteHints.parse(_pop_hints(kwargs), self.hints)
        _refuse_extra(kwargs, "pipe_file")
        return path, options.as_kwargs()

    def put_file(self, lpath: Any, rpath: str, callback: Any = DEFAULT_CALLBACK, mode: str = "overwrite",
                 **kwargs: Any) -> None:
        """Upload one local file, placed for its real size (a local directory is nothing to upload)."""
        path, options = self._put_args(rpath, kwargs)
        if os.path.isdir(lpath):
            return
        with oserrors(path), open(lpath, "rb") as local:
            reader, size = self._upload_reader(local, callback)
            self.router.write(path, reader, exclusive=mode == "create", **replace(options, size_hint=size).as_kwargs())

    def _put_args(self, rpath: str, kwargs: dict[str, Any]) -> tuple[str, WriteHints]:
        options = WriteHints.parse(_pop_hints(kwargs), self.hints)
        _refuse_extra(kwargs, "put_file")
        return self._strip_protocol(rpath), options

    @staticmethod
    def _upload_reader(local: BinaryIO, callback: Any) -> tuple[BinaryIO, int]:
        size = os.fstat(local.fileno()).st_size
        callback.set_size(size)
        return cast(BinaryIO, ProgressReader(local, callback)), size

    def cp_file(self, path1: str, path2: str, **kwargs: Any) -> None:
        """Copy an object (server-side when it stays on its backend). Directories are implied, so skipped."""
        src, dst, options = self._cp_args(path1, path2, kwargs)
        if self._copy_source_is_file(src):
            with oserrors(src):
                self.router.copy(src, dst, candidates=options.candidates, retention_days=options.retention_days)

    def _cp_args(self, path1: str, path2: str, kwargs: dict[str, Any]) -> tuple[str, str, WriteHints]:
        hints = _pop_hints(kwargs)
        _refuse_extra(kwargs, "cp_file")
        if "metadata" in hints or "size_hint" in hints:
            raise TypeError("cp_file keeps the source's metadata and size; only candidates and retention_days apply")
        options = WriteHints.parse(hints, replace(self.hints, metadata=MappingProxyType({})))
        return self._strip_protocol(path1), self._strip_protocol(path2), options

    def _copy_source_is_file(self, src: str) -> bool:
        """Whether ``src`` is an object to copy (``False``: a directory); probes when enabled."""
        with oserrors(src):
            if self._lookup(src) is None and self._has_children(src):
                return False
            self._entry(src)
        return True

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

    def _rm_one(self, path: str, recursive: bool) -> None:
        if recursive and self._lookup(path) is None:
            return  # a directory found by the expansion: it goes with its objects
        self.rm_file(path)

    # -- coroutines (asynchronous=True, and the concurrent bulk calls) ----------------------

    async def _in_thread(self, call: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        """Run a blocking method (catalog reads, a backend's blocking call) on this process's worker threads."""
        return await asyncio.get_running_loop().run_in_executor(_pool(), functools.partial(call, *args, **kwargs))

    async def _pipe_file(self, path: str, value: bytes, mode: str = "overwrite", **kwargs: Any) -> None:
        path, options = self._pipe_args(path, value, kwargs)
        with oserrors(path):
            await self.router.awrite(path, value, exclusive=mode == "create", **options)

    async def _cat_file(self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any) -> bytes:
        path = self._strip_protocol(path)
        _refuse_extra(kwargs, "cat_file")
        entry, _ = await self._in_thread(self._located, path)
        with oserrors(path):
            return await self.router.aread_entry(entry, start, end)

    async def _put_file(self, lpath: Any, rpath: str, callback: Any = DEFAULT_CALLBACK, mode: str = "overwrite",
                        **kwargs: Any) -> None:
        path, options = self._put_args(rpath, kwargs)
        if os.path.isdir(lpath):
            return
        with oserrors(path), open(lpath, "rb") as local:  # read on a worker thread by the router
            reader, size = self._upload_reader(local, callback)
            await self.router.awrite(path, reader, exclusive=mode == "create",
                                     **replace(options, size_hint=size).as_kwargs())

    async def _cp_file(self, path1: str, path2: str, **kwargs: Any) -> None:
        src, dst, options = self._cp_args(path1, path2, kwargs)
        if await self._in_thread(self._copy_source_is_file, src):
            with oserrors(src):
                await self.router.acopy(src, dst, candidates=options.candidates, retention_days=options.retention_days)

    async def _get_file(self, rpath: str, lpath: Any, callback: Any = DEFAULT_CALLBACK, outfile: Any = None,
                        **kwargs: Any) -> None:
        await self._in_thread(self.get_file, rpath, lpath, callback=callback, outfile=outfile, **kwargs)

    async def _rm_file(self, path: str, **kwargs: Any) -> None:
        await self._in_thread(self.rm_file, path)

    async def _rm(self, path: Any, recursive: bool = False, batch_size: int | None = None,
                  maxdepth: int | None = None, **kwargs: Any) -> None:
        """Delete objects concurrently, each through the router; with ``recursive``, everything under directories."""
        paths = await self._expand_path(path, recursive=recursive, maxdepth=maxdepth)
        outcomes = await _run_coros_in_chunks([self._in_thread(self._rm_one, p, recursive) for p in reversed(paths)],
                                              batch_size=batch_size or self.batch_size, nofiles=True,
                                              return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    async def _info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        return await self._in_thread(self.info, path, **kwargs)

    async def _ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        return await self._in_thread(self.ls, path, detail=detail, **kwargs)

    async def _find(self, path: str, maxdepth: int | None = None, withdirs: bool = False, detail: bool = False,
                    **kwargs: Any) -> Any:
        return await self._in_thread(self.find, path, maxdepth=maxdepth, withdirs=withdirs, detail=detail, **kwargs)

    async def _du(self, path: str, total: bool = True, maxdepth: int | None = None, withdirs: bool = False,
                  **kwargs: Any) -> Any:
        return await self._in_thread(self.du, path, total=total, maxdepth=maxdepth, withdirs=withdirs, **kwargs)

    async def _walk(self, path: str, maxdepth: int | None = None, topdown: bool = True, on_error: Any = "omit",
                    **kwargs: Any) -> AsyncIterator[tuple[str, Any, Any]]:
        if maxdepth is not None and maxdepth < 1:
            raise ValueError("maxdepth must be at least 1")
        path = self._strip_protocol(path)
        tree = await self._in_thread(self._walk_start, path, on_error)
        if tree is not None:
            for step in self._walk_tree(tree, path, maxdepth, topdown, bool(kwargs.get("detail", False))):
                yield step

    async def _exists(self, path: str, **kwargs: Any) -> bool:
        return await self._in_thread(self.exists, path)

    async def _isdir(self, path: str) -> bool:
        return await self._in_thread(self.isdir, path)

    async def _isfile(self, path: str) -> bool:
        return await self._in_thread(self.isfile, path)

    async def _makedirs(self, path: str, exist_ok: bool = False) -> None:
        await self._in_thread(self.makedirs, path, exist_ok=exist_ok)

    async def open_async(self, path: str, mode: str = "rb", **kwargs: Any) -> GreenRouteAsyncReadFile:
        """An object opened for reading with ``await f.read(n)``, without blocking the event loop.

        Async writes go through ``_pipe_file`` (or the blocking :meth:`open`).
        """
        if "b" not in mode or kwargs.get("compression"):
            raise ValueError("greenroute's async files are binary and uncompressed")
        if mode != "rb":
            raise NotImplementedError("greenroute's async files read; write with _pipe_file or open()")
        path = self._strip_protocol(path)
        entry, _ = await self._in_thread(self._located, path)
        return GreenRouteAsyncReadFile(self, entry, self._file_info(entry))


_POOLS: dict[int, ThreadPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    """This process's worker threads for the blocking calls of the filesystem's coroutines.

    One long-lived pool (per process: a forked child makes its own), so each catalog opens at most
    one SQLite connection per worker thread. Not the event loop's default executor: a call here may
    wait on a backend library's loop (s3fs's blocking API), which itself uses that executor to
    resolve host names. Not the router's: a probe waits for a path's write lock, whose holder needs
    the router's threads to commit.
    """
    with _POOLS_LOCK:
        pool = _POOLS.get(os.getpid())
        if pool is None:
            pool = _POOLS[os.getpid()] = ThreadPoolExecutor(_POOL_WORKERS, thread_name_prefix="greenroute-fs")
        return pool
