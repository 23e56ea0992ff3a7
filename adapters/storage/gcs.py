"""A Google Cloud Storage target (``gs://bucket/prefix``), through gcsfs.

``storage_options`` go to :class:`gcsfs.GCSFileSystem` (``project``, ``token``, ``endpoint_url``,
``requests_timeout``, ...), plus ``retries``: how many attempts gcsfs makes per request (default
6, with back-off of 1, 2, 4, ... seconds between them).

Metadata goes in the upload request. A streamed write binds its metadata at close: into the
upload while the resumable upload has not started (small objects go up in one request at close),
otherwise with a metadata PATCH right after the upload completes.

A multipart upload (:meth:`GCSTarget.open_multipart`) stores each part as a hidden part object
beside the object (``.gr-tmp-<upload>-<part>``), composes the listed parts into the object with the
metadata for the real size (32 sources per compose, in rounds for more), and deletes the part
objects. Names starting with ``.gr-tmp-`` are greenroute's: never listed, and refused in logical
paths. A crash can leave part objects behind, as S3 keeps an unfinished multipart upload's parts.
"""

from __future__ import annotations

import asyncio
import contextlib
import os

os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")  # else a gRPC probe before every call

from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
import gcsfs  # type: ignore[import-untyped]
import requests
from fsspec.asyn import sync  # type: ignore[import-untyped]
from gcsfs.retry import HttpError, retry_request  # type: ignore[import-untyped]

from greenroute.errors import InvalidPathError
from greenroute.model import Backend, Provider

from ._fsspec_target import Fault, FsspecTarget, Stamp, cloud_filesystem
from ._multipart import STAGING_PREFIX, StagedUpload

__all__ = ["GCSTarget", "GCSUpload", "from_backend"]

_MIN_BLOCK = 2**18  # gcsfs's minimum, and the resumable chunk granularity
_RAW_REQUEST = gcsfs.GCSFileSystem._request.__wrapped__
_UNAVAILABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
#: The most source objects one compose request takes.
_COMPOSE_MAX = 32


class _GCSFileSystem(gcsfs.GCSFileSystem):  # type: ignore[misc]
    """gcsfs with a per-instance number of attempts (``retries``)."""

    def __init__(self, *args: Any, retries: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._greenroute_request = retry_request(retries=max(1, int(retries)))(_RAW_REQUEST) if retries else None

    async def _request(self, method: str, path: str, *args: Any, **kwargs: Any) -> Any:
        if self._greenroute_request is None:
            return await super()._request(method, path, *args, **kwargs)
        return await self._greenroute_request(self, method, path, *args, **kwargs)


class GCSTarget(FsspecTarget):
    """Objects in one GCS bucket, under an optional prefix."""

    provider = Provider.GCS
    max_metadata_bytes = 8192

    def __init__(self, backend: Backend) -> None:
        super().__init__(backend, *cloud_filesystem(backend, ("gs", "gcs"), _GCSFileSystem))

    def _put(self, full: str, data: bytes, metadata: dict[str, str]) -> Stamp:
        stamp: Stamp = sync(self.fs.loop, self._aput, full, data, metadata)
        return stamp

    async def _aput(self, full: str, data: bytes, metadata: dict[str, str]) -> Stamp:
        await self.fs._pipe_file(full, data, metadata=dict(metadata))
        return None, None

    def _open_inner(self, full: str, block_size: int | None, metadata: dict[str, str] | None) -> Any:
        size = max(block_size or self.fs.default_block_size, _MIN_BLOCK)
        return self.fs.open(full, "wb", block_size=size, metadata=dict(metadata) if metadata is not None else None)

    def _commit_started(self, inner: Any, full: str, metadata: dict[str, str],
                        upfront: dict[str, str] | None) -> Stamp:
        inner.close()  # completes the resumable upload, which carried ``upfront``
        if metadata != (upfront or {}):
            self._after_commit(full, lambda: self._patch(full, metadata, upfront or {}))
        return None, None

    def _discard(self, inner: Any, full: str) -> None:
        """Cancel a started resumable upload: one attempt, best effort (unfinished sessions expire)."""
        location, inner.location = inner.location, None
        try:
            if location:
                with contextlib.suppress(Exception):
                    sync(self.fs.loop, _RAW_REQUEST, self.fs, "DELETE", location.replace("&ifGenerationMatch=0", ""))
        finally:
            inner.closed = True

    def _patch(self, full: str, metadata: Mapping[str, str], current: Mapping[str, Any]) -> None:
        """Make ``full``'s metadata exactly ``metadata`` (``current`` is what it has now).

        GCS merges a PATCH's ``metadata`` into the object's and deletes keys set to null; some
        emulators replace it whole and keep nulls. Clearing first (``"metadata": null``) and then
        setting works on both, and is only needed when a key must go.
        """
        bucket, key, _ = self.fs.split_path(full)
        if any(k not in metadata for k in current):
            self.fs.call("PATCH", "b/{}/o/{}", bucket, key, json={"metadata": None}, json_out=True)
        if metadata:
            self.fs.call("PATCH", "b/{}/o/{}", bucket, key, json={"metadata": dict(metadata)}, json_out=True)
        self.fs.invalidate_cache(full)

    def _raw_metadata(self, full: str, info: Mapping[str, Any]) -> Mapping[str, Any]:
        return info.get("metadata") or {}

    def _delete_if_unchanged(self, full: str, info: Mapping[str, Any]) -> bool:
        generation = info.get("generation")
        if not generation:
            return super()._delete_if_unchanged(full, info)
        bucket, key, _ = self.fs.split_path(full)
        return self._delete_checked(  # GCS checks the generation
            full, lambda: self.fs.call("DELETE", "b/{}/o/{}", bucket, key, ifGenerationMatch=generation),
            lambda exc: isinstance(exc, HttpError) and int(exc.code or 0) == 412)

    def _copy(self, source: str, target: str, metadata: dict[str, str]) -> None:
        b1, k1, _ = self.fs.split_path(source)
        b2, k2, _ = self.fs.split_path(target)
        token: dict[str, str] = {}
        while True:
            out = self.fs.call("POST", "b/{}/o/{}/rewriteTo/b/{}/o/{}", b1, k1, b2, k2,
                               json={"metadata": metadata}, json_out=True, **token)
            if out.get("done"):
                break
            token = {"rewriteToken": out["rewriteToken"]}
        self.fs.invalidate_cache(target)
        current = (out.get("resource") or {}).get("metadata") or {}
        if current != metadata:  # GCS takes the body's metadata; some emulators copy the source's
            self._after_commit(target, lambda: self._patch(target, metadata, current))

    def open_multipart(self, path: str, metadata_at_close: Callable[[int], Mapping[str, str]], *,
                       size_hint: int | None = None) -> GCSUpload:
        """A multipart upload whose parts are hidden part objects, composed into the object at complete."""
        return GCSUpload(self, path, metadata_at_close, size_hint)

    def _full(self, path: str) -> str:
        if any(segment.startswith(STAGING_PREFIX) for segment in path.split("/")):
            raise InvalidPathError(path, f"uses a name the GCS target keeps for itself ({STAGING_PREFIX}*)")
        return super()._full(path)

    def _hidden(self, logical: str) -> bool:
        return logical.rpartition("/")[2].startswith(STAGING_PREFIX)

    def _classify(self, exc: BaseException) -> Fault | None:
        if isinstance(exc, HttpError):
            code = int(exc.code or 0)
            if code in _UNAVAILABLE_STATUS or code >= 500:
                return "unavailable"
            if code in (401, 403):
                return "denied"
            return "missing" if code == 404 else None
        if isinstance(exc, aiohttp.ClientResponseError):
            if exc.status >= 500 or exc.status in _UNAVAILABLE_STATUS:
                return "unavailable"
            return {401: "denied", 403: "denied", 404: "missing"}.get(exc.status)  # type: ignore[return-value]
        if isinstance(exc, aiohttp.ClientConnectionError | requests.ConnectionError | requests.Timeout):
            return "unavailable"
        if type(exc) is OSError and str(exc).startswith("Forbidden"):
            return "denied"  # gcsfs raises a bare OSError for 403
        return super()._classify(exc)


class GCSUpload(StagedUpload):
    """A multipart upload to a :class:`GCSTarget`: part objects, composed into the object at complete."""

    def __init__(self, target: GCSTarget, path: str, metadata_at_close: Callable[[int], Mapping[str, str]],
                 size_hint: int | None) -> None:
        super().__init__(target, path, metadata_at_close, size_hint)
        self._gcs = target
        self._bucket, key, _ = target.fs.split_path(self._full)
        self._stem = f"{key.rpartition('/')[0]}/{STAGING_PREFIX}{self._token}-".lstrip("/")
        self._made: set[str] = set()  # every staged object's key, for the clean-up

    def _staged(self, name: str) -> str:
        key = self._stem + name
        with self._lock:
            self._made.add(key)
        return key

    def _send(self, number: int, data: bytes) -> str | None:
        key = self._staged(f"{number:05d}")
        sync(self._gcs.fs.loop, self._gcs.fs._pipe_file, f"{self._bucket}/{key}", data)
        return None

    def _join(self, numbers: list[int], stored: dict[str, str], size: int) -> Stamp:
        sources = [f"{self._stem}{n:05d}" for n in numbers]
        rounds = 0
        while len(sources) > _COMPOSE_MAX:  # compose 32 at a time into intermediate objects, then those
            rounds += 1
            groups = [sources[i:i + _COMPOSE_MAX] for i in range(0, len(sources), _COMPOSE_MAX)]
            sources = [self._staged(f"c{rounds}-{i}") for i in range(len(groups))]
            for key, group in zip(sources, groups, strict=True):
                self._compose(key, group, None)
        out = self._compose(self._gcs.fs.split_path(self._full)[1], sources, stored)
        self._gcs.fs.invalidate_cache(self._full)
        current = out.get("metadata") or {}
        if current != stored:  # GCS takes the destination's metadata; some emulators do not
            self._gcs._after_commit(self._full, lambda: self._gcs._patch(self._full, stored, current))
        return None, None

    def _compose(self, key: str, sources: list[str], metadata: dict[str, str] | None) -> dict[str, Any]:
        destination: dict[str, Any] = {"contentType": "application/octet-stream"}
        if metadata is not None:
            destination["metadata"] = metadata
        out: dict[str, Any] = self._gcs.fs.call("POST", "b/{}/o/{}/compose", self._bucket, key, json_out=True, json={
            "kind": "storage#composeRequest", "sourceObjects": [{"name": s} for s in sources],
            "destination": destination})
        return out

    def _drop(self) -> None:
        with self._lock:
            keys, self._made = sorted(self._made), set()
        fs = self._gcs.fs

        async def delete(key: str) -> None:
            with contextlib.suppress(FileNotFoundError):
                await fs._rm_file(f"{self._bucket}/{key}")

        async def delete_all() -> None:
            await asyncio.gather(*(delete(k) for k in keys))

        sync(fs.loop, delete_all)


def from_backend(backend: Backend) -> GCSTarget:
    """The ``greenroute.targets`` entry point for ``provider = "gcs"``."""
    return GCSTarget(backend)
